// Drives the operator console (Prism's status page) in headless Chromium as a streamer would.
//   node console.mjs URL TOKEN STREAM SINK_SERVER KEY OUT_DIR
// Signs in (a wrong token first), adds a YouTube-preset destination for STREAM with its server
// replaced by SINK_SERVER (a local nginx-rtmp) and stream key KEY, waits for it to be up,
// toggles it off and on, adds and removes a Twitch-preset one, checks the bitrate chart, takes
// desktop and phone screenshots into OUT_DIR, checks the read-only mode when the API is
// unreachable, and kicks the publisher. Prints one JSON line {ok, steps, error, logs}.
import { existsSync, mkdirSync } from "fs";
import { join } from "path";
import { chromium } from "playwright-core";

const [url, token, stream, sink, key, outDir] = process.argv.slice(2);
const executablePath = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p)) || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const out = { ok: false, steps: [], logs: [] };
const step = (s) => out.steps.push(s);
const card = `section.stream[data-stream="${stream}"]`;
const targetRow = (name, state) => `${card} tr[data-target="${name}"]` + (state ? `[data-state="${state}"]` : "");
try {
  mkdirSync(outDir, { recursive: true });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("dialog", (d) => d.accept());
  page.on("pageerror", (e) => out.logs.push("pageerror: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") out.logs.push("console: " + m.text()); });

  await page.goto(url, { timeout: 20000 });
  await page.waitForSelector("#signin:not([hidden])", { timeout: 10000 });
  await page.fill("#token", "wrong-token-0123456789");
  await page.click("#signin-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("banner").textContent.includes("refused"), null, { timeout: 10000 });
  if (!(await page.isDisabled("#dest-add"))) throw new Error("controls usable with a refused token");
  step("wrong token: refused, read-only");

  await page.fill("#token", token);
  await page.click("#signin-form button[type=submit]");
  await page.waitForSelector(card, { timeout: 15000 });
  if (page.url().includes(token)) throw new Error("token in the URL: " + page.url());
  if ((await page.content()).includes(token)) throw new Error("token in the page");
  step("signed in");

  await page.waitForSelector("#destinations:not([hidden])", { timeout: 10000 });
  await page.selectOption("#preset", "youtube");
  const server = await page.inputValue("#dest-server");
  if (!server.startsWith("rtmps://a.rtmps.youtube.com")) throw new Error("youtube preset server: " + server);
  if ((await page.inputValue("#dest-name")) !== "youtube") throw new Error("preset name");
  // The test's stand-in for YouTube's ingest.
  await page.fill("#dest-server", sink);
  await page.fill("#dest-stream", stream);
  await page.fill("#dest-key", key);
  await page.fill("#dest-merge", "20");
  await page.click("#dest-add");
  await page.waitForSelector(targetRow("youtube", "up"), { timeout: 30000 });
  const row = await page.textContent('tr[data-destination="youtube"]');
  if (!row.includes("…" + key.slice(-4))) throw new Error("no key hint in " + row);
  if ((await page.content()).includes(key)) throw new Error("the full stream key is in the page");
  step("youtube preset added, up, key shown as its last 4 characters");

  await page.click('input[data-toggle="youtube"]');
  await page.waitForSelector('tr[data-destination="youtube"][data-enabled="false"]', { timeout: 10000 });
  await page.waitForSelector(targetRow("youtube"), { state: "detached", timeout: 20000 });
  step("toggled off: target stopped");
  await page.click('input[data-toggle="youtube"]');
  await page.waitForSelector('tr[data-destination="youtube"][data-enabled="true"]', { timeout: 10000 });
  await page.waitForSelector(targetRow("youtube", "up"), { timeout: 30000 });
  step("toggled on: up again");

  await page.selectOption("#preset", "twitch");
  await page.fill("#dest-server", sink);
  await page.fill("#dest-stream", stream);
  await page.fill("#dest-key", key + "-twitch");
  await page.click("#dest-add");
  await page.waitForSelector(targetRow("twitch", "up"), { timeout: 30000 });
  await page.click('button[data-remove="twitch"]');
  await page.waitForSelector('tr[data-destination="twitch"]', { state: "detached", timeout: 10000 });
  await page.waitForSelector(targetRow("twitch"), { state: "detached", timeout: 20000 });
  step("twitch preset added, up, removed");

  // The chart has drawn the ingest and the target over several refreshes.
  await page.waitForFunction((s) => {
    const line = document.querySelector(`svg[data-chart="${s}"] polyline[data-series="ingest"]`);
    const yt = document.querySelector(`svg[data-chart="${s}"] polyline[data-series="youtube"]`);
    return line && yt && line.getAttribute("points").split(" ").length >= 4;
  }, stream, { timeout: 20000 });
  step("bitrate chart drawn");

  await page.screenshot({ path: join(outDir, "console-desktop.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForFunction(() => window.innerWidth === 390, null, { timeout: 5000 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) throw new Error("the page is wider than a phone by " + overflow + " px");
  await page.screenshot({ path: join(outDir, "console-phone.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  step("screenshots; no horizontal overflow at 390 px");

  await page.route("**/api/v1/**", (r) => r.abort());
  await page.waitForFunction(() => document.getElementById("banner").textContent.includes("cannot reach Prism"), null, { timeout: 10000 });
  if (!(await page.isDisabled('input[data-toggle="youtube"]'))) throw new Error("toggle usable while unreachable");
  if (!(await page.isVisible(card))) throw new Error("the last data is gone");
  await page.unroute("**/api/v1/**");
  await page.waitForSelector("#banner[hidden]", { state: "attached", timeout: 10000 });
  step("unreachable: read-only with the last data, then back");

  await page.click(`button[data-kick="${stream}"]`);
  await page.waitForSelector(card, { state: "detached", timeout: 15000 });
  step("publisher kicked");
  out.ok = true;
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
if (!out.ok) process.exitCode = 1;
