//! Who may publish and play, with real ffmpeg clients: per-route tokens (`?token=`),
//! address allowlists, `play = false`, and the `[auth]` webhook (allow, refuse, never
//! answer). Every refusal makes the client fail and is counted by reason; a good client is
//! untouched; no secret reaches the logs or the metrics.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const GOOD: &str = "good-token-1234";
const BAD: &str = "wrong-token-9999";

/// Runs a refused ffmpeg publish to `url` and returns its stderr.
#[track_caller]
fn publish_refused(url: &str, clip: &std::path::Path) -> String {
    let mut p = Publisher::start(url, clip, false);
    let status = p
        .wait_exit(Duration::from_secs(15))
        .expect("a refused publisher gives up on its own");
    let err = p.stderr();
    assert!(
        !status.success(),
        "publish to {url} should fail; ffmpeg said:\n{err}"
    );
    err
}

#[test]
fn tokens_allowlists_and_play_off() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let (rtmp_port, http_port) = (free_port(), free_port());
    let prism = Prism::start(&format!(
        r#"
[rtmp]
listen = "127.0.0.1:{rtmp_port}"
[http]
listen = "127.0.0.1:{http_port}"

[[route]]
stream = "live/*"
publish_tokens = ["{GOOD}", "other-token-5678"]
allow_publish = ["127.0.0.0/8"]

[[route]]
stream = "locked/*"
allow_publish = ["10.0.0.0/8", "::1"]

[[route]]
stream = "noplay/*"
play = false
"#
    ));
    let rejected = |reason: &str| {
        prism.metric_value(&format!(
            "prism_publish_rejected_total{{reason=\"{reason}\"}}"
        ))
    };

    // Wrong token, then none: refused with the reason ffmpeg shows.
    let err = publish_refused(&prism.rtmp_url("live", &format!("cam?token={BAD}")), &clip);
    assert!(err.to_ascii_lowercase().contains("unauthorized"), "{err}");
    publish_refused(&prism.rtmp_url("live", "cam"), &clip);
    assert_eq!(rejected("unauthorized"), Some(2.0), "{}", prism.metrics());

    // The right token publishes, and the stream is named without its query.
    let url = prism.rtmp_url("live", &format!("cam?token={GOOD}"));
    let mut good = Publisher::start(&url, &clip, true);
    let ingest = "prism_ingest_bytes_total{stream=\"live/cam\"}";
    wait_until(
        Duration::from_secs(10),
        "the authorized publisher ingesting",
        || prism.metric_value(ingest).is_some_and(|b| b > 0.0),
    );
    // Players of live/* need no token: only publishing is restricted there.
    let frames = decode_ok(&prism.rtmp_url("live", "cam"), Duration::from_secs(20))
        .expect("player decodes the authorized stream");
    assert!(frames > 0);

    // An address outside the allowlist (the test connects from 127.0.0.1).
    let err = publish_refused(&prism.rtmp_url("locked", "x"), &clip);
    assert!(err.to_ascii_lowercase().contains("forbidden"), "{err}");
    assert_eq!(rejected("forbidden_address"), Some(1.0));

    // Playback off: the player fails at once, counted.
    let r = decode(
        &prism.rtmp_url("noplay", "s"),
        Some(2.0),
        Duration::from_secs(15),
    )
    .expect("ffmpeg ran");
    assert!(
        !r.exit_ok && r.video_frames == 0,
        "play should be refused: {r:?}"
    );
    assert!(
        r.errors
            .join("\n")
            .to_ascii_lowercase()
            .contains("disabled"),
        "{:?}",
        r.errors
    );
    assert_eq!(
        prism.metric_value("prism_play_rejected_total{reason=\"play_disabled\"}"),
        Some(1.0)
    );

    // The good publisher never noticed any of it.
    assert!(good.try_wait().is_none(), "{}", good.stderr());
    let before = prism.metric_value(ingest).unwrap_or(0.0);
    wait_until(Duration::from_secs(5), "ingest to keep rising", || {
        prism.metric_value(ingest).is_some_and(|b| b > before)
    });
    good.stop();

    // No secret in the logs or the metrics.
    let (logs, metrics) = (prism.stderr(), prism.metrics());
    for secret in [GOOD, BAD, "other-token"] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
        assert!(!metrics.contains(secret), "{secret} in /metrics");
    }
    assert!(
        logs.contains("reason=\"unauthorized\"") || logs.contains("reason=unauthorized"),
        "{logs}"
    );
    eprintln!("auth tokens/allowlist test took {:?}", t0.elapsed());
}

/// One request the webhook received: the Authorization header and the JSON body.
#[derive(Debug, Clone)]
struct HookCall {
    authorization: String,
    body: String,
}

/// A tiny webhook: allows key `allowed`, answers 403 to `refused`, never answers `silent`.
fn start_hook() -> (u16, Arc<Mutex<Vec<HookCall>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind hook");
    let port = listener.local_addr().expect("addr").port();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let seen = seen.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(conn);
                let (mut len, mut authorization) = (0usize, String::new());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("authorization:") {
                        authorization = line["authorization:".len()..].trim().to_string();
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let body = String::from_utf8_lossy(&body).into_owned();
                seen.lock().unwrap().push(HookCall {
                    authorization,
                    body: body.clone(),
                });
                let status = if body.contains("\"key\":\"allowed\"") {
                    "200 OK"
                } else if body.contains("\"key\":\"silent\"") {
                    // Hold the connection, answer nothing.
                    thread::sleep(Duration::from_secs(20));
                    return;
                } else {
                    "403 Forbidden"
                };
                let mut conn = reader.into_inner();
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            });
        }
    });
    (port, calls)
}

#[test]
fn webhook_allows_refuses_and_fails_closed() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let (hook_port, calls) = start_hook();
    let (rtmp_port, http_port) = (free_port(), free_port());
    let prism = Prism::start(&format!(
        r#"
[rtmp]
listen = "127.0.0.1:{rtmp_port}"
[http]
listen = "127.0.0.1:{http_port}"
[auth]
on_publish = "http://127.0.0.1:{hook_port}/hook/publish?panel-secret=xyz"
on_play = "http://127.0.0.1:{hook_port}/hook/play"
timeout_ms = 1000
token = "hook-bearer-secret"
"#
    ));
    let rejected = |reason: &str| {
        prism.metric_value(&format!(
            "prism_publish_rejected_total{{reason=\"{reason}\"}}"
        ))
    };

    let mut allowed = Publisher::start(&prism.rtmp_url("live", "allowed?sig=abc"), &clip, true);
    let ingest = "prism_ingest_bytes_total{stream=\"live/allowed\"}";
    wait_until(
        Duration::from_secs(10),
        "the allowed publisher ingesting",
        || prism.metric_value(ingest).is_some_and(|b| b > 0.0),
    );

    publish_refused(&prism.rtmp_url("live", "refused"), &clip);
    assert_eq!(
        rejected("webhook_refused"),
        Some(1.0),
        "{}",
        prism.metrics()
    );

    // A webhook that never answers refuses after timeout_ms (fail closed).
    let started = Instant::now();
    publish_refused(&prism.rtmp_url("live", "silent"), &clip);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(rejected("webhook_error"), Some(1.0), "{}", prism.metrics());

    // on_play: the allowed key plays, another is refused.
    let frames = decode_ok(&prism.rtmp_url("live", "allowed"), Duration::from_secs(20))
        .expect("player allowed by the webhook decodes");
    assert!(frames > 0);
    let r = decode(
        &prism.rtmp_url("live", "other"),
        Some(2.0),
        Duration::from_secs(15),
    )
    .expect("ffmpeg ran");
    assert!(!r.exit_ok && r.video_frames == 0, "{r:?}");
    assert_eq!(
        prism.metric_value("prism_play_rejected_total{reason=\"webhook_refused\"}"),
        Some(1.0)
    );

    // What the panel was told.
    let calls = calls.lock().unwrap().clone();
    let first = calls
        .iter()
        .find(|c| c.body.contains("\"key\":\"allowed\""))
        .expect("the webhook saw the allowed publish");
    assert_eq!(first.authorization, "Bearer hook-bearer-secret");
    for field in [
        "\"action\":\"publish\"",
        "\"app\":\"live\"",
        "\"query\":\"sig=abc\"",
        "\"transport\":\"rtmp\"",
        "\"client_ip\":\"127.0.0.1\"",
    ] {
        assert!(
            first.body.contains(field),
            "{field} missing from {}",
            first.body
        );
    }
    assert!(calls.iter().any(|c| c.body.contains("\"action\":\"play\"")));

    assert!(allowed.try_wait().is_none(), "{}", allowed.stderr());
    allowed.stop();
    let logs = prism.stderr();
    for secret in ["hook-bearer-secret", "panel-secret", "sig=abc"] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
    eprintln!("auth webhook test took {:?}", t0.elapsed());
}
