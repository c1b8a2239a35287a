// The one EventSource of a dashboard tab, on /v1/events. The browser resumes it after a
// dropped connection with Last-Event-ID, so no event is lost or repeated. What an event
// changes is asked again from the server as page fragments; nothing is computed here.

const live = document.getElementById("live");
/** The tab's stream; page modules import it rather than opening their own. */
export const source = new EventSource(
  document.querySelector("[data-stream]")?.dataset.stream ?? "/v1/events",
);
source.addEventListener("open", () => {
  live.textContent = "live";
  live.className = "on";
});
source.addEventListener("error", () => {
  live.textContent = "reconnecting";
  live.className = "off";
});

/** Swaps in the server's fresh rows for the twins named, a batch at a time. */
function rowRefresher(table, path) {
  const due = new Set();
  let timer = null;
  async function flush() {
    timer = null;
    const ids = [...due];
    due.clear();
    if (ids.length === 0) return;
    const query = ids.map((id) => "id=" + encodeURIComponent(id)).join("&");
    const answer = await fetch(`${path}?${query}`);
    if (!answer.ok) return;
    const fresh = document.createElement("template");
    fresh.innerHTML = await answer.text();
    for (const row of fresh.content.querySelectorAll("tr[data-twin]")) {
      const old = document.getElementById(row.id);
      if (old && old.outerHTML !== row.outerHTML) {
        row.classList.add("changed");
        old.replaceWith(row);
      }
    }
  }
  return (id) => {
    due.add(id);
    timer ??= setTimeout(flush, 150);
  };
}

const fleet = document.getElementById("fleet");
if (fleet) {
  const refresh = rowRefresher(fleet, "/dashboard/fleet/rows");
  const shown = (id) => document.getElementById("twin-" + id) !== null;
  for (const type of ["record", "shift", "correction"]) {
    source.addEventListener(type, (e) => {
      const record = JSON.parse(e.data);
      if (shown(record.twin_id)) refresh(record.twin_id);
    });
  }
  // An anchor, a confirmation or a reorganisation moves the chain status of rows not final yet.
  for (const type of ["anchor", "confirmation", "finalization", "reorganisation"]) {
    source.addEventListener(type, () => {
      for (const row of fleet.querySelectorAll("tr[data-twin]")) {
        if (row.dataset.status !== "finalized") refresh(row.dataset.twin);
      }
    });
  }
}
