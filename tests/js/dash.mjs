// Plays a Prism DASH manifest with dash.js (npm `dashjs`) in headless Chromium and reports
// what a viewer would see.
//   node dash.mjs MANIFEST_URL SECONDS
// The player page comes from another origin (served here through page.route, nothing is
// fetched from outside), so the manifest and segments are cross-origin requests as on a
// real site: Prism's CORS headers are part of what is tested.
// Prints one JSON line: currentTime when playback started and SECONDS later, dash.js's
// live latency and errors, and the requests that would have left the machine. Exits non-zero if playback never started.
import { existsSync, readFileSync } from "fs";
import { dirname, join } from "path";
import { fileURLToPath } from "url";
import { chromium } from "playwright-core";

const [manifest, seconds = "10"] = process.argv.slice(2);
// The package's "exports" do not list its dist files: read it from node_modules beside us.
const here = dirname(fileURLToPath(import.meta.url));
const dashJs = readFileSync(join(here, "node_modules/dashjs/dist/modern/umd/dash.all.min.js"));
const origin = "http://player.test";
const page_html = `<!doctype html><meta charset="utf-8"><title>dash.js</title>
<video id="v" muted autoplay playsinline></video>
<script src="/dash.all.min.js"></script>
<script>
  const video = document.getElementById("v");
  const errors = [];
  const player = dashjs.MediaPlayer().create();
  player.on(dashjs.MediaPlayer.events.ERROR, (e) => errors.push(JSON.stringify(e.error || e)));
  player.initialize(video, ${JSON.stringify(manifest)}, true);
  window.dashReport = () => ({
    currentTime: video.currentTime,
    latency: player.getCurrentLiveLatency(),
    readyState: video.readyState,
    errors,
  });
</script>`;

const executablePath = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p)) || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage",
    // Here Prism is on loopback, more private than the page's origin, which Chromium
    // blocks (Local Network Access) unless a user allows it; deployed, both are public.
    "--disable-features=LocalNetworkAccessChecks"],
});
try {
  const page = await browser.newPage();
  const logs = [];
  page.on("console", (m) => logs.push(m.type() + ": " + m.text()));
  page.on("pageerror", (e) => logs.push("pageerror: " + e.message));
  page.on("response", (r) => {
    if (r.status() !== 200) logs.push(r.status() + " " + r.url());
  });
  page.on("requestfailed", (r) => logs.push("failed " + r.url() + " " + (r.failure()?.errorText ?? "")));
  // The page and dash.js come from here; Prism's origin goes through; anything else would
  // leave the machine: refused and reported.
  const external = [];
  const prism = new URL(manifest).origin;
  await page.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (url.origin === prism) return route.continue();
    if (url.origin !== origin) {
      external.push(url.href);
      return route.abort();
    }
    if (url.pathname === "/dash.all.min.js") {
      return route.fulfill({ status: 200, contentType: "text/javascript", body: dashJs });
    }
    if (url.pathname === "/") return route.fulfill({ status: 200, contentType: "text/html", body: page_html });
    return route.fulfill({ status: 404, body: "" });
  });
  await page.goto(origin + "/", { timeout: 20000 });
  let start = null;
  try {
    await page.waitForFunction(() => window.dashReport && window.dashReport().currentTime > 0, null, {
      timeout: 20000,
      polling: 100,
    });
    start = await page.evaluate(() => window.dashReport());
    await page.waitForTimeout(Number(seconds) * 1000);
  } catch (e) {
    logs.push("never played: " + e.message);
  }
  const end = await page.evaluate(() => (window.dashReport ? window.dashReport() : null));
  console.log(JSON.stringify({ start, end, external, logs: logs.slice(-20) }));
  if (!start) process.exitCode = 2;
} finally {
  await browser.close();
}
