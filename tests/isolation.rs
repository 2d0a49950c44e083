//! Isolation: one destination stops reading (its uplink is stalled) while
//! two nginx-rtmp destinations are healthy. The healthy ones still get the
//! whole stream and record a clean copy; Prism sheds frames for the stalled
//! one only (drops and/or an overflow disconnect in /metrics), within its
//! small queue budget.
//!
//! The stalled destination is a TCP proxy in front of a third nginx: it
//! relays both ways until the push is established (so the RTMP handshake
//! and publish succeed, like a real ingest server), then never reads from
//! Prism again while holding the connection open. A listener that never
//! reads at all would never answer the RTMP handshake, so the push would
//! never start and its queue budget would never come into play.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const KEY: &str = "iso";
const STREAM: &str = "live/iso";

/// TCP proxy to `upstream` that stops reading from its clients once `stall`
/// is set (and for connections accepted after that, from the start). The
/// accepted sockets are kept open until the proxy is dropped.
struct StallingProxy {
    addr: SocketAddr,
    stall: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl StallingProxy {
    fn start(upstream: SocketAddr) -> StallingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let stall = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        {
            let (stall, held) = (stall.clone(), held.clone());
            thread::spawn(move || {
                for client in listener.incoming() {
                    let Ok(client) = client else { return };
                    let Ok(server) = TcpStream::connect(upstream) else {
                        return;
                    };
                    held.lock()
                        .unwrap()
                        .extend([&client, &server].map(|s| s.try_clone().expect("clone socket")));
                    // upstream -> client: always (handshake replies, onStatus, pings).
                    let (mut from, mut to) = (
                        server.try_clone().expect("clone"),
                        client.try_clone().expect("clone"),
                    );
                    thread::spawn(move || copy(&mut from, &mut to, None));
                    // client -> upstream: until stalled, then never read again.
                    let (mut from, mut to, stall) = (client, server, stall.clone());
                    thread::spawn(move || copy(&mut from, &mut to, Some(&stall)));
                }
            });
        }
        StallingProxy { addr, stall, held }
    }

    fn url(&self, app: &str, name: &str) -> String {
        format!("rtmp://{}/{app}/{name}", self.addr)
    }

    fn stall(&self) {
        self.stall.store(true, Ordering::SeqCst);
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        for s in self.held.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn copy(from: &mut TcpStream, to: &mut TcpStream, stall: Option<&AtomicBool>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        if stall.is_some_and(|s| s.load(Ordering::SeqCst)) {
            // Hold the connection (the proxy owns a clone) and read nothing.
            return;
        }
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn target_metric(prism: &Prism, metric: &str, target: &str) -> Option<f64> {
    prism.metric_value(&format!(
        "{metric}{{stream=\"{STREAM}\",target=\"{target}\"}}"
    ))
}

/// Frames dropped for `target` (any reason) + times it was disconnected.
fn shed_signals(text: &str, target: &str) -> (f64, f64) {
    let sel = |m: &str| {
        text.lines()
            .filter(|l| l.starts_with(m))
            .filter(|l| l.contains(&format!("stream=\"{STREAM}\"")))
            .filter(|l| l.contains(&format!("target=\"{target}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    (
        sel("prism_target_dropped_frames_total{"),
        sel("prism_target_disconnects_total{"),
    )
}

#[test]
fn stalled_destination_does_not_hurt_the_others() {
    let clip = make_clip(5);
    let good: Vec<Nginx> = (0..2).map(|_| Nginx::start()).collect();
    let behind_stall = Nginx::start();
    let proxy = StallingProxy::start(behind_stall.rtmp_addr());

    let (rtmp, http) = (free_port(), free_port());
    let config = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\n\n[http]\nlisten = \"127.0.0.1:{http}\"\n\n\
         [[route]]\nstream = \"live/*\"\n\n\
         [[route.target]]\nname = \"good1\"\nurl = \"{g1}\"\n\n\
         [[route.target]]\nname = \"good2\"\nurl = \"{g2}\"\n\n\
         [[route.target]]\nname = \"stalled\"\nurl = \"{st}\"\n\
         max_queue_bytes = 200000\nmax_queue_ms = 1000\noverflow_disconnect_ms = 2000\n",
        g1 = good[0].rtmp_url("app", "{stream}"),
        g2 = good[1].rtmp_url("app", "{stream}"),
        st = proxy.url("app", "{stream}"),
    );
    let prism = Prism::start(&config);
    let mut publisher = Publisher::start_with_args(
        &prism.rtmp_url("live", KEY),
        &clip,
        true,
        &HIGH_BITRATE_VIDEO,
    );

    // All three pushes get established, then the third destination stalls.
    for name in ["good1", "good2", "stalled"] {
        wait_until(
            Duration::from_secs(10),
            &format!("target {name} up"),
            || target_metric(&prism, "prism_target_up", name) == Some(1.0),
        );
    }
    behind_stall.wait_bytes_in(KEY, 0, Duration::from_secs(10));
    proxy.stall();

    // Prism sheds the stalled target: dropped frames or an overflow
    // disconnect, a few seconds after the kernel buffers are full (its
    // budget: 1 s / 200 kB queued, 2 s over budget).
    let stalled_at = Instant::now();
    wait_until(
        Duration::from_secs(12),
        "stalled target to show drops or a disconnect",
        || {
            let (dropped, disconnects) = shed_signals(&prism.metrics(), "stalled");
            dropped > 0.0 || disconnects > 0.0
        },
    );
    eprintln!(
        "stalled target shed {:?} after the stall",
        stalled_at.elapsed()
    );
    // ... and, having stayed over budget for overflow_disconnect_ms (2 s),
    // is disconnected for being too slow (not after the 20 s write timeout).
    wait_until(
        Duration::from_secs(6),
        "stalled target disconnected with reason too_slow",
        || {
            prism
                .metric_value(&format!(
                    "prism_target_disconnects_total{{reason=\"too_slow\",stream=\"{STREAM}\",target=\"stalled\"}}"
                ))
                .is_some_and(|v| v >= 1.0)
        },
    );
    eprintln!(
        "stalled target disconnected {:?} after the stall",
        stalled_at.elapsed()
    );

    // Meanwhile the healthy destinations got everything Prism ingested.
    for (name, nginx) in ["good1", "good2"].iter().zip(&good) {
        let ingest = prism
            .metric_value(&format!("prism_ingest_bytes_total{{stream=\"{STREAM}\"}}"))
            .expect("ingest bytes");
        assert!(ingest > 2_000_000.0, "only {ingest} bytes ingested so far");
        let got = nginx.wait_bytes_in(KEY, (ingest * 0.9) as u64, Duration::from_secs(5));
        assert_eq!(
            target_metric(&prism, "prism_target_up", name),
            Some(1.0),
            "{name} went down"
        );
        let (dropped, disconnects) = shed_signals(&prism.metrics(), name);
        assert_eq!(
            (dropped, disconnects),
            (0.0, 0.0),
            "{name} was shed ({got} bytes in)"
        );
    }

    publisher.stop();
    for (name, nginx) in ["good1", "good2"].iter().zip(&good) {
        wait_until(
            Duration::from_secs(10),
            &format!("{name} to lose its publisher"),
            || !nginx.is_publishing(KEY),
        );
        let rec = nginx.recording(KEY);
        let p = probe(&rec, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{name}: probe recording: {e}"));
        assert_eq!(p.video_codec.as_deref(), Some("h264"), "{name}: {p:?}");
        assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{name}: {p:?}");
        assert!(p.video_frames_decoded >= 50, "{name}: {p:?}");
        assert!(p.audio_ok, "{name}: {p:?}");
        decode_ok(rec.to_str().expect("utf-8 path"), Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
