//! `[limits] max_streams` holds under 200 concurrent publishes: exactly the limit go live,
//! every other publisher is refused (NetStream.Publish.Rejected), and the refusals are
//! counted as `too_many_streams`.
//!
//! An `[auth] on_publish` webhook that holds its answers until every publish has asked (or
//! 3 s passed) releases them all at once, so the publishes reach the count together. And
//! players already wait for 40 of the keys (viewers waiting for a broadcast to start): a
//! waiting player registers the stream's name without making it live, which the count must
//! not mistake for a live stream's publisher coming back.

mod common;

use common::rtmp::RtmpPublisher;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const PUBLISHERS: usize = 200;
const MAX_STREAMS: usize = 20;
/// Keys with a player waiting before anyone publishes.
const WAITED_FOR: usize = 40;

/// A webhook that allows every publish, answering once `expect` calls are in or 3 s after
/// the first one. Returns its port and the number of calls.
fn start_hook(expect: usize) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind hook");
    let port = listener.local_addr().expect("addr").port();
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new((Mutex::new(None::<Instant>), Condvar::new()));
    let counted = calls.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (calls, gate) = (counted.clone(), gate.clone());
            thread::spawn(move || {
                let mut reader = BufReader::new(conn);
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end().to_ascii_lowercase();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                calls.fetch_add(1, Ordering::SeqCst);
                let (first, cv) = &*gate;
                let mut first = first.lock().unwrap();
                let since = *first.get_or_insert_with(Instant::now);
                cv.notify_all();
                while calls.load(Ordering::SeqCst) < expect
                    && since.elapsed() < Duration::from_secs(3)
                {
                    first = cv.wait_timeout(first, Duration::from_millis(50)).unwrap().0;
                }
                drop(first);
                let mut conn = reader.into_inner();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            });
        }
    });
    (port, calls)
}

#[test]
fn concurrent_publishes_never_exceed_max_streams() {
    let t0 = Instant::now();
    let (hook_port, calls) = start_hook(PUBLISHERS);
    let (rtmp_port, http_port) = (free_port(), free_port());
    let prism = Prism::start(&format!(
        r#"
[rtmp]
listen = "127.0.0.1:{rtmp_port}"
[http]
listen = "127.0.0.1:{http_port}"
[limits]
max_streams = {MAX_STREAMS}
max_connections_per_ip = {conns}
[auth]
on_publish = "http://127.0.0.1:{hook_port}/publish"
timeout_ms = 10000
"#,
        conns = (PUBLISHERS + WAITED_FOR) * 2
    ));
    let addr = prism.rtmp_addr.expect("rtmp listen");
    let players: Vec<_> = (0..WAITED_FOR)
        .map(|i| rtmp::rtmp_player(addr, "live", &format!("race{i}")))
        .collect();

    // All publishers start together; the accepted ones stay connected (live) until the end.
    let start = Arc::new(Barrier::new(PUBLISHERS));
    let workers: Vec<_> = (0..PUBLISHERS)
        .map(|i| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                RtmpPublisher::publish(addr, "live", &format!("race{i}"))
            })
        })
        .collect();
    let results: Vec<Result<RtmpPublisher, String>> =
        workers.into_iter().map(|w| w.join().unwrap()).collect();

    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let refusals: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    eprintln!(
        "{accepted} accepted, {} refused, {} webhook calls, in {:?}",
        refusals.len(),
        calls.load(Ordering::SeqCst),
        t0.elapsed()
    );
    assert_eq!(
        accepted,
        MAX_STREAMS,
        "first refusal: {:?}",
        refusals.first()
    );
    for r in &refusals {
        assert!(r.contains("NetStream.Publish.Rejected"), "{r}");
    }
    // The webhook saw more publishes than the limit at once: the race was on.
    assert!(calls.load(Ordering::SeqCst) > MAX_STREAMS);
    wait_until(Duration::from_secs(5), "the refusals counted", || {
        prism.metric_value("prism_publish_rejected_total{reason=\"too_many_streams\"}")
            == Some((PUBLISHERS - MAX_STREAMS) as f64)
    });
    assert_eq!(
        prism.metric_value("prism_streams_active"),
        Some(MAX_STREAMS as f64),
        "{}",
        prism.metrics()
    );
    drop((results, players));
}
