//! The status page at `/` in headless Chromium (Debian's `chromium`): with a live stream
//! pushed to two nginx-rtmp destinations, the rendered page lists the stream and both
//! targets as up, with bitrates; a screenshot is kept in `target/test-artifacts/`. With
//! `[hls]`, a stream's preview button frames its HLS player page, which plays.

mod common;

use common::api::{target, Api, OpenApi};
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const KEY: &str = "pagekey";
const STREAM: &str = "live/pagekey";

fn chromium() -> &'static str {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(c).is_file() {
            return c;
        }
    }
    panic!("chromium not found (apt-get install chromium); run ./scripts/test.sh");
}

/// Runs headless Chromium on `url` with `extra` arguments; returns its stdout.
fn headless(url: &str, extra: &[&str]) -> String {
    let profile = TempDir::new("chromium");
    let out = run_with_timeout(
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url),
        Duration::from_secs(90),
    )
    .unwrap_or_else(|e| panic!("chromium: {e}"));
    assert!(
        out.status.success(),
        "chromium failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn page_lists_live_stream_and_targets() {
    let spec = OpenApi::load();
    let clip = make_clip(5);
    let (nginx_a, nginx_b) = (Nginx::start(), Nginx::start());
    let (url_a, url_b) = (
        nginx_a.rtmp_url("app", "{stream}"),
        nginx_b.rtmp_url("app", "{stream}"),
    );
    // No token, loopback listener: the page reads the API directly.
    let prism = Prism::start(&simple_config(
        free_port(),
        free_port(),
        &[("youtube", &url_a), ("twitch", &url_b)],
    ));
    let api = Api::new(prism.http_addr.unwrap(), None);
    let _publisher = Publisher::start(&prism.rtmp_url("live", KEY), &clip, true);
    wait_for(Duration::from_secs(15), "both targets up", || {
        api.stream(&spec, STREAM).filter(|s| {
            ["youtube", "twitch"]
                .iter()
                .all(|n| target(s, n).is_some_and(|t| t["state"] == "up"))
        })
    });
    // Let the bitrates settle to real measurements.
    std::thread::sleep(Duration::from_secs(2));

    let url = format!("http://{}/", prism.http_addr.unwrap());
    let dom = headless(&url, &["--dump-dom"]);
    assert!(dom.contains(STREAM), "stream missing from the page:\n{dom}");
    for name in ["youtube", "twitch"] {
        assert!(
            dom.contains(&format!("data-target=\"{name}\" data-state=\"up\"")),
            "target {name} not shown up:\n{dom}"
        );
    }
    assert!(dom.contains("state-up"), "{dom}");
    assert!(dom.contains("bit/s"), "bitrates shown:\n{dom}");
    assert!(dom.contains("h264 + aac"), "codecs shown:\n{dom}");
    assert!(
        dom.contains(r#"<div id="banner" class="banner" hidden="">"#),
        "no error shown:\n{dom}"
    );
    // Redacted destination URLs only.
    assert!(!dom.contains(&format!("/app/{KEY}")), "{dom}");

    // Screenshot as a test artifact.
    let dir = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create test-artifacts");
    let png = dir.join("status-page.png");
    let _ = std::fs::remove_file(&png);
    headless(
        &url,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1200,800",
            "--hide-scrollbars",
        ],
    );
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 10_000,
        "suspiciously small screenshot: {} bytes",
        bytes.len()
    );
    eprintln!("[status_page] screenshot: {}", png.display());
}

#[test]
fn page_with_a_token_asks_for_it_then_uses_it() {
    let token = "page-token-0123456789abcdef";
    let cfg = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\ntoken = \"{token}\"\n",
        free_port(),
        free_port()
    );
    let prism = Prism::start(&cfg);
    let base = format!("http://{}/", prism.http_addr.unwrap());
    let dom = headless(&base, &["--dump-dom"]);
    // (The script's own text is in the dump too: look at the rendered elements.)
    assert!(
        dom.contains(
            r#"<div id="banner" class="banner">Sign in with the admin API token ([http] token)"#
        ) && dom.contains(r#"<section id="signin" class="card">"#),
        "page asks for the token:\n{dom}"
    );
    let dom = headless(&format!("{base}?token={token}"), &["--dump-dom"]);
    assert!(
        dom.contains(r#"<div class="empty">No live streams.</div>"#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"<div id="banner" class="banner" hidden="">"#),
        "{dom}"
    );
}

/// With `[hls]`, each stream served over HLS gets a preview button: clicking it frames the
/// stream's HLS player page (another port), which plays in Chromium.
#[test]
fn preview_plays_the_stream_over_hls() {
    let spec = OpenApi::load();
    let clip = make_clip(5);
    let hls_port = free_port();
    let cfg = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
         [hls]\nlisten = \"127.0.0.1:{hls_port}\"\nsegment_ms = 1000\npart_ms = 200\n\
         [[route]]\nstream = \"private/*\"\nhls = false\n",
        free_port(),
        free_port()
    );
    let prism = Prism::start(&cfg);
    let api = Api::new(prism.http_addr.unwrap(), None);
    let _shown = Publisher::start(&prism.rtmp_url("live", KEY), &clip, true);
    let _hidden = Publisher::start(&prism.rtmp_url("private", KEY), &clip, true);
    let live = wait_for(Duration::from_secs(15), "stream live", || {
        api.stream(&spec, STREAM)
    });
    assert_eq!(
        live["hls"],
        serde_json::json!({ "port": hls_port, "tls": false, "page": "/live/pagekey/" })
    );
    let private = wait_for(Duration::from_secs(15), "private stream live", || {
        api.stream(&spec, "private/pagekey")
    });
    assert!(private.get("hls").is_none(), "hls off by route: {private}");

    let v = node_json(
        "play.mjs",
        &[
            format!("http://{}/", prism.http_addr.unwrap()),
            "8".into(),
            format!("button[data-preview-for=\"{STREAM}\"]"),
        ],
        Duration::from_secs(90),
    );
    let played = v["report"]["currentTime"].as_f64().unwrap_or(0.0);
    eprintln!("[status_page] preview played {played:.1} s");
    assert!(played > 3.0, "the preview played only {played} s: {v}");
    // A stall on a saturated 2-core box, and the hole it leaves, are recovered from (see
    // tests/common/hls.rs); nothing else.
    let others = common::hls::unrecovered_errors(&v["report"]);
    assert!(others.is_empty(), "hls.js errors: {v}");
}

/// With `[webrtc]`, the preview is a sub-second WHEP session played in the page (muted):
/// Chromium decodes frames of a stream ffmpeg publishes over RTMP, and closing the preview
/// ends the session. The stream's HLS player page offers WebRTC too.
#[test]
fn preview_plays_the_stream_over_whep_with_webrtc() {
    let spec = OpenApi::load();
    let clip = make_clip(5);
    let (sig, udp, hls) = (free_port(), free_udp_port(), free_port());
    let cfg = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
         [hls]\nlisten = \"127.0.0.1:{hls}\"\n\
         [webrtc]\nlisten = \"127.0.0.1:{sig}\"\nudp = \"127.0.0.1:{udp}\"\n",
        free_port(),
        free_port()
    );
    let prism = Prism::start(&cfg);
    let api = Api::new(prism.http_addr.unwrap(), None);
    let _publisher = Publisher::start(&prism.rtmp_url("live", KEY), &clip, true);
    let live = wait_for(Duration::from_secs(15), "stream live", || {
        api.stream(&spec, STREAM)
    });
    assert_eq!(
        live["webrtc"],
        serde_json::json!({ "port": sig, "tls": false, "whep": "/live/pagekey/whep" })
    );

    let secs = 6;
    let artifacts = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("create test-artifacts");
    let shot = artifacts.join("console-preview-webrtc.png");
    let v = node_json(
        "preview_whep.mjs",
        &[
            format!("http://{}/", prism.http_addr.unwrap()),
            STREAM.into(),
            secs.to_string(),
            "console".into(),
            shot.display().to_string(),
        ],
        Duration::from_secs(90),
    );
    eprintln!("[status_page] WHEP preview: {v}");
    eprintln!("[status_page] screenshot: {}", shot.display());
    assert!(v.get("error").is_none(), "{v:#}");
    assert_eq!(v["kind"], "webrtc", "fell back from WebRTC: {v:#}");
    let samples = v["samples"].as_array().unwrap();
    let frames = |i: usize| samples[i]["framesDecoded"].as_f64().unwrap_or(0.0);
    let (first, last) = (frames(1), frames(samples.len() - 1));
    let fps = (last - first) / (samples.len() - 2) as f64;
    eprintln!(
        "[status_page] WHEP preview decoded {last} frames, {fps:.1} fps after the first seconds"
    );
    // The source is 25 fps.
    assert!(fps > 10.0, "framesDecoded did not keep rising: {v:#}");
    let end = &samples[samples.len() - 1];
    assert_eq!(end["videoWidth"], 320, "{v:#}");
    assert_eq!(end["muted"], true, "{v:#}");
    assert!(end["currentTime"].as_f64().unwrap_or(0.0) > 2.0, "{v:#}");
    assert_eq!(v["closed"], true, "{v:#}");
    let png = std::fs::read(&shot).expect("preview screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        shot.display()
    );
    // Closing the preview DELETEs the session.
    wait_until(Duration::from_secs(10), "the WHEP session to end", || {
        prism.metric_value("prism_webrtc_sessions{direction=\"whep\"}") == Some(0.0)
    });

    // The stream's HLS player page offers the same: its WebRTC button switches to WHEP.
    let v = node_json(
        "preview_whep.mjs",
        &[
            format!("http://127.0.0.1:{hls}/live/{KEY}/"),
            STREAM.into(),
            secs.to_string(),
            "hls-page".into(),
        ],
        Duration::from_secs(90),
    );
    eprintln!("[status_page] HLS page over WebRTC: {v}");
    assert!(v.get("error").is_none(), "{v:#}");
    let samples = v["samples"].as_array().unwrap();
    let frames = |i: usize| samples[i]["framesDecoded"].as_f64().unwrap_or(0.0);
    let fps = (frames(samples.len() - 1) - frames(1)) / (samples.len() - 2) as f64;
    eprintln!("[status_page] HLS page's WebRTC player: {fps:.1} fps");
    assert!(fps > 10.0, "framesDecoded did not keep rising: {v:#}");
    let end = &samples[samples.len() - 1];
    assert_eq!(end["hls"], false, "hls.js still attached: {v:#}");
    assert_eq!(end["status"], "playing over WebRTC", "{v:#}");
    assert_eq!(end["videoWidth"], 320, "{v:#}");
}
