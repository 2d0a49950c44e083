//! `prism` with no `--config` runs the embedded default: RTMP on
//! 0.0.0.0:1935 (every interface), the admin endpoint on 127.0.0.1:9935
//! (loopback only), and a publish + play through port 1935 works.
//!
//! The only e2e test on the fixed ports 1935/9935 (every other test uses
//! free ports). If either port is taken on this machine the test fails
//! naming it, rather than skipping: stop whatever listens there.

mod common;

use common::*;
use std::collections::HashSet;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const RTMP_PORT: u16 = 1935;
const HTTP_PORT: u16 = 9935;

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Panics with a clear message if `bind` (what prism will bind) is in use.
#[track_caller]
fn assert_port_free(bind: &str, what: &str) {
    let port: u16 = bind
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    if let Err(e) = TcpListener::bind(bind) {
        panic!(
            "port {bind} ({what}) is already in use on this machine ({e}): the default-config \
             test needs it free; stop whatever listens there. Listening on port {port}: {:?}",
            listening_sockets()
                .iter()
                .filter(|(a, _)| a.port() == port)
                .map(|(a, i)| format!("{a} (socket inode {i})"))
                .collect::<Vec<_>>()
        );
    }
    // Nothing on the loopback address either (bind may succeed past a listener on another
    // family or a SO_REUSEPORT socket).
    assert!(
        !port_open(loopback(port)),
        "something accepts connections on 127.0.0.1:{port} ({what}): the default-config test \
         needs the port free"
    );
}

/// `(local address, socket inode)` of every listening IPv4 TCP socket.
fn listening_sockets() -> Vec<(SocketAddr, u64)> {
    let text = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(3) != Some(&"0A") {
                return None;
            }
            let (ip, port) = f.get(1)?.split_once(':')?;
            // The address is the in-memory (network order) u32 printed as a native integer.
            let ip = Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_ne_bytes());
            let port = u16::from_str_radix(port, 16).ok()?;
            Some((SocketAddr::from((ip, port)), f.get(9)?.parse().ok()?))
        })
        .collect()
}

/// Socket inodes open in process `pid`.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| fs::read_link(e.path()).ok())
                .filter_map(|t| {
                    t.to_str()?
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A non-loopback IPv4 address of this machine, if it has a route out (no packet is sent).
fn outward_ip() -> Option<Ipv4Addr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    match s.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

/// `prism` with no arguments but its log level. Killed on drop.
struct DefaultPrism {
    child: Option<Child>,
    dir: TempDir,
}

impl DefaultPrism {
    fn start() -> DefaultPrism {
        let dir = TempDir::new("prism-default");
        // Absolute: PRISM_BIN may be relative to the workspace, and prism runs in `dir`.
        let bin = fs::canonicalize(prism_bin()).expect("prism binary path");
        let child = Command::new(&bin)
            .current_dir(dir.path())
            .env("PRISM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("prism.stderr")).expect("create file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut p = DefaultPrism {
            child: Some(child),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(Ok(Some(st))) = p.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "prism (no --config) exited at startup with {st}\n{}",
                    p.stderr()
                );
            }
            if matches!(http_get(loopback(HTTP_PORT), "/healthz"), Ok((200, _)))
                && port_open(loopback(RTMP_PORT))
            {
                return p;
            }
            if Instant::now() >= deadline {
                panic!(
                    "prism (no --config) not healthy on 127.0.0.1:{HTTP_PORT} with RTMP on \
                     {RTMP_PORT} within 10 s\n{}",
                    p.stderr()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    fn stderr(&self) -> String {
        tail_file(&self.dir.join("prism.stderr"), 200)
    }

    fn metric(&self, prefix: &str) -> Option<f64> {
        match http_get(loopback(HTTP_PORT), "/metrics") {
            Ok((200, body)) => metric_value_in(&body, prefix),
            other => panic!("/metrics: {other:?}"),
        }
    }
}

impl Drop for DefaultPrism {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if thread::panicking() {
            eprintln!("--- prism stderr ---\n{}", self.stderr());
        }
    }
}

#[test]
fn no_config_listens_on_the_default_ports_and_relays() {
    assert_port_free("0.0.0.0:1935", "RTMP");
    assert_port_free("127.0.0.1:9935", "admin HTTP");

    let t = Instant::now();
    let mut prism = DefaultPrism::start();
    eprintln!("prism (no --config) healthy after {:?}", t.elapsed());
    let (status, body) = http_get(loopback(HTTP_PORT), "/healthz").expect("/healthz");
    assert_eq!(status, 200, "{body}");

    // Exactly the default listeners, owned by this prism: RTMP on every interface, admin on
    // loopback only.
    let inodes = socket_inodes(prism.pid());
    let mut mine: Vec<SocketAddr> = listening_sockets()
        .into_iter()
        .filter(|(_, inode)| inodes.contains(inode))
        .map(|(a, _)| a)
        .collect();
    mine.sort();
    assert_eq!(
        mine,
        vec![
            SocketAddr::from(([0, 0, 0, 0], RTMP_PORT)),
            loopback(HTTP_PORT)
        ],
        "prism's listening sockets (pid {})",
        prism.pid()
    );
    if let Some(ip) = outward_ip() {
        assert!(
            port_open(SocketAddr::from((ip, RTMP_PORT))),
            "RTMP not reachable on {ip}:{RTMP_PORT}"
        );
        assert!(
            !port_open(SocketAddr::from((ip, HTTP_PORT))),
            "admin endpoint reachable on {ip}:{HTTP_PORT}: it must stay on loopback"
        );
    } else {
        eprintln!("no non-loopback IPv4 address: reachability from outside not checked");
    }

    // Publish and play through 1935.
    let clip = make_clip(5);
    let url = format!("rtmp://127.0.0.1:{RTMP_PORT}/live/default");
    let mut publisher = Publisher::start(&url, &clip, true);
    wait_until(Duration::from_secs(10), "ingest on :1935", || {
        prism
            .metric("prism_ingest_frames_total{kind=\"video\",stream=\"live/default\"}")
            .is_some_and(|v| v > 0.0)
    });
    let n = decode_ok(&url, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}"));
    assert!(n >= 50, "decoded only {n} frames in 3 s");
    let p = probe(&url, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert!(p.audio_ok, "{p:?}");
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());
    publisher.stop();

    // A clean shutdown frees the ports for the next run.
    let mut child = prism.child.take().expect("prism running");
    let status = stop_child(&mut child, "TERM", Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "prism did not exit cleanly on SIGTERM: {status:?}\n{}",
        prism.stderr()
    );
    eprintln!("whole test: {:?}", t.elapsed());
}
