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

/** Swaps in the server's fresh rows for the twins named, a batch at a time; a row not shown
 * yet goes where `place(row)` says (before a row, or at the end with `null`), or nowhere
 * (`undefined`). */
function rowRefresher(table, path, place = () => undefined) {
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
      } else if (!old) {
        const before = place(row);
        if (before === undefined) continue;
        row.classList.add("changed");
        table.tBodies[0].insertBefore(row, before);
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
  // A twin new to the ledger joins this page if it sorts into it: it has the page's prefix,
  // comes after the page's start, and before its last row when the page is full (the server
  // orders ids by their bytes, as this comparison does for the ASCII ids twins have). A full
  // page then gives its last row to the next page.
  const { prefix, after, page } = fleet.dataset;
  const rows = () => [...fleet.tBodies[0].rows];
  const belongs = (id) => {
    if (!id.startsWith(prefix) || (after !== "" && id <= after)) return false;
    const all = rows();
    return all.length < Number(page) || id < all[all.length - 1].dataset.twin;
  };
  const place = (row) => {
    const id = row.dataset.twin;
    if (!belongs(id)) return undefined;
    const all = rows();
    if (all.length >= Number(page)) all.pop().remove();
    document.querySelector("p.empty")?.remove();
    return rows().find((r) => r.dataset.twin > id) ?? null;
  };
  const refresh = rowRefresher(fleet, "/dashboard/fleet/rows", place);
  const shown = (id) => document.getElementById("twin-" + id) !== null;
  for (const type of ["record", "shift", "correction"]) {
    source.addEventListener(type, (e) => {
      const record = JSON.parse(e.data);
      if (shown(record.twin_id) || belongs(record.twin_id)) refresh(record.twin_id);
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
