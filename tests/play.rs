//! Players: ffmpeg publishes an H.264 + AAC clip to Prism; players that
//! connect to Prism's RTMP URL decode video and audio cleanly from their
//! first frame (Prism starts them on a keyframe), a player that joins later
//! does too, and /metrics counts the players and the ingested frames.

mod common;

use common::*;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

const STREAM: &str = "live/play";

/// Prism with no routes: it only serves players.
fn players_only_config(rtmp_port: u16, http_port: u16) -> String {
    format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp_port}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n"
    )
}

fn players(prism: &Prism) -> f64 {
    prism
        .metric_value(&format!("prism_players_active{{stream=\"{STREAM}\"}}"))
        .unwrap_or(0.0)
}

/// `flags` of the first video packet a player receives from `url` (ffprobe
/// stops after it). "K" in it means the player started on a keyframe.
fn first_video_packet_flags(url: &str) -> String {
    let out = run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#1",
            "-show_entries",
            "packet=flags",
            "-of",
            "csv=p=0",
            url,
        ]),
        Duration::from_secs(15),
    )
    .unwrap_or_else(|e| panic!("ffprobe first packet: {e}"));
    assert!(
        out.status.success(),
        "ffprobe {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn players_decode_from_the_first_frame() {
    let clip = make_clip(5);
    let prism = Prism::start(&players_only_config(free_port(), free_port()));
    let url = prism.rtmp_url("live", "play");
    let mut publisher = Publisher::start(&url, &clip, true);

    wait_until(
        Duration::from_secs(10),
        "prism to ingest video and audio frames",
        || prism.ingest_frames(STREAM, "video") > 0.0 && prism.ingest_frames(STREAM, "audio") > 0.0,
    );
    let (video_before, audio_before) = (
        prism.ingest_frames(STREAM, "video"),
        prism.ingest_frames(STREAM, "audio"),
    );
    assert_eq!(players(&prism), 0.0, "no player yet");

    // First player: 3 s of live media, decoded with no error line at all
    // (joining mid-GOP without a keyframe would log h264 decode errors).
    let first = {
        let url = url.clone();
        thread::spawn(move || decode_ok(&url, Duration::from_secs(20)))
    };
    wait_until(Duration::from_secs(10), "players_active = 1", || {
        players(&prism) == 1.0
    });

    // A second player joins while the first is watching: it also starts on
    // a keyframe at once, and decodes H.264 + AAC.
    let flags = first_video_packet_flags(&url);
    assert!(
        flags.contains('K'),
        "late joiner's first video packet is not a keyframe (flags {flags:?})"
    );
    let second = {
        let url = url.clone();
        thread::spawn(move || {
            let started = Instant::now();
            let p = probe(&url, Duration::from_secs(20));
            (p, started.elapsed())
        })
    };
    wait_until(Duration::from_secs(10), "players_active = 2", || {
        players(&prism) == 2.0
    });

    let frames = first
        .join()
        .expect("first player thread")
        .expect("first player decodes cleanly");
    assert!(
        frames >= 50,
        "first player decoded only {frames} frames in 3 s"
    );

    let (p, took) = second.join().expect("second player thread");
    let p = p.expect("second player probes");
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert_eq!((p.width, p.height), (Some(320), Some(240)), "{p:?}");
    // 5 s of media at 25 fps were read; a player that waited for the next
    // keyframe or stalled would get far fewer.
    assert!(p.video_frames_decoded >= 100, "{p:?}");
    assert!(p.audio_ok && p.audio_frames_decoded >= 100, "{p:?}");
    assert!(took < Duration::from_secs(12), "5 s of play took {took:?}");

    // A third, clean decode from a fresh join: no decode error at all.
    let n = decode_ok(&url, Duration::from_secs(20)).expect("late joiner decodes cleanly");
    assert!(n >= 50, "late joiner decoded only {n} frames in 3 s");

    // Players leave: the gauge goes back to 0; the ingest counters kept moving.
    wait_until(Duration::from_secs(10), "players_active back to 0", || {
        players(&prism) == 0.0
    });
    let (video_after, audio_after) = (
        prism.ingest_frames(STREAM, "video"),
        prism.ingest_frames(STREAM, "audio"),
    );
    assert!(
        video_after >= video_before + 100.0,
        "video frames ingested: {video_before} -> {video_after}"
    );
    assert!(
        audio_after >= audio_before + 100.0,
        "audio frames ingested: {audio_before} -> {audio_after}"
    );
    assert!(
        publisher.try_wait().is_none(),
        "publisher exited: {}",
        publisher.stderr()
    );
    publisher.stop();
}
