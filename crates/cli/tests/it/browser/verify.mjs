// The verify page: a twin's verdict from the service, and proof bundles checked in the browser
// against the real chain. Arguments: BASE_URL RPC_URL CONTRACT VALID_BUNDLE EDITED_BUNDLE TWIN
// [TAMPERED_VERSION]; with a tampered version, only the twin's verdict is checked.
import { base, run, until } from "./support.mjs";

const [, , , rpc, contract, valid, edited, twin, tampered] = process.argv;

async function check(page, file, trusted) {
  await page.setInputFiles("#bundle-file", file);
  await page.fill("#rpc", rpc);
  await page.fill("#contract", trusted);
  await page.evaluate(() => delete document.getElementById("bundle-result").dataset.status);
  await page.click("#check");
  return until(
    `the check of ${file}`,
    () => page.$eval("#bundle-result", (o) => ({ status: o.dataset.status, step: o.dataset.step, text: o.textContent })),
    (r) => r.status !== undefined && r.status !== "pending",
    30000,
  );
}

await run(async (page) => {
  await page.goto(`${base}/dashboard/verify?twin=${encodeURIComponent(twin)}`);
  const verdict = await page.textContent("#verdict");
  if (tampered) {
    if (!verdict.includes("Tampered") || !verdict.includes(`version ${tampered}`)) {
      throw new Error(`the verdict of ${twin} after the edit: ${verdict}`);
    }
    return;
  }
  if (!verdict.includes("Valid")) throw new Error(`the verdict of ${twin}: ${verdict}`);
  // No crypto.subtle is needed: the page may be plain http on a LAN address.
  const good = await check(page, valid, contract);
  if (good.status !== "valid" || !good.text.startsWith("VALID:")) {
    throw new Error(`the served bundle: ${JSON.stringify(good)}`);
  }
  const bad = await check(page, edited, contract);
  if (bad.status !== "not_proven" || bad.step !== "state_hash") {
    throw new Error(`the bundle with one byte edited: ${JSON.stringify(bad)}`);
  }
  const other = await check(page, valid, "0x0000000000000000000000000000000000000001");
  if (other.status !== "not_proven" || other.step !== "contract") {
    throw new Error(`the bundle against another contract: ${JSON.stringify(other)}`);
  }
});
