// WHIP/WHEP client in headless Chromium (playwright-core).
//   node webrtc.mjs whep|whip URL SECONDS [TOKEN] [latency]
// latency (whep): the source draws the wall clock (ms mod 65536) as 16 bits in its top
//       rows (tests/webrtc.rs); each presented frame is read back from a canvas and
//       compared with the clock now: glass-to-glass latency samples in `latencyMs`.
// whep: plays URL and samples getStats() every second (video framesDecoded, audio
//       totalSamplesReceived); whip: publishes the fake camera and microphone (H.264
//       forced, Opus) and samples framesEncoded / packetsSent.
// Prints one JSON line {status, location, samples: [...], deleteStatus, error}.
import { existsSync } from "fs";
import { chromium } from "playwright-core";

const [mode, url, seconds = "8", token = "", measure = ""] = process.argv.slice(2);
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
  const result = await page.evaluate(async ({ mode, url, seconds, token, measure }) => {
    const out = { samples: [] };
    const pc = new RTCPeerConnection();
    if (mode === "whep") {
      pc.addTransceiver("video", { direction: "recvonly" });
      pc.addTransceiver("audio", { direction: "recvonly" });
      const video = document.createElement("video");
      video.muted = true;
      video.autoplay = true;
      document.body.appendChild(video);
      pc.ontrack = (e) => {
        video.srcObject = e.streams[0] || new MediaStream([e.track]);
        video.play().catch(() => {});
      };
      if (measure === "latency") {
        out.latencyMs = [];
        const canvas = new OffscreenCanvas(320, 240);
        const ctx = canvas.getContext("2d", { willReadFrequently: true });
        // Every decoded frame (MediaStreamTrackProcessor), as it leaves the decoder.
        const read = async (track) => {
          const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
          for (;;) {
            const { value: frame, done } = await reader.read();
            if (done) return;
            ctx.drawImage(frame, 0, 0, 320, 240);
            frame.close();
            const row = ctx.getImageData(0, 20, 320, 1).data;
            let v = 0;
            for (let i = 0; i < 16; i++) if (row[(10 + 20 * i) * 4] > 128) v |= 1 << i;
            if (out.latencyMs.length < 2000) out.latencyMs.push((Date.now() % 65536 - v + 65536) % 65536);
          }
        };
        pc.addEventListener("track", (e) => { if (e.track.kind === "video") read(e.track); });
      }
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
      const stats = await pc.getStats();
      stats.forEach((st) => {
        if (st.type === "inbound-rtp" && st.kind === "video") {
          s.framesDecoded = st.framesDecoded; s.keyFramesDecoded = st.keyFramesDecoded;
          s.videoCodec = st.codecId && stats.get(st.codecId) ? stats.get(st.codecId).mimeType : undefined;
          s.videoPackets = st.packetsReceived; s.nackCount = st.nackCount; s.pliCount = st.pliCount;
          s.jitterBufferDelay = st.jitterBufferDelay; s.jitterBufferEmittedCount = st.jitterBufferEmittedCount;
          s.frameWidth = st.frameWidth; s.decoder = st.decoderImplementation;
        }
        if (st.type === "inbound-rtp" && st.kind === "audio") {
          s.totalSamplesReceived = st.totalSamplesReceived; s.audioPackets = st.packetsReceived;
          s.totalAudioEnergy = st.totalAudioEnergy; s.concealedSamples = st.concealedSamples;
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
  }, { mode, url, seconds: Number(seconds), token, measure });
  result.logs = logs.slice(-20);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
