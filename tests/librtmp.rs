//! librtmp as a player: rtmpdump (librtmp's reference client) plays a live
//! stream from Prism over rtmp:// and over rtmpt:// (Prism's HTTP tunnel),
//! and the FLV it writes is a clean H.264 + AAC recording that starts on a
//! keyframe (it decodes without a single error).
//!
//! rtmpdump's `--stop` is a play duration the server is asked to honour
//! (Prism, like nginx-rtmp, plays live streams until they end), so the test
//! stops rtmpdump itself with SIGINT, which it handles by closing its file.

mod common;

use common::*;
use std::fs;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `rtmpdump --live -r URL -o FILE`. Killed on drop.
struct RtmpDump {
    child: Option<Child>,
    dir: TempDir,
    url: String,
}

impl RtmpDump {
    fn start(url: &str) -> RtmpDump {
        let dir = TempDir::new("rtmpdump");
        let child = Command::new("rtmpdump")
            .args(["--live", "--timeout", "10", "-r", url, "-o"])
            .arg(dir.join("out.flv"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("rtmpdump.stderr")).expect("create file"))
            .spawn()
            .expect("spawn rtmpdump (is it installed? ./scripts/test.sh installs it)");
        RtmpDump {
            child: Some(child),
            dir,
            url: url.to_string(),
        }
    }

    fn out_len(&self) -> u64 {
        fs::metadata(self.dir.join("out.flv"))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    fn stderr(&self) -> String {
        // Progress lines are \r-separated: keep the log readable.
        tail_file(&self.dir.join("rtmpdump.stderr"), 60)
            .split('\r')
            .filter(|l| !l.trim_end().ends_with(" sec"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Records until the file holds `bytes`, then SIGINTs rtmpdump and waits
    /// for it to close the file. Returns the FLV path.
    #[track_caller]
    fn record(&mut self, bytes: u64, timeout: Duration) -> std::path::PathBuf {
        let started = Instant::now();
        wait_until(
            timeout,
            &format!("rtmpdump to record {bytes} bytes"),
            || {
                if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                    panic!(
                        "rtmpdump {} exited early with {st}:\n{}",
                        self.url,
                        self.stderr()
                    );
                }
                self.out_len() >= bytes
            },
        );
        let mut child = self.child.take().expect("rtmpdump running");
        let status = stop_child(&mut child, "INT", Duration::from_secs(5));
        let log = self.stderr();
        eprintln!(
            "rtmpdump {}: {} bytes in {:?}, exit {status:?}",
            self.url,
            self.out_len(),
            started.elapsed()
        );
        let status = status.unwrap_or_else(|| panic!("rtmpdump ignored SIGINT:\n{log}"));
        // 0 = complete, 2 = incomplete (what an interrupted live download is).
        assert!(
            matches!(status.code(), Some(0) | Some(2)),
            "rtmpdump exit {status}:\n{log}"
        );
        assert!(log.contains("Starting Live Stream"), "{log}");
        // The only error allowed is the read interrupted by our SIGINT.
        for line in log.lines().filter(|l| l.contains("ERROR")) {
            assert!(
                line.contains("failed to read RTMP packet header"),
                "rtmpdump reported an error:\n{log}"
            );
        }
        self.dir.join("out.flv")
    }
}

impl Drop for RtmpDump {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- rtmpdump {} ---\n{}", self.url, self.stderr());
        }
    }
}

/// Prism with an RTMPT listener on `tunnel_port` and no routes; ffmpeg
/// publishing the looping 5 s clip to `live/KEY`.
fn prism_with_stream(tunnel_port: u16, key: &str) -> (Prism, Publisher) {
    let clip = make_clip(5);
    let prism = Prism::start(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\n\n\
         [rtmpt]\nlisten = \"127.0.0.1:{tunnel_port}\"\n",
        free_port(),
        free_port()
    ));
    wait_port(
        SocketAddr::from(([127, 0, 0, 1], tunnel_port)),
        Duration::from_secs(5),
    );
    let publisher = Publisher::start(&prism.rtmp_url("live", key), &clip, true);
    let stream = format!("live/{key}");
    wait_until(Duration::from_secs(10), "ingest of video and audio", || {
        prism.ingest_frames(&stream, "video") > 0.0 && prism.ingest_frames(&stream, "audio") > 0.0
    });
    (prism, publisher)
}

/// The recording is H.264 320x240 + AAC, about `secs` seconds of it, and
/// decodes without errors.
#[track_caller]
fn check_recording(flv: &std::path::Path, secs: f64) {
    let p = probe(flv, Duration::from_secs(30)).unwrap_or_else(|e| panic!("probe: {e}"));
    eprintln!("{}: {p:?}", flv.display());
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert_eq!((p.width, p.height), (Some(320), Some(240)), "{p:?}");
    assert!(p.video_frames_decoded as f64 >= 25.0 * secs * 0.8, "{p:?}");
    assert!(p.audio_ok, "{p:?}");
    let n = decode_ok(flv.to_str().expect("utf-8 path"), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, p.video_frames_decoded);
}

/// The clip runs at about 105 kB/s: this is over 4.5 s of it.
const RECORD_BYTES: u64 = 500_000;

#[test]
fn rtmpdump_plays_over_rtmp() {
    let (prism, mut publisher) = prism_with_stream(free_port(), "lib");
    let mut dump = RtmpDump::start(&prism.rtmp_url("live", "lib"));
    wait_until(Duration::from_secs(10), "rtmpdump as a player", || {
        prism.metric_value("prism_players_active{stream=\"live/lib\"}") == Some(1.0)
    });
    let flv = dump.record(RECORD_BYTES, Duration::from_secs(20));
    check_recording(&flv, 4.0);
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());
    assert_eq!(
        prism.metric_sum("prism_connection_errors_total{transport=\"rtmp\""),
        None,
        "{}",
        prism.metrics()
    );
    publisher.stop();
}

#[test]
fn rtmpdump_plays_over_rtmpt() {
    let tunnel = free_port();
    let (prism, mut publisher) = prism_with_stream(tunnel, "libt");
    let mut dump = RtmpDump::start(&format!("rtmpt://127.0.0.1:{tunnel}/live/libt"));
    wait_until(
        Duration::from_secs(10),
        "rtmpdump as a player over rtmpt",
        || {
            prism.metric_value("prism_connections_active{transport=\"rtmpt\"}") == Some(1.0)
                && prism.metric_value("prism_players_active{stream=\"live/libt\"}") == Some(1.0)
        },
    );
    let flv = dump.record(RECORD_BYTES, Duration::from_secs(20));
    check_recording(&flv, 4.0);
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());
    // rtmpdump closes its tunnel session (or it expires): the player goes away.
    wait_until(Duration::from_secs(20), "the rtmpt player to leave", || {
        prism.metric_value("prism_players_active{stream=\"live/libt\"}") == Some(0.0)
    });
    publisher.stop();
}
