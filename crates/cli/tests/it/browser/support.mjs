// Shared by the browser scenarios: Debian's Chromium driven by playwright-core (no browser
// download), and waits on what the page shows, never on "network idle" (the pages keep a
// stream open).
import { chromium } from "playwright-core";

/** A headless Chromium; as root it needs --no-sandbox. */
export async function launch() {
  const args = process.getuid?.() === 0 ? ["--no-sandbox"] : [];
  return chromium.launch({
    executablePath: process.env.TWINLEDGER_CHROMIUM ?? "/usr/bin/chromium",
    args,
  });
}

/** The scenario's base URL, from its first argument. */
export const base = process.argv[2];
if (!base) {
  console.error("usage: node SCENARIO.mjs BASE_URL");
  process.exit(2);
}

/** Waits until `read()` gives something `ok` accepts; fails with what it last saw. */
export async function until(what, read, ok, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  let seen;
  for (;;) {
    seen = await read();
    if (ok(seen)) return seen;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(seen)} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** POSTs JSON to the service; the answer's JSON, or throws on a status other than 2xx. */
export async function post(path, body, method = "POST") {
  const answer = await fetch(base + path, {
    method,
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!answer.ok) throw new Error(`${method} ${path}: ${answer.status} ${await answer.text()}`);
  return answer.json();
}

/** Runs `scenario(page)` in a fresh browser and exits non-zero on any failure. */
export async function run(scenario) {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await scenario(page);
    if (errors.length) throw new Error(`the page threw: ${errors.join("; ")}`);
    console.log("ok");
  } catch (e) {
    console.error(e.stack ?? String(e));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}
