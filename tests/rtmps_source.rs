//! `[[source]] ca` / `tls_verify`: rtmps:// and rtsps:// sources served with a certificate
//! from a private CA (made here with rcgen). One Prism serves the stream over `[rtmps]` and
//! `[rtsps]`; another pulls it: with the CA it verifies and plays, without it the pull is
//! refused as `tls_verify`, and `tls_verify = false` plays anyway.

mod common;

use common::pki::Pki;
use common::*;
use std::time::Duration;

#[test]
fn tls_sources_trust_a_private_ca() {
    let pki = Pki::new();
    let leaf = pki.leaf("origin");
    let clip = make_clip(5);
    let (rtmps, rtsps) = (free_port(), free_port());
    let origin = Prism::start(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
         [rtmps]\nlisten = \"127.0.0.1:{rtmps}\"\ncert = {cert:?}\nkey = {key:?}\n\
         [rtsp]\nlisten = \"127.0.0.1:{}\"\n\
         [rtsps]\nlisten = \"127.0.0.1:{rtsps}\"\ncert = {cert:?}\nkey = {key:?}\n",
        free_port(),
        free_port(),
        free_port(),
        cert = leaf.cert.display().to_string(),
        key = leaf.key.display().to_string(),
    ));
    let mut publisher = Publisher::start(&origin.rtmp_url("live", "show"), &clip, true);
    wait_until(Duration::from_secs(10), "the origin stream", || {
        origin.metric_value("prism_streams_active") == Some(1.0)
    });
    let ca = pki.ca_pem.display().to_string();
    let source = |stream: &str, url: String, tls: &str| {
        format!("[[source]]\nstream = \"{stream}\"\nurl = \"{url}\"\n{tls}\n")
    };
    let puller = Prism::start(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n{}{}{}{}",
        free_port(),
        free_port(),
        source(
            "pull/rtmps",
            format!("rtmps://localhost:{rtmps}/live/show"),
            &format!("ca = {ca:?}")
        ),
        source(
            "pull/rtsps",
            format!("rtsps://localhost:{rtsps}/live/show"),
            &format!("ca = {ca:?}")
        ),
        source(
            "pull/noca",
            format!("rtmps://localhost:{rtmps}/live/show"),
            ""
        ),
        source(
            "pull/noverify",
            format!("rtsps://localhost:{rtsps}/live/show"),
            "tls_verify = false"
        ),
    ));
    for stream in ["pull/rtmps", "pull/rtsps", "pull/noverify"] {
        wait_until(Duration::from_secs(30), stream, || {
            puller.metric_value(&format!("prism_source_up{{stream=\"{stream}\"}}")) == Some(1.0)
        });
        let (app, key) = stream.split_once('/').unwrap();
        let frames = decode_ok(&puller.rtmp_url(app, key), Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{stream}: {e}\n{}", puller.stderr()));
        assert!(frames >= 25, "{stream}: decoded {frames} frames");
    }
    // The system roots do not know the private CA: refused, counted, never up.
    wait_until(
        Duration::from_secs(20),
        "the CA-less source to fail",
        || {
            puller.metric_value(
                "prism_source_errors_total{reason=\"tls_verify\",stream=\"pull/noca\"}",
            ) >= Some(1.0)
        },
    );
    assert_eq!(
        puller.metric_value("prism_source_up{stream=\"pull/noca\"}"),
        Some(0.0)
    );
    publisher.kill();
}
