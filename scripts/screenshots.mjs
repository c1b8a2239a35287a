#!/usr/bin/env node
// Screenshots of every dashboard page for the README and docs, from a running service with
// simulated devices (see docs/dashboard.md). Usage: node scripts/screenshots.mjs BASE_URL
// [RPC_URL CONTRACT BUNDLE_FILE]; writes docs/img/dashboard-*.png.
import { chromium } from "playwright-core";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const [, , base, rpc, contract, bundle] = process.argv;
if (!base) {
  console.error("usage: node scripts/screenshots.mjs BASE_URL [RPC_URL CONTRACT BUNDLE_FILE]");
  process.exit(2);
}
const out = join(dirname(fileURLToPath(import.meta.url)), "../docs/img");
const browser = await chromium.launch({
  executablePath: process.env.TWINLEDGER_CHROMIUM ?? "/usr/bin/chromium",
  args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
const shot = async (name) => {
  await page.waitForTimeout(1500); // let the live stream and the chart settle
  await page.screenshot({ path: join(out, `dashboard-${name}.png`), fullPage: false });
  console.log(`docs/img/dashboard-${name}.png`);
};
await page.goto(`${base}/dashboard`);
await shot("fleet");
const twin = await page.$eval("#fleet tbody tr[data-twin]", (r) => r.dataset.twin);
await page.goto(`${base}/dashboard/twins/${encodeURIComponent(twin)}`);
await shot("twin");
await page.goto(`${base}/dashboard/events`);
await shot("events");
await page.goto(`${base}/dashboard/anchors`);
await shot("anchors");
await page.goto(`${base}/dashboard/verify?twin=${encodeURIComponent(twin)}`);
if (rpc && contract && bundle) {
  await page.setInputFiles("#bundle-file", bundle);
  await page.fill("#rpc", rpc);
  await page.fill("#contract", contract);
  await page.click("#check");
  await page.waitForSelector("#bundle-result[data-status=valid]", { timeout: 30000 });
}
await shot("verify");
await browser.close();
