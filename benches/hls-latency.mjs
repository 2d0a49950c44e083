// Glass-to-glass latency of HLS with hls.js in headless Chromium, on loopback (issue 12's
// benchmark). For each configuration: start the relay, publish a live test pattern with
// `ffmpeg -re` over RTMP, open a minimal page with the vendored hls.js in Chromium
// (playwright-core from tests/js), and sample every 250 ms for SECONDS after a warm-up:
//   - glass-to-glass on the publisher's clock: `Date.now() − (T0 + t)`, where t is the
//     stream timestamp of the frame on screen (hls.js plays media time c at stream
//     timestamp c + initPTS / timescale; nginx-rtmp's TS timestamps run 0.7 s ahead, which
//     is taken off) and T0 the wall-clock time of timestamp 0 at ffmpeg (`-progress`: the
//     smallest now − out_time). Publisher send → on screen, the same for both relays;
//     the encoder's own delay (x264 `zerolatency`, no lookahead) is not included.
//   - `Date.now() − hls.playingDate` (Prism only: nginx-rtmp writes no PROGRAM-DATE-TIME).
//     Prism dates the stream by the arrival of its first frame and counts media time from
//     there, so when the first frames arrive in a burst (ffmpeg opens its RTMP output after
//     encoding started) every date is late by that burst and this reads lower.
//   - `hls.latency`: hls.js's own estimate, the distance from the live edge of the playlist
//     (it cannot see how long a frame took to be listed).
//
//   node benches/hls-latency.mjs [--sessions 3] [--seconds 15] [--warmup 8] [--join-after 14]
//        [--only prism-ll,prism-ll-2s,prism-classic,nginx]
//        [--prism-bin target/release/prism] [--out benches/results]
// Needs ffmpeg, nginx + libnginx-mod-rtmp, Chromium and `npm ci --prefix tests/js`
// (scripts/test.sh installs them all).
import { spawn } from "child_process";
import { createRequire } from "module";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "fs";
import { createServer } from "net";
import { tmpdir } from "os";
import { dirname, join, resolve } from "path";
import { fileURLToPath } from "url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const require = createRequire(join(root, "tests/js/package.json"));
const { chromium } = require("playwright-core");

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const SECONDS = Number(args.seconds ?? 15);
const WARMUP = Number(args.warmup ?? 8);
// Viewers per configuration, one after the other on the same stream.
const SESSIONS = Number(args.sessions ?? 3);
// A viewer joins a stream that is running, its playlist full (6 segments): joining as the
// first segment appears, hls.js starts at the only segment there is and stays that close to
// live, which no later viewer gets.
const JOIN_AFTER = Number(args["join-after"] ?? 14);
const targetDir = process.env.CARGO_TARGET_DIR ?? join(root, "target");
const PRISM = args["prism-bin"] ?? join(targetDir, "release/prism");
const NGINX_MODULE = args["nginx-module"] ?? "/usr/lib/nginx/modules/ngx_rtmp_module.so";
const OUT = args.out ?? join(here, "results");
const HLS_JS = readFileSync(join(root, "crates/prism-transport-hls/assets/hls.min.js"));

// segment_ms is also the GOP: segments start on keyframes.
const CONFIGS = [
  { name: "prism-ll", relay: "prism", lowLatency: true, segmentMs: 1000, partMs: 200 },
  { name: "prism-ll-2s", relay: "prism", lowLatency: true, segmentMs: 2000, partMs: 200 },
  { name: "prism-classic", relay: "prism", lowLatency: false, segmentMs: 2000, partMs: 200 },
  { name: "nginx", relay: "nginx", lowLatency: false, segmentMs: 2000 },
  // hls.js plays classic HLS 3 target durations behind the end of the playlist by default
  // (liveSyncDurationCount, the spec's HOLD-BACK minimum); a player set to 2 shows what is
  // left when the player's margin is smaller.
  { name: "prism-classic-sync2", relay: "prism", lowLatency: false, segmentMs: 2000, partMs: 200, sync: 2 },
  { name: "nginx-sync2", relay: "nginx", lowLatency: false, segmentMs: 2000, sync: 2 },
].filter((c) => !args.only || args.only.split(",").includes(c.name));

const children = new Set();
function start(cmd, argv, logFile) {
  const c = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  const keep = (d) => {
    log = (log + d).slice(-20000);
  };
  c.stdout.on("data", keep);
  c.stderr.on("data", keep);
  c.log = () => log;
  children.add(c);
  c.on("exit", () => children.delete(c));
  return c;
}
async function stop(c) {
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once("exit", r));
  c.kill("SIGTERM");
  const t = setTimeout(() => c.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(t);
}
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    for (const c of children) c.kill("SIGKILL");
    process.exit(130);
  });
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => res(p));
    });
    s.on("error", rej);
  });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitHttp(url, deadlineMs, ok = (r) => r.ok) {
  const until = Date.now() + deadlineMs;
  for (;;) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(3000) });
      if (ok(r)) return;
    } catch {}
    if (Date.now() > until) throw new Error(`${url}: not ready within ${deadlineMs} ms`);
    await sleep(200);
  }
}

async function startRelay(cfg, dir) {
  const rtmp = await freePort();
  const http = await freePort();
  if (cfg.relay === "prism") {
    const conf = join(dir, "prism.toml");
    writeFileSync(
      conf,
      `[rtmp]\nlisten = "127.0.0.1:${rtmp}"\n\n[hls]\nlisten = "127.0.0.1:${http}"\n` +
        `segment_ms = ${cfg.segmentMs}\npart_ms = ${cfg.partMs}\nwindow_segments = 6\n`,
    );
    const proc = start(PRISM, ["--config", conf, "--log", "warn"]);
    // Prism's fMP4 timestamps are the publisher's RTMP timestamps (from 0 at the publish).
    return { proc, rtmp, http, playlist: `http://127.0.0.1:${http}/live/lat/index.m3u8`, tsOffsetMs: 0 };
  }
  mkdirSync(join(dir, "www/live"), { recursive: true });
  const conf = join(dir, "nginx.conf");
  writeFileSync(
    conf,
    `load_module ${NGINX_MODULE};
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
rtmp { server { listen 127.0.0.1:${rtmp}; chunk_size 4096;
  application live { live on; hls on; hls_path ${dir}/www/live; hls_fragment ${cfg.segmentMs}ms; hls_playlist_length ${cfg.segmentMs * 6}ms; } } }
http { access_log off; sendfile on;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
  server { listen 127.0.0.1:${http}; location / { root ${dir}/www; add_header Cache-Control no-cache; } } }
`,
  );
  const proc = start("nginx", ["-p", dir, "-e", join(dir, "error.log"), "-c", conf]);
  // nginx-rtmp writes TS timestamps 0.7 s ahead of the RTMP ones (NGX_RTMP_HLS_DELAY, 63000
  // ticks; ffprobe shows a publish starting at 0 as a first segment starting at 0.700).
  return { proc, rtmp, http, playlist: `http://127.0.0.1:${http}/live/lat.m3u8`, tsOffsetMs: 700 };
}

function publish(rtmp, gop) {
  // A moving test pattern and a tone, 720p25 at ~3 Mbit/s; keyframes every `gop` frames.
  const c = start("ffmpeg", [
    "-hide_banner", "-loglevel", "error", "-re",
    "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
    "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
    "-g", String(gop), "-keyint_min", String(gop), "-sc_threshold", "0", "-b:v", "3000k",
    "-c:a", "aac", "-b:a", "128k",
    "-f", "flv", `rtmp://127.0.0.1:${rtmp}/live/lat`,
    "-progress", "pipe:1", "-stats_period", "0.05",
  ]);
  // The wall-clock time of media time 0 at the publisher: every progress report says how
  // far the muxer got (`out_time_us`) after writing it, so now − out_time is an upper bound
  // of it; the smallest one seen is the tightest.
  let pending = "";
  let outUs = null;
  c.t0 = null;
  c.stdout.on("data", (d) => {
    pending += d;
    let i;
    while ((i = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, i).trim();
      pending = pending.slice(i + 1);
      if (line.startsWith("out_time_us=")) outUs = Number(line.slice(12));
      if (line.startsWith("progress=") && Number.isFinite(outUs) && outUs > 0) {
        const t0 = Date.now() - outUs / 1000;
        if (c.t0 === null || t0 < c.t0) c.t0 = t0;
      }
    }
  });
  return c;
}

const PAGE = (src, lowLatency, sync) => `<!doctype html><html><body>
<video id="v" muted autoplay playsinline></video>
<script src="/hls.min.js"></script>
<script>
  var v = document.getElementById("v");
  var hls = new Hls({ lowLatencyMode: ${lowLatency}${sync ? `, liveSyncDurationCount: ${sync}` : ""} });
  window.bench = { hls: hls, errors: [], stalls: 0, initPTS: null };
  // hls.js plays media time t at stream timestamp t + initPTS / timescale.
  hls.on(Hls.Events.INIT_PTS_FOUND, function (_e, d) { window.bench.initPTS = { pts: d.initPTS, timescale: d.timescale || 90000, id: d.id, cc: d.frag && d.frag.cc }; });
  hls.on(Hls.Events.ERROR, function (_e, d) { window.bench.errors.push(d.details + (d.fatal ? ":fatal" : "")); });
  v.addEventListener("waiting", function () { window.bench.stalls++; });
  hls.loadSource(${JSON.stringify(src)});
  hls.attachMedia(v);
  hls.on(Hls.Events.MANIFEST_PARSED, function () { v.play().catch(function () {}); });
</script></body></html>`;

function quantiles(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const q = (p) => (v.length ? v[Math.round((v.length - 1) * p)] : null);
  return { n: v.length, p50: q(0.5), p90: q(0.9), min: v[0] ?? null, max: v[v.length - 1] ?? null };
}

/// One viewer: a fresh page joins the stream, warms up, is sampled.
async function session(browser, origin, relay, cfg, pub) {
  const page = await browser.newPage();
  try {
    // The page and hls.js come from the relay's origin (intercepted: nginx serves neither),
    // so playlist and segment requests are same-origin for both relays.
    await page.route(`${origin}/__bench.html`, (r) =>
      r.fulfill({ contentType: "text/html", body: PAGE(relay.playlist, cfg.lowLatency, cfg.sync) }),
    );
    await page.route(`${origin}/hls.min.js`, (r) => r.fulfill({ contentType: "text/javascript", body: HLS_JS }));
    await page.goto(`${origin}/__bench.html`, { timeout: 20000 });
    await sleep(WARMUP * 1000);
    // Stalls and errors count from here: start-up is not what is measured.
    await page.evaluate(() => {
      window.bench.stalls = 0;
      window.bench.errors = [];
    });
    const samples = [];
    const end = Date.now() + SECONDS * 1000;
    while (Date.now() < end) {
      const x = await page.evaluate(() => {
        const h = window.bench.hls;
        const v = document.querySelector("video");
        const pd = h.playingDate;
        const ip = window.bench.initPTS;
        return {
          now: Date.now(),
          g2g_ms: pd ? Date.now() - pd.getTime() : null,
          hls_latency_ms: Number.isFinite(h.latency) ? h.latency * 1000 : null,
          currentTime: v.currentTime,
          stream_ms: ip ? (v.currentTime + ip.pts / ip.timescale) * 1000 : null,
          initPTS: ip,
        };
      });
      x.t0 = pub.t0;
      x.g2g_pub_ms = pub.t0 !== null && x.stream_ms !== null ? x.now - (pub.t0 + x.stream_ms - relay.tsOffsetMs) : null;
      if (process.env.HLS_LATENCY_DEBUG) process.stderr.write(JSON.stringify(x) + "\n");
      samples.push(x);
      await sleep(250);
    }
    const state = await page.evaluate(() => ({ errors: window.bench.errors.slice(-10), stalls: window.bench.stalls }));
    return {
      samples,
      advanced: samples.length > 1 ? samples[samples.length - 1].currentTime - samples[0].currentTime : 0,
      ...state,
    };
  } finally {
    await page.close();
  }
}

async function measure(cfg, browser) {
  const dir = mkdtempSync(join(tmpdir(), `hls-latency-${cfg.name}-`));
  const relay = await startRelay(cfg, dir);
  let pub;
  try {
    await waitHttp(`http://127.0.0.1:${relay.http}/`, 10000, () => true);
    pub = publish(relay.rtmp, Math.round((cfg.segmentMs / 1000) * 25));
    // Playable: the playlist answers (Prism holds the index until the first keyframe).
    await waitHttp(relay.playlist, 20000);
    await sleep(JOIN_AFTER * 1000);
    const origin = `http://127.0.0.1:${relay.http}`;
    // hls.js keeps the latency it starts with (no catch-up by default), and where it starts
    // depends on when it joined: several viewers, one after the other.
    const sessions = [];
    for (let i = 0; i < SESSIONS; i++) sessions.push(await session(browser, origin, relay, cfg, pub));
    const all = sessions.flatMap((x) => x.samples);
    return {
      ...cfg,
      seconds: SECONDS,
      warmup: WARMUP,
      join_after: JOIN_AFTER,
      sessions: SESSIONS,
      t0_source: "ffmpeg -progress: min(now - out_time)",
      glass_to_glass_ms: quantiles(all.map((s) => s.g2g_pub_ms)),
      session_glass_to_glass_p50_ms: sessions.map((x) => quantiles(x.samples.map((s) => s.g2g_pub_ms)).p50),
      pdt_age_ms: quantiles(all.map((s) => s.g2g_ms)),
      hls_latency_ms: quantiles(all.map((s) => s.hls_latency_ms)),
      playback_advanced_s: sessions.map((x) => x.advanced),
      stalls: sessions.reduce((a, x) => a + x.stalls, 0),
      errors: sessions.flatMap((x) => x.errors),
      load_avg: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "),
    };
  } catch (e) {
    return { ...cfg, error: String(e), relay_log: relay.proc.log().slice(-2000), ffmpeg_log: pub?.log().slice(-2000) };
  } finally {
    await stop(pub);
    await stop(relay.proc);
    rmSync(dir, { recursive: true, force: true });
  }
}

const fmt = (v) => (v === null || v === undefined ? "–" : Math.round(v).toString());
const executablePath = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p)) || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage"],
});
const results = [];
try {
  for (const cfg of CONFIGS) {
    process.stderr.write(`[hls-latency] ${cfg.name}: ${WARMUP} s warm-up + ${SECONDS} s\n`);
    const r = await measure(cfg, browser);
    process.stderr.write(`[hls-latency]   ${JSON.stringify(r)}\n`);
    results.push(r);
  }
} finally {
  await browser.close();
}
const date = new Date().toISOString().slice(0, 10);
let md =
  `## HLS glass-to-glass latency, hls.js in headless Chromium — ${date}\n\n` +
  `ffmpeg -re (x264 ultrafast zerolatency, 720p25 ~3 Mbit/s + AAC) → RTMP → relay → hls.js ${"(vendored)"} on loopback; ` +
  `${SESSIONS} viewers one after the other, the first joining ${JOIN_AFTER} s after the playlist appears; each: ${WARMUP} s warm-up, ` +
  `then ${SECONDS} s sampled every 250 ms (percentiles over all samples; per-viewer p50s listed). ` +
  `Load average at the end of each run in the table.\n\n` +
  `| config | hls.js settings | segment ms | part ms | glass-to-glass p50 / p90 ms (publisher clock) | per-viewer p50 ms | Date.now() − playingDate p50 / p90 ms | hls.latency p50 / p90 ms | playback advanced s | stalls (while sampled) | errors | load avg |\n` +
  `| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n`;
for (const r of results) {
  if (r.error) {
    md += `| ${r.name} | FAILED: ${r.error} |||||||||||\n`;
    continue;
  }
  md +=
    `| ${r.name} | lowLatencyMode ${r.lowLatency}${r.sync ? `, liveSyncDurationCount ${r.sync}` : ""} | ${r.segmentMs} | ${r.relay === "prism" ? r.partMs : "–"} | ` +
    `${fmt(r.glass_to_glass_ms.p50)} / ${fmt(r.glass_to_glass_ms.p90)} | ${r.session_glass_to_glass_p50_ms.map(fmt).join(", ")} | ${fmt(r.pdt_age_ms.p50)} / ${fmt(r.pdt_age_ms.p90)} | ` +
    `${fmt(r.hls_latency_ms.p50)} / ${fmt(r.hls_latency_ms.p90)} | ` +
    `${r.playback_advanced_s.map((a) => a.toFixed(1)).join(", ")} | ${r.stalls} | ${r.errors.length ? r.errors.join(" ") : 0} | ${r.load_avg} |\n`;
}
console.log(md);
mkdirSync(OUT, { recursive: true });
let stem = join(OUT, `${date}-hls-latency`);
for (let i = 2; existsSync(`${stem}.json`); i++) stem = join(OUT, `${date}-hls-latency-${i}`);
if (!args["no-write"]) {
  writeFileSync(`${stem}.json`, JSON.stringify({ date, seconds: SECONDS, warmup: WARMUP, sessions: SESSIONS, results }, null, 2));
  writeFileSync(`${stem}.md`, md);
  process.stderr.write(`[hls-latency] wrote ${stem}.{json,md}\n`);
}
