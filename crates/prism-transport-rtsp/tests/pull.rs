//! The rtsp:// pull client against a real camera simulator (GStreamer's RTSP server,
//! tests/rtsp_camera.py: H.264 + AAC), with and without Digest auth, over TCP and UDP:
//! Prism pulls it into a relay and ffprobe decodes it back from the relay's RTMP port.
//! Until the `[[source]]` framework lands, [`pull`] is called directly, as it will be.

use prism_config::Config;
use prism_metrics::Metrics;
use prism_relay::{ConnError, Relay};
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
    wait_live_of(relay, app, key, None).await
}

/// [`wait_live`] for the stream `pull` feeds: says why if the pull ended first.
async fn wait_pulled(
    relay: &Relay,
    app: &str,
    key: &str,
    pull: &mut tokio::task::JoinHandle<Result<(), ConnError>>,
) {
    wait_live_of(relay, app, key, Some(pull)).await
}

async fn wait_live_of(
    relay: &Relay,
    app: &str,
    key: &str,
    mut pull: Option<&mut tokio::task::JoinHandle<Result<(), ConnError>>>,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.stream(app, key).is_none() {
        if let Some(pull) = pull.as_mut().filter(|p| p.is_finished()) {
            panic!(
                "{app}/{key}: the pull ended before going live: {:?}",
                pull.await
            );
        }
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
    // Basic auth (a camera that offers only Basic).
    let basic_port = free_port();
    let _basic = Camera::start(
        basic_port,
        &["--user", "viewer", "--password", "pw", "--auth", "basic"],
    );
    let url = format!("rtsp://viewer:pw@127.0.0.1:{basic_port}/cam");
    let r = relay.clone();
    let _task = tokio::spawn(async move {
        pull(
            r,
            &url,
            RtspTransport::Tcp,
            "cams",
            "basic",
            std::future::pending(),
        )
        .await
    });
    wait_live(&relay, "cams", "basic").await;
    let (v, vf, _, af) = probe_rtmp(rtmp_port, "cams/basic").await;
    assert!(v == "h264" && vf >= 25 && af >= 25, "basic: {v} {vf} {af}");
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
    // While it is down: a connection error, at once.
    let url = format!("rtsp://127.0.0.1:{cam_port}/cam");
    let e = pull(
        relay.clone(),
        &url,
        RtspTransport::Tcp,
        "cams",
        "gone",
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason.as_str(), "connect", "{e:?}");
    // The camera restarts: the next pull (the caller's reconnect) resumes the same stream
    // within its reconnect grace.
    let stream = relay
        .stream("cams", "gone")
        .expect("stream in its reconnect grace");
    let _cam = Camera::start(cam_port, &[]);
    let r = relay.clone();
    let _task = tokio::spawn(async move {
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
    let before = metric(
        &relay,
        "prism_ingest_frames_total{kind=\"video\",stream=\"cams/gone\"}",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(
        &relay,
        "prism_ingest_frames_total{kind=\"video\",stream=\"cams/gone\"}",
    ) < before + 10.0
    {
        assert!(
            Instant::now() < deadline,
            "no video after the camera restarted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        Arc::ptr_eq(&stream, &relay.stream("cams", "gone").unwrap()),
        "same stream"
    );
}

/// A scripted camera for bad input: answers OPTIONS, DESCRIBE (with `describe_extra` +
/// `sdp`), SETUP and PLAY on one connection, then writes `after_play` and holds the
/// connection for `hold` before closing.
async fn fake_camera(describe: Vec<u8>, after_play: Vec<u8>, hold: Duration) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + 4);
                let method = head.split(' ').next().unwrap_or_default().to_owned();
                let cseq = head
                    .lines()
                    .find_map(|l| l.strip_prefix("CSeq: "))
                    .unwrap_or("0")
                    .to_owned();
                let reply: Vec<u8> = match method.as_str() {
                    "DESCRIBE" => {
                        let mut r = format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n").into_bytes();
                        r.extend_from_slice(&describe);
                        r
                    }
                    "SETUP" => format!(
                        "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: 1234;timeout=60\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
                    )
                    .into_bytes(),
                    _ => format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n\r\n").into_bytes(),
                };
                let _ = s.write_all(&reply).await;
                if method == "PLAY" {
                    let _ = s.write_all(&after_play).await;
                    tokio::time::sleep(hold).await;
                    return;
                }
            }
        }
    });
    port
}

fn sdp_response(sdp: &str) -> Vec<u8> {
    format!(
        "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

const GOOD_SDP: &str = "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:track1\r\nm=audio 0 RTP/AVP 0\r\na=control:track2\r\n";

fn rtp(seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![b'$', 0, 0, 0, 0x80, 0x80 | 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 7]);
    p.extend_from_slice(payload);
    let len = (p.len() - 4) as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cameras_end_their_session_with_a_counted_reason() {
    let (relay, _) = relay().await;
    let run = |port: u16, key: &'static str| {
        let relay = relay.clone();
        async move {
            let url = format!("rtsp://127.0.0.1:{port}/cam");
            tokio::time::timeout(
                Duration::from_secs(20),
                pull(
                    relay,
                    &url,
                    RtspTransport::Tcp,
                    "bad",
                    key,
                    std::future::pending(),
                ),
            )
            .await
            .expect("pull bounded in time")
        }
    };
    // Absurd SDP: a payload type over 127, a clock of zero, 20 media.
    for (i, sdp) in [
        "v=0\r\nm=video 0 RTP/AVP 300\r\n".to_string(),
        "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/0\r\n".to_string(),
        "m=video 0 RTP/AVP 96\r\n".repeat(20),
    ]
    .into_iter()
    .enumerate()
    {
        let port = fake_camera(sdp_response(&sdp), vec![], Duration::ZERO).await;
        let e = run(port, ["a", "b", "c"][i]).await.unwrap_err();
        assert_eq!(e.reason.as_str(), "protocol", "{sdp}: {e:?}");
    }
    // A DESCRIBE body over the limit.
    let port = fake_camera(
        b"Content-Length: 999999999\r\n\r\n".to_vec(),
        vec![],
        Duration::ZERO,
    )
    .await;
    assert_eq!(
        run(port, "d").await.unwrap_err().reason.as_str(),
        "protocol"
    );
    // Garbage after PLAY.
    let port = fake_camera(
        sdp_response(GOOD_SDP),
        b"\x16\x03\x01garbage".to_vec(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        run(port, "e").await.unwrap_err().reason.as_str(),
        "protocol"
    );
    // Jumping sequence numbers and a bogus interleaved length at the end: packets are
    // dropped and counted; the session ends when the camera closes.
    let dropped = |r: &Relay| metric(r, "prism_rtsp_dropped_total");
    let before = dropped(&relay);
    let mut media = Vec::new();
    for (i, seq) in [10u16, 5000, 7, 60000, 11, 30000].into_iter().enumerate() {
        media.extend(rtp(seq, i as u32 * 3000, &[0x41, 0x9a, 1, 2]));
    }
    media.extend_from_slice(b"$\x00\xff\xffshort");
    let port = fake_camera(sdp_response(GOOD_SDP), media, Duration::from_millis(500)).await;
    let e = run(port, "f").await.unwrap_err();
    assert_eq!(e.reason.as_str(), "closed", "{e:?}");
    // G.711 track (once), late packets, frames before a keyframe.
    assert!(
        dropped(&relay) >= before + 4.0,
        "{}",
        relay.render_metrics()
    );
    assert!(metric(&relay, "prism_rtsp_dropped_total{reason=\"g711\"}") >= 1.0);
    assert!(
        metric(
            &relay,
            "prism_connection_errors_total{reason=\"protocol\",transport=\"rtsp\"}"
        ) >= 5.0
    );
}

/// H.265 and Opus both ways: an H.265 + Opus camera is pulled (RFC 7798 depacketizer,
/// hvcC sequence header from in-band VPS/SPS/PPS; Opus as Enhanced RTMP) and played back
/// from the RTSP server (packetizers, sprop-vps/sps/pps): ffprobe decodes HEVC and Opus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_camera_is_pulled_and_served_over_rtsp() {
    let cam_port = free_port();
    let _cam = Camera::start(cam_port, &["--codec", "h265", "--audio", "opus"]);
    let (relay, _) = relay().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rtsp_port = listener.local_addr().unwrap().port();
    let config: prism_config::RtspConfig = prism_config::Config::from_toml_str(
        &format!("[rtsp]\nlisten = \"127.0.0.1:{rtsp_port}\"\n"),
        "test",
    )
    .unwrap()
    .rtsp
    .unwrap();
    tokio::spawn(prism_transport_rtsp::run(listener, relay.clone(), config));
    let url = format!("rtsp://127.0.0.1:{cam_port}/cam");
    let r = relay.clone();
    let _task = tokio::spawn(async move {
        pull(
            r,
            &url,
            RtspTransport::Udp,
            "cams",
            "hevc",
            std::future::pending(),
        )
        .await
    });
    wait_live(&relay, "cams", "hevc").await;
    let play = format!("rtsp://127.0.0.1:{rtsp_port}/cams/hevc");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args([
                "30",
                "ffprobe",
                "-v",
                "error",
                "-rtsp_transport",
                "tcp",
                "-count_frames",
            ])
            .args([
                "-read_intervals",
                "%+3",
                "-show_entries",
                "stream=codec_name,nb_read_frames",
            ])
            .args(["-of", "csv=p=0", &play])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let frames = |codec: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{codec},")))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        frames("hevc") >= 25 && frames("opus") >= 25,
        "{text}\n{err}"
    );
}

/// CPU seconds (user + system) of process `pid` ("self" for this one).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// Benchmark (ignored; `cargo test --release -p prism-transport-rtsp --test pull -- --ignored
/// --nocapture`): `PULLS` (default 20) pulls of one camera for 10 s, Prism's CPU per pull
/// against as many `ffmpeg -rtsp_transport tcp -i URL -c copy -f flv /dev/null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_pulls_against_ffmpeg_copy() {
    let n: usize = std::env::var("PULLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let kbps = std::env::var("KBPS").unwrap_or_else(|_| "2000".into());
    let cam_port = free_port();
    let cam = Camera::start(cam_port, &["--kbps", &kbps, "--pattern", "snow"]);
    let url = format!("rtsp://127.0.0.1:{cam_port}/cam");
    let (relay, _) = relay().await;
    let mut pulls = Vec::new();
    for i in 0..n {
        let (r, u) = (relay.clone(), url.clone());
        pulls.push(tokio::spawn(async move {
            let key = format!("cam{i}");
            let end = pull(
                r,
                &u,
                RtspTransport::Tcp,
                "bench",
                &key,
                std::future::pending(),
            )
            .await;
            eprintln!("pull {key} ended: {end:?}");
        }));
        // The simulator sets clients up one by one: do not queue them all at once.
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for i in 0..n {
        wait_live(&relay, "bench", &format!("cam{i}")).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bytes = |r: &Relay| metric(r, "prism_ingest_bytes_total");
    let (c0, b0, t0) = (cpu_seconds("self"), bytes(&relay), Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (c1, b1, secs) = (
        cpu_seconds("self"),
        bytes(&relay),
        t0.elapsed().as_secs_f64(),
    );
    let mbps = (b1 - b0) * 8.0 / secs / 1e6 / n as f64;
    let prism = (c1 - c0) / secs;
    let rss_kb = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    eprintln!(
        "prism: {n} pulls at {mbps:.2} Mbit/s each: {prism:.3} cores, {:.2} ms CPU per pull-second, process RSS {:.1} MB ({:.2} MB per pull, upper bound)",
        prism * 1000.0 / n as f64,
        rss_kb / 1024.0,
        rss_kb / 1024.0 / n as f64
    );

    // A fresh camera for ffmpeg: the simulator serves one side at a time.
    for p in pulls {
        p.abort();
    }
    drop(cam);
    let cam_port = free_port();
    let _cam = Camera::start(cam_port, &["--kbps", &kbps, "--pattern", "snow"]);
    let url = format!("rtsp://127.0.0.1:{cam_port}/cam");
    let mut children: Vec<Child> = (0..n)
        .map(|i| {
            if i % 10 == 9 {
                std::thread::sleep(Duration::from_millis(200));
            }
            Command::new("ffmpeg")
                .args([
                    "-nostdin",
                    "-loglevel",
                    "error",
                    "-rtsp_transport",
                    "tcp",
                    "-i",
                    &url,
                ])
                .args(["-c", "copy", "-f", "flv", "-y", "/dev/null"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu = |cs: &[Child]| -> f64 { cs.iter().map(|c| cpu_seconds(&c.id().to_string())).sum() };
    let (f0, t0) = (cpu(&children), Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let ffmpeg = (cpu(&children) - f0) / t0.elapsed().as_secs_f64();
    let rss: f64 = children
        .iter()
        .filter_map(|c| std::fs::read_to_string(format!("/proc/{}/status", c.id())).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .sum();
    eprintln!(
        "ffmpeg -c copy: {n} processes: {ffmpeg:.3} cores, {:.2} ms CPU per pull-second, RSS {:.1} MB per process",
        ffmpeg * 1000.0 / n as f64,
        rss / 1024.0 / n as f64
    );
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Prism pulling from Prism: a camera pulled into `cams/a`, served by the RTSP server
/// (session timeout 5 s), pulled back over UDP into `cams/b`. The client's receiver
/// reports and keep-alives hold the server's UDP session open past its timeout; a UDP
/// player that goes silent (no RTCP, no request) is closed after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prism_pulls_prism_over_udp_past_the_session_timeout() {
    let cam_port = free_port();
    let _cam = Camera::start(cam_port, &[]);
    let (relay, _) = relay().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rtsp_port = listener.local_addr().unwrap().port();
    let config: prism_config::RtspConfig = prism_config::Config::from_toml_str(
        &format!("[rtsp]\nlisten = \"127.0.0.1:{rtsp_port}\"\nsession_timeout_ms = 5000\n"),
        "test",
    )
    .unwrap()
    .rtsp
    .unwrap();
    tokio::spawn(prism_transport_rtsp::run(listener, relay.clone(), config));
    let r = relay.clone();
    let cam = format!("rtsp://127.0.0.1:{cam_port}/cam");
    let mut cam_a = tokio::spawn(async move {
        pull(
            r,
            &cam,
            RtspTransport::Tcp,
            "cams",
            "a",
            std::future::pending(),
        )
        .await
    });
    wait_pulled(&relay, "cams", "a", &mut cam_a).await;
    let r = relay.clone();
    let own = format!("rtsp://127.0.0.1:{rtsp_port}/cams/a");
    let mut task = tokio::spawn(async move {
        pull(
            r,
            &own,
            RtspTransport::Udp,
            "cams",
            "b",
            std::future::pending(),
        )
        .await
    });
    wait_pulled(&relay, "cams", "b", &mut task).await;
    let frames = |r: &Relay| {
        metric(
            r,
            "prism_ingest_frames_total{kind=\"video\",stream=\"cams/b\"}",
        )
    };
    // Past the 5 s session timeout: kept alive by RTCP receiver reports and keep-alives.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let before = frames(&relay);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(frames(&relay) >= before + 10.0, "cams/b stalled");
    assert!(!task.is_finished(), "{:?}", task.await);
    let timeouts = |r: &Relay| {
        metric(
            r,
            "prism_connection_errors_total{reason=\"session_timeout\",transport=\"rtsp\"}",
        )
    };
    assert_eq!(timeouts(&relay), 0.0);

    // A silent UDP player: SETUP and PLAY over a held-open TCP connection, then nothing.
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", rtsp_port))
        .await
        .unwrap();
    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = rtp.local_addr().unwrap().port();
    let url = format!("rtsp://127.0.0.1:{rtsp_port}/cams/a");
    exchange(
        &mut s,
        format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
    )
    .await;
    let setup = exchange(
        &mut s,
        format!(
        "SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP;unicast;client_port={port}-{}\r\n\r\n",
            port + 1
        ),
    )
    .await;
    let session = setup
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("{setup}"))
        .to_owned();
    let play = exchange(
        &mut s,
        format!("PLAY {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n"),
    )
    .await;
    assert!(play.starts_with("RTSP/1.0 200"), "{play}");
    let n = tokio::time::timeout(Duration::from_secs(5), rtp.recv(&mut [0u8; 2048])).await;
    assert!(matches!(n, Ok(Ok(len)) if len > 12), "RTP over UDP arrives");
    // Closed by the server within its timeout (+ slack), counted.
    let mut rest = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut rest).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "silent UDP player not closed");
    // (Counted as the connection's task ends, which may be just after the close is seen.)
    let deadline = Instant::now() + Duration::from_secs(5);
    while timeouts(&relay) < 1.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(timeouts(&relay), 1.0);
}

/// Writes a request and reads what comes back in one read (small answers on loopback).
async fn exchange(s: &mut tokio::net::TcpStream, req: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// rtsps:// pulls: Prism's `[rtsps]` server with a certificate of a test CA; a pull that
/// trusts that CA (`ca`) plays, one on the default roots is refused as `tls_verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsps_pull_verifies_the_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = std::env::temp_dir().join(format!("prism-rtsps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let files = prism_config::TlsFiles {
        cert: write("cert.pem", leaf.pem()),
        key: write("key.pem", key.serialize_pem()),
    };
    let ca_pem = write("ca.pem", ca.pem());

    let cam_port = free_port();
    let _cam = Camera::start(cam_port, &[]);
    let (relay, _) = relay().await;
    let r = relay.clone();
    let cam = format!("rtsp://127.0.0.1:{cam_port}/cam");
    tokio::spawn(async move {
        pull(
            r,
            &cam,
            RtspTransport::Tcp,
            "cams",
            "a",
            std::future::pending(),
        )
        .await
    });
    wait_live(&relay, "cams", "a").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = prism_config::Config::from_toml_str(
        &format!("[rtsp]\nlisten = \"127.0.0.1:{port}\"\n"),
        "test",
    )
    .unwrap()
    .rtsp
    .unwrap();
    let tls = Arc::new(prism_transport_tls::ReloadableTls::load(&files).unwrap());
    tokio::spawn(prism_transport_rtsp::run_tls(
        listener,
        relay.clone(),
        config,
        tls,
    ));

    let url = format!("rtsps://127.0.0.1:{port}/cams/a");
    let e = pull(
        relay.clone(),
        &url,
        RtspTransport::Tcp,
        "cams",
        "untrusted",
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason.as_str(), "tls_verify", "{e:?}");
    let options = prism_transport_rtsp::PullOptions {
        tls: prism_config::TargetTls {
            ca: Some(ca_pem),
            verify: true,
        },
        ..Default::default()
    };
    let r = relay.clone();
    let _task = tokio::spawn(async move {
        prism_transport_rtsp::pull_with(r, &url, &options, "cams", "tls", std::future::pending())
            .await
    });
    wait_live(&relay, "cams", "tls").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(
        &relay,
        "prism_ingest_frames_total{kind=\"video\",stream=\"cams/tls\"}",
    ) < 25.0
    {
        assert!(Instant::now() < deadline, "no video over rtsps");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
