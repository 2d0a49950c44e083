// Opens a Prism player page in headless Chromium, lets hls.js play, then moves the page's
// DVR scrub bar BACK seconds behind live (as a viewer drags it) and plays on.
//   node dvr.mjs URL BACK
// Prints one JSON line: {before, seeked, after, errors, logs}, each of before/seeked/after
// {currentTime, seekableStart, seekableEnd, paused}. Exits non-zero if the page never played.
import { existsSync } from "fs";
import { chromium } from "playwright-core";

const [url, back = "60"] = process.argv.slice(2);
const executablePath = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p)) || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  const logs = [];
  page.on("console", (m) => logs.push(m.type() + ": " + m.text()));
  page.on("pageerror", (e) => logs.push("pageerror: " + e.message));
  page.on("response", (r) => {
    if (r.status() !== 200 && r.status() !== 204) logs.push(r.status() + " " + r.url());
  });
  await page.goto(url, { timeout: 20000 });
  const state = () =>
    page.evaluate(() => {
      const v = window.prismPlayer.video;
      const n = v.seekable.length;
      return {
        currentTime: v.currentTime,
        seekableStart: n ? v.seekable.start(0) : null,
        seekableEnd: n ? v.seekable.end(n - 1) : null,
        paused: v.paused,
      };
    });
  // Playing live first (bounded wait).
  await page.waitForFunction(() => window.prismPlayer && window.prismPlayer.video.currentTime > 1, null, { timeout: 30000 });
  const before = await state();
  // The viewer drags the scrub bar: the page seeks on "change".
  await page.evaluate((b) => {
    const dvr = document.getElementById("dvr");
    dvr.value = b;
    dvr.dispatchEvent(new Event("change"));
  }, Number(back));
  await page.waitForTimeout(500);
  const seeked = await state();
  await page.waitForTimeout(6000);
  const after = await state();
  const errors = await page.evaluate(() => window.prismPlayer.errors);
  console.log(JSON.stringify({ before, seeked, after, errors, logs: logs.slice(-20) }));
} finally {
  await browser.close();
}
