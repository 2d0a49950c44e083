//! Push targets reconnect by themselves: a destination that dies and comes
//! back on the same port gets the stream again (starting on a keyframe with
//! sequence headers), and a destination that refuses connections does not
//! disturb the others.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// `prism_target_disconnects_total` of one stream's target, summed over reasons.
fn disconnects_in(metrics: &str, stream: &str, target: &str) -> f64 {
    let labels = format!("stream=\"{stream}\",target=\"{target}\"}}");
    metrics
        .lines()
        .filter(|l| l.starts_with("prism_target_disconnects_total{") && l.contains(&labels))
        .filter_map(|l| metric_value_in(l, "prism_target_disconnects_total"))
        .sum()
}

fn prism_config(rtmp_port: u16, http_port: u16, targets: &[(&str, &str)]) -> String {
    simple_config(rtmp_port, http_port, targets)
}

#[test]
fn target_reconnects_after_destination_restart() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let mut nginx = Nginx::start();
    let dest_url = nginx.rtmp_url("app", "{stream}");
    let prism = Prism::start(&prism_config(
        free_port(),
        free_port(),
        &[("dest", &dest_url)],
    ));
    let up = "prism_target_up{stream=\"live/rc\",target=\"dest\"}";
    let reconnects = "prism_target_reconnects_total{stream=\"live/rc\",target=\"dest\"}";
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "rc"), &clip, true);

    nginx.wait_bytes_in("rc", 0, Duration::from_secs(10));
    wait_until(Duration::from_secs(5), "target_up 1", || {
        prism.metric_value(up) == Some(1.0)
    });
    assert_eq!(prism.metric_value(reconnects), Some(0.0));

    // The destination dies abruptly.
    let port = nginx.rtmp_port;
    nginx.kill();
    wait_until(
        Duration::from_secs(5),
        "target_up 0 after nginx died",
        || prism.metric_value(up) == Some(0.0),
    );
    let down_at = Instant::now();

    // ... and comes back on the same port; prism finds it without help.
    let nginx2 = Nginx::start_on(port);
    nginx2.wait_bytes_in("rc", 0, Duration::from_secs(15));
    wait_until(Duration::from_secs(5), "target_up back to 1", || {
        prism.metric_value(up) == Some(1.0)
    });
    eprintln!("target back up {:?} after it went down", down_at.elapsed());
    let n = prism.metric_value(reconnects).expect("reconnects metric");
    assert!(n >= 1.0, "reconnects_total = {n}");
    // Counted as `closed` (EOF) or `io` (reset on write), depending on timing.
    let m = prism.metrics();
    let disconnects = disconnects_in(&m, "live/rc", "dest");
    assert!(disconnects >= 1.0, "{m}");
    // About 2 s more of media (the clip is ~105 kB/s).
    let b = nginx2.bytes_in("rc").unwrap_or(0);
    nginx2.wait_bytes_in("rc", b + 200_000, Duration::from_secs(10));
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());

    // Close the new recording cleanly and check it stands on its own.
    publisher.stop();
    wait_until(Duration::from_secs(10), "nginx2 to end stream rc", || {
        !nginx2.is_publishing("rc")
    });
    let rec = nginx2.recording("rc");
    let p = probe(&rec, Duration::from_secs(30)).expect("probe new recording");
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert!(p.audio_ok, "{p:?}");
    let pkts = video_packets(&rec);
    assert!(
        pkts.first().is_some_and(|&(_, key)| key),
        "new recording does not start on a keyframe: {:?}",
        &pkts[..pkts.len().min(5)]
    );
    let frames = decode_ok(rec.to_str().expect("utf-8 path"), Duration::from_secs(30))
        .expect("new recording decodes without errors");
    assert!(frames >= 40, "only {frames} frames in the new recording");
    eprintln!("reconnect test took {:?}", t0.elapsed());
}

#[test]
fn refused_target_does_not_disturb_working_one() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let good_url = nginx.rtmp_url("app", "{stream}");
    // Nothing listens there (a port that was free a moment ago).
    let dead_url = format!("rtmp://127.0.0.1:{}/app/{{stream}}", free_port());
    let prism = Prism::start(&prism_config(
        free_port(),
        free_port(),
        &[("dead", &dead_url), ("good", &good_url)],
    ));
    let metric =
        |name: &str, target: &str| format!("{name}{{stream=\"live/ind\",target=\"{target}\"}}");
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "ind"), &clip, true);

    let first = nginx.wait_bytes_in("ind", 0, Duration::from_secs(10));
    // Let the dead target fail and retry twice (backoff ~1 s, then ~2 s)
    // while the good one keeps going.
    wait_until(
        Duration::from_secs(10),
        "dead target to retry twice",
        || {
            prism
                .metric_value(&metric("prism_target_reconnects_total", "dead"))
                .is_some_and(|v| v >= 2.0)
        },
    );
    let m = prism.metrics();
    assert_eq!(
        metric_value_in(&m, &metric("prism_target_up", "dead")),
        Some(0.0),
        "{m}"
    );
    assert!(
        metric_value_in(
            &m,
            "prism_target_disconnects_total{reason=\"connect\",stream=\"live/ind\",target=\"dead\"}"
        )
        .is_some_and(|v| v >= 2.0),
        "{m}"
    );
    assert_eq!(
        metric_value_in(&m, &metric("prism_target_up", "good")),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value_in(&m, &metric("prism_target_reconnects_total", "good")),
        Some(0.0),
        "{m}"
    );
    assert!(
        metric_value_in(&m, &metric("prism_target_bytes_sent_total", "good"))
            .is_some_and(|v| v > 0.0),
        "{m}"
    );
    assert_eq!(disconnects_in(&m, "live/ind", "good"), 0.0, "{m}");
    let now = nginx.bytes_in("ind").expect("good target still publishing");
    assert!(
        now > first + 50_000,
        "good target stalled: {first} -> {now}"
    );
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());

    publisher.stop();
    wait_until(Duration::from_secs(10), "nginx to end stream ind", || {
        !nginx.is_publishing("ind")
    });
    let frames = decode_ok(
        nginx.recording("ind").to_str().expect("utf-8 path"),
        Duration::from_secs(30),
    )
    .expect("good target's recording decodes");
    assert!(frames >= 50, "only {frames} frames recorded");
    eprintln!("independence test took {:?}", t0.elapsed());
}
