//! The `prism` binary: command line, start-up wiring of transports, relay and admin HTTP.

mod admin;
mod api;
mod memory;
mod sources;
mod state;
mod tunnel;

use anyhow::Context;
use clap::{Parser, Subcommand};
use prism_config::Config;
use prism_metrics::Metrics;
use prism_relay::Relay;
use prism_transport_tls::{ReloadableTls, TlsDialer};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tracing::{error, info, warn};

/// Prism: one encoder in, every platform out. A live-video RTMP relay.
#[derive(Parser, Debug)]
#[command(
    name = "prism",
    version,
    about,
    long_about = "Prism: one encoder in, every platform out.\n\n\
        Without a command, Prism runs the relay: encoders publish to it (RTMP, RTMPS, RTMPT, \
        SRT), it pushes every stream to the destinations its routes name, players can play \
        it, and the [http] listener serves /metrics, /healthz, the admin API (/api/v1/...) \
        and a status page (/).\n\n\
        SIGHUP re-reads the config file (targets and routes apply to live streams; an \
        invalid file is refused and logged, the running config stays) and TLS certificates. \
        SIGTERM or Ctrl-C stops gracefully: no new connections, every live stream ends as \
        an unpublish does (destinations and players are told), exit within 5 s.",
    after_help = "Examples:\n  \
        prism --config /etc/prism/prism.toml           run the relay\n  \
        prism check --config /etc/prism/prism.toml     validate a config, run nothing\n  \
        prism --log prism_relay=debug,info             more detail from the relay\n\n\
        The documented default config (every key) is config/default.toml in the source tree."
)]
struct Cli {
    /// Configuration file (TOML). Without it Prism runs the embedded default:
    /// RTMP on 0.0.0.0:1935, admin HTTP on 127.0.0.1:9935, no destinations.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Log filter (tracing syntax, e.g. "info" or "prism_relay=debug"); overrides PRISM_LOG.
    #[arg(long, global = true)]
    log: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration file (--config) without starting anything.
    ///
    /// Prints "FILE: ok" and exits 0, or prints the first problem as FILE:LINE:COL: KEY:
    /// MESSAGE and exits 1. `[hls] dvr_dir` must be writable or creatable. Certificates and
    /// ports are checked only when the relay starts.
    Check,
    /// Print the version and exit.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Version) => {
            println!("prism {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(Command::Check) => {
            let Some(path) = cli.config.as_deref() else {
                eprintln!(
                    "prism check: nothing to check; name the file: prism check --config FILE"
                );
                return ExitCode::from(2);
            };
            match Config::load(path) {
                Ok(config) => {
                    // The DVR directory must be creatable and writable (nothing is created).
                    let dvr = config.hls.as_ref().and_then(|h| h.dvr_dir.as_deref());
                    if let Some(Err(e)) = dvr.map(prism_transport_hls::check_dvr_dir) {
                        eprintln!("{}: hls.dvr_dir: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                    if let Err(e) = sources::check(&config) {
                        eprintln!("{}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                    let destinations = match state::read(&config) {
                        Ok(d) => d,
                        Err(e) => {
                            eprintln!("{e}");
                            return ExitCode::FAILURE;
                        }
                    };
                    // Reported, not fatal: the server runs with them too (those
                    // destinations are not applied), as it logs at start.
                    let problems = state::problems(&config, &destinations);
                    for p in &problems {
                        if let Some(state) = &config.state.path {
                            eprintln!("warning: state file {}: {p}", state.display());
                        }
                    }
                    // ffmpeg runs and has every encoder a ladder names.
                    if let Err(e) = prism_transcode::check(&config.transcode) {
                        eprintln!("{}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                    if problems.is_empty() {
                        println!("{}: ok", path.display());
                    } else {
                        println!(
                            "{}: ok, with {} state file conflict(s) (see the warnings)",
                            path.display(),
                            problems.len()
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            init_logging(cli.log.as_deref());
            match serve(cli.config.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(flag: Option<&str>) {
    let filter = flag
        .map(str::to_owned)
        .or_else(|| std::env::var("PRISM_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// How long a graceful shutdown waits for destinations and players to be told the stream
/// ended (FCUnpublish/deleteStream, onStatus) before exiting anyway. Under the 10 s a
/// container runtime or systemd (`TimeoutStopSec`) usually allows before SIGKILL.
const SHUTDOWN_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

fn serve(config_path: Option<&Path>) -> anyhow::Result<()> {
    let config = match config_path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    sources::check(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Arc::new(state::StateStore::open(config).map_err(|e| anyhow::anyhow!(e))?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(run(store, config_path.map(Path::to_path_buf)));
    // A DNS lookup of a push target runs on a blocking thread and may outlive the bound.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

async fn run(store: Arc<state::StateStore>, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let mut config = state_config(&store);
    memory::resolve_budget(&mut config.limits);
    // Bind every listener before serving anything: a bad config never starts half a server.
    let rtmp = bind_tcp(config.rtmp.listen, "RTMP", "[rtmp] listen").await?;
    let http = bind_tcp(config.http.listen, "admin HTTP", "[http] listen").await?;
    if config.http.token.is_none() && !config.http.listen.ip().is_loopback() {
        warn!(http = %config.http.listen, "the admin API is off: [http] listen is not a loopback address and no [http] token is set");
    }
    let rtmps = bind_rtmps(&config).await?;
    let hls = bind_hls(&config).await?;
    let tunnels = tunnel::bind(&config).await?;
    let rtsp = bind_rtsp(&config).await?;
    let rtsps = bind_rtsps(&config).await?;
    let webrtc = bind_webrtc(&config).await?;
    let srt = match &config.srt {
        Some(c) => Some(
            prism_transport_srt::SrtServer::bind(c)
                .await
                .with_context(|| format!("binding SRT listener on udp {}", c.listen))?,
        ),
        None => None,
    };
    let tls_dialer = Arc::new(TlsDialer::new());
    tls_dialer
        .prepare(&config)
        .context("loading the CA certificates of rtmps:// targets")?;
    // Certificates re-read on SIGHUP. The handler is installed even with none, so that a
    // SIGHUP never kills the server.
    let certificates: Vec<Arc<ReloadableTls>> = rtmps
        .iter()
        .map(|(_, tls, _)| tls.clone())
        .chain(hls.as_ref().and_then(|(_, tls)| tls.clone()))
        .chain(tunnels.certificates())
        .chain(rtsps.as_ref().map(|(_, _, tls)| tls.clone()))
        .chain(webrtc.as_ref().and_then(|w| w.tls()))
        .collect();
    #[cfg(unix)]
    let hangup = {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::hangup()).context("installing the SIGHUP handler")?
    };
    info!(rtmp = %config.rtmp.listen, http = %config.http.listen, routes = config.routes.len(), "prism listening");
    if config.rtmp.rtmpe {
        warn!("[rtmp] rtmpe = true: accepting RTMPE/RTMPTE, whose RC4 encryption is weak; prefer RTMPS");
    }
    let srt_sink = Arc::new(prism_transport_srt::SrtSink::new());
    let metrics = Metrics::new();
    if let Some(dir) = config.hls.as_ref().and_then(|h| h.dvr_dir.clone()) {
        // Created if missing; window directories a crash left behind are removed.
        tokio::task::spawn_blocking(move || prism_transport_hls::prepare_dvr_dir(&dir))
            .await
            .context("preparing [hls] dvr_dir")?
            .map_err(|e| anyhow::anyhow!("[hls] dvr_dir: {e}"))?;
    }
    let ladders = config.transcode.clone();
    tokio::task::spawn_blocking(move || prism_transcode::check(&ladders))
        .await
        .context("checking [[transcode]] ffmpeg")?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let hls_output = config
        .hls
        .as_ref()
        .map(|c| prism_transport_hls::HlsOutput::new(c.clone(), metrics.clone()));
    let transcoder = prism_transcode::Transcoder::new(metrics.clone());
    let tunnel_dialers = [
        Arc::new(prism_transport_rtmpt::RtmptDialer::rtmpt()),
        Arc::new(prism_transport_rtmpt::RtmptDialer::rtmpte()),
        Arc::new(prism_transport_rtmpt::RtmptDialer::rtmpts(
            tls_dialer.clone(),
        )),
    ];
    let relay = Relay::new(
        config,
        metrics,
        vec![
            Arc::new(prism_transport_rtmp::TcpDialer),
            tls_dialer.clone(),
            Arc::new(prism_transport_rtmp::RtmpeDialer),
            tunnel_dialers[0].clone(),
            tunnel_dialers[1].clone(),
            tunnel_dialers[2].clone(),
        ],
        vec![srt_sink.clone()],
    );
    srt_sink.attach(&relay);
    for d in &tunnel_dialers {
        d.attach_memory(relay.memory());
    }
    if let Some(o) = &hls_output {
        relay.add_output(o.clone());
    }
    // Always registered: a reload may add [[transcode]] ladders.
    relay.add_output(transcoder.clone());
    #[cfg(unix)]
    tokio::spawn(reload_on_hangup(
        hangup,
        Reloader {
            config_path,
            relay: relay.clone(),
            tls_dialer,
            certificates,
            store: store.clone(),
        },
    ));
    #[cfg(not(unix))]
    drop((config_path, certificates, tls_dialer));
    // The SRT front also relays the datagrams of open sessions: it refuses new callers
    // once the relay is closing and runs until the goodbyes are done.
    let srt = srt.map(|srt| {
        if let Ok(addr) = srt.local_addr() {
            info!(srt = %addr, "SRT listening");
        }
        tokio::spawn(srt.run(relay.clone()))
    });
    let mut accept_loops = vec![tokio::spawn(prism_transport_rtmp::run(rtmp, relay.clone()))];
    if let Some((listener, tls, handshake_timeout)) = rtmps {
        accept_loops.push(tokio::spawn(prism_transport_tls::run(
            listener,
            relay.clone(),
            tls,
            handshake_timeout,
        )));
    }
    if let (Some((listener, tls)), Some(output)) = (hls, hls_output) {
        accept_loops.push(tokio::spawn(prism_transport_hls::serve(
            listener,
            relay.clone(),
            output,
            tls,
        )));
    }
    accept_loops.extend(tunnels.spawn(&relay));
    if let Some((listener, c)) = rtsp {
        accept_loops.push(tokio::spawn(prism_transport_rtsp::run(
            listener,
            relay.clone(),
            c,
        )));
    }
    if let Some((listener, c, tls)) = rtsps {
        let serving = prism_transport_rtsp::run_tls(listener, relay.clone(), c, tls);
        accept_loops.push(tokio::spawn(serving));
    }
    if let Some(w) = webrtc {
        accept_loops.push(tokio::spawn(w.run(relay.clone())));
    }
    // Not an accept loop to abort: on shutdown it stops accepting but answers the
    // requests in flight (bounded below, with the streams' goodbyes).
    let (admin_stop, admin_stopping) = tokio::sync::watch::channel(false);
    let admin = tokio::spawn(admin::run(
        http,
        relay.clone(),
        store,
        transcoder.clone(),
        admin_stopping,
    ));
    sources::start(&relay);
    shutdown_signal().await;

    // Stop accepting: dropping an accept loop closes its listening socket.
    info!(
        "shutting down: listeners closed, ending live streams, answering admin requests in flight"
    );
    let _ = admin_stop.send(true);
    for task in &accept_loops {
        task.abort();
    }
    for task in accept_loops {
        let _ = task.await;
    }
    let drained = async {
        let (report, admin) = tokio::join!(
            relay.shutdown(SHUTDOWN_BOUND),
            tokio::time::timeout(SHUTDOWN_BOUND, admin)
        );
        if admin.is_err() {
            warn!("admin requests still open after {SHUTDOWN_BOUND:?}; closing them");
        }
        report
    };
    let report = tokio::select! {
        r = drained => Some(r),
        // A second signal: stop now.
        _ = shutdown_signal() => None,
    };
    match report {
        Some(r) if r.still_open.is_empty() => {
            info!(
                streams = r.streams_ended,
                elapsed_ms = r.elapsed.as_millis() as u64,
                "shut down cleanly"
            )
        }
        Some(r) => warn!(
            streams = r.streams_ended,
            open = r.still_open.len(),
            "shutdown bound of {SHUTDOWN_BOUND:?} hit; closing anyway: {}",
            r.still_open.join(", ")
        ),
        None => warn!("second stop signal: exiting without waiting for goodbyes"),
    }
    if let Some(srt) = srt {
        srt.abort();
    }
    Ok(())
}

type Rtmps = (
    tokio::net::TcpListener,
    Arc<ReloadableTls>,
    std::time::Duration,
);

/// Loads the `[rtmps]` certificate (an unreadable or invalid file is a start-up error naming
/// it) and binds its listener.
async fn bind_rtmps(config: &Config) -> anyhow::Result<Option<Rtmps>> {
    let Some(c) = &config.rtmps else {
        return Ok(None);
    };
    let tls = ReloadableTls::load(&c.tls).context("loading the [rtmps] certificate")?;
    let listener = bind_tcp(c.listen, "RTMPS", "[rtmps] listen").await?;
    info!(rtmps = %c.listen, "RTMPS listening");
    Ok(Some((listener, Arc::new(tls), c.handshake_timeout)))
}

/// Binds the `[rtsp]` listener (RTSP players), if configured.
async fn bind_rtsp(
    config: &Config,
) -> anyhow::Result<Option<(tokio::net::TcpListener, prism_config::RtspConfig)>> {
    let Some(c) = &config.rtsp else {
        return Ok(None);
    };
    let listener = bind_tcp(c.listen, "RTSP", "[rtsp] listen").await?;
    info!(rtsp = %c.listen, "RTSP listening");
    Ok(Some((listener, c.clone())))
}

type Rtsps = (
    tokio::net::TcpListener,
    prism_config::RtspConfig,
    Arc<ReloadableTls>,
);

/// Loads the `[rtsps]` certificate and binds its listener, if configured.
async fn bind_rtsps(config: &Config) -> anyhow::Result<Option<Rtsps>> {
    let Some((c, files)) = &config.rtsps else {
        return Ok(None);
    };
    let tls = ReloadableTls::load(files).context("loading the [rtsps] certificate")?;
    let listener = bind_tcp(c.listen, "RTSPS", "[rtsps] listen").await?;
    info!(rtsps = %c.listen, "RTSPS listening");
    Ok(Some((listener, c.clone(), Arc::new(tls))))
}

/// Loads the `[hls]` certificate, if any (offering HTTP/2 by ALPN), and binds the viewers'
/// listener.
async fn bind_hls(
    config: &Config,
) -> anyhow::Result<Option<(tokio::net::TcpListener, Option<Arc<ReloadableTls>>)>> {
    let Some(c) = &config.hls else {
        return Ok(None);
    };
    let tls = match &c.tls {
        Some(files) => Some(Arc::new(
            ReloadableTls::load_with_alpn(files, vec![b"h2".to_vec(), b"http/1.1".to_vec()])
                .context("loading the [hls] certificate")?,
        )),
        None => None,
    };
    let listener = bind_tcp(c.listen, "HLS", "[hls] listen").await?;
    info!(hls = %c.listen, tls = tls.is_some(), "HLS/DASH listening");
    Ok(Some((listener, tls)))
}

/// Binds `[webrtc]` (signalling listener, media UDP socket, certificate), if configured.
async fn bind_webrtc(
    config: &Config,
) -> anyhow::Result<Option<prism_transport_webrtc::WebrtcServer>> {
    let Some(c) = &config.webrtc else {
        return Ok(None);
    };
    let server = prism_transport_webrtc::WebrtcServer::bind(c)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    info!(webrtc = %c.listen, udp = %c.udp, tls = c.tls.is_some(), "WHIP/WHEP listening");
    Ok(Some(server))
}

/// Pending connections the kernel keeps per listener (capped by net.core.somaxconn). The
/// default of 128 overflows when hundreds of players join at once (an event start): the
/// overflow waits for SYN retries, 1 s and then 3 s later.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener; a failure says which listener, why, and which config key to change.
pub(crate) async fn bind_tcp(
    addr: std::net::SocketAddr,
    what: &str,
    key: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    let bind = || {
        let socket = match addr {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // As TcpListener::bind does: a restart may bind while old connections linger.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    bind().map_err(|e: std::io::Error| {
        let hint = bind_hint(&e, addr, key);
        anyhow::anyhow!("cannot listen for {what} on {addr}: {e}. {hint}")
    })
}

/// What a person can do about a failed bind.
fn bind_hint(e: &std::io::Error, addr: std::net::SocketAddr, key: &str) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::AddrInUse => format!(
            "Another program (or another Prism) already listens on port {}: stop it, or set \
             another address in `{key}`.",
            addr.port()
        ),
        ErrorKind::PermissionDenied if addr.port() < 1024 => format!(
            "Ports below 1024 need root or CAP_NET_BIND_SERVICE: grant it (systemd: \
             AmbientCapabilities=CAP_NET_BIND_SERVICE) or use a port of 1024 or more in `{key}`."
        ),
        ErrorKind::AddrNotAvailable => format!(
            "{} is not an address of this machine: use one it has, or 0.0.0.0 (all IPv4) \
             or [::] (all IPv6), in `{key}`.",
            addr.ip()
        ),
        _ => format!("Check `{key}` in the configuration."),
    }
}

/// What SIGHUP re-reads.
struct Reloader {
    /// None: the embedded default, which never changes.
    config_path: Option<PathBuf>,
    relay: Arc<Relay>,
    tls_dialer: Arc<TlsDialer>,
    certificates: Vec<Arc<ReloadableTls>>,
    /// Destinations added through the API, merged into every re-read config.
    store: Arc<state::StateStore>,
}

impl Reloader {
    /// Re-reads the config file and, if it is valid (CA files of rtmps:// targets
    /// included), applies it to the relay; otherwise logs why and keeps the running one.
    fn reload_config(&self) {
        let (new, origin) = match &self.config_path {
            Some(p) => (Config::load(p), p.display().to_string()),
            None => (
                Ok(Config::default()),
                "the embedded default config".to_owned(),
            ),
        };
        let new = match new {
            Ok(c) => c,
            Err(e) => {
                error!("config reload refused, the running config stays: {e}");
                return;
            }
        };
        if let Err(e) = self.tls_dialer.prepare(&new) {
            error!("config reload refused, the running config stays: {origin}: {e}");
            return;
        }
        if let Err(e) = sources::check(&new) {
            error!("config reload refused, the running config stays: {origin}: {e}");
            return;
        }
        let (report, state_changed) = self.store.set_base(new, |c| self.relay.reload(c));
        if state_changed {
            warn!("{origin}: [state] changed, but only takes effect on restart; still saving to the old state file");
        }
        log_state_conflicts(&self.store);
        for section in &report.restart_needed {
            warn!(section, "{origin}: {section} changed, but only takes effect on restart; still running with the old values");
        }
        for s in &report.streams {
            info!(stream = %s.stream, started = ?s.started, stopped = ?s.stopped, restarted = ?s.restarted, "targets updated from the new config");
            if !s.conflicts.is_empty() {
                warn!(stream = %s.stream, targets = ?s.conflicts, "configured targets not started: an admin-API target of the same name runs");
            }
        }
        sources::log_reload(&report.sources);
        info!(config = %origin, streams_changed = report.streams.len(), "config reloaded");
    }

    /// Re-reads each TLS certificate and key. New connections get the new certificate,
    /// live ones keep their session; a reload that fails keeps the current one.
    fn reload_certificates(&self) {
        for tls in &self.certificates {
            let cert = tls.files().cert.display();
            match tls.reload() {
                Ok(()) => info!(%cert, "reloaded TLS certificate"),
                Err(e) => {
                    warn!(%cert, "TLS certificate reload failed, keeping the current one: {e}")
                }
            }
        }
    }
}

/// On every SIGHUP, re-reads the config and the TLS certificates.
#[cfg(unix)]
async fn reload_on_hangup(mut hangup: tokio::signal::unix::Signal, reloader: Reloader) {
    while hangup.recv().await.is_some() {
        info!("SIGHUP: reloading the config and TLS certificates");
        reloader.reload_config();
        reloader.reload_certificates();
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The running config at start: the file's, with the `[state]` destinations merged in.
fn state_config(store: &state::StateStore) -> Config {
    let config = store.effective();
    match &config.state.path {
        Some(p) => {
            info!(state = %p.display(), destinations = store.list().len(), "state file read")
        }
        None => {
            info!("no [state] path: destinations added through the API are kept in memory only")
        }
    }
    log_state_conflicts(store);
    config
}

/// A destination whose name the config file uses too is not applied: said, not hidden.
fn log_state_conflicts(store: &state::StateStore) {
    for (name, why) in store.conflicts() {
        warn!(destination = %name, "state destination not applied: {why}");
    }
}
