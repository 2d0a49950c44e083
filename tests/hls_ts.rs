//! MPEG-TS HLS segments (`[hls] container`, per route): ffmpeg publishes over RTMP; ffprobe
//! and ffmpeg read `ts.m3u8` live: every segment decodes, starts with a keyframe, carries
//! audio and video and lasts what the playlist says; the TS and fMP4 playlists of a
//! "both" stream list the same segments; GStreamer's HLS demuxer plays a "ts" stream; the
//! CMAF URLs of a TS-only stream answer 404.

mod common;

use common::*;
use prism_hls::check::{check_media, check_ts_media, parse_media, MediaPlaylist};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// 1 s segments (the clip has a keyframe every second), CMAF and TS for `live/*`, TS only
/// for `stb/*`.
fn config(hls_port: u16) -> String {
    format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
         [hls]\nlisten = \"127.0.0.1:{hls_port}\"\nsegment_ms = 1000\npart_ms = 200\n\
         container = \"both\"\n\
         [[route]]\nstream = \"stb/*\"\ncontainer = \"ts\"\n",
        free_port(),
        free_port()
    )
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn get_bytes(addr: SocketAddr, path: &str) -> Vec<u8> {
    match http_get_bytes(addr, path) {
        Ok((200, body)) => body,
        other => panic!("GET {path}: {other:?}"),
    }
}

/// The playlist at `path` once it lists at least `n` segments.
fn playlist_with(addr: SocketAddr, path: &str, n: usize) -> (String, MediaPlaylist) {
    wait_for(
        Duration::from_secs(30),
        &format!("{n} segments in {path}"),
        || {
            let (status, text) = http_get(addr, path).ok()?;
            let p = parse_media(&text).ok().filter(|_| status == 200)?;
            (p.segments.len() >= n).then_some((text, p))
        },
    )
}

/// ffprobe's view of a file: the codec types of its streams, its video frames
/// (key_frame, pts_time), its audio frame count, and what it complained about.
struct Probe {
    streams: Vec<String>,
    video: Vec<(bool, f64)>,
    audio_frames: usize,
    errors: String,
}

fn ffprobe(path: &Path) -> Probe {
    let run = |args: &[&str]| {
        let out = run_with_timeout(
            Command::new("ffprobe")
                .args(["-v", "error"])
                .args(args)
                .arg(path),
            Duration::from_secs(30),
        )
        .expect("ffprobe");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (streams, e1) = run(&["-show_entries", "stream=codec_type", "-of", "csv=p=0"]);
    let (video, e2) = run(&[
        "-select_streams",
        "v:0",
        "-show_frames",
        "-show_entries",
        "frame=key_frame,pts_time",
        "-of",
        "csv=p=0",
    ]);
    let (audio, e3) = run(&[
        "-select_streams",
        "a:0",
        "-show_frames",
        "-show_entries",
        "frame=pts_time",
        "-of",
        "csv=p=0",
    ]);
    Probe {
        streams: streams.lines().map(|l| l.trim().to_string()).collect(),
        video: video
            .lines()
            .filter_map(|l| {
                let mut it = l.split(',');
                let key = it.next()? == "1";
                Some((key, it.next()?.parse().ok()?))
            })
            .collect(),
        audio_frames: audio.lines().filter(|l| !l.trim().is_empty()).count(),
        errors: format!("{e1}{e2}{e3}"),
    }
}

/// The segments of the TS playlist of `stream` since its last discontinuity (an SRT
/// encoder's audio configuration comes after its first keyframe, so its stream restarts
/// with audio one segment in), once there are three, fetched and probed as a set-top box
/// would play them: they decode without errors, start with a keyframe, carry audio and
/// video, and last what EXTINF says (±1 frame at 25 fps). Returns how many were fetched.
fn check_ts_segments(hls: SocketAddr, stream: &str) -> usize {
    let (text, p, from) = wait_for(
        Duration::from_secs(30),
        &format!("3 segments in {stream}/ts.m3u8"),
        || {
            let (status, text) = http_get(hls, &format!("/{stream}/ts.m3u8")).ok()?;
            let p = parse_media(&text).ok().filter(|_| status == 200)?;
            let from = p
                .segments
                .iter()
                .rposition(|s| s.discontinuity)
                .unwrap_or(0);
            (p.segments.len() - from >= 3).then_some((text, p, from))
        },
    );
    let errors = check_ts_media(&text);
    assert!(errors.is_empty(), "{stream}: {errors:?}\n{text}");
    assert!(
        p.target_duration <= 2,
        "1 s segments, 1 s GOP: target {}\n{text}",
        p.target_duration
    );
    let dir = TempDir::new("hls-ts");
    for seg in &p.segments[from..] {
        let data = get_bytes(hls, &format!("/{stream}/{}", seg.uri));
        assert_eq!(data.len() % 188, 0, "segment {}: whole TS packets", seg.msn);
        assert_eq!(
            data.first(),
            Some(&0x47),
            "segment {}: TS sync byte",
            seg.msn
        );
        let path = dir.join(format!("{}.ts", seg.msn));
        std::fs::write(&path, &data).unwrap();
        let probe = ffprobe(&path);
        assert!(
            probe.errors.trim().is_empty(),
            "segment {} decode errors: {}",
            seg.msn,
            probe.errors
        );
        assert!(
            probe.streams.iter().any(|s| s == "video")
                && probe.streams.iter().any(|s| s == "audio"),
            "segment {} streams: {:?}",
            seg.msn,
            probe.streams
        );
        assert!(
            probe.video.len() >= 20 && probe.audio_frames >= 30,
            "segment {}: {} video, {} audio frames",
            seg.msn,
            probe.video.len(),
            probe.audio_frames
        );
        assert!(
            probe.video[0].0,
            "segment {} does not start with a keyframe",
            seg.msn
        );
        let (first, last) = (probe.video[0].1, probe.video[probe.video.len() - 1].1);
        let span = last - first + 0.04;
        assert!(
            (span - seg.duration).abs() <= 0.041,
            "segment {}: video spans {span:.3} s, EXTINF {}",
            seg.msn,
            seg.duration
        );
        assert!(seg.duration <= p.target_duration as f64 + 0.5);
    }
    p.segments.len() - from
}

/// ffmpeg's HLS demuxer reads `url` live: video and audio, no errors.
fn ffmpeg_reads(hls: SocketAddr, url: &str) {
    let out = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(format!("http://{hls}/{url}"))
            .args([
                "-t", "3", "-map", "0:v:0", "-map", "0:a:0", "-f", "null", "-",
            ]),
        Duration::from_secs(60),
    )
    .expect("ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.trim().is_empty(),
        "ffmpeg read of {url}: {errors}"
    );
}

#[test]
fn ts_segments_for_set_top_boxes() {
    let clip = make_clip(5);
    let hls_port = free_port();
    let prism = Prism::start(&config(hls_port));
    let hls: SocketAddr = ([127, 0, 0, 1], hls_port).into();
    let _both = Publisher::start(&prism.rtmp_url("live", "both"), &clip, true);
    let _stb = Publisher::start(&prism.rtmp_url("stb", "box"), &clip, true);

    // "both": index.m3u8 lists the fMP4 variant for modern players; ts.m3u8 is beside it
    // and lists the same segments (numbers and durations, ±1 frame).
    let (_, video) = playlist_with(hls, "/live/both/video.m3u8", 3);
    let (status, index) = get(hls, "/live/both/index.m3u8");
    assert_eq!(status, 200);
    assert!(
        index.contains("video.m3u8") && !index.contains("ts.m3u8"),
        "{index}"
    );
    let (ts_text, ts) = playlist_with(hls, "/live/both/ts.m3u8", 3);
    let (_, video_text) = get(hls, "/live/both/video.m3u8");
    let video = parse_media(&video_text).unwrap_or(video);
    assert!(check_media(&video_text).is_empty());
    let mut common_msns = 0;
    for s in &ts.segments {
        if let Some(v) = video.segments.iter().find(|v| v.msn == s.msn) {
            common_msns += 1;
            assert!(
                (v.duration - s.duration).abs() <= 0.041,
                "segment {}: fMP4 {} s, TS {} s\n{video_text}\n{ts_text}",
                s.msn,
                v.duration,
                s.duration
            );
        }
    }
    assert!(
        common_msns >= 3,
        "the playlists share {common_msns} segments\n{video_text}\n{ts_text}"
    );

    let segments_before = prism
        .metric_value("prism_hls_requests_total{kind=\"segment\",status=\"200\"}")
        .unwrap_or(0.0);
    let mut fetched = check_ts_segments(hls, "live/both");
    fetched += check_ts_segments(hls, "stb/box");
    let segments_after = prism
        .metric_value("prism_hls_requests_total{kind=\"segment\",status=\"200\"}")
        .unwrap_or(0.0);
    assert!(
        segments_after - segments_before >= fetched as f64,
        ".ts fetches count as kind=segment: {segments_before} -> {segments_after}, {fetched} fetched"
    );
    ffmpeg_reads(hls, "live/both/ts.m3u8");

    // "ts" only: the multivariant playlist names ts.m3u8; no CMAF is made or served.
    let (status, index) = get(hls, "/stb/box/index.m3u8");
    assert_eq!(status, 200);
    assert!(
        index.contains("\nts.m3u8\n") && !index.contains("video.m3u8"),
        "{index}"
    );
    assert!(
        index.contains("avc1.") && index.contains("mp4a.40.2"),
        "{index}"
    );
    ffmpeg_reads(hls, "stb/box/index.m3u8");
    let (_, ts_text) = get(hls, "/stb/box/ts.m3u8");
    let first = parse_media(&ts_text).unwrap().segments[0].msn;
    for path in [
        "/stb/box/video.m3u8".to_string(),
        "/stb/box/audio.m3u8".to_string(),
        "/stb/box/manifest.mpd".to_string(),
        format!("/stb/box/video/{first}.m4s"),
        format!("/stb/box/video/init{first}.mp4"),
    ] {
        assert_eq!(get(hls, &path).0, 404, "{path}");
    }
    assert_eq!(get(hls, "/stb/box/ts/1.ts").0, 404, "long gone");
    assert_eq!(get(hls, "/stb/box/ts/..%2f1.ts").0, 404);

    // A second player: GStreamer's HLS demuxer and decoders play the TS-only stream.
    let (video_buffers, audio_buffers) = gst_decodes(hls, "stb/box/index.m3u8", 50);
    assert!(
        video_buffers >= 50 && audio_buffers >= 50,
        "GStreamer decoded {video_buffers} video and {audio_buffers} audio buffers"
    );
}

/// Plays `url` with GStreamer (uridecodebin: hlsdemux, tsdemux, decoders) into two
/// fakesinks until each got `n` decoded buffers (or 60 s passed); returns the counts.
fn gst_decodes(hls: SocketAddr, url: &str, n: usize) -> (usize, usize) {
    use std::io::BufRead;
    // A live playlist never ends, so the count is read from the sinks' notifications
    // (-v) and the player stopped once both are reached.
    let mut child = Command::new("gst-launch-1.0")
        .arg("-v")
        // gst-launch takes one pipeline token per argument.
        .args(["uridecodebin", &format!("uri=http://{hls}/{url}"), "name=d"])
        .args("d. ! queue ! videoconvert ! fakesink name=vsink sync=false silent=false".split(' '))
        .args("d. ! queue ! audioconvert ! fakesink name=asink sync=false silent=false".split(' '))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gst-launch-1.0");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let sink = if line.contains("(vsink:sink)") {
                0
            } else if line.contains("(asink:sink)") {
                1
            } else {
                continue;
            };
            if tx.send(sink).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut counts = [0usize; 2];
    while counts.iter().any(|&c| c < n) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(sink) => counts[sink] += 1,
            Err(_) => break,
        }
    }
    stop_child(&mut child, "KILL", Duration::from_secs(5));
    drop(rx);
    let _ = reader.join();
    (counts[0], counts[1])
}

/// Opus audio (Enhanced RTMP, what WHIP publishers send) cannot go into this MPEG-TS
/// muxer, so HLS packages it as AAC (prism-relay's shared Opus -> AAC transcoder): the
/// stream gets TS segments and its fMP4 playlists carry AAC too.
#[test]
fn opus_audio_is_packaged_as_aac_so_ts_segments_exist() {
    use common::flv::{flv_tags, publish};
    use prism_rtmp::session::MediaKind;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let hls_port = free_port();
    let prism = Prism::start(&config(hls_port));
    let hls: SocketAddr = ([127, 0, 0, 1], hls_port).into();
    // The clip's H.264 with Opus audio in its place (an OpusHead, then a 20 ms packet of
    // silence every 20 ms), sent at real time by Prism's own RTMP client session.
    let clip = std::fs::read(make_clip(5)).expect("read clip");
    let mut tags: Vec<(MediaKind, u32, bytes::Bytes)> = flv_tags(&clip)
        .into_iter()
        .filter(|t| t.kind == MediaKind::Video)
        .map(|t| (t.kind, t.timestamp, t.body))
        .collect();
    let mut head = vec![0x90];
    head.extend_from_slice(b"OpusOpusHead");
    head.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0]);
    tags.insert(0, (MediaKind::Audio, 0, head.into()));
    let mut opus = vec![0x91];
    opus.extend_from_slice(b"Opus");
    opus.extend_from_slice(&[0xF8, 0xFF, 0xFE]);
    let last = tags.iter().map(|t| t.1).max().unwrap_or(0);
    tags.extend((0..=last / 20).map(|i| (MediaKind::Audio, i * 20, opus.clone().into())));
    tags.sort_by_key(|t| t.1);

    let (mut tcp, mut session) = publish(prism.rtmp_addr.unwrap(), "live", "opus");
    let mut drain = tcp.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(drain.read(&mut buf), Ok(n) if n > 0) {}
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            // Two passes at most (10 s); the checks stop it sooner.
            for pass in 0..2 {
                for (kind, ts, body) in &tags {
                    let ms = pass * (last + 40) + ts;
                    let due = start + Duration::from_millis(u64::from(ms));
                    while std::time::Instant::now() < due {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    session.send_media(*kind, ms, body);
                    if tcp.write_all(&session.out().take_all()).is_err() {
                        return;
                    }
                }
            }
        })
    };

    let (audio_text, _) = playlist_with(hls, "/live/opus/audio.m3u8", 2);
    assert!(check_media(&audio_text).is_empty(), "{audio_text}");
    let (status, index) = get(hls, "/live/opus/index.m3u8");
    assert!(
        status == 200 && index.contains("mp4a") && !index.contains("opus"),
        "{status} {index}"
    );
    let (ts_text, _) = playlist_with(hls, "/live/opus/ts.m3u8", 2);
    assert!(ts_text.contains("#EXTINF"), "{ts_text}");
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let log = prism.stderr();
    assert!(!log.contains("no MPEG-TS segments"), "{log}");
}

/// HEVC (from an SRT encoder: MPEG-TS in) goes into the TS segments too: each starts with
/// PAT/PMT and a keyframe with its VPS/SPS/PPS, and decodes on its own.
#[test]
fn hevc_over_srt_is_carried_in_ts_segments() {
    use common::srt::{srt_url, SrtPublisher};
    let dir = TempDir::new("hls-ts-hevc");
    let clip = dir.join("hevc.ts");
    // Closed GOPs of 1 s, B-frames included (composition offsets).
    let out = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(make_clip(5))
            .args(["-c:v", "libx265", "-preset", "ultrafast", "-x265-params"])
            .args(["keyint=25:min-keyint=25:scenecut=0:open-gop=0:bframes=2:log-level=error"])
            .args(["-c:a", "copy", "-f", "mpegts"])
            .arg(&clip),
        Duration::from_secs(120),
    )
    .expect("ffmpeg libx265");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hls_port = free_port();
    let srt_port = free_udp_port();
    let prism = Prism::start(&format!(
        "{}[srt]\nlisten = \"127.0.0.1:{srt_port}\"\n",
        config(hls_port)
    ));
    let hls: SocketAddr = ([127, 0, 0, 1], hls_port).into();
    let _srt = SrtPublisher::start(&srt_url(srt_port, "stb/hevc", ""), &clip, true);
    let (status, index) = wait_for(Duration::from_secs(30), "index.m3u8", || {
        let r = http_get(hls, "/stb/hevc/index.m3u8").ok()?;
        (r.0 == 200).then_some(r)
    });
    assert!(
        status == 200 && index.contains("hvc1.") && index.contains("\nts.m3u8\n"),
        "{index}"
    );
    check_ts_segments(hls, "stb/hevc");
    ffmpeg_reads(hls, "stb/hevc/ts.m3u8");
    drop(prism);
}
