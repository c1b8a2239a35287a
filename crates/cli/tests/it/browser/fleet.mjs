// The fleet page: rows as the API has them, a POSTed report changing its row live (no reload), a
// new twin joining in its place, and the search by id prefix kept in the URL.
import { base, post, run, until } from "./support.mjs";

const cells = (page, twin) =>
  page.evaluate((id) => {
    const row = document.getElementById("twin-" + id);
    return row ? [...row.cells].map((c) => c.textContent.trim()) : null;
  }, twin);

await run(async (page) => {
  await page.goto(base + "/dashboard");
  const before = await until("pump-1's row", () => cells(page, "pump-1"), (c) => c !== null);
  if (before[1] !== "3" || before[3] !== "drifting" || before[4] !== "0.50") {
    throw new Error(`pump-1's row shows ${JSON.stringify(before)}`);
  }
  await until("the live stream", () => page.textContent("#live"), (t) => t === "live");
  // A marker that a reload would wipe.
  await page.evaluate(() => (window.notReloaded = true));

  await post("/v1/twins/pump-1/states", { rpm: 1500, mode: "auto" });
  const after = await until(
    "pump-1's row after a congruent report",
    () => cells(page, "pump-1"),
    (c) => c[3] === "congruent",
  );
  if (after[4] !== "1.00" || Number(after[1]) <= 3) {
    throw new Error(`pump-1's row shows ${JSON.stringify(after)}`);
  }
  if (!(await page.evaluate(() => window.notReloaded))) throw new Error("the page reloaded");

  // A twin new to the ledger joins the page in its place among the ids.
  await post("/v1/twins/pump-0/states", { rpm: 10 });
  const order = await until(
    "the new twin's row",
    () => page.$$eval("#fleet tbody tr", (rows) => rows.map((r) => r.dataset.twin)),
    (ids) => ids.includes("pump-0"),
  );
  if (order.indexOf("pump-0") !== order.indexOf("pump-1") - 1) throw new Error(`the rows are ${JSON.stringify(order)}`);

  // The anchor that follows moves the row's chain status, still without a reload.
  await until("pump-1 anchored", () => cells(page, "pump-1"), (c) => c[5] !== "pending", 30000);

  await page.fill("#prefix", "valve");
  await Promise.all([page.waitForURL(/prefix=valve/), page.click("form.search button")]);
  const twins = await page.$$eval("#fleet tbody tr", (rows) => rows.map((r) => r.dataset.twin));
  if (JSON.stringify(twins) !== JSON.stringify(["valve-1", "valve-2"])) {
    throw new Error(`the search for "valve" shows ${JSON.stringify(twins)}`);
  }

  // The anchors that moved the rows are on the anchors page, newest first.
  await page.goto(base + "/dashboard/anchors");
  const anchors = await page.$$eval("#anchors tbody tr", (rows) =>
    rows.map((r) => ({ size: Number(r.dataset.size), cells: [...r.cells].map((c) => c.textContent.trim()) })),
  );
  if (anchors.length === 0) throw new Error("no anchor shown");
  const sizes = anchors.map((a) => a.size);
  if (JSON.stringify(sizes) !== JSON.stringify([...sizes].sort((a, b) => b - a))) {
    throw new Error(`anchors not newest first: ${JSON.stringify(sizes)}`);
  }
  const [size, records, , tx, block, , gas] = anchors[0].cells;
  if (Number(size) !== sizes[0] || !(Number(records) >= 1) || !tx.startsWith("0x") || !(Number(block) >= 1) || !(Number(gas) > 0)) {
    throw new Error(`the newest anchor shows ${JSON.stringify(anchors[0].cells)}`);
  }
});
