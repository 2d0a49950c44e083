//! `prism-load`: pushes a synthetic real-time stream through a relay (Prism or nginx-rtmp)
//! to N push targets served by an in-process RTMP sink, and measures what the relay costs.
//! See benches/README.md.

mod media;
mod publisher;
mod relay;
mod report;
mod scenario;
mod sink;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use relay::{RelayKind, RelayPaths};
use scenario::{ScenarioOpts, ScenarioResult};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "prism-load",
    about = "Push fan-out benchmark: Prism vs nginx-rtmp"
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
    /// One scenario: one relay, one target count.
    Run {
        /// prism (default tokio worker count), prism1 (one worker thread) or nginx.
        #[arg(long, default_value = "prism")]
        relay: String,
        #[arg(long, default_value_t = 10)]
        targets: usize,
        #[command(flatten)]
        common: Common,
        /// Also write the result as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The matrix: every relay × every target count; writes benches/results/<date>.{json,md,svg}.
    Bench {
        /// Comma-separated relays.
        #[arg(long, default_value = "prism,nginx", value_delimiter = ',')]
        relays: Vec<String>,
        /// Comma-separated target counts.
        #[arg(long, default_value = "10,100,300,500", value_delimiter = ',')]
        targets: Vec<usize>,
        #[command(flatten)]
        common: Common,
        /// Where results go.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Length of the measured window.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Total stream bitrate (video + 128 kbit/s audio).
    #[arg(long, default_value_t = 4700)]
    bitrate_kbps: u64,
    /// Extra warm-up after every target receives media.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Give up waiting for all targets after this many seconds (then measure anyway).
    #[arg(long, default_value_t = 60)]
    connect_timeout: u64,
    /// Sinks (first accepted) that parse every message for latency and missing frames; the
    /// rest only count bytes. Parsing all 500 targets costs the tool ~0.3 core.
    #[arg(long, default_value_t = 1000)]
    latency_sinks: usize,
    /// The prism binary (default: next to prism-load, i.e. target/release/prism).
    #[arg(long)]
    prism_bin: Option<PathBuf>,
    #[arg(long, default_value = "nginx")]
    nginx_bin: PathBuf,
    #[arg(long, default_value = "/usr/lib/nginx/modules/ngx_rtmp_module.so")]
    nginx_module: PathBuf,
    /// Keep the relays' temp dirs (configs, logs) under $TMPDIR/prism-load/.
    #[arg(long)]
    keep_tmp: bool,
}

impl Common {
    fn opts(&self, relay: RelayKind, targets: usize) -> anyhow::Result<ScenarioOpts> {
        let prism_bin = match &self.prism_bin {
            Some(p) => p.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("current exe has no parent")?
                .join("prism"),
        };
        Ok(ScenarioOpts {
            relay,
            targets,
            seconds: self.seconds,
            bitrate_kbps: self.bitrate_kbps,
            warmup_seconds: self.warmup,
            connect_timeout: Duration::from_secs(self.connect_timeout),
            latency_sinks: self.latency_sinks,
            paths: RelayPaths {
                prism_bin,
                nginx_bin: self.nginx_bin.clone(),
                nginx_module: self.nginx_module.clone(),
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
        .opts(RelayKind::Prism, 0)
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

async fn async_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Run {
            relay,
            targets,
            common,
            json,
        } => {
            let opts = common.opts(RelayKind::parse(&relay)?, targets)?;
            eprintln!("[prism-load] {}", environment(&common));
            let r = scenario::run(&opts).await?;
            println!("{}", report::markdown(std::slice::from_ref(&r), ""));
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
            let relays: Vec<RelayKind> = relays
                .iter()
                .map(|r| RelayKind::parse(r.trim()))
                .collect::<anyhow::Result<_>>()?;
            let out_dir = out_dir.unwrap_or_else(|| {
                PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../results"))
            });
            std::fs::create_dir_all(&out_dir)?;
            let stem = report::result_stem(&out_dir);
            let env = environment(&common);
            let header = format!(
                "## prism-load {}\n\n{} s window, {} kbit/s stream (25 fps, keyframe every 2 s, AAC 128 kbit/s), \
                 warm-up {} s; latency on up to {} sinks.\nMachine: {env} — shared with other builds and tests; \
                 see the machine busy column.",
                report::utc_date(),
                common.seconds,
                common.bitrate_kbps,
                common.warmup,
                common.latency_sinks,
            );
            eprintln!("[prism-load] {env}");
            let total = relays.len() * targets.len();
            let mut results: Vec<ScenarioResult> = Vec::new();
            let mut errors: Vec<serde_json::Value> = Vec::new();
            let mut k = 0;
            // Relays alternate at each target count so drifting machine load hits both alike.
            for &n in &targets {
                for &relay in &relays {
                    k += 1;
                    eprintln!("[prism-load] scenario {k}/{total}: {} × {n}", relay.name());
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
                        "environment": env,
                        "seconds": common.seconds,
                        "bitrate_kbps": common.bitrate_kbps,
                        "latency_sinks": common.latency_sinks,
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
            std::fs::write(
                stem.with_extension("svg"),
                report::svg(
                    &results,
                    &format!(
                        "Push fan-out cost, {} kbit/s stream ({})",
                        common.bitrate_kbps,
                        report::utc_date()
                    ),
                ),
            )?;
            println!("{md}");
            eprintln!("[prism-load] wrote {}.{{json,md,svg}}", stem.display());
            Ok(())
        }
    }
}
