//! The operator console and the persisted destinations (`[state] path`, issue 19).
//!
//! - In headless Chromium (tests/js/console.mjs): sign in, add a YouTube-preset destination
//!   pointed at an nginx-rtmp sink, see it up, toggle it off and on, add and remove another,
//!   screenshots at desktop and phone width, read-only when the API is unreachable, kick. The
//!   recording at the sink decodes; after a restart the destination is still there and
//!   publishes on the next publish, and after a SIGHUP too.
//! - The state file survives `kill -9` in the middle of a save.
//! - A corrupt state file stops start-up (and `prism check`) naming the file.

mod common;

use common::api::{target, Api, OpenApi};
use common::*;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "console-token-0123456789abcdef";

fn config(rtmp: u16, http: u16, state: &Path) -> String {
    format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\n[http]\nlisten = \"127.0.0.1:{http}\"\ntoken = \"{TOKEN}\"\n\
         [state]\npath = \"{}\"\n",
        state.display()
    )
}

#[test]
fn console_adds_toggles_removes_and_destinations_persist() {
    let spec = OpenApi::load();
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let dir = TempDir::new("console-state");
    let state = dir.join("state.json");
    let (rtmp, http) = (free_port(), free_port());
    let cfg = config(rtmp, http, &state);
    let mut prism = Prism::start(&cfg);
    let api = Api::new(prism.http_addr.unwrap(), Some(TOKEN));
    let publisher = Publisher::start(&prism.rtmp_url("live", "main"), &clip, true);
    wait_for(Duration::from_secs(15), "live/main live", || {
        api.stream(&spec, "live/main")
    });

    let key = "yt-key-0123456789abcd";
    let artifacts = target_dir().join("test-artifacts");
    let run = run_with_timeout(
        Command::new("node")
            .arg(workspace_dir().join("tests/js/console.mjs"))
            .arg(format!("http://{}/", prism.http_addr.unwrap()))
            .arg(TOKEN)
            .arg("live/main")
            .arg(format!("rtmp://{}/app", nginx.rtmp_addr()))
            .arg(key)
            .arg(&artifacts),
        Duration::from_secs(180),
    )
    .expect("node tests/js/console.mjs (run ./scripts/test.sh to install playwright-core)");
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("[console] {stdout}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "console.mjs output {stdout}: {e}\n{}",
            String::from_utf8_lossy(&run.stderr)
        )
    });
    assert_eq!(v["ok"], true, "console.mjs failed: {v:#}");
    for shot in ["console-desktop.png", "console-phone.png"] {
        let bytes = std::fs::read(artifacts.join(shot)).expect(shot);
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
            "{shot}"
        );
    }
    drop(publisher);

    // What the API says afterwards: youtube kept (enabled), twitch gone, key redacted.
    let r = api.call("GET", "/api/v1/destinations", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.json();
    spec.check_response("/api/v1/destinations", "get", 200, &list);
    assert!(!r.body.contains(key), "full key in the API: {}", r.body);
    let dests = list["destinations"].as_array().unwrap();
    assert_eq!(dests.len(), 1, "{list:#}");
    assert_eq!(dests[0]["name"], "youtube");
    assert_eq!(dests[0]["enabled"], true);
    assert_eq!(dests[0]["key_hint"], "…abcd");
    assert_eq!(dests[0]["queue"]["write_merge_ms"], 20);
    assert_eq!(list["persisted"], true);

    // The kick unpublished the target: the sink's recording (of the session after the
    // toggle) is complete and decodes.
    let rec = nginx.recording(key);
    wait_until(Duration::from_secs(10), "sink stream unpublished", || {
        !nginx.is_publishing(key)
    });
    let p = probe(&rec, Duration::from_secs(30)).unwrap_or_else(|e| panic!("probe: {e}"));
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert!(p.video_frames_decoded >= 25, "{p:?}");
    assert!(p.audio_ok, "{p:?}");

    // The state file: private, and the key is there (it is the store), nowhere else.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "state file mode {mode:o}");
    assert!(!prism.stderr().contains(key), "key in the log");

    // Restart: the destination is back and publishes on the next publish.
    prism.stop(Duration::from_secs(10));
    let prism = Prism::start(&cfg);
    let api = Api::new(prism.http_addr.unwrap(), Some(TOKEN));
    let list = api.call("GET", "/api/v1/destinations", None).json();
    assert_eq!(list["destinations"][0]["name"], "youtube", "{list:#}");
    let before = nginx.bytes_in(key).unwrap_or(0);
    let _publisher = Publisher::start(&prism.rtmp_url("live", "main"), &clip, true);
    let s = wait_for(Duration::from_secs(20), "youtube up after restart", || {
        api.stream(&spec, "live/main")
            .filter(|s| target(s, "youtube").is_some_and(|t| t["state"] == "up"))
    });
    assert_eq!(target(&s, "youtube").unwrap()["origin"], "state");
    nginx.wait_bytes_in(key, 100_000, Duration::from_secs(15));
    // Prism samples bitrates on its own (the console's charts start from them).
    let h = wait_for(Duration::from_secs(15), "3 samples of youtube", || {
        let h = api.call("GET", "/api/v1/history", None).json();
        let points = h["streams"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "live/main")?["points"]
            .as_array()?
            .clone();
        let with_yt = points
            .iter()
            .filter(|p| {
                p["targets"][0]["name"] == "youtube" && p["targets"][0]["bps"].as_u64() > Some(0)
            })
            .count();
        (with_yt >= 3).then_some(h)
    });
    spec.check_response("/api/v1/history", "get", 200, &h);
    eprintln!("[console] sink bytes before restart publish: {before}");

    // SIGHUP re-reads the config and keeps the state's destinations running.
    prism.signal("HUP");
    wait_until(Duration::from_secs(10), "config reloaded", || {
        prism.stderr().contains("config reloaded")
    });
    let s = api.stream(&spec, "live/main").expect("still live");
    let t = target(&s, "youtube").expect("youtube kept after SIGHUP");
    assert_eq!(t["state"], "up", "{t}");
    assert_eq!(t["reconnects"], 0, "{t}");

    // Removing it stops it and drops it from the file.
    let r = api.call("DELETE", "/api/v1/destinations/youtube", None);
    assert_eq!(r.status, 204, "{}", r.body);
    wait_for(Duration::from_secs(15), "youtube target gone", || {
        api.stream(&spec, "live/main")
            .filter(|s| target(s, "youtube").is_none())
    });
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(!text.contains("youtube"), "{text}");
}

/// Kills `child` on drop (and reaps it).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A save interrupted by `kill -9` half-way through writing leaves the previous state file
/// whole: Prism starts from it. (With the file written in place, the kill would leave half
/// a JSON document and start-up would refuse it.)
#[test]
fn state_survives_kill_9_in_the_middle_of_a_save() {
    let dir = TempDir::new("console-kill");
    let state = dir.join("state.json");
    let (rtmp, http) = (free_port(), free_port());
    let cfg = config(rtmp, http, &state);
    let cfg_path = dir.join("prism.toml");
    std::fs::write(&cfg_path, &cfg).unwrap();
    let mut child = Reaped(
        Command::new(prism_bin())
            .arg("--config")
            .arg(&cfg_path)
            // The test hook: every save pauses half-way through writing its bytes.
            .env("PRISM_TEST_STATE_SAVE_PAUSE_MS", "3000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prism.stderr")).unwrap())
            .spawn()
            .expect("spawn prism"),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    wait_until(Duration::from_secs(10), "prism healthy", || {
        matches!(http_get(addr, "/healthz"), Ok((200, _)))
    });
    let api = Api::new(addr, Some(TOKEN));
    let dest = |name: &str| json!({"name": name, "stream": "live/*", "url": format!("rtmp://127.0.0.1:1/app/{name}-0123456789")});
    let r = api.call("POST", "/api/v1/destinations", Some(&dest("first")));
    assert_eq!(r.status, 201, "{}", r.body);
    let saved = std::fs::read(&state).unwrap();

    let second = {
        let api = api.clone();
        let body = dest("second");
        std::thread::spawn(move || {
            // Answered or cut off by the kill: either way the test decides from the file.
            let _ = common::api::http_request(
                api.addr,
                "POST",
                "/api/v1/destinations",
                &[
                    ("Authorization", &format!("Bearer {TOKEN}")),
                    ("Content-Type", "application/json"),
                ],
                Some(body.to_string().as_bytes()),
            );
        })
    };
    // The save is under way: part of the new document is on disk.
    let tmp = dir.join(".state.json.tmp");
    wait_until(Duration::from_secs(10), "save half-way", || {
        std::fs::metadata(&tmp).is_ok_and(|m| m.len() > 0)
    });
    let _ = child.0.kill();
    let _ = child.0.wait();
    let _ = second.join();

    let after = std::fs::read(&state).unwrap();
    assert_eq!(after, saved, "the state file changed under a killed save");
    let doc: serde_json::Value = serde_json::from_slice(&after).expect("state file is JSON");
    assert_eq!(
        doc["destinations"].as_array().map(Vec::len),
        Some(1),
        "{doc}"
    );

    // Prism starts from it; the leftover temp file is cleaned up.
    let prism = Prism::start(&cfg);
    let api = Api::new(prism.http_addr.unwrap(), Some(TOKEN));
    let list = api.call("GET", "/api/v1/destinations", None).json();
    let names: Vec<&str> = list["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, ["first"]);
    assert!(!tmp.exists(), "temp file left behind");
}

#[test]
fn corrupt_state_file_stops_start_up_naming_it() {
    let dir = TempDir::new("console-corrupt");
    let state = dir.join("state.json");
    std::fs::write(
        &state,
        b"{\"version\": 1, \"destinations\": [{\"name\": \"yt\"",
    )
    .unwrap();
    let cfg = config(free_port(), free_port(), &state);
    let mut prism = Prism::spawn(&cfg);
    let status = prism
        .wait_exit(Duration::from_secs(10))
        .expect("prism should exit");
    assert!(!status.success());
    let err = prism.stderr();
    assert!(
        err.contains(&state.display().to_string()) && err.contains("corrupt"),
        "{err}"
    );
    // Not reset behind the operator's back.
    assert!(std::fs::read_to_string(&state).unwrap().ends_with("\"yt\""));

    let out = prism_check(&cfg);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&state.display().to_string()), "{err}");
}

/// Destinations are checked as the config checks targets; a name the config file uses is
/// refused when added, and reported (API and log) when the config file gained it later.
#[test]
fn destinations_are_checked_and_conflicts_reported() {
    let spec = OpenApi::load();
    let dir = TempDir::new("console-checks");
    let state = dir.join("state.json");
    // A state file from before the config file named a target "youtube" too.
    std::fs::write(
        &state,
        br#"{"version": 1, "destinations": [
              {"name": "youtube", "stream": "live/*", "url": "rtmp://127.0.0.1:1/app/state-key-0123456789"}]}"#,
    )
    .unwrap();
    let cfg = format!(
        "{}[[route]]\nstream = \"live/*\"\n[[route.target]]\nname = \"youtube\"\nurl = \"rtmp://127.0.0.1:1/app/{{stream}}\"\n\
         [[route.target]]\nname = \"fb\"\nurl = \"rtmp://127.0.0.1:1/fb/{{stream}}\"\n",
        config(free_port(), free_port(), &state)
    );
    let prism = Prism::start(&cfg);
    let api = Api::new(prism.http_addr.unwrap(), Some(TOKEN));
    let list = api.call("GET", "/api/v1/destinations", None).json();
    spec.check_response("/api/v1/destinations", "get", 200, &list);
    let d = &list["destinations"][0];
    assert_eq!(d["applied"], false, "{d}");
    assert!(
        d["conflict"]
            .as_str()
            .is_some_and(|c| c.contains("config file declares a target named youtube")),
        "{d}"
    );
    assert!(
        prism.stderr().contains("state destination not applied"),
        "{}",
        prism.stderr()
    );
    // `prism check` reports it too (a warning: the server runs, that destination unapplied).
    let out = prism_check(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&state.display().to_string())
            && err.contains("destination youtube: the config file declares a target named youtube"),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 state file conflict"),
        "{out:?}"
    );
    // No [[transcode]] here: no ladders, and a rendition names none.
    assert_eq!(list["ladders"], json!([]), "{list}");

    let post = |body: serde_json::Value| api.call("POST", "/api/v1/destinations", Some(&body));
    let ok = json!({"name": "tw", "stream": "live/main", "url": "rtmp://127.0.0.1:1/app/tw-key-0123456789"});
    let r = post(ok.clone());
    assert_eq!(r.status, 201, "{}", r.body);
    spec.check_response("/api/v1/destinations", "post", 201, &r.json());
    assert_eq!(r.header("location"), Some("/api/v1/destinations/tw"));
    for (body, status, says) in [
        (ok.clone(), 409, "exists"),
        (
            json!({"name": "fb", "stream": "live/main", "url": "rtmp://h/app/k"}),
            409,
            "config file declares a target named fb",
        ),
        (
            json!({"name": "a b", "stream": "live/main", "url": "rtmp://h/app/k"}),
            400,
            "name:",
        ),
        (
            json!({"name": "x", "stream": "nope", "url": "rtmp://h/app/k"}),
            400,
            "stream:",
        ),
        (
            json!({"name": "x", "stream": "live/main", "url": "http://h/app/k"}),
            400,
            "url:",
        ),
        (
            json!({"name": "x", "stream": "live/main", "url": "rtmp://h/app/k", "queue": {"write_merge_ms": 1001}}),
            400,
            "write_merge_ms",
        ),
        (
            json!({"name": "x", "stream": "live/main", "url": "rtmp://h/app/k", "extra": 1}),
            400,
            "unknown field",
        ),
        (
            json!({"name": "x", "stream": "live/main", "url": "rtmp://h/app/k", "rendition": "720p"}),
            400,
            "no [[transcode.rendition]] is named `720p`",
        ),
        (
            json!({"name": "x", "stream": "live/main", "url": "rtmp://h/app/k", "video_track": 256}),
            400,
            "video_track: `256` is not a track id: 0 to 255",
        ),
        (
            json!({"name": "x", "stream": "live/main", "url": "rtmp://h/app/k", "audio_track": -1}),
            400,
            "audio_track: `-1` is not a track id: 0 to 255",
        ),
        (
            json!({"name": "x", "stream": "live/main", "url": "rtmp://h/app/k", "video_track": "1"}),
            400,
            "video_track: a track id (0 to 255)",
        ),
    ] {
        let r = post(body.clone());
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().contains(says),
            "{body}: {}",
            r.body
        );
        assert!(
            !r.body.contains("/app/k\""),
            "URL echoed unredacted: {}",
            r.body
        );
    }
    let r = api.call(
        "PATCH",
        "/api/v1/destinations/tw",
        Some(&json!({"enabled": false, "queue": {"write_merge_ms": 50}})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    spec.check_response("/api/v1/destinations/{name}", "patch", 200, &r.json());
    assert_eq!(r.json()["enabled"], false);
    assert_eq!(r.json()["queue"]["write_merge_ms"], 50);
    let r = api.call(
        "PATCH",
        "/api/v1/destinations/nope",
        Some(&json!({"enabled": true})),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = api.call(
        "PATCH",
        "/api/v1/destinations/tw",
        Some(&json!({"url": "rtmp://h"})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    for (patch, says) in [
        (json!({"rendition": 5}), "a rendition name or null"),
        (
            json!({"rendition": "720p"}),
            "no [[transcode.rendition]] is named `720p`",
        ),
        (
            json!({"video_track": 300}),
            "video_track: `300` is not a track id: 0 to 255",
        ),
        (
            json!({"audio_track": 1.5}),
            "audio_track: a track id (0 to 255) or null",
        ),
    ] {
        let r = api.call("PATCH", "/api/v1/destinations/tw", Some(&patch));
        assert_eq!(r.status, 400, "{patch}: {}", r.body);
        assert!(r.body.contains(says), "{patch}: {}", r.body);
    }
    // Tracks: set, shown, one cleared with null (back to every track), the other kept.
    let r = api.call(
        "PATCH",
        "/api/v1/destinations/tw",
        Some(&json!({"video_track": 1, "audio_track": 0})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    spec.check_response("/api/v1/destinations/{name}", "patch", 200, &r.json());
    assert_eq!(
        (
            r.json()["video_track"].clone(),
            r.json()["audio_track"].clone()
        ),
        (json!(1), json!(0))
    );
    let r = api.call(
        "PATCH",
        "/api/v1/destinations/tw",
        Some(&json!({"video_track": null})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            r.json()["video_track"].clone(),
            r.json()["audio_track"].clone()
        ),
        (json!(null), json!(0))
    );
    let list = api.call("GET", "/api/v1/destinations", None).json();
    spec.check_response("/api/v1/destinations", "get", 200, &list);
    let tw = list["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "tw")
        .unwrap();
    assert_eq!(
        (tw["video_track"].clone(), tw["audio_track"].clone()),
        (json!(null), json!(0)),
        "{tw}"
    );
    let r = api.call("DELETE", "/api/v1/destinations/tw", None);
    assert_eq!(r.status, 204, "{}", r.body);
    let r = api.call("DELETE", "/api/v1/destinations/tw", None);
    assert_eq!(r.status, 404, "{}", r.body);
    // Every answer above came through the token; without it the list is refused.
    assert_eq!(
        Api::new(prism.http_addr.unwrap(), None)
            .call("GET", "/api/v1/destinations", None)
            .status,
        401
    );
}

/// A destination may push a `[[transcode]]` rendition instead of the source: the console's
/// form lists the stream's ladder, and the sink receives the rendition's picture size.
#[test]
fn a_destination_pushes_the_rendition_chosen_in_the_console() {
    let spec = OpenApi::load();
    let clip = make_clip(5); // 320x240
    let nginx = Nginx::start();
    let dir = TempDir::new("console-rendition");
    let state = dir.join("state.json");
    let cfg = format!(
        "{}[[transcode]]\nstream = \"live/*\"\n[[transcode.rendition]]\nname = \"low\"\n\
         video = {{ codec = \"h264\", width = 160, height = 120, bitrate_kbps = 200, preset = \"veryfast\" }}\n\
         audio = {{ codec = \"aac\", bitrate_kbps = 64 }}\n",
        config(free_port(), free_port(), &state)
    );
    let prism = Prism::start(&cfg);
    let api = Api::new(prism.http_addr.unwrap(), Some(TOKEN));
    let _publisher = Publisher::start(&prism.rtmp_url("live", "main"), &clip, true);
    wait_for(Duration::from_secs(20), "the rendition stream live", || {
        api.stream(&spec, "live/main_low")
    });
    let list = api.call("GET", "/api/v1/destinations", None).json();
    spec.check_response("/api/v1/destinations", "get", 200, &list);
    assert_eq!(
        list["ladders"],
        json!([{"stream": "live/*", "renditions": ["low"]}])
    );

    let key = "ladder-key-0123456789";
    let v = node_json(
        "console_rendition.mjs",
        &[
            format!("http://{}/", prism.http_addr.unwrap()),
            TOKEN.into(),
            "live/main".into(),
            format!("rtmp://{}/app", nginx.rtmp_addr()),
            key.into(),
            "low".into(),
        ],
        Duration::from_secs(120),
    );
    eprintln!("[console] rendition: {v}");
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["options"], json!(["", "low"]), "{v}");

    // Saved with it; the API shows it; the sink gets the rendition, not the source.
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["destinations"][0]["rendition"], "low", "{saved}");
    let d = &api.call("GET", "/api/v1/destinations", None).json()["destinations"][0];
    assert_eq!(d["rendition"], "low", "{d}");
    nginx.wait_bytes_in(key, 20_000, Duration::from_secs(20));
    let p = probe(nginx.rtmp_url("app", key), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("probe: {e}"));
    assert_eq!((p.width, p.height), (Some(160), Some(120)), "{p:?}");
    assert!(p.video_frames_decoded >= 10, "{p:?}");

    // Back to the source (null): the sink's next session is the source's size.
    let r = api.call(
        "PATCH",
        "/api/v1/destinations/ladder",
        Some(&json!({"rendition": null})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    spec.check_response("/api/v1/destinations/{name}", "patch", 200, &r.json());
    assert_eq!(r.json()["rendition"], serde_json::Value::Null);
    let p = wait_for(Duration::from_secs(30), "the source at the sink", || {
        probe(nginx.rtmp_url("app", key), Duration::from_secs(20))
            .ok()
            .filter(|p| p.width == Some(320))
    });
    assert_eq!(p.height, Some(240), "{p:?}");
}
