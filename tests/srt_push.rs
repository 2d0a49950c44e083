//! `srt://` push targets: RTMP in → SRT out to an ffmpeg SRT listener, whose file decodes.

mod common;

use common::srt::*;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn rtmp_in_srt_out_to_ffmpeg_listener() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let dir = TempDir::new("srt-push");
    let out = dir.join("out.ts");
    let port = free_udp_port();
    // ffmpeg as the SRT destination: listener mode, copies what arrives into a file.
    let mut dest = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-v", "warning", "-y", "-i"])
        .arg(format!(
            "srt://127.0.0.1:{port}?mode=listener&latency=120000"
        ))
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("dest.stderr")).unwrap())
        .spawn()
        .expect("spawn ffmpeg SRT listener");
    let target = format!(
        "srt://127.0.0.1:{port}?streamid={}&latency=120",
        percent_encode("#!::r=live/{stream},m=publish")
    );
    let prism = Prism::start(&srt_config(free_udp_port(), "", &[("srtdest", &target)]));
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "pushed"), &clip, false);
    wait_until(Duration::from_secs(10), "the SRT target to come up", || {
        prism.metric_value("prism_target_up{stream=\"live/pushed\",target=\"srtdest\"}")
            == Some(1.0)
    });
    assert!(
        publisher.wait_exit(Duration::from_secs(15)).is_some(),
        "publisher did not finish"
    );
    // The stream ended: Prism closes the SRT connection, and ffmpeg finishes its file.
    let status = wait_child(&mut dest, Duration::from_secs(10));
    if status.is_none() {
        let _ = dest.kill();
        let _ = dest.wait();
    }
    let p = probe(&out, Duration::from_secs(20)).unwrap_or_else(|e| {
        panic!(
            "{e}\n--- dest ---\n{}\n--- prism ---\n{}",
            tail_file(&dir.join("dest.stderr"), 50),
            prism.stderr()
        )
    });
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert!(p.video_frames_decoded >= 75 && p.audio_ok, "{p:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
}
