//! The relay under test as a child process (Prism or nginx-rtmp), and what /proc says
//! about a process.

use crate::scenario::Scenario;
use anyhow::{bail, Context};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayKind {
    /// Prism with tokio's default worker count (one per core).
    Prism,
    /// Prism with TOKIO_WORKER_THREADS=1.
    Prism1,
    /// Prism with `write_merge_ms = 40` on every target and player: output merged into
    /// one write per 40 ms (a video frame's span at 25 fps).
    #[serde(rename = "prism-m40")]
    PrismM40,
    /// nginx-rtmp, one worker process (master_process off).
    Nginx,
    /// Prism in low-latency mode: `write_merge_ms = 0` on every target and player (every
    /// frame written as it arrives; the default before targets merged on a 40 ms grid).
    #[serde(rename = "prism-ll")]
    PrismLl,
    /// Node-Media-Server 4 (benches/nms/launch.js on node): players, and push through its
    /// in-process RTMP relay client (one connection per destination, no process spawned).
    Nms,
}

impl RelayKind {
    pub fn parse(s: &str) -> anyhow::Result<RelayKind> {
        Ok(match s {
            "prism" => RelayKind::Prism,
            "prism1" => RelayKind::Prism1,
            "prism-m40" => RelayKind::PrismM40,
            "prism-ll" => RelayKind::PrismLl,
            "nginx" => RelayKind::Nginx,
            "nms" => RelayKind::Nms,
            _ => bail!("unknown relay {s:?} (prism, prism1, prism-m40, prism-ll, nginx, nms)"),
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            RelayKind::Prism => "prism",
            RelayKind::Prism1 => "prism1",
            RelayKind::PrismM40 => "prism-m40",
            RelayKind::PrismLl => "prism-ll",
            RelayKind::Nginx => "nginx",
            RelayKind::Nms => "nms",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RelayPaths {
    pub prism_bin: PathBuf,
    pub nginx_bin: PathBuf,
    pub nginx_module: PathBuf,
    pub node_bin: PathBuf,
    /// benches/nms: launch.js and its node_modules (`npm ci` there).
    pub nms_dir: PathBuf,
}

/// What the relay is configured for.
#[derive(Debug, Clone, Copy)]
pub struct RelaySpec {
    pub scenario: Scenario,
    /// Publishers (streams live/bench0.. in `multi`; 1 otherwise).
    pub streams: usize,
    /// Push targets per stream (fanout, multi); 0 for players.
    pub targets_per_stream: usize,
    /// RTMP players (players scenario).
    pub players: usize,
    pub sink_port: u16,
}

impl RelaySpec {
    /// Connections the relay holds at once, about: targets or players, plus publishers.
    pub fn connections(&self) -> usize {
        self.streams * self.targets_per_stream + self.players + self.streams
    }

    /// Where publisher `i` publishes: (app, key).
    pub fn publish_name(&self, kind: RelayKind, i: usize) -> (String, String) {
        match (self.scenario, kind) {
            (Scenario::Multi, RelayKind::Nginx) => (format!("s{i}"), format!("bench{i}")),
            (Scenario::Multi, _) => ("live".into(), format!("bench{i}")),
            _ => ("live".into(), "bench".into()),
        }
    }
}

pub struct RelayProcess {
    pub kind: RelayKind,
    pub child: Child,
    pub rtmp_port: u16,
    pub http_port: Option<u16>,
    /// Prism's WHIP/WHEP signalling port (scenario `whep`).
    pub webrtc_port: Option<u16>,
    pub dir: PathBuf,
}

impl RelayProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Exit status if the relay died.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            _ => None,
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let file = match self.kind {
            RelayKind::Nginx => "error.log",
            RelayKind::Nms => "relay.stdout",
            _ => "relay.stderr",
        };
        let text = fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        let v: Vec<&str> = text.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts the relay configured for `spec` and waits until its RTMP port accepts connections.
pub fn start(
    kind: RelayKind,
    paths: &RelayPaths,
    spec: &RelaySpec,
    dir: &Path,
) -> anyhow::Result<RelayProcess> {
    fs::create_dir_all(dir)?;
    let rtmp_port = free_port()?;
    let mut http_port = None;
    let mut webrtc_port = None;
    let child = match kind {
        RelayKind::Prism | RelayKind::Prism1 | RelayKind::PrismM40 | RelayKind::PrismLl => {
            let http = free_port()?;
            http_port = Some(http);
            // `prism` and `prism1` run the defaults (no write_merge_ms key).
            let merge_ms = match kind {
                RelayKind::PrismM40 => Some(40),
                RelayKind::PrismLl => Some(0),
                _ => None,
            };
            let mut conf = prism_config(rtmp_port, http, spec, merge_ms);
            if spec.scenario == Scenario::Whep {
                let (sig, udp) = (free_port()?, free_udp_port()?);
                webrtc_port = Some(sig);
                let max = spec.players + 100;
                let _ = write!(
                    conf,
                    "\n[webrtc]\nlisten = \"127.0.0.1:{sig}\"\nudp = \"127.0.0.1:{udp}\"\n\
                     max_sessions = {max}\nmax_sessions_per_ip = {max}\n"
                );
            }
            let path = dir.join("prism.toml");
            fs::write(&path, conf)?;
            let mut cmd = Command::new(&paths.prism_bin);
            cmd.arg("--config").arg(&path).arg("--log").arg("info");
            if kind == RelayKind::Prism1 {
                cmd.env("TOKIO_WORKER_THREADS", "1");
            }
            cmd.stdin(Stdio::null())
                .stdout(fs::File::create(dir.join("relay.stdout"))?)
                .stderr(fs::File::create(dir.join("relay.stderr"))?)
                .spawn()
                .with_context(|| format!("spawning {}", paths.prism_bin.display()))?
        }
        RelayKind::Nginx => {
            let conf = nginx_config(&paths.nginx_module, dir, rtmp_port, spec);
            let path = dir.join("nginx.conf");
            fs::write(&path, conf)?;
            Command::new(&paths.nginx_bin)
                .arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(fs::File::create(dir.join("relay.stdout"))?)
                .stderr(fs::File::create(dir.join("relay.stderr"))?)
                .spawn()
                .with_context(|| format!("spawning {}", paths.nginx_bin.display()))?
        }
        RelayKind::Nms => {
            let launcher = paths.nms_dir.join("launch.js");
            if !paths
                .nms_dir
                .join("node_modules/node-media-server")
                .is_dir()
            {
                bail!(
                    "node-media-server is not installed: run `npm ci` in {}",
                    paths.nms_dir.display()
                );
            }
            let mut cmd = Command::new(&paths.node_bin);
            cmd.arg(&launcher)
                .arg("--rtmp-port")
                .arg(rtmp_port.to_string())
                .arg("--dir")
                .arg(dir);
            if spec.scenario != Scenario::Players {
                cmd.arg("--sink-port")
                    .arg(spec.sink_port.to_string())
                    .arg("--targets")
                    .arg(spec.targets_per_stream.to_string())
                    .arg("--scenario")
                    .arg(spec.scenario.name());
            }
            cmd.stdin(Stdio::null())
                .stdout(fs::File::create(dir.join("relay.stdout"))?)
                .stderr(fs::File::create(dir.join("relay.stderr"))?)
                .spawn()
                .with_context(|| format!("spawning {}", paths.node_bin.display()))?
        }
    };
    let relay = RelayProcess {
        kind,
        child,
        rtmp_port,
        http_port,
        webrtc_port,
        dir: dir.to_owned(),
    };
    wait_listening(relay)
}

/// Waits until the relay's RTMP port accepts connections (10 s at most).
fn wait_listening(mut relay: RelayProcess) -> anyhow::Result<RelayProcess> {
    let (kind, rtmp_port, dir) = (relay.kind, relay.rtmp_port, relay.dir.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = relay.exited() {
            bail!(
                "{} exited at start-up ({st}):\n{}\n{}",
                kind.name(),
                relay.log_tail(30),
                fs::read_to_string(dir.join("relay.stderr")).unwrap_or_default()
            );
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], rtmp_port));
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(relay);
        }
        if Instant::now() > deadline {
            bail!("{} did not listen on {rtmp_port} within 10 s", kind.name());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the `hls` scenarios configure: one packaging setting for both relays.
#[derive(Debug, Clone)]
pub struct HlsSpec {
    pub segment_ms: u64,
    pub part_ms: u64,
    pub window_segments: usize,
    /// Prism only (nginx-rtmp keeps `window_segments`).
    pub dvr_window_s: u64,
    pub dvr_max_mb: u64,
    pub dvr_dir: Option<PathBuf>,
    /// HTTP connections the clients hold (for the relays' connection limits).
    pub connections: usize,
    pub streams: usize,
}

/// Starts a relay serving HLS from RTMP: Prism with `[hls]`, or nginx-rtmp with `hls on`
/// writing into `dir/www/live`, which the same nginx (one worker) serves as static files.
/// Returns the relay and its viewers' HTTP port.
pub fn start_hls(
    kind: RelayKind,
    paths: &RelayPaths,
    spec: &HlsSpec,
    dir: &Path,
) -> anyhow::Result<(RelayProcess, u16)> {
    fs::create_dir_all(dir)?;
    let rtmp_port = free_port()?;
    let hls_port = free_port()?;
    let mut http_port = None;
    let conns = spec.connections + spec.streams + 100;
    let child = match kind {
        RelayKind::Prism | RelayKind::Prism1 | RelayKind::PrismM40 | RelayKind::PrismLl => {
            let http = free_port()?;
            http_port = Some(http);
            let mut conf = format!(
                "[rtmp]\nlisten = \"127.0.0.1:{rtmp_port}\"\nchunk_size = 4096\n\n\
                 [http]\nlisten = \"127.0.0.1:{http}\"\n\n\
                 [limits]\nmax_connections = {conns}\nmax_connections_per_ip = {conns}\n\
                 max_streams = {}\n\n\
                 [hls]\nlisten = \"127.0.0.1:{hls_port}\"\nsegment_ms = {}\npart_ms = {}\n\
                 window_segments = {}\ndvr_window_s = {}\ndvr_max_mb = {}\n\
                 max_connections = {conns}\nmax_blocking_requests = {conns}\n",
                (spec.streams + 10).max(500),
                spec.segment_ms,
                spec.part_ms,
                spec.window_segments,
                spec.dvr_window_s,
                spec.dvr_max_mb,
            );
            if let Some(d) = &spec.dvr_dir {
                let _ = writeln!(conf, "dvr_dir = {:?}", d.display().to_string());
            }
            let path = dir.join("prism.toml");
            fs::write(&path, conf)?;
            let mut cmd = Command::new(&paths.prism_bin);
            cmd.arg("--config").arg(&path).arg("--log").arg("info");
            if kind == RelayKind::Prism1 {
                cmd.env("TOKIO_WORKER_THREADS", "1");
            }
            cmd.stdin(Stdio::null())
                .stdout(fs::File::create(dir.join("relay.stdout"))?)
                .stderr(fs::File::create(dir.join("relay.stderr"))?)
                .spawn()
                .with_context(|| format!("spawning {}", paths.prism_bin.display()))?
        }
        RelayKind::Nms => bail!("nms: the hls scenarios run Prism and nginx-rtmp only"),
        RelayKind::Nginx => {
            let www = dir.join("www");
            fs::create_dir_all(www.join("live"))?;
            let conf = nginx_hls_config(&paths.nginx_module, dir, rtmp_port, hls_port, spec);
            let path = dir.join("nginx.conf");
            fs::write(&path, conf)?;
            Command::new(&paths.nginx_bin)
                .arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(fs::File::create(dir.join("relay.stdout"))?)
                .stderr(fs::File::create(dir.join("relay.stderr"))?)
                .spawn()
                .with_context(|| format!("spawning {}", paths.nginx_bin.display()))?
        }
    };
    let relay = wait_listening(RelayProcess {
        kind,
        child,
        rtmp_port,
        http_port,
        webrtc_port: None,
        dir: dir.to_owned(),
    })?;
    Ok((relay, hls_port))
}

/// nginx-rtmp `hls on` into `dir/www/live`, served by nginx's http module from the same
/// (single) worker: static files with sendfile, as an nginx HLS origin is usually set up.
fn nginx_hls_config(
    module: &Path,
    dir: &Path,
    rtmp_port: u16,
    http_port: u16,
    spec: &HlsSpec,
) -> String {
    let d = dir.display();
    let worker_connections = (spec.connections + 1024).max(8192);
    let frag_s = spec.segment_ms as f64 / 1000.0;
    let playlist_s = frag_s * spec.window_segments as f64;
    format!(
        r#"load_module {module};
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile {rlimit};
pid {d}/nginx.pid;
error_log {d}/error.log warn;

events {{
    worker_connections {worker_connections};
}}

rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        chunk_size 4096;
        application live {{
            live on;
            hls on;
            hls_path {d}/www/live;
            hls_fragment {frag_ms}ms;
            hls_playlist_length {playlist_ms}ms;
        }}
    }}
}}

http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    types {{
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
    }}
    server {{
        listen 127.0.0.1:{http_port} backlog=4096;
        location / {{
            root {d}/www;
            add_header Cache-Control no-cache;
        }}
    }}
}}
"#,
        module = module.display(),
        rlimit = worker_connections + 1024,
        frag_ms = spec.segment_ms,
        playlist_ms = (playlist_s * 1000.0) as u64,
    )
}

fn prism_config(rtmp_port: u16, http_port: u16, spec: &RelaySpec, merge_ms: Option<u32>) -> String {
    let merge = merge_ms.map_or(String::new(), |ms| format!("write_merge_ms = {ms}\n"));
    let sink_port = spec.sink_port;
    let max_conns = spec.connections() + 100;
    let mut s = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp_port}\"\nchunk_size = 4096\n\n\
         [http]\nlisten = \"127.0.0.1:{http_port}\"\n\n\
         # The load is the point: lift the safety limits it would hit.\n\
         [limits]\nmax_targets_per_stream = {max_targets}\nmax_connections = {max_conns}\n\
         max_connections_per_ip = {max_conns}\nmax_streams = {max_streams}\n",
        max_targets = spec.targets_per_stream.max(1),
        max_streams = (spec.streams + 10).max(500),
    );
    match spec.scenario {
        Scenario::Players | Scenario::Whep => {
            // No route: the stream is open to players. Player queues as generous as the
            // targets' below: the benchmark measures serving, not shedding.
            s.push_str(
                "\n[player]\nmax_queue_ms = 10000\nmax_queue_bytes = 67108864\n\
                 overflow_disconnect_ms = 60000\n",
            );
            s.push_str(&merge);
        }
        Scenario::Fanout | Scenario::Multi => {
            s.push_str("\n[[route]]\nstream = \"live/*\"\n");
            for i in 0..spec.targets_per_stream {
                // `multi`: one wildcard route; `{stream}` (the key, bench<k>) expands per
                // stream, so every stream gets its own 20 targets.
                let key = if spec.scenario == Scenario::Multi {
                    format!("{{stream}}_t{i}")
                } else {
                    format!("t{i}")
                };
                // Generous queues: the benchmark measures forwarding cost, not shedding.
                let _ = write!(
                    s,
                    "\n  [[route.target]]\n  name = \"t{i}\"\n  url = \"rtmp://127.0.0.1:{sink_port}/sink/{key}\"\n  \
                     max_queue_ms = 10000\n  max_queue_bytes = 67108864\n  overflow_disconnect_ms = 60000\n  {merge}"
                );
            }
        }
    }
    s
}

fn nginx_config(module: &Path, dir: &Path, rtmp_port: u16, spec: &RelaySpec) -> String {
    let d = dir.display();
    let sink_port = spec.sink_port;
    let pushes = |key: &dyn Fn(usize) -> String| {
        let mut p = String::new();
        for i in 0..spec.targets_per_stream {
            let _ = writeln!(
                p,
                "            push rtmp://127.0.0.1:{sink_port}/sink/{};",
                key(i)
            );
        }
        p
    };
    let apps = match spec.scenario {
        Scenario::Fanout => format!(
            "        application live {{\n            live on;\n{}        }}\n",
            pushes(&|i| format!("t{i}"))
        ),
        // Push is per application in nginx-rtmp: one application per stream.
        Scenario::Multi => (0..spec.streams)
            .map(|k| {
                format!(
                    "        application s{k} {{\n            live on;\n{}        }}\n",
                    pushes(&|i| format!("bench{k}_t{i}"))
                )
            })
            .collect(),
        Scenario::Players | Scenario::Whep => {
            "        application live {\n            live on;\n        }\n".into()
        }
    };
    // One connection (and fd) per target, player or publisher, plus listeners and files.
    let worker_connections = (spec.connections() + 1024).max(8192);
    format!(
        r#"load_module {module};
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile {rlimit};
pid {d}/nginx.pid;
error_log {d}/error.log warn;

events {{
    worker_connections {worker_connections};
}}

rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        chunk_size 4096;
{apps}    }}
}}
"#,
        module = module.display(),
        rlimit = worker_connections + 1024,
    )
}

/// CPU ticks per second for /proc/<pid>/stat.
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process (all its threads), in seconds; `pid` may be "self".
/// CPU seconds of every thread of `pid`, by thread id.
pub fn thread_cpu_seconds(pid: &str, tck: f64) -> std::collections::HashMap<String, f64> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Default::default();
    };
    dir.flatten()
        .filter_map(|e| {
            let tid = e.file_name().to_string_lossy().into_owned();
            let secs = cpu_seconds(&format!("{pid}/task/{tid}"), tck)?;
            Some((tid, secs))
        })
        .collect()
}

pub fn cpu_seconds(pid: &str, tck: f64) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / tck)
}

/// A `kB` field ("VmRSS", "VmHWM") or "Threads" of /proc/<pid>/status.
pub fn status_field(pid: &str, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// (busy, total) jiffies of the whole machine, from /proc/stat.
pub fn machine_jiffies() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// A `TcpExt` counter of /proc/net/netstat ("ListenOverflows", "TCPSynRetrans", ...), for
/// the whole machine.
pub fn tcp_ext(name: &str) -> Option<u64> {
    let text = fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// `GET path` over HTTP/1.0 on 127.0.0.1:port; the body.
pub fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

/// Sum of the Prometheus samples of metric `name` (any labels).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(['{', ' ']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}
