// Opens a Prism player page in headless Chromium and reports what a viewer would see.
//   node play.mjs URL SECONDS [CLICK_SELECTOR]
// Prints one JSON line: the page's own report (currentTime, hls.js latency, errors) after
// SECONDS of playback. Exits non-zero if the page never reported. With CLICK_SELECTOR, clicks
// that element first (the status page's preview button); the player may then be in a frame.
// With --max-latency=S (anywhere): after SECONDS, wait (up to 20 s) for hls.js latency < S.
import { existsSync } from "fs";
import { chromium } from "playwright-core";

const argv = process.argv.slice(2);
const flag = argv.find((a) => a.startsWith("--max-latency="));
const [url, seconds = "10", click] = argv.filter((a) => a !== flag);
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
  // Playlist answers other than 200: what a player stumbled on.
  page.on("response", (r) => {
    if (r.status() !== 200 && r.status() !== 204) logs.push(r.status() + " " + r.url());
  });
  await page.goto(url, { timeout: 20000 });
  if (click) await page.click(click, { timeout: 20000 });
  await page.waitForTimeout(Number(seconds) * 1000);
  const measure = (frame) => frame.evaluate(() => {
    const p = window.prismPlayer;
    if (!p) return null;
    return {
      currentTime: p.video.currentTime,
      latency: p.hls ? p.hls.latency : null,
      errors: p.errors,
      readyState: p.video.readyState,
      buffered: p.video.buffered.length ? p.video.buffered.end(p.video.buffered.length - 1) : 0,
    };
  });
  const measureAny = async () => {
    for (const frame of page.frames()) {
      const r = await measure(frame).catch(() => null);
      if (r) return r;
    }
    return null;
  };
  let report = await measureAny();
  // --max-latency=S: a player that stalled (a saturated machine) catches up at up to
  // 1.5x; give it up to 20 s more to get back under S, and say how long that took.
  const maxLatency = flag ? Number(flag.split("=")[1]) : 0;
  if (maxLatency > 0 && report) {
    const t0 = Date.now();
    while (report && !(report.latency > 0 && report.latency < maxLatency) && Date.now() - t0 < 20000) {
      await page.waitForTimeout(500);
      report = (await measureAny()) || report;
    }
    report.catchUpMs = Date.now() - t0;
  }
  console.log(JSON.stringify({ report, logs: logs.slice(-20) }));
  if (!report) process.exitCode = 2;
} finally {
  await browser.close();
}
