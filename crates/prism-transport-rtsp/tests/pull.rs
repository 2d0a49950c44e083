//! The rtsp:// pull client against a real camera simulator (GStreamer's RTSP server,
//! tests/rtsp_camera.py: H.264 + AAC), with and without Digest auth, over TCP and UDP:
//! Prism pulls it into a relay and ffprobe decodes it back from the relay's RTMP port.
//! Until the `[[source]]` framework lands, [`pull`] is called directly, as it will be.

use prism_config::Config;
use prism_metrics::Metrics;
use prism_relay::Relay;
use prism_transport_rtsp::{pull, RtspTransport};
use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The camera simulator; killed and reaped on drop.
struct Camera(Child);

impl Camera {
    fn start(port: u16, args: &[&str]) -> Camera {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/rtsp_camera.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(port.to_string())
            .arg("/cam")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start /usr/bin/python3 tests/rtsp_camera.py");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let mut cam = Camera(child);
        assert_eq!(line.trim(), "READY", "camera simulator did not start");
        // (Dropped on a failed assert: killed.)
        cam.0.stdout = None;
        cam
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A relay with an RTMP listener (for ffprobe to play from).
async fn relay() -> (Arc<Relay>, u16) {
    let relay = Relay::new(Config::default(), Metrics::new(), vec![], vec![]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(prism_transport_rtmp::run(listener, relay.clone()));
    (relay, port)
}

/// ffprobe of the relay's RTMP stream: (video codec, video frames, audio codec, audio frames).
async fn probe_rtmp(port: u16, stream: &str) -> (String, u64, String, u64) {
    let url = format!("rtmp://127.0.0.1:{port}/{stream}");
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-read_intervals", "%+3"])
            .args([
                "-show_entries",
                "stream=codec_type,codec_name,nb_read_frames",
            ])
            .args(["-of", "csv=p=0", &url])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (mut v, mut vf, mut a, mut af) = (String::new(), 0, String::new(), 0);
    for l in text.lines() {
        let f: Vec<&str> = l.split(',').collect();
        match f.as_slice() {
            [name, "video", n] => (v, vf) = (name.to_string(), n.parse().unwrap_or(0)),
            [name, "audio", n] => (a, af) = (name.to_string(), n.parse().unwrap_or(0)),
            _ => {}
        }
    }
    (v, vf, a, af)
}

async fn wait_live(relay: &Relay, app: &str, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.stream(app, key).is_none() {
        assert!(Instant::now() < deadline, "{app}/{key} never went live");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metric(relay: &Relay, prefix: &str) -> f64 {
    relay
        .render_metrics()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_a_camera_over_tcp_and_udp_with_digest_auth() {
    let t0 = Instant::now();
    let cam_port = free_port();
    let _cam = Camera::start(cam_port, &["--user", "admin", "--password", "s3cr:t"]);
    let (relay, rtmp_port) = relay().await;
    for (i, transport) in [RtspTransport::Tcp, RtspTransport::Udp]
        .into_iter()
        .enumerate()
    {
        let key = format!("door{i}");
        let url = format!("rtsp://admin:s3cr%3At@127.0.0.1:{cam_port}/cam");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (r, k) = (relay.clone(), key.clone());
        let task = tokio::spawn(async move {
            pull(r, &url, transport, "cams", &k, async {
                let _ = stopped.await;
            })
            .await
        });
        wait_live(&relay, "cams", &key).await;
        let (v, vf, a, af) = probe_rtmp(rtmp_port, &format!("cams/{key}")).await;
        assert_eq!((v.as_str(), a.as_str()), ("h264", "aac"), "{transport:?}");
        assert!(
            vf >= 25 && af >= 25,
            "{transport:?}: {vf} video, {af} audio frames"
        );
        let _ = stop.send(());
        let end = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert!(end.is_ok(), "{end:?}");
    }
    // The credentials never reach the metrics.
    assert!(!relay.render_metrics().contains("s3cr"));
    // Wrong password: refused, counted, no stream.
    let url = format!("rtsp://admin:wrong@127.0.0.1:{cam_port}/cam");
    let e = pull(
        relay.clone(),
        &url,
        RtspTransport::Tcp,
        "cams",
        "bad",
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason.as_str(), "refused", "{e:?}");
    assert!(
        e.detail.contains("401") && !e.detail.contains("wrong"),
        "{e:?}"
    );
    assert!(relay.stream("cams", "bad").is_none());
    assert!(
        metric(
            &relay,
            "prism_connection_errors_total{reason=\"refused\",transport=\"rtsp\"}"
        ) >= 1.0
    );
    eprintln!("pull test took {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_going_away_ends_the_pull_with_an_error() {
    let cam_port = free_port();
    let mut cam = Camera::start(cam_port, &[]);
    let (relay, _) = relay().await;
    let url = format!("rtsp://127.0.0.1:{cam_port}/cam");
    let r = relay.clone();
    let task = tokio::spawn(async move {
        pull(
            r,
            &url,
            RtspTransport::Tcp,
            "cams",
            "gone",
            std::future::pending(),
        )
        .await
    });
    wait_live(&relay, "cams", "gone").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(
        &relay,
        "prism_ingest_frames_total{kind=\"video\",stream=\"cams/gone\"}",
    ) < 10.0
    {
        assert!(Instant::now() < deadline, "no video frames");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = cam.0.kill();
    let _ = cam.0.wait();
    let end = tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("pull returns once the camera is gone")
        .unwrap();
    let e = end.unwrap_err();
    assert!(
        matches!(e.reason.as_str(), "closed" | "io" | "idle_timeout"),
        "{e:?}"
    );
    // Nothing else than the pull: no connection to a camera that is not there.
    let url = format!("rtsp://127.0.0.1:{cam_port}/cam");
    let e = pull(
        relay.clone(),
        &url,
        RtspTransport::Tcp,
        "cams",
        "gone2",
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason.as_str(), "connect", "{e:?}");
}
