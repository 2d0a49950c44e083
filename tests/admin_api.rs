//! The admin API against the real binary: a live stream pushed to two nginx-rtmp
//! destinations is listed with its publisher, codecs, bitrates and targets; a third
//! destination is added and removed at run time while the others keep flowing untouched;
//! the publisher is kicked; access needs the bearer token. Every JSON answer is checked
//! against the OpenAPI description the binary serves.

mod common;

use common::api::{http_request, simple_pattern_matches, target, Api, OpenApi};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-0123456789abcdef";
const KEY: &str = "apikey";
const STREAM: &str = "live/apikey";

fn config_with_token(rtmp: u16, http: u16, targets: &[(&str, &str)], token: &str) -> String {
    simple_config(rtmp, http, targets).replacen(
        "[http]\n",
        &format!("[http]\ntoken = \"{token}\"\n"),
        1,
    )
}

/// No routes: just the listeners (and the token).
fn bare_config(rtmp: u16, http_listen: &str, token: Option<&str>) -> String {
    let mut s =
        format!("[rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\n\n[http]\nlisten = \"{http_listen}\"\n");
    if let Some(t) = token {
        s.push_str(&format!("token = \"{t}\"\n"));
    }
    s
}

fn num(v: &Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing in {v:#}"))
}

#[test]
fn served_description_is_the_checked_in_one_and_the_validator_works() {
    let spec = OpenApi::load();
    let prism = Prism::start(&bare_config(
        free_port(),
        &format!("127.0.0.1:{}", free_port()),
        Some(TOKEN),
    ));
    let api = Api::new(prism.http_addr.unwrap(), Some(TOKEN));
    let r = api.call("GET", "/api/v1/openapi.json", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), spec.doc);

    // The validator itself: it must reject what does not fit.
    assert!(simple_pattern_matches(
        "^[A-Za-z0-9_.-]{1,64}$",
        "you-tube.1"
    ));
    assert!(!simple_pattern_matches("^[A-Za-z0-9_.-]{1,64}$", "a b"));
    let schema = json!({"$ref": "#/components/schemas/Stream"});
    let mut errors = Vec::new();
    spec.validate(
        &schema,
        &json!({"name": 1, "extra": true, "targets": [{"name": "x"}]}),
        "$",
        &mut errors,
    );
    assert!(
        errors.iter().any(|e| e.contains("$.name: expected string")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("unexpected property `extra`")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("missing required `bitrate_bps`")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("$.targets[0]: missing required `state`")),
        "{errors:?}"
    );

    // An empty relay lists nothing.
    let v = api.streams(&spec);
    assert_eq!(v, json!({"streams": []}));
}

#[test]
fn access_needs_the_token_and_metrics_stay_open() {
    let spec = OpenApi::load();
    let prism = Prism::start(&bare_config(
        free_port(),
        &format!("127.0.0.1:{}", free_port()),
        Some(TOKEN),
    ));
    let addr = prism.http_addr.unwrap();
    let check_401 = |r: common::api::HttpResponse, what: &str| {
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{what}: {challenge:?}");
        spec.check_response("/api/v1/streams", "get", 401, &r.json());
        assert!(!r.body.contains(TOKEN));
    };
    check_401(
        Api::new(addr, None).call("GET", "/api/v1/streams", None),
        "no token",
    );
    check_401(
        Api::new(addr, Some("test-token-0123456789abcdeX")).call("GET", "/api/v1/streams", None),
        "wrong token",
    );
    check_401(
        Api::new(addr, Some("short")).call("DELETE", "/api/v1/streams/live/x", None),
        "short token",
    );
    let r = http_request(
        addr,
        "GET",
        "/api/v1/streams",
        &[("Authorization", &format!("Basic {TOKEN}"))],
        None,
    )
    .unwrap();
    check_401(r, "wrong scheme");
    // Every /api path is guarded, known or not.
    check_401(
        Api::new(addr, None).call("GET", "/api/v2/nothing", None),
        "unknown path",
    );
    let ok = Api::new(addr, Some(TOKEN));
    assert_eq!(ok.call("GET", "/api/v1/streams", None).status, 200);
    let r = ok.call("GET", "/api/v1/nothing", None);
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
    let r = ok.call("PUT", "/api/v1/streams", None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    spec.check_response("/api/v1/streams", "get", 405, &r.json());
    // Observability and the page stay open.
    assert_eq!(prism.http_get("/metrics").unwrap().0, 200);
    assert_eq!(prism.http_get("/healthz").unwrap().0, 200);
    let (code, page) = prism.http_get("/").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("<title>Prism console</title>"));
    // The token never shows in the logs.
    assert!(!prism.stderr().contains(TOKEN));
}

#[test]
fn without_a_token_only_loopback_answers() {
    let spec = OpenApi::load();
    // Loopback listener: the API answers, but only to loopback Host names.
    let prism = Prism::start(&bare_config(
        free_port(),
        &format!("127.0.0.1:{}", free_port()),
        None,
    ));
    let addr = prism.http_addr.unwrap();
    assert_eq!(
        Api::new(addr, None)
            .call("GET", "/api/v1/streams", None)
            .status,
        200
    );
    let r = http_request(
        addr,
        "GET",
        "/api/v1/streams",
        &[("Host", "localhost:1")],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = http_request(
        addr,
        "GET",
        "/api/v1/streams",
        &[("Host", "rebound.example:9935")],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    spec.check_response("/api/v1/streams", "get", 403, &r.json());
    drop(prism);

    // Listening on all addresses without a token: the API is off and says why.
    let prism = Prism::start(&bare_config(
        free_port(),
        &format!("0.0.0.0:{}", free_port()),
        None,
    ));
    let r = Api::new(prism.http_addr.unwrap(), None).call("GET", "/api/v1/streams", None);
    assert_eq!(r.status, 403, "{}", r.body);
    spec.check_response("/api/v1/streams", "get", 403, &r.json());
    let msg = r.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(msg.contains("token") && msg.contains("[http]"), "{msg}");
    assert_eq!(prism.http_get("/metrics").unwrap().0, 200);
    assert!(
        prism.stderr().contains("admin API is off"),
        "start-up warns about it:\n{}",
        prism.stderr()
    );
}

#[test]
fn list_add_remove_and_kick() {
    let spec = OpenApi::load();
    let clip = make_clip(5);
    let (nginx_a, nginx_b, nginx_c) = (Nginx::start(), Nginx::start(), Nginx::start());
    let (url_a, url_b) = (
        nginx_a.rtmp_url("app", "{stream}"),
        nginx_b.rtmp_url("app", "{stream}"),
    );
    let prism = Prism::start(&config_with_token(
        free_port(),
        free_port(),
        &[("a", &url_a), ("b", &url_b)],
        TOKEN,
    ));
    let api = Api::new(prism.http_addr.unwrap(), Some(TOKEN));
    let mut publisher = Publisher::start(&prism.rtmp_url("live", KEY), &clip, true);

    // Listed, with both configured targets up.
    let s = wait_for(Duration::from_secs(15), "a and b up in the API", || {
        api.stream(&spec, STREAM).filter(|s| {
            ["a", "b"]
                .iter()
                .all(|n| target(s, n).is_some_and(|t| t["state"] == "up"))
        })
    });
    assert_eq!(
        (s["app"].as_str(), s["key"].as_str()),
        (Some("live"), Some(KEY))
    );
    assert_eq!(s["state"], "live");
    assert_eq!(s["publisher"]["transport"], "rtmp");
    let peer = s["publisher"]["address"].as_str().unwrap_or_default();
    assert!(peer.starts_with("127.0.0.1:"), "{peer}");
    assert_eq!(s["codecs"], json!({"video": "h264", "audio": "aac"}));
    for name in ["a", "b"] {
        let t = target(&s, name).unwrap();
        let url = t["url"].as_str().unwrap();
        assert!(
            url.ends_with("/app/<redacted>") && !url.contains(KEY),
            "target urls are redacted: {url}"
        );
        assert_eq!(t["origin"], "config");
    }
    // Bitrates: measured over a couple of seconds of real-time publishing. The clip is
    // H.264 320x240 + 64 kbit/s AAC: some hundreds of kbit/s.
    std::thread::sleep(Duration::from_millis(2500));
    let s = api.stream(&spec, STREAM).expect("still live");
    let plausible = |bps: f64, what: &str| {
        assert!(
            (50_000.0..20_000_000.0).contains(&bps),
            "{what} bitrate {bps} bit/s is implausible"
        );
    };
    plausible(num(&s, "bitrate_bps"), "ingest");
    assert!(
        num(&s, "bytes_in") > 0.0 && num(&s, "uptime_seconds") >= 2.0,
        "{s:#}"
    );
    for name in ["a", "b"] {
        let t = target(&s, name).unwrap();
        plausible(num(t, "bitrate_bps"), name);
        assert_eq!(num(t, "reconnects"), 0.0, "{t:#}");
        assert!(num(t, "bytes_sent") > 0.0);
    }
    assert!(num(&s, "subscribers") >= 2.0);

    // Add a third destination at run time.
    let targets_path = format!("/api/v1/streams/live/{KEY}/targets");
    let new = json!({"name": "c", "url": nginx_c.rtmp_url("app", "{stream}")});
    let a_before = nginx_a.bytes_in(KEY).unwrap_or(0);
    let b_before = nginx_b.bytes_in(KEY).unwrap_or(0);
    let r = api.call("POST", &targets_path, Some(&new));
    assert_eq!(r.status, 201, "{}", r.body);
    let t = r.json();
    spec.check_response("/api/v1/streams/{app}/{key}/targets", "post", 201, &t);
    assert_eq!(
        (t["name"].as_str(), t["origin"].as_str()),
        (Some("c"), Some("api"))
    );
    assert!(
        t["url"].as_str().unwrap().ends_with("/app/<redacted>"),
        "{t}"
    );
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/streams/live/{KEY}/targets/c").as_str())
    );
    // Conflicts and bad input, each described.
    let refused = |r: common::api::HttpResponse, status: u16, what: &str| {
        assert_eq!(r.status, status, "{what}: {}", r.body);
        spec.check_response(
            "/api/v1/streams/{app}/{key}/targets",
            "post",
            status,
            &r.json(),
        );
        r.json()["error"].as_str().unwrap_or_default().to_owned()
    };
    refused(
        api.call("POST", &targets_path, Some(&new)),
        409,
        "same name again",
    );
    let msg = refused(
        api.call(
            "POST",
            &targets_path,
            Some(&json!({"name": "d", "url": "rtmp://h/onlyapp"})),
        ),
        400,
        "url without key",
    );
    assert!(msg.starts_with("url:"), "{msg}");
    refused(
        api.call(
            "POST",
            &targets_path,
            Some(&json!({"name": "bad name", "url": new["url"]})),
        ),
        400,
        "bad name",
    );
    refused(
        api.call("POST", &targets_path, Some(&json!({"name": "d"}))),
        400,
        "missing url",
    );
    refused(
        api.call("POST", "/api/v1/streams/live/nobody/targets", Some(&new)),
        404,
        "stream not live",
    );
    let auth = format!("Bearer {TOKEN}");
    let r = http_request(
        api.addr,
        "POST",
        &targets_path,
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        Some(new.to_string().as_bytes()),
    )
    .unwrap();
    refused(r, 415, "not declared JSON");
    let big = vec![b' '; 100 * 1024];
    let r = http_request(
        api.addr,
        "POST",
        &targets_path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(&big),
    )
    .unwrap();
    refused(r, 413, "too large");

    // c receives the stream in real time (beyond the cached GOP it starts with) while a
    // and b keep flowing, without reconnecting.
    let c_start = nginx_c.wait_bytes_in(KEY, 0, Duration::from_secs(15));
    let (a_mid, b_mid) = (
        nginx_a.bytes_in(KEY).unwrap_or(0),
        nginx_b.bytes_in(KEY).unwrap_or(0),
    );
    nginx_c.wait_bytes_in(KEY, c_start + 200_000, Duration::from_secs(15));
    assert!(nginx_c.is_publishing(KEY));
    for (name, nginx, mid) in [("a", &nginx_a, a_mid), ("b", &nginx_b, b_mid)] {
        let now = nginx.bytes_in(KEY).unwrap_or(0);
        assert!(
            now >= mid + 100_000,
            "{name} slowed down while c was added: {mid} -> {now}"
        );
    }
    let s = wait_for(Duration::from_secs(10), "c up in the API", || {
        api.stream(&spec, STREAM)
            .filter(|s| target(s, "c").is_some_and(|t| t["state"] == "up"))
    });
    for (name, nginx, before) in [("a", &nginx_a, a_before), ("b", &nginx_b, b_before)] {
        let now = nginx.bytes_in(KEY).unwrap_or(0);
        assert!(now > before, "{name} stopped flowing: {before} -> {now}");
        let t = target(&s, name).unwrap();
        assert_eq!(t["state"], "up", "{name}: {t:#}");
        assert_eq!(num(t, "reconnects"), 0.0, "{name}: {t:#}");
    }
    assert_eq!(
        prism.metric_sum("prism_target_reconnects_total"),
        Some(0.0),
        "nobody reconnected"
    );

    // Remove c: it unpublishes from its destination and leaves the list; a and b stay.
    let r = api.call("DELETE", &format!("{targets_path}/c"), None);
    assert_eq!(r.status, 204, "{}", r.body);
    wait_until(Duration::from_secs(10), "c to unpublish from nginx", || {
        !nginx_c.is_publishing(KEY)
    });
    wait_until(Duration::from_secs(10), "c gone from the API", || {
        api.stream(&spec, STREAM)
            .is_some_and(|s| target(&s, "c").is_none())
    });
    let r = api.call("DELETE", &format!("{targets_path}/c"), None);
    assert_eq!(r.status, 404, "{}", r.body);
    spec.check_response(
        "/api/v1/streams/{app}/{key}/targets/{name}",
        "delete",
        404,
        &r.json(),
    );
    let a_mid = nginx_a.bytes_in(KEY).unwrap_or(0);
    wait_until(Duration::from_secs(10), "a to keep receiving", || {
        nginx_a.bytes_in(KEY).unwrap_or(0) > a_mid
    });
    let s = api.stream(&spec, STREAM).expect("still live");
    for name in ["a", "b"] {
        let t = target(&s, name).unwrap();
        assert_eq!(
            (t["state"].as_str(), num(t, "reconnects")),
            (Some("up"), 0.0),
            "{t:#}"
        );
    }
    // c's series went with it.
    assert_eq!(
        prism.metric_value(&format!(
            "prism_target_up{{stream=\"{STREAM}\",target=\"c\"}}"
        )),
        None
    );
    // The same name can be used again once it is gone.
    let r = api.call("POST", &targets_path, Some(&new));
    assert_eq!(r.status, 201, "{}", r.body);
    nginx_c.wait_bytes_in(KEY, 0, Duration::from_secs(15));
    let r = api.call("DELETE", &format!("{targets_path}/c"), None);
    assert_eq!(r.status, 204, "{}", r.body);

    // A destination that refuses: the target backs off with the reason; removing it stops
    // the retries at once.
    let dead =
        json!({"name": "dead", "url": format!("rtmp://127.0.0.1:{}/app/{{stream}}", free_port())});
    let r = api.call("POST", &targets_path, Some(&dead));
    assert_eq!(r.status, 201, "{}", r.body);
    let s = wait_for(Duration::from_secs(10), "dead in backoff", || {
        api.stream(&spec, STREAM)
            .filter(|s| target(s, "dead").is_some_and(|t| t["state"] == "backoff"))
    });
    let t = target(&s, "dead").unwrap();
    assert!(t["last_error"].is_string(), "{t:#}");
    assert_eq!(num(t, "bitrate_bps"), 0.0, "{t:#}");
    let r = api.call("DELETE", &format!("{targets_path}/dead"), None);
    assert_eq!(r.status, 204, "{}", r.body);
    wait_until(Duration::from_secs(2), "dead gone at once", || {
        api.stream(&spec, STREAM)
            .is_some_and(|s| target(&s, "dead").is_none())
    });

    // One stream's view.
    let r = api.call("GET", &format!("/api/v1/streams/live/{KEY}"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    spec.check_response("/api/v1/streams/{app}/{key}", "get", 200, &r.json());
    let r = api.call("GET", "/api/v1/streams/live/nobody", None);
    assert_eq!(r.status, 404);
    spec.check_response("/api/v1/streams/{app}/{key}", "get", 404, &r.json());

    // Kick: the stream ends at once (no grace), the publisher is disconnected, every
    // destination loses its publisher.
    let kicked_at = Instant::now();
    let r = api.call("DELETE", &format!("/api/v1/streams/live/{KEY}"), None);
    assert_eq!(r.status, 204, "{}", r.body);
    let v = api.streams(&spec);
    assert_eq!(v["streams"], json!([]), "the stream ended at once");
    let exited = publisher.wait_exit(Duration::from_secs(10));
    assert!(
        exited.is_some(),
        "ffmpeg still publishing 10 s after the kick\n{}",
        prism.stderr()
    );
    for (name, nginx) in [("a", &nginx_a), ("b", &nginx_b)] {
        wait_until(
            Duration::from_secs(10),
            &format!("{name} to lose its publisher"),
            || !nginx.is_publishing(KEY),
        );
    }
    assert!(kicked_at.elapsed() < Duration::from_secs(15));
    let r = api.call("DELETE", &format!("/api/v1/streams/live/{KEY}"), None);
    assert_eq!(r.status, 404, "{}", r.body);
    spec.check_response("/api/v1/streams/{app}/{key}", "delete", 404, &r.json());
    assert!(prism.stderr().contains("kicked"), "{}", prism.stderr());
    // The stream key of the destinations never reached the logs or the API unredacted.
    assert!(!prism.stderr().contains(&format!("/app/{KEY}")));
}

#[test]
fn srt_publisher_is_listed_and_kicked() {
    use common::srt::{srt_config, srt_url, SrtPublisher};
    let spec = OpenApi::load();
    let clip = make_clip(5);
    let srt_port = free_udp_port();
    let prism = Prism::start(&srt_config(srt_port, "", &[]));
    let api = Api::new(prism.http_addr.unwrap(), None);
    let mut publisher = SrtPublisher::start(
        &srt_url(srt_port, "#!::r=live/srtkick,m=publish", ""),
        &clip,
        true,
    );
    // Codecs come from the demuxer's sequence headers (Publisher::send_frame).
    let s = wait_for(Duration::from_secs(15), "the SRT stream listed", || {
        api.stream(&spec, "live/srtkick")
            .filter(|s| s["codecs"] == json!({"video": "h264", "audio": "aac"}))
    });
    assert_eq!(s["publisher"]["transport"], "srt", "{s:#}");
    let r = api.call("DELETE", "/api/v1/streams/live/srtkick", None);
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(api.streams(&spec)["streams"], json!([]));
    // The SRT connection is closed: the caller gives up.
    assert!(
        publisher.wait_exit(Duration::from_secs(15)).is_some(),
        "SRT publisher still running after the kick\n{}",
        prism.stderr()
    );
}
