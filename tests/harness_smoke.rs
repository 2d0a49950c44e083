//! Proves the e2e harness works with real peers, without prism: ffmpeg
//! publishes to nginx-rtmp, nginx's stat sees it, a player decodes it back,
//! and nginx's recording of it probes as H.264 + AAC.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn ffmpeg_to_nginx_rtmp_roundtrip() {
    let clip = make_clip(5);
    let clip_probe = probe(&clip, Duration::from_secs(30)).expect("probe clip");
    assert_eq!(
        clip_probe.video_codec.as_deref(),
        Some("h264"),
        "{clip_probe:?}"
    );
    assert_eq!(
        clip_probe.audio_codec.as_deref(),
        Some("aac"),
        "{clip_probe:?}"
    );
    assert_eq!(
        (clip_probe.width, clip_probe.height),
        (Some(320), Some(240))
    );
    assert_eq!(clip_probe.video_frames_decoded, 125, "{clip_probe:?}");
    assert!(clip_probe.audio_ok, "{clip_probe:?}");

    let nginx = Nginx::start();
    let url = nginx.rtmp_url("app", "smoke");
    let mut publisher = Publisher::start(&url, &clip, true);

    nginx.wait_bytes_in("smoke", 0, Duration::from_secs(10));
    assert!(nginx.is_publishing("smoke"), "{}", nginx.stat_xml());

    // Play it back from nginx: 3 s of live video must decode cleanly.
    let frames = decode_ok(&url, Duration::from_secs(20)).expect("play from nginx");
    assert!(frames >= 25, "only {frames} frames decoded in 3 s of play");

    // Stop publishing; nginx closes the recording when the publisher leaves.
    publisher.stop();
    wait_until(
        Duration::from_secs(10),
        "nginx to drop stream smoke",
        || !nginx.is_publishing("smoke"),
    );
    let rec = nginx.recording("smoke");
    let p = probe(&rec, Duration::from_secs(30)).expect("probe recording");
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert!(p.video_frames_decoded >= 25, "{p:?}");
    assert!(p.audio_ok, "{p:?}");
    let n = decode_ok(rec.to_str().unwrap(), Duration::from_secs(30)).expect("decode recording");
    assert_eq!(n, p.video_frames_decoded);
}

#[test]
fn nginx_restarts_on_same_port() {
    let mut a = Nginx::start();
    let port = a.rtmp_port;
    a.kill();
    assert!(!port_open(a.rtmp_addr()));
    let b = Nginx::start_on(port);
    assert_eq!(b.rtmp_port, port);
    assert!(port_open(b.rtmp_addr()));
    assert_eq!(b.bytes_in("nothing"), None);
}

#[test]
fn metrics_and_config_helpers() {
    let text = "# HELP x y\n# TYPE prism_up gauge\nprism_up 1\nprism_up_total 7\n\
                prism_target_up{route=\"r\",target=\"a\"} 1\n\
                prism_target_up{route=\"r\",target=\"b\"} 0\n\
                prism_bytes_total{dir=\"in\"} 1.5e3\n";
    assert_eq!(metric_value_in(text, "prism_up"), Some(1.0));
    assert_eq!(metric_value_in(text, "prism_up_total"), Some(7.0));
    assert_eq!(
        metric_value_in(text, "prism_target_up{route=\"r\",target=\"b\""),
        Some(0.0)
    );
    assert_eq!(metric_sum_in(text, "prism_target_up"), Some(1.0));
    assert_eq!(metric_value_in(text, "prism_bytes_total{"), Some(1500.0));
    assert_eq!(metric_value_in(text, "prism_missing"), None);

    let cfg = simple_config(1935, 9935, &[("a", "rtmp://127.0.0.1:1/app/{stream}")]);
    assert_eq!(
        toml_string(&cfg, "rtmp", "listen").as_deref(),
        Some("127.0.0.1:1935")
    );
    assert_eq!(
        toml_string(&cfg, "http", "listen").as_deref(),
        Some("127.0.0.1:9935")
    );
    assert_eq!(
        toml_string(&cfg, "route.target", "name").as_deref(),
        Some("a")
    );
    assert_ne!(free_port(), 0);
    assert_ne!(free_udp_port(), 0);
}

/// The prism binary can be located (and built if missing).
#[test]
fn prism_binary_is_available() {
    let bin = prism_bin();
    assert!(bin.is_file(), "{}", bin.display());
}
