// The events page: each event of the tab's stream as a row, newest first, filtered by the twin
// and types in the URL. The stream's ids resume it (Last-Event-ID) after a dropped connection.
import { source } from "/dashboard/assets/live.mjs";

const params = new URLSearchParams(location.search);
const twin = params.get("twin") ?? "";
const types = new Set(params.getAll("type"));
const body = document.querySelector("#events tbody");
const KEEP = 1000;

function what(type, data) {
  if (type === "record" || type === "shift" || type === "correction") {
    const text = JSON.stringify(data.state);
    return text.length > 120 ? text.slice(0, 119) + "…" : text;
  }
  if (type === "anchor") return `tree size ${data.size}, transaction ${data.tx_hash ?? ""}`;
  return JSON.stringify(data);
}

function show(type, e) {
  if (types.size > 0 && !types.has(type)) return;
  const data = JSON.parse(e.data);
  if (twin !== "" && data.twin_id !== twin) return;
  const row = document.createElement("tr");
  row.dataset.type = type;
  if (data.index !== undefined) row.dataset.index = String(data.index);
  for (const text of [e.lastEventId, type, data.twin_id ?? "", data.version ?? "", what(type, data)]) {
    const cell = document.createElement("td");
    cell.textContent = String(text);
    row.append(cell);
  }
  body.prepend(row);
  while (body.rows.length > KEEP) body.deleteRow(body.rows.length - 1);
}

for (const type of ["record", "shift", "correction", "anchor", "confirmation", "finalization", "reorganisation"]) {
  source.addEventListener(type, (e) => show(type, e));
}
