// The twin page (after fleet.mjs ran on the same service): the congruence chart grows and marks
// a band change as a report arrives, without a reload; the diverging fields are marked; two
// versions compare side by side; a version links to its anchor.
import { base, post, run, until } from "./support.mjs";

const chart = (page) =>
  page.$eval("#score-chart", (c) => ({ points: Number(c.dataset.points), shifts: Number(c.dataset.shifts) }));

await run(async (page) => {
  await page.goto(base + "/dashboard/twins/pump-1");
  const before = await until("the chart", () => chart(page), (c) => c.points >= 2);
  if (before.points !== 2 || before.shifts !== 1) throw new Error(`the chart before: ${JSON.stringify(before)}`);
  if ((await page.$$("#score-chart canvas")).length === 0) throw new Error("no chart drawn");
  await until("the live stream", () => page.textContent("#live"), (t) => t === "live");
  await page.evaluate(() => (window.notReloaded = true));

  await post("/v1/twins/pump-1/states", { rpm: 1400, mode: "manual" });
  const after = await until("the chart after a diverging report", () => chart(page), (c) => c.points === 3);
  if (after.shifts !== 2) throw new Error(`the chart after: ${JSON.stringify(after)}`);
  if (!(await page.evaluate(() => window.notReloaded))) throw new Error("the page reloaded");

  await page.reload();
  const diverging = await page.$$eval("table.reported tr.diverging td:first-child", (c) => c.map((td) => td.textContent.trim()));
  if (JSON.stringify(diverging) !== JSON.stringify(["/mode", "/rpm"])) {
    throw new Error(`diverging fields shown: ${JSON.stringify(diverging)}`);
  }

  await page.goto(base + "/dashboard/twins/pump-1?version=2&compare=4");
  const marked = await page.$$eval("#version-view table.compared tr.diverging td:first-child", (c) => c.map((td) => td.textContent.trim()));
  if (JSON.stringify(marked) !== JSON.stringify(["/rpm"])) throw new Error(`versions 2 and 4 differ in ${JSON.stringify(marked)}`);

  // The form: one version alone (the comparison left empty).
  await page.fill("#version", "1");
  await page.fill("#compare", "");
  await Promise.all([page.waitForURL(/version=1/), page.click("#history form button")]);
  const alone = await page.textContent("#version-view h3");
  if (alone.trim() !== "Version 1 (desired)") throw new Error(`the form shows ${alone}`);

  // A version links to the anchor that covers it: the anchors page, that row first and targeted.
  const link = await until(
    "the version's anchor",
    async () => {
      await page.reload();
      return page.getAttribute("#version-anchor a", "href");
    },
    (href) => href !== null,
    30000,
  );
  const size = Number(link.split("#anchor-")[1]);
  if (!(size >= 1)) throw new Error(`the anchor link ${link}`);
  await Promise.all([page.waitForURL(new RegExp(`#anchor-${size}$`)), page.click("#version-anchor a")]);
  const first = await page.getAttribute("#anchors tbody tr:first-child", "id");
  const targeted = await page.$eval(`#anchor-${size}`, (row) => row.matches(":target"));
  if (first !== `anchor-${size}` || !targeted) throw new Error(`the anchors page: first row ${first}, targeted ${targeted}`);
});
