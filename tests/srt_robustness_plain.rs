//! Callers that crash srt-tokio 0.4.4's listener when it has no passphrase (an encrypted
//! caller, `transtype=file` with its congestion-control extension) are refused with an SRT
//! rejection, while another SRT publisher on the same port keeps flowing to its
//! destination. The encrypted listener's side is in `srt_robustness_encrypted.rs`.

mod common;

use common::srt::*;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn bad_callers_to_the_plain_port_are_refused_while_a_session_keeps_flowing() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let dest = nginx.rtmp_url("app", "{stream}");
    let plain_port = free_udp_port();
    let plain = Prism::start(&srt_config(plain_port, "", &[("nginx", &dest)]));
    let mut good = SrtPublisher::start(
        &srt_url(plain_port, "#!::r=live/good,m=publish", ""),
        &clip,
        true,
    );
    nginx.wait_bytes_in("good", 50_000, Duration::from_secs(10));

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
    // The original combined test's last check, after every bad caller.
    assert_still_flowing(&plain, "live/good", "everything");

    // A new, good caller still gets in.
    let mut late = SrtPublisher::start(&srt_url(plain_port, "live/late", ""), &clip, false);
    nginx.wait_bytes_in("late", 50_000, Duration::from_secs(10));
    late.stop();

    // The stream recorded at the destination decodes, and holds more than 3 s.
    wait_published_for(&nginx, "good", Duration::from_secs(4));
    good.stop();
    wait_until(
        Duration::from_secs(10),
        "nginx to close the recording",
        || !nginx.is_publishing("good"),
    );
    assert_recording(&nginx.recording("good"), 3.0, 60.0);
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
}
