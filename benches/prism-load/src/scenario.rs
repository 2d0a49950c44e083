//! One scenario: sink + relay + publisher, warm-up, a measured window, the numbers.

use crate::fdlimit;
use crate::media::{Clock, Window};
use crate::player::Players;
use crate::publisher::{self, PubStats, PublishTarget};
use crate::relay::{self, RelayKind, RelayPaths, RelaySpec};
use crate::sink::{lock, Sink, SinkConn};
use crate::whep::{WhepViewers, FROZEN_AFTER};
use anyhow::bail;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What is measured (see benches/README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// (a) One publisher, N push targets.
    Fanout,
    /// (b) S publishers, each with its own N push targets.
    Multi,
    /// (c) One publisher, N RTMP players.
    Players,
    /// (d) One publisher (RTMP), N WHEP viewers (str0m clients over loopback).
    Whep,
}

impl Scenario {
    pub fn parse(s: &str) -> anyhow::Result<Scenario> {
        Ok(match s {
            "fanout" => Scenario::Fanout,
            "multi" => Scenario::Multi,
            "players" => Scenario::Players,
            "whep" => Scenario::Whep,
            _ => bail!("unknown scenario {s:?} (fanout, multi, players, whep)"),
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::Multi => "multi",
            Scenario::Players => "players",
            Scenario::Whep => "whep",
        }
    }
    /// `--targets` of `run` when not given: targets (fanout), targets per stream (multi),
    /// players (players).
    pub fn default_targets(self) -> usize {
        match self {
            Scenario::Fanout => 10,
            Scenario::Multi => 20,
            Scenario::Players => 10_000,
            Scenario::Whep => 100,
        }
    }
    /// `--targets` of `bench` when not given.
    pub fn default_bench_targets(self) -> Vec<usize> {
        match self {
            Scenario::Fanout => vec![10, 100, 300, 500],
            Scenario::Whep => vec![100, 300, 500],
            s => vec![s.default_targets()],
        }
    }
    /// `--bitrate-kbps` when not given: per publisher. players: 10,000 × 250 kbit/s is
    /// 2.5 Gbit/s of loopback, about what 2 cores carry alongside the tool.
    pub fn default_bitrate_kbps(self) -> u64 {
        match self {
            Scenario::Fanout => 4700,
            Scenario::Multi => 2000,
            Scenario::Players => 250,
            // Issue 13: WHEP viewers at 2 Mbit/s.
            Scenario::Whep => 2000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScenarioOpts {
    pub scenario: Scenario,
    pub relay: RelayKind,
    /// Publishers (multi); 1 otherwise.
    pub streams: usize,
    /// Push targets (fanout), push targets per stream (multi), players (players).
    pub targets: usize,
    /// Players connect this many at a time.
    pub batch: usize,
    pub seconds: u64,
    /// Per publisher.
    pub bitrate_kbps: u64,
    pub warmup_seconds: u64,
    /// How long to wait for every target to connect, and again to receive media, before
    /// measuring anyway.
    pub connect_timeout: Duration,
    /// Sinks (every k-th accepted) that parse every message and record latency; the rest
    /// count bytes. Players: all parse, this many (every k-th) record latency.
    pub latency_sinks: usize,
    pub paths: RelayPaths,
    pub keep_tmp: bool,
}

impl ScenarioOpts {
    pub fn streams(&self) -> usize {
        match self.scenario {
            Scenario::Multi => self.streams.max(1),
            _ => 1,
        }
    }
    /// Receiving connections in all: targets of every stream, or players.
    pub fn total(&self) -> usize {
        self.streams() * self.targets
    }
    fn spec(&self, sink_port: u16) -> RelaySpec {
        let players = matches!(self.scenario, Scenario::Players | Scenario::Whep);
        RelaySpec {
            scenario: self.scenario,
            streams: self.streams(),
            targets_per_stream: if players { 0 } else { self.targets },
            players: if players { self.targets } else { 0 },
            sink_port,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub relay: String,
    /// Threads of the relay process during the window (Prism: tokio workers + others).
    pub relay_threads: u64,
    /// Publishers.
    pub streams: usize,
    /// Receiving connections in all: push targets of every stream, or players.
    pub targets: usize,
    pub targets_per_stream: usize,
    pub seconds: f64,
    /// Per publisher.
    pub bitrate_kbps: u64,
    /// Targets that were receiving media when the window closed.
    pub targets_receiving: usize,
    /// Connections the sink accepted (or players made) in total (more than `targets` =
    /// reconnects).
    pub sink_connections: usize,
    /// Sink connections closed by the end of the window (the relay hung up).
    pub sink_connections_closed: usize,
    /// Of those, closed during the window.
    pub sink_connections_closed_in_window: usize,
    /// Seconds from the publish (media paused) until every target was connected, or every
    /// player was playing (or the connect timeout).
    pub connect_s: f64,
    /// Targets connected (sink: publish accepted; player: Play.Start) when media started.
    pub targets_connected_idle: usize,
    /// Kernel counters (whole machine) over the connect phase: connections dropped because
    /// a listener's accept queue was full, and SYNs retransmitted (each such client waits
    /// 1 s, then 3 s, ... before it gets in).
    pub listen_overflows_connect: Option<u64>,
    pub syn_retrans_connect: Option<u64>,
    pub relay_cpu_s: f64,
    /// relay_cpu_s / window seconds, in % of one core.
    pub relay_cpu_pct: f64,
    pub cpu_s_per_gbit: f64,
    pub delivered_bytes: u64,
    pub expected_bytes: u64,
    pub delivered_ratio: f64,
    pub delivered_gbit_s: f64,
    /// Lowest per-target delivered ratio (bytes in window / publisher bytes in window).
    pub min_target_ratio: f64,
    pub targets_below_95pct: usize,
    /// VmRSS of the relay before anything published.
    pub rss_idle_kb: u64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
    /// (rss_kb - rss_idle_kb) / targets.
    pub rss_per_target_kb: f64,
    /// Every target connected (player playing) to the published stream, before any media.
    pub idle_before_media: IdleSample,
    /// (rss_kb - rss_idle_kb - queued_bytes) / targets of `idle_before_media`.
    pub idle_kb_per_target_before_media: f64,
    /// After the window, media paused for 2 s.
    pub idle_after_media: IdleSample,
    /// (rss_kb - rss_idle_kb - queued_bytes) / targets of `idle_after_media`.
    pub idle_kb_per_target_after_media: f64,
    /// Sinks (players) that recorded latency.
    pub latency_sinks: usize,
    pub latency_samples: usize,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// Media messages each publisher sent in the window (summed over publishers).
    pub window_msgs_sent: u64,
    /// Summed over parsing sinks: messages sent in the window that never arrived.
    pub msgs_missing: i64,
    /// Parsing targets (players) that missed at least one message sent in the window.
    pub targets_with_gaps: usize,
    pub seq_gaps: u64,
    pub reorders: u64,
    pub publisher_max_lag_ms: f64,
    pub tool_cpu_s: f64,
    /// CPU of each relay thread during the window, % of one core, busiest first.
    pub relay_thread_cpu_pct: Vec<f64>,
    /// Busy share of all cores of the machine during the window (all processes).
    pub machine_busy_pct: f64,
    /// Soft RLIMIT_NOFILE of the relay process and of the tool.
    pub relay_nofile: Option<u64>,
    pub tool_nofile: Option<u64>,
    /// Prism only: prism_target_* counters at the end of the window.
    pub prism_dropped_frames: Option<f64>,
    pub prism_target_disconnects: Option<f64>,
    pub prism_target_reconnects: Option<f64>,
    pub prism_targets_up: Option<f64>,
    /// Prism only: prism_players_active, prism_player_dropped_frames_total,
    /// prism_connection_errors_total at the end of the window.
    pub prism_players_active: Option<f64>,
    pub prism_player_dropped_frames: Option<f64>,
    pub prism_connection_errors: Option<f64>,
    pub relay_exit: Option<String>,
    pub notes: Vec<String>,
}

fn progress(msg: impl AsRef<str>) {
    eprintln!("[prism-load] {}", msg.as_ref());
}

fn count(conns: &[Arc<SinkConn>], f: impl Fn(&SinkConn) -> bool) -> usize {
    conns.iter().filter(|c| f(c)).count()
}

fn sum_bytes(conns: &[Arc<SinkConn>]) -> Vec<u64> {
    conns
        .iter()
        .map(|c| c.bytes.load(Ordering::Relaxed))
        .collect()
}

/// The relay's memory with the stream idle (media paused).
#[derive(Debug, Clone, Serialize)]
pub struct IdleSample {
    pub rss_kb: u64,
    /// Targets (players) connected at the time.
    pub targets: usize,
    /// No receiver got a byte in the last 500 ms: nothing is queued for anyone.
    pub drained: bool,
    /// Prism's prism_target_queue_bytes, summed. Exported only when a push task wakes, so
    /// it keeps its last value once the stream goes quiet (stale while idle).
    pub prism_queue_gauge_bytes: Option<f64>,
    /// What is subtracted as queued media: 0 when drained, else the Prism gauge (None for
    /// nginx: unknown).
    pub queued_bytes: Option<f64>,
}

/// Samples the relay's memory with media paused, after checking over 500 ms that nothing
/// is still being delivered.
async fn idle_sample(receivers: &Receivers, relay: &relay::RelayProcess) -> IdleSample {
    let pid = relay.pid().to_string();
    let before: u64 = sum_bytes(&receivers.snapshot()).iter().sum();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let conns = receivers.snapshot();
    let after: u64 = sum_bytes(&conns).iter().sum();
    let rss_kb = relay::status_field(&pid, "VmRSS").unwrap_or(0);
    let gauge = prism_metrics(relay).map(|t| relay::metric_sum(&t, "prism_target_queue_bytes"));
    let drained = after == before;
    IdleSample {
        rss_kb,
        targets: count(&conns, connected),
        drained,
        prism_queue_gauge_bytes: gauge,
        queued_bytes: if drained { Some(0.0) } else { gauge },
    }
}

/// Where the receiving connections come from.
enum Receivers {
    Sink(Sink),
    Players(Players),
    Whep(WhepViewers),
}

impl Receivers {
    fn snapshot(&self) -> Vec<Arc<SinkConn>> {
        match self {
            Receivers::Sink(s) => s.snapshot(),
            Receivers::Players(p) => p.snapshot(),
            Receivers::Whep(w) => w.snapshot(),
        }
    }
    fn shutdown(&self) {
        match self {
            Receivers::Sink(s) => s.shutdown(),
            Receivers::Players(p) => p.shutdown(),
            Receivers::Whep(w) => w.shutdown(),
        }
    }
}

/// The publishers: one per stream, and the switches they obey.
struct Publishers {
    stats: Vec<Arc<PubStats>>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    media: watch::Sender<bool>,
    stop: watch::Sender<bool>,
}

impl Publishers {
    fn publishing(&self) -> usize {
        self.stats
            .iter()
            .filter(|s| s.publishing.load(Ordering::Relaxed))
            .count()
    }
    fn wire_bytes(&self) -> Vec<u64> {
        self.stats
            .iter()
            .map(|s| s.wire_bytes.load(Ordering::Relaxed))
            .collect()
    }
}

/// Prism's /metrics, if the relay is Prism and answers.
fn prism_metrics(relay: &relay::RelayProcess) -> Option<String> {
    relay
        .http_port
        .and_then(|p| relay::http_get(p, "/metrics").ok())
}

pub async fn run(opts: &ScenarioOpts) -> anyhow::Result<ScenarioResult> {
    let name = opts.relay.name();
    let n = opts.total();
    let tck = relay::clk_tck();
    let clock = Clock::new();
    let window = Arc::new(Window::new());
    let receivers = match opts.scenario {
        Scenario::Players => Receivers::Players(Players::new()),
        Scenario::Whep => Receivers::Whep(WhepViewers::new()),
        _ => Receivers::Sink(Sink::start(opts.latency_sinks, n, clock, window.clone()).await?),
    };
    let sink_port = match &receivers {
        Receivers::Sink(s) => s.port,
        Receivers::Players(_) | Receivers::Whep(_) => 0,
    };
    let dir: PathBuf = std::env::temp_dir().join("prism-load").join(format!(
        "{name}-{}-{n}-{}-{}",
        opts.scenario.name(),
        std::process::id(),
        clock.now_ns()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as u64)
                .unwrap_or(0)
    ));
    let what = match opts.scenario {
        Scenario::Fanout => format!("{n} targets"),
        Scenario::Multi => format!("{} streams × {} targets", opts.streams(), opts.targets),
        Scenario::Players => format!("{n} players"),
        Scenario::Whep => format!("{n} WHEP viewers"),
    };
    progress(format!(
        "{name} {} {what} at {} kbit/s: {}relay files in {}",
        opts.scenario.name(),
        opts.bitrate_kbps,
        if sink_port > 0 {
            format!("sink on 127.0.0.1:{sink_port}, ")
        } else {
            String::new()
        },
        dir.display()
    ));
    let spec = opts.spec(sink_port);
    let mut relay = relay::start(opts.relay, &opts.paths, &spec, &dir)?;
    let pid = relay.pid().to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle_kb = relay::status_field(&pid, "VmRSS").unwrap_or(0);

    // Publishers, media paused until every target / player is connected.
    let (media_tx, media_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut pubs = Publishers {
        stats: Vec::new(),
        tasks: Vec::new(),
        media: media_tx,
        stop: stop_tx,
    };
    for i in 0..opts.streams() {
        let stats = Arc::new(PubStats::default());
        let (app, key) = spec.publish_name(opts.relay, i);
        pubs.tasks.push(tokio::spawn(publisher::run(
            PublishTarget {
                port: relay.rtmp_port,
                app,
                key,
                stream: i as u16,
                speed: 1,
            },
            opts.bitrate_kbps,
            clock,
            window.clone(),
            stats.clone(),
            media_rx.clone(),
            stop_rx.clone(),
        )));
        pubs.stats.push(stats);
    }

    let result = measure(
        opts,
        &receivers,
        &mut relay,
        &pubs,
        &window,
        clock,
        tck,
        rss_idle_kb,
    )
    .await;

    let _ = pubs.stop.send(true);
    let mut pub_errors = Vec::new();
    for t in pubs.tasks.drain(..) {
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(3), t).await {
            pub_errors.push(format!("{e:#}"));
        }
    }
    relay.stop();
    receivers.shutdown();
    if !opts.keep_tmp && result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut r = result?;
    if !pub_errors.is_empty() {
        r.notes.push(format!(
            "{} publisher(s) ended with an error, e.g.: {}",
            pub_errors.len(),
            pub_errors[0]
        ));
    }
    Ok(r)
}

/// Connected: a sink accepted the relay's publish, or a player got Play.Start; not closed.
fn connected(c: &SinkConn) -> bool {
    c.publishing.load(Ordering::Relaxed) && !c.closed.load(Ordering::Relaxed)
}

fn receiving(c: &SinkConn) -> bool {
    c.receiving.load(Ordering::Relaxed) && !c.closed.load(Ordering::Relaxed)
}

/// Publishers publishing (media paused), then every target connected or every player
/// playing. Returns the seconds that took and how many got there.
#[allow(clippy::too_many_arguments)]
async fn connect_phase(
    opts: &ScenarioOpts,
    receivers: &Receivers,
    relay: &mut relay::RelayProcess,
    pubs: &Publishers,
    clock: Clock,
    window: &Arc<Window>,
    notes: &mut Vec<String>,
    kernel: &mut (Option<u64>, Option<u64>),
) -> anyhow::Result<(f64, usize)> {
    let n = opts.total();
    let streams = opts.streams();
    let t0 = Instant::now();
    let overflows0 = relay::tcp_ext("ListenOverflows");
    let syn0 = relay::tcp_ext("TCPSynRetrans");
    while pubs.publishing() < streams {
        if let Some(st) = relay.exited() {
            bail!("relay exited at publish ({st}):\n{}", relay.log_tail(30));
        }
        if pubs.tasks.iter().any(|t| t.is_finished()) {
            bail!(
                "a publisher failed before publishing ({} of {streams} publishing); relay log:\n{}",
                pubs.publishing(),
                relay.log_tail(30)
            );
        }
        if t0.elapsed() > Duration::from_secs(20) {
            bail!(
                "only {} of {streams} publishers publishing after 20 s; relay log:\n{}",
                pubs.publishing(),
                relay.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t1 = Instant::now();
    match receivers {
        Receivers::Players(players) => {
            let (app, key) = opts.spec(0).publish_name(opts.relay, 0);
            players
                .connect(
                    relay.rtmp_port,
                    &app,
                    &key,
                    n,
                    opts.batch,
                    opts.latency_sinks,
                    opts.connect_timeout.min(Duration::from_secs(30)),
                    clock,
                    window.clone(),
                    progress,
                )
                .await?;
        }
        Receivers::Whep(viewers) => {
            let (app, key) = opts.spec(0).publish_name(opts.relay, 0);
            let Some(sig_port) = relay.webrtc_port else {
                bail!("{} has no WHEP endpoint", opts.relay.name());
            };
            viewers
                .connect(
                    sig_port,
                    &app,
                    &key,
                    n,
                    opts.batch,
                    opts.latency_sinks,
                    opts.connect_timeout.min(Duration::from_secs(30)),
                    clock,
                    window.clone(),
                    progress,
                )
                .await?;
        }
        Receivers::Sink(_) => {
            let mut last_report = Instant::now();
            loop {
                if let Some(st) = relay.exited() {
                    bail!(
                        "relay exited while targets connected ({st}):\n{}",
                        relay.log_tail(30)
                    );
                }
                let conns = receivers.snapshot();
                let up = count(&conns, connected);
                if up >= n {
                    break;
                }
                if t1.elapsed() > opts.connect_timeout {
                    break;
                }
                if last_report.elapsed() > Duration::from_secs(2) {
                    last_report = Instant::now();
                    progress(format!(
                        "  connecting: {up}/{n} targets connected, {} connections",
                        conns.len()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let took = t1.elapsed().as_secs_f64();
    let delta = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
    *kernel = (
        delta(overflows0, relay::tcp_ext("ListenOverflows")),
        delta(syn0, relay::tcp_ext("TCPSynRetrans")),
    );
    if let (Some(o), Some(r)) = *kernel {
        if o > 0 || r > 0 {
            let msg = format!(
                "while connecting: kernel ListenOverflows +{o}, TCPSynRetrans +{r} (machine-wide; \
                 an accept queue was full, those clients retried after 1 s, 3 s, ...)"
            );
            progress(&msg);
            notes.push(msg);
        }
    }
    let conns = receivers.snapshot();
    let up = count(&conns, connected);
    let failed = count(&conns, |c| c.closed.load(Ordering::Relaxed));
    if up < n {
        let msg = format!(
            "before media: only {up}/{n} {} after {took:.0} s ({} connections, {failed} closed)",
            if matches!(opts.scenario, Scenario::Players | Scenario::Whep) {
                "players playing"
            } else {
                "targets connected"
            },
            conns.len()
        );
        progress(&msg);
        notes.push(msg);
        let mut errors: std::collections::BTreeMap<String, usize> = Default::default();
        for c in &conns {
            if let Some(e) = lock(&c.error).as_ref() {
                *errors.entry(e.clone()).or_default() += 1;
            }
        }
        for (e, k) in errors.iter().take(5) {
            notes.push(format!("{k} connection(s) failed: {e}"));
        }
    } else {
        progress(format!(
            "all {n} connected after {took:.1} s (media paused)"
        ));
    }
    Ok((took, up))
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    opts: &ScenarioOpts,
    receivers: &Receivers,
    relay: &mut relay::RelayProcess,
    pubs: &Publishers,
    window: &Arc<Window>,
    clock: Clock,
    tck: f64,
    rss_idle_kb: u64,
) -> anyhow::Result<ScenarioResult> {
    let n = opts.total();
    let pid = relay.pid().to_string();
    let mut notes = Vec::new();

    // Connect everything to an idle stream; measure the relay's memory there.
    let mut kernel = (None, None);
    let (connect_s, targets_connected_idle) = connect_phase(
        opts,
        receivers,
        relay,
        pubs,
        clock,
        window,
        &mut notes,
        &mut kernel,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_before_media = idle_sample(receivers, relay).await;
    // Per connected target (all N unless some never connected).
    let idle_kb = |s: &IdleSample| {
        (s.rss_kb as f64 - rss_idle_kb as f64 - s.queued_bytes.unwrap_or(0.0) / 1024.0)
            / s.targets.max(1) as f64
    };

    // Media on. Warm-up: wait for every target to receive media.
    let _ = pubs.media.send(true);
    let t0 = Instant::now();
    let mut last_report = Instant::now();
    loop {
        if let Some(st) = relay.exited() {
            bail!(
                "relay exited during warm-up ({st}):\n{}",
                relay.log_tail(30)
            );
        }
        let conns = receivers.snapshot();
        let recv = count(&conns, receiving);
        if recv >= n {
            progress(format!(
                "all {n} receiving after {:.1} s",
                t0.elapsed().as_secs_f64()
            ));
            break;
        }
        if t0.elapsed() > opts.connect_timeout {
            let msg = format!(
                "only {recv}/{n} receiving after {:.0} s (connections: {}); measuring anyway",
                t0.elapsed().as_secs_f64(),
                conns.len()
            );
            progress(&msg);
            notes.push(msg);
            break;
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            last_report = Instant::now();
            progress(format!(
                "  warm-up: {recv}/{n} receiving, {} connections",
                conns.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(opts.warmup_seconds)).await;

    // The window.
    let conns0 = receivers.snapshot();
    let bytes0 = sum_bytes(&conns0);
    let closed0 = count(&conns0, |c| c.closed.load(Ordering::Relaxed));
    let pub0 = pubs.wire_bytes();
    let cpu0 = relay::cpu_seconds(&pid, tck).unwrap_or(0.0);
    let threads0 = relay::thread_cpu_seconds(&pid, tck);
    let tool0 = relay::cpu_seconds("self", tck).unwrap_or(0.0);
    let mach0 = relay::machine_jiffies().unwrap_or((0, 0));
    let w0 = Instant::now();
    window.open(clock.now_ns());
    if std::env::var_os("PRISM_LOAD_TRACE").is_some() {
        eprintln!("[trace] window open at {} ms", clock.now_ns() / 1_000_000);
    }
    progress(format!("  measuring {} s", opts.seconds));
    let mut last = Instant::now();
    let mut last_bytes: u64 = bytes0.iter().sum();
    while w0.elapsed() < Duration::from_secs(opts.seconds) {
        tokio::time::sleep(
            Duration::from_secs(opts.seconds)
                .saturating_sub(w0.elapsed())
                .min(Duration::from_secs(5)),
        )
        .await;
        let b: u64 = sum_bytes(&receivers.snapshot()).iter().sum();
        let dt = last.elapsed().as_secs_f64();
        progress(format!(
            "  {:>4.0} s: sinks {:.3} Gbit/s, relay CPU {:.0}%",
            w0.elapsed().as_secs_f64(),
            (b - last_bytes) as f64 * 8.0 / 1e9 / dt,
            (relay::cpu_seconds(&pid, tck).unwrap_or(0.0) - cpu0) / w0.elapsed().as_secs_f64()
                * 100.0
        ));
        last = Instant::now();
        last_bytes = b;
    }
    window.close(clock.now_ns());
    if std::env::var_os("PRISM_LOAD_TRACE").is_some() {
        eprintln!("[trace] window close at {} ms", clock.now_ns() / 1_000_000);
    }
    let elapsed = w0.elapsed().as_secs_f64();
    let cpu1 = relay::cpu_seconds(&pid, tck).unwrap_or(0.0);
    // Per thread: does the fan-out use every worker, or serialize on one?
    let mut relay_thread_cpu_pct: Vec<f64> = relay::thread_cpu_seconds(&pid, tck)
        .iter()
        .map(|(tid, s)| (s - threads0.get(tid).copied().unwrap_or(0.0)) / elapsed * 100.0)
        .collect();
    relay_thread_cpu_pct.sort_by(|a, b| b.total_cmp(a));
    let tool1 = relay::cpu_seconds("self", tck).unwrap_or(0.0);
    let mach1 = relay::machine_jiffies().unwrap_or((0, 0));
    let pub1 = pubs.wire_bytes();
    let conns1 = receivers.snapshot();
    let bytes1 = sum_bytes(&conns1);
    let rss_kb = relay::status_field(&pid, "VmRSS").unwrap_or(0);
    let hwm_kb = relay::status_field(&pid, "VmHWM").unwrap_or(0);
    let relay_threads = relay::status_field(&pid, "Threads").unwrap_or(0);
    let relay_exit = relay.exited();
    let metrics = prism_metrics(relay);
    // Late messages sent inside the window still count for latency.
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // Idle again: media paused, queues drain; what the relay holds per target now.
    let _ = pubs.media.send(false);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle_after_media = idle_sample(receivers, relay).await;
    for (what, s) in [("before", &idle_before_media), ("after", &idle_after_media)] {
        if !s.drained {
            notes.push(format!(
                "KB/idle target {what} media: receivers still got bytes with media paused; \
                 subtracted as queued: {}",
                s.queued_bytes
                    .map_or("nothing (queue size unknown)".into(), |b| format!(
                        "{b:.0} B (Prism's gauge)"
                    ))
            ));
        }
    }

    let pub_bytes: Vec<u64> = pub1.iter().zip(&pub0).map(|(a, b)| a - b).collect();
    let sent: Vec<u64> = pubs
        .stats
        .iter()
        .map(|s| {
            // WHEP viewers get audio as Opus (transcoded, no marker): video only.
            s.window_video.load(Ordering::Relaxed)
                + match opts.scenario {
                    Scenario::Whep => 0,
                    _ => s.window_audio.load(Ordering::Relaxed),
                }
        })
        .collect();
    // A connection whose stream is unknown (nothing of ours arrived) counts against stream 0.
    let stream_of = |c: &SinkConn| c.stream().filter(|&s| s < pub_bytes.len()).unwrap_or(0);
    let mut delivered = 0u64;
    for (i, b) in bytes1.iter().enumerate() {
        delivered += b - bytes0.get(i).copied().unwrap_or(0);
    }
    // Per target: sum every connection of the same publish name (a reconnect is a new
    // connection but the same target).
    #[derive(Default)]
    struct Target {
        bytes: u64,
        stream: usize,
        parse: bool,
        msgs: u64,
        gaps: u64,
    }
    let mut per_target: std::collections::BTreeMap<String, Target> = Default::default();
    for (i, c) in conns1.iter().enumerate() {
        let before = bytes0.get(i).copied().unwrap_or(0);
        let key = {
            let nm = lock(&c.name).clone();
            if nm.is_empty() {
                format!("#conn{}", c.index)
            } else {
                nm
            }
        };
        let t = per_target.entry(key).or_default();
        t.bytes += bytes1[i] - before;
        t.stream = stream_of(c);
        if c.parse {
            let st = lock(&c.stats);
            t.parse = true;
            t.msgs += st.video_msgs + st.audio_msgs;
            t.gaps += st.gaps + st.reorders;
        }
    }
    let mut target_ratios: Vec<f64> = per_target
        .values()
        .map(|t| t.bytes as f64 / pub_bytes[t.stream].max(1) as f64)
        .collect();
    // Targets that never connected count as 0.
    while target_ratios.len() < n {
        target_ratios.push(0.0);
    }
    let mut min_ratio = f64::INFINITY;
    let mut below = 0usize;
    for r in &target_ratios {
        min_ratio = min_ratio.min(*r);
        if *r < 0.95 {
            below += 1;
        }
    }
    if per_target.len() != n && opts.relay != RelayKind::Nginx {
        notes.push(format!(
            "receivers saw {} distinct names for {n} targets",
            per_target.len()
        ));
    }
    let (mut msgs_missing, mut targets_with_gaps) = (0i64, 0usize);
    for t in per_target.values().filter(|t| t.parse) {
        let missing = sent[t.stream] as i64 - t.msgs as i64;
        msgs_missing += missing;
        if missing > 0 || t.gaps > 0 {
            targets_with_gaps += 1;
        }
    }

    let mut lat: Vec<u32> = Vec::new();
    let (mut gaps, mut reorders) = (0u64, 0u64);
    let mut parse_sinks = 0usize;
    for c in conns1.iter().filter(|c| c.parse) {
        let st = lock(&c.stats);
        if c.latency {
            parse_sinks += 1;
        }
        lat.extend_from_slice(&st.latency_us);
        gaps += st.gaps;
        reorders += st.reorders;
    }
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat[i] as f64 / 1000.0
    };

    let per_stream = opts.total() / opts.streams();
    let expected: u64 = pub_bytes.iter().map(|b| b * per_stream as u64).sum();
    let targets_receiving = count(&conns1, receiving);
    let closed = count(&conns1, |c| c.closed.load(Ordering::Relaxed));
    let mut errors: std::collections::BTreeMap<String, usize> = Default::default();
    for c in conns1.iter().filter(|c| c.closed.load(Ordering::Relaxed)) {
        if let Some(e) = lock(&c.error).as_ref() {
            *errors.entry(e.clone()).or_default() += 1;
        }
    }
    for (e, k) in errors.iter().take(10) {
        notes.push(format!("{k} connection(s) closed with: {e}"));
    }
    if opts.scenario == Scenario::Whep {
        // Per viewer: video frames (no audio markers after the Opus transcode) and the
        // longest stretch without one inside the window; never-connected viewers froze.
        let bounds = window.bounds();
        let frozen_after = FROZEN_AFTER.as_nanos() as u64;
        let (mut frozen, mut frames, mut worst) = (n.saturating_sub(conns1.len()), 0u64, 0u64);
        for c in &conns1 {
            let st = lock(&c.stats);
            let gap = st.longest_gap_ns(bounds);
            worst = worst.max(gap);
            if gap > frozen_after {
                frozen += 1;
            }
            frames += st.video_msgs;
        }
        let video_sent: u64 = pubs
            .stats
            .iter()
            .map(|s| s.window_video.load(Ordering::Relaxed))
            .sum();
        notes.push(format!(
            "WHEP: {frozen} of {n} viewers frozen (no video frame for > {} s in the window; \
             longest stretch {:.2} s); video frames delivered {frames} of {} ({:.2}%)",
            FROZEN_AFTER.as_secs(),
            worst as f64 / 1e9,
            video_sent * n as u64,
            frames as f64 * 100.0 / (video_sent * n as u64).max(1) as f64
        ));
        progress(notes.last().cloned().unwrap_or_default());
    }
    let cpu = cpu1 - cpu0;
    let gbit = delivered as f64 * 8.0 / 1e9;
    let (busy, total) = (mach1.0 - mach0.0, (mach1.1 - mach0.1).max(1));
    let msum = |name: &str| metrics.as_deref().map(|t| relay::metric_sum(t, name));
    let r = ScenarioResult {
        scenario: opts.scenario,
        relay: opts.relay.name().into(),
        relay_threads,
        streams: opts.streams(),
        targets: n,
        targets_per_stream: per_stream,
        seconds: elapsed,
        bitrate_kbps: opts.bitrate_kbps,
        targets_receiving,
        sink_connections: conns1.len(),
        sink_connections_closed: closed,
        sink_connections_closed_in_window: closed.saturating_sub(closed0),
        connect_s,
        targets_connected_idle,
        listen_overflows_connect: kernel.0,
        syn_retrans_connect: kernel.1,
        relay_cpu_s: cpu,
        relay_cpu_pct: cpu / elapsed * 100.0,
        cpu_s_per_gbit: if gbit > 0.0 { cpu / gbit } else { f64::NAN },
        delivered_bytes: delivered,
        expected_bytes: expected,
        delivered_ratio: delivered as f64 / expected.max(1) as f64,
        delivered_gbit_s: gbit / elapsed,
        min_target_ratio: if min_ratio.is_finite() {
            min_ratio
        } else {
            0.0
        },
        targets_below_95pct: below,
        rss_idle_kb,
        rss_kb,
        hwm_kb,
        rss_per_target_kb: rss_kb.saturating_sub(rss_idle_kb) as f64 / n.max(1) as f64,
        idle_kb_per_target_before_media: idle_kb(&idle_before_media),
        idle_before_media,
        idle_kb_per_target_after_media: idle_kb(&idle_after_media),
        idle_after_media,
        latency_sinks: parse_sinks,
        latency_samples: lat.len(),
        latency_p50_ms: pct(0.50),
        latency_p99_ms: pct(0.99),
        latency_max_ms: lat.last().map_or(f64::NAN, |&v| v as f64 / 1000.0),
        window_msgs_sent: sent.iter().sum(),
        msgs_missing,
        targets_with_gaps,
        seq_gaps: gaps,
        reorders,
        publisher_max_lag_ms: pubs
            .stats
            .iter()
            .map(|s| s.max_lag_us.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0) as f64
            / 1000.0,
        tool_cpu_s: tool1 - tool0,
        relay_thread_cpu_pct,
        machine_busy_pct: busy as f64 / total as f64 * 100.0,
        relay_nofile: fdlimit::nofile(&pid).map(|l| l.0),
        tool_nofile: fdlimit::nofile("self").map(|l| l.0),
        prism_dropped_frames: msum("prism_target_dropped_frames_total"),
        prism_target_disconnects: msum("prism_target_disconnects_total"),
        prism_target_reconnects: msum("prism_target_reconnects_total"),
        prism_targets_up: msum("prism_target_up"),
        prism_players_active: msum("prism_players_active"),
        prism_player_dropped_frames: msum("prism_player_dropped_frames_total"),
        prism_connection_errors: msum("prism_connection_errors_total"),
        relay_exit,
        notes,
    };
    progress(format!(
        "  {} × {}: {:.2} CPU-s/Gbit, CPU {:.0}%, delivered {:.3} of expected, latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms, {} receiving, {} with gaps, RSS {} MB, idle KB/target {:.1} before media, {:.1} after",
        r.relay,
        n,
        r.cpu_s_per_gbit,
        r.relay_cpu_pct,
        r.delivered_ratio,
        r.latency_p50_ms,
        r.latency_p99_ms,
        r.latency_max_ms,
        r.targets_receiving,
        r.targets_with_gaps,
        r.rss_kb / 1024,
        r.idle_kb_per_target_before_media,
        r.idle_kb_per_target_after_media,
    ));
    Ok(r)
}
