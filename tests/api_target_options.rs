//! A target added through the admin API (`POST /api/v1/streams/{app}/{key}/targets`) takes
//! the same `queue` and TLS options (`ca`, `tls_verify`) as a `[[route.target]]`, checked
//! the same way, and the API reports them. Shown end to end: an `rtmps://` destination
//! with a private CA (nginx-rtmp behind stunnel) is reached by the target that names the CA
//! and refused to the one that does not; the recording decodes.

mod common;

use common::api::{target, Api, OpenApi};
use common::pki::Pki;
use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn api_targets_take_queue_and_tls_options() {
    let spec = OpenApi::load();
    let clip = make_clip(5);
    let pki = Pki::new();
    let destination = pki.leaf("destination");
    let nginx = Nginx::start();
    let stunnel = Stunnel::start(&destination.cert, &destination.key, nginx.rtmp_addr());
    let port = stunnel.port;
    let ca = pki.ca_pem.display().to_string();
    let prism = Prism::start(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\n",
        free_port(),
        free_port()
    ));
    let api = Api::new(prism.http_addr.expect("http listen"), None);
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "opts"), &clip, true);
    wait_until(Duration::from_secs(10), "the stream to be live", || {
        api.stream(&spec, "live/opts").is_some()
    });
    let path = "/api/v1/streams/live/opts/targets";
    let post = |body: serde_json::Value| api.call("POST", path, Some(&body));

    // Options checked as the config checks them; each refusal names the key.
    let url = format!("rtmps://127.0.0.1:{port}/app/{{stream}}");
    for (body, says) in [
        (
            json!({"name": "a", "url": url, "queue": {"max_queue_ms": 0}}),
            "queue.max_queue_ms",
        ),
        (
            json!({"name": "a", "url": url, "queue": {"write_merge_ms": 5000}}),
            "queue.write_merge_ms",
        ),
        (
            json!({"name": "a", "url": url, "queue": {"max_queue_kb": 1}}),
            "max_queue_kb",
        ),
        (
            json!({"name": "a", "url": "rtmp://127.0.0.1:1/app/x", "tls": {"tls_verify": false}}),
            "only apply to rtmps://",
        ),
        (
            json!({"name": "a", "url": url, "tls": {"ca": "/nonexistent/ca.pem"}}),
            "tls.ca",
        ),
        (
            json!({"name": "a", "url": url, "tls": {"verify": false}}),
            "verify",
        ),
    ] {
        let r = post(body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        spec.check_response(
            "/api/v1/streams/{app}/{key}/targets",
            "post",
            400,
            &r.json(),
        );
        assert!(r.body.contains(says), "{body}: {}", r.body);
    }

    // The private CA and a queue budget, as a [[route.target]] would have them.
    let r = post(json!({
        "name": "tls",
        "url": url,
        "queue": {"max_queue_bytes": 4_194_304, "max_queue_ms": 2000, "write_merge_ms": 20},
        "tls": {"ca": ca},
    }));
    assert_eq!(r.status, 201, "{}", r.body);
    let t = r.json();
    spec.check_response("/api/v1/streams/{app}/{key}/targets", "post", 201, &t);
    assert_eq!(t["queue"]["max_queue_bytes"], 4_194_304, "{t}");
    assert_eq!(t["queue"]["max_queue_ms"], 2000, "{t}");
    assert_eq!(t["queue"]["write_merge_ms"], 20, "{t}");
    assert_eq!(t["tls"]["ca"], ca.as_str(), "{t}");
    assert_eq!(t["tls"]["tls_verify"], true, "{t}");
    // The same destination without the CA: the system roots do not know it.
    let r = post(json!({
        "name": "roots",
        "url": format!("rtmps://localhost:{port}/app/roots-{{stream}}"),
    }));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["tls"], json!({"ca": null, "tls_verify": true}));

    let up = |t: &str| {
        prism.metric_value(&format!(
            "prism_target_up{{stream=\"live/opts\",target=\"{t}\"}}"
        ))
    };
    wait_until(Duration::from_secs(15), "target tls up", || {
        up("tls") == Some(1.0)
    });
    nginx.wait_bytes_in("opts", 300_000, Duration::from_secs(15));
    wait_until(
        Duration::from_secs(10),
        "a tls_verify failure of target roots",
        || {
            prism
                .metric_value(
                    "prism_target_disconnects_total{reason=\"tls_verify\",stream=\"live/opts\",target=\"roots\"}",
                )
                .is_some_and(|n| n >= 1.0)
        },
    );
    assert!(!nginx.is_publishing("roots-opts"));
    // Listed with their options.
    let stream = api.stream(&spec, "live/opts").expect("stream listed");
    let listed = target(&stream, "tls").expect("target tls listed");
    assert_eq!(listed["queue"]["max_queue_bytes"], 4_194_304, "{listed}");
    assert_eq!(listed["tls"]["ca"], ca.as_str(), "{listed}");

    publisher.stop();
    wait_until(
        Duration::from_secs(10),
        "nginx to lose its publisher",
        || !nginx.is_publishing("opts"),
    );
    let rec = nginx.recording("opts");
    let p = probe(&rec, Duration::from_secs(30)).expect("probe recording");
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert!(p.video_frames_decoded >= 50 && p.audio_ok, "{p:?}");
}
