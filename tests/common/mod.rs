//! Shared helpers for the end-to-end tests.
//!
//! Everything here is synchronous `std::process` / `std::net` code: the tests
//! drive the real `prism` binary and real peers (ffmpeg, ffprobe, nginx-rtmp).
//!
//! Rules for tests written with these helpers:
//! * every wait goes through [`wait_until`] (or a helper built on it) with a
//!   deadline — no bare sleeps hoping something happened;
//! * every external process has a timeout (short-lived ones go through
//!   [`run_with_timeout`]; long-lived ones are owned by a guard whose `Drop`
//!   kills them);
//! * ports come from [`free_port`] / [`free_udp_port`], files go into a
//!   [`TempDir`] (kept on failure for post-mortem, see `PRISM_E2E_KEEP`).
//!
//! Environment knobs:
//! * `PRISM_BIN` — use this prism binary instead of building `target/debug/prism`;
//! * `PRISM_E2E_KEEP=1` — keep temp dirs even when tests pass;
//! * `NGINX_RTMP_MODULE` — absolute path of `ngx_rtmp_module.so`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod api;
pub mod flv;
pub mod hls;
pub mod pki;
pub mod rtmp;
// Only some tests play; the rest include this module too.
#[allow(unused_imports)]
pub use rtmp::rtmp_player;
pub mod rtsp;
pub mod srt;
pub mod webrtc;

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// Polls `f` every 50 ms until it returns true; panics naming `what` if it
/// has not within `timeout`. This is the only way tests should wait.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Like [`wait_until`] but returns the first `Some` value produced by `f`.
#[track_caller]
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let mut out = None;
    wait_until(timeout, what, || {
        out = f();
        out.is_some()
    });
    out.expect("wait_until returned without a value")
}

// ---------------------------------------------------------------------------
// Ports, paths, temp dirs
// ---------------------------------------------------------------------------

/// Ports handed to servers under test come from below the kernel's ephemeral range
/// (32768–60999 by default): a port taken from that range with bind(0) can meanwhile become
/// the local end of some outgoing connection (tests open thousands), and the server's bind
/// then fails with "address in use".
const TEST_PORTS: std::ops::Range<u32> = 20_000..32_000;

/// The next candidate port of this process: a per-process start (test binaries may overlap
/// with other processes' servers), then one after another, never the same twice.
fn next_test_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);
    let span = TEST_PORTS.end - TEST_PORTS.start;
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        std::sync::atomic::Ordering::Relaxed,
        std::sync::atomic::Ordering::Relaxed,
    );
    let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (TEST_PORTS.start + i % span) as u16
}

/// A TCP port on 127.0.0.1 that was free a moment ago and that no outgoing connection will
/// take meanwhile.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = next_test_port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port in {TEST_PORTS:?}");
}

/// A UDP port on 127.0.0.1, as [`free_port`].
pub fn free_udp_port() -> u16 {
    for _ in 0..1000 {
        let port = next_test_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free UDP port in {TEST_PORTS:?}");
}

/// True if something accepts TCP connections on `addr` right now.
pub fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Waits until `addr` accepts TCP connections.
#[track_caller]
pub fn wait_port(addr: SocketAddr, timeout: Duration) {
    wait_until(
        timeout,
        &format!("{addr} to accept TCP connections"),
        || port_open(addr),
    );
}

/// The workspace root (where the root Cargo.toml lives).
pub fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_dir().join(d)
            }
        }
        _ => workspace_dir().join("target"),
    }
}

/// A unique directory under `$TMPDIR/prism-e2e/`. Removed on drop, unless the
/// thread is panicking (the path is printed so it can be inspected) or
/// `PRISM_E2E_KEEP` is set.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir()
            .join("prism-e2e")
            .join(format!("{prefix}-{}-{n}-{nanos:x}", std::process::id()));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() || std::env::var_os("PRISM_E2E_KEEP").is_some() {
            eprintln!("[e2e] keeping temp dir {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Last `max_lines` lines of a (log) file, or a note that it can't be read.
pub fn tail_file(path: &Path, max_lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(max_lines);
            lines[start..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// Runs `node tests/js/{script} args…` (headless Chromium through playwright-core) and
/// parses the one JSON line it prints; panics with its output when it fails.
pub fn node_json(script: &str, args: &[String], timeout: Duration) -> serde_json::Value {
    let out = run_with_timeout(
        Command::new("node")
            .arg(workspace_dir().join("tests/js").join(script))
            .args(args),
        timeout,
    )
    .unwrap_or_else(|e| {
        panic!("node tests/js/{script} (run ./scripts/test.sh to install playwright-core): {e}")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{script} output {stdout}: {e}"))
}

/// Runs `cmd` to completion, capturing stdout/stderr, killing it after
/// `timeout`. Returns `Err` (with whatever it printed) on timeout or spawn
/// failure; a non-zero exit is *not* an error here — check `status`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {desc}: {e}"))?;
    let mut so = child.stdout.take().expect("stdout piped");
    let mut se = child.stderr.take().expect("stderr piped");
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let status = match wait_child(&mut child, timeout) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = t_err.join().unwrap_or_default();
            return Err(format!(
                "timed out after {timeout:?}: {desc}\nstderr:\n{}",
                String::from_utf8_lossy(&stderr)
            ));
        }
    };
    Ok(Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

/// Waits up to `timeout` for `child` to exit.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a signal by name ("TERM", "INT", "HUP", ...) to `pid` via kill(1).
pub fn signal(pid: u32, sig: &str) {
    let _ = run_with_timeout(
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string()),
        Duration::from_secs(5),
    );
}

/// Asks a child to stop with `sig`; SIGKILLs it if it hasn't exited after
/// `grace`. Returns the exit status if it exited on its own.
pub fn stop_child(child: &mut Child, sig: &str, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(s)) = child.try_wait() {
        return Some(s);
    }
    signal(child.id(), sig);
    if let Some(s) = wait_child(child, grace) {
        return Some(s);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

// ---------------------------------------------------------------------------
// Tiny HTTP/1.0 client
// ---------------------------------------------------------------------------

/// `GET path` over HTTP/1.0; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let (status, body) = http_get_bytes(addr, path)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// [`http_get`] for binary bodies (media segments).
pub fn http_get_bytes(addr: SocketAddr, path: &str) -> io::Result<(u16, Vec<u8>)> {
    http_get_bytes_within(addr, path, Duration::from_secs(5))
}

/// [`http_get_bytes`] waiting up to `timeout` for the answer (a request that first
/// starts an edge pull is answered only once the pull came up or failed).
pub fn http_get_bytes_within(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            io::Error::other(format!(
                "malformed HTTP response: {:?}",
                String::from_utf8_lossy(&raw)
            ))
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line: {head:?}")))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = s.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&s[..eol]);
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        let rest = &s[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Value of the first Prometheus sample whose line starts with `prefix`
/// (e.g. `prism_streams_active`, or `prism_target_up{target="a"` —
/// note the prometheus crate renders labels sorted by name). A bare metric
/// name does not match longer names (`foo` won't match `foo_total`).
pub fn metric_value_in(text: &str, prefix: &str) -> Option<f64> {
    metric_samples(text, prefix).into_iter().next()
}

/// Sum of all samples matching `prefix` (see [`metric_value_in`]); `None` if
/// there are none.
pub fn metric_sum_in(text: &str, prefix: &str) -> Option<f64> {
    let v = metric_samples(text, prefix);
    (!v.is_empty()).then(|| v.iter().sum())
}

fn metric_samples(text: &str, prefix: &str) -> Vec<f64> {
    let open = prefix.ends_with(['{', ',', '}', ' ']);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(prefix)?;
            if !open && !rest.starts_with([' ', '{', ',', '}']) {
                return None;
            }
            let v = l.rsplit(' ').find(|t| !t.is_empty())?;
            // A trailing timestamp would be an integer after the value; we
            // don't emit timestamps, so the last token is the value.
            parse_prom_float(v)
        })
        .collect()
}

fn parse_prom_float(v: &str) -> Option<f64> {
    match v {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

// ---------------------------------------------------------------------------
// prism
// ---------------------------------------------------------------------------

/// Path of the `prism` binary: `$PRISM_BIN` if set, else
/// `<target>/debug/prism`, built once per test process with
/// `cargo build -p prism --bin prism` (a no-op when it is up to date, so a
/// stale binary is never tested). `scripts/test.sh` builds first and sets
/// `PRISM_BIN`, so the suite itself never runs a nested cargo.
pub fn prism_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("PRISM_BIN").filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "PRISM_BIN={} does not exist", p.display());
            return p;
        }
        let bin = target_dir().join("debug").join("prism");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = run_with_timeout(
            Command::new(cargo)
                .args(["build", "-p", "prism", "--bin", "prism"])
                .current_dir(workspace_dir()),
            Duration::from_secs(1200),
        )
        .unwrap_or_else(|e| panic!("building prism: {e}"));
        assert!(
            out.status.success(),
            "cargo build -p prism failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(bin.is_file(), "{} missing after cargo build", bin.display());
        bin
    })
    .clone()
}

/// Runs `prism check --config FILE` on `config_toml`; returns its output.
pub fn prism_check(config_toml: &str) -> Output {
    let dir = TempDir::new("prism-check");
    let cfg = dir.join("prism.toml");
    fs::write(&cfg, config_toml).expect("write config");
    run_with_timeout(
        Command::new(prism_bin())
            .arg("check")
            .arg("--config")
            .arg(&cfg),
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("prism check: {e}"))
}

/// Finds `key = "value"` in `[section]` of a TOML text (tiny scanner — enough
/// for the `listen` addresses of the test configs).
pub fn toml_string(config: &str, section: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    for line in config.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            current = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            continue;
        }
        if current != section {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            if k.trim() == key {
                return Some(v.trim().trim_matches('"').to_string());
            }
        }
    }
    None
}

fn resolve(addr: &str) -> SocketAddr {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("cannot resolve {addr:?}"))
}

/// A config with one `live/*` route pushing to the given `(name, url)`
/// targets. URLs may use `{stream}`.
pub fn simple_config(rtmp_port: u16, http_port: u16, targets: &[(&str, &str)]) -> String {
    let mut s = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp_port}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n\
         [[route]]\nstream = \"live/*\"\n"
    );
    for (name, url) in targets {
        let _ = write!(
            s,
            "\n  [[route.target]]\n  name = \"{name}\"\n  url = \"{url}\"\n"
        );
    }
    s
}

/// `ss -tanp` lines for the ports `listen = "...:PORT"` in a config (a startup-failure aid).
fn sockets_on_ports(config_toml: &str) -> String {
    let ports: Vec<String> = config_toml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("listen = \""))
        .filter_map(|v| v.trim_end_matches('"').rsplit(':').next())
        .map(|p| format!(":{p} "))
        .collect();
    let out = run_with_timeout(Command::new("ss").arg("-tanp"), Duration::from_secs(5))
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("ss: {e}"));
    out.lines()
        .filter(|l| ports.iter().any(|p| l.contains(p.as_str())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A running `prism --config FILE` child. Killed on drop; its stderr (in
/// `<tmp>/prism.stderr`) is printed if the test is failing.
pub struct Prism {
    child: Option<Child>,
    pub dir: TempDir,
    pub config_path: PathBuf,
    /// `[rtmp] listen` from the config.
    pub rtmp_addr: Option<SocketAddr>,
    /// `[http] listen` from the config.
    pub http_addr: Option<SocketAddr>,
    stderr_path: PathBuf,
}

impl Prism {
    /// Spawns prism and waits (10 s) until `GET /healthz` answers 200 and the
    /// RTMP port (if configured) accepts connections.
    #[track_caller]
    pub fn start(config_toml: &str) -> Prism {
        let mut p = Prism::spawn(config_toml);
        let http = p
            .http_addr
            .expect("config has no [http] listen: can't wait for /healthz");
        let mut deadline = Instant::now() + Duration::from_secs(10);
        let mut retries = 2;
        loop {
            if let Some(status) = p.try_wait() {
                let stderr = p.stderr();
                // Seen twice in CI, never reproduced alone: a test port free a moment before
                // was taken when prism bound it. Say who holds it, and try again: the holder
                // was gone by the time anyone looked.
                if retries > 0 && stderr.contains("Address already in use") {
                    retries -= 1;
                    eprintln!(
                        "[e2e] prism could not bind at startup; sockets on its ports:\n{}",
                        sockets_on_ports(config_toml)
                    );
                    thread::sleep(Duration::from_millis(300));
                    p = Prism::spawn(config_toml);
                    deadline = Instant::now() + Duration::from_secs(10);
                    continue;
                }
                panic!("prism exited during startup with {status}\n--- prism stderr ---\n{stderr}");
            }
            if matches!(http_get(http, "/healthz"), Ok((200, _)))
                && p.rtmp_addr.is_none_or(port_open)
            {
                return p;
            }
            if Instant::now() >= deadline {
                panic!(
                    "prism did not become healthy on http://{http}/healthz within 10s\n\
                     --- prism stderr ---\n{}",
                    p.stderr()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Spawns prism without waiting for anything (for tests of startup failures).
    pub fn spawn(config_toml: &str) -> Prism {
        Prism::spawn_with_args(config_toml, &[])
    }

    /// Like [`Prism::spawn`] with extra CLI args after `--config FILE`.
    pub fn spawn_with_args(config_toml: &str, extra: &[&str]) -> Prism {
        let dir = TempDir::new("prism");
        let config_path = dir.join("prism.toml");
        fs::write(&config_path, config_toml).expect("write prism config");
        let stderr_path = dir.join("prism.stderr");
        let stdout_path = dir.join("prism.stdout");
        let child = Command::new(prism_bin())
            .arg("--config")
            .arg(&config_path)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).expect("create stdout file"))
            .stderr(fs::File::create(&stderr_path).expect("create stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", prism_bin().display()));
        Prism {
            child: Some(child),
            rtmp_addr: toml_string(config_toml, "rtmp", "listen").map(|a| resolve(&a)),
            http_addr: toml_string(config_toml, "http", "listen").map(|a| resolve(&a)),
            config_path,
            dir,
            stderr_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `rtmp://<rtmp listen>/app/name`.
    pub fn rtmp_url(&self, app: &str, name: &str) -> String {
        let a = self.rtmp_addr.expect("config has no [rtmp] listen");
        format!("rtmp://{a}/{app}/{name}")
    }

    /// Everything prism wrote to stderr so far (logs).
    pub fn stderr(&self) -> String {
        tail_file(&self.stderr_path, 400)
    }

    /// GET on the admin HTTP listener.
    pub fn http_get(&self, path: &str) -> io::Result<(u16, String)> {
        http_get(self.http_addr.expect("config has no [http] listen"), path)
    }

    /// The `/metrics` text (panics if it can't be fetched).
    #[track_caller]
    pub fn metrics(&self) -> String {
        match self.http_get("/metrics") {
            Ok((200, body)) => body,
            Ok((code, body)) => panic!("/metrics answered {code}: {body}"),
            Err(e) => panic!("/metrics: {e}\n--- prism stderr ---\n{}", self.stderr()),
        }
    }

    /// First sample matching `prefix` in `/metrics` (see [`metric_value_in`]).
    /// `prism_ingest_frames_total` of `stream` and `kind` (`video`/`audio`), 0 until counted.
    pub fn ingest_frames(&self, stream: &str, kind: &str) -> f64 {
        self.metric_value(&format!(
            "prism_ingest_frames_total{{kind=\"{kind}\",stream=\"{stream}\"}}"
        ))
        .unwrap_or(0.0)
    }

    pub fn metric_value(&self, prefix: &str) -> Option<f64> {
        metric_value_in(&self.metrics(), prefix)
    }

    /// Sum of the samples matching `prefix` in `/metrics`.
    pub fn metric_sum(&self, prefix: &str) -> Option<f64> {
        metric_sum_in(&self.metrics(), prefix)
    }

    /// Exit status if prism has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `timeout` for prism to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(self.child.as_mut()?, timeout)
    }

    /// Sends `sig` ("TERM", "INT", "HUP"...) to prism.
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    /// Graceful stop: SIGTERM, then SIGKILL after `grace`. Returns the exit
    /// status if prism exited by itself.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        stop_child(&mut c, "TERM", grace)
    }

    /// SIGKILL now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Prism {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "--- prism stderr ({}) ---\n{}\n--- end prism stderr ---",
                self.stderr_path.display(),
                self.stderr()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// nginx-rtmp
// ---------------------------------------------------------------------------

/// Absolute path of `ngx_rtmp_module.so` (`$NGINX_RTMP_MODULE`, the Debian
/// location, or whatever `/etc/nginx/modules-enabled/*rtmp*.conf` loads).
pub fn nginx_rtmp_module() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        if let Some(p) = std::env::var_os("NGINX_RTMP_MODULE") {
            return PathBuf::from(p);
        }
        let debian = PathBuf::from("/usr/lib/nginx/modules/ngx_rtmp_module.so");
        if debian.is_file() {
            return debian;
        }
        let mut candidates = Vec::new();
        if let Ok(rd) = fs::read_dir("/etc/nginx/modules-enabled") {
            for e in rd.flatten() {
                if !e.file_name().to_string_lossy().contains("rtmp") {
                    continue;
                }
                let text = fs::read_to_string(e.path()).unwrap_or_default();
                for l in text.lines() {
                    if let Some(rest) = l.trim().strip_prefix("load_module") {
                        let rel = rest.trim().trim_end_matches(';').trim().trim_matches('"');
                        candidates.push(PathBuf::from(rel));
                    }
                }
            }
        }
        for c in candidates {
            if c.is_absolute() && c.is_file() {
                return c;
            }
            for prefix in ["/usr/share/nginx", "/etc/nginx", "/usr/lib/nginx"] {
                let p = Path::new(prefix).join(&c);
                if p.is_file() {
                    return fs::canonicalize(&p).unwrap_or(p);
                }
            }
        }
        panic!(
            "ngx_rtmp_module.so not found (apt-get install libnginx-mod-rtmp, \
             or set NGINX_RTMP_MODULE); run ./scripts/test.sh"
        )
    })
    .clone()
}

/// An nginx-rtmp server used as a push destination / reference peer.
///
/// Application `app` is `live on` and records every published stream to
/// `<tmp>/rec/<name>.flv` (closed when the publisher goes away). `/stat` on
/// the HTTP port serves the rtmp_stat XML.
pub struct Nginx {
    child: Option<Child>,
    pub dir: TempDir,
    pub rtmp_port: u16,
    pub http_port: u16,
}

impl Nginx {
    /// Starts on a free port.
    #[track_caller]
    pub fn start() -> Nginx {
        Nginx::start_on(free_port())
    }

    /// Starts with RTMP on `rtmp_port` (e.g. to restart a destination on the
    /// same port it had). Waits until both ports accept connections.
    #[track_caller]
    pub fn start_on(rtmp_port: u16) -> Nginx {
        let dir = TempDir::new("nginx");
        let http_port = free_port();
        let rec = dir.join("rec");
        fs::create_dir_all(&rec).expect("create rec dir");
        let d = dir.path().display().to_string();
        let conf = format!(
            r#"load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;

events {{
    worker_connections 256;
}}

rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        chunk_size 4096;
        application app {{
            live on;
            wait_key on;
            wait_video on;
            record all;
            record_path {rec};
            record_unique off;
        }}
    }}
}}

http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{http_port};
        location /stat {{
            rtmp_stat all;
        }}
    }}
}}
"#,
            module = nginx_rtmp_module().display(),
            rec = rec.display(),
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("nginx.stdout")).expect("create file"))
            .stderr(fs::File::create(dir.join("nginx.stderr")).expect("create file"))
            .spawn()
            .expect("spawn nginx (is it installed? run ./scripts/test.sh)");
        let mut n = Nginx {
            child: Some(child),
            dir,
            rtmp_port,
            http_port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(Ok(Some(st))) = n.child.as_mut().map(|c| c.try_wait()) {
                panic!("nginx exited at startup with {st}\n{}", n.logs());
            }
            if port_open(n.rtmp_addr()) && port_open(n.http_addr()) {
                return n;
            }
            if Instant::now() >= deadline {
                panic!(
                    "nginx did not listen on {rtmp_port}/{http_port} in 10s\n{}",
                    n.logs()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn rtmp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.rtmp_port))
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }

    /// `rtmp://127.0.0.1:PORT/app/name`.
    pub fn rtmp_url(&self, app: &str, name: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{app}/{name}", self.rtmp_port)
    }

    /// Where stream `name` of application `app` is recorded.
    pub fn recording(&self, name: &str) -> PathBuf {
        self.dir.join("rec").join(format!("{name}.flv"))
    }

    /// The rtmp_stat XML ("" if it can't be fetched).
    pub fn stat_xml(&self) -> String {
        match http_get(self.http_addr(), "/stat") {
            Ok((200, body)) => body,
            _ => String::new(),
        }
    }

    /// `<bytes_in>` of the live stream `name`; `None` if it isn't published.
    pub fn bytes_in(&self, name: &str) -> Option<u64> {
        stat_stream_field(&self.stat_xml(), name, "bytes_in").and_then(|v| v.parse().ok())
    }

    /// True if stream `name` currently has a publisher.
    pub fn is_publishing(&self, name: &str) -> bool {
        stat_stream_block(&self.stat_xml(), name).is_some_and(|b| b.contains("<publishing/>"))
    }

    /// Number of clients (publisher + players) on stream `name`.
    pub fn nclients(&self, name: &str) -> Option<u64> {
        stat_stream_field(&self.stat_xml(), name, "nclients").and_then(|v| v.parse().ok())
    }

    /// Waits until `name` is published and has received more than `min` bytes.
    #[track_caller]
    pub fn wait_bytes_in(&self, name: &str, min: u64, timeout: Duration) -> u64 {
        wait_for(
            timeout,
            &format!("nginx stream {name:?} bytes_in > {min}"),
            || self.bytes_in(name).filter(|&b| b > min),
        )
    }

    /// The error log (and stderr) of this nginx.
    pub fn logs(&self) -> String {
        format!(
            "--- nginx error.log ---\n{}\n--- nginx stderr ---\n{}",
            tail_file(&self.dir.join("error.log"), 100),
            tail_file(&self.dir.join("nginx.stderr"), 50)
        )
    }

    /// SIGKILL nginx now (connections drop abruptly). The struct stays
    /// usable for `recording()` / `dir`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

// ---------------------------------------------------------------------------
// stunnel
// ---------------------------------------------------------------------------

/// stunnel in server mode: accepts TLS on a free port with `cert`/`key` and forwards the
/// plain bytes to `connect`. Puts an RTMPS front (OpenSSL, not rustls) on nginx-rtmp.
/// Killed on drop.
pub struct Stunnel {
    child: Option<Child>,
    pub dir: TempDir,
    pub port: u16,
}

impl Stunnel {
    /// Starts and waits until the TLS port accepts connections.
    #[track_caller]
    pub fn start(cert: &Path, key: &Path, connect: SocketAddr) -> Stunnel {
        let dir = TempDir::new("stunnel");
        let port = free_port();
        let conf = format!(
            "foreground = yes\npid =\noutput = {log}\ndebug = info\n\n\
             [rtmps]\naccept = 127.0.0.1:{port}\nconnect = {connect}\ncert = {cert}\nkey = {key}\n",
            log = dir.join("stunnel.log").display(),
            cert = cert.display(),
            key = key.display(),
        );
        let conf_path = dir.join("stunnel.conf");
        fs::write(&conf_path, conf).expect("write stunnel.conf");
        let bin = if Command::new("stunnel4").arg("-version").output().is_ok() {
            "stunnel4"
        } else {
            "stunnel"
        };
        let child = Command::new(bin)
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("stunnel.stderr")).expect("create file"))
            .spawn()
            .expect("spawn stunnel (is stunnel4 installed? run ./scripts/test.sh)");
        let mut s = Stunnel {
            child: Some(child),
            dir,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(Ok(Some(st))) = s.child.as_mut().map(|c| c.try_wait()) {
                panic!("stunnel exited at startup with {st}\n{}", s.logs());
            }
            if port_open(s.addr()) {
                return s;
            }
            if Instant::now() >= deadline {
                panic!("stunnel did not listen on {port} in 10s\n{}", s.logs());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn logs(&self) -> String {
        format!(
            "--- stunnel log ---\n{}\n--- stunnel stderr ---\n{}",
            tail_file(&self.dir.join("stunnel.log"), 100),
            tail_file(&self.dir.join("stunnel.stderr"), 50)
        )
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// The `<stream>...</stream>` block of stream `name` in rtmp_stat XML.
pub fn stat_stream_block<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!("<name>{name}</name>");
    xml.split("<stream>")
        .skip(1)
        .map(|b| b.split("</stream>").next().unwrap_or(b))
        .find(|b| b.trim_start().starts_with(&needle))
}

/// `<field>` of stream `name` in rtmp_stat XML (first occurrence in the
/// stream block, i.e. the stream-level one, before `<client>` entries).
pub fn stat_stream_field(xml: &str, name: &str, field: &str) -> Option<String> {
    let block = stat_stream_block(xml, name)?;
    let open = format!("<{field}>");
    let start = block.find(&open)? + open.len();
    let end = block[start..].find('<')? + start;
    Some(block[start..end].to_string())
}

// ---------------------------------------------------------------------------
// Media: clip, publisher, probe, decode
// ---------------------------------------------------------------------------

/// A cached `seconds`-long FLV (H.264 320x240@25, GOP 25 + AAC 44.1 kHz)
/// test clip in `<target>/test-assets/`.
pub fn make_clip(seconds: u32) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = target_dir().join("test-assets");
    fs::create_dir_all(&dir).expect("create test-assets dir");
    let path = dir.join(format!("clip-{seconds}s.flv"));
    if path.is_file() {
        return path;
    }
    // Other test processes may race: write to a private name, then rename.
    let tmp = dir.join(format!("clip-{seconds}s.{}.tmp.flv", std::process::id()));
    let n = seconds.to_string();
    let out = run_with_timeout(
        Command::new("ffmpeg")
            .args(
                "-nostdin -hide_banner -v error -y \
                 -f lavfi -i testsrc2=size=320x240:rate=25 \
                 -f lavfi -i sine=frequency=440:sample_rate=44100 \
                 -c:v libx264 -preset ultrafast -tune zerolatency -g 25 -pix_fmt yuv420p \
                 -c:a aac -b:a 64k -f flv -t"
                    .split_whitespace(),
            )
            .arg(&n)
            .arg(&tmp),
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("making test clip: {e}"));
    assert!(
        out.status.success(),
        "ffmpeg failed making the test clip:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(&tmp, &path).expect("rename test clip");
    path
}

/// An `ffmpeg -re ... -c copy -f flv URL` publisher. Killed on drop.
pub struct Publisher {
    child: Option<Child>,
    pub url: String,
    log: TempDir,
}

impl Publisher {
    /// Publishes `clip` to `url` in real time, looping forever if asked.
    pub fn start(url: &str, clip: &Path, loop_forever: bool) -> Publisher {
        Publisher::start_with_args(url, clip, loop_forever, &[])
    }

    /// Like [`Publisher::start`] with extra output options (before `-f flv`).
    pub fn start_with_args(
        url: &str,
        clip: &Path,
        loop_forever: bool,
        extra: &[&str],
    ) -> Publisher {
        let log = TempDir::new("publisher");
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-hide_banner", "-v", "warning", "-re"]);
        if loop_forever {
            cmd.args(["-stream_loop", "-1"]);
        }
        cmd.arg("-i")
            .arg(clip)
            .args(["-c", "copy"])
            .args(extra)
            .args(["-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log.join("ffmpeg.stderr")).expect("create file"));
        let child = cmd.spawn().expect("spawn ffmpeg publisher");
        Publisher {
            child: Some(child),
            url: url.to_string(),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Exit status if ffmpeg has already exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `timeout` for ffmpeg to finish on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(self.child.as_mut()?, timeout)
    }

    /// What ffmpeg logged (warnings and errors).
    pub fn stderr(&self) -> String {
        tail_file(&self.log.join("ffmpeg.stderr"), 100)
    }

    /// Graceful stop (SIGINT → ffmpeg closes the stream properly), SIGKILL
    /// after 5 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, "INT", Duration::from_secs(5));
        }
    }

    /// SIGKILL now (the TCP connection drops without an RTMP goodbye).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "--- publisher {} ffmpeg stderr ---\n{}",
                self.url,
                self.stderr()
            );
        }
    }
}

/// An `ffmpeg -i URL -f null -` player (RTMP, HLS, ...) that keeps playing until killed
/// (on drop); what it printed is in [`NullPlayer::stderr`].
pub struct NullPlayer {
    child: std::process::Child,
    log: TempDir,
}

impl NullPlayer {
    pub fn start(url: &str) -> NullPlayer {
        let log = TempDir::new("player");
        let child = Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-v", "error", "-i", url])
            .args(["-f", "null", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log.join("ffmpeg.stderr")).unwrap())
            .spawn()
            .expect("spawn ffmpeg player");
        NullPlayer { child, log }
    }

    pub fn stderr(&self) -> String {
        tail_file(&self.log.join("ffmpeg.stderr"), 20)
    }
}

impl Drop for NullPlayer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What ffprobe found in a file or stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeResult {
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Frames ffprobe actually decoded (`-count_frames`, `nb_read_frames`).
    pub video_frames_decoded: u64,
    pub audio_frames_decoded: u64,
    /// An audio stream is present and at least one frame decoded.
    pub audio_ok: bool,
    /// Container duration in seconds, if known.
    pub duration: Option<f64>,
}

/// `ffprobe -count_frames` on a file or URL. For a live URL (`scheme://`)
/// only the first 5 s are read. Errors carry ffprobe's stderr.
pub fn probe(src: impl AsRef<std::ffi::OsStr>, timeout: Duration) -> Result<ProbeResult, String> {
    let src = src.as_ref();
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-count_frames",
        "-show_entries",
        "stream=index,codec_type,codec_name,width,height,nb_read_frames:format=duration",
        "-of",
        "flat",
    ]);
    if src.to_string_lossy().contains("://") {
        cmd.args(["-read_intervals", "%+5"]);
    }
    cmd.arg(src);
    let out = run_with_timeout(&mut cmd, timeout)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!("ffprobe {src:?} failed ({}): {stderr}", out.status));
    }
    Ok(parse_ffprobe_flat(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses `ffprobe -of flat` output (`streams.stream.0.codec_name="h264"`).
pub fn parse_ffprobe_flat(text: &str) -> ProbeResult {
    let mut streams: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut r = ProbeResult::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_string();
        if k == "format.duration" {
            r.duration = v.parse().ok();
        } else if let Some(rest) = k.strip_prefix("streams.stream.") {
            if let Some((idx, field)) = rest.split_once('.') {
                streams
                    .entry(idx.to_string())
                    .or_default()
                    .insert(field.to_string(), v);
            }
        }
    }
    let mut idx: Vec<_> = streams.keys().cloned().collect();
    idx.sort_by_key(|i| i.parse::<u32>().unwrap_or(u32::MAX));
    for i in idx {
        let s = &streams[&i];
        let frames = s
            .get("nb_read_frames")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match s.get("codec_type").map(String::as_str) {
            Some("video") if r.video_codec.is_none() => {
                r.video_codec = s.get("codec_name").cloned();
                r.width = s.get("width").and_then(|v| v.parse().ok());
                r.height = s.get("height").and_then(|v| v.parse().ok());
                r.video_frames_decoded = frames;
            }
            Some("audio") if r.audio_codec.is_none() => {
                r.audio_codec = s.get("codec_name").cloned();
                r.audio_frames_decoded = frames;
                r.audio_ok = frames > 0;
            }
            _ => {}
        }
    }
    r
}

/// Result of a full decode with `ffmpeg -f null`.
#[derive(Debug, Clone, Default)]
pub struct DecodeReport {
    /// Video frames decoded (ffmpeg's `frame=` progress counter).
    pub video_frames: u64,
    /// Lines ffmpeg printed at `-v error` (decode errors, corrupt packets…).
    pub errors: Vec<String>,
    pub exit_ok: bool,
}

/// Decodes `src` (file or URL) with `ffmpeg -v error -i SRC -f null -`.
/// `max_seconds` bounds how much is read (`-t`), needed for live URLs.
pub fn decode(
    src: &str,
    max_seconds: Option<f64>,
    timeout: Duration,
) -> Result<DecodeReport, String> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-nostats", "-v", "error"]);
    cmd.args(["-i", src]);
    if let Some(t) = max_seconds {
        cmd.args(["-t", &t.to_string()]);
    }
    cmd.args(["-progress", "pipe:1", "-f", "null", "-"]);
    let out = run_with_timeout(&mut cmd, timeout)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let video_frames = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|v| v.trim().parse().ok())
        .next_back()
        .unwrap_or(0);
    Ok(DecodeReport {
        video_frames,
        errors: String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        exit_ok: out.status.success(),
    })
}

/// Decodes `src` and returns the number of video frames, or an error if
/// ffmpeg failed, reported any error, or decoded nothing. Live URLs
/// (`scheme://`) are read for 3 s.
pub fn decode_ok(src: &str, timeout: Duration) -> Result<u64, String> {
    let live = src.contains("://");
    let r = decode(src, live.then_some(3.0), timeout)?;
    if !r.exit_ok || !r.errors.is_empty() || r.video_frames == 0 {
        return Err(format!(
            "decoding {src}: exit_ok={} video_frames={} errors:\n{}",
            r.exit_ok,
            r.video_frames,
            r.errors.join("\n")
        ));
    }
    Ok(r.video_frames)
}

/// `(dts_ms, keyframe)` of every video packet of a recording, in file order.
pub fn video_packets(path: &std::path::Path) -> Vec<(i64, bool)> {
    let out = run_with_timeout(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
            .args(["packet=dts_time,flags", "-of", "csv=p=0"])
            .arg(path),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("ffprobe packets: {e}"));
    assert!(
        out.status.success(),
        "ffprobe -show_packets {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (dts, flags) = l.trim().split_once(',')?;
            let dts: f64 = dts.parse().ok()?;
            Some(((dts * 1000.0).round() as i64, flags.starts_with('K')))
        })
        .collect()
}

/// ffmpeg output options: H.264 at a constant 8 Mbit/s (1 MB/s), audio copied.
pub const HIGH_BITRATE_VIDEO: [&str; 18] = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-tune",
    "zerolatency",
    "-g",
    "25",
    "-b:v",
    "8M",
    "-minrate",
    "8M",
    "-maxrate",
    "8M",
    "-bufsize",
    "1M",
    "-x264-params",
    "nal-hrd=cbr",
];
