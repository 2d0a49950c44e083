//! The `hls` scenarios: one RTMP publisher → N HTTP clients behaving like HLS players,
//! against Prism (`[hls]`, LL-HLS with blocking reloads and parts) and nginx (nginx-rtmp
//! `hls on` writing MPEG-TS segments into a directory the same nginx serves as static
//! files); and `hls-memory`: what a stream's live or DVR window costs Prism in memory.
//! See benches/README.md ("HLS").

use crate::http1::Client;
use crate::media::{self, Clock, Window};
use crate::publisher::{self, PubStats, PublishTarget};
use crate::relay::{self, HlsSpec, RelayKind, RelayPaths};
use anyhow::bail;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct HlsOpts {
    pub relay: RelayKind,
    /// `hls`: clients; `hls-memory`: streams.
    pub count: usize,
    pub seconds: u64,
    pub warmup_seconds: u64,
    pub bitrate_kbps: u64,
    pub segment_ms: u64,
    pub part_ms: u64,
    pub window_segments: usize,
    pub dvr_window_s: u64,
    pub dvr_max_mb: u64,
    pub dvr_dir: Option<PathBuf>,
    /// Publisher speed (media seconds per wall second) for `hls-memory`.
    pub speed: u32,
    /// Clients started at a time.
    pub batch: usize,
    /// Prism: clients play classic HLS (poll the playlists, fetch complete segments) instead
    /// of LL-HLS, the same request pattern as against nginx.
    pub classic: bool,
    pub connect_timeout: Duration,
    pub paths: RelayPaths,
    pub keep_tmp: bool,
}

fn progress(msg: impl AsRef<str>) {
    eprintln!("[prism-load] {}", msg.as_ref());
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// Playlists and markers

/// What a client needs from a media playlist.
#[derive(Debug, Default, Clone, PartialEq)]
struct Playlist {
    target_s: f64,
    /// `EXT-X-MAP` URI.
    map: Option<String>,
    /// Complete segments: (msn, uri, duration).
    segments: Vec<(u64, String, f64)>,
    /// Parts, in order: ((msn, index), uri).
    parts: Vec<((u64, u64), String)>,
    /// The part a blocking reload should ask for next: the open segment and how many of
    /// its parts are listed (RFC 8216bis 6.2.5.2, as hls.js computes it).
    next: (u64, u64),
}

impl Playlist {
    fn parse(text: &str) -> Playlist {
        let mut p = Playlist::default();
        let mut msn = 0u64;
        let mut part = 0u64;
        let mut extinf: Option<f64> = None;
        for line in text.lines() {
            let line = line.trim();
            if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                msn = v.parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                p.target_s = v.parse().unwrap_or(0.0);
            } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
                p.map = attr(v, "URI");
            } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
                if let Some(uri) = attr(v, "URI") {
                    p.parts.push(((msn, part), uri));
                }
                part += 1;
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                extinf = v.split(',').next().and_then(|d| d.parse().ok());
            } else if !line.is_empty() && !line.starts_with('#') {
                p.segments
                    .push((msn, line.to_owned(), extinf.take().unwrap_or(0.0)));
                msn += 1;
                part = 0;
            }
        }
        p.next = (msn, part);
        p
    }

    fn total_duration(&self) -> f64 {
        self.segments.iter().map(|s| s.2).sum()
    }
}

/// Attribute `name` of an attribute list (`URI="video/1.2.m4s",DURATION=...`), unquoted.
fn attr(list: &str, name: &str) -> Option<String> {
    let mut rest = list;
    while !rest.is_empty() {
        let (k, after) = rest.split_once('=')?;
        let (v, next) = match after.strip_prefix('"') {
            Some(q) => {
                let (v, n) = q.split_once('"')?;
                (v, n.strip_prefix(',').unwrap_or(n))
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        if k.trim() == name {
            return Some(v.to_owned());
        }
        rest = next;
    }
    None
}

/// A playlist URI relative to the directory of `base` (a path).
fn resolve(base: &str, uri: &str) -> String {
    if uri.starts_with('/') {
        return uri.to_owned();
    }
    let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
    format!("{dir}{uri}")
}

/// The frame markers (see media.rs) in a part or segment: fMP4 samples hold the payload
/// after its FLV header contiguously, so a marker is found as is. MPEG-TS splits PES
/// payloads over 188-byte packets, so the packets' payloads are joined per PID first.
fn markers(data: &[u8], ts: bool, mut f: impl FnMut(media::Mark)) {
    fn scan(data: &[u8], f: &mut dyn FnMut(media::Mark)) {
        for i in memchr::memmem::find_iter(data, media::MAGIC) {
            if let Some(m) = media::mark_at(&data[i..]) {
                f(m);
            }
        }
    }
    if !ts {
        scan(data, &mut f);
        return;
    }
    let mut es: Vec<(u16, Vec<u8>)> = Vec::new();
    for pkt in data.chunks_exact(188) {
        if pkt[0] != 0x47 {
            continue;
        }
        let pid = u16::from(pkt[1] & 0x1f) << 8 | u16::from(pkt[2]);
        let afc = (pkt[3] >> 4) & 3;
        if afc & 1 == 0 || pid == 0 {
            continue;
        }
        let start = if afc & 2 != 0 { 5 + pkt[4] as usize } else { 4 };
        let Some(payload) = pkt.get(start..) else {
            continue;
        };
        match es.iter_mut().find(|(p, _)| *p == pid) {
            Some((_, v)) => v.extend_from_slice(payload),
            None => es.push((pid, payload.to_vec())),
        }
    }
    for (_, v) in &es {
        scan(v, &mut f);
    }
}

// ---------------------------------------------------------------------------------------
// Clients

/// One client's counts; the tool reads them at the window's edges.
#[derive(Debug, Default)]
struct ClientStats {
    /// Bytes read from the sockets (heads, playlists, media).
    bytes: AtomicU64,
    /// Media bodies only (init, parts, segments).
    media_bytes: AtomicU64,
    requests: AtomicU64,
    media_objects: AtomicU64,
    errors: AtomicU64,
    connects: AtomicU64,
    inner: Mutex<ClientInner>,
}

#[derive(Debug, Default)]
struct ClientInner {
    /// Part (segment) availability delay in µs, for those whose last frame was sent in the
    /// window.
    delays_us: Vec<u32>,
    /// The same for the parts (segments) whose last frame is a video frame.
    video_delays_us: Vec<u32>,
    /// Frames sent in the window that this client received.
    window_frames: u64,
    /// Parts (segments) that left the playlist before this client fetched them.
    skipped: u64,
    last_error: Option<String>,
}

struct ClientCtx {
    port: u16,
    clock: Clock,
    window: Arc<Window>,
    stats: Arc<ClientStats>,
    stop: watch::Receiver<bool>,
}

impl ClientCtx {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    fn error(&self, e: impl std::fmt::Display) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        lock(&self.stats.inner).last_error = Some(e.to_string());
    }

    async fn get(&self, c: &mut Client, path: &str) -> anyhow::Result<crate::http1::Response> {
        let before = c.connects;
        let r = c.get(path, Duration::from_secs(15)).await;
        self.stats
            .connects
            .fetch_add(c.connects - before, Ordering::Relaxed);
        let r = r?;
        self.stats.bytes.fetch_add(r.wire_bytes, Ordering::Relaxed);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        Ok(r)
    }

    /// Fetches a part or segment and records its delay and the frames in it.
    async fn media(&self, c: &mut Client, path: &str, ts: bool) -> anyhow::Result<()> {
        let r = self.get(c, path).await?;
        let got = self.clock.now_ns();
        if r.status != 200 {
            bail!("GET {path}: {}", r.status);
        }
        self.stats
            .media_bytes
            .fetch_add(r.body.len() as u64, Ordering::Relaxed);
        self.stats.media_objects.fetch_add(1, Ordering::Relaxed);
        let (mut last_sent, mut in_window, mut last_video) = (0u64, 0u64, false);
        markers(&r.body, ts, |m| {
            if m.send_ns >= last_sent {
                last_sent = m.send_ns;
                last_video = m.kind == media::Kind::Video;
            }
            if self.window.contains(m.send_ns) {
                in_window += 1;
            }
        });
        if last_sent > 0
            && self.window.contains(last_sent)
            && std::env::var_os("PRISM_LOAD_TRACE").is_some()
        {
            eprintln!(
                "[trace] {path}: {} bytes, delay {:.1} ms",
                r.body.len(),
                (got.saturating_sub(last_sent)) as f64 / 1e6
            );
        }
        let mut st = lock(&self.stats.inner);
        st.window_frames += in_window;
        if last_sent > 0 && self.window.contains(last_sent) {
            let d = (got.saturating_sub(last_sent) / 1000).min(u32::MAX as u64) as u32;
            st.delays_us.push(d);
            if last_video {
                st.video_delays_us.push(d);
            }
        }
        Ok(())
    }
}

/// An LL-HLS client on one rendition (`video` or `audio`) of Prism: the playlist once, the
/// init segment, then from the live edge on: a blocking reload for the next part, and every
/// part it lists that is new.
async fn ll_hls_track(ctx: ClientCtx, track: &'static str) {
    let pl = format!("/live/bench/{track}.m3u8");
    let mut c = Client::new(ctx.port);
    let mut init: Option<String> = None;
    let mut last: Option<(u64, u64)> = None;
    let mut next: Option<(u64, u64)> = None;
    while !ctx.stopped() {
        let path = match next {
            Some((m, p)) => format!("{pl}?_HLS_msn={m}&_HLS_part={p}"),
            None => pl.clone(),
        };
        let r = match ctx.get(&mut c, &path).await {
            Ok(r) if r.status == 200 => r,
            Ok(r) => {
                // 503: the wait timed out; 400: asked too far ahead. Start over from a
                // plain reload.
                ctx.error(format!("GET {path}: {}", r.status));
                next = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                ctx.error(format!("{e:#}"));
                next = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let p = Playlist::parse(&String::from_utf8_lossy(&r.body));
        if let Some(map) = &p.map {
            if init.as_deref() != Some(map.as_str()) {
                if let Err(e) = ctx.media(&mut c, &resolve(&pl, map), false).await {
                    ctx.error(format!("{e:#}"));
                    continue;
                }
                init = Some(map.clone());
            }
        }
        let Some(prev) = last else {
            // Start at the live edge: the next part to appear is the first one fetched.
            last = Some(p.parts.last().map_or((p.next.0, 0), |x| x.0));
            next = Some(p.next);
            continue;
        };
        let new: Vec<&((u64, u64), String)> = p.parts.iter().filter(|x| x.0 > prev).collect();
        if let Some(first) = new.first() {
            let succ = first.0 == (prev.0, prev.1 + 1) || first.0 == (prev.0 + 1, 0);
            if !succ && p.parts.first().is_some_and(|x| x.0 > prev) {
                // The playlist no longer lists what follows `prev`: fell behind.
                lock(&ctx.stats.inner).skipped += 1;
            }
        }
        for (id, uri) in new {
            if let Err(e) = ctx.media(&mut c, &resolve(&pl, uri), false).await {
                ctx.error(format!("{e:#}"));
                break;
            }
            last = Some(*id);
        }
        next = Some(p.next);
    }
}

/// A classic HLS client of one media playlist (nginx-rtmp's TS playlist, where no blocking
/// reload exists, or a Prism rendition with its parts ignored): polls every half target
/// duration (as players do) and fetches every new complete segment (and the init segment
/// once, if any).
async fn classic_client(ctx: ClientCtx, phase: Duration, pl: &'static str, ts: bool) {
    let mut c = Client::new(ctx.port);
    let mut init: Option<String> = None;
    let mut last: Option<u64> = None;
    let mut interval = Duration::from_secs(1);
    tokio::time::sleep(phase).await;
    let mut tick = tokio::time::Instant::now();
    while !ctx.stopped() {
        match ctx.get(&mut c, pl).await {
            Ok(r) if r.status == 200 => {
                let p = Playlist::parse(&String::from_utf8_lossy(&r.body));
                if p.target_s > 0.0 {
                    interval = Duration::from_secs_f64(p.target_s / 2.0);
                }
                if let Some(map) = &p.map {
                    if init.as_deref() != Some(map.as_str()) {
                        match ctx.media(&mut c, &resolve(pl, map), false).await {
                            Ok(()) => init = Some(map.clone()),
                            Err(e) => ctx.error(format!("{e:#}")),
                        }
                    }
                }
                match last {
                    None => last = p.segments.last().map(|s| s.0),
                    Some(prev) => {
                        if p.segments.first().is_some_and(|s| s.0 > prev + 1) {
                            lock(&ctx.stats.inner).skipped += 1;
                        }
                        for (msn, uri, _) in p.segments.iter().filter(|s| s.0 > prev) {
                            if let Err(e) = ctx.media(&mut c, &resolve(pl, uri), ts).await {
                                ctx.error(format!("{e:#}"));
                                break;
                            }
                            last = Some(*msn);
                        }
                    }
                }
            }
            Ok(r) => ctx.error(format!("GET {pl}: {}", r.status)),
            Err(e) => ctx.error(format!("{e:#}")),
        }
        tick += interval;
        let now = tokio::time::Instant::now();
        if tick < now {
            tick = now;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(tick) => {}
            _ = async { let mut s = ctx.stop.clone(); let _ = s.changed().await; } => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// The fan-out run

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct HlsResult {
    pub relay: String,
    /// `ll-hls` (blocking reloads + parts) or `classic` (polled playlists + segments).
    pub mode: String,
    pub clients: usize,
    /// TCP connections the clients held (Prism: one per rendition, video and audio).
    pub connections: usize,
    /// Connections opened in all (more than `connections` = reconnects).
    pub connects: u64,
    pub seconds: f64,
    pub bitrate_kbps: u64,
    pub segment_ms: u64,
    pub part_ms: u64,
    pub relay_threads: u64,
    pub relay_cpu_s: f64,
    pub relay_cpu_pct: f64,
    pub relay_thread_cpu_pct: Vec<f64>,
    /// CPU seconds per Gbit the clients received (every byte read: heads, playlists, media).
    pub cpu_s_per_gbit: f64,
    pub delivered_bytes: u64,
    pub delivered_gbit_s: f64,
    pub media_bytes: u64,
    /// What the publisher wrote in the window × clients (RTMP bytes; the containers differ).
    pub publisher_bytes_x_clients: u64,
    pub requests: u64,
    pub requests_per_s: f64,
    pub media_objects: u64,
    /// Frames the publisher sent in the window, and how many of them the clients got.
    pub window_frames_sent: u64,
    pub frames_expected: u64,
    pub frames_received: u64,
    /// Clients that missed at least one frame sent in the window.
    pub clients_missing_frames: usize,
    /// Parts (segments) that left the playlist before a client fetched them, summed.
    pub skipped: u64,
    pub errors: u64,
    pub delay_samples: usize,
    pub delay_p50_ms: f64,
    pub delay_p99_ms: f64,
    pub delay_max_ms: f64,
    /// Parts (segments) that end with a video frame: Prism's video rendition.
    pub video_delay_p50_ms: f64,
    pub video_delay_p99_ms: f64,
    pub rss_idle_kb: u64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub tool_cpu_s: f64,
    pub machine_busy_pct: f64,
    pub load_avg: String,
    pub prism_blocking_requests: Option<f64>,
    pub prism_hls_requests: Option<f64>,
    pub notes: Vec<String>,
}

fn pct(v: &[u32], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

fn tmp_dir(name: &str, what: &str, clock: Clock) -> PathBuf {
    std::env::temp_dir().join("prism-load").join(format!(
        "{name}-{what}-{}-{}",
        std::process::id(),
        clock.now_ns()
    ))
}

/// Polls `path` until it is a playlist with at least `segments` complete segments.
async fn wait_playlist(
    port: u16,
    path: &str,
    segments: usize,
    deadline: Duration,
) -> anyhow::Result<Playlist> {
    let t0 = Instant::now();
    let mut c = Client::new(port);
    loop {
        if let Ok(r) = c.get(path, Duration::from_secs(5)).await {
            if r.status == 200 {
                let p = Playlist::parse(&String::from_utf8_lossy(&r.body));
                if p.segments.len() >= segments {
                    return Ok(p);
                }
            }
        }
        if t0.elapsed() > deadline {
            bail!("{path}: no playlist with {segments} segments within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn spec(opts: &HlsOpts, connections: usize, streams: usize) -> HlsSpec {
    HlsSpec {
        segment_ms: opts.segment_ms,
        part_ms: opts.part_ms,
        window_segments: opts.window_segments,
        dvr_window_s: opts.dvr_window_s,
        dvr_max_mb: opts.dvr_max_mb,
        dvr_dir: opts.dvr_dir.clone(),
        connections,
        streams,
    }
}

pub async fn run(opts: &HlsOpts) -> anyhow::Result<HlsResult> {
    let name = opts.relay.name();
    let n = opts.count;
    let tck = relay::clk_tck();
    let clock = Clock::new();
    let window = Arc::new(Window::new());
    let nginx = opts.relay == RelayKind::Nginx;
    let per_client = if nginx { 1 } else { 2 };
    let dir = tmp_dir(name, &format!("hls-{n}"), clock);
    progress(format!(
        "{name} hls: {n} clients at {} kbit/s, segments {} ms{}; relay files in {}",
        opts.bitrate_kbps,
        opts.segment_ms,
        if nginx {
            " (MPEG-TS, polled)".to_owned()
        } else if opts.classic {
            " (fMP4, classic: polled, whole segments)".to_owned()
        } else {
            format!(", parts {} ms (blocking reloads)", opts.part_ms)
        },
        dir.display()
    ));
    let (mut relay, port) = relay::start_hls(
        opts.relay,
        &opts.paths,
        &spec(opts, n * per_client, 1),
        &dir,
    )?;
    let pid = relay.pid().to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle_kb = relay::status_field(&pid, "VmRSS").unwrap_or(0);

    let (media_tx, media_rx) = watch::channel(true);
    let (pub_stop_tx, pub_stop_rx) = watch::channel(false);
    let stats = Arc::new(PubStats::default());
    let publisher = tokio::spawn(publisher::run(
        PublishTarget {
            port: relay.rtmp_port,
            app: "live".into(),
            key: "bench".into(),
            stream: 0,
            speed: 1,
        },
        opts.bitrate_kbps,
        clock,
        window.clone(),
        stats.clone(),
        media_rx,
        pub_stop_rx,
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut clients: Vec<Arc<ClientStats>> = Vec::new();
    let mut tasks = Vec::new();

    let result = async {
        let pl = if nginx { "/live/bench.m3u8" } else { "/live/bench/video.m3u8" };
        let p = wait_playlist(port, pl, 2, Duration::from_secs(30)).await?;
        progress(format!(
            "  playlist ready ({} segments listed); starting {n} clients, {} at a time",
            p.segments.len(),
            opts.batch
        ));
        let interval = Duration::from_millis(opts.segment_ms / 2);
        let t0 = Instant::now();
        for i in 0..n {
            let st = Arc::new(ClientStats::default());
            let ctx = || ClientCtx {
                port,
                clock,
                window: window.clone(),
                stats: st.clone(),
                stop: stop_rx.clone(),
            };
            // Spread the polls over the interval, as independent players would be.
            let phase = interval.mul_f64(i as f64 / n as f64);
            if nginx {
                tasks.push(tokio::spawn(classic_client(ctx(), phase, "/live/bench.m3u8", true)));
            } else if opts.classic {
                for pl in ["/live/bench/video.m3u8", "/live/bench/audio.m3u8"] {
                    tasks.push(tokio::spawn(classic_client(ctx(), phase, pl, false)));
                }
            } else {
                tasks.push(tokio::spawn(ll_hls_track(ctx(), "video")));
                tasks.push(tokio::spawn(ll_hls_track(ctx(), "audio")));
            }
            clients.push(st);
            if (i + 1) % opts.batch.max(1) == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // Every client got media at least once (its init or first part or segment).
        let mut last_report = Instant::now();
        loop {
            let ready = clients
                .iter()
                .filter(|c| c.media_objects.load(Ordering::Relaxed) >= 2)
                .count();
            if ready == n {
                progress(format!("  all {n} clients fetching media after {:.1} s", t0.elapsed().as_secs_f64()));
                break;
            }
            if t0.elapsed() > opts.connect_timeout {
                progress(format!("  only {ready}/{n} clients fetching media; measuring anyway"));
                break;
            }
            if last_report.elapsed() > Duration::from_secs(2) {
                last_report = Instant::now();
                progress(format!("  warm-up: {ready}/{n} clients fetching media"));
            }
            if let Some(st) = relay.exited() {
                bail!("relay exited during warm-up ({st}):\n{}", relay.log_tail(30));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(opts.warmup_seconds)).await;

        // The window.
        let sum = |f: &dyn Fn(&ClientStats) -> u64| clients.iter().map(|c| f(c)).sum::<u64>();
        let bytes0 = sum(&|c| c.bytes.load(Ordering::Relaxed));
        let media0 = sum(&|c| c.media_bytes.load(Ordering::Relaxed));
        let req0 = sum(&|c| c.requests.load(Ordering::Relaxed));
        let obj0 = sum(&|c| c.media_objects.load(Ordering::Relaxed));
        let err0 = sum(&|c| c.errors.load(Ordering::Relaxed));
        let skip0 = clients.iter().map(|c| lock(&c.inner).skipped).sum::<u64>();
        let pub0 = stats.wire_bytes.load(Ordering::Relaxed);
        let cpu0 = relay::cpu_seconds(&pid, tck).unwrap_or(0.0);
        let threads0 = relay::thread_cpu_seconds(&pid, tck);
        let tool0 = relay::cpu_seconds("self", tck).unwrap_or(0.0);
        let mach0 = relay::machine_jiffies().unwrap_or((0, 0));
        let load_avg = std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        let w0 = Instant::now();
        window.open(clock.now_ns());
        progress(format!("  measuring {} s (load average {load_avg})", opts.seconds));
        let mut last_b = bytes0;
        let mut last_t = Instant::now();
        while w0.elapsed() < Duration::from_secs(opts.seconds) {
            tokio::time::sleep(
                Duration::from_secs(opts.seconds)
                    .saturating_sub(w0.elapsed())
                    .min(Duration::from_secs(5)),
            )
            .await;
            let b = sum(&|c| c.bytes.load(Ordering::Relaxed));
            progress(format!(
                "  {:>4.0} s: clients {:.3} Gbit/s, relay CPU {:.0}%",
                w0.elapsed().as_secs_f64(),
                (b - last_b) as f64 * 8.0 / 1e9 / last_t.elapsed().as_secs_f64(),
                (relay::cpu_seconds(&pid, tck).unwrap_or(0.0) - cpu0) / w0.elapsed().as_secs_f64()
                    * 100.0
            ));
            last_b = b;
            last_t = Instant::now();
        }
        window.close(clock.now_ns());
        let elapsed = w0.elapsed().as_secs_f64();
        let cpu = relay::cpu_seconds(&pid, tck).unwrap_or(0.0) - cpu0;
        let mut thread_pct: Vec<f64> = relay::thread_cpu_seconds(&pid, tck)
            .iter()
            .map(|(tid, s)| (s - threads0.get(tid).copied().unwrap_or(0.0)) / elapsed * 100.0)
            .collect();
        thread_pct.sort_by(|a, b| b.total_cmp(a));
        let tool = relay::cpu_seconds("self", tck).unwrap_or(0.0) - tool0;
        let mach1 = relay::machine_jiffies().unwrap_or((0, 0));
        let delivered = sum(&|c| c.bytes.load(Ordering::Relaxed)) - bytes0;
        let media_bytes = sum(&|c| c.media_bytes.load(Ordering::Relaxed)) - media0;
        let requests = sum(&|c| c.requests.load(Ordering::Relaxed)) - req0;
        let objects = sum(&|c| c.media_objects.load(Ordering::Relaxed)) - obj0;
        let pub_bytes = stats.wire_bytes.load(Ordering::Relaxed) - pub0;
        let rss_kb = relay::status_field(&pid, "VmRSS").unwrap_or(0);
        let hwm_kb = relay::status_field(&pid, "VmHWM").unwrap_or(0);
        let relay_threads = relay::status_field(&pid, "Threads").unwrap_or(0);
        let metrics = relay.http_port.and_then(|p| relay::http_get(p, "/metrics").ok());
        // Frames sent at the end of the window reach the clients a part (nginx: a segment
        // and a poll) later: keep the clients going a little.
        let drain = Duration::from_millis(2 * opts.segment_ms + 1500);
        progress(format!("  window closed; clients keep fetching {:.1} s for its last frames", drain.as_secs_f64()));
        tokio::time::sleep(drain).await;
        let _ = stop_tx.send(true);
        for t in tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
        }
        let sent = stats.window_video.load(Ordering::Relaxed) + stats.window_audio.load(Ordering::Relaxed);
        let mut delays: Vec<u32> = Vec::new();
        let mut vdelays: Vec<u32> = Vec::new();
        let (mut received, mut missing_clients, mut skipped) = (0u64, 0usize, 0u64);
        let mut errors_by: std::collections::BTreeMap<String, usize> = Default::default();
        for c in &clients {
            let st = lock(&c.inner);
            delays.extend_from_slice(&st.delays_us);
            vdelays.extend_from_slice(&st.video_delays_us);
            received += st.window_frames;
            if st.window_frames < sent {
                missing_clients += 1;
            }
            skipped += st.skipped;
            if let Some(e) = &st.last_error {
                *errors_by.entry(e.clone()).or_default() += 1;
            }
        }
        delays.sort_unstable();
        vdelays.sort_unstable();
        let errors = sum(&|c| c.errors.load(Ordering::Relaxed)) - err0;
        let mut notes = Vec::new();
        for (e, k) in errors_by.iter().take(5) {
            notes.push(format!("{k} client(s), last error: {e}"));
        }
        let gbit = delivered as f64 * 8.0 / 1e9;
        let (busy, total) = (mach1.0 - mach0.0, (mach1.1 - mach0.1).max(1));
        let msum = |m: &str| metrics.as_deref().map(|t| relay::metric_sum(t, m));
        let r = HlsResult {
            relay: name.into(),
            mode: if nginx || opts.classic { "classic" } else { "ll-hls" }.into(),
            clients: n,
            connections: n * per_client,
            connects: sum(&|c| c.connects.load(Ordering::Relaxed)),
            seconds: elapsed,
            bitrate_kbps: opts.bitrate_kbps,
            segment_ms: opts.segment_ms,
            part_ms: if nginx || opts.classic { 0 } else { opts.part_ms },
            relay_threads,
            relay_cpu_s: cpu,
            relay_cpu_pct: cpu / elapsed * 100.0,
            relay_thread_cpu_pct: thread_pct,
            cpu_s_per_gbit: if gbit > 0.0 { cpu / gbit } else { f64::NAN },
            delivered_bytes: delivered,
            delivered_gbit_s: gbit / elapsed,
            media_bytes,
            publisher_bytes_x_clients: pub_bytes * n as u64,
            requests,
            requests_per_s: requests as f64 / elapsed,
            media_objects: objects,
            window_frames_sent: sent,
            frames_expected: sent * n as u64,
            frames_received: received,
            clients_missing_frames: missing_clients,
            // From the window's start on (the drain after it included).
            skipped: skipped - skip0,
            errors,
            delay_samples: delays.len(),
            delay_p50_ms: pct(&delays, 0.5),
            delay_p99_ms: pct(&delays, 0.99),
            delay_max_ms: delays.last().map_or(f64::NAN, |&v| v as f64 / 1000.0),
            video_delay_p50_ms: pct(&vdelays, 0.5),
            video_delay_p99_ms: pct(&vdelays, 0.99),
            rss_idle_kb,
            rss_kb,
            hwm_kb,
            tool_cpu_s: tool,
            machine_busy_pct: busy as f64 / total as f64 * 100.0,
            load_avg,
            prism_blocking_requests: msum("prism_hls_blocking_requests"),
            prism_hls_requests: msum("prism_hls_requests_total"),
            notes,
        };
        progress(format!(
            "  {name} × {n}: {:.3} CPU-s/Gbit, CPU {:.0}%, {:.3} Gbit/s, {:.0} req/s, frames {}/{} ({} clients missing some), delay p50 {:.0} ms p99 {:.0} ms max {:.0} ms (ending on video: p50 {:.0} p99 {:.0}), RSS {} MB, tool CPU {:.0}%",
            r.cpu_s_per_gbit, r.relay_cpu_pct, r.delivered_gbit_s, r.requests_per_s,
            r.frames_received, r.frames_expected, r.clients_missing_frames,
            r.delay_p50_ms, r.delay_p99_ms, r.delay_max_ms, r.video_delay_p50_ms, r.video_delay_p99_ms, r.rss_kb / 1024,
            r.tool_cpu_s / elapsed * 100.0
        ));
        Ok(r)
    }
    .await;

    let _ = stop_tx.send(true);
    for t in tasks.drain(..) {
        t.abort();
    }
    let _ = pub_stop_tx.send(true);
    drop(media_tx);
    let _ = tokio::time::timeout(Duration::from_secs(3), publisher).await;
    relay.stop();
    if !opts.keep_tmp && result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

// ---------------------------------------------------------------------------------------
// Memory per stream

#[derive(Debug, Clone, Serialize)]
pub struct MemResult {
    pub streams: usize,
    pub bitrate_kbps: u64,
    pub segment_ms: u64,
    pub part_ms: u64,
    pub window_segments: usize,
    pub dvr_window_s: u64,
    pub dvr_dir: Option<String>,
    pub speed: u32,
    /// Media seconds listed in each stream's video playlist when sampled (min, max).
    pub playlist_s_min: f64,
    pub playlist_s_max: f64,
    /// Media the window should hold: playlist seconds × bitrate / 8.
    pub media_bytes_per_stream: f64,
    pub rss_idle_kb: u64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub rss_per_stream_kb: f64,
    /// prism_hls_dvr_bytes summed / streams.
    pub dvr_bytes_per_stream: Option<f64>,
    /// Bytes under dvr_dir / streams.
    pub disk_bytes_per_stream: Option<f64>,
    pub fill_s: f64,
    pub notes: Vec<String>,
}

fn du(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// S streams at the bitrate (media `speed`× real time) until every window is full, then
/// Prism's RSS above its idle RSS, per stream.
pub async fn run_memory(opts: &HlsOpts) -> anyhow::Result<MemResult> {
    if opts.relay == RelayKind::Nginx {
        bail!("hls-memory measures Prism (nginx-rtmp keeps its window on disk, as files)");
    }
    let s = opts.count.max(1);
    let clock = Clock::new();
    let window = Arc::new(Window::new());
    let dir = tmp_dir(opts.relay.name(), &format!("hls-memory-{s}"), clock);
    // A fresh directory of this run under --hls-dvr-dir, so what is counted there is this
    // run's spill only; removed afterwards.
    let mut opts = opts.clone();
    let run_dvr_dir = opts.dvr_dir.as_ref().map(|d| {
        d.join(
            dir.file_name()
                .map_or_else(|| "prism-load".into(), |n| n.to_owned()),
        )
    });
    if let Some(d) = &run_dvr_dir {
        std::fs::create_dir_all(d)?;
        opts.dvr_dir = Some(d.clone());
    }
    let opts = &opts;
    let (mut relay, port) = relay::start_hls(opts.relay, &opts.paths, &spec(opts, 10, s), &dir)?;
    let pid = relay.pid().to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle_kb = relay::status_field(&pid, "VmRSS").unwrap_or(0);
    let live_s = opts.segment_ms as f64 / 1000.0 * opts.window_segments as f64;
    // A full window: the DVR span, or the live window plus its grace (segments stay in
    // memory for window_segments × segment_ms of wall time after they leave the playlist).
    let (goal_s, media_goal_s) = if opts.dvr_window_s > 0 {
        let g = opts.dvr_window_s as f64 - opts.segment_ms as f64 / 1000.0;
        (g, g)
    } else {
        (live_s - opts.segment_ms as f64 / 1000.0, 2.0 * live_s + 2.0)
    };
    progress(format!(
        "prism hls-memory: {s} streams × {} kbit/s at {}× real time, until {goal_s:.0} s listed ({media_goal_s:.0} s of media); files in {}",
        opts.bitrate_kbps,
        opts.speed,
        dir.display()
    ));
    let (media_tx, media_rx) = watch::channel(true);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut pubs = Vec::new();
    for i in 0..s {
        pubs.push(tokio::spawn(publisher::run(
            PublishTarget {
                port: relay.rtmp_port,
                app: "live".into(),
                key: format!("m{i}"),
                stream: i as u16,
                speed: opts.speed,
            },
            opts.bitrate_kbps,
            clock,
            window.clone(),
            Arc::new(PubStats::default()),
            media_rx.clone(),
            stop_rx.clone(),
        )));
    }
    let result = async {
        let t0 = Instant::now();
        let mut c = Client::new(port);
        let deadline = Duration::from_secs_f64(media_goal_s / opts.speed.max(1) as f64 * 3.0 + 60.0);
        let mut durations = vec![0.0f64; s];
        let mut last_report = Instant::now();
        loop {
            for (i, d) in durations.iter_mut().enumerate() {
                if *d >= goal_s {
                    continue;
                }
                if let Ok(r) = c.get(&format!("/live/m{i}/video.m3u8"), Duration::from_secs(10)).await {
                    if r.status == 200 {
                        *d = Playlist::parse(&String::from_utf8_lossy(&r.body)).total_duration();
                    }
                }
            }
            let min = durations.iter().copied().fold(f64::INFINITY, f64::min);
            let media_done = t0.elapsed().as_secs_f64() * opts.speed.max(1) as f64 >= media_goal_s;
            if min >= goal_s && media_done {
                break;
            }
            if let Some(st) = relay.exited() {
                bail!("prism exited ({st}):\n{}", relay.log_tail(30));
            }
            if t0.elapsed() > deadline {
                bail!("windows not full after {:.0} s (shortest {min:.0} s of {goal_s:.0})", t0.elapsed().as_secs_f64());
            }
            if last_report.elapsed() > Duration::from_secs(5) {
                last_report = Instant::now();
                progress(format!(
                    "  {:.0} s: shortest playlist {min:.0} s, RSS {} MB",
                    t0.elapsed().as_secs_f64(),
                    relay::status_field(&pid, "VmRSS").unwrap_or(0) / 1024
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let fill_s = t0.elapsed().as_secs_f64();
        let mut notes = Vec::new();
        if opts.speed > 1 {
            // Faster than real time, segments retired in the last grace period (wall time)
            // would still be held: pause media and let the grace pass (the window is media
            // time and stays full).
            let _ = media_tx.send(false);
            let grace = Duration::from_millis(opts.segment_ms * opts.window_segments as u64 + 3000);
            progress(format!("  windows full after {fill_s:.0} s; media paused, waiting {:.0} s for retired segments to go", grace.as_secs_f64()));
            tokio::time::sleep(grace).await;
            notes.push("sampled with media paused after the retirement grace (speed > 1)".into());
        } else {
            notes.push("sampled live, media flowing (retired segments within their grace included)".into());
        }
        let mut durs = Vec::new();
        for i in 0..s {
            if let Ok(r) = c.get(&format!("/live/m{i}/video.m3u8"), Duration::from_secs(10)).await {
                durs.push(Playlist::parse(&String::from_utf8_lossy(&r.body)).total_duration());
            }
        }
        let rss_kb = relay::status_field(&pid, "VmRSS").unwrap_or(0);
        let hwm_kb = relay::status_field(&pid, "VmHWM").unwrap_or(0);
        let metrics = relay.http_port.and_then(|p| relay::http_get(p, "/metrics").ok());
        let dvr_bytes = metrics.as_deref().map(|t| relay::metric_sum(t, "prism_hls_dvr_bytes"));
        let pl_min = durs.iter().copied().fold(f64::INFINITY, f64::min);
        let pl_max = durs.iter().copied().fold(0.0, f64::max);
        let r = MemResult {
            streams: s,
            bitrate_kbps: opts.bitrate_kbps,
            segment_ms: opts.segment_ms,
            part_ms: opts.part_ms,
            window_segments: opts.window_segments,
            dvr_window_s: opts.dvr_window_s,
            dvr_dir: opts.dvr_dir.as_ref().map(|d| d.display().to_string()),
            speed: opts.speed,
            playlist_s_min: pl_min,
            playlist_s_max: pl_max,
            media_bytes_per_stream: pl_max * opts.bitrate_kbps as f64 * 1000.0 / 8.0,
            rss_idle_kb,
            rss_kb,
            hwm_kb,
            rss_per_stream_kb: rss_kb.saturating_sub(rss_idle_kb) as f64 / s as f64,
            dvr_bytes_per_stream: dvr_bytes.map(|b| b / s as f64),
            disk_bytes_per_stream: opts.dvr_dir.as_ref().map(|d| du(d) as f64 / s as f64),
            fill_s,
            notes,
        };
        progress(format!(
            "  {s} streams: playlists {:.0}–{:.0} s, RSS {} MiB (idle {} MiB), {:.1} MB per stream (media in the window {:.1} MB){}",
            r.playlist_s_min, r.playlist_s_max, rss_kb / 1024, rss_idle_kb / 1024,
            r.rss_per_stream_kb * 1.024 / 1000.0, r.media_bytes_per_stream / 1e6,
            r.dvr_bytes_per_stream.map_or(String::new(), |b| format!(", prism_hls_dvr_bytes {:.1} MB per stream", b / 1e6))
        ));
        Ok(r)
    }
    .await;
    let _ = stop_tx.send(true);
    for p in pubs {
        let _ = tokio::time::timeout(Duration::from_secs(3), p).await;
    }
    relay.stop();
    if !opts.keep_tmp && result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
        if let Some(d) = &run_dvr_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    result
}

// ---------------------------------------------------------------------------------------
// Reports

fn f(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "–".into()
    }
}

pub fn markdown(results: &[HlsResult], header: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{header}\n");
    s.push_str(
        "| relay | thr | clients | conns (opened) | CPU % | by thread | CPU-s/Gbit | × nginx | Gbit/s | req/s | frames delivered | clients missing frames | skipped | errors | delay p50 / p99 / max ms | video-ended p50 / p99 ms | RSS MB | tool CPU % | machine busy % |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in results {
        let nginx = results
            .iter()
            .find(|x| x.relay == "nginx" && x.clients == r.clients)
            .map(|x| x.cpu_s_per_gbit);
        let relay = match (r.relay.as_str(), r.mode.as_str()) {
            ("nginx", _) | (_, "ll-hls") => r.relay.clone(),
            (name, mode) => format!("{name} ({mode})"),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} / {} | {} | {} | {} |",
            relay,
            r.relay_threads,
            r.clients,
            r.connections,
            r.connects,
            f(r.relay_cpu_pct, 0),
            r.relay_thread_cpu_pct
                .iter()
                .take(3)
                .map(|p| format!("{p:.0}"))
                .collect::<Vec<_>>()
                .join(" / "),
            f(r.cpu_s_per_gbit, 3),
            nginx.map_or("–".into(), |b| f(r.cpu_s_per_gbit / b, 2)),
            f(r.delivered_gbit_s, 3),
            f(r.requests_per_s, 0),
            f(r.frames_received as f64 / r.frames_expected.max(1) as f64 * 100.0, 2) + "%",
            r.clients_missing_frames,
            r.skipped,
            r.errors,
            f(r.delay_p50_ms, 0),
            f(r.delay_p99_ms, 0),
            f(r.delay_max_ms, 0),
            f(r.video_delay_p50_ms, 0),
            f(r.video_delay_p99_ms, 0),
            r.rss_kb / 1024,
            f(r.tool_cpu_s / r.seconds * 100.0, 0),
            f(r.machine_busy_pct, 0),
        );
    }
    for r in results {
        for n in &r.notes {
            let _ = writeln!(s, "\n- {} × {}: {n}", r.relay, r.clients);
        }
    }
    s
}

pub fn memory_markdown(results: &[MemResult], header: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{header}\n");
    s.push_str(
        "| streams | kbit/s | window | speed | listed s | media in window MB | RSS idle → full MiB | RSS MB / stream | prism_hls_dvr_bytes MB / stream | disk MB / stream | fill s |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in results {
        let window = if r.dvr_window_s > 0 {
            format!("DVR {} s", r.dvr_window_s)
        } else {
            format!("live {} × {} ms", r.window_segments, r.segment_ms)
        };
        let _ = writeln!(
            s,
            "| {} | {} | {window} | {}× | {}–{} | {} | {} → {} | {} | {} | {} | {} |",
            r.streams,
            r.bitrate_kbps,
            r.speed,
            f(r.playlist_s_min, 0),
            f(r.playlist_s_max, 0),
            f(r.media_bytes_per_stream / 1e6, 1),
            r.rss_idle_kb / 1024,
            r.rss_kb / 1024,
            f(r.rss_per_stream_kb / 1024.0 * 1.048_576, 1),
            r.dvr_bytes_per_stream.map_or("–".into(), |b| f(b / 1e6, 1)),
            r.disk_bytes_per_stream
                .map_or("–".into(), |b| f(b / 1e6, 1)),
            f(r.fill_s, 0),
        );
    }
    for r in results {
        for n in &r.notes {
            let _ = writeln!(s, "\n- {} streams: {n}", r.streams);
        }
    }
    s
}

/// A number of a result, for a chart panel.
type Metric = fn(&HlsResult) -> f64;

/// Two bar groups per client count: CPU-s per Gbit and p99 delay, one bar per relay.
pub fn svg(results: &[HlsResult], title: &str) -> String {
    let (w, h) = (820.0, 380.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"20\" y=\"24\" font-size=\"15\">{}</text>\n",
        title.replace('&', "&amp;").replace('<', "&lt;")
    );
    let panels: [(&str, Metric); 2] = [
        ("CPU-s per delivered Gbit (lower is better)", |r| {
            r.cpu_s_per_gbit
        }),
        ("p99 part (segment) delay, ms", |r| r.delay_p99_ms),
    ];
    // One colour per relay and client mode, the same in both panels and the legend.
    let series = |r: &HlsResult| match (r.relay.as_str(), r.mode.as_str()) {
        ("nginx", _) => ("nginx-rtmp hls + nginx static (TS, polled)", "#e07b39"),
        (_, "classic") => ("Prism, classic clients (polled, segments)", "#8fb8ea"),
        _ => ("Prism, LL-HLS clients (blocking reloads, parts)", "#2f6fc4"),
    };
    let mut legend: Vec<(&str, &str)> = Vec::new();
    for r in results {
        let sr = series(r);
        if !legend.contains(&sr) {
            legend.push(sr);
        }
    }
    for (i, (name, color)) in legend.iter().enumerate() {
        let y = 44.0 + i as f64 * 15.0;
        let _ = writeln!(
            s,
            "<rect x=\"520\" y=\"{:.0}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"535\" y=\"{:.0}\">{name}</text>",
            y - 9.0,
            y
        );
    }
    let (top, bottom) = (110.0, 330.0);
    for (pi, (label, val)) in panels.iter().enumerate() {
        let x0 = 40.0 + pi as f64 * 400.0;
        let max = results
            .iter()
            .map(val)
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
            .max(1e-9);
        let _ = writeln!(
            s,
            "<text x=\"{x0}\" y=\"{}\" font-size=\"12\">{label}</text>",
            top - 22.0
        );
        let bw = 340.0 / results.len().max(1) as f64;
        for (i, r) in results.iter().enumerate() {
            let v = val(r);
            let vh = if v.is_finite() {
                v / max * (bottom - top)
            } else {
                0.0
            };
            let x = x0 + i as f64 * bw;
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{vh:.1}\" fill=\"{}\"/>\n\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                bottom - vh,
                bw * 0.8,
                series(r).1,
                x + bw * 0.4,
                bottom - vh - 4.0,
                f(v, if pi == 0 { 3 } else { 0 }),
            );
        }
        // Client counts under each group of bars.
        let mut i = 0;
        while i < results.len() {
            let n = results[i].clients;
            let j = (i..results.len())
                .find(|&j| results[j].clients != n)
                .unwrap_or(results.len());
            let mid = x0 + (i + j) as f64 / 2.0 * bw - bw * 0.1;
            let _ = writeln!(
                s,
                "<text x=\"{mid:.1}\" y=\"{:.0}\" text-anchor=\"middle\">{n} clients</text>",
                bottom + 16.0
            );
            i = j;
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Kind;

    #[test]
    fn parses_an_ll_hls_playlist() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
            #EXT-X-MAP:URI=\"video/init0.mp4\"\n\
            #EXT-X-PART:DURATION=0.200,URI=\"video/7.0.m4s\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.200,URI=\"video/7.1.m4s\"\n\
            #EXTINF:2.000,\nvideo/7.m4s\n\
            #EXTINF:2.000,\nvideo/8.m4s\n\
            #EXT-X-PART:DURATION=0.200,URI=\"video/9.0.m4s\",INDEPENDENT=YES\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"video/9.1.m4s\"\n";
        let p = Playlist::parse(text);
        assert_eq!(p.target_s, 2.0);
        assert_eq!(p.map.as_deref(), Some("video/init0.mp4"));
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[1].0, 8);
        assert_eq!(p.total_duration(), 4.0);
        let ids: Vec<(u64, u64)> = p.parts.iter().map(|x| x.0).collect();
        assert_eq!(ids, [(7, 0), (7, 1), (9, 0)]);
        assert_eq!(p.next, (9, 1));
        assert_eq!(
            resolve("/live/bench/video.m3u8", "video/9.0.m4s"),
            "/live/bench/video/9.0.m4s"
        );
        // Ends on a complete segment: the next part is the first of the next segment.
        let p = Playlist::parse("#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:2.0,\nbench-3.ts\n");
        assert_eq!(p.next, (4, 0));
        assert_eq!(p.segments[0].1, "bench-3.ts");
    }

    #[test]
    fn finds_markers_in_ts_packets() {
        let s = media::Sizes::for_bitrate(1000);
        let frame = media::video_frame(0, 42, s, 777);
        // A PES payload split over packets so the marker straddles a packet boundary.
        let mut es = vec![0u8; 170];
        es.extend_from_slice(&frame);
        let mut ts = Vec::new();
        for (k, chunk) in es.chunks(184).enumerate() {
            let mut pkt = vec![0x47, 0x41, 0x00, 0x10 | (k as u8 & 0xf)];
            pkt.extend_from_slice(chunk);
            pkt.resize(188, 0xff);
            ts.extend_from_slice(&pkt);
        }
        let mut found = Vec::new();
        markers(&ts, true, |m| found.push((m.kind, m.seq, m.send_ns)));
        assert_eq!(found, [(Kind::Video, 42, 777)]);
        // Joined as is, the split marker is not found.
        let mut raw = 0;
        markers(&ts, false, |_| raw += 1);
        assert_eq!(raw, 0);
    }
}
