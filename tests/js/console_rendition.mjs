// The console's rendition choice: signs in, picks the stream's [[transcode]] rendition in the
// add form's select (it lists the ladder of the stream typed), adds a destination and waits
// for its target to be up on the rendition stream.
//   node console_rendition.mjs URL TOKEN STREAM SERVER KEY RENDITION
// Prints one JSON line {ok, options, steps, error, logs}.
import { existsSync } from "fs";
import { chromium } from "playwright-core";

const [url, token, stream, server, key, rendition] = process.argv.slice(2);
const executablePath = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p)) || "/usr/bin/chromium";
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
const out = { ok: false, steps: [], logs: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", (e) => out.logs.push("pageerror: " + e.message));
  await page.goto(url, { timeout: 20000 });
  await page.waitForSelector("#signin:not([hidden])", { timeout: 10000 });
  await page.fill("#token", token);
  await page.click("#signin-form button[type=submit]");
  await page.waitForSelector("#destinations:not([hidden])", { timeout: 15000 });
  await page.selectOption("#preset", "custom");
  await page.fill("#dest-name", "ladder");
  await page.fill("#dest-stream", stream);
  await page.dispatchEvent("#dest-stream", "input");
  await page.waitForSelector(`#dest-rendition option[value="${rendition}"]`, { state: "attached", timeout: 10000 });
  out.options = await page.$$eval("#dest-rendition option", (os) => os.map((o) => o.value));
  if (!(await page.isVisible("#dest-rendition"))) throw new Error("the rendition select is hidden");
  out.steps.push("select lists the ladder");
  await page.fill("#dest-server", server);
  await page.fill("#dest-key", key);
  await page.selectOption("#dest-rendition", rendition);
  await page.click("#dest-add");
  await page.waitForSelector(`tr[data-destination="ladder"] td[data-rendition="${rendition}"]`, { timeout: 10000 });
  out.steps.push("added with the rendition");
  const [app, k] = stream.split("/");
  const card = `section.stream[data-stream="${app}/${k}_${rendition}"]`;
  await page.waitForSelector(`${card} tr[data-target="ladder"][data-state="up"]`, { timeout: 30000 });
  out.steps.push("up on the rendition stream");
  out.ok = true;
} catch (e) {
  out.error = String(e && e.message || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
