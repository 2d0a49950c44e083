//! One scenario: sink + relay + publisher, warm-up, a measured window, the numbers.

use crate::media::{Clock, Window};
use crate::publisher::{self, PubStats, PublishTarget};
use crate::relay::{self, RelayKind, RelayPaths};
use crate::sink::{lock, Sink, SinkConn};
use anyhow::bail;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct ScenarioOpts {
    pub relay: RelayKind,
    pub targets: usize,
    pub seconds: u64,
    pub bitrate_kbps: u64,
    pub warmup_seconds: u64,
    /// How long to wait for every target to receive media before measuring anyway.
    pub connect_timeout: Duration,
    /// Sinks (first accepted) that parse every message; the rest count bytes.
    pub latency_sinks: usize,
    pub paths: RelayPaths,
    pub keep_tmp: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub relay: String,
    /// Threads of the relay process during the window (Prism: tokio workers + others).
    pub relay_threads: u64,
    pub targets: usize,
    pub seconds: f64,
    pub bitrate_kbps: u64,
    /// Targets that were receiving media when the window closed.
    pub targets_receiving: usize,
    /// Connections the sink accepted in total (more than `targets` = reconnects).
    pub sink_connections: usize,
    /// Sink connections closed by the end of the window (the relay hung up).
    pub sink_connections_closed: usize,
    /// Of those, closed during the window.
    pub sink_connections_closed_in_window: usize,
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
    pub rss_idle_kb: u64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
    /// (rss_kb - rss_idle_kb) / targets.
    pub rss_per_target_kb: f64,
    /// Sinks that matched each message for latency.
    pub latency_sinks: usize,
    pub latency_samples: usize,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// Media messages the publisher sent in the window, per sink.
    pub window_msgs_sent: u64,
    /// Summed over parsing sinks: messages sent in the window that never arrived.
    pub msgs_missing: i64,
    pub seq_gaps: u64,
    pub reorders: u64,
    pub publisher_max_lag_ms: f64,
    pub tool_cpu_s: f64,
    /// Busy share of all cores of the machine during the window (all processes).
    pub machine_busy_pct: f64,
    /// Prism only: prism_target_* counters at the end of the window.
    pub prism_dropped_frames: Option<f64>,
    pub prism_target_disconnects: Option<f64>,
    pub prism_target_reconnects: Option<f64>,
    pub prism_targets_up: Option<f64>,
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

pub async fn run(opts: &ScenarioOpts) -> anyhow::Result<ScenarioResult> {
    let name = opts.relay.name();
    let n = opts.targets;
    let tck = relay::clk_tck();
    let clock = Clock::new();
    let window = Arc::new(Window::new());
    let sink = Sink::start(opts.latency_sinks, clock, window.clone()).await?;
    let dir: PathBuf = std::env::temp_dir().join("prism-load").join(format!(
        "{name}-{n}-{}-{}",
        std::process::id(),
        clock.now_ns()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as u64)
                .unwrap_or(0)
    ));
    progress(format!(
        "{name} × {n} targets: sink on 127.0.0.1:{}, relay files in {}",
        sink.port,
        dir.display()
    ));
    let mut relay = relay::start(opts.relay, &opts.paths, n, sink.port, &dir)?;
    let pid = relay.pid().to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle_kb = relay::status_field(&pid, "VmRSS").unwrap_or(0);

    let stats = Arc::new(PubStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let pub_task = tokio::spawn(publisher::run(
        PublishTarget {
            port: relay.rtmp_port,
            app: "live".into(),
            key: "bench".into(),
        },
        opts.bitrate_kbps,
        clock,
        window.clone(),
        stats.clone(),
        stop_rx,
    ));

    let result = measure(
        opts,
        &sink,
        &mut relay,
        &stats,
        &window,
        clock,
        tck,
        rss_idle_kb,
    )
    .await;

    let _ = stop_tx.send(true);
    let pub_result = tokio::time::timeout(Duration::from_secs(3), pub_task).await;
    relay.stop();
    sink.shutdown();
    if !opts.keep_tmp && result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut r = result?;
    if let Ok(Ok(Err(e))) = pub_result {
        r.notes
            .push(format!("publisher ended with an error: {e:#}"));
    }
    Ok(r)
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    opts: &ScenarioOpts,
    sink: &Sink,
    relay: &mut relay::RelayProcess,
    stats: &PubStats,
    window: &Window,
    clock: Clock,
    tck: f64,
    rss_idle_kb: u64,
) -> anyhow::Result<ScenarioResult> {
    let n = opts.targets;
    let pid = relay.pid().to_string();
    let mut notes = Vec::new();

    // Warm-up: wait for the publish, then for every target to receive media.
    let t0 = Instant::now();
    let mut last_report = Instant::now();
    loop {
        if let Some(st) = relay.exited() {
            bail!(
                "relay exited during warm-up ({st}):\n{}",
                relay.log_tail(30)
            );
        }
        let conns = sink.snapshot();
        let receiving = count(&conns, |c| {
            c.receiving.load(Ordering::Relaxed) && !c.closed.load(Ordering::Relaxed)
        });
        if receiving >= n {
            progress(format!(
                "all {n} targets receiving after {:.1} s",
                t0.elapsed().as_secs_f64()
            ));
            break;
        }
        if t0.elapsed() > opts.connect_timeout {
            let msg = format!(
                "only {receiving}/{n} targets receiving after {:.0} s (connections accepted: {}); measuring anyway",
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
                "  warm-up: publisher {}, {receiving}/{n} targets receiving, {} connections",
                if stats.publishing.load(Ordering::Relaxed) {
                    "live"
                } else {
                    "connecting"
                },
                conns.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(opts.warmup_seconds)).await;

    // The window.
    let conns0 = sink.snapshot();
    let bytes0 = sum_bytes(&conns0);
    let closed0 = count(&conns0, |c| c.closed.load(Ordering::Relaxed));
    let pub0 = stats.wire_bytes.load(Ordering::Relaxed);
    let cpu0 = relay::cpu_seconds(&pid, tck).unwrap_or(0.0);
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
        let b: u64 = sum_bytes(&sink.snapshot()).iter().sum();
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
    let tool1 = relay::cpu_seconds("self", tck).unwrap_or(0.0);
    let mach1 = relay::machine_jiffies().unwrap_or((0, 0));
    let pub1 = stats.wire_bytes.load(Ordering::Relaxed);
    let conns1 = sink.snapshot();
    let bytes1 = sum_bytes(&conns1);
    let rss_kb = relay::status_field(&pid, "VmRSS").unwrap_or(0);
    let hwm_kb = relay::status_field(&pid, "VmHWM").unwrap_or(0);
    let relay_threads = relay::status_field(&pid, "Threads").unwrap_or(0);
    let relay_exit = relay.exited();
    let prism_metrics = match relay.http_port {
        Some(port) => relay::http_get(port, "/metrics").ok(),
        None => None,
    };
    // Late messages sent inside the window still count for latency.
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let pub_bytes = pub1 - pub0;
    let mut delivered = 0u64;
    let mut min_ratio = f64::INFINITY;
    let mut below = 0usize;
    for (i, b) in bytes1.iter().enumerate() {
        delivered += b - bytes0.get(i).copied().unwrap_or(0);
    }
    // Per target: sum every connection of the same publish name (a reconnect is a new
    // connection but the same target).
    let mut per_target: std::collections::BTreeMap<String, u64> = Default::default();
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
        *per_target.entry(key).or_default() += bytes1[i] - before;
    }
    let mut target_ratios: Vec<f64> = per_target
        .values()
        .map(|&b| b as f64 / pub_bytes.max(1) as f64)
        .collect();
    // Targets that never connected count as 0.
    while target_ratios.len() < n {
        target_ratios.push(0.0);
    }
    for r in &target_ratios {
        min_ratio = min_ratio.min(*r);
        if *r < 0.95 {
            below += 1;
        }
    }
    if per_target.len() != n && opts.relay != RelayKind::Nginx {
        notes.push(format!(
            "sink saw {} distinct publish names for {n} targets",
            per_target.len()
        ));
    }

    let mut lat: Vec<u32> = Vec::new();
    let (mut video, mut audio, mut gaps, mut reorders) = (0u64, 0u64, 0u64, 0u64);
    let mut parse_sinks = 0usize;
    for c in conns1.iter().filter(|c| c.parse) {
        parse_sinks += 1;
        let st = lock(&c.stats);
        lat.extend_from_slice(&st.latency_us);
        video += st.video_msgs;
        audio += st.audio_msgs;
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
    let sent =
        stats.window_video.load(Ordering::Relaxed) + stats.window_audio.load(Ordering::Relaxed);
    let msgs_missing = (sent * parse_sinks.min(n) as u64) as i64 - (video + audio) as i64;

    let expected = pub_bytes * n as u64;
    let targets_receiving = count(&conns1, |c| {
        c.receiving.load(Ordering::Relaxed) && !c.closed.load(Ordering::Relaxed)
    });
    let closed = count(&conns1, |c| c.closed.load(Ordering::Relaxed));
    for c in conns1.iter().filter(|c| c.closed.load(Ordering::Relaxed)) {
        if let Some(e) = lock(&c.error).as_ref() {
            notes.push(format!("sink connection {} error: {e}", c.index));
        }
    }
    let cpu = cpu1 - cpu0;
    let gbit = delivered as f64 * 8.0 / 1e9;
    let (busy, total) = (mach1.0 - mach0.0, (mach1.1 - mach0.1).max(1));
    let r = ScenarioResult {
        relay: opts.relay.name().into(),
        relay_threads,
        targets: n,
        seconds: elapsed,
        bitrate_kbps: opts.bitrate_kbps,
        targets_receiving,
        sink_connections: conns1.len(),
        sink_connections_closed: closed,
        sink_connections_closed_in_window: closed.saturating_sub(closed0),
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
        latency_sinks: parse_sinks,
        latency_samples: lat.len(),
        latency_p50_ms: pct(0.50),
        latency_p99_ms: pct(0.99),
        latency_max_ms: lat.last().map_or(f64::NAN, |&v| v as f64 / 1000.0),
        window_msgs_sent: sent,
        msgs_missing,
        seq_gaps: gaps,
        reorders,
        publisher_max_lag_ms: stats.max_lag_us.load(Ordering::Relaxed) as f64 / 1000.0,
        tool_cpu_s: tool1 - tool0,
        machine_busy_pct: busy as f64 / total as f64 * 100.0,
        prism_dropped_frames: prism_metrics
            .as_deref()
            .map(|t| relay::metric_sum(t, "prism_target_dropped_frames_total")),
        prism_target_disconnects: prism_metrics
            .as_deref()
            .map(|t| relay::metric_sum(t, "prism_target_disconnects_total")),
        prism_target_reconnects: prism_metrics
            .as_deref()
            .map(|t| relay::metric_sum(t, "prism_target_reconnects_total")),
        prism_targets_up: prism_metrics
            .as_deref()
            .map(|t| relay::metric_sum(t, "prism_target_up")),
        relay_exit,
        notes,
    };
    progress(format!(
        "  {} × {}: {:.2} CPU-s/Gbit, CPU {:.0}%, delivered {:.3} of expected, latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms, {} receiving, RSS {} MB",
        r.relay,
        n,
        r.cpu_s_per_gbit,
        r.relay_cpu_pct,
        r.delivered_ratio,
        r.latency_p50_ms,
        r.latency_p99_ms,
        r.latency_max_ms,
        r.targets_receiving,
        r.rss_kb / 1024
    ));
    Ok(r)
}
