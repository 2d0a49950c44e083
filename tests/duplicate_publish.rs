//! A second publisher on a key that is already live is refused
//! (NetStream.Publish.BadName), counted as `already_live`, and the first
//! stream is not disturbed: players still decode it and ingest keeps rising.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn second_publisher_on_live_key_is_rejected_and_first_keeps_flowing() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let (rtmp_port, http_port) = (free_port(), free_port());
    let prism = Prism::start(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp_port}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n"
    ));
    let url = prism.rtmp_url("live", "dup");
    let ingest = "prism_ingest_bytes_total{stream=\"live/dup\"}";
    let rejected = "prism_publish_rejected_total{reason=\"already_live\"}";

    let mut first = Publisher::start(&url, &clip, true);
    wait_until(Duration::from_secs(10), "first publisher ingesting", || {
        prism.metric_value(ingest).is_some_and(|b| b > 0.0)
    });
    assert_eq!(prism.metric_value(rejected), None, "nothing rejected yet");

    // The intruder: same key while the first is live.
    let mut second = Publisher::start(&url, &clip, false);
    let status = second
        .wait_exit(Duration::from_secs(15))
        .expect("second publisher should give up on its own, not hang");
    let err = second.stderr();
    assert!(
        !status.success(),
        "second publisher exited {status} (expected failure); stderr:\n{err}"
    );
    eprintln!("second publisher ({status}) said:\n{err}");
    let lower = err.to_ascii_lowercase();
    assert!(
        lower.contains("already publishing") || lower.contains("badname"),
        "second publisher's stderr does not mention the rejection:\n{err}"
    );
    assert_eq!(
        prism.metric_value(rejected),
        Some(1.0),
        "{}",
        prism.metrics()
    );

    // The first publisher is untouched.
    assert!(
        first.try_wait().is_none(),
        "first publisher exited after the rejection:\n{}",
        first.stderr()
    );
    assert_eq!(prism.metric_value("prism_streams_active"), Some(1.0));
    let before = prism.metric_value(ingest).expect("ingest metric");
    wait_until(
        Duration::from_secs(5),
        "ingest bytes to keep rising after the rejection",
        || prism.metric_value(ingest).is_some_and(|b| b > before),
    );
    let frames = decode_ok(&url, Duration::from_secs(20)).expect("player decodes first stream");
    assert!(frames >= 25, "only {frames} frames decoded in 3 s of play");
    assert!(first.try_wait().is_none(), "{}", first.stderr());
    // Still exactly one rejection (the player was not counted as one).
    assert_eq!(prism.metric_value(rejected), Some(1.0));

    first.stop();
    eprintln!("duplicate publish test took {:?}", t0.elapsed());
}
