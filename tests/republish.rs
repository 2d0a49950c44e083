//! A publisher that drops without unpublishing and comes back with the same
//! key within `[stream] reconnect_grace_ms` resumes its stream: the push to
//! the destination is never torn down and timestamps stay monotonic. A clean
//! unpublish ends the stream at once; an abrupt drop ends it after the grace.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Polls `f` every 50 ms for `period`; panics naming `what` the first time it
/// is false. The opposite of [`wait_until`]: a condition that must *hold*.
#[track_caller]
fn assert_holds(period: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + period;
    loop {
        assert!(f(), "stopped holding: {what}");
        if Instant::now() >= end {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn config(rtmp_port: u16, http_port: u16, grace_ms: u64, targets: &[(&str, &str)]) -> String {
    format!(
        "{}\n[stream]\nreconnect_grace_ms = {grace_ms}\n",
        simple_config(rtmp_port, http_port, targets)
    )
}

fn metrics_at(addr: SocketAddr) -> String {
    match http_get(addr, "/metrics") {
        Ok((200, body)) => body,
        other => panic!("/metrics on {addr}: {other:?}"),
    }
}

#[test]
fn republish_within_grace_keeps_the_target_connection() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let prism = Prism::start(&config(
        free_port(),
        free_port(),
        5000,
        &[("dest", &nginx.rtmp_url("app", "{stream}"))],
    ));
    let url = prism.rtmp_url("live", "rp");
    let reconnects = "prism_target_reconnects_total{stream=\"live/rp\",target=\"dest\"}";
    let up = "prism_target_up{stream=\"live/rp\",target=\"dest\"}";
    let disconnects = "prism_target_disconnects_total{";

    let mut first = Publisher::start(&url, &clip, true);
    // ~2 s of media (the clip is ~105 kB/s) before the drop.
    nginx.wait_bytes_in("rp", 200_000, Duration::from_secs(10));
    let clients = nginx.nclients("rp").expect("nclients");
    assert_eq!(prism.metric_value(up), Some(1.0));

    // Watch nginx and prism from the side for the whole hand-over: the stream
    // must stay published with the same number of clients, target up.
    let stop = AtomicBool::new(false);
    let (nginx_http, prism_http) = (nginx.http_addr(), prism.http_addr.expect("http"));
    let watcher = |stop: &AtomicBool| -> Result<usize, String> {
        let mut samples = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok((200, xml)) = http_get(nginx_http, "/stat") {
                let Some(block) = stat_stream_block(&xml, "rp") else {
                    return Err(format!("stream rp vanished from nginx stat:\n{xml}"));
                };
                if !block.contains("<publishing/>") {
                    return Err(format!("rp stopped publishing on nginx:\n{block}"));
                }
                let n = stat_stream_field(&xml, "rp", "nclients").and_then(|v| v.parse().ok());
                if n != Some(clients) {
                    return Err(format!("nclients went {clients} -> {n:?}"));
                }
                samples += 1;
            }
            let m = metrics_at(prism_http);
            if metric_value_in(&m, up) != Some(1.0) || metric_value_in(&m, reconnects) != Some(0.0)
            {
                return Err(format!("target flapped:\n{m}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(samples)
    };

    let samples = thread::scope(|s| {
        let w = s.spawn(|| watcher(&stop));
        // Stops the watcher however this block ends (a failed assert too).
        let _stop = StopOnDrop(&stop);

        // Abrupt drop: no FCUnpublish/deleteStream, the TCP connection just dies.
        first.kill();
        wait_until(Duration::from_secs(5), "prism to notice the drop", || {
            prism.metric_value("prism_connections_active{transport=\"rtmp\"}") == Some(0.0)
        });
        // The publisher stays away ~1 s; the stream (and its target) must not end.
        assert_holds(Duration::from_secs(1), "stream alive during grace", || {
            prism.metric_value("prism_streams_active") == Some(1.0)
        });
        let before = nginx.bytes_in("rp").expect("rp still on nginx");

        let mut second = Publisher::start(&url, &clip, true);
        // ~2.5 s of media from the new publisher reaches the destination.
        nginx.wait_bytes_in("rp", before + 250_000, Duration::from_secs(10));
        assert!(second.try_wait().is_none(), "{}", second.stderr());
        stop.store(true, Ordering::Relaxed);
        let samples = w.join().expect("watcher thread");
        let m = prism.metrics();
        assert_eq!(metric_value_in(&m, up), Some(1.0), "{m}");
        assert_eq!(metric_value_in(&m, reconnects), Some(0.0), "{m}");
        assert_eq!(metric_sum_in(&m, disconnects), None, "{m}");
        // Clean stop (SIGINT: ffmpeg unpublishes) closes nginx's recording.
        second.stop();
        samples
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(samples >= 10, "watcher only saw {samples} nginx stats");
    // Only the clean stop ended the stream.
    wait_until(Duration::from_secs(10), "nginx to end rp", || {
        !nginx.is_publishing("rp")
    });
    let rec = nginx.recording("rp");
    let p = probe(&rec, Duration::from_secs(30)).expect("probe recording");
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert!(p.audio_ok, "{p:?}");

    let pkts = video_packets(&rec);
    assert!(pkts.len() >= 50, "only {} video packets", pkts.len());
    assert!(pkts[0].1, "recording does not start on a keyframe");
    for w in pkts.windows(2) {
        assert!(
            w[1].0 >= w[0].0,
            "video dts went backwards {} -> {} ms in {}",
            w[0].0,
            w[1].0,
            rec.display()
        );
    }
    // One recording holds both publishers: the hand-over shows as one gap of
    // about the time the publisher was away, with media on both sides.
    let (i, gap) = pkts
        .windows(2)
        .enumerate()
        .map(|(i, w)| (i, w[1].0 - w[0].0))
        .max_by_key(|&(_, d)| d)
        .expect("packets");
    assert!(
        (800..5000).contains(&gap),
        "largest dts step {gap} ms (expected the ~1 s hand-over)"
    );
    assert!(
        i >= 25 && pkts.len() - i >= 25,
        "gap at packet {i} of {}: {pkts:?}",
        pkts.len()
    );
    assert!(
        pkts[i + 1].1,
        "media after the hand-over does not start on a keyframe"
    );
    let frames = decode_ok(rec.to_str().expect("utf-8 path"), Duration::from_secs(30))
        .expect("recording decodes without errors across the hand-over");
    assert_eq!(frames as usize, pkts.len());
    eprintln!(
        "republish: {} video packets, hand-over gap {gap} ms; took {:?}",
        pkts.len(),
        t0.elapsed()
    );
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn clean_stop_ends_the_stream_at_once() {
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let prism = Prism::start(&config(
        free_port(),
        free_port(),
        5000,
        &[("dest", &nginx.rtmp_url("app", "{stream}"))],
    ));
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "cs"), &clip, true);
    let up = "prism_target_up{stream=\"live/cs\",target=\"dest\"}";
    nginx.wait_bytes_in("cs", 0, Duration::from_secs(10));
    assert_eq!(prism.metric_value("prism_streams_active"), Some(1.0));
    assert_eq!(prism.metric_value(up), Some(1.0));

    let t = Instant::now();
    publisher.stop();
    let stopped = t.elapsed();
    // Well before the 5 s grace: unpublish ends the stream and its pushes.
    wait_until(Duration::from_secs(2), "streams_active 0", || {
        prism.metric_value("prism_streams_active") == Some(0.0)
    });
    wait_until(Duration::from_secs(2), "nginx to end cs", || {
        !nginx.is_publishing("cs")
    });
    let ended = t.elapsed();
    wait_until(
        Duration::from_secs(2),
        "target metrics to be dropped once the target finished",
        || prism.metric_value(up).is_none(),
    );
    eprintln!("clean stop: ffmpeg exited after {stopped:?}, stream ended after {ended:?}");
}

#[test]
fn abrupt_drop_ends_the_stream_after_the_grace() {
    let clip = make_clip(5);
    let prism = Prism::start(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
         [stream]\nreconnect_grace_ms = 1500\n",
        free_port(),
        free_port()
    ));
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "ab"), &clip, true);
    wait_until(Duration::from_secs(10), "publisher ingesting", || {
        prism
            .metric_value("prism_ingest_bytes_total{stream=\"live/ab\"}")
            .is_some_and(|b| b > 0.0)
    });
    assert_eq!(prism.metric_value("prism_streams_active"), Some(1.0));

    // The grace starts when prism sees the drop, which is after `killed`:
    // measuring from here, the stream cannot legitimately end before 1.5 s.
    let killed = Instant::now();
    publisher.kill();
    wait_until(Duration::from_secs(5), "prism to notice the drop", || {
        prism.metric_value("prism_connections_active{transport=\"rtmp\"}") == Some(0.0)
    });
    let noticed = killed.elapsed();
    assert_holds(
        Duration::from_millis(1000).saturating_sub(killed.elapsed()),
        "stream alive in grace",
        || prism.metric_value("prism_streams_active") == Some(1.0),
    );
    wait_until(Duration::from_secs(4), "stream to end after grace", || {
        prism.metric_value("prism_streams_active") == Some(0.0)
    });
    let after = killed.elapsed();
    assert!(
        after >= Duration::from_millis(1500),
        "stream ended {after:?} after the kill, before the 1.5 s grace"
    );
    eprintln!("abrupt drop: prism saw it after {noticed:?}, stream ended {after:?} after the kill");
}
