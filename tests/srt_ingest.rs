//! SRT ingest: ffmpeg (libsrt) publishes H.264 + AAC MPEG-TS over SRT with each stream-id
//! dialect; the stream reaches an nginx-rtmp destination and the recording decodes.

mod common;

use common::srt::*;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn every_stream_id_form_reaches_rtmp_destination() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let srt_port = free_udp_port();
    let prism = Prism::start(&srt_config(
        srt_port,
        "default_stream = \"live/fallback\"",
        &[("nginx", &nginx.rtmp_url("app", "{stream}"))],
    ));
    let forms = [
        ("#!::r=live/acform,m=publish", "acform"),
        (
            "#!::h=srt.example.com,r=live/srsvhost,m=publish,u=alice",
            "srsvhost",
        ),
        ("#!::h=live/srshost,m=publish", "srshost"),
        ("publish:live/mediamtx", "mediamtx"),
        ("live/plain", "plain"),
        ("", "fallback"),
    ];
    let mut pubs: Vec<_> = forms
        .iter()
        .map(|(sid, _)| SrtPublisher::start(&srt_url(srt_port, sid, ""), &clip, false))
        .collect();
    for (_, key) in &forms {
        nginx.wait_bytes_in(key, 100_000, Duration::from_secs(15));
    }
    // The 5 s clip ends by itself: ffmpeg closes the SRT connection properly.
    for p in &mut pubs {
        assert!(
            p.wait_exit(Duration::from_secs(15))
                .is_some_and(|s| s.success()),
            "publisher did not finish: {}",
            p.stderr()
        );
    }
    // Clean close = unpublish: every stream ends now, no reconnect grace.
    wait_until(Duration::from_secs(5), "streams to end", || {
        prism.metric_value("prism_streams_active") == Some(0.0)
    });
    for (_, key) in &forms {
        let rec = nginx.recording(key);
        wait_until(
            Duration::from_secs(5),
            "nginx to close the recording",
            || !nginx.is_publishing(key),
        );
        assert_recording(&rec, 3.0, 7.0);
    }
    let m = prism.metrics();
    assert!(
        metric_value_in(&m, "prism_connections_total{transport=\"srt\"}") >= Some(6.0),
        "{m}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
}
