//! LL-HLS, HLS and DASH of live streams ([hls]): ffmpeg publishes over RTMP and SRT; ffmpeg
//! reads the HLS URL, ffprobe the DASH one, and every segment decodes, starting on a keyframe;
//! the playlists keep the RFC 8216bis rules (checked by prism_hls::check); blocking reloads
//! wait for their part; bad URLs are refused; hls.js plays the page in headless Chromium.

mod common;

use common::hls::probe_frames;
use common::srt::*;
use common::*;
use prism_hls::check::{check_delta, check_media, parse_media};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

fn hls_config(hls_port: u16, extra: &str) -> String {
    format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
         [hls]\nlisten = \"127.0.0.1:{hls_port}\"\nsegment_ms = 1000\npart_ms = 200\n{extra}\n",
        free_port(),
        free_port()
    )
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Waits until the stream's multivariant playlist answers.
fn wait_playlist(addr: SocketAddr, stream: &str) -> String {
    wait_for(
        Duration::from_secs(20),
        "the HLS playlist",
        || match http_get(addr, &format!("/{stream}/index.m3u8")) {
            Ok((200, body)) => Some(body),
            _ => None,
        },
    )
}

/// Bytes of a GET that must succeed.
fn get_bytes(addr: SocketAddr, path: &str) -> Vec<u8> {
    match http_get_bytes(addr, path) {
        Ok((200, body)) => body,
        other => panic!("GET {path}: {other:?}"),
    }
}

/// Checks the live stream `stream` as a viewer would: playlists valid, segments decode and
/// start on keyframes, HLS and DASH readable by ffmpeg.
fn check_stream(hls: SocketAddr, stream: &str) {
    let index = wait_playlist(hls, stream);
    assert!(
        index.contains("video.m3u8") && index.contains("audio.m3u8"),
        "{index}"
    );
    assert!(
        index.contains("avc1.") && index.contains("mp4a.40.2"),
        "{index}"
    );

    // Wait until the window holds three complete segments.
    let video = wait_for(Duration::from_secs(20), "three segments", || {
        let (_, text) = get(hls, &format!("/{stream}/video.m3u8"));
        let p = parse_media(&text).ok()?;
        (p.segments.len() >= 3).then_some(text)
    });
    for track in ["video", "audio"] {
        let (status, text) = get(hls, &format!("/{stream}/{track}.m3u8"));
        assert_eq!(status, 200);
        let errors = check_media(&text);
        assert!(errors.is_empty(), "{track}: {errors:?}\n{text}");
    }
    let p = parse_media(&video).unwrap();
    assert!(p.target_duration <= 2, "1 s segments, 1 s GOP: {video}");

    // Segments decode on their own and start on a keyframe.
    let dir = TempDir::new("hls-segments");
    let map = &p.maps[0];
    let init = get_bytes(hls, &format!("/{stream}/{map}"));
    for seg in p.segments.iter().take(3) {
        assert!(seg.duration <= p.target_duration as f64 + 0.5);
        let mut file = init.clone();
        file.extend(get_bytes(hls, &format!("/{stream}/{}", seg.uri)));
        let path = dir.join(format!("{}.mp4", seg.msn));
        std::fs::write(&path, &file).unwrap();
        let (frames, errors) = probe_frames(&path, "v:0");
        assert!(
            errors.trim().is_empty(),
            "segment {} decode errors: {errors}",
            seg.msn
        );
        assert!(
            frames.len() >= 20,
            "segment {}: {} frames",
            seg.msn,
            frames.len()
        );
        assert!(
            frames[0].0,
            "segment {} does not start on a keyframe",
            seg.msn
        );
        // Parts are byte ranges of the same segment: the first part is its prefix (parts of
        // older segments are no longer listed).
        if let Some(part0) = seg.parts.first() {
            let part0 = get_bytes(hls, &format!("/{stream}/{}", part0.1));
            assert!(
                file[init.len()..].starts_with(&part0),
                "part 0 is not the segment's start"
            );
        }
    }

    // ffmpeg's own HLS demuxer reads the live URL: both tracks, frames decode.
    let out = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(format!("http://{hls}/{stream}/index.m3u8"))
            .args([
                "-t", "3", "-map", "0:v:0", "-map", "0:a:0", "-f", "null", "-",
            ]),
        Duration::from_secs(60),
    )
    .expect("ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg read of HLS failed: {errors}");
    assert!(
        errors.trim().is_empty(),
        "ffmpeg read HLS with errors: {errors}"
    );

    check_dash(hls, stream, &dir);
}

/// The DASH manifest of a live stream: ffprobe finds both tracks through it, and the
/// segments its templates name (the first listed, with its init segment) decode, video
/// from a keyframe. Playback over time is dash.js's job (tests/hls_serving.rs): ffmpeg 5.1's
/// DASH demuxer cannot follow a live `SegmentTimeline` whose window moves while it reads
/// (its refresh_manifest stores a timeline index where it compares segment numbers, so it
/// jumps back to the window start and its timestamps go backwards).
fn check_dash(hls: SocketAddr, stream: &str, dir: &TempDir) {
    let url = format!("http://{hls}/{stream}/manifest.mpd");
    let out = run_with_timeout(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name",
                "-of",
                "csv=p=0",
            ])
            .arg(&url),
        Duration::from_secs(60),
    )
    .expect("ffprobe");
    let codecs = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && codecs.contains("h264") && codecs.contains("aac"),
        "ffprobe of {url}: {codecs} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (status, mpd) = get(hls, &format!("/{stream}/manifest.mpd"));
    assert_eq!(status, 200, "{mpd}");
    // One SegmentTemplate per adaptation set: video, then audio.
    let attrs = |name: &str| -> Vec<String> {
        mpd.split(&format!(" {name}=\""))
            .skip(1)
            .filter_map(|rest| rest.split('"').next().map(str::to_string))
            .collect()
    };
    let (inits, numbers, media) = (
        attrs("initialization"),
        attrs("startNumber"),
        attrs("media"),
    );
    assert_eq!(
        (inits.len(), numbers.len(), media.len()),
        (2, 2, 2),
        "{mpd}"
    );
    for (i, (track, select)) in [("video", "v:0"), ("audio", "a:0")].into_iter().enumerate() {
        assert!(inits[i].starts_with(track), "{mpd}");
        let mut file = get_bytes(hls, &format!("/{stream}/{}", inits[i]));
        let first = media[i].replace("$Number$", &numbers[i]);
        file.extend(get_bytes(hls, &format!("/{stream}/{first}")));
        let path = dir.join(format!("dash-{track}.mp4"));
        std::fs::write(&path, &file).unwrap();
        let (frames, errors) = probe_frames(&path, select);
        assert!(errors.trim().is_empty(), "DASH {first}: {errors}");
        assert!(frames.len() >= 20, "DASH {first}: {} frames", frames.len());
        assert!(
            track == "audio" || frames[0].0,
            "DASH {first} starts on a non-keyframe"
        );
    }
}

#[test]
fn rtmp_and_srt_streams_are_served_as_hls_and_dash() {
    let clip = make_clip(5);
    let hls_port = free_port();
    let srt_port = free_udp_port();
    let prism = Prism::start(&hls_config(
        hls_port,
        &format!("[srt]\nlisten = \"127.0.0.1:{srt_port}\"\n"),
    ));
    let hls: SocketAddr = ([127, 0, 0, 1], hls_port).into();
    let _rtmp = Publisher::start(&prism.rtmp_url("live", "cam"), &clip, true);
    let _srt = SrtPublisher::start(&srt_url(srt_port, "live/srtcam", ""), &clip, true);
    check_stream(hls, "live/cam");
    check_stream(hls, "live/srtcam");

    // A delta update agrees with the full playlist of the same moment (retry: a part may
    // land between the two requests).
    wait_until(Duration::from_secs(10), "a consistent delta update", || {
        let (_, full) = get(hls, "/live/cam/video.m3u8");
        let (_, delta) = get(hls, "/live/cam/video.m3u8?_HLS_skip=YES");
        check_delta(&full, &delta).is_empty()
    });

    // Blocking reload: asking for the next segment's first part waits for it, then lists it.
    let (_, text) = get(hls, "/live/cam/video.m3u8");
    let p = parse_media(&text).unwrap();
    let next = p.media_sequence + p.skipped + p.segments.len() as u64 + 1;
    let t0 = Instant::now();
    let (status, text) = get(
        hls,
        &format!("/live/cam/video.m3u8?_HLS_msn={next}&_HLS_part=0"),
    );
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(&format!("video/{next}.0.m4s")),
        "the awaited part is listed:\n{text}"
    );
    assert!(t0.elapsed() > Duration::from_millis(50), "it did wait");
    assert!(check_media(&text).is_empty(), "{:?}", check_media(&text));
    // Too far ahead: refused at once.
    let (status, _) = get(hls, &format!("/live/cam/video.m3u8?_HLS_msn={}", next + 50));
    assert_eq!(status, 400);

    // Bad input: each refused, nothing else disturbed.
    for (path, want) in [
        ("/../../etc/passwd", 404),
        ("/live/../cam/index.m3u8", 404),
        ("/live/cam/video/..%2f..%2fx.m4s", 404),
        ("/live/nosuch/index.m3u8", 404),
        ("/live/cam/video/1.m4s", 404),
    ] {
        assert_eq!(get(hls, path).0, want, "{path}");
    }
    let huge = format!("/live/cam/index.m3u8?{}", "a=b&".repeat(2000));
    assert!(matches!(get(hls, &huge).0, 400 | 414 | 431), "huge query");
    assert_eq!(get(hls, "/live/cam/index.m3u8").0, 200, "still serving");

    let m = prism.metrics();
    for (kind, min) in [
        ("segment", 3.0),
        ("part", 1.0),
        ("playlist", 5.0),
        ("init", 1.0),
    ] {
        let n = metric_value_in(
            &m,
            &format!("prism_hls_requests_total{{kind=\"{kind}\",status=\"200\"}}"),
        )
        .unwrap_or(0.0);
        assert!(n >= min, "{kind} requests counted: {n}\n{m}");
    }
    assert!(
        metric_value_in(&m, "prism_hls_bytes_sent_total{stream=\"live/cam\"}").unwrap_or(0.0)
            > 10_000.0
    );
    assert!(metric_value_in(&m, "prism_hls_segments{stream=\"live/cam\"}").unwrap_or(0.0) >= 3.0);

    // A shutdown ends packaging with the streams and does not wait for the windows' grace.
    let mut prism = prism;
    let t0 = Instant::now();
    prism.signal("TERM");
    assert!(
        prism.wait_exit(Duration::from_secs(10)).is_some(),
        "prism did not exit"
    );
    let log = std::fs::read_to_string(prism.dir.join("prism.stderr")).unwrap_or_default();
    assert!(
        log.contains("shut down cleanly"),
        "shutdown waited on something ({:?}):\n{}",
        t0.elapsed(),
        prism.stderr()
    );
}

#[test]
fn hls_js_plays_the_page_in_chromium() {
    let clip = make_clip(5);
    let hls_port = free_port();
    let prism = Prism::start(&hls_config(hls_port, ""));
    let hls: SocketAddr = ([127, 0, 0, 1], hls_port).into();
    let _rtmp = Publisher::start(&prism.rtmp_url("live", "page"), &clip, true);
    wait_playlist(hls, "live/page");
    // tests/js/play.mjs: headless Chromium (playwright-core) opens the page, lets hls.js
    // play for 8 s and prints the page's report.
    let v = node_json(
        "play.mjs",
        // A stall on this saturated 2-core box leaves the player behind; the page then
        // catches up at up to 1.5x, so the latency is read once it is back (within 20 s).
        &[
            format!("http://{hls}/live/page/"),
            "8".into(),
            "--max-latency=3".into(),
        ],
        Duration::from_secs(90),
    );
    let r = &v["report"];
    let t = r["currentTime"].as_f64().unwrap_or(0.0);
    let latency = r["latency"].as_f64().unwrap_or(f64::MAX);
    let catch_up = r["catchUpMs"].as_f64().unwrap_or(0.0) / 1000.0;
    eprintln!("[hls] hls.js in Chromium: played {t:.1} s, LL-HLS latency {latency:.2} s (caught up in {catch_up:.1} s more)");
    assert!(t > 4.0, "hls.js played only {t} s: {v}");
    assert!(latency < 3.0, "LL-HLS latency {latency} s: {v}");
    // A stall on this saturated 2-core box (and the hole it leaves) is not fatal and hls.js
    // recovers from it; any other error, and any fatal one, fails.
    let other = common::hls::unrecovered_errors(r);
    assert!(other.is_empty(), "hls.js errors: {v}");
}
