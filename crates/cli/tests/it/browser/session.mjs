// Reads need a key (`auth.reads`): the dashboard asks for one once, keeps it in an HttpOnly
// cookie the page's scripts cannot read, stays live through it (EventSource sends no header),
// and the desired-state form writes with a write key typed in, not with a read session.
// Arguments: BASE_URL READ_KEY WRITE_KEY.
import { base, run, until } from "./support.mjs";

const [readKey, writeKey] = process.argv.slice(3);
const bearer = (key) => ({ "content-type": "application/json", authorization: `Bearer ${key}` });

await run(async (page) => {
  const first = await page.goto(base + "/dashboard/twins/press-1");
  if (first.status() !== 401) throw new Error(`without a key the page answered ${first.status()}`);
  if (!(await page.$("#key-prompt"))) throw new Error("no key prompt");

  await page.fill("#key", "tl_wrong_key");
  await Promise.all([page.waitForURL(/\/dashboard\/session$/), page.click("#key-prompt button")]);
  const refused = await page.textContent("#key-error");
  if (!/invalid API key/.test(refused)) throw new Error(`a wrong key: ${refused}`);

  await page.fill("#key", readKey);
  await Promise.all([page.waitForURL(/\/dashboard\/twins\/press-1$/), page.click("#key-prompt button")]);
  const title = await page.textContent("h1");
  if (!title.includes("press-1")) throw new Error(`after the prompt the page shows ${title}`);
  if ((await page.evaluate(() => document.cookie)).includes("tl_")) throw new Error("a script can read the key");
  const shown = await page.textContent("header form.session code");
  if (!readKey.startsWith(`tl_${shown.trim()}_`)) throw new Error(`the header names key ${shown}`);

  // Live through the cookie: the fleet's row follows a report made elsewhere.
  await page.goto(base + "/dashboard");
  await until("the live stream", () => page.textContent("#live"), (t) => t === "live");
  const report = await fetch(base + "/v1/twins/press-1/states", {
    method: "POST",
    headers: bearer(writeKey),
    body: JSON.stringify({ force: 12 }),
  });
  if (report.status !== 201) throw new Error(`the report: ${report.status}`);
  await until("the twin's row", () => page.getAttribute("#twin-press-1", "class"), (c) => c?.includes("changed"));

  // The form: a read session cannot set a desired state; the write key typed in can.
  await page.goto(base + "/dashboard/twins/press-1");
  await page.fill("#desired-state", JSON.stringify({ state: { force: 10 }, tolerances: { "/force": { absolute: 1 } } }));
  await page.click("#set");
  const denied = await until("the read session's answer", () => page.textContent("#set-result"), (t) => t !== "");
  if (!denied.startsWith("Refused (403)")) throw new Error(`with the read session: ${denied}`);
  await page.fill("#write-key", writeKey);
  await page.evaluate(() => (document.getElementById("set-result").textContent = ""));
  await page.click("#set");
  const recorded = await until("the write key's answer", () => page.textContent("#set-result"), (t) => t !== "");
  if (!/^Recorded as version 3\.$/.test(recorded)) throw new Error(`with the write key: ${recorded}`);
  await page.reload();
  const desired = await page.textContent("table.desired");
  if (!desired.includes("10")) throw new Error(`the desired state shown: ${desired}`);

  // Ending the session brings the prompt back.
  await Promise.all([page.waitForURL(/\/dashboard$/), page.click("header form.session button")]);
  if (!(await page.$("#key-prompt"))) throw new Error("the session did not end");
});
