//! Serving HLS and DASH to real players and to abusive clients ([hls]): ffmpeg publishes
//! over RTMPS and curl (HTTP/2 and HTTP/1.1 over TLS), ffprobe and ffmpeg read the HTTPS
//! URLs, the certificate is re-read on SIGHUP; GStreamer's hlsdemux2 and dash.js in headless
//! Chromium play; path traversal, huge requests, thousands of parked blocking reloads and
//! slowloris connections are refused or bounded while an LL-HLS player keeps getting its
//! parts.

mod common;

use common::hls::probe_frames;
use common::pki::Pki;
use common::*;
use prism_hls::check::{check_media, parse_media, MediaPlaylist};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A Prism config with 1 s segments of 200 ms parts; `hls` lines go into `[hls]`, `extra`
/// after it.
fn config(hls_port: u16, hls: &str, extra: &str) -> String {
    format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
         [hls]\nlisten = \"127.0.0.1:{hls_port}\"\nsegment_ms = 1000\npart_ms = 200\n{hls}\n{extra}\n",
        free_port(),
        free_port()
    )
}

fn local(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// The open segment's sequence number of a media playlist (the one its parts belong to).
fn open_msn(p: &MediaPlaylist) -> u64 {
    p.media_sequence + p.skipped + p.segments.len() as u64
}

/// Waits until `stream`'s video playlist lists `n` complete segments; returns it.
fn wait_segments(hls: SocketAddr, stream: &str, n: usize) -> MediaPlaylist {
    wait_for(
        Duration::from_secs(20),
        "segments in the playlist",
        || match http_get(hls, &format!("/{stream}/video.m3u8")) {
            Ok((200, text)) => parse_media(&text).ok().filter(|p| p.segments.len() >= n),
            _ => None,
        },
    )
}

// ---------------------------------------------------------------------------
// RTMPS in, HTTPS + HTTP/2 out
// ---------------------------------------------------------------------------

/// curl over TLS trusting `ca`: (HTTP version as curl names it, status, body).
fn curl(ca: &Path, args: &[&str], url: &str) -> (String, u16, Vec<u8>) {
    let out = run_with_timeout(
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(ca)
            .args(args)
            .args(["-w", "%{stderr}%{http_version} %{http_code}"])
            .arg(url),
        Duration::from_secs(20),
    )
    .expect("curl");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut words = err.split_whitespace().rev();
    let status = words.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let version = words.next().unwrap_or("").to_string();
    (version, status, out.stdout)
}

#[test]
fn rtmps_ingest_is_served_over_https_and_http2() {
    let clip = make_clip(5);
    let pki = Pki::new();
    let rtmps_leaf = pki.leaf("rtmps");
    let first = pki.leaf("hls");
    let (rtmps_port, hls_port) = (free_port(), free_port());
    let prism = Prism::start(&config(
        hls_port,
        &format!(
            "cert = {:?}\nkey = {:?}\n",
            first.cert.display().to_string(),
            first.key.display().to_string()
        ),
        &format!(
            "[rtmps]\nlisten = \"127.0.0.1:{rtmps_port}\"\ncert = {:?}\nkey = {:?}\n",
            rtmps_leaf.cert.display().to_string(),
            rtmps_leaf.key.display().to_string()
        ),
    ));
    let _publisher = Publisher::start(
        &format!("rtmps://127.0.0.1:{rtmps_port}/live/tls"),
        &clip,
        true,
    );
    let base = format!("https://127.0.0.1:{hls_port}/live/tls");
    let ca = &pki.ca_pem;

    // HTTP/2 by ALPN, and HTTP/1.1, on the same port.
    let (version, _, index) = wait_for(Duration::from_secs(20), "the HTTPS playlist", || {
        let r = curl(ca, &["--http2"], &format!("{base}/index.m3u8"));
        (r.1 == 200).then_some(r)
    });
    assert_eq!(version, "2", "curl --http2 did not get HTTP/2");
    assert!(String::from_utf8_lossy(&index).contains("video.m3u8"));
    let (version, status, _) = curl(ca, &["--http1.1"], &format!("{base}/index.m3u8"));
    assert_eq!((version.as_str(), status), ("1.1", 200));

    // Every segment of the window decodes and starts on a keyframe (fetched over h2).
    let text = wait_for(Duration::from_secs(20), "three segments", || {
        let (_, status, body) = curl(ca, &["--http2"], &format!("{base}/video.m3u8"));
        let text = String::from_utf8_lossy(&body).into_owned();
        (status == 200 && parse_media(&text).is_ok_and(|p| p.segments.len() >= 3)).then_some(text)
    });
    assert!(check_media(&text).is_empty(), "{:?}", check_media(&text));
    let p = parse_media(&text).unwrap();
    let fetch = |uri: &str| {
        let (_, status, body) = curl(ca, &["--http2"], &format!("{base}/{uri}"));
        assert_eq!(status, 200, "{uri}");
        body
    };
    let init = fetch(&p.maps[0]);
    let dir = TempDir::new("hls-tls");
    for seg in &p.segments {
        let mut file = init.clone();
        file.extend(fetch(&seg.uri));
        let path = dir.join(format!("{}.mp4", seg.msn));
        std::fs::write(&path, &file).unwrap();
        let (frames, errors) = probe_frames(&path, "v:0");
        assert!(errors.trim().is_empty(), "segment {}: {errors}", seg.msn);
        assert!(frames.len() >= 20, "segment {}: {frames:?}", seg.msn);
        assert!(frames[0].0, "segment {} starts on a non-key frame", seg.msn);
    }

    // ffprobe and ffmpeg (GnuTLS) read the HTTPS playlist, verifying the certificate.
    let tls_args = ["-ca_file", ca.to_str().unwrap(), "-tls_verify", "1"];
    let out = run_with_timeout(
        Command::new("ffprobe")
            .args(["-v", "error"])
            .args(tls_args)
            .args(["-show_entries", "stream=codec_name", "-of", "csv=p=0"])
            .arg(format!("{base}/index.m3u8")),
        Duration::from_secs(30),
    )
    .expect("ffprobe");
    let codecs = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && codecs.contains("h264") && codecs.contains("aac"),
        "ffprobe over https: {codecs}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error"])
            .args(tls_args)
            .arg("-i")
            .arg(format!("{base}/index.m3u8"))
            .args([
                "-t", "3", "-map", "0:v:0", "-map", "0:a:0", "-f", "null", "-",
            ]),
        Duration::from_secs(60),
    )
    .expect("ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.trim().is_empty(),
        "ffmpeg over https: {errors}"
    );

    // SIGHUP re-reads the certificate: the next handshake presents the new one.
    let hls = local(hls_port);
    assert_eq!(pki.served_leaf(hls).expect("TLS handshake"), first.der);
    let second = pki.leaf("hls");
    prism.signal("HUP");
    wait_until(Duration::from_secs(10), "the new certificate", || {
        pki.served_leaf(hls).is_ok_and(|der| der == second.der)
    });
    let (version, status, _) = curl(ca, &["--http2"], &format!("{base}/index.m3u8"));
    assert_eq!((version.as_str(), status), ("2", 200), "after SIGHUP");
}

// ---------------------------------------------------------------------------
// Other players: GStreamer, dash.js
// ---------------------------------------------------------------------------

/// Presentation times (s) of the buffers fakesink `sink` printed (`-v`, silent=false).
fn sink_pts(log: &str, sink: &str) -> Vec<f64> {
    let tag = format!("({sink}:sink)");
    log.lines()
        .filter(|l| l.contains(&tag) && l.contains("last-message = chain"))
        .filter_map(|l| {
            let t = l.split("pts: ").nth(1)?.split(',').next()?;
            let mut hms = t.split(':').map(|x| x.parse::<f64>().ok());
            Some(hms.next()?? * 3600.0 + hms.next()?? * 60.0 + hms.next()??)
        })
        .collect()
}

#[test]
fn gstreamer_hlsdemux2_plays_the_stream() {
    let clip = make_clip(5);
    let hls_port = free_port();
    let prism = Prism::start(&config(hls_port, "", ""));
    let _publisher = Publisher::start(&prism.rtmp_url("live", "gst"), &clip, true);
    wait_segments(local(hls_port), "live/gst", 2);
    // playbin3 picks hlsdemux2 (adaptivedemux2, gst-plugins-good 1.22) and decodes to
    // fakesinks that stop after 100 buffers each, in real time (sync).
    let frames = 100;
    let out = run_with_timeout(
        Command::new("gst-launch-1.0")
            .arg("-v")
            .arg("playbin3")
            .arg(format!(
                "uri=http://127.0.0.1:{hls_port}/live/gst/index.m3u8"
            ))
            .arg(format!(
                "video-sink=fakesink name=vsink sync=true silent=false num-buffers={frames}"
            ))
            .arg("audio-sink=fakesink name=asink sync=true silent=false num-buffers=50"),
        Duration::from_secs(60),
    )
    .expect("gst-launch-1.0 (gstreamer1.0-tools, -plugins-good, -libav)");
    let log = String::from_utf8_lossy(&out.stdout);
    let tail = || log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
    assert!(out.status.success(), "gst-launch failed: {}", tail());
    assert!(log.contains("GstHLSDemux2"), "not hlsdemux2: {}", tail());
    // The sinks end the pipeline (EOS) once they took their buffers: 100 decoded frames
    // (320x240 I420), in order and none skipped. (gst-launch -v reports each through a
    // property notification, and may miss one when busy: hence the span, not the count.)
    assert!(log.contains("Got EOS"), "no EOS: {}", tail());
    let decoded = log
        .lines()
        .filter(|l| l.contains("(vsink:sink) (115200 bytes"))
        .count();
    assert!(
        decoded >= frames - 10,
        "decoded video frames: {decoded}\n{}",
        tail()
    );
    let mut pts = sink_pts(&log, "vsink");
    // ... and may print the same buffer's notification twice (101 lines for 100 buffers
    // seen): a repeat of the previous line is that, not a frame.
    pts.dedup();
    let span = pts[pts.len() - 1] - pts[0];
    assert!(
        pts.windows(2).all(|w| w[1] > w[0]) && (span - 0.04 * (frames - 1) as f64).abs() < 0.1,
        "frames not continuous at 25 fps: {pts:?}"
    );
    assert!(
        sink_pts(&log, "asink").len() >= 40,
        "audio buffers: {}",
        tail()
    );
}

#[test]
fn dash_js_plays_the_manifest_in_chromium() {
    let clip = make_clip(5);
    let hls_port = free_port();
    let prism = Prism::start(&config(hls_port, "", ""));
    let _publisher = Publisher::start(&prism.rtmp_url("live", "dash"), &clip, true);
    wait_segments(local(hls_port), "live/dash", 3);
    // tests/js/dash.mjs: a page of another origin plays the manifest with dash.js for 10 s.
    let seconds = 10.0;
    let out = run_with_timeout(
        Command::new("node")
            .arg(workspace_dir().join("tests/js/dash.mjs"))
            .arg(format!(
                "http://127.0.0.1:{hls_port}/live/dash/manifest.mpd"
            ))
            .arg(seconds.to_string()),
        Duration::from_secs(90),
    )
    .expect("node tests/js/dash.mjs (run ./scripts/test.sh to install tests/js)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "dash.mjs output {stdout}: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "dash.js never played: {v}");
    let time = |r: &str| v[r]["currentTime"].as_f64().unwrap_or(0.0);
    let played = time("end") - time("start");
    let latency = v["end"]["latency"].as_f64().unwrap_or(f64::NAN);
    eprintln!("[hls] dash.js in Chromium: played {played:.1} s in {seconds} s, live latency {latency:.2} s");
    assert!(
        played >= seconds / 2.0,
        "dash.js played only {played} s: {v}"
    );
    assert_eq!(
        v["end"]["errors"],
        serde_json::json!([]),
        "dash.js errors: {v}"
    );
    assert_eq!(
        v["external"],
        serde_json::json!([]),
        "requests off the machine: {v}"
    );
}

// ---------------------------------------------------------------------------
// Bad input, with an LL-HLS player watching
// ---------------------------------------------------------------------------

/// What the LL-HLS player saw: each part it got (when, msn, index), blocking reloads
/// refused with 503, and anything else that went wrong.
#[derive(Debug, Default)]
struct PlayReport {
    parts: Vec<(Instant, u64, usize)>,
    refused: u32,
    errors: Vec<String>,
}

impl PlayReport {
    /// Fails unless the player got every part in order, with no gap between two parts
    /// longer than `max_gap`, for at least `min_parts` parts.
    #[track_caller]
    fn assert_kept_up(&self, min_parts: usize, max_gap: Duration) {
        assert!(self.errors.is_empty(), "player errors: {:?}", self.errors);
        assert!(
            self.parts.len() >= min_parts,
            "the player got {} parts",
            self.parts.len()
        );
        for w in self.parts.windows(2) {
            let ((t0, m0, i0), (t1, m1, i1)) = (w[0], w[1]);
            assert!(
                (m1 == m0 && i1 == i0 + 1) || (m1 == m0 + 1 && i1 == 0),
                "the player skipped from part {m0}.{i0} to {m1}.{i1}"
            );
            assert!(
                t1 - t0 <= max_gap,
                "part {m1}.{i1} came {:?} after {m0}.{i0}",
                t1 - t0
            );
        }
    }

    fn max_gap(&self) -> Duration {
        self.parts
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or_default()
    }
}

/// An LL-HLS player of a stream's video: blocking playlist reloads for the next part, then
/// every new part fetched, as hls.js does in low-latency mode. A 503 (blocking requests at
/// their bound) makes it back off 100 ms and reload without blocking.
struct LivePlayer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<PlayReport>>,
}

/// `(msn, index)` of a part URI `video/{msn}.{index}.m4s`.
fn part_id(uri: &str) -> Option<(u64, usize)> {
    let stem = uri.rsplit('/').next()?.strip_suffix(".m4s")?;
    let (m, i) = stem.split_once('.')?;
    Some((m.parse().ok()?, i.parse().ok()?))
}

impl LivePlayer {
    fn start(hls: SocketAddr, stream: &str) -> LivePlayer {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, stream) = (stop.clone(), stream.to_string());
        let thread = thread::spawn(move || LivePlayer::run(hls, &stream, &flag));
        LivePlayer {
            stop,
            thread: Some(thread),
        }
    }

    fn run(hls: SocketAddr, stream: &str, stop: &AtomicBool) -> PlayReport {
        let mut r = PlayReport::default();
        let mut last: Option<(u64, usize)> = None;
        let mut next: Option<(u64, usize)> = None;
        while !stop.load(Ordering::Relaxed) && r.errors.len() < 10 {
            let path = match next {
                Some((m, i)) => format!("/{stream}/video.m3u8?_HLS_msn={m}&_HLS_part={i}"),
                None => format!("/{stream}/video.m3u8"),
            };
            let text = match http_get(hls, &path) {
                Ok((200, text)) => text,
                Ok((503, _)) if next.is_some() => {
                    r.refused += 1;
                    next = None;
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
                other => {
                    r.errors.push(format!("{path}: {other:?}"));
                    continue;
                }
            };
            let Ok(p) = parse_media(&text) else {
                r.errors.push(format!("{path}: unreadable playlist {text}"));
                continue;
            };
            let open = open_msn(&p);
            let listed: Vec<(u64, usize, &str)> = p
                .segments
                .iter()
                .flat_map(|s| s.parts.iter().map(|(_, uri, _)| uri.as_str()))
                .chain(p.open_parts.iter().map(|(_, uri, _)| uri.as_str()))
                .filter_map(|uri| part_id(uri).map(|(m, i)| (m, i, uri)))
                .collect();
            // A new player starts at the newest part.
            let from = last.or_else(|| listed.iter().rev().nth(1).map(|&(m, i, _)| (m, i)));
            for &(m, i, uri) in &listed {
                if from.is_some_and(|f| (m, i) <= f) {
                    continue;
                }
                match http_get_bytes(hls, &format!("/{stream}/{uri}")) {
                    Ok((200, body)) if !body.is_empty() => {
                        r.parts.push((Instant::now(), m, i));
                        last = Some((m, i));
                    }
                    other => r.errors.push(format!("{uri}: {:?}", other.map(|o| o.0))),
                }
            }
            next = Some((open, p.open_parts.len()));
        }
        r
    }

    fn stop(mut self) -> PlayReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .expect("player thread")
    }
}

impl Drop for LivePlayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends `request` as is and reads the answer until the server closes (5 s at most):
/// (status, whole answer); status 0 when the server closed without answering.
fn raw_exchange(addr: SocketAddr, request: &[u8]) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    // The server may answer and close before reading it all (431): a failed write is fine.
    let _ = s.write_all(request);
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        if raw.is_empty() && e.kind() != io::ErrorKind::ConnectionReset {
            return Err(e);
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, text))
}

/// Makes sure this process (and the Prism it spawns next, which inherits the limit) may
/// open `want` files, raising the soft limit with util-linux prlimit(1) if needed (the
/// workspace forbids the unsafe of setrlimit(2)).
fn ensure_nofile(want: u64) {
    let soft = || -> Option<u64> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        match line.split_whitespace().nth(3)? {
            "unlimited" => Some(u64::MAX),
            n => n.parse().ok(),
        }
    };
    if soft().unwrap_or(0) >= want {
        return;
    }
    let pid = std::process::id().to_string();
    let _ = Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={want}:{want}")])
        .status();
    let now = soft().unwrap_or(0);
    assert!(now >= want, "open-file limit {now}, the test needs {want}");
}

/// One request of a flood: (when it was sent, when answered, status, body); status 0 when
/// the connection closed without an answer.
type Answered = (Instant, Instant, u16, String);

/// `n` concurrent connections each sending `GET path` at once; every answer (60 s at most).
fn flood(addr: SocketAddr, path: &str, n: usize) -> Vec<Result<Answered, String>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let request = request.clone();
            tasks.spawn(async move {
                let exchange = async {
                    let mut s = tokio::net::TcpStream::connect(addr).await?;
                    s.write_all(request.as_bytes()).await?;
                    let sent = Instant::now();
                    let mut raw = Vec::new();
                    s.read_to_end(&mut raw).await?;
                    let text = String::from_utf8_lossy(&raw).into_owned();
                    let status = text
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    io::Result::Ok((sent, Instant::now(), status, text))
                };
                match tokio::time::timeout(Duration::from_secs(60), exchange).await {
                    Ok(Ok(a)) => Ok(a),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer within 60 s".to_string()),
                }
            });
        }
        let mut out = Vec::with_capacity(n);
        while let Some(r) = tasks.join_next().await {
            out.push(r.unwrap_or_else(|e| Err(e.to_string())));
        }
        out
    })
}

#[test]
fn bad_requests_and_thousands_of_parked_reloads_leave_a_player_undisturbed() {
    const FLOOD: usize = 3000;
    const BOUND: usize = 1000;
    ensure_nofile(2 * FLOOD as u64 + 1000);
    let clip = make_clip(5);
    let hls_port = free_port();
    let prism = Prism::start(&config(
        hls_port,
        &format!("max_blocking_requests = {BOUND}\n"),
        "",
    ));
    let hls = local(hls_port);
    let _publisher = Publisher::start(&prism.rtmp_url("live", "cam"), &clip, true);
    wait_segments(hls, "live/cam", 3);
    let player = LivePlayer::start(hls, "live/cam");

    // Path traversal, plain and encoded: never a file, never a crash.
    for path in [
        "/../../../../etc/passwd",
        "/live/../../../etc/passwd",
        "/live/cam/../../../etc/passwd",
        "/live/cam/video/../../../../etc/passwd",
        "/live/%2e%2e/%2e%2e/etc/passwd",
        "/live/cam/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/live/cam/video/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/live%2fcam/index.m3u8",
        "/live/cam/video/..%5c..%5cx.m4s",
        "//etc/passwd",
        "http://127.0.0.1/../../etc/passwd",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, text) = raw_exchange(hls, request.as_bytes()).expect(path);
        assert!(
            matches!(status, 400 | 404) && !text.contains("root:"),
            "{path}: {text}"
        );
    }
    // Huge query strings and headers: refused before any work.
    let line = |query: &str, headers: &str| {
        format!(
            "GET /live/cam/index.m3u8?{query} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
        )
    };
    let many: String = (0..300).map(|i| format!("X-H{i}: a\r\n")).collect();
    for (what, request) in [
        ("a 4 KB query", line(&"a=b&".repeat(1000), "")),
        ("a 1 MB query", line(&"a".repeat(1 << 20), "")),
        (
            "a 1 MB header",
            line("", &format!("X-Big: {}\r\n", "a".repeat(1 << 20))),
        ),
        ("300 headers", line("", &many)),
    ] {
        let t0 = Instant::now();
        let (status, text) = raw_exchange(hls, request.as_bytes()).expect(what);
        assert!(
            matches!(status, 400 | 414 | 431),
            "{what}: {}",
            &text[..text.len().min(200)]
        );
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{what} took {:?}",
            t0.elapsed()
        );
    }
    // A blocking reload too far ahead: 400 at once.
    let p = wait_segments(hls, "live/cam", 3);
    let t0 = Instant::now();
    let far = format!("/live/cam/video.m3u8?_HLS_msn={}", open_msn(&p) + 50);
    assert_eq!(http_get(hls, &far).expect("far msn").0, 400);
    assert!(t0.elapsed() < Duration::from_secs(1));

    // Thousands of blocking reloads for the first part of the segment after the next one
    // (about 2 s away, the furthest allowed): at most BOUND wait (the gauge says so, scraped
    // all along), the rest get 503 at once, and every parked one is answered when the part
    // appears.
    let open = {
        let p = wait_segments(hls, "live/cam", 3);
        let open = open_msn(&p);
        // Just after a segment starts, for the longest wait.
        wait_for(Duration::from_secs(5), "a new segment", || {
            let p = wait_segments(hls, "live/cam", 3);
            (open_msn(&p) > open).then_some(open_msn(&p))
        })
    };
    let target = open + 2;
    let scraping = Arc::new(AtomicBool::new(true));
    let scraper = {
        let (scraping, admin) = (scraping.clone(), prism.http_addr.unwrap());
        thread::spawn(move || {
            let mut max = 0.0f64;
            while scraping.load(Ordering::Relaxed) {
                if let Ok((200, m)) = http_get(admin, "/metrics") {
                    let v = metric_value_in(&m, "prism_hls_blocking_requests").unwrap_or(0.0);
                    max = max.max(v);
                }
                thread::sleep(Duration::from_millis(10));
            }
            max
        })
    };
    let t_flood = Instant::now();
    let answers = flood(
        hls,
        &format!("/live/cam/video.m3u8?_HLS_msn={target}&_HLS_part=0"),
        FLOOD,
    );
    let flood_took = t_flood.elapsed();
    scraping.store(false, Ordering::Relaxed);
    let max_parked = scraper.join().expect("scraper");

    let failed: Vec<_> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let answers: Vec<&Answered> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
    let of = |status: u16| -> Vec<&Answered> {
        answers.iter().copied().filter(|a| a.2 == status).collect()
    };
    let (ok, refused) = (of(200), of(503));
    assert_eq!(
        ok.len() + refused.len(),
        FLOOD,
        "answers other than 200 and 503: {:?}",
        answers
            .iter()
            .filter(|a| !matches!(a.2, 200 | 503))
            .map(|a| &a.3)
            .take(3)
            .collect::<Vec<_>>()
    );
    let awaited = format!("video/{target}.0.m4s");
    assert!(
        ok.iter().all(|a| a.3.contains(&awaited)),
        "a 200 without the awaited part"
    );
    let slowest_refusal = refused.iter().map(|a| a.1 - a.0).max().unwrap_or_default();
    let parked: Vec<_> = ok
        .iter()
        .filter(|a| a.1 - a.0 > Duration::from_millis(200))
        .collect();
    let release = |f: fn(Instant, Instant) -> Instant| {
        parked.iter().map(|a| a.1).reduce(f).unwrap_or(t_flood)
    };
    let release_spread = release(Instant::max) - release(Instant::min);
    eprintln!(
        "[hls] {FLOOD} blocking reloads in {flood_took:?}: {} answered 200 ({} parked, released \
         within {release_spread:?}), {} refused with 503 (slowest in {slowest_refusal:?}), \
         gauge max {max_parked}",
        ok.len(),
        parked.len(),
        refused.len()
    );
    assert!(
        max_parked <= BOUND as f64,
        "{max_parked} parked, bound {BOUND}"
    );
    assert!(
        max_parked >= BOUND as f64 - 1.0,
        "the bound was never reached: {max_parked}"
    );
    assert!(
        refused.len() >= FLOOD - BOUND - 500,
        "only {} refused",
        refused.len()
    );
    assert!(parked.len() >= BOUND - 10, "only {} parked", parked.len());
    assert!(
        slowest_refusal < Duration::from_millis(1500),
        "a 503 took {slowest_refusal:?}"
    );
    assert!(
        release_spread < Duration::from_secs(1),
        "parked answered over {release_spread:?}"
    );
    wait_until(Duration::from_secs(5), "parked requests to drain", || {
        prism
            .metric_value("prism_hls_blocking_requests")
            .unwrap_or(0.0)
            <= 1.0
    });

    // Through all of it (and a second more) the player got every part, on time.
    thread::sleep(Duration::from_secs(1));
    let report = player.stop();
    eprintln!(
        "[hls] player: {} parts, longest gap {:?}, {} blocking reloads refused",
        report.parts.len(),
        report.max_gap(),
        report.refused
    );
    report.assert_kept_up(10, Duration::from_millis(1200));
    assert_eq!(http_get(hls, "/live/cam/index.m3u8").expect("index").0, 200);
}

/// A client connection that the server may close: `closed` is when it saw the end.
struct Loris {
    s: TcpStream,
    opened: Instant,
    closed: Option<Instant>,
    answered: bool,
}

impl Loris {
    fn open(addr: SocketAddr) -> Loris {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_nonblocking(true).expect("nonblocking");
        Loris {
            s,
            opened: Instant::now(),
            closed: None,
            answered: false,
        }
    }

    /// Notes whether the server closed the connection (or answered it) by now.
    fn poll(&mut self) {
        if self.closed.is_some() {
            return;
        }
        let mut buf = [0u8; 4096];
        match self.s.read(&mut buf) {
            Ok(0) => self.closed = Some(Instant::now()),
            Ok(_) => self.answered = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => self.closed = Some(Instant::now()),
        }
    }
}

#[test]
fn slowloris_connections_are_timed_out_and_bounded() {
    const MAX_CONNECTIONS: usize = 64;
    let clip = make_clip(5);
    let hls_port = free_port();
    let prism = Prism::start(&config(
        hls_port,
        &format!("max_connections = {MAX_CONNECTIONS}\n"),
        "",
    ));
    let hls = local(hls_port);
    let _publisher = Publisher::start(&prism.rtmp_url("live", "cam"), &clip, true);
    wait_segments(hls, "live/cam", 3);
    let player = LivePlayer::start(hls, "live/cam");

    // Slowloris: request heads a byte per second; and connections that never send a byte,
    // or send the HTTP/2 preface a byte per second, or the whole preface and nothing more
    // (hyper's header timeout does not cover those: Prism's first-request deadline does).
    let h2_preface =
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00".to_vec();
    let get = b"GET /live/cam/index.m3u8 HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec();
    let mut kinds: Vec<(&str, Vec<u8>, bool)> = Vec::new();
    for _ in 0..30 {
        kinds.push(("request head", get.clone(), true));
    }
    for _ in 0..6 {
        kinds.push(("silent", Vec::new(), true));
        kinds.push(("HTTP/2 preface", h2_preface.clone(), true));
        kinds.push(("HTTP/2 preface at once", h2_preface.clone(), false));
    }
    let mut conns: Vec<(&str, Vec<u8>, bool, Loris)> = kinds
        .into_iter()
        .map(|(kind, bytes, drip)| (kind, bytes, drip, Loris::open(hls)))
        .collect();
    for (_, bytes, _, c) in conns.iter_mut().filter(|c| !c.2) {
        c.s.write_all(bytes).expect("write preface");
    }
    // A byte per second each, until every one is closed (the timeout is 10 s) or 20 s.
    let t0 = Instant::now();
    let mut sent = 0;
    while conns.iter().any(|c| c.3.closed.is_none()) && t0.elapsed() < Duration::from_secs(20) {
        for (_, bytes, drip, c) in conns.iter_mut() {
            c.poll();
            if *drip && c.closed.is_none() && sent < bytes.len() {
                let _ = c.s.write_all(&bytes[sent..sent + 1]);
            }
        }
        sent += 1;
        thread::sleep(Duration::from_secs(1));
    }
    for (kind, _, _, c) in &mut conns {
        c.poll();
        let lived = c.closed.map(|t| t - c.opened);
        assert!(
            lived.is_some_and(|d| d < Duration::from_secs(13)),
            "a {kind} connection lived {lived:?} (answered: {})",
            c.answered
        );
    }
    let slowest = conns
        .iter()
        .filter_map(|c| c.3.closed.map(|t| t - c.3.opened))
        .max();
    eprintln!(
        "[hls] {} slowloris connections closed, the last after {slowest:?}",
        conns.len()
    );
    drop(conns);

    // Meanwhile the player got every part on time.
    let report = player.stop();
    eprintln!(
        "[hls] player beside slowloris: {} parts, longest gap {:?}",
        report.parts.len(),
        report.max_gap()
    );
    report.assert_kept_up(40, Duration::from_millis(1200));

    // max_connections bounds open connections: beyond it, closed at once, nothing read.
    let extra = 16;
    let mut idle: Vec<Loris> = (0..MAX_CONNECTIONS + extra)
        .map(|_| Loris::open(hls))
        .collect();
    let t0 = Instant::now();
    wait_until(
        Duration::from_secs(3),
        "the connections over the limit to close",
        || {
            idle.iter_mut().for_each(Loris::poll);
            idle.iter().filter(|c| c.closed.is_some()).count() >= extra
        },
    );
    // (A slot or two may still be held by the player's last connections, just closed.)
    let closed = idle.iter().filter(|c| c.closed.is_some()).count();
    assert!(
        (extra..=extra + 2).contains(&closed),
        "{closed} closed within {:?}",
        t0.elapsed()
    );
    assert!(idle.iter().all(|c| !c.answered));
    drop(idle);
    // Once they are gone, a viewer is served again.
    wait_until(Duration::from_secs(5), "a viewer to be served", || {
        matches!(http_get(hls, "/live/cam/index.m3u8"), Ok((200, _)))
    });
}
