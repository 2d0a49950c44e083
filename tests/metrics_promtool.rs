//! /metrics: with a live stream, a player, push targets (one healthy, one
//! with a queue too small for the stream, one unreachable), a refused
//! publish and a broken client connection, the scrape carries every metric
//! of the contract and passes `promtool check metrics` (Prometheus' own
//! parser and linter).

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

const STREAM: &str = "live/prom";

/// The metric names Prism promises (dashboards and alerts depend on them).
const CONTRACT: &[&str] = &[
    "prism_connections_active",
    "prism_connections_total",
    "prism_streams_active",
    "prism_ingest_bytes_total",
    "prism_ingest_frames_total",
    "prism_target_up",
    "prism_target_bytes_sent_total",
    "prism_target_queue_bytes",
    "prism_target_dropped_frames_total",
    "prism_target_reconnects_total",
    "prism_target_disconnects_total",
    "prism_players_active",
    "prism_publish_rejected_total",
    "prism_connection_errors_total",
];

/// Contract names with no sample line in `text`.
fn missing(text: &str) -> Vec<&'static str> {
    CONTRACT
        .iter()
        .copied()
        .filter(|name| {
            !text.lines().any(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
        })
        .collect()
}

/// `promtool check metrics < scrape`: (success, what it printed).
fn promtool_check(scrape: &str, dir: &TempDir) -> (bool, String) {
    let ok = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "promtool not found: install it with ./scripts/test.sh \
         (apt-get install prometheus), which the test command does"
    );
    let path = dir.join("scrape.txt");
    fs::write(&path, scrape).expect("write scrape");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(fs::File::open(&path).expect("open scrape"))
        .stdout(fs::File::create(dir.join("promtool.out")).expect("create file"))
        .stderr(fs::File::create(dir.join("promtool.err")).expect("create file"))
        .spawn()
        .expect("spawn promtool");
    let status = wait_child(&mut child, Duration::from_secs(20)).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("promtool check metrics did not finish in 20 s")
    });
    let out = format!(
        "{}{}",
        fs::read_to_string(dir.join("promtool.out")).unwrap_or_default(),
        fs::read_to_string(dir.join("promtool.err")).unwrap_or_default()
    );
    (status.success(), out)
}

#[test]
fn scrape_has_the_contract_and_passes_promtool() {
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let good = nginx.rtmp_url("app", "{stream}");
    let tiny = nginx.rtmp_url("app", "tiny-{stream}");
    // Nothing listens there: that target keeps failing to connect.
    let down = format!("rtmp://127.0.0.1:{}/app/{{stream}}", free_port());
    let (rtmp, http) = (free_port(), free_port());
    let config = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\n\n[http]\nlisten = \"127.0.0.1:{http}\"\n\n\
         [[route]]\nstream = \"live/*\"\n\n\
         [[route.target]]\nname = \"good\"\nurl = \"{good}\"\n\n\
         [[route.target]]\nname = \"tiny\"\nurl = \"{tiny}\"\nmax_queue_bytes = 1000\n\n\
         [[route.target]]\nname = \"down\"\nurl = \"{down}\"\n"
    );
    let prism = Prism::start(&config);
    let url = prism.rtmp_url("live", "prom");
    let mut publisher = Publisher::start(&url, &clip, true);
    wait_until(Duration::from_secs(10), "target good up", || {
        prism.metric_value(&format!(
            "prism_target_up{{stream=\"{STREAM}\",target=\"good\"}}"
        )) == Some(1.0)
    });

    // A second publisher on the same key is refused.
    let mut dup = Publisher::start(&url, &clip, false);
    wait_until(Duration::from_secs(10), "publish_rejected_total", || {
        prism
            .metric_sum("prism_publish_rejected_total{")
            .is_some_and(|v| v >= 1.0)
    });
    dup.kill();

    // A client that speaks HTTP to the RTMP port is a connection error.
    let mut junk = TcpStream::connect(prism.rtmp_addr.expect("rtmp addr")).expect("connect");
    junk.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .expect("write junk");
    wait_until(Duration::from_secs(10), "connection_errors_total", || {
        prism
            .metric_sum("prism_connection_errors_total{")
            .is_some_and(|v| v >= 1.0)
    });
    drop(junk);

    // A player, watching while we scrape.
    let player = {
        let url = url.clone();
        thread::spawn(move || decode_ok(&url, Duration::from_secs(20)))
    };
    let scrape = wait_for(
        Duration::from_secs(10),
        "a scrape with every contract metric, a player and drops on `tiny`",
        || {
            let text = prism.metrics();
            let ready = missing(&text).is_empty()
                && metric_value_in(&text, &format!("prism_players_active{{stream=\"{STREAM}\"}}"))
                    == Some(1.0)
                && metric_sum_in(
                    &text,
                    "prism_target_dropped_frames_total{reason=\"queue_full\",stream=\"live/prom\",target=\"tiny\"}",
                )
                .is_some_and(|v| v > 0.0)
                && metric_sum_in(&text, "prism_target_disconnects_total{reason=\"connect\",stream=\"live/prom\",target=\"down\"}")
                    .is_some_and(|v| v > 0.0);
            ready.then_some(text)
        },
    );
    for name in CONTRACT {
        assert!(
            scrape.contains(&format!("# TYPE {name} ")),
            "no # TYPE line for {name}:\n{scrape}"
        );
    }
    assert_eq!(metric_value_in(&scrape, "prism_streams_active"), Some(1.0));
    assert!(
        metric_value_in(
            &scrape,
            &format!("prism_ingest_bytes_total{{stream=\"{STREAM}\"}}")
        )
        .is_some_and(|v| v > 0.0),
        "{scrape}"
    );
    assert!(
        metric_value_in(&scrape, "prism_connections_active{transport=\"rtmp\"}")
            .is_some_and(|v| v >= 2.0),
        "publisher + player: {scrape}"
    );

    let dir = TempDir::new("promtool");
    let (ok, out) = promtool_check(&scrape, &dir);
    assert!(
        ok,
        "promtool check metrics failed:\n{out}\n--- scrape ---\n{scrape}"
    );

    player
        .join()
        .expect("player thread")
        .expect("player decodes cleanly");

    // Media pauses (the encoder stalls): once the destination has everything, the queue
    // gauge says so, though no frame arrives to wake the target's task.
    signal(publisher.pid(), "STOP");
    wait_until(
        Duration::from_secs(5),
        "queue gauge of `good` back to 0",
        || {
            prism.metric_value(&format!(
                "prism_target_queue_bytes{{stream=\"{STREAM}\",target=\"good\"}}"
            )) == Some(0.0)
        },
    );
    signal(publisher.pid(), "CONT");
    publisher.stop();
}
