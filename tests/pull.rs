//! Pulled sources (`[[source]]`): Prism fetches a stream from an RTMP server (nginx-rtmp)
//! or an SRT listener (srt-live-transmit) and serves it like any published stream; a
//! player on Prism decodes it. The source survives its origin restarting, and a stream
//! already live from a pusher is not fought over.

mod common;

use common::*;
use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A config with RTMP, admin HTTP and the given `[[source]]` tables.
fn config(rtmp_port: u16, http_port: u16, sources: &[(&str, &str)]) -> String {
    let mut s = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp_port}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n\
         [stream]\nreconnect_grace_ms = 3000\n"
    );
    for (stream, url) in sources {
        s.push_str(&format!(
            "\n[[source]]\nstream = \"{stream}\"\nurl = \"{url}\"\n"
        ));
    }
    s
}

#[test]
fn rtmp_source_from_nginx_plays_on_prism_and_refuses_duplicates() {
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let mut origin = Publisher::start(&nginx.rtmp_url("app", "cam"), &clip, true);
    nginx.wait_bytes_in("cam", 50_000, Duration::from_secs(15));
    // `live/pushed` pulls from a port where nothing listens: it keeps failing to connect,
    // until an encoder pushes that stream to Prism; then it is refused as already live.
    let dead = free_port();
    let prism = Prism::start(&config(
        free_port(),
        free_port(),
        &[
            ("live/cam", &nginx.rtmp_url("app", "cam")),
            ("live/pushed", &format!("rtmp://127.0.0.1:{dead}/app/x")),
        ],
    ));
    wait_until(Duration::from_secs(15), "the source to publish", || {
        prism.metric_value("prism_source_up{stream=\"live/cam\"}") == Some(1.0)
    });
    // A player on Prism decodes the pulled stream.
    let frames = decode_ok(&prism.rtmp_url("live", "cam"), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\norigin: {}", origin.stderr()));
    assert!(frames >= 25, "decoded {frames} frames");
    assert!(
        prism.metric_value("prism_source_bytes_received_total{stream=\"live/cam\"}")
            > Some(100_000.0)
    );
    // The source is a publisher like any other: a pusher of the same stream is refused.
    let mut dup = Publisher::start(&prism.rtmp_url("live", "cam"), &clip, false);
    wait_until(
        Duration::from_secs(10),
        "the duplicate pusher to be refused",
        || prism.metric_value("prism_publish_rejected_total{reason=\"already_live\"}") >= Some(1.0),
    );
    dup.kill();
    // The other way round: pushed first, the source is refused with a counted reason.
    let mut pusher = Publisher::start(&prism.rtmp_url("live", "pushed"), &clip, true);
    wait_until(Duration::from_secs(20), "the source to be refused", || {
        prism.metric_value(
            "prism_source_errors_total{reason=\"already_live\",stream=\"live/pushed\"}",
        ) >= Some(1.0)
    });
    assert!(
        prism.metric_value("prism_source_errors_total{reason=\"connect\",stream=\"live/pushed\"}")
            >= Some(1.0)
    );
    assert!(prism
        .stderr()
        .contains("already live from a pushing publisher"));
    // The pusher still publishes: the source did not take its stream.
    let frames = decode_ok(&prism.rtmp_url("live", "pushed"), Duration::from_secs(20)).unwrap();
    assert!(frames >= 25);
    pusher.kill();
    origin.kill();
}

/// srt-live-transmit relaying UDP MPEG-TS to the SRT caller of its listener port: the
/// "SRT encoder" Prism pulls from. Killed on drop.
struct SrtOrigin {
    transmit: Child,
    feeder: Child,
    log: TempDir,
}

impl SrtOrigin {
    fn start(clip: &std::path::Path, srt_port: u16) -> SrtOrigin {
        let udp = free_udp_port();
        let log = TempDir::new("srt-origin");
        let transmit = Command::new("srt-live-transmit")
            .arg(format!("udp://127.0.0.1:{udp}"))
            .arg(format!(
                "srt://127.0.0.1:{srt_port}?mode=listener&latency=120"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log.join("slt.stderr")).unwrap())
            .spawn()
            .expect("spawn srt-live-transmit");
        let feeder = Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-hide_banner",
                "-v",
                "warning",
                "-re",
                "-stream_loop",
                "-1",
            ])
            .arg("-i")
            .arg(clip)
            .args(["-c", "copy", "-f", "mpegts"])
            .arg(format!("udp://127.0.0.1:{udp}?pkt_size=1316"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log.join("ffmpeg.stderr")).unwrap())
            .spawn()
            .expect("spawn ffmpeg");
        SrtOrigin {
            transmit,
            feeder,
            log,
        }
    }

    fn logs(&self) -> String {
        format!(
            "srt-live-transmit:\n{}\nffmpeg:\n{}",
            tail_file(&self.log.join("slt.stderr"), 30),
            tail_file(&self.log.join("ffmpeg.stderr"), 30)
        )
    }
}

impl Drop for SrtOrigin {
    fn drop(&mut self) {
        for c in [&mut self.transmit, &mut self.feeder] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn srt_source_from_srt_live_transmit_survives_its_restart() {
    let clip = make_clip(5);
    let srt_port = free_udp_port();
    let origin = SrtOrigin::start(&clip, srt_port);
    let prism = Prism::start(&config(
        free_port(),
        free_port(),
        &[("live/srt", &format!("srt://127.0.0.1:{srt_port}"))],
    ));
    wait_until(Duration::from_secs(20), "the SRT source to publish", || {
        prism.metric_value("prism_source_up{stream=\"live/srt\"}") == Some(1.0)
    });
    let frames = decode_ok(&prism.rtmp_url("live", "srt"), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", origin.logs()));
    assert!(frames >= 25, "decoded {frames} frames");

    // The origin goes away and comes back on the same port: Prism pulls again.
    drop(origin);
    wait_until(Duration::from_secs(20), "the source to notice", || {
        prism.metric_value("prism_source_up{stream=\"live/srt\"}") == Some(0.0)
    });
    let origin = SrtOrigin::start(&clip, srt_port);
    wait_until(Duration::from_secs(30), "the source to pull again", || {
        prism.metric_value("prism_source_up{stream=\"live/srt\"}") == Some(1.0)
    });
    assert!(prism.metric_value("prism_source_reconnects_total{stream=\"live/srt\"}") >= Some(1.0));
    let frames = decode_ok(&prism.rtmp_url("live", "srt"), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", origin.logs()));
    assert!(frames >= 25, "decoded {frames} frames after the restart");
}
