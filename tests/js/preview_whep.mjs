// The status page's WebRTC preview: clicks the preview button of STREAM, then samples the
// preview every second for SECONDS: the WHEP session's getStats() (video framesDecoded) and
// the <video> element (currentTime, videoWidth). Then closes it.
// With `hls-page`, URL is the stream's HLS player page instead: its WebRTC button switches
// the player to WHEP, sampled the same way.
// With SHOT, a screenshot of the console with the preview playing is saved there.
//   node preview_whep.mjs URL STREAM SECONDS console|hls-page [SHOT]
// Prints one JSON line {kind, caption, samples, closed, error, logs}.
import { existsSync } from "fs";
import { chromium } from "playwright-core";

const [url, stream, seconds, mode, shot] = process.argv.slice(2);
const executablePath = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p)) || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"],
});
const out = { samples: [], logs: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", (e) => out.logs.push("pageerror: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") out.logs.push("console: " + m.text()); });
  await page.goto(url, { timeout: 20000 });
  if (mode === "hls-page") {
    await page.waitForSelector("#webrtc:not([hidden])", { timeout: 10000 });
    await page.click("#webrtc");
    for (let i = 0; i < Number(seconds); i++) {
      await page.waitForTimeout(1000);
      out.samples.push(await page.evaluate(async () => {
        const p = window.prismPlayer, v = p.video;
        const s = { currentTime: v.currentTime, videoWidth: v.videoWidth, hls: !!p.hls,
          status: document.getElementById("state").textContent };
        if (p.pc) {
          s.state = p.pc.connectionState;
          (await p.pc.getStats()).forEach((st) => {
            if (st.type === "inbound-rtp" && st.kind === "video") s.framesDecoded = st.framesDecoded;
          });
        }
        return s;
      }));
    }
    out.kind = "hls-page";
    throw null;
  }
  const button = `button[data-preview-for="${stream}"]`;
  await page.waitForSelector(button, { timeout: 15000 });
  await page.click(button);
  const fig = `figure[data-preview="${stream}"]`;
  await page.waitForSelector(fig, { timeout: 10000 });
  for (let i = 0; i < Number(seconds); i++) {
    await page.waitForTimeout(1000);
    out.samples.push(await page.$eval(fig, async (f) => {
      const s = { kind: f.dataset.kind };
      const v = f.querySelector("video");
      if (v) { s.currentTime = v.currentTime; s.videoWidth = v.videoWidth; s.muted = v.muted; }
      if (f.whep && f.whep.pc) {
        s.state = f.whep.pc.connectionState;
        (await f.whep.pc.getStats()).forEach((st) => {
          if (st.type === "inbound-rtp" && st.kind === "video") s.framesDecoded = st.framesDecoded;
        });
      }
      return s;
    }));
  }
  out.kind = await page.$eval(fig, (f) => f.dataset.kind);
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  out.caption = await page.textContent(`${fig} figcaption`);
  await page.click(button);
  await page.waitForSelector(fig, { state: "detached", timeout: 5000 });
  out.closed = true;
  // Let the DELETE of the WHEP session go out before the browser closes.
  await page.waitForTimeout(500);
} catch (e) {
  if (e !== null) out.error = String(e && e.message || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
