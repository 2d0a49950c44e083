//! An encrypted `srt://` push target (`passphrase`, AES-256 with `pbkeylen=32`) to
//! libsrt's own `srt-live-transmit` listener with the same passphrase: what it decrypts
//! and writes out decodes with ffprobe. A target with the wrong passphrase never comes up,
//! and the passphrase appears in no log line or metric.

mod common;

use common::srt::*;
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PASSPHRASE: &str = "prism-srt-secret-0123";

/// `srt-live-transmit` listening on `port` with `passphrase`, writing what it receives to
/// `out`; it exits when its caller goes (`-a:no`).
fn listener(port: u16, passphrase: &str, out: &std::path::Path, log: &std::path::Path) -> Child {
    Command::new("srt-live-transmit")
        .args(["-q", "-a:no"])
        .arg(format!(
            "srt://127.0.0.1:{port}?mode=listener&latency=120&passphrase={passphrase}&pbkeylen=32"
        ))
        .arg("file://con")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).expect("create output"))
        .stderr(std::fs::File::create(log).expect("create log"))
        .spawn()
        .expect("spawn srt-live-transmit")
}

/// Sum of the `prism_target_disconnects_total` series of `target` (any reason).
fn disconnects(prism: &Prism, target: &str) -> f64 {
    let label = format!("target=\"{target}\"");
    prism
        .metrics()
        .lines()
        .filter(|l| l.starts_with("prism_target_disconnects_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn encrypted_srt_push_to_srt_live_transmit_decodes() {
    let clip = make_clip(5);
    let dir = TempDir::new("srt-push-enc");
    let (port, wrong_port) = (free_udp_port(), free_udp_port());
    let out = dir.join("out.ts");
    let mut dest = listener(port, PASSPHRASE, &out, &dir.join("dest.log"));
    let mut wrong = listener(
        wrong_port,
        "another-passphrase-987",
        &dir.join("wrong.ts"),
        &dir.join("wrong.log"),
    );
    let target = |p: u16| {
        format!(
            "srt://127.0.0.1:{p}?streamid={}&latency=120&passphrase={PASSPHRASE}&pbkeylen=32",
            percent_encode("#!::r=live/{stream},m=publish")
        )
    };
    let prism = Prism::start(&srt_config(
        free_udp_port(),
        "",
        &[("enc", &target(port)), ("wrong", &target(wrong_port))],
    ));
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "secret"), &clip, false);
    wait_until(
        Duration::from_secs(10),
        "the encrypted target to come up",
        || {
            prism.metric_value("prism_target_up{stream=\"live/secret\",target=\"enc\"}")
                == Some(1.0)
        },
    );
    wait_until(
        Duration::from_secs(15),
        "the wrong-passphrase target to fail",
        || disconnects(&prism, "wrong") >= 1.0,
    );
    assert_eq!(
        prism.metric_value("prism_target_up{stream=\"live/secret\",target=\"wrong\"}"),
        Some(0.0)
    );
    assert!(
        publisher.wait_exit(Duration::from_secs(15)).is_some(),
        "publisher did not finish"
    );
    // The stream ended: Prism closes the SRT connection and srt-live-transmit exits.
    if wait_child(&mut dest, Duration::from_secs(10)).is_none() {
        let _ = dest.kill();
        let _ = dest.wait();
    }
    let _ = wrong.kill();
    let _ = wrong.wait();
    let p = probe(&out, Duration::from_secs(20)).unwrap_or_else(|e| {
        panic!(
            "{e}\n--- srt-live-transmit ---\n{}\n--- prism ---\n{}",
            tail_file(&dir.join("dest.log"), 50),
            prism.stderr()
        )
    });
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert!(p.video_frames_decoded >= 75 && p.audio_ok, "{p:?}");
    decode_ok(out.to_str().expect("utf-8 path"), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    // Nothing on the wrong listener decoded: encryption is what kept it out.
    assert!(
        std::fs::metadata(dir.join("wrong.ts")).map_or(0, |m| m.len()) == 0,
        "the wrong listener received media"
    );
    assert!(!prism.stderr().contains(PASSPHRASE), "{}", prism.stderr());
    assert!(!prism.metrics().contains(PASSPHRASE));
}
