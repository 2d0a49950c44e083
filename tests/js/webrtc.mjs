// WHIP/WHEP client in headless Chromium (playwright-core).
//   node webrtc.mjs whep|whip URL SECONDS [TOKEN]
// whep: plays URL and samples getStats() every second (video framesDecoded, audio
//       totalSamplesReceived); whip: publishes the fake camera and microphone (H.264
//       forced, Opus) and samples framesEncoded / packetsSent.
// Prints one JSON line {status, location, samples: [...], deleteStatus, error}.
import { existsSync } from "fs";
import { chromium } from "playwright-core";

const [mode, url, seconds = "8", token = ""] = process.argv.slice(2);
const executablePath = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p)) || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    // Host candidates as IPs, not mDNS names (no mDNS resolver on a test box).
    "--disable-features=WebRtcHideLocalIpsWithMdns",
  ],
});
try {
  const page = await browser.newPage();
  const logs = [];
  page.on("console", (m) => logs.push(m.type() + ": " + m.text()));
  page.on("pageerror", (e) => logs.push("pageerror: " + e.message));
  // getUserMedia needs a secure context: http://127.0.0.1 is one, about:blank is not.
  await page.goto(new URL(url).origin + "/", { timeout: 20000 }).catch(() => {});
  const result = await page.evaluate(async ({ mode, url, seconds, token }) => {
    const out = { samples: [] };
    const pc = new RTCPeerConnection();
    if (mode === "whep") {
      pc.addTransceiver("video", { direction: "recvonly" });
      pc.addTransceiver("audio", { direction: "recvonly" });
      const video = document.createElement("video");
      video.muted = true;
      video.autoplay = true;
      document.body.appendChild(video);
      pc.ontrack = (e) => { video.srcObject = e.streams[0] || new MediaStream([e.track]); };
    } else {
      const media = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: true });
      for (const track of media.getTracks()) {
        const t = pc.addTransceiver(track, { direction: "sendonly" });
        if (track.kind === "video") {
          const h264 = RTCRtpSender.getCapabilities("video").codecs.filter((c) => c.mimeType === "video/H264");
          t.setCodecPreferences(h264);
        }
      }
    }
    await pc.setLocalDescription(await pc.createOffer());
    const headers = { "Content-Type": "application/sdp" };
    if (token) headers.Authorization = "Bearer " + token;
    let r;
    try {
      r = await fetch(url, { method: "POST", headers, body: pc.localDescription.sdp });
    } catch (e) {
      out.error = "fetch: " + e;
      return out;
    }
    out.status = r.status;
    out.location = r.headers.get("Location");
    out.link = r.headers.get("Link");
    const body = await r.text();
    if (r.status !== 201) {
      out.error = body;
      return out;
    }
    await pc.setRemoteDescription({ type: "answer", sdp: body });
    for (let i = 0; i < seconds; i++) {
      await new Promise((res) => setTimeout(res, 1000));
      const s = { t: i + 1, state: pc.connectionState };
      (await pc.getStats()).forEach((st) => {
        if (st.type === "inbound-rtp" && st.kind === "video") {
          s.framesDecoded = st.framesDecoded; s.keyFramesDecoded = st.keyFramesDecoded;
          s.videoPackets = st.packetsReceived; s.nackCount = st.nackCount; s.pliCount = st.pliCount;
          s.jitterBufferDelay = st.jitterBufferDelay; s.jitterBufferEmittedCount = st.jitterBufferEmittedCount;
          s.frameWidth = st.frameWidth; s.decoder = st.decoderImplementation;
        }
        if (st.type === "inbound-rtp" && st.kind === "audio") {
          s.totalSamplesReceived = st.totalSamplesReceived; s.audioPackets = st.packetsReceived;
        }
        if (st.type === "outbound-rtp" && st.kind === "video") {
          s.framesEncoded = st.framesEncoded; s.videoPacketsSent = st.packetsSent; s.encoder = st.encoderImplementation;
        }
        if (st.type === "outbound-rtp" && st.kind === "audio") s.audioPacketsSent = st.packetsSent;
      });
      out.samples.push(s);
    }
    if (out.location) {
      const d = await fetch(new URL(out.location, url), { method: "DELETE" });
      out.deleteStatus = d.status;
    }
    pc.close();
    return out;
  }, { mode, url, seconds: Number(seconds), token });
  result.logs = logs.slice(-20);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
