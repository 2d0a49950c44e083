//! Callers that crash srt-tokio 0.4.4's listener when it has a passphrase (a key-length
//! mismatch, an unencrypted caller) are refused with an SRT rejection, as is a wrong
//! passphrase, while another, encrypted SRT publisher on the same port keeps flowing to its
//! destination. Also covers encrypted ingest. The plain listener's side is in
//! `srt_robustness_plain.rs`.

mod common;

use common::srt::*;
use common::*;
use std::time::{Duration, Instant};

const PASSPHRASE: &str = "passphrase=prism-secret-1&pbkeylen=16";

#[test]
fn bad_callers_to_the_encrypted_port_are_refused_while_a_session_keeps_flowing() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let dest = nginx.rtmp_url("app", "{stream}");
    // AES-128.
    let secret_port = free_udp_port();
    let secret = Prism::start(&srt_config(
        secret_port,
        "passphrase = \"prism-secret-1\"\npbkeylen = 16",
        &[("nginx", &dest)],
    ));
    let mut good_enc = SrtPublisher::start(
        &srt_url(secret_port, "#!::r=live/goodenc,m=publish", PASSPHRASE),
        &clip,
        true,
    );
    nginx.wait_bytes_in("goodenc", 50_000, Duration::from_secs(10));

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

    // A new, good caller still gets in.
    let mut late = SrtPublisher::start(
        &srt_url(secret_port, "live/lateenc", PASSPHRASE),
        &clip,
        false,
    );
    nginx.wait_bytes_in("lateenc", 50_000, Duration::from_secs(10));
    late.stop();

    // The stream recorded at the destination decodes, and holds more than 3 s.
    wait_published_for(&nginx, "goodenc", Duration::from_secs(4));
    good_enc.stop();
    wait_until(
        Duration::from_secs(10),
        "nginx to close the recording",
        || !nginx.is_publishing("goodenc"),
    );
    assert_recording(&nginx.recording("goodenc"), 3.0, 60.0);
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
}
