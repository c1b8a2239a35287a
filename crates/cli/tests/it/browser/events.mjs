// The events page across a restart of the service: every record event shown exactly once, in
// order, those written before the restart and after. Arguments: BASE_URL; the scenario writes
// 5 records, waits for the service to be restarted (it prints "restart" and waits for a line on
// stdin), then writes 5 more.
import { createInterface } from "node:readline";
import { base, post, run, until } from "./support.mjs";

const indexes = (page) =>
  page.$$eval("#events tbody tr[data-type=record]", (rows) => rows.map((r) => Number(r.dataset.index)).reverse());

await run(async (page) => {
  await page.goto(base + "/dashboard/events?twin=ev-1&type=record");
  await until("the live stream", () => page.textContent("#live"), (t) => t === "live");
  await page.evaluate(() => (window.notReloaded = true));
  for (let i = 0; i < 5; i++) await post("/v1/twins/ev-1/states", { n: i });
  await until("five records", () => indexes(page), (s) => s.length === 5);

  console.log("restart");
  const lines = createInterface({ input: process.stdin });
  for await (const _ of lines) break;
  // An open stdin would keep this process alive once the scenario ends.
  lines.close();
  process.stdin.destroy();
  await until("the stream reconnecting", () => page.textContent("#live"), (t) => t === "live", 30000);
  for (let i = 5; i < 10; i++) await post("/v1/twins/ev-1/states", { n: i });
  const shown = await until("ten records", () => indexes(page), (s) => s.length >= 10, 30000);
  const sorted = [...new Set(shown)].sort((a, b) => a - b);
  if (shown.length !== 10 || JSON.stringify(sorted) !== JSON.stringify(shown)) {
    throw new Error(`record events shown (oldest first): ${JSON.stringify(shown)}`);
  }
  if (!(await page.evaluate(() => window.notReloaded))) throw new Error("the page reloaded");
});
