//! SIGHUP re-reads the config file and applies it to live streams: a new target starts, a
//! removed one unpublishes and stops, an unchanged one keeps its connection, the publisher
//! is never disturbed; route pattern changes apply to live streams too. An invalid file
//! is refused with the reason logged and everything keeps running as it was.

mod common;

use common::*;
use std::fs;
use std::time::{Duration, Instant};

const STREAM: &str = "live/rl";

/// A config with `[[route]]`s of (pattern, targets).
fn config(prism_rtmp: u16, http: u16, routes: &[(&str, &[(&str, String)])]) -> String {
    let mut s = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{prism_rtmp}\"\n\n[http]\nlisten = \"127.0.0.1:{http}\"\n"
    );
    for (pattern, targets) in routes {
        s += &format!("\n[[route]]\nstream = \"{pattern}\"\n");
        for (name, url) in *targets {
            s += &format!("  [[route.target]]\n  name = \"{name}\"\n  url = \"{url}\"\n");
        }
    }
    s
}

fn metric(prism: &Prism, name: &str, target: &str) -> f64 {
    prism
        .metric_value(&format!(
            "{name}{{stream=\"{STREAM}\",target=\"{target}\"}}"
        ))
        .unwrap_or(0.0)
}

/// Rewrites the config file and sends SIGHUP; waits until the reload was logged (applied
/// or refused) and returns the log lines it produced.
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

#[test]
fn sighup_applies_targets_and_routes_without_touching_ingest() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let (na, nb, nc) = (Nginx::start(), Nginx::start(), Nginx::start());
    let (url_a, url_b, url_c) = (
        na.rtmp_url("app", "{stream}"),
        nb.rtmp_url("app", "{stream}"),
        nc.rtmp_url("app", "{stream}"),
    );
    let (rtmp_port, http_port) = (free_port(), free_port());
    let ab = config(
        rtmp_port,
        http_port,
        &[("live/*", &[("a", url_a.clone()), ("b", url_b.clone())])],
    );
    let prism = Prism::start(&ab);
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "rl"), &clip, true);
    na.wait_bytes_in("rl", 100_000, Duration::from_secs(20));
    nb.wait_bytes_in("rl", 100_000, Duration::from_secs(10));
    let connections = prism
        .metric_value("prism_connections_total{transport=\"rtmp\"}")
        .expect("connections_total");
    let ingest = |p: &Prism| {
        p.metric_value(&format!("prism_ingest_bytes_total{{stream=\"{STREAM}\"}}"))
            .unwrap_or(0.0)
    };

    // Drop b, add c, leave a exactly as it was.
    let ac = config(
        rtmp_port,
        http_port,
        &[("live/*", &[("a", url_a.clone()), ("c", url_c.clone())])],
    );
    let a_before = na.bytes_in("rl").expect("a publishing");
    let ingest_before = ingest(&prism);
    let log = reload(&prism, &ac);
    assert!(log.contains("config reloaded"), "{log}");
    nc.wait_bytes_in("rl", 100_000, Duration::from_secs(15));
    wait_until(Duration::from_secs(10), "nginx b to end stream rl", || {
        !nb.is_publishing("rl")
    });
    na.wait_bytes_in("rl", a_before + 100_000, Duration::from_secs(10));
    assert!(na.is_publishing("rl"));
    assert_eq!(metric(&prism, "prism_target_reconnects_total", "a"), 0.0);
    assert_eq!(metric(&prism, "prism_target_up", "a"), 1.0);
    let m = prism.metrics();
    assert!(
        !m.lines()
            .any(|l| l.starts_with("prism_target_disconnects_total") && l.contains("target=\"a\"")),
        "target a was disconnected:\n{m}"
    );
    // b's series went with it.
    wait_until(Duration::from_secs(5), "b's series to go", || {
        metric(&prism, "prism_target_up", "b") == 0.0
    });
    assert!(ingest(&prism) > ingest_before, "ingest stalled");
    assert_eq!(
        prism.metric_value("prism_connections_total{transport=\"rtmp\"}"),
        Some(connections),
        "the publisher reconnected"
    );
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());
    // b unpublished cleanly: its recording is complete.
    decode_ok(
        nb.recording("rl").to_str().expect("utf-8 path"),
        Duration::from_secs(30),
    )
    .expect("b's recording decodes");

    // An invalid file (an unknown key) is refused, naming file, line and key; nothing changes.
    let bad = format!("{ac}\n[stream]\nreconnect_grace_ms = 100\nbogus_key = 1\n");
    let log = reload(&prism, &bad);
    assert!(log.contains("config reload refused"), "{log}");
    assert!(log.contains("bogus_key"), "{log}");
    let bad_line = bad
        .lines()
        .position(|l| l.starts_with("bogus_key"))
        .unwrap()
        + 1;
    assert!(
        log.contains(&format!("prism.toml:{bad_line}:")),
        "no file:line in {log}"
    );
    let (a_now, c_now) = (na.bytes_in("rl").unwrap(), nc.bytes_in("rl").unwrap());
    na.wait_bytes_in("rl", a_now + 50_000, Duration::from_secs(10));
    nc.wait_bytes_in("rl", c_now + 50_000, Duration::from_secs(10));
    assert!(!nb.is_publishing("rl"));

    // Route patterns apply to live streams: c moves to a route live/rl no longer matches
    // (it stops), then back (it starts again). A changed listener is not applied live.
    let other_http = free_port();
    let moved = config(
        rtmp_port,
        other_http,
        &[
            ("live/*", &[("a", url_a.clone())]),
            ("other/*", &[("c", url_c.clone())]),
        ],
    );
    let log = reload(&prism, &moved);
    assert!(log.contains("config reloaded"), "{log}");
    assert!(
        log.contains("[http] changed, but only takes effect on restart"),
        "{log}"
    );
    wait_until(Duration::from_secs(10), "nginx c to end stream rl", || {
        !nc.is_publishing("rl")
    });
    let back = config(
        rtmp_port,
        http_port,
        &[
            ("live/*", &[("a", url_a.clone())]),
            ("live/rl", &[("c", url_c.clone())]),
        ],
    );
    let log = reload(&prism, &back);
    assert!(log.contains("config reloaded"), "{log}");
    wait_until(Duration::from_secs(15), "nginx c to get rl again", || {
        nc.is_publishing("rl")
    });

    // Through all of it: a never reconnected and the publisher stayed connected.
    assert_eq!(metric(&prism, "prism_target_reconnects_total", "a"), 0.0);
    assert!(na.is_publishing("rl"));
    assert_eq!(
        prism.metric_value("prism_connections_total{transport=\"rtmp\"}"),
        Some(connections)
    );
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());
    eprintln!("reload test took {:?}", t0.elapsed());
}
