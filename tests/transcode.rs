//! ABR ladders (`[[transcode]]`): a real ffmpeg publishes a 640x360 test pattern; Prism's
//! supervised ffmpeg worker makes a 320x180 and an audio-only rendition; ffprobe reads
//! both over RTMP (resolution, codecs, bitrate within 20% of the ladder's). Killing the
//! worker restarts it and the rendition plays again; ending the stream leaves no ffmpeg;
//! SIGKILL of Prism leaves no ffmpeg; a stream beyond `max_transcodes` is refused and
//! counted; `prism check` names an encoder that cannot run. The source's multivariant
//! playlist (and DASH manifest) lists the renditions, keyframe-aligned; a target with
//! `rendition` gets it. hls.js in Chromium switches down to the rendition when the network
//! is throttled and back up when it is not.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{api, hls};

/// A cached 640x360@25 (GOP 2 s) + AAC clip: the source.
fn clip() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = target_dir().join("test-assets");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("clip-360p-6s.flv");
        if !path.is_file() {
            let tmp = dir.join(format!("clip-360p.{}.tmp.flv", std::process::id()));
            let out = run_with_timeout(
                Command::new("ffmpeg")
                    .args(
                        "-nostdin -hide_banner -v error -y \
                         -f lavfi -i testsrc2=size=640x360:rate=25 \
                         -f lavfi -i sine=frequency=440:sample_rate=44100 \
                         -c:v libx264 -preset ultrafast -g 50 -pix_fmt yuv420p \
                         -c:a aac -b:a 96k -t 6 -f flv"
                            .split_whitespace(),
                    )
                    .arg(&tmp),
                Duration::from_secs(60),
            )
            .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            fs::rename(&tmp, &path).unwrap();
        }
        path
    })
}

fn config(rtmp: u16, http: u16, max_transcodes: usize) -> String {
    format!(
        r#"[rtmp]
listen = "127.0.0.1:{rtmp}"
[http]
listen = "127.0.0.1:{http}"
[stream]
reconnect_grace_ms = 10000
[limits]
max_transcodes = {max_transcodes}
[[transcode]]
stream = "live/*"
  [[transcode.rendition]]
  name = "180p"
  video = {{ codec = "h264", width = 320, height = 180, bitrate_kbps = 300, preset = "veryfast" }}
  audio = {{ codec = "aac", bitrate_kbps = 64 }}
  [[transcode.rendition]]
  name = "audio"
  video = "none"
  audio = {{ bitrate_kbps = 48 }}
"#
    )
}

/// Pids of the ffmpeg processes whose parent is `pid`.
fn ffmpeg_children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let children = fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            if fs::read_to_string(format!("/proc/{c}/comm")).is_ok_and(|n| n.trim() == "ffmpeg") {
                out.push(c);
            }
        }
    }
    out
}

/// True while `pid` exists and is not a zombie (a zombie has exited).
fn running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// Video size and the bitrate (kb/s) of `select` (`v:0` or `a:0`) over ~4 s of a live
/// RTMP stream, from packet sizes and timestamps.
fn probe_rate(url: &str, select: &str) -> (Option<(u32, u32)>, f64) {
    let out = run_with_timeout(
        Command::new("ffprobe")
            .args(["-v", "error", "-rw_timeout", "10000000"])
            .args(["-read_intervals", "%+6", "-select_streams", select])
            .args(["-show_entries", "stream=width,height:packet=size,dts_time"])
            .args(["-of", "json"])
            .arg(url),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("ffprobe {url}: {e}"));
    assert!(
        out.status.success(),
        "ffprobe {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let size = v["streams"][0]["width"]
        .as_u64()
        .zip(v["streams"][0]["height"].as_u64())
        .map(|(w, h)| (w as u32, h as u32));
    let mut packets: Vec<(f64, u64)> = v["packets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let t = p["dts_time"].as_str()?.parse().ok()?;
            let s = p["size"].as_str()?.parse().ok()?;
            Some((t, s))
        })
        .collect();
    // The first GOP comes from the cache in a burst: rate over timestamps, not wall time.
    packets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(packets.len() > 20, "{url}: too few packets: {v}");
    let span = packets.last().unwrap().0 - packets[0].0;
    let bytes: u64 = packets[..packets.len() - 1].iter().map(|p| p.1).sum();
    (size, bytes as f64 * 8.0 / span / 1000.0)
}

#[track_caller]
fn assert_within(what: &str, got: f64, want: f64, tolerance: f64) {
    eprintln!("{what}: {got:.0} kb/s (configured {want:.0})");
    assert!(
        (got - want).abs() <= want * tolerance,
        "{what}: {got:.0} kb/s, configured {want:.0} kb/s (±{:.0}%)",
        tolerance * 100.0
    );
}

/// The one worker of `GET /api/v1/transcode`, checked against openapi.json.
#[track_caller]
fn worker_json(prism: &Prism) -> serde_json::Value {
    let r = api::Api::new(prism.http_addr.unwrap(), None).call("GET", "/api/v1/transcode", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    api::OpenApi::load().check_response("/api/v1/transcode", "get", 200, &v);
    assert_eq!(v["workers"].as_array().map(Vec::len), Some(1), "{v}");
    v["workers"][0].clone()
}

#[test]
fn ladder_renditions_restart_and_leave_no_process() {
    let (rtmp, http) = (free_port(), free_port());
    let mut prism = Prism::start(&config(rtmp, http, 1));
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "cam"), clip(), true);
    let worker = wait_for(Duration::from_secs(15), "a transcode worker", || {
        ffmpeg_children(prism.pid()).first().copied()
    });

    // Each rendition plays over RTMP as configured.
    let (size, kbps) = probe_rate(&prism.rtmp_url("live", "cam_180p"), "v:0");
    assert_eq!(size, Some((320, 180)));
    assert_within("180p video", kbps, 300.0, 0.2);
    let (size, kbps) = probe_rate(&prism.rtmp_url("live", "cam_audio"), "a:0");
    assert_eq!(size, None);
    assert_within("audio-only rendition", kbps, 48.0, 0.2);
    let p = probe(prism.rtmp_url("live", "cam_audio"), Duration::from_secs(30)).unwrap();
    assert_eq!(
        (p.video_codec.as_deref(), p.audio_ok),
        (None, true),
        "{p:?}"
    );

    // Metrics: one worker, its speed and CPU.
    wait_until(
        Duration::from_secs(10),
        "worker speed and CPU in /metrics",
        || {
            prism
                .metric_value("prism_transcode_speed{stream=\"live/cam\"}")
                .is_some_and(|s| s > 0.5)
                && prism
                    .metric_value("prism_transcode_cpu_seconds_total{stream=\"live/cam\"}")
                    .is_some_and(|c| c > 0.0)
        },
    );
    assert_eq!(prism.metric_value("prism_transcode_workers"), Some(1.0));
    let w = worker_json(&prism);
    assert_eq!(w["pid"], worker);
    assert_eq!(w["state"], "running");
    assert_eq!(
        w["renditions"],
        serde_json::json!(["live/cam_180p", "live/cam_audio"])
    );
    assert!(
        w["speed"].as_f64().unwrap() > 0.5 && w["cpu_seconds"].as_f64().unwrap() > 0.0,
        "{w}"
    );

    // Beyond max_transcodes (1): relayed without a ladder, refusal counted.
    let mut second = Publisher::start(&prism.rtmp_url("live", "two"), clip(), true);
    wait_until(Duration::from_secs(10), "the refusal counted", || {
        prism.metric_value("prism_transcode_refused_total") == Some(1.0)
    });
    assert!(
        prism.stderr().contains("transcode refused"),
        "{}",
        prism.stderr()
    );
    second.stop();
    assert_eq!(ffmpeg_children(prism.pid()), [worker]);

    // A killed worker is restarted and the rendition plays again.
    signal(worker, "KILL");
    wait_until(Duration::from_secs(10), "the restart counted", || {
        prism.metric_value("prism_transcode_restarts_total{reason=\"exited\",stream=\"live/cam\"}")
            == Some(1.0)
    });
    let restarted = wait_for(Duration::from_secs(10), "a new worker", || {
        ffmpeg_children(prism.pid())
            .into_iter()
            .find(|p| *p != worker)
    });
    let p = probe(prism.rtmp_url("live", "cam_180p"), Duration::from_secs(30)).unwrap();
    assert_eq!((p.width, p.height), (Some(320), Some(180)), "{p:?}");
    assert!(p.video_frames_decoded > 25, "{p:?}");
    let w = worker_json(&prism);
    assert_eq!(
        (w["restarts"].as_u64(), w["last_restart_reason"].as_str()),
        (Some(1), Some("exited")),
        "{w}"
    );
    assert_eq!(w["pid"], restarted);

    // The source ends: the worker goes, within the supervisor's bound (2 s + 2 s + ...).
    publisher.stop();
    wait_until(
        Duration::from_secs(10),
        "no ffmpeg left after the stream ended",
        || !running(restarted) && ffmpeg_children(prism.pid()).is_empty(),
    );
    assert_eq!(prism.metric_value("prism_transcode_workers"), Some(0.0));

    // SIGKILL of Prism: the worker dies with it (PR_SET_PDEATHSIG).
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "cam"), clip(), true);
    let worker = wait_for(
        Duration::from_secs(15),
        "a worker for the new stream",
        || ffmpeg_children(prism.pid()).first().copied(),
    );
    prism.kill();
    wait_until(Duration::from_secs(5), "the worker gone with Prism", || {
        !running(worker)
    });
    publisher.kill();
}

#[test]
fn check_names_an_encoder_that_cannot_run() {
    let out = prism_check(
        "[[transcode]]\nstream = \"live/*\"\n[[transcode.rendition]]\nname = \"480p\"\nvideo = { width = 854, height = 480, bitrate_kbps = 1000 }\nencoder = \"h264_nonexistent\"\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("transcode[0].rendition[0] (480p): encoder `h264_nonexistent` is not available in ffmpeg"),
        "{err}"
    );
    let out = prism_check(
        "[[transcode]]\nstream = \"live/*\"\nffmpeg = \"/nonexistent/ffmpeg\"\n[[transcode.rendition]]\nname = \"a\"\nvideo = \"none\"\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("transcode[0].ffmpeg: cannot run `/nonexistent/ffmpeg`"),
        "{err}"
    );
}

/// Start PTS (seconds) of the complete video segments in `{app}/{stream}/video.m3u8`:
/// init + segment fetched, ffprobe's first presentation time.
fn segment_starts(hls: std::net::SocketAddr, stream: &str, dir: &TempDir) -> Vec<f64> {
    let (code, pl) = http_get(hls, &format!("/live/{stream}/video.m3u8")).unwrap();
    assert_eq!(code, 200, "{pl}");
    let mut starts = Vec::new();
    let mut init = None;
    for l in pl.lines() {
        if let Some(u) = l.strip_prefix("#EXT-X-MAP:URI=\"") {
            let u = u.split('"').next().unwrap();
            init = Some(
                http_get_bytes(hls, &format!("/live/{stream}/{u}"))
                    .unwrap()
                    .1,
            );
        } else if !l.starts_with('#') && l.ends_with(".m4s") {
            let (code, seg) = http_get_bytes(hls, &format!("/live/{stream}/{l}")).unwrap();
            assert_eq!(code, 200);
            let path = dir.join(format!("{stream}.mp4"));
            fs::write(
                &path,
                [init.clone().expect("EXT-X-MAP first"), seg].concat(),
            )
            .unwrap();
            let (frames, err) = hls::probe_frames(&path, "v:0");
            assert!(err.is_empty(), "{stream}/{l}: {err}");
            let first = frames.iter().map(|f| f.1).fold(f64::INFINITY, f64::min);
            starts.push(first);
        }
    }
    starts
}

#[test]
fn hls_multivariant_lists_aligned_renditions() {
    let (rtmp, http, hls_port) = (free_port(), free_port(), free_port());
    let nginx = Nginx::start();
    // A destination that takes the 180p rendition instead of the source.
    let cfg = format!(
        "{}[hls]\nlisten = \"127.0.0.1:{hls_port}\"\nsegment_ms = 2000\n\
         [[route]]\nstream = \"live/*\"\n[[route.target]]\nname = \"capped\"\nurl = \"{}\"\nrendition = \"180p\"\n",
        config(rtmp, http, 4),
        nginx.rtmp_url("app", "{stream}")
    );
    let prism = Prism::start(&cfg);
    let hls: std::net::SocketAddr = ([127, 0, 0, 1], hls_port).into();
    let _publisher = Publisher::start(&prism.rtmp_url("live", "cam"), clip(), true);

    // The source plus both renditions, once each has packaged something.
    let index = wait_for(
        Duration::from_secs(20),
        "three variants in index.m3u8",
        || {
            let (code, body) = http_get(hls, "/live/cam/index.m3u8").ok()?;
            (code == 200 && body.matches("#EXT-X-STREAM-INF").count() == 3).then_some(body)
        },
    );
    assert!(index.contains("RESOLUTION=640x360"), "{index}");
    assert!(
        index.contains("RESOLUTION=320x180,AUDIO=\"audio-0\"\n../cam_180p/video.m3u8"),
        "{index}"
    );
    assert!(
        index.contains("CODECS=\"mp4a.40.2\"\n../cam_audio/audio.m3u8"),
        "{index}"
    );

    // ffprobe follows the multivariant playlist into every variant.
    let out = run_with_timeout(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "program=program_id:stream=codec_type,width,height",
            ])
            .args(["-of", "json"])
            .arg(format!("http://{hls}/live/cam/index.m3u8")),
        Duration::from_secs(30),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut sizes: Vec<Vec<String>> = v["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["streams"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| match s["codec_type"].as_str().unwrap() {
                    "video" => format!("{}x{}", s["width"], s["height"]),
                    other => other.to_owned(),
                })
                .collect::<Vec<_>>()
        })
        .map(|mut p| {
            p.sort();
            p
        })
        .collect();
    sizes.sort();
    assert_eq!(
        sizes,
        [
            vec!["320x180", "audio"],
            vec!["640x360", "audio"],
            vec!["audio"]
        ],
        "{v}"
    );

    // DASH: the renditions are more representations of the source's adaptation sets.
    let (code, mpd) = http_get(hls, "/live/cam/manifest.mpd").unwrap();
    assert_eq!(code, 200, "{mpd}");
    assert!(
        mpd.contains("width=\"320\" height=\"180\"")
            && mpd.contains("media=\"../cam_180p/video/$Number$.m4s\""),
        "{mpd}"
    );
    assert!(
        mpd.contains("media=\"../cam_audio/audio/$Number$.m4s\""),
        "{mpd}"
    );
    let out = run_with_timeout(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=width,height",
                "-of",
                "csv=p=0",
            ])
            .arg(format!("http://{hls}/live/cam/manifest.mpd")),
        Duration::from_secs(30),
    )
    .unwrap();
    let sizes = String::from_utf8_lossy(&out.stdout);
    assert!(
        sizes.contains("640,360") && sizes.contains("320,180"),
        "{sizes}"
    );

    // The target got the rendition, under the source's key; nothing else was pushed.
    let p = probe(nginx.rtmp_url("app", "cam"), Duration::from_secs(30)).unwrap();
    assert_eq!((p.width, p.height), (Some(320), Some(180)), "{p:?}");
    assert!(p.video_frames_decoded > 25 && p.audio_ok, "{p:?}");
    assert!(!nginx.is_publishing("cam_180p") && !nginx.is_publishing("cam_audio"));

    // Keyframe-aligned: every rendition segment inside the source's window starts at the
    // PTS one of the source's segments starts at.
    let dir = TempDir::new("transcode-hls");
    wait_until(Duration::from_secs(20), "3 segments of each", || {
        segment_starts(hls, "cam", &dir).len() >= 3
            && segment_starts(hls, "cam_180p", &dir).len() >= 3
    });
    let source = segment_starts(hls, "cam", &dir);
    let rendition = segment_starts(hls, "cam_180p", &dir);
    let (lo, hi) = (source[0], *source.last().unwrap());
    // Except the stream's very first keyframe: the encoder's B-frame delay would put its
    // decode time below 0, which FLV and the hub cannot carry, so it is clamped to 0.
    let common: Vec<f64> = rendition
        .iter()
        .copied()
        .filter(|t| (lo..=hi).contains(t) && *t > 0.5)
        .collect();
    assert!(
        common.len() >= 2,
        "source {source:?}, rendition {rendition:?}"
    );
    for t in &common {
        assert!(
            source.iter().any(|s| (s - t).abs() < 0.0015),
            "rendition segment at {t} not aligned with the source's {source:?}"
        );
    }

    // Still aligned after the worker is killed and restarted (the rendition goes on from
    // where it was, on the source's keyframes).
    let worker = ffmpeg_children(prism.pid())[0];
    let killed_at = segment_starts(hls, "cam", &dir).last().copied().unwrap();
    signal(worker, "KILL");
    wait_until(Duration::from_secs(10), "the restart counted", || {
        prism
            .metric_sum("prism_transcode_restarts_total")
            .unwrap_or(0.0)
            >= 1.0
    });
    let after = wait_for(
        Duration::from_secs(30),
        "2 rendition segments after the restart",
        || {
            let r: Vec<f64> = segment_starts(hls, "cam_180p", &dir)
                .into_iter()
                .filter(|t| *t > killed_at + 0.5)
                .collect();
            (r.len() >= 2).then_some(r)
        },
    );
    let source = segment_starts(hls, "cam", &dir);
    let checked: Vec<f64> = after
        .into_iter()
        .filter(|t| *t <= *source.last().unwrap())
        .collect();
    assert!(!checked.is_empty(), "source {source:?}");
    for t in &checked {
        assert!(
            source.iter().any(|s| (s - t).abs() < 0.0015),
            "after the restart: rendition segment at {t} not aligned with the source's {source:?}"
        );
    }
}

/// hls.js in Chromium plays the source's page, switches down to the 180p rendition when the
/// DevTools protocol throttles the network below the source's bitrate, and back up when the
/// throttle is lifted; playback goes on through both switches.
#[test]
fn hls_js_switches_down_when_throttled_and_back_up() {
    let (rtmp, http, hls_port) = (free_port(), free_port(), free_port());
    let cfg = format!(
        "{}[hls]\nlisten = \"127.0.0.1:{hls_port}\"\nsegment_ms = 2000\n",
        config(rtmp, http, 4)
    );
    let prism = Prism::start(&cfg);
    let hls: std::net::SocketAddr = ([127, 0, 0, 1], hls_port).into();
    let _publisher = Publisher::start(&prism.rtmp_url("live", "cam"), clip(), true);
    // A variant's BANDWIDTH (a guess until its first segment completes).
    fn bandwidth(index: &str, resolution: &str) -> Option<f64> {
        let line = index
            .lines()
            .find(|l| l.contains(&format!("RESOLUTION={resolution}")))?;
        let v = line.split("BANDWIDTH=").nth(1)?;
        v[..v.find(',')?].parse().ok()
    }
    // The throttle sits between the two video variants' BANDWIDTH: the source cannot be
    // sustained, the 180p rendition can.
    let (high, low) = wait_for(
        Duration::from_secs(30),
        "index.m3u8 with the measured BANDWIDTH of both video variants",
        || {
            let (code, body) = http_get(hls, "/live/cam/index.m3u8").ok()?;
            let high = bandwidth(&body, "640x360")?;
            let low = bandwidth(&body, "320x180")?;
            (code == 200 && high > 1.5 * low).then_some((high, low))
        },
    );
    let throttle_kbps = ((high + low) / 2.0 / 1000.0) as u64;

    let v = node_json(
        "abr.mjs",
        &[
            format!("http://{hls}/live/cam/"),
            "360".into(),
            "180".into(),
            throttle_kbps.to_string(),
            "60".into(),
        ],
        Duration::from_secs(240),
    );
    eprintln!("[transcode] hls.js ABR at {throttle_kbps} kbit/s: {v}");
    let phases = v["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 3, "{v}");
    for p in phases {
        assert_eq!(p["reached"], true, "{v}");
    }
    // Playback went on: the playhead moved after the switch back up, and nothing was fatal.
    let trace = v["trace"].as_array().unwrap();
    let t_at = |i: usize| trace[i]["t"].as_f64().unwrap_or(0.0);
    let last = trace.len() - 1;
    assert!(t_at(last) > t_at(last - 1), "playback stopped: {v}");
    let fatal: Vec<_> = v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e.as_str().is_some_and(|e| e.ends_with(":fatal")))
        .collect();
    assert!(fatal.is_empty(), "hls.js fatal errors: {v}");
}
