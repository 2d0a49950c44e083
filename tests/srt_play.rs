//! SRT play: a caller with `m=request` (or MediaMTX's `read:`) gets the stream as MPEG-TS,
//! whether it was published over RTMP or SRT.

mod common;

use common::srt::*;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn ffmpeg_plays_rtmp_and_srt_streams_over_srt() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let srt_port = free_udp_port();
    let prism = Prism::start(&srt_config(srt_port, "", &[]));
    let _rtmp = Publisher::start(&prism.rtmp_url("live", "fromrtmp"), &clip, true);
    let _srt = SrtPublisher::start(&srt_url(srt_port, "publish:live/fromsrt", ""), &clip, true);
    wait_until(Duration::from_secs(10), "both streams live", || {
        prism.metric_value("prism_streams_active") == Some(2.0)
    });
    let frames = decode_ok(
        &srt_url(srt_port, "#!::r=live/fromrtmp,m=request", ""),
        Duration::from_secs(15),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", prism.stderr()));
    assert!(frames >= 25, "decoded only {frames} frames");
    let p = probe(
        srt_url(srt_port, "read:live/fromsrt", ""),
        Duration::from_secs(15),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", prism.stderr()));
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert!(p.video_frames_decoded > 0 && p.audio_ok, "{p:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
}
