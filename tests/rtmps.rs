//! RTMPS in and out, against peers whose TLS is not rustls: ffmpeg (GnuTLS) publishes and
//! plays over Prism's `[rtmps]` listener, and Prism pushes to nginx-rtmp behind stunnel
//! (OpenSSL). Certificates come from a test CA made here with rcgen. Also: a destination
//! whose certificate does not verify stays down without disturbing the others, SIGHUP
//! swaps the served certificate under a live publisher, and non-TLS bytes on the RTMPS
//! port are refused and counted.

mod common;

use common::pki::{Leaf, Pki};
use common::*;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A Prism config with an `[rtmps]` listener (`extra` lines added to it) and, if `targets`
/// (TOML `[[route.target]]` tables) is not empty, a `live/*` route to them.
fn config(rtmp: u16, rtmps: u16, http: u16, leaf: &Leaf, extra: &str, targets: &str) -> String {
    let mut c = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\n\n[http]\nlisten = \"127.0.0.1:{http}\"\n\n\
         [rtmps]\nlisten = \"127.0.0.1:{rtmps}\"\ncert = {cert:?}\nkey = {key:?}\n{extra}\n",
        cert = leaf.cert.display().to_string(),
        key = leaf.key.display().to_string(),
    );
    if !targets.is_empty() {
        c.push_str("\n[[route]]\nstream = \"live/*\"\n");
        c.push_str(targets);
    }
    c
}

fn rtmps_url(port: u16, app: &str, key: &str) -> String {
    format!("rtmps://127.0.0.1:{port}/{app}/{key}")
}

fn ingest_bytes(prism: &Prism, stream: &str) -> f64 {
    prism
        .metric_value(&format!("prism_ingest_bytes_total{{stream=\"{stream}\"}}"))
        .unwrap_or(0.0)
}

#[test]
fn ffmpeg_publishes_and_plays_over_rtmps() {
    let clip = make_clip(5);
    let pki = Pki::new();
    let leaf = pki.leaf("server");
    let nginx = Nginx::start();
    let rtmps_port = free_port();
    let target = format!(
        "  [[route.target]]\n  name = \"plain\"\n  url = \"{}\"\n",
        nginx.rtmp_url("app", "{stream}")
    );
    let prism = Prism::start(&config(
        free_port(),
        rtmps_port,
        free_port(),
        &leaf,
        "",
        &target,
    ));
    let mut publisher = Publisher::start(&rtmps_url(rtmps_port, "live", "tls"), &clip, true);

    nginx.wait_bytes_in("tls", 200_000, Duration::from_secs(15));
    assert_eq!(
        prism.metric_value("prism_connections_active{transport=\"rtmps\"}"),
        Some(1.0),
        "{}",
        prism.metrics()
    );
    // A player over RTMPS decodes what the publisher sends.
    let frames = decode_ok(
        &rtmps_url(rtmps_port, "live", "tls"),
        Duration::from_secs(15),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", prism.stderr()));
    assert!(frames >= 25, "decoded {frames} frames");
    assert!(
        prism
            .metric_value("prism_connections_total{transport=\"rtmps\"}")
            .unwrap_or(0.0)
            >= 2.0,
        "{}",
        prism.metrics()
    );

    publisher.stop();
    wait_until(
        Duration::from_secs(10),
        "nginx to lose its publisher",
        || !nginx.is_publishing("tls"),
    );
    // Clients that close without a TLS close_notify (ffmpeg does) end normally, not as an
    // error. (A player that quits with unread data gets a reset, an error as over rtmp://.)
    assert!(
        !prism.stderr().contains("close_notify"),
        "{}",
        prism.stderr()
    );
    let p = probe(nginx.recording("tls"), Duration::from_secs(30)).expect("probe recording");
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert!(p.video_frames_decoded >= 50 && p.audio_ok, "{p:?}");
}

#[test]
fn pushes_through_a_foreign_tls_stack_and_refuses_an_unverified_destination() {
    let clip = make_clip(5);
    let pki = Pki::new();
    let server = pki.leaf("server");
    let destination = pki.leaf("destination");
    let nginx = Nginx::start();
    let stunnel = Stunnel::start(&destination.cert, &destination.key, nginx.rtmp_addr());
    let port = stunnel.port;
    // "good" trusts the test CA; "untrusted" checks against the public roots, which do not
    // know it; "insecure" checks nothing (same destination, each its own stream name).
    let targets = format!(
        "  [[route.target]]\n  name = \"good\"\n  url = \"rtmps://127.0.0.1:{port}/app/{{stream}}\"\n  ca = {ca:?}\n\
         \n  [[route.target]]\n  name = \"untrusted\"\n  url = \"rtmps://localhost:{port}/app/untrusted-{{stream}}\"\n\
         \n  [[route.target]]\n  name = \"insecure\"\n  url = \"rtmps://localhost:{port}/app/insecure-{{stream}}\"\n  tls_verify = false\n",
        ca = pki.ca_pem.display().to_string(),
    );
    let prism = Prism::start(&config(
        free_port(),
        free_port(),
        free_port(),
        &server,
        "",
        &targets,
    ));
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "out"), &clip, true);

    let up = |t: &str| {
        prism.metric_value(&format!(
            "prism_target_up{{stream=\"live/out\",target=\"{t}\"}}"
        ))
    };
    let verify_failures = || {
        prism
            .metric_value(
                "prism_target_disconnects_total{reason=\"tls_verify\",stream=\"live/out\",target=\"untrusted\"}",
            )
            .unwrap_or(0.0)
    };
    wait_until(Duration::from_secs(10), "target good up", || {
        up("good") == Some(1.0)
    });
    nginx.wait_bytes_in("out", 300_000, Duration::from_secs(15));
    // The untrusted destination is retried with backoff and refused every time.
    wait_until(
        Duration::from_secs(10),
        "two tls_verify failures of target untrusted",
        || verify_failures() >= 2.0,
    );
    assert_eq!(up("untrusted"), Some(0.0));
    wait_until(Duration::from_secs(10), "target insecure up", || {
        up("insecure") == Some(1.0)
    });
    let warning = "TLS verification disabled for target insecure — testing only";
    assert_eq!(
        prism.stderr().matches(warning).count(),
        1,
        "{}",
        prism.stderr()
    );
    assert_eq!(up("good"), Some(1.0), "{}", prism.metrics());
    assert!(!nginx.is_publishing("untrusted-out"));
    assert!(
        prism.stderr().contains("UnknownIssuer"),
        "the warning says why: {}",
        prism.stderr()
    );

    publisher.stop();
    wait_until(
        Duration::from_secs(10),
        "nginx to lose its publisher",
        || !nginx.is_publishing("out"),
    );
    let rec = nginx.recording("out");
    let p = probe(&rec, Duration::from_secs(30)).expect("probe recording");
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert!(p.video_frames_decoded >= 50 && p.audio_ok, "{p:?}");
    decode_ok(rec.to_str().expect("utf-8 path"), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn sighup_serves_a_new_certificate_to_new_connections_only() {
    let clip = make_clip(5);
    let pki = Pki::new();
    let first = pki.leaf("server");
    let second = pki.leaf("next");
    let rtmps_port = free_port();
    let rtmps = SocketAddr::from(([127, 0, 0, 1], rtmps_port));
    let prism = Prism::start(&config(
        free_port(),
        rtmps_port,
        free_port(),
        &first,
        "",
        "",
    ));
    let mut publisher = Publisher::start(&rtmps_url(rtmps_port, "live", "hup"), &clip, true);
    wait_until(Duration::from_secs(10), "ingest over RTMPS", || {
        ingest_bytes(&prism, "live/hup") > 100_000.0
    });
    assert_eq!(pki.served_leaf(rtmps).expect("TLS handshake"), first.der);

    // Replace the files in place, as certbot and friends do, then SIGHUP.
    std::fs::copy(&second.key, &first.key).expect("replace key");
    std::fs::copy(&second.cert, &first.cert).expect("replace cert");
    prism.signal("HUP");
    wait_until(Duration::from_secs(5), "the new certificate served", || {
        pki.served_leaf(rtmps).is_ok_and(|der| der == second.der)
    });
    assert!(prism.stderr().contains("reloaded TLS certificate"));

    // The publisher connected before the reload keeps streaming.
    let before = ingest_bytes(&prism, "live/hup");
    wait_until(Duration::from_secs(10), "ingest to keep growing", || {
        ingest_bytes(&prism, "live/hup") > before + 100_000.0
    });
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());
    assert!(prism.pid() != 0 && prism.metric_value("prism_streams_active") == Some(1.0));

    // A broken certificate file is refused; the current certificate stays.
    std::fs::write(&first.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").expect("write");
    prism.signal("HUP");
    wait_until(Duration::from_secs(5), "the failed reload logged", || {
        prism.stderr().contains("reload failed")
    });
    assert_eq!(pki.served_leaf(rtmps).expect("TLS handshake"), second.der);
}

#[test]
fn non_tls_bytes_on_the_rtmps_port_are_refused_and_counted() {
    let clip = make_clip(5);
    let pki = Pki::new();
    let leaf = pki.leaf("server");
    let rtmps_port = free_port();
    let rtmps = SocketAddr::from(([127, 0, 0, 1], rtmps_port));
    let prism = Prism::start(&config(
        free_port(),
        rtmps_port,
        free_port(),
        &leaf,
        "handshake_timeout_ms = 500",
        "",
    ));
    let _publisher = Publisher::start(&prism.rtmp_url("live", "calm"), &clip, true);
    wait_until(Duration::from_secs(10), "plain RTMP ingest", || {
        ingest_bytes(&prism, "live/calm") > 50_000.0
    });

    // A plain RTMP handshake (C0 + C1) gets no RTMP answer, only a TLS alert and a close.
    let mut plain = TcpStream::connect(rtmps).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0u8; 1536]);
    std::io::Write::write_all(&mut plain, &c0c1).expect("send C0+C1");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        answer.first() != Some(&3),
        "RTMP answered on the RTMPS port"
    );

    // A client that never says anything is dropped after handshake_timeout_ms.
    let mut silent = TcpStream::connect(rtmps).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    assert!(
        matches!(silent.read(&mut buf), Ok(0)),
        "silent client not dropped"
    );

    let errors = |reason: &str| {
        prism.metric_value(&format!(
            "prism_connection_errors_total{{reason=\"{reason}\",transport=\"rtmps\"}}"
        ))
    };
    wait_until(Duration::from_secs(5), "both refusals counted", || {
        errors("tls_handshake") == Some(1.0) && errors("tls_handshake_timeout") == Some(1.0)
    });
    assert!(prism
        .metric_value("prism_connections_total{transport=\"rtmps\"}")
        .is_none_or(|v| v == 0.0));

    // Nothing else noticed: the RTMP publisher streams on, TLS still works.
    let before = ingest_bytes(&prism, "live/calm");
    wait_until(Duration::from_secs(10), "ingest to keep growing", || {
        ingest_bytes(&prism, "live/calm") > before + 50_000.0
    });
    assert_eq!(pki.served_leaf(rtmps).expect("TLS handshake"), leaf.der);
}

#[test]
fn a_bad_certificate_file_stops_start_up_naming_it() {
    let pki = Pki::new();
    let leaf = pki.leaf("server");
    std::fs::write(&leaf.key, "not a key").expect("write");
    let mut prism = Prism::spawn(&config(
        free_port(),
        free_port(),
        free_port(),
        &leaf,
        "",
        "",
    ));
    let status = prism
        .wait_exit(Duration::from_secs(10))
        .expect("prism should exit");
    assert!(!status.success());
    let stderr = prism.stderr();
    assert!(
        stderr.contains(&leaf.key.display().to_string()) && stderr.contains("no private key"),
        "{stderr}"
    );
}
