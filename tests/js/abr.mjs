// hls.js ABR under a throttled network: opens a Prism player page whose stream has an ABR
// ladder and follows the height hls.js plays through three phases: free network (until it
// plays HIGH), throttled by the DevTools protocol (Network.emulateNetworkConditions) until it
// plays LOW, free again until it plays HIGH again. Each phase waits PHASE_SECONDS at most.
//   node abr.mjs URL HIGH_HEIGHT LOW_HEIGHT THROTTLE_KBPS PHASE_SECONDS
// Prints one JSON line: {phases: [{phase, reached, seconds}], trace (height, hls.js's
// bandwidth estimate, currentTime), errors (hls.js), logs}.
import { existsSync } from "fs";
import { chromium } from "playwright-core";

const [url, high, low, kbps, phaseSeconds = "60"] = process.argv.slice(2);
const executablePath = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p)) || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage"],
});
const trace = [];
const phases = [];
const logs = [];
let errors = [];
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => logs.push("pageerror: " + e.message));
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  const network = (bytesPerSecond) => cdp.send("Network.emulateNetworkConditions", {
    offline: false, latency: 0, downloadThroughput: bytesPerSecond, uploadThroughput: -1,
  });
  await page.goto(url, { timeout: 20000 });
  const started = Date.now();
  // What hls.js plays now: the level's height (null before it plays one), its bandwidth
  // estimate and the playhead.
  const sample = () => page.evaluate(() => {
    const p = window.prismPlayer;
    const h = p && p.hls;
    if (!h) return { height: null, bw: null, t: 0, errors: [] };
    const level = h.currentLevel >= 0 ? h.levels[h.currentLevel] : null;
    return {
      height: level ? level.height : null,
      bw: Math.round(h.bandwidthEstimate),
      t: p.video.currentTime,
      errors: p.errors.slice(),
    };
  });
  const until = async (phase, want) => {
    const t0 = Date.now();
    while (Date.now() - t0 < Number(phaseSeconds) * 1000) {
      const s = await sample().catch(() => ({ height: null }));
      if (s.errors) errors = s.errors;
      const last = trace[trace.length - 1];
      const at = (Date.now() - started) / 1000;
      if (!last || last.height !== s.height || at - last.at >= 5) {
        trace.push({ at, height: s.height, bw: s.bw, t: s.t });
      }
      if (s.height === want) {
        phases.push({ phase, reached: true, seconds: (Date.now() - t0) / 1000 });
        return true;
      }
      await page.waitForTimeout(250);
    }
    phases.push({ phase, reached: false, seconds: Number(phaseSeconds) });
    return false;
  };
  (await until("free", Number(high)))
    && (await network(Number(kbps) * 125), await until("throttled", Number(low)))
    && (await network(-1), await until("free again", Number(high)));
  // The playhead after the last switch: playback went on through both switches.
  await page.waitForTimeout(2000);
  const s = await sample().catch(() => ({}));
  if (s.errors) errors = s.errors;
  trace.push({ at: (Date.now() - started) / 1000, height: s.height, bw: s.bw, t: s.t });
} finally {
  console.log(JSON.stringify({ phases, trace, errors, logs: logs.slice(-20) }));
  await browser.close();
}
