//! `prism-load`: pushes a synthetic real-time stream through a relay (Prism or nginx-rtmp)
//! to N push targets served by an in-process RTMP sink (or to N RTMP players), and measures
//! what the relay costs. Scenarios: `fanout` (1 publisher → N targets), `multi`
//! (S publishers × N targets each), `players` (1 publisher → N players), `whep`
//! (1 RTMP publisher → N WHEP viewers, str0m clients in the tool).
//! See benches/README.md.

mod fdlimit;
mod hls;
mod http1;
mod media;
mod player;
mod publisher;
mod relay;
mod report;
mod scenario;
mod sink;
mod soak;
mod soak_report;
mod whep;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use relay::{RelayKind, RelayPaths};
use scenario::{Scenario, ScenarioOpts, ScenarioResult};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "prism-load",
    about = "Fan-out benchmark (push targets, many streams, players): Prism vs nginx-rtmp"
)]
struct Cli {
    /// Worker threads of the tool's own runtime (publisher + sinks).
    #[arg(long, default_value_t = 2, global = true)]
    tool_threads: usize,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One run: one relay, one target count.
    Run {
        /// prism (default tokio worker count), prism1 (one worker thread) or nginx.
        #[arg(long, default_value = "prism")]
        relay: String,
        /// Push targets (fanout; default 10), push targets per stream (multi; 20), players
        /// (players; 10000), WHEP viewers (whep; 100).
        #[arg(long)]
        targets: Option<usize>,
        #[command(flatten)]
        common: Common,
        /// Also write the result as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The matrix: every relay × every target count; writes
    /// benches/results/<date>.{json,md,svg} (fanout) or <date>-<scenario>.{json,md,svg}.
    Bench {
        /// Comma-separated relays.
        #[arg(long, default_value = "prism,nginx", value_delimiter = ',')]
        relays: Vec<String>,
        /// Comma-separated target counts (as `run --targets`; default fanout
        /// 10,100,300,500, multi 20, players 10000).
        #[arg(long, value_delimiter = ',')]
        targets: Option<Vec<usize>>,
        #[command(flatten)]
        common: Common,
        /// Where results go.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Draws the chart of an `hls` results file again (FILE.json → FILE.svg).
    HlsSvg { json: PathBuf },
    /// A long run of one Prism with publishers, push targets and players of every
    /// transport joining and leaving, faulty destinations and malformed input; samples RSS,
    /// fds, threads, tokio tasks and metric series; writes
    /// benches/results/<date>-soak.{csv,json,md,svg}. See benches/README.md, "Soak".
    Soak(SoakArgs),
}

#[derive(Args, Debug, Clone)]
struct SoakArgs {
    /// Length of the run.
    #[arg(long, default_value_t = 60.0)]
    minutes: f64,
    /// Sample Prism every this many seconds.
    #[arg(long, default_value_t = 5)]
    sample_secs: u64,
    /// Synthetic RTMP publishers live for the whole run.
    #[arg(long, default_value_t = 2)]
    stable_publishers: usize,
    /// In-process RTMP players for the whole run.
    #[arg(long, default_value_t = 4)]
    stable_players: usize,
    /// One joiner (publisher, player or viewer of some transport) every this many ms.
    #[arg(long, default_value_t = 2000)]
    churn_ms: u64,
    /// One piece of malformed input every this many ms.
    #[arg(long, default_value_t = 1000)]
    bad_ms: u64,
    /// External clients (ffmpeg, GStreamer) at once, at most.
    #[arg(long, default_value_t = 6)]
    max_external: usize,
    /// Bitrate of the synthetic publishers.
    #[arg(long, default_value_t = 1000)]
    bitrate_kbps: u64,
    /// Length of each phase of the faulty target (pass, stall, pass, kill, pass, refuse).
    #[arg(long, default_value_t = 20)]
    fault_phase_secs: u64,
    /// Seed of the churn and bad-input choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The prism binary (default: next to prism-load).
    #[arg(long)]
    prism_bin: Option<PathBuf>,
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Keep the temp dir (config, Prism's stderr).
    #[arg(long)]
    keep_tmp: bool,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// fanout (1 publisher → N push targets), multi (--streams publishers, each with its
    /// own N push targets), players (1 publisher → N RTMP players), whep (1 RTMP publisher
    /// → N WHEP viewers over loopback; Prism only), hls (1 publisher → N
    /// HLS clients; Prism LL-HLS vs nginx-rtmp `hls on` + static files) or hls-memory
    /// (Prism's RSS per stream for a live or DVR window; --targets = streams).
    #[arg(long, default_value = "fanout")]
    scenario: String,
    /// multi: publishers (streams live/bench0..).
    #[arg(long, default_value_t = 50)]
    streams: usize,
    /// players, whep: players (viewers) connect this many at a time (the next batch once
    /// these play).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Length of the measured window.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Bitrate of each publisher (video + audio). Default: fanout 4700, multi 2000,
    /// players 250, whep 2000.
    #[arg(long)]
    bitrate_kbps: Option<u64>,
    /// Extra warm-up after every target receives media.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Give up waiting for all targets to connect (and again to receive media) after this
    /// many seconds (then measure anyway). Players: per batch, at most 30 s.
    #[arg(long, default_value_t = 60)]
    connect_timeout: u64,
    /// Sinks (every k-th accepted) that parse every message for latency and missing frames;
    /// the rest only count bytes. Parsing all 500 targets costs the tool ~0.3 core. Players all
    /// check for missing frames; this many of them (every k-th) record latency.
    #[arg(long, default_value_t = 1000)]
    latency_sinks: usize,
    /// The prism binary (default: next to prism-load, i.e. target/release/prism).
    #[arg(long)]
    prism_bin: Option<PathBuf>,
    #[arg(long, default_value = "nginx")]
    nginx_bin: PathBuf,
    #[arg(long, default_value = "/usr/lib/nginx/modules/ngx_rtmp_module.so")]
    nginx_module: PathBuf,
    /// node, for the `nms` relay (Node-Media-Server).
    #[arg(long, default_value = "node")]
    node_bin: PathBuf,
    /// Where `nms` finds launch.js and node_modules (`npm ci` there first).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../nms"))]
    nms_dir: PathBuf,
    /// Keep the relays' temp dirs (configs, logs) under $TMPDIR/prism-load/.
    #[arg(long)]
    keep_tmp: bool,
    /// hls: segment target (`[hls] segment_ms`; nginx-rtmp `hls_fragment`). The stream's
    /// GOP is 2 s, so segments are at least that long.
    #[arg(long, default_value_t = 2000)]
    hls_segment_ms: u64,
    /// hls: LL-HLS part target (`[hls] part_ms`, Prism only).
    #[arg(long, default_value_t = 200)]
    hls_part_ms: u64,
    /// hls: segments in the live playlist (nginx-rtmp: `hls_playlist_length` = this ×
    /// segment).
    #[arg(long, default_value_t = 6)]
    hls_window_segments: usize,
    /// hls-memory: `[hls] dvr_window_s` (0 = live window only).
    #[arg(long, default_value_t = 0)]
    hls_dvr_s: u64,
    /// hls-memory: `[hls] dvr_max_mb`, high enough for the DVR window to be bound by time.
    #[arg(long, default_value_t = 8192)]
    hls_dvr_max_mb: u64,
    /// hls-memory: `[hls] dvr_dir` (DVR segments spill to disk there; the result reports
    /// the bytes under it per stream). Needs a Prism that implements dvr_dir.
    #[arg(long)]
    hls_dvr_dir: Option<PathBuf>,
    /// hls-memory: the publishers send media this many times faster than real time (the
    /// window is media time, so a 2 h DVR window fills in 7200 / speed seconds).
    #[arg(long, default_value_t = 1)]
    speed: u32,
}

impl Common {
    /// `hls` or `hls-memory`: handled by the hls module, not by [`Scenario`].
    fn hls(&self) -> Option<bool> {
        match self.scenario.trim() {
            "hls" => Some(false),
            "hls-memory" => Some(true),
            _ => None,
        }
    }

    fn hls_opts(&self, relay: RelayKind, count: usize) -> anyhow::Result<hls::HlsOpts> {
        let base = self.opts_with(Scenario::Players, relay, count, 0)?;
        Ok(hls::HlsOpts {
            relay,
            count,
            seconds: self.seconds,
            warmup_seconds: self.warmup,
            bitrate_kbps: self.bitrate_kbps.unwrap_or(HLS_KBPS),
            segment_ms: self.hls_segment_ms,
            part_ms: self.hls_part_ms,
            window_segments: self.hls_window_segments,
            dvr_window_s: self.hls_dvr_s,
            dvr_max_mb: self.hls_dvr_max_mb,
            dvr_dir: self.hls_dvr_dir.clone(),
            speed: self.speed.max(1),
            batch: self.batch,
            classic: false,
            connect_timeout: base.connect_timeout,
            paths: base.paths,
            keep_tmp: self.keep_tmp,
        })
    }

    fn scenario(&self) -> anyhow::Result<Scenario> {
        Scenario::parse(self.scenario.trim())
    }

    fn bitrate(&self) -> anyhow::Result<u64> {
        Ok(self
            .bitrate_kbps
            .unwrap_or(self.scenario()?.default_bitrate_kbps()))
    }

    fn opts(&self, relay: RelayKind, targets: usize) -> anyhow::Result<ScenarioOpts> {
        let scenario = self.scenario()?;
        self.opts_with(scenario, relay, targets, self.bitrate()?)
    }

    fn opts_with(
        &self,
        scenario: Scenario,
        relay: RelayKind,
        targets: usize,
        bitrate_kbps: u64,
    ) -> anyhow::Result<ScenarioOpts> {
        let prism_bin = match &self.prism_bin {
            Some(p) => p.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("current exe has no parent")?
                .join("prism"),
        };
        Ok(ScenarioOpts {
            scenario,
            relay,
            streams: self.streams,
            targets,
            batch: self.batch,
            seconds: self.seconds,
            bitrate_kbps,
            warmup_seconds: self.warmup,
            connect_timeout: Duration::from_secs(self.connect_timeout),
            latency_sinks: self.latency_sinks,
            paths: RelayPaths {
                prism_bin,
                nginx_bin: self.nginx_bin.clone(),
                nginx_module: self.nginx_module.clone(),
                node_bin: self.node_bin.clone(),
                nms_dir: self.nms_dir.clone(),
            },
            keep_tmp: self.keep_tmp,
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.tool_threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async_main(cli))
}

/// One line about the machine and the run conditions.
fn environment(common: &Common) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let nginx = std::process::Command::new(&common.nginx_bin)
        .arg("-v")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default();
    let prism = common
        .opts_with(Scenario::Players, RelayKind::Prism, 0, 0)
        .map(|o| prism_provenance(&o.paths.prism_bin))
        .unwrap_or_default();
    format!(
        "{cores} cores ({cpu}); load average at start {}; {nginx}; {prism}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Which Prism is measured: the binary's build time, and the checkout it sits in (the
/// binary is whatever the working tree held when it was built).
fn prism_provenance(bin: &std::path::Path) -> String {
    let built = std::fs::metadata(bin)
        .and_then(|m| m.modified())
        .map(report::utc_datetime)
        .unwrap_or_else(|_| "missing".into());
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let head = git(&["log", "-1", "--format=%h %cI"]);
    let dirty = git(&["status", "--porcelain", "--", "../../crates"])
        .lines()
        .count();
    format!(
        "prism binary {} built {built}; checkout HEAD {head}, {dirty} uncommitted paths under crates/ now",
        bin.display()
    )
}

/// Raises the open-file limit for the largest run (the relay inherits it): one fd per
/// target or player (and publisher) in the tool, as many in the relay, plus slack.
fn raise_fd_limit(opts: &ScenarioOpts) {
    let want = (opts.total() + opts.streams()) as u64 + 2048;
    eprintln!("[prism-load] {}", fdlimit::raise_nofile(want));
}

/// What the scenario is, for table headers.
fn describe(common: &Common) -> anyhow::Result<String> {
    let kbps = common.bitrate()?;
    Ok(match common.scenario()? {
        Scenario::Fanout => format!(
            "fanout: 1 publisher → N push targets; {kbps} kbit/s stream"
        ),
        Scenario::Multi => format!(
            "multi: {} publishers × N push targets each; {kbps} kbit/s per publisher ({:.1} Mbit/s in)",
            common.streams,
            common.streams as f64 * kbps as f64 / 1000.0
        ),
        Scenario::Players => format!(
            "players: 1 publisher → N RTMP players (connecting {} at a time); {kbps} kbit/s stream",
            common.batch
        ),
        Scenario::Whep => format!(
            "whep: 1 RTMP publisher → N WHEP viewers (str0m, ICE/DTLS/SRTP on loopback, connecting {} at a time); {kbps} kbit/s stream",
            common.batch
        ),
    })
}

/// Default bitrate of the hls scenarios: the 4.5 Mbit/s stream.
const HLS_KBPS: u64 = 4500;

async fn async_main(cli: Cli) -> anyhow::Result<()> {
    let common = match &cli.command {
        Cmd::Run { common, .. } | Cmd::Bench { common, .. } => common,
        Cmd::Soak(a) => {
            let prism_bin = match &a.prism_bin {
                Some(p) => p.clone(),
                None => std::env::current_exe()?
                    .parent()
                    .context("current exe has no parent")?
                    .join("prism"),
            };
            eprintln!("[prism-load] {}", prism_provenance(&prism_bin));
            eprintln!("[prism-load] {}", fdlimit::raise_nofile(8192));
            return soak::run(&soak::SoakOpts {
                minutes: a.minutes,
                sample_secs: a.sample_secs,
                stable_publishers: a.stable_publishers.max(1),
                stable_players: a.stable_players,
                churn_ms: a.churn_ms,
                bad_ms: a.bad_ms,
                max_external: a.max_external,
                kbps: a.bitrate_kbps,
                fault_phase_secs: a.fault_phase_secs.max(1),
                prism_bin,
                out_dir: a.out_dir.clone().unwrap_or_else(|| {
                    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../results"))
                }),
                keep_tmp: a.keep_tmp,
                seed: a.seed,
            })
            .await;
        }
        Cmd::HlsSvg { json } => {
            let raw: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json)?)?;
            let results: Vec<hls::HlsResult> = serde_json::from_value(raw["results"].clone())?;
            let kbps = results.first().map_or(0, |r| r.bitrate_kbps);
            let date = json
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.get(..10))
                .unwrap_or("")
                .to_owned();
            std::fs::write(
                json.with_extension("svg"),
                hls::svg(
                    &results,
                    &format!("HLS fan-out, {kbps} kbit/s stream ({date})"),
                ),
            )?;
            return Ok(());
        }
    };
    if common.hls().is_some() {
        return hls_main(cli).await;
    }
    match cli.command {
        Cmd::Run {
            relay,
            targets,
            common,
            json,
        } => {
            let scenario = common.scenario()?;
            let targets = targets.unwrap_or(scenario.default_targets());
            let opts = common.opts(RelayKind::parse(&relay)?, targets)?;
            eprintln!("[prism-load] {}", environment(&common));
            raise_fd_limit(&opts);
            let r = scenario::run(&opts).await?;
            println!(
                "{}",
                report::markdown(std::slice::from_ref(&r), &describe(&common)?)
            );
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&r)?)?;
            }
            Ok(())
        }
        Cmd::Bench {
            relays,
            targets,
            common,
            out_dir,
        } => {
            let scenario = common.scenario()?;
            let targets = targets.unwrap_or(scenario.default_bench_targets());
            let kbps = common.bitrate()?;
            let relays: Vec<RelayKind> = relays
                .iter()
                .map(|r| RelayKind::parse(r.trim()))
                .collect::<anyhow::Result<_>>()?;
            let out_dir = out_dir.unwrap_or_else(|| {
                PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../results"))
            });
            std::fs::create_dir_all(&out_dir)?;
            let stem = report::result_stem(
                &out_dir,
                match scenario {
                    Scenario::Fanout => None,
                    s => Some(s.name()),
                },
            );
            let env = environment(&common);
            let latency_sinks = common.latency_sinks;
            let header = format!(
                "## prism-load {} — {}\n\n{} s window, {} (25 fps, keyframe every 2 s, AAC {} kbit/s), \
                 warm-up {} s; latency on {}.\nMachine: {env} — shared with other builds and tests; \
                 see the machine busy column.",
                scenario.name(),
                report::utc_date(),
                common.seconds,
                describe(&common)?,
                media::AUDIO_KBPS.min(kbps / 4),
                common.warmup,
                match scenario {
                    Scenario::Players | Scenario::Whep => format!(
                        "up to {latency_sinks} players (evenly spread); every player checked for missing frames"
                    ),
                    _ => format!("up to {latency_sinks} targets"),
                },
            );
            eprintln!("[prism-load] {env}");
            if let Some(&max) = targets.iter().max() {
                raise_fd_limit(&common.opts(RelayKind::Prism, max)?);
            }
            let total = relays.len() * targets.len();
            let mut results: Vec<ScenarioResult> = Vec::new();
            let mut errors: Vec<serde_json::Value> = Vec::new();
            let mut k = 0;
            // Relays alternate at each target count so drifting machine load hits both alike.
            for &n in &targets {
                for &relay in &relays {
                    k += 1;
                    eprintln!("[prism-load] run {k}/{total}: {} × {n}", relay.name());
                    match scenario::run(&common.opts(relay, n)?).await {
                        Ok(r) => results.push(r),
                        Err(e) => {
                            eprintln!("[prism-load] {} × {n} failed: {e:#}", relay.name());
                            errors.push(serde_json::json!({
                                "relay": relay.name(), "targets": n, "error": format!("{e:#}")
                            }));
                        }
                    }
                    let raw = serde_json::json!({
                        "scenario": scenario,
                        "environment": env,
                        "seconds": common.seconds,
                        "bitrate_kbps": kbps,
                        "streams": if scenario == Scenario::Multi { common.streams } else { 1 },
                        "batch": common.batch,
                        "latency_sinks": latency_sinks,
                        "results": results,
                        "errors": errors,
                    });
                    std::fs::write(
                        stem.with_extension("json"),
                        serde_json::to_string_pretty(&raw)?,
                    )?;
                    // Let sockets in TIME_WAIT and the relay's exit settle.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
            let mut md = report::markdown(&results, &header);
            for e in &errors {
                md.push_str(&format!("\n- FAILED: {e}\n"));
            }
            std::fs::write(stem.with_extension("md"), &md)?;
            let title = match scenario {
                Scenario::Fanout => format!("Push fan-out cost, {kbps} kbit/s stream"),
                Scenario::Multi => format!(
                    "{} streams × N push targets, {kbps} kbit/s each",
                    common.streams
                ),
                Scenario::Players => format!("RTMP players, {kbps} kbit/s stream"),
                Scenario::Whep => format!("WHEP viewers, {kbps} kbit/s stream"),
            };
            std::fs::write(
                stem.with_extension("svg"),
                report::svg(&results, &format!("{title} ({})", report::utc_date())),
            )?;
            println!("{md}");
            eprintln!("[prism-load] wrote {}.{{json,md,svg}}", stem.display());
            Ok(())
        }
        // Handled above.
        Cmd::HlsSvg { .. } | Cmd::Soak(_) => Ok(()),
    }
}

/// `run` and `bench` of the hls scenarios.
async fn hls_main(cli: Cli) -> anyhow::Result<()> {
    let (relays, counts, common, json, out_dir, bench) = match cli.command {
        Cmd::Run {
            relay,
            targets,
            common,
            json,
        } => (
            vec![relay],
            targets.map(|t| vec![t]),
            common,
            json,
            None,
            false,
        ),
        Cmd::Bench {
            relays,
            targets,
            common,
            out_dir,
        } => (relays, targets, common, None, out_dir, true),
        Cmd::HlsSvg { .. } | Cmd::Soak(_) => return Ok(()),
    };
    let memory = common.hls() == Some(true);
    let counts = counts.unwrap_or(if memory {
        if bench {
            vec![1, 10, 50]
        } else {
            vec![1]
        }
    } else {
        vec![1000]
    });
    // `prism-classic`: Prism with classic HLS clients (polled playlists, whole segments),
    // the request pattern nginx gets.
    let relays: Vec<(RelayKind, bool)> = if memory {
        vec![(RelayKind::Prism, false)]
    } else {
        relays
            .iter()
            .map(|r| {
                let r = r.trim();
                if r.starts_with("prism-m40") {
                    // write_merge_ms is an RTMP output setting: nothing to merge over HTTP.
                    anyhow::bail!("prism-m40 is an RTMP variant; the hls scenarios take prism, prism1, prism-classic, nginx");
                }
                match r.strip_suffix("-classic") {
                    Some(base) => Ok((RelayKind::parse(base)?, true)),
                    None => Ok((RelayKind::parse(r)?, false)),
                }
            })
            .collect::<anyhow::Result<_>>()?
    };
    let env = environment(&common);
    eprintln!("[prism-load] {env}");
    if let Some(&max) = counts.iter().max() {
        // Prism: two connections per client (video and audio renditions).
        raise_fd_limit(&common.opts_with(Scenario::Players, RelayKind::Prism, 2 * max, 0)?);
    }
    let o = common.hls_opts(RelayKind::Prism, 0)?;
    let header = if memory {
        format!(
            "## prism-load hls-memory — {}\n\nPrism's RSS per stream, {} kbit/s streams (25 fps, keyframe every 2 s), \
             segments {} ms, parts {} ms, {} segments live{}.\nMachine: {env}.",
            report::utc_date(),
            o.bitrate_kbps,
            o.segment_ms,
            o.part_ms,
            o.window_segments,
            if o.dvr_window_s > 0 {
                format!(", DVR {} s", o.dvr_window_s)
            } else {
                String::new()
            },
        )
    } else {
        format!(
            "## prism-load hls — {}\n\n{} s window, 1 publisher → N HTTP clients, {} kbit/s stream (25 fps, keyframe every 2 s), \
             warm-up {} s. Prism: LL-HLS, segments {} ms, parts {} ms, each client = 2 keep-alive connections (video, audio \
             renditions) doing blocking reloads for the next part and fetching every new part. nginx: nginx-rtmp `hls on` \
             (hls_fragment {} ms, MPEG-TS) into a directory the same nginx worker serves as static files (sendfile); each client = \
             1 connection polling the playlist every half target duration and fetching every new segment. \
             Delay = client has the whole part (segment) − publisher sent the last frame in it.\nMachine: {env}; \
             see the load average and machine busy columns.",
            report::utc_date(),
            common.seconds,
            o.bitrate_kbps,
            common.warmup,
            o.segment_ms,
            o.part_ms,
            o.segment_ms,
        )
    };
    let total = relays.len() * counts.len();
    let (mut fan, mut mem, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    let mut k = 0;
    for &n in &counts {
        for &(relay, classic) in &relays {
            k += 1;
            eprintln!("[prism-load] run {k}/{total}: {} × {n}", relay.name());
            let mut opts = common.hls_opts(relay, n)?;
            opts.classic = classic;
            let r = if memory {
                hls::run_memory(&opts).await.map(|r| mem.push(r))
            } else {
                hls::run(&opts).await.map(|r| fan.push(r))
            };
            if let Err(e) = r {
                eprintln!("[prism-load] {} × {n} failed: {e:#}", relay.name());
                errors.push(serde_json::json!({
                    "relay": relay.name(), "count": n, "error": format!("{e:#}")
                }));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    let mut md = if memory {
        hls::memory_markdown(&mem, &header)
    } else {
        hls::markdown(&fan, &header)
    };
    for e in &errors {
        md.push_str(&format!("\n- FAILED: {e}\n"));
    }
    println!("{md}");
    let raw = serde_json::json!({
        "scenario": common.scenario.trim(),
        "environment": env,
        "seconds": common.seconds,
        "results": if memory { serde_json::to_value(&mem)? } else { serde_json::to_value(&fan)? },
        "errors": errors,
    });
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&raw)?)?;
    }
    if bench {
        let out_dir = out_dir
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../results")));
        std::fs::create_dir_all(&out_dir)?;
        let stem = report::result_stem(&out_dir, Some(common.scenario.trim()));
        std::fs::write(
            stem.with_extension("json"),
            serde_json::to_string_pretty(&raw)?,
        )?;
        std::fs::write(stem.with_extension("md"), &md)?;
        if !memory {
            std::fs::write(
                stem.with_extension("svg"),
                hls::svg(
                    &fan,
                    &format!(
                        "HLS fan-out, {} kbit/s stream ({})",
                        o.bitrate_kbps,
                        report::utc_date()
                    ),
                ),
            )?;
        }
        eprintln!(
            "[prism-load] wrote {}.{{json,md{}}}",
            stem.display(),
            if memory { "" } else { ",svg" }
        );
    }
    Ok(())
}
