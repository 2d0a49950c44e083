//! RTMPT and RTMPTS: ffmpeg publishes through Prism's HTTP tunnel (`rtmpt://`) and the
//! stream reaches an nginx-rtmp destination intact (its recording probes H.264 + AAC and
//! decodes); ffmpeg plays through the tunnel and decodes cleanly; the same over HTTPS
//! (`rtmpts://`, ffmpeg's default of not verifying the certificate).

mod common;

use common::*;
use std::net::SocketAddr;
use std::process::Command;
use std::thread;
use std::time::Duration;

/// `[rtmp]`, `[http]`, and `extra` tables appended (the tunnel's).
fn config_with(rtmp_port: u16, http_port: u16, targets: &[(&str, &str)], extra: &str) -> String {
    let base = if targets.is_empty() {
        format!(
            "[rtmp]\nlisten = \"127.0.0.1:{rtmp_port}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n"
        )
    } else {
        simple_config(rtmp_port, http_port, targets)
    };
    format!("{base}\n{extra}")
}

fn rtmpt_table(port: u16) -> String {
    format!("[rtmpt]\nlisten = \"127.0.0.1:{port}\"\n")
}

/// A self-signed certificate for 127.0.0.1/localhost, made with the openssl CLI.
fn self_signed(dir: &TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = run_with_timeout(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// ffmpeg publishes a 5 s clip over rtmpt://; Prism pushes it to nginx-rtmp over plain RTMP;
/// the recording is a complete H.264 + AAC copy.
#[test]
fn publish_over_rtmpt_reaches_the_destination() {
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let url = nginx.rtmp_url("app", "{stream}");
    let tunnel_port = free_port();
    let prism = Prism::start(&config_with(
        free_port(),
        free_port(),
        &[("dest", &url)],
        &rtmpt_table(tunnel_port),
    ));
    wait_port(
        SocketAddr::from(([127, 0, 0, 1], tunnel_port)),
        Duration::from_secs(5),
    );
    let mut publisher = Publisher::start(
        &format!("rtmpt://127.0.0.1:{tunnel_port}/live/tun"),
        &clip,
        false,
    );
    wait_until(Duration::from_secs(10), "an rtmpt connection", || {
        prism.metric_value("prism_connections_active{transport=\"rtmpt\"}") == Some(1.0)
    });
    nginx.wait_bytes_in("tun", 0, Duration::from_secs(10));
    let status = publisher
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("publisher did not finish: {}", publisher.stderr()));
    assert!(status.success(), "ffmpeg: {}", publisher.stderr());
    wait_until(
        Duration::from_secs(10),
        "destination to lose its publisher",
        || !nginx.is_publishing("tun"),
    );
    wait_until(Duration::from_secs(10), "rtmpt connection closed", || {
        prism.metric_value("prism_connections_active{transport=\"rtmpt\"}") == Some(0.0)
    });

    let rec = nginx.recording("tun");
    let p = probe(&rec, Duration::from_secs(30)).unwrap_or_else(|e| panic!("probe: {e}"));
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert_eq!((p.width, p.height), (Some(320), Some(240)), "{p:?}");
    // The whole clip (125 frames) came through; nginx may trim the start to a keyframe.
    assert!(p.video_frames_decoded >= 100, "{p:?}");
    assert!(p.audio_ok, "{p:?}");
    let n = decode_ok(rec.to_str().expect("utf-8 path"), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, p.video_frames_decoded);
    assert_eq!(
        prism.metric_sum("prism_connection_errors_total{transport=\"rtmpt\""),
        None,
        "no refusal on a clean session\n{}",
        prism.metrics()
    );
}

/// ffmpeg plays over rtmpt:// (a stream published over plain RTMP) and decodes 3 s cleanly
/// from the first frame.
#[test]
fn play_over_rtmpt_decodes() {
    let clip = make_clip(5);
    let tunnel_port = free_port();
    let prism = Prism::start(&config_with(
        free_port(),
        free_port(),
        &[],
        &rtmpt_table(tunnel_port),
    ));
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "watch"), &clip, true);
    wait_until(Duration::from_secs(10), "ingest", || {
        prism.ingest_frames("live/watch", "video") > 0.0
    });
    let url = format!("rtmpt://127.0.0.1:{tunnel_port}/live/watch");
    let n = decode_ok(&url, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}"));
    assert!(n >= 50, "decoded only {n} frames in 3 s over rtmpt");
    let p = probe(&url, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert!(p.audio_ok, "{p:?}");
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());
    publisher.stop();
}

/// The same over HTTPS: publish and play over rtmpts://.
#[test]
fn publish_and_play_over_rtmpts() {
    let clip = make_clip(5);
    let certs = TempDir::new("rtmpts-cert");
    let (cert, key) = self_signed(&certs);
    let port = free_port();
    let table = format!(
        "[rtmpts]\nlisten = \"127.0.0.1:{port}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let prism = Prism::start(&config_with(free_port(), free_port(), &[], &table));
    wait_port(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(5),
    );
    let url = format!("rtmpts://127.0.0.1:{port}/live/secure");
    let mut publisher = Publisher::start(&url, &clip, true);
    wait_until(Duration::from_secs(10), "ingest over rtmpts", || {
        prism.ingest_frames("live/secure", "video") > 0.0
            && prism.ingest_frames("live/secure", "audio") > 0.0
    });
    assert_eq!(
        prism.metric_value("prism_connections_active{transport=\"rtmpts\"}"),
        Some(1.0)
    );
    let player = {
        let url = url.clone();
        thread::spawn(move || decode_ok(&url, Duration::from_secs(20)))
    };
    let n = player
        .join()
        .expect("player thread")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(n >= 50, "decoded only {n} frames in 3 s over rtmpts");
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());
    publisher.stop();
}
