// Glass-to-glass latency of HLS with hls.js in headless Chromium, on loopback (issue 12's
// benchmark). For each configuration: start the relay, publish a live test pattern with
// `ffmpeg -re` over RTMP, open a minimal page with the vendored hls.js in Chromium
// (playwright-core from tests/js), and sample every 250 ms for SECONDS after a warm-up:
//   - `Date.now() - hls.playingDate`: the wall-clock age of the frame on screen. Prism's
//     EXT-X-PROGRAM-DATE-TIME is the arrival time of the segment's first frame at Prism;
//     on loopback that is the publisher's send time within a few ms, so this is
//     glass-to-glass minus the encoder (x264 `-tune zerolatency`, no lookahead).
//   - `hls.latency`: hls.js's own estimate, the distance from the live edge of the playlist
//     (it cannot see how long a frame took to be listed).
// nginx-rtmp writes no PROGRAM-DATE-TIME, so only `hls.latency` exists for it.
//
//   node benches/hls-latency.mjs [--seconds 30] [--warmup 10] [--only prism-ll,prism-classic,nginx]
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
const SECONDS = Number(args.seconds ?? 30);
const WARMUP = Number(args.warmup ?? 10);
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
    return { proc, rtmp, http, playlist: `http://127.0.0.1:${http}/live/lat/index.m3u8` };
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
  return { proc, rtmp, http, playlist: `http://127.0.0.1:${http}/live/lat.m3u8` };
}

function publish(rtmp, gop) {
  // A moving test pattern and a tone, 720p25 at ~3 Mbit/s; keyframes every `gop` frames.
  return start("ffmpeg", [
    "-hide_banner", "-loglevel", "error", "-re",
    "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
    "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
    "-g", String(gop), "-keyint_min", String(gop), "-sc_threshold", "0", "-b:v", "3000k",
    "-c:a", "aac", "-b:a", "128k",
    "-f", "flv", `rtmp://127.0.0.1:${rtmp}/live/lat`,
  ]);
}

const PAGE = (src, lowLatency) => `<!doctype html><html><body>
<video id="v" muted autoplay playsinline></video>
<script src="/hls.min.js"></script>
<script>
  var v = document.getElementById("v");
  var hls = new Hls({ lowLatencyMode: ${lowLatency} });
  window.bench = { hls: hls, errors: [], stalls: 0 };
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

async function measure(cfg, browser) {
  const dir = mkdtempSync(join(tmpdir(), `hls-latency-${cfg.name}-`));
  const relay = await startRelay(cfg, dir);
  let pub;
  const page = await browser.newPage();
  try {
    await waitHttp(`http://127.0.0.1:${relay.http}/`, 10000, () => true);
    pub = publish(relay.rtmp, Math.round((cfg.segmentMs / 1000) * 25));
    // Playable: the playlist answers (Prism holds the index until the first keyframe).
    await waitHttp(relay.playlist, 20000);
    const origin = `http://127.0.0.1:${relay.http}`;
    // The page and hls.js come from the relay's origin (intercepted: nginx serves neither),
    // so playlist and segment requests are same-origin for both relays.
    await page.route(`${origin}/__bench.html`, (r) =>
      r.fulfill({ contentType: "text/html", body: PAGE(relay.playlist, cfg.lowLatency) }),
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
      samples.push(
        await page.evaluate(() => {
          const h = window.bench.hls;
          const v = document.querySelector("video");
          const pd = h.playingDate;
          return {
            now: Date.now(),
            g2g_ms: pd ? Date.now() - pd.getTime() : null,
            hls_latency_ms: Number.isFinite(h.latency) ? h.latency * 1000 : null,
            currentTime: v.currentTime,
            paused: v.paused,
          };
        }),
      );
      await sleep(250);
    }
    const state = await page.evaluate(() => ({ errors: window.bench.errors.slice(-10), stalls: window.bench.stalls }));
    const advanced = samples.length > 1 ? samples[samples.length - 1].currentTime - samples[0].currentTime : 0;
    return {
      ...cfg,
      seconds: SECONDS,
      warmup: WARMUP,
      playback_advanced_s: advanced,
      glass_to_glass_ms: quantiles(samples.map((s) => s.g2g_ms)),
      hls_latency_ms: quantiles(samples.map((s) => s.hls_latency_ms)),
      stalls: state.stalls,
      errors: state.errors,
      load_avg: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "),
    };
  } catch (e) {
    return { ...cfg, error: String(e), relay_log: relay.proc.log().slice(-2000), ffmpeg_log: pub?.log().slice(-2000) };
  } finally {
    await page.close();
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
  `${WARMUP} s warm-up, then ${SECONDS} s sampled every 250 ms. Load average at the end of each run in the table.\n\n` +
  `| config | hls.js lowLatencyMode | segment ms | part ms | glass-to-glass p50 / p90 ms (Date.now() − playingDate) | hls.latency p50 / p90 ms | playback advanced s | stalls (while sampled) | errors | load avg |\n` +
  `| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n`;
for (const r of results) {
  if (r.error) {
    md += `| ${r.name} | FAILED: ${r.error} |||||||||\n`;
    continue;
  }
  md +=
    `| ${r.name} | ${r.lowLatency} | ${r.segmentMs} | ${r.relay === "prism" ? r.partMs : "–"} | ` +
    `${fmt(r.glass_to_glass_ms.p50)} / ${fmt(r.glass_to_glass_ms.p90)} | ${fmt(r.hls_latency_ms.p50)} / ${fmt(r.hls_latency_ms.p90)} | ` +
    `${r.playback_advanced_s.toFixed(1)} | ${r.stalls} | ${r.errors.length ? r.errors.join(" ") : 0} | ${r.load_avg} |\n`;
}
console.log(md);
mkdirSync(OUT, { recursive: true });
let stem = join(OUT, `${date}-hls-latency`);
for (let i = 2; existsSync(`${stem}.json`); i++) stem = join(OUT, `${date}-hls-latency-${i}`);
if (!args["no-write"]) {
  writeFileSync(`${stem}.json`, JSON.stringify({ date, seconds: SECONDS, warmup: WARMUP, results }, null, 2));
  writeFileSync(`${stem}.md`, md);
  process.stderr.write(`[hls-latency] wrote ${stem}.{json,md}\n`);
}
