//! RTSP play: ffmpeg publishes H.264 + AAC over RTMP; ffmpeg and ffprobe play it from
//! Prism's RTSP server over TCP (interleaved) and UDP, with the route's play tokens; bad
//! RTSP input ends only its own session, counted.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "play-token-4321";

fn config(rtsp_port: u16) -> String {
    format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\n\n\
         [rtsp]\nlisten = \"127.0.0.1:{rtsp_port}\"\nsession_timeout_ms = 5000\n\n\
         [[route]]\nstream = \"secure/*\"\nplay_tokens = [\"{TOKEN}\"]\n",
        free_port(),
        free_port()
    )
}

/// ffprobe over RTSP with the given lower transport, reading 4 s.
fn probe_rtsp(url: &str, transport: &str) -> Result<ProbeResult, String> {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-rtsp_transport", transport, "-count_frames"]);
    cmd.args([
        "-show_entries",
        "stream=index,codec_type,codec_name,width,height,nb_read_frames",
        "-of",
        "flat",
        "-read_intervals",
        "%+4",
        url,
    ]);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(30))?;
    if !out.status.success() {
        return Err(format!(
            "ffprobe {url} ({transport}) failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(parse_ffprobe_flat(&String::from_utf8_lossy(&out.stdout)))
}

/// Decodes 3 s with ffmpeg; Err with ffmpeg's errors if any.
fn decode_rtsp(url: &str, transport: &str) -> Result<u64, String> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-nostats", "-v", "error"]);
    cmd.args(["-rtsp_transport", transport, "-i", url, "-t", "3"]);
    cmd.args(["-progress", "pipe:1", "-f", "null", "-"]);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(30))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or(0);
    if !out.status.success() || !stderr.trim().is_empty() || frames == 0 {
        return Err(format!("ffmpeg {transport}: frames={frames} {stderr}"));
    }
    Ok(frames)
}

/// Sends `bytes` on a fresh connection and reads what comes back until the server closes
/// (or 5 s).
fn raw_exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn ffmpeg_plays_over_rtsp_tcp_and_udp() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let rtsp_port = free_port();
    let prism = Prism::start(&config(rtsp_port));
    let _open = Publisher::start(&prism.rtmp_url("live", "cam"), &clip, true);
    let _secure = Publisher::start(
        &prism.rtmp_url("secure", &format!("cam?token={TOKEN}")),
        &clip,
        true,
    );
    wait_until(Duration::from_secs(10), "both streams live", || {
        prism.metric_value("prism_streams_active") == Some(2.0)
    });
    let url = format!("rtsp://127.0.0.1:{rtsp_port}/live/cam");
    for transport in ["tcp", "udp"] {
        let p = probe_rtsp(&url, transport).unwrap_or_else(|e| panic!("{e}\n{}", prism.stderr()));
        assert_eq!(p.video_codec.as_deref(), Some("h264"), "{transport}: {p:?}");
        assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{transport}: {p:?}");
        assert!(p.video_frames_decoded >= 25, "{transport}: {p:?}");
        assert!(p.audio_frames_decoded >= 25, "{transport}: {p:?}");
        let frames =
            decode_rtsp(&url, transport).unwrap_or_else(|e| panic!("{e}\n{}", prism.stderr()));
        assert!(frames >= 25, "{transport}: {frames} frames");
    }

    // Play tokens: refused without, played with.
    let secure = format!("rtsp://127.0.0.1:{rtsp_port}/secure/cam");
    let e = probe_rtsp(&secure, "tcp").unwrap_err();
    assert!(e.contains("401"), "{e}");
    let p = probe_rtsp(&format!("{secure}?token={TOKEN}"), "tcp")
        .unwrap_or_else(|e| panic!("{e}\n{}", prism.stderr()));
    assert!(p.video_frames_decoded > 0 && p.audio_ok, "{p:?}");
    // A stream that is not live: 404 at once.
    let e = probe_rtsp(&format!("rtsp://127.0.0.1:{rtsp_port}/live/nope"), "tcp").unwrap_err();
    assert!(e.contains("404"), "{e}");

    // Bad input: each session is closed and counted; the server goes on.
    let errors = |reason: &str| {
        prism
            .metric_value(&format!(
                "prism_connection_errors_total{{reason=\"{reason}\",transport=\"rtsp\"}}"
            ))
            .unwrap_or(0.0)
    };
    raw_exchange(
        rtsp_port,
        b"\x16\x03\x01\x02\x00garbage that is not RTSP\r\n\r\n",
    );
    raw_exchange(rtsp_port, &[b'A'; 20_000]);
    raw_exchange(
        rtsp_port,
        b"DESCRIBE rtsp://h/live/cam RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 999999999\r\n\r\n",
    );
    let reply = raw_exchange(
        rtsp_port,
        b"OPTIONS * RTSP/1.0\r\nCSeq: 7\r\n\r\n$\x00\x00\x04abcd$\x01\xff\xffbogus length",
    );
    assert!(
        String::from_utf8_lossy(&reply).starts_with("RTSP/1.0 200 OK\r\nCSeq: 7\r\n"),
        "{reply:?}"
    );
    wait_until(Duration::from_secs(5), "bad input counted", || {
        errors("protocol") >= 1.0
            && errors("header_too_large") >= 1.0
            && errors("body_too_large") >= 1.0
    });
    // Still serving.
    let frames = decode_rtsp(&url, "tcp").unwrap_or_else(|e| panic!("{e}\n{}", prism.stderr()));
    assert!(frames >= 25);
    assert_eq!(prism.metric_value("prism_streams_active"), Some(2.0));
    eprintln!("rtsp play test took {:?}", t0.elapsed());
}
