//! 2% packet loss between an SRT publisher and Prism (a seeded in-test UDP proxy dropping
//! datagrams both ways): SRT's retransmissions still deliver a stream that decodes, and the
//! per-connection SRT metrics show the loss and the retransmissions.

mod common;

use common::srt::*;
use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A one-client UDP proxy that drops `loss_per_mille` of the datagrams in each direction,
/// chosen by a seeded xorshift (reproducible runs). Stops when dropped.
struct LossyProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl LossyProxy {
    /// Loses datagrams only for the first `lossy_for`: a sender that closes drops the
    /// retransmissions it still owed (SRT gives up on them at shutdown), so a lossy tail
    /// would corrupt the last frames whatever the receiver does.
    fn start(
        upstream: SocketAddr,
        loss_per_mille: u64,
        seed: u64,
        lossy_for: Duration,
    ) -> LossyProxy {
        let started = Instant::now();
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(upstream).unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
        }
        let port = front.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Default::default();
        let (front, back) = (Arc::new(front), Arc::new(back));
        let lossy = move |seed: u64| {
            let mut x = seed | 1;
            move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % 1000 < loss_per_mille && started.elapsed() < lossy_for
            }
        };
        let up = {
            let (front, back, stop, dropped, client) = (
                front.clone(),
                back.clone(),
                stop.clone(),
                dropped.clone(),
                client.clone(),
            );
            let mut lose = lossy(seed);
            thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *client.lock().unwrap() = Some(from);
                        if lose() {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        } else {
                            let _ = back.send(&buf[..n]);
                        }
                    }
                }
            })
        };
        let down = {
            let (stop, dropped) = (stop.clone(), dropped.clone());
            let mut lose = lossy(seed.wrapping_mul(31));
            thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = back.recv(&mut buf) {
                        let to = *client.lock().unwrap();
                        match to {
                            Some(_) if lose() => {
                                dropped.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(to) => {
                                let _ = front.send_to(&buf[..n], to);
                            }
                            None => {}
                        }
                    }
                }
            })
        };
        LossyProxy {
            port,
            stop,
            dropped,
            threads: vec![up, down],
        }
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Polls `f` until true or `timeout`; returns whether it became true.
fn wait_for_ok(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn two_percent_loss_still_decodes() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let srt_port = free_udp_port();
    let prism = Prism::start(&srt_config(
        srt_port,
        "",
        &[("nginx", &nginx.rtmp_url("app", "{stream}"))],
    ));
    let proxy = LossyProxy::start(
        SocketAddr::from(([127, 0, 0, 1], srt_port)),
        20,
        0x5eed,
        // The first 3.5 of the clip's five seconds.
        Duration::from_millis(3500),
    );
    // Latency well above the loopback RTT leaves room for several retransmissions.
    let url = format!(
        "srt://127.0.0.1:{}?latency=400000&streamid={}",
        proxy.port,
        percent_encode("#!::r=live/lossy,m=publish")
    );
    let mut publisher = SrtPublisher::start(&url, &clip, false);
    nginx.wait_bytes_in("lossy", 50_000, Duration::from_secs(15));
    let labels = "{direction=\"ingest\",stream=\"live/lossy\",target=\"\"}";
    let mut last = String::new();
    let seen = wait_for_ok(Duration::from_secs(8), || {
        let m = prism.metrics();
        last = m
            .lines()
            .filter(|l| l.starts_with("prism_srt"))
            .collect::<Vec<_>>()
            .join("\n");
        metric_value_in(&m, &format!("prism_srt_packets_lost_total{labels}")) > Some(0.0)
            && metric_value_in(
                &m,
                &format!("prism_srt_packets_retransmitted_total{labels}"),
            ) > Some(0.0)
            && metric_value_in(&m, &format!("prism_srt_rtt_seconds{labels}")).is_some()
    });
    assert!(seen, "no SRT loss/retransmissions/RTT in /metrics:\n{last}");
    assert!(
        publisher.wait_exit(Duration::from_secs(15)).is_some(),
        "publisher did not finish: {}",
        publisher.stderr()
    );
    assert!(
        proxy.dropped.load(Ordering::Relaxed) > 5,
        "the proxy dropped nothing"
    );
    wait_until(
        Duration::from_secs(15),
        "nginx to close the recording",
        || !nginx.is_publishing("lossy"),
    );
    let rec = nginx.recording("lossy");
    assert_recording(&rec, 3.0, 7.0);
    let frames = decode_ok(&rec.to_string_lossy(), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", prism.stderr()));
    assert!(frames >= 100, "decoded only {frames} frames");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
}
