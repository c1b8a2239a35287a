// The twin page: the congruence score over time (uPlot), growing as the stream brings this
// twin's assessed reports, with band changes marked; and the form that sets a desired state.
import { source } from "/dashboard/assets/live.mjs";

const chart = document.getElementById("score-chart");
const twin = chart.dataset.twin;
const times = [];
const scores = [];
const shifts = []; // [time, band] where the band changed
let plot = null;
let lastBand = null;

function add(ms, score, band) {
  times.push(ms / 1000);
  scores.push(score);
  if (band !== lastBand && lastBand !== null) shifts.push([ms / 1000, band]);
  lastBand = band;
}

/** Band changes as vertical lines, drawn after the series. */
const markShifts = (u) => {
  const ctx = u.ctx;
  ctx.save();
  ctx.strokeStyle = "#a86400";
  ctx.setLineDash([4, 3]);
  for (const [t] of shifts) {
    const x = Math.round(u.valToPos(t, "x", true));
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
  }
  ctx.restore();
};

function draw() {
  chart.dataset.points = String(scores.length);
  chart.dataset.shifts = String(shifts.length);
  if (scores.length === 0) return;
  document.getElementById("score-empty").hidden = true;
  if (plot) {
    plot.setData([times, scores]);
    return;
  }
  plot = new uPlot(
    {
      width: Math.min(chart.clientWidth || 800, 900),
      height: 220,
      scales: { y: { range: [0, 1] } },
      series: [{}, { label: "score", stroke: "#0b5cad", width: 2, points: { show: true } }],
      hooks: { draw: [markShifts] },
    },
    [times, scores],
    chart,
  );
}

async function load() {
  let after = 0;
  for (;;) {
    const page = await (await fetch(`/v1/twins/${encodeURIComponent(twin)}/congruence?limit=1000&after_version=${after}`)).json();
    for (const r of page.history) add(r.recorded_at_ms, r.score, r.band);
    if (page.next_after_version == null) break;
    after = page.next_after_version;
  }
  draw();
}

await load();
source.addEventListener("record", (e) => {
  const record = JSON.parse(e.data);
  const congruence = record.annex?.congruence;
  if (record.twin_id !== twin || !congruence) return;
  add(record.recorded_at_ms, congruence.score, congruence.band);
  draw();
});

// Setting a desired state: a JSON body with `state` (and optional `tolerances`), sent with the
// write key typed in (it never leaves this tab except to this service), or else with the
// session's cookie, which the browser adds itself.
document.getElementById("set").addEventListener("click", async () => {
  const out = document.getElementById("set-result");
  let body;
  try {
    body = JSON.parse(document.getElementById("desired-state").value);
  } catch (e) {
    out.textContent = `Not JSON: ${e.message}`;
    return;
  }
  const key = document.getElementById("write-key").value.trim();
  const answer = await fetch(`/v1/twins/${encodeURIComponent(twin)}/desired`, {
    method: "PUT",
    headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify(body),
  });
  const json = await answer.json();
  out.textContent = answer.ok ? `Recorded as version ${json.version}.` : `Refused (${answer.status}): ${json.error}`;
});
