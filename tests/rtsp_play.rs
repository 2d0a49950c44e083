//! RTSP play: ffmpeg publishes H.264 + AAC over RTMP; ffmpeg and ffprobe play it from
//! Prism's RTSP server over TCP (interleaved) and UDP, and over TLS (`[rtsps]`), with the
//! route's play tokens; bad RTSP input ends only its own session, counted; a stalled TCP
//! player is shed.

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

/// `[rtsps]` with a certificate of a test CA.
fn tls_config(rtsp_port: u16, rtsps_port: u16, leaf: &common::pki::Leaf) -> String {
    format!(
        "{}\n[rtsps]\nlisten = \"127.0.0.1:{rtsps_port}\"\ncert = {:?}\nkey = {:?}\n",
        config(rtsp_port),
        leaf.cert,
        leaf.key
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
    let (rtsp_port, rtsps_port) = (free_port(), free_port());
    let pki = common::pki::Pki::new();
    let prism = Prism::start(&tls_config(rtsp_port, rtsps_port, &pki.leaf("server")));
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

    // RTSP over TLS (interleaved: ffmpeg's rtsps is TCP only).
    let tls_url = format!("rtsps://127.0.0.1:{rtsps_port}/live/cam");
    let p = probe_rtsp(&tls_url, "tcp").unwrap_or_else(|e| panic!("{e}\n{}", prism.stderr()));
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "rtsps: {p:?}");
    assert!(
        p.video_frames_decoded >= 25 && p.audio_frames_decoded >= 25,
        "rtsps: {p:?}"
    );
    assert!(
        prism
            .metric_value("prism_connections_total{transport=\"rtsps\"}")
            .unwrap_or(0.0)
            >= 1.0
    );

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
    // Seeded random bytes, and valid requests with random bytes flipped.
    let mut x: u32 = 0x9e37_79b9;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for i in 0..40 {
        let mut v: Vec<u8> = if i % 2 == 0 {
            (0..(next() % 3000)).map(|_| next() as u8).collect()
        } else {
            format!(
                "SETUP rtsp://127.0.0.1:{rtsp_port}/live/cam/trackID=0 RTSP/1.0\r\nCSeq: 2\r\n\
                 Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: x\r\n\r\n"
            )
            .into_bytes()
        };
        for _ in 0..(next() % 8) {
            let n = v.len().max(1);
            if let Some(b) = v.get_mut(next() as usize % n) {
                *b = next() as u8;
            }
        }
        raw_exchange(rtsp_port, &v);
    }
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

/// Reads one RTSP response (headers and body) off `s`.
fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).unwrap(),
            1,
            "connection closed mid-response"
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

/// A TCP player that sets up and plays, then never reads again, is shed by its queue
/// budget (`too_slow`) like an RTMP player, while an ffmpeg player decodes on.
#[test]
fn stalled_rtsp_tcp_player_is_shed() {
    let clip = make_clip(5);
    let rtsp_port = free_port();
    let prism = Prism::start(&format!(
        "{}\n[player]\nmax_queue_bytes = 200000\nmax_queue_ms = 1000\noverflow_disconnect_ms = 2000\n",
        config(rtsp_port)
    ));
    let _publisher = Publisher::start_with_args(
        &prism.rtmp_url("live", "slow"),
        &clip,
        true,
        &HIGH_BITRATE_VIDEO,
    );
    wait_until(Duration::from_secs(15), "stream live", || {
        prism.metric_value("prism_streams_active") == Some(1.0)
    });
    let url = format!("rtsp://127.0.0.1:{rtsp_port}/live/slow");
    let mut s = TcpStream::connect(("127.0.0.1", rtsp_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n").unwrap();
    let sdp = read_response(&mut s);
    assert!(
        sdp.starts_with("RTSP/1.0 200") && sdp.contains("H264/90000"),
        "{sdp}"
    );
    write!(
        s,
        "SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
    )
    .unwrap();
    let setup = read_response(&mut s);
    let session = setup
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("{setup}"))
        .to_owned();
    write!(
        s,
        "PLAY {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n"
    )
    .unwrap();
    assert!(read_response(&mut s).starts_with("RTSP/1.0 200"));
    // Now it stalls, holding the socket open.
    let shed = |p: &Prism| {
        p.metric_value("prism_connection_errors_total{reason=\"too_slow\",transport=\"rtsp\"}")
            .unwrap_or(0.0)
    };
    let frames = decode_rtsp(&url, "tcp").unwrap_or_else(|e| panic!("{e}\n{}", prism.stderr()));
    assert!(frames >= 25, "{frames}");
    wait_until(Duration::from_secs(30), "stalled RTSP player shed", || {
        shed(&prism) >= 1.0
    });
    assert_eq!(
        prism.metric_value("prism_players_active{stream=\"live/slow\"}"),
        Some(0.0)
    );
    drop(s);
}
