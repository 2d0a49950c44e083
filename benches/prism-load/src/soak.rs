//! `soak`: one Prism for a long time (an hour by default) with publishers, push targets and
//! players joining and leaving over every transport the tool can drive, destinations that
//! die, stall and refuse, and malformed input sprinkled in. Every few seconds it samples
//! Prism's RSS, fds, threads, live tokio tasks (`prism_runtime_alive_tasks`) and the number
//! of metric series; [`crate::soak_report`] turns that into slopes, a CSV, JSON and an SVG.
//!
//! Who does what (see benches/README.md, "Soak"):
//! - in process (prism-rtmp): RTMP publishers of the synthetic stream (frame markers), the
//!   push-target sink and RTMP players, all checked frame by frame for gaps;
//! - ffmpeg: RTMPS, RTMPT and SRT publishers, and RTMPS, RTMPT, SRT, RTSP and HLS players,
//!   of a real H.264/AAC clip (the exit status and the media received are what count);
//! - tests/py/gst_whep.py (GStreamer webrtcbin): WHEP viewers;
//! - srt-live-transmit: the SRT push destination, killed and restarted.

use crate::media::{Clock, Window};
use crate::player::Players;
use crate::publisher::{self, PubStats, PublishTarget};
use crate::relay::{self, free_port};
use crate::sink::{lock, Sink, SinkConn};
use crate::soak_report::{self, Sample, SoakSummary, Subscriber};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct SoakOpts {
    pub minutes: f64,
    pub sample_secs: u64,
    /// Synthetic RTMP publishers that stay for the whole run.
    pub stable_publishers: usize,
    /// In-process RTMP players that stay for the whole run (spread over those streams).
    pub stable_players: usize,
    /// A join (with its own lifetime) every this many ms.
    pub churn_ms: u64,
    /// Malformed input every this many ms.
    pub bad_ms: u64,
    /// External clients (ffmpeg, GStreamer) running at once, at most: the machine has few
    /// cores and they are not what is measured.
    pub max_external: usize,
    /// Bitrate of the synthetic publishers.
    pub kbps: u64,
    /// A fault phase of the faulty push target lasts this long.
    pub fault_phase_secs: u64,
    pub prism_bin: PathBuf,
    pub out_dir: PathBuf,
    pub keep_tmp: bool,
    pub seed: u64,
}

/// Tiny xorshift: the churn is reproducible from `--seed` and needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

#[derive(Clone, Copy)]
struct Ports {
    rtmp: u16,
    http: u16,
    rtmps: u16,
    rtmpt: u16,
    rtmpts: u16,
    srt: u16,
    rtsp: u16,
    hls: u16,
    webrtc: u16,
    webrtc_udp: u16,
    sink: u16,
    fault: u16,
    srt_dest: u16,
}

fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn prism_config(p: &Ports, dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"[rtmp]
listen = "127.0.0.1:{rtmp}"
[http]
listen = "127.0.0.1:{http}"
[rtmps]
listen = "127.0.0.1:{rtmps}"
cert = "{d}/cert.pem"
key = "{d}/key.pem"
[rtmpt]
listen = "127.0.0.1:{rtmpt}"
[rtmpts]
listen = "127.0.0.1:{rtmpts}"
cert = "{d}/cert.pem"
key = "{d}/key.pem"
[srt]
listen = "127.0.0.1:{srt}"
[rtsp]
listen = "127.0.0.1:{rtsp}"
[hls]
listen = "127.0.0.1:{hls}"
[webrtc]
listen = "127.0.0.1:{webrtc}"
udp = "127.0.0.1:{webrtc_udp}"
[stream]
reconnect_grace_ms = 2000
[limits]
max_connections_per_ip = 2000
max_connections = 4000

# The real clip: pushed over SRT to srt-live-transmit (killed and restarted).
[[route]]
stream = "real/*"
  [[route.target]]
  name = "srt_dest"
  url = "srt://127.0.0.1:{srt_dest}?latency=200"

# A pulled source: the real stream again, pulled over RTMP while someone plays it.
[[source]]
stream = "pulled/main"
url = "rtmp://127.0.0.1:{rtmp}/real/main"
on_demand = true
close_after_idle_ms = 5000

# A transcoding ladder on the real stream (one small rendition: real/main_low).
[[transcode]]
stream = "real/*"
  [[transcode.rendition]]
  name = "low"
  video = {{ codec = "h264", width = 160, height = 90, bitrate_kbps = 150, fps = 15, preset = "ultrafast" }}
  audio = {{ codec = "aac", bitrate_kbps = 64 }}

# Synthetic streams: one healthy RTMP target (checked for gaps) and one behind the fault
# proxy (killed, stalled, refusing in turn).
[[route]]
stream = "live/*"
  [[route.target]]
  name = "ok"
  url = "rtmp://127.0.0.1:{sink}/sink/{{stream}}"
  [[route.target]]
  name = "faulty"
  url = "rtmp://127.0.0.1:{fault}/sink/{{stream}}"
  overflow_disconnect_ms = 5000
"#,
        rtmp = p.rtmp,
        http = p.http,
        rtmps = p.rtmps,
        rtmpt = p.rtmpt,
        rtmpts = p.rtmpts,
        srt = p.srt,
        rtsp = p.rtsp,
        hls = p.hls,
        webrtc = p.webrtc,
        webrtc_udp = p.webrtc_udp,
        srt_dest = p.srt_dest,
        sink = p.sink,
        fault = p.fault,
    )
}

/// Runs `cmd` to completion (with a deadline); error with its stderr tail if it fails.
async fn run_tool(cmd: &mut Command, what: &str, limit: Duration) -> anyhow::Result<()> {
    let out = tokio::time::timeout(limit, cmd.kill_on_drop(true).output())
        .await
        .with_context(|| format!("{what}: timed out"))?
        .with_context(|| format!("{what}: spawn"))?;
    if !out.status.success() {
        let e = String::from_utf8_lossy(&out.stderr);
        bail!(
            "{what}: {}: {}",
            out.status,
            e.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        );
    }
    Ok(())
}

/// The real clip (H.264 without B-frames, for WHEP; keyframe every 2 s; AAC) and the RTMPS
/// certificate.
async fn prepare(dir: &Path) -> anyhow::Result<PathBuf> {
    let clip = dir.join("clip.flv");
    run_tool(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=640x360:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                "10",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-b:v",
                "800k",
                "-g",
                "50",
                "-bf",
                "0",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                "96k",
            ])
            .arg(&clip),
        "ffmpeg (make the clip)",
        Duration::from_secs(120),
    )
    .await?;
    run_tool(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "3",
                "-subj",
                "/CN=localhost",
                "-keyout",
            ])
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem")),
        "openssl (RTMPS certificate)",
        Duration::from_secs(30),
    )
    .await?;
    Ok(clip)
}

// ---------------------------------------------------------------------------------------
// The faulty destination: a TCP proxy in front of a second sink that cycles through
// pass → stall → pass → kill → pass → refuse.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Fault {
    Pass,
    Stall,
    Kill,
    Refuse,
}

const FAULT_CYCLE: [Fault; 6] = [
    Fault::Pass,
    Fault::Stall,
    Fault::Pass,
    Fault::Kill,
    Fault::Pass,
    Fault::Refuse,
];

struct FaultProxy {
    stalled: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Faults applied, by kind.
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Bytes the fault sink received by the end of each pass phase (recovery check).
    pass_bytes: Arc<Mutex<Vec<u64>>>,
}

fn bind_reuse(port: u16) -> anyhow::Result<TcpListener> {
    let s = TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
    Ok(s.listen(1024)?)
}

async fn proxy_conn(down: TcpStream, up_port: u16, stalled: Arc<AtomicBool>) {
    let Ok(up) = TcpStream::connect(("127.0.0.1", up_port)).await else {
        return;
    };
    let (mut dr, mut dw) = down.into_split();
    let (mut ur, mut uw) = up.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut ur, &mut dw).await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Stalled: Prism's writes pile up in its queue and then the socket buffers.
        if stalled.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        match tokio::time::timeout(Duration::from_millis(500), dr.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                if uw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    back.abort();
}

impl FaultProxy {
    fn start(
        port: u16,
        up_port: u16,
        phase: Duration,
        fault_sink: Arc<Sink>,
        mut stop: watch::Receiver<bool>,
    ) -> (FaultProxy, JoinHandle<()>) {
        let fp = FaultProxy {
            stalled: Arc::default(),
            conns: Arc::default(),
            counts: Arc::default(),
            pass_bytes: Arc::default(),
        };
        let (stalled, conns, counts, pass_bytes) = (
            fp.stalled.clone(),
            fp.conns.clone(),
            fp.counts.clone(),
            fp.pass_bytes.clone(),
        );
        let h = tokio::spawn(async move {
            let kill_all = |conns: &Mutex<Vec<JoinHandle<()>>>| {
                for c in lock(conns).drain(..) {
                    c.abort();
                }
            };
            let mut i = 0usize;
            loop {
                let f = FAULT_CYCLE[i % FAULT_CYCLE.len()];
                i += 1;
                if f != Fault::Pass {
                    *lock(&counts)
                        .entry(format!("{f:?}").to_lowercase())
                        .or_default() += 1;
                }
                stalled.store(f == Fault::Stall, Ordering::Relaxed);
                if matches!(f, Fault::Kill | Fault::Refuse) {
                    kill_all(&conns);
                }
                let listener = if f == Fault::Refuse {
                    None
                } else {
                    bind_reuse(port).ok()
                };
                let until = tokio::time::Instant::now() + phase;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => break,
                        _ = stop.changed() => { kill_all(&conns); return; }
                        a = async { listener.as_ref().unwrap().accept().await }, if listener.is_some() => {
                            if let Ok((sock, _)) = a {
                                let st = stalled.clone();
                                let h = tokio::spawn(proxy_conn(sock, up_port, st));
                                let mut v = lock(&conns);
                                v.retain(|h| !h.is_finished());
                                v.push(h);
                            }
                        }
                    }
                }
                if f == Fault::Pass {
                    let b = fault_sink
                        .snapshot()
                        .iter()
                        .map(|c| c.bytes.load(Ordering::Relaxed))
                        .sum();
                    lock(&pass_bytes).push(b);
                }
            }
        });
        (fp, h)
    }
}

// ---------------------------------------------------------------------------------------
// External clients.
// ---------------------------------------------------------------------------------------

/// Runs, clean runs and the first few failures of one kind of external client.
type ExtRuns = (u64, u64, Vec<String>);

#[derive(Default)]
struct ExtStats {
    by_kind: Mutex<BTreeMap<&'static str, ExtRuns>>,
    running: AtomicUsize,
}

impl ExtStats {
    fn record(&self, kind: &'static str, ok: Result<(), String>) {
        let mut m = lock(&self.by_kind);
        let e = m.entry(kind).or_default();
        e.0 += 1;
        match ok {
            Ok(()) => e.1 += 1,
            Err(s) => {
                if e.2.len() < 5 {
                    e.2.push(s);
                }
            }
        }
    }
}

/// Spawns `cmd` (an ffmpeg that runs for `secs`, or the WHEP script) and judges it when it
/// exits: `check` gets (exit ok, stdout, stderr).
fn spawn_external(
    stats: Arc<ExtStats>,
    kind: &'static str,
    mut cmd: Command,
    secs: u64,
    check: fn(bool, &str, &str) -> Result<(), String>,
) -> JoinHandle<()> {
    stats.running.fetch_add(1, Ordering::SeqCst);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    tokio::spawn(async move {
        let r = match cmd.spawn() {
            Err(e) => Err(format!("spawn: {e}")),
            Ok(child) => {
                match tokio::time::timeout(Duration::from_secs(secs + 30), child.wait_with_output())
                    .await
                {
                    Err(_) => Err("did not exit in time (killed)".to_owned()),
                    Ok(Err(e)) => Err(format!("wait: {e}")),
                    Ok(Ok(out)) => check(
                        out.status.success(),
                        &String::from_utf8_lossy(&out.stdout),
                        &String::from_utf8_lossy(&out.stderr),
                    ),
                }
            }
        };
        stats.record(kind, r);
        stats.running.fetch_sub(1, Ordering::SeqCst);
    })
}

fn tail(s: &str) -> String {
    s.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
}

/// ffmpeg publishers: ran to their `-t` and exited cleanly.
fn check_ffmpeg_pub(ok: bool, _out: &str, err: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(tail(err))
    }
}

/// ffmpeg players (`-f null`, `-stats_period`, `-progress pipe:1`): exited cleanly having
/// received video frames.
fn check_ffmpeg_play(ok: bool, out: &str, err: &str) -> Result<(), String> {
    let frames = out
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    if ok && frames > 0 {
        Ok(())
    } else {
        Err(format!("exit ok {ok}, {frames} frames: {}", tail(err)))
    }
}

/// gst_whep.py: one JSON line; decoded video frames > 0.
fn check_whep(_ok: bool, out: &str, err: &str) -> Result<(), String> {
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    if v["video_frames"].as_u64().unwrap_or(0) > 0 {
        Ok(())
    } else {
        Err(format!("{line} {}", tail(err)))
    }
}

fn ffmpeg() -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-loglevel", "error"]);
    c
}

/// The PyAV venv's Python (FFmpeg 8), as the tests find it.
fn pyav_python() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("pyav-venv/bin/python")
}

fn ffmpeg_publish(clip: &Path, secs: u64, format: &str, url: &str) -> Command {
    let mut c = ffmpeg();
    c.args(["-re", "-stream_loop", "-1", "-i"]).arg(clip).args([
        "-t",
        &secs.to_string(),
        "-c",
        "copy",
        "-f",
        format,
        url,
    ]);
    c
}

fn ffmpeg_play(pre: &[&str], url: &str, secs: u64) -> Command {
    let mut c = ffmpeg();
    c.args(pre).args(["-i", url]).args([
        "-t",
        &secs.to_string(),
        "-c",
        "copy",
        "-f",
        "null",
        "-",
        "-progress",
        "pipe:1",
    ]);
    c
}

// ---------------------------------------------------------------------------------------
// Malformed input.
// ---------------------------------------------------------------------------------------

/// Files of the fuzz corpus of `target` (crates/prism-fuzz-check replays the same ones).
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

struct BadInput {
    rtmp: Vec<PathBuf>,
    rtmpt: Vec<PathBuf>,
    srt: Vec<PathBuf>,
    sent: Mutex<BTreeMap<&'static str, u64>>,
}

/// Writes `bytes` to a fresh TCP connection and reads until close (at most 3 s).
async fn tcp_garbage(port: u16, bytes: &[u8]) {
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_secs(2),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return;
    };
    let _ = s.write_all(bytes).await;
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

impl BadInput {
    fn new() -> BadInput {
        BadInput {
            rtmp: [
                "rtmp_handshake",
                "rtmp_session",
                "rtmp_chunk",
                "rtmpe_handshake",
            ]
            .iter()
            .flat_map(|t| corpus(t))
            .collect(),
            rtmpt: corpus("rtmpt_request"),
            srt: corpus("srt_handshake"),
            sent: Mutex::default(),
        }
    }

    fn pick(v: &[PathBuf], rng: &mut Rng) -> Vec<u8> {
        if v.is_empty() {
            return vec![0x03; 1537];
        }
        std::fs::read(&v[rng.next() as usize % v.len()]).unwrap_or_default()
    }

    /// One piece of bad input, chosen by `rng`.
    async fn send_one(&self, p: &Ports, rng: &mut Rng) {
        let kind: &'static str;
        let junk: Vec<u8> = (0..rng.range(16, 4096)).map(|_| rng.next() as u8).collect();
        match rng.next() % 8 {
            0 => {
                kind = "rtmp_corpus";
                let b = Self::pick(&self.rtmp, rng);
                tcp_garbage(p.rtmp, &b).await;
            }
            1 => {
                kind = "rtmpt_corpus";
                let b = Self::pick(&self.rtmpt, rng);
                tcp_garbage(p.rtmpt, &b).await;
            }
            2 => {
                kind = "srt_corpus";
                let b = Self::pick(&self.srt, rng);
                if let Ok(s) = tokio::net::UdpSocket::bind("127.0.0.1:0").await {
                    let _ = s.send_to(&b, ("127.0.0.1", p.srt)).await;
                    let _ = s.send_to(&junk, ("127.0.0.1", p.srt)).await;
                }
            }
            3 => {
                kind = "rtmps_junk";
                tcp_garbage(p.rtmps, &junk).await;
            }
            4 => {
                kind = "rtsp_junk";
                let mut b = b"DESCRIBE rtsp://127.0.0.1/live/s0 RTSP/1.0\r\nCSeq: x\r\nContent-Length: 99999999\r\n\r\n".to_vec();
                b.extend_from_slice(&junk);
                tcp_garbage(p.rtsp, &b).await;
            }
            5 => {
                kind = "hls_bad_http";
                let reqs: [&[u8]; 3] = [
                    b"GET /../../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"GET /live/s0/index.m3u8?_HLS_msn=99999999&_HLS_part=0 HTTP/1.1\r\n\r\n",
                    b"BREW /live/s0/ HTTP/1.1\r\nHost: x\r\nX: ",
                ];
                let mut b = reqs[rng.next() as usize % reqs.len()].to_vec();
                b.extend_from_slice(&junk);
                tcp_garbage(p.hls, &b).await;
            }
            6 => {
                kind = "whep_bad_sdp";
                let body = String::from_utf8_lossy(&junk).into_owned();
                let req = format!(
                    "POST /real/main/whep HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\nv=0\r\n{body}",
                    body.len() + 5
                );
                tcp_garbage(p.webrtc, req.as_bytes()).await;
            }
            _ => {
                kind = "rtmp_silent";
                // Connects and says nothing: the handshake timeout must close it.
                tcp_garbage(p.rtmp, &[]).await;
            }
        }
        *lock(&self.sent).entry(kind).or_default() += 1;
    }
}

// ---------------------------------------------------------------------------------------
// Sampling.
// ---------------------------------------------------------------------------------------

fn sample(pid: u32, http: u16, t0: Instant, actors: &Actors) -> Sample {
    let pid_s = pid.to_string();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    let metrics = relay::http_get(http, "/metrics").unwrap_or_default();
    let series = metrics
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count() as u64;
    Sample {
        t_s: t0.elapsed().as_secs_f64(),
        rss_mb: relay::status_field(&pid_s, "VmRSS").unwrap_or(0) as f64 / 1024.0,
        fds,
        threads: relay::status_field(&pid_s, "Threads").unwrap_or(0),
        tasks: relay::metric_sum(&metrics, "prism_runtime_alive_tasks") as u64,
        series,
        streams: relay::metric_sum(&metrics, "prism_streams_active") as u64,
        connections: relay::metric_sum(&metrics, "prism_connections_active") as u64,
        rtmp_players: actors.players.load(Ordering::Relaxed) as u64,
        publishers: actors.publishers.load(Ordering::Relaxed) as u64,
        external: actors.external.load(Ordering::Relaxed) as u64,
    }
}

#[derive(Default)]
struct Actors {
    players: AtomicUsize,
    publishers: AtomicUsize,
    external: AtomicUsize,
}

// ---------------------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------------------

struct Publisher {
    stop: watch::Sender<bool>,
    _media: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

fn start_publisher(
    port: u16,
    key: &str,
    stream: u16,
    kbps: u64,
    clock: Clock,
    window: &Arc<Window>,
) -> Publisher {
    let (stop, stop_rx) = watch::channel(false);
    let (media, media_rx) = watch::channel(true);
    let task = tokio::spawn(publisher::run(
        PublishTarget {
            port,
            app: "live".into(),
            key: key.into(),
            stream,
            speed: 1,
        },
        kbps,
        clock,
        window.clone(),
        Arc::new(PubStats::default()),
        media_rx,
        stop_rx,
    ));
    Publisher {
        stop,
        _media: media,
        task,
    }
}

fn subscriber(kind: &str, c: &SinkConn, churn: bool) -> Subscriber {
    let st = lock(&c.stats);
    Subscriber {
        kind: kind.to_owned(),
        name: lock(&c.name).clone(),
        churn,
        video: st.video_msgs,
        audio: st.audio_msgs,
        gaps: st.gaps,
        reorders: st.reorders,
        error: lock(&c.error).clone(),
    }
}

pub async fn run(o: &SoakOpts) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("prism-load/soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let clip = prepare(&dir).await?;
    let clock = Clock::new();
    let window = Arc::new(Window::new());
    window.open(0);

    // Destinations first: Prism pushes as soon as a stream goes live.
    let sink = Arc::new(Sink::start(1_000_000, 1_000_000, clock, window.clone()).await?);
    let fault_sink = Arc::new(Sink::start(0, 1, clock, window.clone()).await?);
    let p = Ports {
        rtmp: free_port()?,
        http: free_port()?,
        rtmps: free_port()?,
        rtmpt: free_port()?,
        rtmpts: free_port()?,
        srt: free_udp_port()?,
        rtsp: free_port()?,
        hls: free_port()?,
        webrtc: free_port()?,
        webrtc_udp: free_udp_port()?,
        sink: sink.port,
        fault: free_port()?,
        srt_dest: free_udp_port()?,
    };
    let conf = dir.join("prism.toml");
    std::fs::write(&conf, prism_config(&p, &dir))?;
    let stderr_path = dir.join("prism.stderr");
    let mut prism = std::process::Command::new(&o.prism_bin)
        .arg("--config")
        .arg(&conf)
        .args(["--log", "warn"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("prism.stdout"))?)
        .stderr(std::fs::File::create(&stderr_path)?)
        .spawn()
        .with_context(|| format!("spawning {}", o.prism_bin.display()))?;
    let pid = prism.id();
    // Up when /healthz answers.
    let up = Instant::now();
    while relay::http_get(p.http, "/healthz").is_err() {
        if let Ok(Some(st)) = prism.try_wait() {
            bail!(
                "prism exited at start-up ({st}): {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        if up.elapsed() > Duration::from_secs(20) {
            bail!("prism did not answer /healthz within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("[soak] prism pid {pid} up; dir {}", dir.display());

    let (stop_tx, stop_rx) = watch::channel(false);
    let (fault, fault_task) = FaultProxy::start(
        p.fault,
        fault_sink.port,
        Duration::from_secs(o.fault_phase_secs),
        fault_sink.clone(),
        stop_rx.clone(),
    );
    let actors = Arc::new(Actors::default());
    let ext = Arc::new(ExtStats::default());
    let t0 = Instant::now();
    let total = Duration::from_secs_f64(o.minutes * 60.0);

    // Stable actors.
    let mut stable_pubs = Vec::new();
    for i in 0..o.stable_publishers {
        stable_pubs.push(start_publisher(
            p.rtmp,
            &format!("s{i}"),
            i as u16,
            o.kbps,
            clock,
            &window,
        ));
    }
    actors
        .publishers
        .fetch_add(o.stable_publishers, Ordering::Relaxed);
    // The real stream (for the ffmpeg, RTSP, HLS, SRT and WHEP players): ffmpeg over RTMP,
    // restarted if it ever exits.
    let real_restarts = Arc::new(AtomicU64::new(0));
    let real_task = {
        let (clip, url, restarts, mut stop) = (
            clip.clone(),
            format!("rtmp://127.0.0.1:{}/real/main", p.rtmp),
            real_restarts.clone(),
            stop_rx.clone(),
        );
        tokio::spawn(async move {
            loop {
                let mut c = ffmpeg_publish(&clip, 86_400, "flv", &url);
                c.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true);
                let Ok(mut child) = c.spawn() else { return };
                tokio::select! {
                    _ = child.wait() => { restarts.fetch_add(1, Ordering::Relaxed); }
                    _ = stop.changed() => { let _ = child.kill().await; return; }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    // srt-live-transmit as the SRT push destination: up 80 s, killed for 15 s.
    let srt_kills = Arc::new(AtomicU64::new(0));
    let srt_task = {
        let (port, kills, mut stop) = (p.srt_dest, srt_kills.clone(), stop_rx.clone());
        tokio::spawn(async move {
            loop {
                let mut c = Command::new("srt-live-transmit");
                c.args([
                    "-q",
                    &format!("srt://127.0.0.1:{port}?mode=listener"),
                    "file://con",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
                let Ok(mut child) = c.spawn() else { return };
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(80)) => {}
                    _ = stop.changed() => { let _ = child.kill().await; return; }
                }
                let _ = child.kill().await;
                kills.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(15)) => {}
                    _ = stop.changed() => return,
                }
            }
        })
    };
    // Let the stable streams go live before the players join.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stable_players = Players::new();
    for i in 0..o.stable_players {
        let key = format!("s{}", i % o.stable_publishers.max(1));
        stable_players
            .connect(
                p.rtmp,
                "live",
                &key,
                1,
                1,
                0,
                Duration::from_secs(10),
                clock,
                window.clone(),
                |_| {},
            )
            .await?;
    }
    actors
        .players
        .fetch_add(o.stable_players, Ordering::Relaxed);

    // Sampler.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let stem = crate::report::result_stem(&o.out_dir, Some("soak"));
    std::fs::create_dir_all(&o.out_dir)?;
    let csv_path = stem.with_extension("csv");
    let sampler = {
        let (samples, actors, csv_path, mut stop) = (
            samples.clone(),
            actors.clone(),
            csv_path.clone(),
            stop_rx.clone(),
        );
        let (http, every) = (p.http, Duration::from_secs(o.sample_secs.max(1)));
        tokio::spawn(async move {
            let _ = std::fs::write(&csv_path, format!("{}\n", Sample::CSV_HEADER));
            loop {
                let s = tokio::task::block_in_place(|| sample(pid, http, t0, &actors));
                if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&csv_path) {
                    use std::io::Write as _;
                    let _ = writeln!(f, "{}", s.csv());
                }
                lock(&samples).push(s);
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => return,
                }
            }
        })
    };

    // Bad input.
    let bad = Arc::new(BadInput::new());
    let bad_task = {
        let (bad, mut stop, every) = (
            bad.clone(),
            stop_rx.clone(),
            Duration::from_millis(o.bad_ms.max(100)),
        );
        let mut rng = Rng(o.seed ^ 0x9e37_79b9_7f4a_7c15);
        let ports = Ports { ..p };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = bad.send_one(&ports, &mut rng) => {}
                    _ = stop.changed() => return,
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => return,
                }
            }
        })
    };

    // Churn: one join every churn_ms, each with its own lifetime.
    let mut rng = Rng(o.seed.max(1));
    let mut churn_pubs: Vec<(Instant, Publisher)> = Vec::new();
    let mut churn_players: Vec<(Instant, Players)> = Vec::new();
    let mut done_players: Vec<Subscriber> = Vec::new();
    let mut ext_tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut k: u64 = 0;
    let mut last_log = Instant::now();
    let real = |scheme: &str, port: u16| format!("{scheme}://127.0.0.1:{port}/real/main");
    while t0.elapsed() < total {
        if let Ok(Some(st)) = prism.try_wait() {
            eprintln!("[soak] PRISM EXITED: {st}");
            break;
        }
        let now = Instant::now();
        // Leavers.
        churn_pubs.retain(|(end, pb)| {
            if *end <= now || pb.task.is_finished() {
                let _ = pb.stop.send(true);
                actors.publishers.fetch_sub(1, Ordering::Relaxed);
                false
            } else {
                true
            }
        });
        let mut i = 0;
        while i < churn_players.len() {
            if churn_players[i].0 <= now {
                let (_, pl) = churn_players.swap_remove(i);
                for c in pl.snapshot() {
                    done_players.push(subscriber("rtmp player (churn)", &c, true));
                }
                pl.shutdown();
                actors.players.fetch_sub(1, Ordering::Relaxed);
            } else {
                i += 1;
            }
        }
        ext_tasks.retain(|h| !h.is_finished());
        actors
            .external
            .store(ext.running.load(Ordering::Relaxed), Ordering::Relaxed);

        // A joiner.
        k += 1;
        let life = rng.range(15, 90);
        let external_ok = ext.running.load(Ordering::Relaxed) < o.max_external;
        let mut spawn =
            |kind: &'static str,
             cmd: Command,
             check: fn(bool, &str, &str) -> Result<(), String>| {
                ext_tasks.push(spawn_external(ext.clone(), kind, cmd, life, check));
            };
        match k % 12 {
            0 | 6 => {
                let key = format!("c{k}");
                churn_pubs.push((
                    now + Duration::from_secs(life),
                    start_publisher(
                        p.rtmp,
                        &key,
                        (100 + k % 60000) as u16,
                        o.kbps,
                        clock,
                        &window,
                    ),
                ));
                actors.publishers.fetch_add(1, Ordering::Relaxed);
            }
            1 | 7 => {
                let pl = Players::new();
                let key = format!("s{}", k as usize % o.stable_publishers.max(1));
                let _ = pl
                    .connect(
                        p.rtmp,
                        "live",
                        &key,
                        1,
                        1,
                        0,
                        Duration::from_secs(10),
                        clock,
                        window.clone(),
                        |_| {},
                    )
                    .await;
                churn_players.push((now + Duration::from_secs(life), pl));
                actors.players.fetch_add(1, Ordering::Relaxed);
            }
            2 if external_ok && k % 24 == 14 => spawn(
                "rtmpts publisher",
                ffmpeg_publish(
                    &clip,
                    life,
                    "flv",
                    &format!("rtmpts://127.0.0.1:{}/live/tt{k}", p.rtmpts),
                ),
                check_ffmpeg_pub,
            ),
            2 if external_ok => spawn(
                "rtmps publisher",
                ffmpeg_publish(
                    &clip,
                    life,
                    "flv",
                    &format!("rtmps://127.0.0.1:{}/live/tls{k}", p.rtmps),
                ),
                check_ffmpeg_pub,
            ),
            3 if external_ok && k % 24 == 15 => {
                // FFmpeg 8's whip muxer (PyAV, in the venv scripts/test.sh makes), with the
                // P-256 certificate (the one its GnuTLS generates is not accepted).
                let mut c = Command::new(pyav_python());
                c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/py/pyav_whip.py"))
                    .arg(format!("http://127.0.0.1:{}/live/whip{k}/whip", p.webrtc))
                    .arg("")
                    .arg(life.min(60).to_string())
                    .arg(dir.join("cert.pem"))
                    .arg(dir.join("key.pem"));
                spawn("whip publisher", c, check_ffmpeg_pub);
            }
            3 if external_ok => spawn(
                "rtmpt publisher",
                ffmpeg_publish(
                    &clip,
                    life,
                    "flv",
                    &format!("rtmpt://127.0.0.1:{}/live/rt{k}", p.rtmpt),
                ),
                check_ffmpeg_pub,
            ),
            4 if external_ok => spawn(
                "srt publisher",
                ffmpeg_publish(
                    &clip,
                    life,
                    "mpegts",
                    &format!("srt://127.0.0.1:{}?streamid=publish:live/srt{k}", p.srt),
                ),
                check_ffmpeg_pub,
            ),
            5 if external_ok && k % 24 == 17 => spawn(
                "dash viewer",
                ffmpeg_play(
                    &[],
                    &format!("http://127.0.0.1:{}/real/main/manifest.mpd", p.hls),
                    life,
                ),
                check_ffmpeg_play,
            ),
            5 if external_ok => spawn(
                "hls viewer",
                ffmpeg_play(
                    &[],
                    &format!("http://127.0.0.1:{}/real/main/index.m3u8", p.hls),
                    life,
                ),
                check_ffmpeg_play,
            ),
            // Every other RTSP slot over UDP stays (k % 24 == 20 with k % 48 == 44).
            8 if external_ok && k % 48 == 20 => spawn(
                "pulled-source player",
                ffmpeg_play(
                    &[],
                    &format!("rtmp://127.0.0.1:{}/pulled/main", p.rtmp),
                    life,
                ),
                check_ffmpeg_play,
            ),
            8 if external_ok => spawn(
                "rtsp player",
                ffmpeg_play(
                    &["-rtsp_transport", if k % 24 == 8 { "tcp" } else { "udp" }],
                    &real("rtsp", p.rtsp),
                    life,
                ),
                check_ffmpeg_play,
            ),
            9 if external_ok && k % 24 == 21 => spawn(
                "rendition player",
                ffmpeg_play(
                    &[],
                    &format!("rtmp://127.0.0.1:{}/real/main_low", p.rtmp),
                    life,
                ),
                check_ffmpeg_play,
            ),
            9 if external_ok => spawn(
                "srt player",
                ffmpeg_play(
                    &["-f", "mpegts"],
                    &format!("srt://127.0.0.1:{}?streamid=read:real/main", p.srt),
                    life,
                ),
                check_ffmpeg_play,
            ),
            10 if external_ok => {
                if k % 24 == 10 {
                    spawn(
                        "rtmps player",
                        ffmpeg_play(&[], &real("rtmps", p.rtmps), life),
                        check_ffmpeg_play,
                    )
                } else {
                    spawn(
                        "rtmpt player",
                        ffmpeg_play(&[], &real("rtmpt", p.rtmpt), life),
                        check_ffmpeg_play,
                    )
                }
            }
            11 if external_ok && k % 36 == 11 => {
                // The system Python: GStreamer's bindings (gi) live there, not in venvs.
                let mut c = Command::new("/usr/bin/python3");
                c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/py/gst_whep.py"))
                    .arg(format!("http://127.0.0.1:{}/real/main/whep", p.webrtc))
                    .arg(life.min(30).to_string());
                spawn("whep viewer", c, check_whep);
            }
            _ => {}
        }
        if last_log.elapsed() > Duration::from_secs(60) {
            last_log = Instant::now();
            if let Some(s) = lock(&samples).last() {
                eprintln!(
                    "[soak] {:.1} min: rss {:.1} MB, fds {}, threads {}, tasks {}, series {}, streams {}, conns {}",
                    s.t_s / 60.0, s.rss_mb, s.fds, s.threads, s.tasks, s.series, s.streams, s.connections
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(o.churn_ms.max(100))).await;
    }
    let duration_s = t0.elapsed().as_secs_f64();

    // Wind down: judge before stopping anything (the stable ones are still healthy now).
    let _ = stop_tx.send(true);
    let mut subs: Vec<Subscriber> = Vec::new();
    for c in stable_players.snapshot() {
        subs.push(subscriber("rtmp player (stable)", &c, false));
    }
    for (_, pl) in &churn_players {
        for c in pl.snapshot() {
            subs.push(subscriber("rtmp player (churn)", &c, true));
        }
    }
    subs.extend(done_players);
    for c in sink.snapshot() {
        let name = lock(&c.name).clone();
        let stable = (0..o.stable_publishers).any(|i| name == format!("sink/s{i}"));
        // Streams published by ffmpeg (tls*, rt*, srt*) carry no frame markers: not checked.
        let kind = if stable {
            "push target ok (stable)"
        } else if name.starts_with("sink/c") {
            "push target ok (churn)"
        } else {
            continue;
        };
        subs.push(subscriber(kind, &c, !stable));
    }
    for pb in churn_pubs
        .drain(..)
        .map(|x| x.1)
        .chain(stable_pubs.drain(..))
    {
        let _ = pb.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), pb.task).await;
    }
    // External clients still running are cut by the end of the run (and not judged).
    let cut = Instant::now() + Duration::from_secs(10);
    while ext_tasks.iter().any(|h| !h.is_finished()) && Instant::now() < cut {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for h in ext_tasks.drain(..) {
        h.abort();
    }
    for h in [sampler, bad_task, fault_task, real_task, srt_task] {
        let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
    }
    stable_players.shutdown();
    let exited = prism.try_wait().ok().flatten().map(|s| s.to_string());
    let _ = prism.kill();
    let _ = prism.wait();
    sink.shutdown();
    fault_sink.shutdown();

    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let panics: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains("panicked"))
        .map(str::to_owned)
        .collect();
    let mut external = BTreeMap::new();
    for (kind, (runs, ok, fails)) in lock(&ext.by_kind).iter() {
        external.insert(
            kind.to_string(),
            serde_json::json!({ "runs": runs, "ok": ok, "failures": fails }),
        );
    }
    let mut faults: BTreeMap<String, u64> = lock(&fault.counts).clone();
    faults.insert("srt_dest_killed".into(), srt_kills.load(Ordering::Relaxed));
    let summary = SoakSummary {
        environment: String::new(),
        minutes_planned: o.minutes,
        duration_s,
        sample_secs: o.sample_secs,
        churn_joins: k,
        prism_exited: exited,
        panics,
        stderr_lines: stderr.lines().count(),
        faults,
        fault_sink_bytes_after_pass: lock(&fault.pass_bytes).clone(),
        bad_input: lock(&bad.sent)
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        external,
        real_publisher_restarts: real_restarts.load(Ordering::Relaxed),
        subscribers: subs,
    };
    let samples = lock(&samples).clone();
    soak_report::write(&stem, &samples, summary)?;
    if !o.keep_tmp {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        let mut s = String::new();
        let _ = write!(s, "{}", dir.display());
        eprintln!("[soak] kept {s}");
    }
    Ok(())
}
