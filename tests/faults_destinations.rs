//! Destinations that fail in ways other than refusing: a host name that does not resolve
//! keeps its target down (retrying, counted as `connect`) while another target flows, and
//! a destination whose link is slower than the stream sheds frames GOP-aware (its
//! recording still decodes) and/or is reconnected, while the other target gets
//! everything.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn metric(prism: &Prism, name: &str, stream: &str, target: &str) -> f64 {
    let labels = format!("stream=\"{stream}\",target=\"{target}\"");
    prism
        .metrics()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&labels))
        .filter_map(|l| metric_value_in(l, name))
        .sum()
}

#[test]
fn unresolvable_destination_stays_down_while_another_flows() {
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let prism = Prism::start(&simple_config(
        free_port(),
        free_port(),
        &[
            ("nx", "rtmp://does-not-exist.invalid/app/{stream}"),
            ("ok", &nginx.rtmp_url("app", "{stream}")),
        ],
    ));
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "dn"), &clip, true);
    nginx.wait_bytes_in("dn", 100_000, Duration::from_secs(20));
    let connect_failures = |p: &Prism| {
        p.metric_value(
            "prism_target_disconnects_total{reason=\"connect\",stream=\"live/dn\",target=\"nx\"}",
        )
        .unwrap_or(0.0)
    };
    // It keeps trying (backoff from about 1 s), and every attempt fails to connect.
    wait_until(Duration::from_secs(15), "two failed attempts of nx", || {
        connect_failures(&prism) >= 2.0
    });
    let m = prism.metrics();
    assert_eq!(
        metric(&prism, "prism_target_disconnects_total", "live/dn", "nx"),
        connect_failures(&prism),
        "nx failed for another reason than connect:\n{m}"
    );
    assert_eq!(metric(&prism, "prism_target_up", "live/dn", "nx"), 0.0);
    assert_eq!(metric(&prism, "prism_target_up", "live/dn", "ok"), 1.0);
    assert_eq!(
        metric(&prism, "prism_target_reconnects_total", "live/dn", "ok"),
        0.0
    );
    let b = nginx.bytes_in("dn").unwrap_or(0);
    nginx.wait_bytes_in("dn", b + 100_000, Duration::from_secs(10));
    let log = prism.stderr();
    assert!(
        log.contains("target down") && log.contains("target=nx"),
        "no log of nx being down:\n{log}"
    );

    publisher.stop();
    wait_until(Duration::from_secs(10), "nginx to end stream dn", || {
        !nginx.is_publishing("dn")
    });
    decode_ok(
        nginx.recording("dn").to_str().expect("utf-8 path"),
        Duration::from_secs(30),
    )
    .expect("ok's recording decodes");
}

/// A TCP proxy that forwards client→server bytes at `rate` bytes/s (until `throttle` is
/// cleared) and server→client bytes as they come. One connection at a time is enough.
fn throttling_proxy(to: SocketAddr, rate: u64, throttle: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(to) else {
                continue;
            };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_in, mut c_out) = (server, client);
            let throttle = throttle.clone();
            thread::spawn(move || {
                // Small reads, paced: the kernel buffers in front stay small too.
                let mut buf = [0u8; 2048];
                let start = Instant::now();
                let mut sent = 0u64;
                loop {
                    let n = match c_in.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if s_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sent += n as u64;
                    if throttle.load(Ordering::Relaxed) {
                        let due = start + Duration::from_micros(sent * 1_000_000 / rate);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            thread::sleep(wait);
                        }
                    }
                }
                let _ = s_out.shutdown(std::net::Shutdown::Write);
            });
            thread::spawn(move || {
                let _ = std::io::copy(&mut s_in, &mut c_out);
                let _ = c_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn rate_limited_destination_sheds_frames_and_the_other_gets_everything() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let clip_rate = std::fs::metadata(&clip).expect("clip").len() / 5;
    let nginx = Nginx::start();
    let throttle = Arc::new(AtomicBool::new(true));
    let proxy = throttling_proxy(nginx.rtmp_addr(), clip_rate / 3, throttle.clone());
    let (rtmp_port, http_port) = (free_port(), free_port());
    let config = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp_port}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n\
         [[route]]\nstream = \"live/*\"\n\
         [[route.target]]\nname = \"slow\"\nurl = \"rtmp://{proxy}/app/slow-{{stream}}\"\n\
         max_queue_ms = 1500\noverflow_disconnect_ms = 6000\n\
         [[route.target]]\nname = \"fast\"\nurl = \"{fast}\"\n",
        fast = nginx.rtmp_url("app", "{stream}"),
    );
    let prism = Prism::start(&config);
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "rl"), &clip, true);
    nginx.wait_bytes_in("rl", 100_000, Duration::from_secs(20));

    // The slow link backs up into the target's queue, which drops (and may be cut off).
    wait_until(
        Duration::from_secs(60),
        "slow to drop or be reconnected",
        || {
            metric(
                &prism,
                "prism_target_dropped_frames_total",
                "live/rl",
                "slow",
            ) > 0.0
                || metric(&prism, "prism_target_reconnects_total", "live/rl", "slow") > 0.0
        },
    );
    let shed_at = t0.elapsed();
    // Let it shed for a while longer, with the fast target watched throughout.
    let watch_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < watch_until {
        assert_eq!(
            metric(
                &prism,
                "prism_target_dropped_frames_total",
                "live/rl",
                "fast"
            ),
            0.0
        );
        assert_eq!(
            metric(&prism, "prism_target_reconnects_total", "live/rl", "fast"),
            0.0
        );
        thread::sleep(Duration::from_millis(250));
    }
    let slow_drops = metric(
        &prism,
        "prism_target_dropped_frames_total",
        "live/rl",
        "slow",
    );
    let slow_reconnects = metric(&prism, "prism_target_reconnects_total", "live/rl", "slow");
    let ingested = prism
        .metric_value("prism_ingest_frames_total{kind=\"video\",stream=\"live/rl\"}")
        .expect("ingest frames");

    // End the stream; let the slow link drain so its destination gets the goodbye.
    publisher.stop();
    throttle.store(false, Ordering::Relaxed);
    for name in ["rl", "slow-rl"] {
        wait_until(
            Duration::from_secs(15),
            &format!("nginx to end stream {name}"),
            || !nginx.is_publishing(name),
        );
    }
    let fast = decode_ok(
        nginx.recording("rl").to_str().expect("utf-8 path"),
        Duration::from_secs(30),
    )
    .expect("fast's recording decodes");
    let slow = decode_ok(
        nginx.recording("slow-rl").to_str().expect("utf-8 path"),
        Duration::from_secs(30),
    )
    .expect("slow's recording decodes without errors despite the drops");
    eprintln!(
        "slow shed after {shed_at:?}: {slow_drops} frames dropped, {slow_reconnects} \
         reconnects, {slow} frames recorded; fast recorded {fast} of {ingested} video frames; \
         took {:?}",
        t0.elapsed()
    );
    assert!(
        fast as f64 >= ingested * 0.98,
        "fast recorded {fast} of {ingested} video frames"
    );
    assert!(
        (slow as f64) < fast as f64,
        "slow recorded {slow} frames, fast {fast}"
    );
}
