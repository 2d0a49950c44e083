//! Enhanced RTMP v2 multitrack: a publisher sends two renditions in one connection (video
//! and audio tracks 0 and 1, ManyTracks messages as the v2 document lays them out) and
//! each of two nginx-rtmp targets, given `video_track` / `audio_track`, receives its own
//! track as a plain stream that ffprobe decodes at that track's resolution.
//!
//! No encoder here writes multitrack video, so the messages are built from two real
//! ffmpeg clips (H.264 + AAC) re-signalled as E-RTMP `avc1` / `mp4a` tracks.

mod common;

use bytes::Bytes;
use common::api::http_request;
use common::rtmp::RtmpPublisher;
use common::*;
use prism_rtmp::multitrack::{build, MultitrackType};
use prism_rtmp::session::{caps_ex, MediaKind};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One FLV tag: type (8 audio, 9 video), timestamp, body.
struct Tag {
    kind: u8,
    ts: u32,
    body: Vec<u8>,
}

fn flv_tags(path: &Path) -> Vec<Tag> {
    let b = fs::read(path).expect("read flv");
    assert_eq!(&b[..3], b"FLV");
    let mut i = 9 + 4;
    let mut out = Vec::new();
    while i + 11 <= b.len() {
        let kind = b[i];
        let size = u32::from_be_bytes([0, b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let ts = u32::from_be_bytes([b[i + 7], b[i + 4], b[i + 5], b[i + 6]]);
        let body = b[i + 11..(i + 11 + size).min(b.len())].to_vec();
        out.push(Tag { kind, ts, body });
        i += 11 + size + 4;
    }
    out
}

/// A 4 s H.264 (GOP 25, no B-frames, so two clips' frames pair up) + AAC clip.
fn clip(size: &str, freq: u32) -> PathBuf {
    let dir = target_dir().join("test-assets");
    fs::create_dir_all(&dir).expect("create test-assets");
    let path = dir.join(format!("mt-{size}-{freq}.flv"));
    if path.is_file() {
        return path;
    }
    let tmp = dir.join(format!("mt-{size}-{freq}.{}.tmp.flv", std::process::id()));
    let out = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={size}:rate=25"))
            .args(["-f", "lavfi", "-i"])
            .arg(format!("sine=frequency={freq}:sample_rate=44100"))
            .args("-c:v libx264 -preset ultrafast -g 25 -keyint_min 25 -sc_threshold 0 -bf 0 -pix_fmt yuv420p -c:a aac -b:a 64k -t 4 -f flv".split_whitespace())
            .arg(&tmp),
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("ffmpeg: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(&tmp, &path).expect("rename clip");
    path
}

/// Legacy AVC tag body -> (frame type, E-RTMP packet type, E-RTMP body).
fn avc_to_ex(body: &[u8]) -> (u8, u8, Vec<u8>) {
    let ft = body[0] >> 4;
    match body[1] {
        0 => (ft, 0, body[5..].to_vec()), // SequenceStart: the record, no cts
        1 => (ft, 1, body[2..].to_vec()), // CodedFrames: SI24 cts + NALUs
        _ => (ft, 2, Vec::new()),
    }
}

/// Interleaves two clips' tags into multitrack messages (video track i and audio track i
/// from clip i), as (kind, timestamp, payload).
fn multitrack_messages(a: &[Tag], b: &[Tag]) -> Vec<(MediaKind, u32, Bytes)> {
    fn pick(tags: &[Tag], k: u8) -> Vec<&Tag> {
        tags.iter().filter(|t| t.kind == k).collect()
    }
    let (va, vb) = (pick(a, 9), pick(b, 9));
    let (aa, ab) = (pick(a, 8), pick(b, 8));
    let mut out = Vec::new();
    for (x, y) in va.iter().zip(&vb) {
        let (fx, px, bx) = avc_to_ex(&x.body);
        let (fy, py, by) = avc_to_ex(&y.body);
        assert_eq!((fx, px), (fy, py), "clips' frames pair up at {}", x.ts);
        let p = build::multitrack(
            0x80 | (fx << 4),
            6,
            MultitrackType::ManyTracks,
            px,
            &[(0, *b"avc1", &bx), (1, *b"avc1", &by)],
        );
        out.push((MediaKind::Video, x.ts, Bytes::from(p)));
    }
    for (x, y) in aa.iter().zip(&ab) {
        assert_eq!(x.body[1], y.body[1]);
        let p = build::multitrack(
            0x90,
            5,
            MultitrackType::ManyTracks,
            x.body[1], // AACPacketType 0/1 = SequenceStart/CodedFrames
            &[(0, *b"mp4a", &x.body[2..]), (1, *b"mp4a", &y.body[2..])],
        );
        out.push((MediaKind::Audio, x.ts, Bytes::from(p)));
    }
    // Sequence headers first, then by time.
    out.sort_by_key(|(_, ts, p)| (*ts, p[1] & 0x0F != 0));
    out
}

/// OBS's layout: track 0 as plain (legacy FLV) messages, track 1 in OneTrack multitrack
/// messages of its own, so each track's sequence start is a message of its own.
fn obs_style_messages(a: &[Tag], b: &[Tag]) -> Vec<(MediaKind, u32, Bytes)> {
    let mut out = Vec::new();
    for t in a.iter().filter(|t| t.kind == 8 || t.kind == 9) {
        let kind = if t.kind == 9 {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        out.push((kind, t.ts, Bytes::from(t.body.clone())));
    }
    for t in b.iter().filter(|t| t.kind == 8 || t.kind == 9) {
        let p = if t.kind == 9 {
            let (ft, pt, body) = avc_to_ex(&t.body);
            build::multitrack(
                0x80 | (ft << 4),
                6,
                MultitrackType::OneTrack,
                pt,
                &[(1, *b"avc1", &body)],
            )
        } else {
            build::multitrack(
                0x90,
                5,
                MultitrackType::OneTrack,
                t.body[1],
                &[(1, *b"mp4a", &t.body[2..])],
            )
        };
        let kind = if t.kind == 9 {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        out.push((kind, t.ts, Bytes::from(p)));
    }
    // By time, track 0 before track 1 at the same time (sequence headers first).
    out.sort_by_key(|(_, ts, _)| *ts);
    out
}

#[test]
fn multitrack_fans_out_one_track_per_target() {
    let tags0 = flv_tags(&clip("320x240", 440));
    let tags1 = flv_tags(&clip("160x120", 880));
    fan_out(multitrack_messages(&tags0, &tags1));
}

/// Tracks' sequence starts in separate messages (OBS): the targets still get their own.
#[test]
fn obs_style_tracks_fan_out_one_track_per_target() {
    let tags0 = flv_tags(&clip("320x240", 440));
    let tags1 = flv_tags(&clip("160x120", 880));
    fan_out(obs_style_messages(&tags0, &tags1));
}

/// Sends `messages` at their timestamps' pace from now, calling `after(ts)` after each.
fn publish_in_real_time(
    publisher: &mut RtmpPublisher,
    messages: &[(MediaKind, u32, Bytes)],
    mut after: impl FnMut(u32),
) {
    let start = Instant::now();
    for (kind, ts, payload) in messages {
        let due = start + Duration::from_millis(u64::from(*ts));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        publisher.send(*kind, *ts, payload);
        after(*ts);
    }
}

/// A recording at a destination: H.264 of `size` with ≥ 50 decoded frames, and AAC.
fn assert_h264_aac(p: &ProbeResult, size: (u32, u32), name: &str) {
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{name}: {p:?}");
    assert_eq!(
        (p.width, p.height),
        (Some(size.0), Some(size.1)),
        "{name}: {p:?}"
    );
    assert!(p.video_frames_decoded >= 50, "{name}: {p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{name}: {p:?}");
    assert!(p.audio_ok, "{name}: {p:?}");
}

fn fan_out(messages: Vec<(MediaKind, u32, Bytes)>) {
    assert!(messages.len() > 150, "{} messages", messages.len());

    let nginx = Nginx::start();
    let mut config = simple_config(free_port(), free_port(), &[]);
    for (name, track) in [("big", 0), ("small", 1)] {
        config.push_str(&format!(
            "\n  [[route.target]]\n  name = \"{name}\"\n  url = \"{}\"\n  video_track = {track}\n  audio_track = {track}\n",
            nginx.rtmp_url("app", &format!("{{stream}}_{name}"))
        ));
    }
    let prism = Prism::start(&config);
    let addr = prism.rtmp_addr.expect("rtmp addr");
    let mut publisher = RtmpPublisher::publish(addr, "live", "mt").expect("publish");
    // In real time, so the targets' queue budgets see a live stream.
    let mut late_joiner_checked = false;
    publish_in_real_time(&mut publisher, &messages, |ts| {
        if ts >= 1500 && !late_joiner_checked {
            // A player joining now gets one sequence header carrying both tracks.
            late_joiner_checked = true;
            let mut player = rtmp_player(addr, "live", "mt");
            for (k, video) in [(MediaKind::Video, true), (MediaKind::Audio, false)] {
                let m = player.wait_media(k);
                let parsed = if video {
                    prism_rtmp::multitrack::parse_video(&m.payload)
                } else {
                    prism_rtmp::multitrack::parse_audio(&m.payload)
                }
                .unwrap_or_else(|e| panic!("late joiner's first {k:?}: {e}"));
                let ids: Vec<u8> = parsed.tracks.iter().map(|t| t.id).collect();
                assert_eq!((parsed.packet_type, ids), (0, vec![0, 1]), "{k:?} header");
            }
        }
    });
    nginx.wait_bytes_in("mt_big", 50_000, Duration::from_secs(10));
    nginx.wait_bytes_in("mt_small", 10_000, Duration::from_secs(10));
    drop(publisher);
    // The targets unpublish when the stream ends; nginx then closes the recordings.
    wait_until(Duration::from_secs(20), "targets to unpublish", || {
        !nginx.is_publishing("mt_big") && !nginx.is_publishing("mt_small")
    });
    for (name, w, h) in [("mt_big", 320, 240), ("mt_small", 160, 120)] {
        let p = probe(nginx.recording(name), Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", prism.stderr()));
        assert_h264_aac(&p, (w, h), name);
    }
}

/// Publishes `messages` (one clip's worth) in a loop, in real time, timestamps running on,
/// until dropped; sequence headers go in the first round only.
struct LoopingPublisher {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LoopingPublisher {
    fn start(
        addr: std::net::SocketAddr,
        key: &str,
        messages: std::sync::Arc<Vec<(MediaKind, u32, Bytes)>>,
    ) -> LoopingPublisher {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut publisher = RtmpPublisher::publish(addr, "live", key).expect("publish");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // The clips are 4 s long; the next round starts after them.
        let round = messages.iter().map(|m| m.1).max().unwrap_or(0) / 1000 * 1000 + 1000;
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            for r in 0u32.. {
                for (kind, ts, payload) in messages.iter() {
                    let sequence_start = payload.get(1).is_some_and(|b| b & 0x0F == 0);
                    if r > 0 && sequence_start {
                        continue;
                    }
                    let ts = ts + r * round;
                    let due = start + Duration::from_millis(u64::from(ts));
                    while let Some(wait) = due.checked_duration_since(Instant::now()) {
                        if flag.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(wait.min(Duration::from_millis(50)));
                    }
                    if flag.load(Ordering::Relaxed) {
                        return;
                    }
                    publisher.send(*kind, ts, payload);
                }
            }
        });
        LoopingPublisher {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for LoopingPublisher {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The console's track choice (issue 19): a destination added in the browser with
/// `video_track` / `audio_track` 1 pushes track 1 (160x120) of the multitrack stream to an
/// nginx-rtmp sink; after a restart it is still there and pushes track 1 on the next
/// publish; changed to track 0 in the console's edit form, the sink gets 320x240.
#[test]
fn a_destination_pushes_the_track_chosen_in_the_console_and_keeps_it_over_a_restart() {
    use common::api::{target, Api, OpenApi};
    const TOKEN: &str = "tracks-token-0123456789abcdef";
    let spec = OpenApi::load();
    let tags0 = flv_tags(&clip("320x240", 440));
    let tags1 = flv_tags(&clip("160x120", 880));
    let messages = std::sync::Arc::new(multitrack_messages(&tags0, &tags1));
    let nginx = Nginx::start();
    let dir = TempDir::new("console-tracks");
    let state = dir.join("state.json");
    let (rtmp, http) = (free_port(), free_port());
    let cfg = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\n[http]\nlisten = \"127.0.0.1:{http}\"\ntoken = \"{TOKEN}\"\n\
         [state]\npath = \"{}\"\n",
        state.display()
    );
    let mut prism = Prism::start(&cfg);
    let api = Api::new(prism.http_addr.unwrap(), Some(TOKEN));
    let publisher = LoopingPublisher::start(prism.rtmp_addr.unwrap(), "mt", messages.clone());
    // The stream listing says which tracks the stream carries.
    let s = wait_for(Duration::from_secs(15), "live/mt with its tracks", || {
        api.stream(&spec, "live/mt")
            .filter(|s| s["video_tracks"] == serde_json::json!([0, 1]))
    });
    assert_eq!(s["audio_tracks"], serde_json::json!([0, 1]), "{s}");

    let key = "tracks-key-0123456789";
    let server = format!("rtmp://{}/app", nginx.rtmp_addr());
    let v = console_tracks(&prism, TOKEN, &["add", &server, key, "mt1", "1"]);
    assert_eq!(
        v["suggested"],
        serde_json::json!({"video": [0, 1], "audio": [0, 1]})
    );
    let saved: serde_json::Value = serde_json::from_slice(&fs::read(&state).unwrap()).unwrap();
    let d = &saved["destinations"][0];
    assert_eq!(
        (&d["video_track"], &d["audio_track"]),
        (&1.into(), &1.into()),
        "{saved}"
    );
    let size_at_sink = |what: &str, w: u32, h: u32| {
        nginx.wait_bytes_in(key, 10_000, Duration::from_secs(20));
        let p = wait_for(Duration::from_secs(40), what, || {
            probe(nginx.rtmp_url("app", key), Duration::from_secs(20))
                .ok()
                .filter(|p| p.width == Some(w))
        });
        eprintln!("[tracks] {what}: {p:?}");
        assert_eq!(
            (p.video_codec.as_deref(), p.height),
            (Some("h264"), Some(h)),
            "{what}: {p:?}"
        );
        assert!(p.video_frames_decoded >= 10, "{what}: {p:?}");
        assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{what}: {p:?}");
        assert!(p.audio_ok, "{what}: {p:?}");
    };
    size_at_sink("track 1 at the sink", 160, 120);

    // Restart: still there with its tracks, and pushes track 1 on the next publish.
    drop(publisher);
    prism.stop(Duration::from_secs(10));
    wait_until(Duration::from_secs(20), "the sink's session to end", || {
        !nginx.is_publishing(key)
    });
    let prism = Prism::start(&cfg);
    let api = Api::new(prism.http_addr.unwrap(), Some(TOKEN));
    let list = api.call("GET", "/api/v1/destinations", None).json();
    spec.check_response("/api/v1/destinations", "get", 200, &list);
    let d = &list["destinations"][0];
    assert_eq!(d["name"], "mt1", "{list}");
    assert_eq!(
        (&d["video_track"], &d["audio_track"]),
        (&1.into(), &1.into()),
        "{list}"
    );
    let _publisher = LoopingPublisher::start(prism.rtmp_addr.unwrap(), "mt", messages);
    let s = wait_for(Duration::from_secs(20), "mt1 up after the restart", || {
        api.stream(&spec, "live/mt")
            .filter(|s| target(s, "mt1").is_some_and(|t| t["state"] == "up"))
    });
    assert_eq!(target(&s, "mt1").unwrap()["origin"], "state");
    size_at_sink("track 1 at the sink after the restart", 160, 120);

    // Track 0 from the console's edit form (a PATCH): the target restarts with it.
    let artifacts = target_dir().join("test-artifacts");
    let artifacts = artifacts.to_string_lossy();
    console_tracks(&prism, TOKEN, &["edit", "mt1", "0", &artifacts]);
    let d = &api.call("GET", "/api/v1/destinations", None).json()["destinations"][0];
    assert_eq!(
        (&d["video_track"], &d["audio_track"]),
        (&0.into(), &0.into()),
        "{d}"
    );
    size_at_sink("track 0 at the sink", 320, 240);
    assert!(!prism.stderr().contains(key), "the stream key in the log");
}

/// Runs tests/js/console_tracks.mjs against `prism`'s console for stream live/mt.
fn console_tracks(prism: &Prism, token: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec![
        format!("http://{}/", prism.http_addr.expect("http addr")),
        token.to_owned(),
        "live/mt".to_owned(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let v = node_json("console_tracks.mjs", &all, Duration::from_secs(120));
    eprintln!("[tracks] {v}");
    assert_eq!(v["ok"], true, "{v:#}\n{}", prism.stderr());
    v
}

/// RTMP and HTTP listeners, no routes; `[rtmp] reconnect_url` if given.
fn bare_config(reconnect_url: Option<&str>) -> String {
    let mut c = format!("[rtmp]\nlisten = \"127.0.0.1:{}\"\n", free_port());
    if let Some(u) = reconnect_url {
        c.push_str(&format!("reconnect_url = \"{u}\"\n"));
    }
    c.push_str(&format!(
        "\n[http]\nlisten = \"127.0.0.1:{}\"\n",
        free_port()
    ));
    c
}

/// A keyframe and an AAC frame, so the stream is live with media.
fn send_some_media(p: &mut RtmpPublisher) {
    let video = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]);
    let audio = Bytes::from_static(&[0xAF, 1, 0x21, 0x10]);
    p.send(MediaKind::Video, 0, &video);
    p.send(MediaKind::Audio, 0, &audio);
}

#[test]
fn drain_asks_v2_publishers_to_reconnect_to_the_other_node() {
    let config = bare_config(Some("rtmp://node-b.example:1935/live"));
    let prism = Prism::start(&config);
    let addr = prism.rtmp_addr.expect("rtmp addr");
    let mut v2 = RtmpPublisher::publish_with_caps(
        addr,
        "live",
        "v2",
        Some(caps_ex::RECONNECT | caps_ex::MULTITRACK),
    )
    .expect("publish v2");
    let mut legacy = RtmpPublisher::publish(addr, "live", "legacy").expect("publish legacy");
    send_some_media(&mut v2);
    send_some_media(&mut legacy);

    let r = http_request(
        prism.http_addr.expect("http addr"),
        "POST",
        "/api/v1/drain",
        &[],
        None,
    )
    .expect("POST /api/v1/drain");
    assert_eq!(r.status, 202, "{r:?}");
    let body = r.json();
    assert_eq!(body["draining"], true);
    assert_eq!(body["reconnect_url_set"], true);
    common::api::OpenApi::load().check_response("/api/v1/drain", "post", 202, &body);

    v2.wait_close(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("v2 publisher: {e}\n{}", prism.stderr()));
    assert_eq!(
        v2.reconnect_request(),
        Some(Some("rtmp://node-b.example:1935/live".to_owned())),
        "{}",
        prism.stderr()
    );
    assert_eq!(v2.last_status(), Some("NetStream.Unpublish.Success"));
    // The publisher that did not announce capsEx is neither asked nor closed.
    assert!(legacy.wait_close(Duration::from_secs(1)).is_err());
    assert_eq!(legacy.reconnect_request(), None);
    send_some_media(&mut legacy);
}

#[test]
fn sigterm_sends_v2_publishers_a_reconnect_request() {
    let mut prism = Prism::start(&bare_config(None));
    let addr = prism.rtmp_addr.expect("rtmp addr");
    let mut v2 = RtmpPublisher::publish_with_caps(addr, "live", "v2", Some(caps_ex::RECONNECT))
        .expect("publish v2");
    // capsEx without the reconnect bit: not asked.
    let mut other = RtmpPublisher::publish_with_caps(addr, "live", "mt", Some(caps_ex::MULTITRACK))
        .expect("publish");
    send_some_media(&mut v2);
    send_some_media(&mut other);
    prism.signal("TERM");
    v2.wait_close(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("v2 publisher: {e}\n{}", prism.stderr()));
    // No reconnect_url: reconnect to the URL it used (no tcUrl in the request).
    assert_eq!(v2.reconnect_request(), Some(None), "{}", prism.stderr());
    assert_eq!(v2.last_status(), Some("NetStream.Unpublish.Success"));
    other
        .wait_close(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("other publisher: {e}"));
    assert_eq!(other.reconnect_request(), None);
    let status = prism
        .wait_exit(Duration::from_secs(10))
        .expect("prism exits");
    assert!(status.success(), "{status:?}\n{}", prism.stderr());
    assert!(
        prism.stderr().contains("reconnect request sent"),
        "{}",
        prism.stderr()
    );
}

/// The PyAV venv's python (FFmpeg 8; `./scripts/test.sh` installs it).
fn pyav_python() -> PathBuf {
    let p = target_dir().join("pyav-venv/bin/python");
    assert!(
        p.is_file(),
        "{} missing (./scripts/test.sh installs PyAV)",
        p.display()
    );
    p
}

/// FFmpeg 8 publishes each Enhanced RTMP codec pairing through Prism and an FFmpeg 8
/// player decodes both tracks. Opus reaches RTMP players as AAC (legacy players take AAC
/// only; see the WebRTC section), every other codec as it was sent.
#[test]
fn ffmpeg8_publishes_enhanced_rtmp_codecs_and_a_player_decodes_them() {
    let prism = Prism::start(&bare_config(None));
    let addr = prism.rtmp_addr.expect("rtmp addr");
    let python = pyav_python();
    let script = workspace_dir().join("tests/py/pyav_ertmp.py");
    for (i, (vcodec, acodec, want_v, want_a)) in [
        ("libx265", "libopus", "hevc", "aac"),
        ("libsvtav1", "flac", "libdav1d", "flac"),
        ("libx264", "ac3", "h264", "ac3"),
        ("libx264", "eac3", "h264", "eac3"),
        ("libx264", "libmp3lame", "h264", "mp3float"),
    ]
    .into_iter()
    .enumerate()
    {
        let url = format!("rtmp://{addr}/live/c{i}");
        let mut publisher = Command::new(&python)
            .arg(&script)
            .args(["publish", &url, vcodec, acodec, "6"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python pyav_ertmp.py publish");
        let live = format!("prism_ingest_frames_total{{kind=\"video\",stream=\"live/c{i}\"}}");
        wait_until(Duration::from_secs(20), "publish to start", || {
            prism.metric_value(&live).is_some_and(|n| n > 0.0)
        });
        let out = run_with_timeout(
            Command::new(&python).arg(&script).args(["play", &url, "3"]),
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("player: {e}"));
        let _ = stop_child_quiet(&mut publisher);
        let text = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "{vcodec}+{acodec}: player said {text:?} ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                prism.stderr()
            )
        });
        let what = format!("{vcodec}+{acodec}: {v}");
        assert_eq!(v["video_codec"], want_v, "{what}");
        assert_eq!(v["audio_codec"], want_a, "{what}");
        assert_eq!(v["width"], 320, "{what}");
        assert!(v["video_frames"].as_u64() >= Some(25), "{what}");
        assert!(v["audio_frames"].as_u64() >= Some(20), "{what}");
    }
}

/// Kills a child that may still run and reaps it.
fn stop_child_quiet(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let _ = child.kill();
    child.wait().ok()
}

/// Targets without `video_track` / `audio_track`: the push announces Enhanced RTMP v2
/// (`capsEx`, `fourCcList`, `videoFourCcInfoMap`) in its `connect`; a v2 destination (a
/// second Prism) confirms multitrack in its `_result` and gets every track, a legacy one
/// (nginx-rtmp, no `capsEx`) gets track 0 as a plain stream that decodes.
#[test]
fn v2_targets_get_every_track_legacy_targets_track_0() {
    let tags0 = flv_tags(&clip("320x240", 440));
    let tags1 = flv_tags(&clip("160x120", 880));
    let messages = multitrack_messages(&tags0, &tags1);
    let nginx = Nginx::start();
    let dest = Prism::start(&simple_config(free_port(), free_port(), &[]).replacen(
        "stream = \"live/*\"\n",
        "stream = \"live/*\"\nplay = true\n",
        1,
    ));
    let dest_addr = dest.rtmp_addr.expect("rtmp addr");
    let v2 = format!("rtmp://{dest_addr}/live/{{stream}}");
    let prism = Prism::start(&simple_config(
        free_port(),
        free_port(),
        &[("legacy", &nginx.rtmp_url("app", "{stream}")), ("v2", &v2)],
    ));
    let mut publisher =
        RtmpPublisher::publish(prism.rtmp_addr.expect("rtmp addr"), "live", "mt").expect("publish");
    let mut checked = false;
    publish_in_real_time(&mut publisher, &messages, |ts| {
        if ts >= 1500 && !checked {
            // Both tracks reached the v2 destination: a player there gets them.
            checked = true;
            let mut player = rtmp_player(dest_addr, "live", "mt");
            let m = player.wait_media(MediaKind::Video);
            let parsed = prism_rtmp::multitrack::parse_video(&m.payload)
                .unwrap_or_else(|e| panic!("v2 destination's first video: {e}"));
            let ids: Vec<u8> = parsed.tracks.iter().map(|t| t.id).collect();
            assert_eq!(ids, vec![0, 1], "{}", prism.stderr());
        }
    });
    assert!(checked);
    nginx.wait_bytes_in("mt", 50_000, Duration::from_secs(10));
    drop(publisher);
    wait_until(
        Duration::from_secs(20),
        "the legacy target to unpublish",
        || !nginx.is_publishing("mt"),
    );
    let p = probe(nginx.recording("mt"), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", prism.stderr()));
    assert_h264_aac(&p, (320, 240), "mt");
}

/// `DELETE /api/v1/streams/{app}/{key}?reconnect_url=...` moves a stream: a v2 publisher is
/// sent `NetConnection.Connect.ReconnectRequest` with that tcUrl, then the end of its
/// publish and the close; a legacy publisher is just kicked; a bad URL is a 400 and
/// kicks nobody.
#[test]
fn moving_a_stream_asks_its_v2_publisher_to_reconnect_there() {
    let prism = Prism::start(&bare_config(Some("rtmp://drain-target.example/live")));
    let addr = prism.rtmp_addr.expect("rtmp addr");
    let http = prism.http_addr.expect("http addr");
    let mut v2 = RtmpPublisher::publish_with_caps(addr, "live", "v2", Some(caps_ex::RECONNECT))
        .expect("publish v2");
    let mut legacy = RtmpPublisher::publish(addr, "live", "legacy").expect("publish legacy");
    send_some_media(&mut v2);
    send_some_media(&mut legacy);
    wait_until(Duration::from_secs(10), "both streams live", || {
        prism.metric_value("prism_streams_active") == Some(2.0)
    });

    for bad in [
        "http%3A%2F%2Fnode-b%2Flive",
        "rtmp%3A%2F%2Fnode-b",
        "rtmp%3A%2F%2Fnode-b%2Flive%0A",
    ] {
        let r = http_request(
            http,
            "DELETE",
            &format!("/api/v1/streams/live/v2?reconnect_url={bad}"),
            &[],
            None,
        )
        .expect("DELETE");
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        common::api::OpenApi::load().check_response(
            "/api/v1/streams/{app}/{key}",
            "delete",
            400,
            &r.json(),
        );
    }
    assert!(
        v2.wait_close(Duration::from_millis(500)).is_err(),
        "kicked by a 400"
    );

    let r = http_request(
        http,
        "DELETE",
        "/api/v1/streams/live/v2?reconnect_url=rtmp%3A%2F%2Fnode-b.example%3A1935%2Flive",
        &[],
        None,
    )
    .expect("DELETE");
    assert_eq!(r.status, 204, "{r:?}");
    v2.wait_close(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("v2 publisher: {e}\n{}", prism.stderr()));
    // The URL of the move, not the drain's `[rtmp] reconnect_url`.
    assert_eq!(
        v2.reconnect_request(),
        Some(Some("rtmp://node-b.example:1935/live".to_owned())),
        "{}",
        prism.stderr()
    );
    assert_eq!(v2.last_status(), Some("NetStream.Unpublish.Success"));

    // A legacy publisher given the same is kicked without a request.
    let r = http_request(
        http,
        "DELETE",
        "/api/v1/streams/live/legacy?reconnect_url=rtmp%3A%2F%2Fnode-b.example%2Flive",
        &[],
        None,
    )
    .expect("DELETE");
    assert_eq!(r.status, 204, "{r:?}");
    legacy
        .wait_close(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("legacy publisher: {e}"));
    assert_eq!(legacy.reconnect_request(), None);
    assert_eq!(legacy.last_status(), Some("NetStream.Unpublish.Success"));
    // Not live any more: 404, whatever the query.
    let r = http_request(
        http,
        "DELETE",
        "/api/v1/streams/live/v2?reconnect_url=rtmp%3A%2F%2Fnode-b%2Flive",
        &[],
        None,
    )
    .expect("DELETE");
    assert_eq!(r.status, 404, "{r:?}");
}
