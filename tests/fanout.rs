//! Fan-out: one stream published to Prism is pushed to three nginx-rtmp
//! destinations at once; each receives and records a playable H.264 + AAC
//! copy, /metrics shows every target up and sending while live, and when the
//! publisher stops cleanly every push is torn down.

mod common;

use common::*;
use std::time::Duration;

const KEY: &str = "fan";
const STREAM: &str = "live/fan";
const TARGETS: [&str; 3] = ["a", "b", "c"];

fn target_metric(prism: &Prism, metric: &str, target: &str) -> Option<f64> {
    prism.metric_value(&format!(
        "{metric}{{stream=\"{STREAM}\",target=\"{target}\"}}"
    ))
}

#[test]
fn one_stream_reaches_three_destinations() {
    let clip = make_clip(5);
    let nginxes: Vec<Nginx> = TARGETS.iter().map(|_| Nginx::start()).collect();
    let urls: Vec<String> = nginxes
        .iter()
        .map(|n| n.rtmp_url("app", "{stream}"))
        .collect();
    let targets: Vec<(&str, &str)> = TARGETS
        .iter()
        .zip(&urls)
        .map(|(name, url)| (*name, url.as_str()))
        .collect();
    let prism = Prism::start(&simple_config(free_port(), free_port(), &targets));
    let mut publisher = Publisher::start(&prism.rtmp_url("live", KEY), &clip, true);

    // Live: every target is up and every destination is receiving.
    for (name, nginx) in TARGETS.iter().zip(&nginxes) {
        wait_until(
            Duration::from_secs(10),
            &format!("prism_target_up{{target={name:?}}} = 1"),
            || target_metric(&prism, "prism_target_up", name) == Some(1.0),
        );
        nginx.wait_bytes_in(KEY, 0, Duration::from_secs(10));
        assert!(nginx.is_publishing(KEY), "{name}: {}", nginx.stat_xml());
    }
    // A few seconds of media (the clip is ~100 KB/s) on every destination.
    for (name, nginx) in TARGETS.iter().zip(&nginxes) {
        let got = nginx.wait_bytes_in(KEY, 300_000, Duration::from_secs(15));
        let sent = target_metric(&prism, "prism_target_bytes_sent_total", name).unwrap_or(0.0);
        assert!(sent > 0.0, "{name}: bytes_sent_total = {sent}");
        assert!(
            sent >= got as f64 * 0.9,
            "{name}: prism says it sent {sent} bytes but nginx already got {got}"
        );
        assert_eq!(
            target_metric(&prism, "prism_target_up", name),
            Some(1.0),
            "{name} went down while live\n{}",
            prism.metrics()
        );
    }
    assert_eq!(prism.metric_value("prism_streams_active"), Some(1.0));

    // The publisher unpublishes: Prism ends the stream and unpublishes from
    // every destination, which closes their recordings.
    publisher.stop();
    for (name, nginx) in TARGETS.iter().zip(&nginxes) {
        wait_until(
            Duration::from_secs(10),
            &format!("destination {name} to lose its publisher"),
            || !nginx.is_publishing(KEY),
        );
        wait_until(
            Duration::from_secs(10),
            &format!("prism_target_up{{target={name:?}}} gone or 0"),
            || target_metric(&prism, "prism_target_up", name).is_none_or(|v| v == 0.0),
        );
    }
    wait_until(Duration::from_secs(10), "prism_streams_active = 0", || {
        prism.metric_value("prism_streams_active") == Some(0.0)
    });

    // Every recording is a complete, decodable H.264 + AAC copy.
    for (name, nginx) in TARGETS.iter().zip(&nginxes) {
        let rec = nginx.recording(KEY);
        let p = probe(&rec, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{name}: probe recording: {e}"));
        assert_eq!(p.video_codec.as_deref(), Some("h264"), "{name}: {p:?}");
        assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{name}: {p:?}");
        assert_eq!((p.width, p.height), (Some(320), Some(240)), "{name}: {p:?}");
        assert!(p.video_frames_decoded >= 50, "{name}: {p:?}");
        assert!(p.audio_ok, "{name}: {p:?}");
        let n = decode_ok(rec.to_str().expect("utf-8 path"), Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(n, p.video_frames_decoded, "{name}");
    }
}
