//! Pulled sources (`[[source]]`): Prism fetches a stream from an RTMP server (nginx-rtmp)
//! or an SRT listener (srt-live-transmit) and serves it like any published stream; a
//! player on Prism decodes it. The source survives its origin restarting, and a stream
//! already live from a pusher is not fought over.

mod common;

use common::*;
use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A config with RTMP, admin HTTP and the given `[[source]]` tables.
fn config(rtmp_port: u16, http_port: u16, sources: &[(&str, &str)]) -> String {
    let mut s = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp_port}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n\
         [stream]\nreconnect_grace_ms = 3000\n"
    );
    for (stream, url) in sources {
        s.push_str(&format!(
            "\n[[source]]\nstream = \"{stream}\"\nurl = \"{url}\"\n"
        ));
    }
    s
}

#[test]
fn rtmp_source_from_nginx_plays_on_prism_and_refuses_duplicates() {
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let mut origin = Publisher::start(&nginx.rtmp_url("app", "cam"), &clip, true);
    nginx.wait_bytes_in("cam", 50_000, Duration::from_secs(15));
    // `live/pushed` pulls from a port where nothing listens: it keeps failing to connect,
    // until an encoder pushes that stream to Prism; then it is refused as already live.
    let dead = free_port();
    let prism = Prism::start(&config(
        free_port(),
        free_port(),
        &[
            ("live/cam", &nginx.rtmp_url("app", "cam")),
            ("live/pushed", &format!("rtmp://127.0.0.1:{dead}/app/x")),
        ],
    ));
    wait_until(Duration::from_secs(15), "the source to publish", || {
        prism.metric_value("prism_source_up{stream=\"live/cam\"}") == Some(1.0)
    });
    // A player on Prism decodes the pulled stream.
    let frames = decode_ok(&prism.rtmp_url("live", "cam"), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\norigin: {}", origin.stderr()));
    assert!(frames >= 25, "decoded {frames} frames");
    assert!(
        prism.metric_value("prism_source_bytes_received_total{stream=\"live/cam\"}")
            > Some(100_000.0)
    );
    // The source is a publisher like any other: a pusher of the same stream is refused.
    let mut dup = Publisher::start(&prism.rtmp_url("live", "cam"), &clip, false);
    wait_until(
        Duration::from_secs(10),
        "the duplicate pusher to be refused",
        || prism.metric_value("prism_publish_rejected_total{reason=\"already_live\"}") >= Some(1.0),
    );
    dup.kill();
    // The other way round: pushed first, the source is refused with a counted reason.
    let mut pusher = Publisher::start(&prism.rtmp_url("live", "pushed"), &clip, true);
    wait_until(Duration::from_secs(20), "the source to be refused", || {
        prism.metric_value(
            "prism_source_errors_total{reason=\"already_live\",stream=\"live/pushed\"}",
        ) >= Some(1.0)
    });
    assert!(
        prism.metric_value("prism_source_errors_total{reason=\"connect\",stream=\"live/pushed\"}")
            >= Some(1.0)
    );
    assert!(prism
        .stderr()
        .contains("already live from a pushing publisher"));
    // The pusher still publishes: the source did not take its stream.
    let frames = decode_ok(&prism.rtmp_url("live", "pushed"), Duration::from_secs(20)).unwrap();
    assert!(frames >= 25);
    pusher.kill();
    origin.kill();
}

/// srt-live-transmit relaying UDP MPEG-TS to the SRT caller of its listener port: the
/// "SRT encoder" Prism pulls from. Killed on drop.
struct SrtOrigin {
    transmit: Child,
    feeder: Child,
    log: TempDir,
}

impl SrtOrigin {
    fn start(clip: &std::path::Path, srt_port: u16) -> SrtOrigin {
        let udp = free_udp_port();
        let log = TempDir::new("srt-origin");
        let transmit = Command::new("srt-live-transmit")
            .arg(format!("udp://127.0.0.1:{udp}"))
            .arg(format!(
                "srt://127.0.0.1:{srt_port}?mode=listener&latency=120"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log.join("slt.stderr")).unwrap())
            .spawn()
            .expect("spawn srt-live-transmit");
        let feeder = Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-hide_banner",
                "-v",
                "warning",
                "-re",
                "-stream_loop",
                "-1",
            ])
            .arg("-i")
            .arg(clip)
            .args(["-c", "copy", "-f", "mpegts"])
            .arg(format!("udp://127.0.0.1:{udp}?pkt_size=1316"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log.join("ffmpeg.stderr")).unwrap())
            .spawn()
            .expect("spawn ffmpeg");
        SrtOrigin {
            transmit,
            feeder,
            log,
        }
    }

    fn logs(&self) -> String {
        format!(
            "srt-live-transmit:\n{}\nffmpeg:\n{}",
            tail_file(&self.log.join("slt.stderr"), 30),
            tail_file(&self.log.join("ffmpeg.stderr"), 30)
        )
    }
}

impl Drop for SrtOrigin {
    fn drop(&mut self) {
        for c in [&mut self.transmit, &mut self.feeder] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn srt_source_from_srt_live_transmit_survives_its_restart() {
    let clip = make_clip(5);
    let srt_port = free_udp_port();
    let origin = SrtOrigin::start(&clip, srt_port);
    let prism = Prism::start(&config(
        free_port(),
        free_port(),
        &[("live/srt", &format!("srt://127.0.0.1:{srt_port}"))],
    ));
    wait_until(Duration::from_secs(20), "the SRT source to publish", || {
        prism.metric_value("prism_source_up{stream=\"live/srt\"}") == Some(1.0)
    });
    let frames = decode_ok(&prism.rtmp_url("live", "srt"), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", origin.logs()));
    assert!(frames >= 25, "decoded {frames} frames");

    // The origin goes away and comes back on the same port: Prism pulls again.
    drop(origin);
    wait_until(Duration::from_secs(20), "the source to notice", || {
        prism.metric_value("prism_source_up{stream=\"live/srt\"}") == Some(0.0)
    });
    let origin = SrtOrigin::start(&clip, srt_port);
    wait_until(Duration::from_secs(30), "the source to pull again", || {
        prism.metric_value("prism_source_up{stream=\"live/srt\"}") == Some(1.0)
    });
    assert!(prism.metric_value("prism_source_reconnects_total{stream=\"live/srt\"}") >= Some(1.0));
    let frames = decode_ok(&prism.rtmp_url("live", "srt"), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", origin.logs()));
    assert!(frames >= 25, "decoded {frames} frames after the restart");
}

/// Rewrites the config file and sends SIGHUP; returns the log lines of the reload.
#[track_caller]
fn reload(prism: &Prism, text: &str) -> String {
    let before = prism.stderr().lines().count();
    fs::write(&prism.config_path, text).expect("rewrite config");
    prism.signal("HUP");
    wait_for(Duration::from_secs(10), "prism to log the reload", || {
        let log = prism.stderr();
        let new: Vec<&str> = log.lines().skip(before).collect();
        new.iter()
            .any(|l| l.contains("config reloaded") || l.contains("config reload refused"))
            .then(|| new.join("\n"))
    })
}

fn source_up(prism: &Prism, stream: &str) -> Option<f64> {
    prism.metric_value(&format!("prism_source_up{{stream=\"{stream}\"}}"))
}

#[test]
fn sources_follow_reloads_and_the_admin_api() {
    use common::api::{Api, OpenApi};
    use serde_json::json;
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let mut origin = Publisher::start(&nginx.rtmp_url("app", "cam"), &clip, true);
    nginx.wait_bytes_in("cam", 50_000, Duration::from_secs(15));
    let (rtmp, http) = (free_port(), free_port());
    let prism = Prism::start(&config(rtmp, http, &[]));
    let api = Api::new(prism.http_addr.unwrap(), None);
    let spec = OpenApi::load();
    let list = |api: &Api| {
        let r = api.call("GET", "/api/v1/sources", None);
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        spec.check_response("/api/v1/sources", "get", 200, &v);
        v["sources"].as_array().unwrap().clone()
    };
    assert!(list(&api).is_empty());

    // SIGHUP adds a configured source (credentials in its URL never shown).
    let nginx_port = nginx.rtmp_addr().port();
    let with_a = config(
        rtmp,
        http,
        &[(
            "live/a",
            &format!("rtmp://user:hunter22@127.0.0.1:{nginx_port}/app/cam"),
        )],
    );
    let log = reload(&prism, &with_a);
    assert!(
        log.contains("sources updated") && log.contains("live/a"),
        "{log}"
    );
    wait_until(Duration::from_secs(15), "live/a to pull", || {
        source_up(&prism, "live/a") == Some(1.0)
    });
    let sources = list(&api);
    assert_eq!(sources.len(), 1, "{sources:?}");
    assert_eq!(sources[0]["stream"], "live/a");
    assert_eq!(sources[0]["origin"], "config");
    assert_eq!(sources[0]["state"], "up");
    assert!(sources[0]["bytes_received"].as_u64() > Some(0));
    assert!(!sources[0]["url"].as_str().unwrap().contains("hunter22"));
    assert!(!prism.stderr().contains("hunter22"));

    // The API adds one; the same stream again is a conflict; a camera's password stays out
    // of answers and logs.
    let r = api.call(
        "POST",
        "/api/v1/sources",
        Some(&json!({"stream": "live/b", "url": nginx.rtmp_url("app", "cam")})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    spec.check_response("/api/v1/sources", "post", 201, &r.json());
    assert_eq!(r.header("location"), Some("/api/v1/sources/live/b"));
    wait_until(Duration::from_secs(15), "live/b to pull", || {
        source_up(&prism, "live/b") == Some(1.0)
    });
    decode_ok(&prism.rtmp_url("live", "b"), Duration::from_secs(20)).unwrap();
    let r = api.call(
        "POST",
        "/api/v1/sources",
        Some(&json!({"stream": "live/b", "url": nginx.rtmp_url("app", "cam")})),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    let r = api.call(
        "POST",
        "/api/v1/sources",
        Some(&json!({"stream": "cams/door", "url": "rtsp://admin:hunter22@192.0.2.10/ch1"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(!r.body.contains("hunter22"), "{}", r.body);
    assert_eq!(
        api.call("DELETE", "/api/v1/sources/cams/door", None).status,
        204
    );
    let r = api.call(
        "POST",
        "/api/v1/sources",
        Some(&json!({"stream": "nokey", "url": nginx.rtmp_url("app", "cam")})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api.call("GET", "/api/v1/sources/live/b", None);
    assert_eq!(r.status, 200);
    spec.check_response("/api/v1/sources/{app}/{key}", "get", 200, &r.json());
    assert_eq!(r.json()["origin"], "api");

    // A reload without [[source]] stops the configured one and leaves the API's alone.
    let log = reload(&prism, &config(rtmp, http, &[]));
    assert!(log.contains("sources updated"), "{log}");
    wait_until(Duration::from_secs(10), "live/a to end", || {
        prism.metric_value("prism_streams_active") == Some(1.0)
            && source_up(&prism, "live/a").is_none()
    });
    let sources = list(&api);
    assert_eq!(sources.len(), 1, "{sources:?}");
    assert_eq!(sources[0]["stream"], "live/b");

    // DELETE stops it: its stream ends.
    assert_eq!(
        api.call("DELETE", "/api/v1/sources/live/b", None).status,
        204
    );
    assert_eq!(
        api.call("DELETE", "/api/v1/sources/live/b", None).status,
        404
    );
    wait_until(Duration::from_secs(10), "live/b to end", || {
        prism.metric_value("prism_streams_active") == Some(0.0)
    });
    assert!(list(&api).is_empty());

    // A reload adding a camera starts pulling it (192.0.2.10 does not answer: it stays
    // connecting), its credentials redacted.
    let log = reload(
        &prism,
        &config(
            rtmp,
            http,
            &[("cams/door", "rtsp://u:hunter22@192.0.2.10/ch1")],
        ),
    );
    assert!(log.contains("sources updated"), "{log}");
    let sources = list(&api);
    assert_eq!(sources.len(), 1, "{sources:?}");
    assert_eq!(sources[0]["stream"], "cams/door");
    assert!(!prism.stderr().contains("hunter22"));
    origin.kill();
}

#[test]
fn check_accepts_every_source_scheme() {
    let out = prism_check(&config(
        free_port(),
        free_port(),
        &[("cams/door", "rtsp://u:hunter22@192.0.2.10/ch1")],
    ));
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("hunter22"), "{text}");
    let out = prism_check(&config(
        free_port(),
        free_port(),
        &[(
            "live/x",
            "srt://127.0.0.1:9000?streamid=#!::r=live/x,m=request",
        )],
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The status page (headless Chromium) lists sources with their state and last error,
/// URLs redacted.
#[test]
fn status_page_lists_sources() {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|c| std::path::Path::new(c).is_file())
        .expect("chromium not found (apt-get install chromium); run ./scripts/test.sh");
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let mut origin = Publisher::start(&nginx.rtmp_url("app", "cam"), &clip, true);
    nginx.wait_bytes_in("cam", 50_000, Duration::from_secs(15));
    let dead = free_port();
    let nginx_port = nginx.rtmp_addr().port();
    let prism = Prism::start(&config(
        free_port(),
        free_port(),
        &[
            (
                "live/cam",
                &format!("rtmp://u:hunter22@127.0.0.1:{nginx_port}/app/cam"),
            ),
            ("live/dead", &format!("rtmp://127.0.0.1:{dead}/app/x")),
        ],
    ));
    wait_until(
        Duration::from_secs(15),
        "live/cam up, live/dead failed",
        || {
            source_up(&prism, "live/cam") == Some(1.0)
                && prism.metric_value(
                    "prism_source_errors_total{reason=\"connect\",stream=\"live/dead\"}",
                ) >= Some(1.0)
        },
    );
    let profile = TempDir::new("chromium");
    let out = run_with_timeout(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--virtual-time-budget=5000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("http://{}/", prism.http_addr.unwrap())),
        Duration::from_secs(90),
    )
    .expect("chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("pulled sources"), "{dom}");
    assert!(
        dom.contains(r#"data-source="live/cam" data-state="up""#),
        "{dom}"
    );
    assert!(dom.contains(r#"data-source="live/dead""#), "{dom}");
    assert!(dom.contains("connect:"), "last error shown:\n{dom}");
    assert!(!dom.contains("hunter22"), "{dom}");
    origin.kill();
}
