// The console's Enhanced RTMP v2 track choice.
//   node console_tracks.mjs URL TOKEN STREAM add SERVER KEY NAME TRACK
//     signs in, checks the add form suggests the live stream's tracks, adds destination NAME
//     with video and audio track TRACK, waits for it in the table and for its target to be up
//   node console_tracks.mjs URL TOKEN STREAM edit NAME TRACK OUT_DIR
//     signs in, changes NAME's tracks to TRACK in the edit form, waits for the table to show it
//     and its target to be up again, checks the phone layout and screenshots it into
//     OUT_DIR/console-tracks-phone.png
// Prints one JSON line {ok, suggested, steps, error, logs}.
import { existsSync, mkdirSync } from "fs";
import { join } from "path";
import { chromium } from "playwright-core";

const [url, token, stream, mode, ...rest] = process.argv.slice(2);
const executablePath = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p)) || "/usr/bin/chromium";
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
const out = { ok: false, steps: [], logs: [] };
const row = (name, track) => `tr[data-destination="${name}"] td[data-video-track="${track}"][data-audio-track="${track}"]`;
const up = (name) => `section.stream[data-stream="${stream}"] tr[data-target="${name}"][data-state="up"]`;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", (e) => out.logs.push("pageerror: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") out.logs.push("console: " + m.text()); });
  await page.goto(url, { timeout: 20000 });
  await page.waitForSelector("#signin:not([hidden])", { timeout: 10000 });
  await page.fill("#token", token);
  await page.click("#signin-form button[type=submit]");
  await page.waitForSelector("#destinations:not([hidden])", { timeout: 15000 });
  if (mode === "add") {
    const [server, key, name, track] = rest;
    await page.selectOption("#preset", "custom");
    await page.fill("#dest-name", name);
    await page.fill("#dest-stream", stream);
    await page.dispatchEvent("#dest-stream", "input");
    // The stream card shows the tracks, the form suggests them.
    await page.waitForSelector(`section.stream[data-stream="${stream}"] [data-tracks]`, { timeout: 10000 });
    await page.waitForSelector(`#video-track-ids option[value="${track}"]`, { state: "attached", timeout: 10000 });
    out.suggested = {
      video: await page.$$eval("#video-track-ids option", (os) => os.map((o) => Number(o.value))),
      audio: await page.$$eval("#audio-track-ids option", (os) => os.map((o) => Number(o.value))),
    };
    out.steps.push("the form suggests the stream's tracks");
    await page.fill("#dest-server", server);
    await page.fill("#dest-key", key);
    await page.fill("#dest-video-track", track);
    await page.fill("#dest-audio-track", track);
    await page.click("#dest-add");
    await page.waitForSelector(row(name, track), { timeout: 10000 });
    out.steps.push("added with the tracks");
    await page.waitForSelector(up(name), { timeout: 30000 });
    out.steps.push("up");
  } else if (mode === "edit") {
    const [name, track, outDir] = rest;
    await page.waitForSelector(`tr[data-destination="${name}"]`, { timeout: 10000 });
    await page.click(`button[data-edit="${name}"]`);
    await page.waitForSelector("#edit-box:not([hidden])", { timeout: 5000 });
    await page.fill("#edit-video-track", track);
    await page.fill("#edit-audio-track", track);
    await page.click("#edit-save");
    await page.waitForSelector(row(name, track), { timeout: 10000 });
    if (!(await page.isHidden("#edit-box"))) throw new Error("the edit form stays open after saving");
    out.steps.push("changed in the edit form");
    await page.waitForSelector(up(name), { timeout: 30000 });
    out.steps.push("up");
    // Phone width: the table stacks, the track cell and the edit button stay visible.
    await page.setViewportSize({ width: 390, height: 844 });
    const cell = `tr[data-destination="${name}"] td[data-video-track]`;
    if (!(await page.isVisible(cell)) || !(await page.isVisible(`button[data-edit="${name}"]`))) {
      throw new Error("tracks cell or edit button hidden at phone width");
    }
    const box = await page.locator(cell).boundingBox();
    if (!box || box.x < 0 || box.x + box.width > 390) throw new Error("tracks cell off screen at phone width: " + JSON.stringify(box));
    mkdirSync(outDir, { recursive: true });
    await page.locator("#destinations").screenshot({ path: join(outDir, "console-tracks-phone.png") });
    out.steps.push("phone layout");
  } else {
    throw new Error("mode: add or edit, not " + mode);
  }
  out.ok = true;
} catch (e) {
  out.error = String(e && e.message || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
