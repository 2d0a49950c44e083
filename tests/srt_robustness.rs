//! Callers that crash srt-tokio 0.4.4's listener (an encrypted caller to a listener without
//! passphrase, a key-length mismatch, `transtype=file` with its congestion-control
//! extension) are refused with an SRT rejection, while another SRT publisher on the same
//! port keeps flowing to its destination. Also covers encrypted ingest.

mod common;

use common::srt::*;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs a misbehaving ffmpeg caller (2 s of media) and asserts it is refused.
#[track_caller]
fn bad_ffmpeg_caller(clip: &std::path::Path, url: &str) -> String {
    let out = run_with_timeout(
        Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-hide_banner",
                "-v",
                "error",
                "-re",
                "-t",
                "2",
                "-i",
            ])
            .arg(clip)
            .args(["-c", "copy", "-f", "mpegts", url]),
        Duration::from_secs(15),
    )
    .unwrap_or_else(|e| panic!("bad caller: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "a bad caller was accepted: {url}\n{stderr}"
    );
    stderr
}

/// `prism_ingest_bytes_total` of a stream.
fn ingest_bytes(prism: &Prism, stream: &str) -> f64 {
    prism
        .metric_value(&format!("prism_ingest_bytes_total{{stream=\"{stream}\"}}"))
        .unwrap_or(0.0)
}

#[track_caller]
fn assert_still_flowing(prism: &Prism, stream: &str, what: &str) {
    let before = ingest_bytes(prism, stream);
    wait_until(
        Duration::from_secs(5),
        &format!("{stream} ingest to keep rising after {what}"),
        || ingest_bytes(prism, stream) > before + 20_000.0,
    );
}

#[track_caller]
fn assert_refused(prism: &Prism, reason: &str) {
    let key = format!("prism_connection_errors_total{{reason=\"{reason}\",transport=\"srt\"}}");
    wait_until(Duration::from_secs(5), &format!("{key} to count"), || {
        prism.metric_value(&key).unwrap_or(0.0) >= 1.0
    });
}

#[test]
fn bad_callers_are_refused_while_sessions_keep_flowing() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let dest = nginx.rtmp_url("app", "{stream}");
    // One Prism without encryption, one with (AES-128).
    let (plain_port, secret_port) = (free_udp_port(), free_udp_port());
    let plain = Prism::start(&srt_config(plain_port, "", &[("nginx", &dest)]));
    let secret = Prism::start(&srt_config(
        secret_port,
        "passphrase = \"prism-secret-1\"\npbkeylen = 16",
        &[("nginx", &dest)],
    ));
    let mut good = SrtPublisher::start(
        &srt_url(plain_port, "#!::r=live/good,m=publish", ""),
        &clip,
        true,
    );
    let mut good_enc = SrtPublisher::start(
        &srt_url(
            secret_port,
            "#!::r=live/goodenc,m=publish",
            "passphrase=prism-secret-1&pbkeylen=16",
        ),
        &clip,
        true,
    );
    nginx.wait_bytes_in("good", 50_000, Duration::from_secs(10));
    nginx.wait_bytes_in("goodenc", 50_000, Duration::from_secs(10));

    // Encrypted caller to a listener without passphrase (srt-live-transmit, then ffmpeg).
    let slt = run_with_timeout(
        Command::new("srt-live-transmit")
            .args(["-t:3", "-a:no"])
            .arg("file://con")
            .arg(format!(
                "srt://127.0.0.1:{plain_port}?passphrase=xxxxxxxxxx&streamid=live/slt"
            )),
        Duration::from_secs(10),
    );
    drop(slt); // refused or timed out; either way it must not have hurt the session
    bad_ffmpeg_caller(
        &clip,
        &srt_url(plain_port, "live/enc", "passphrase=xxxxxxxxxx&pbkeylen=16"),
    );
    assert_refused(&plain, "encryption_mismatch");
    assert_still_flowing(&plain, "live/good", "encrypted callers");

    // transtype=file sends the congestion-control extension ("file").
    let e = bad_ffmpeg_caller(&clip, &srt_url(plain_port, "live/file", "transtype=file"));
    assert_refused(&plain, "congestion_ext");
    assert_still_flowing(&plain, "live/good", "a transtype=file caller");
    eprintln!("transtype=file caller saw: {e}");

    // Key-length mismatch: AES-256 caller to an AES-128 listener; then an unencrypted one.
    bad_ffmpeg_caller(
        &clip,
        &srt_url(
            secret_port,
            "live/klen",
            "passphrase=prism-secret-1&pbkeylen=32",
        ),
    );
    assert_refused(&secret, "key_length_mismatch");
    bad_ffmpeg_caller(&clip, &srt_url(secret_port, "live/clear", ""));
    assert_refused(&secret, "encryption_mismatch");
    // A wrong passphrase with the right key length is refused by the library itself.
    bad_ffmpeg_caller(
        &clip,
        &srt_url(
            secret_port,
            "live/wrongpw",
            "passphrase=wrong-secret-1&pbkeylen=16",
        ),
    );
    assert_still_flowing(&secret, "live/goodenc", "bad encrypted callers");
    assert_still_flowing(&plain, "live/good", "everything");

    // A new, good caller still gets in on both ports.
    let mut late = SrtPublisher::start(&srt_url(plain_port, "live/late", ""), &clip, false);
    nginx.wait_bytes_in("late", 50_000, Duration::from_secs(10));
    late.stop();

    // Both streams recorded at the destination decode.
    good.stop();
    good_enc.stop();
    for key in ["good", "goodenc"] {
        wait_until(
            Duration::from_secs(10),
            "nginx to close the recording",
            || !nginx.is_publishing(key),
        );
        assert_recording(&nginx.recording(key), 3.0, 60.0);
    }
    assert!(
        t0.elapsed() < Duration::from_secs(40),
        "took {:?}",
        t0.elapsed()
    );
}
