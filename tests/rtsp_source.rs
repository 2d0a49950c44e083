//! An IP camera as a `[[source]]`: Prism pulls a simulated camera (GStreamer's RTSP server,
//! tests/rtsp_camera.py: H.264 + AAC behind Digest auth) and restreams it to an nginx-rtmp
//! destination; the recording decodes, and the camera going away and coming back is
//! survived.

mod common;

use common::rtsp::Camera;
use common::*;
use std::time::Duration;

fn source_up(prism: &Prism) -> Option<f64> {
    prism.metric_value("prism_source_up{stream=\"cams/door\"}")
}

#[test]
fn a_camera_source_is_restreamed_to_a_destination_and_survives_a_camera_restart() {
    let cam_port = free_port();
    let mut camera = Camera::start(cam_port);
    let nginx = Nginx::start();
    let config = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
         [stream]\nreconnect_grace_ms = 5000\n\
         [[source]]\nstream = \"cams/door\"\n\
         url = \"rtsp://admin:hunter22@127.0.0.1:{cam_port}/cam\"\nrtsp_transport = \"udp\"\n\
         [[route]]\nstream = \"cams/*\"\n  [[route.target]]\n  name = \"nginx\"\n  \
         url = \"{}\"\n",
        free_port(),
        free_port(),
        nginx
            .rtmp_url("app", "{stream}")
            .replace("{stream}", "door"),
    );
    let prism = Prism::start(&config);
    wait_until(
        Duration::from_secs(20),
        "the camera source to publish",
        || source_up(&prism) == Some(1.0),
    );
    nginx.wait_bytes_in("door", 200_000, Duration::from_secs(20));

    // A player on Prism decodes both tracks of the pulled camera.
    let p = probe(prism.rtmp_url("cams", "door"), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", prism.stderr()));
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert!(p.video_frames_decoded >= 25, "{p:?}");

    // The camera goes away and comes back on the same address: the source reconnects and
    // the destination gets media again.
    drop(camera);
    wait_until(Duration::from_secs(30), "the source to notice", || {
        source_up(&prism) == Some(0.0)
    });
    let before = nginx.bytes_in("door").unwrap_or(0);
    camera = Camera::start(cam_port);
    wait_until(Duration::from_secs(40), "the source to pull again", || {
        source_up(&prism) == Some(1.0)
    });
    nginx.wait_bytes_in("door", before + 200_000, Duration::from_secs(30));
    assert!(prism.metric_value("prism_source_reconnects_total{stream=\"cams/door\"}") >= Some(1.0));
    drop(camera);

    // What reached the destination decodes; the password never reached a log.
    let frames = decode_ok(
        &nginx.recording("door").to_string_lossy(),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("nginx recording: {e}"));
    assert!(frames >= 50, "the recording decoded {frames} frames");
    assert!(!prism.stderr().contains("hunter22"));
}
