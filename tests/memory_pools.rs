//! The media-memory budget's per-transport pools (`prism_memory_bytes{pool}`), against the
//! real binary and real peers: for each pool, while its peer is live the pool holds bytes,
//! and once the peer has left it is back to exactly 0 (every charge released on that exit
//! path). The peak seen while live is printed for the record.
//!
//! - `rtmpt`: ffmpeg plays over `rtmpt://` (the tunnel's pipes between polls);
//! - `srt`: ffmpeg publishes MPEG-TS over SRT (the demuxer's PES buffers), then is killed
//!   (no goodbye: the session ends on srt's idle timeout);
//! - `rtsp`: Prism pulls the GStreamer camera of tests/rtsp_camera.py over interleaved TCP
//!   and over UDP, then the camera dies;
//! - `webrtc`: FFmpeg 8's whip muxer publishes (datagram queue and str0m's reorder buffers,
//!   estimated), then Chromium plays it over WHEP (str0m's send buffer, estimated), then
//!   both go;
//! - `transcode`: a one-rendition ladder's ffmpeg worker (its pipe buffers), until the
//!   source stops.

mod common;

use common::srt::*;
use common::*;
use std::time::{Duration, Instant};

/// `prism_memory_bytes{pool="NAME"}` now (absent counts as 0).
fn pool(prism: &Prism, name: &str) -> f64 {
    prism
        .metric_value(&format!("prism_memory_bytes{{pool=\"{name}\"}}"))
        .unwrap_or(0.0)
}

/// Waits for the pool to hold bytes, then samples it for `window`, returning the peak.
fn live_peak(prism: &Prism, name: &str, window: Duration) -> f64 {
    wait_until(
        Duration::from_secs(30),
        &format!("pool {name} to hold bytes while its peer is live"),
        || pool(prism, name) > 0.0,
    );
    let mut peak = 0.0f64;
    let end = Instant::now() + window;
    while Instant::now() < end {
        peak = peak.max(pool(prism, name));
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "[memory_pools] pool {name}: peak {:.1} KiB while live",
        peak / 1024.0
    );
    peak
}

/// Waits for the pool to be back to 0 after its peer left.
fn drained(prism: &Prism, name: &str, within: Duration) {
    let t0 = Instant::now();
    wait_until(within, &format!("pool {name} back to 0"), || {
        pool(prism, name) == 0.0
    });
    eprintln!(
        "[memory_pools] pool {name}: 0 again {:.1} s after the peer left",
        t0.elapsed().as_secs_f64()
    );
}

fn base_config() -> String {
    format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
         [stream]\nreconnect_grace_ms = 1000\n",
        free_port(),
        free_port()
    )
}

#[test]
fn rtmpt_pool_follows_a_tunnel_player() {
    let clip = make_clip(5);
    let tunnel = free_port();
    let prism = Prism::start(&format!(
        "{}[rtmpt]\nlisten = \"127.0.0.1:{tunnel}\"\nsession_timeout_ms = 5000\n",
        base_config()
    ));
    let _publisher = Publisher::start(&prism.rtmp_url("live", "tun"), &clip, true);
    wait_until(Duration::from_secs(10), "the stream to be live", || {
        prism.metric_value("prism_streams_active") == Some(1.0)
    });
    let player = NullPlayer::start(&format!("rtmpt://127.0.0.1:{tunnel}/live/tun"));
    let peak = live_peak(&prism, "rtmpt", Duration::from_secs(3));
    assert!(
        peak <= (2 * 256 * 1024) as f64,
        "over the pipes' bounds: {peak}"
    );
    drop(player);
    // Killed without /close: the tunnel session goes when nobody polls it (5 s here).
    drained(&prism, "rtmpt", Duration::from_secs(20));
}

#[test]
fn srt_pool_follows_an_srt_publisher() {
    let clip = make_clip(5);
    let srt_port = free_udp_port();
    let prism = Prism::start(&srt_config(srt_port, "", &[]));
    let mut publisher = SrtPublisher::start(
        &srt_url(srt_port, "#!::r=live/srtmem,m=publish", ""),
        &clip,
        true,
    );
    let peak = live_peak(&prism, "srt", Duration::from_secs(3));
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());
    // One PES per elementary stream, each at most 8 MiB.
    assert!(peak <= (16 << 20) as f64, "{peak}");
    // SIGKILL: no SRT shutdown, the session ends on the peer idle timeout (5 s).
    drop(publisher);
    drained(&prism, "srt", Duration::from_secs(20));
}

#[test]
fn rtsp_pool_follows_a_pulled_camera() {
    rtsp_pool_case("tcp");
}

#[test]
fn rtsp_pool_follows_a_pulled_camera_over_udp() {
    rtsp_pool_case("udp");
}

/// A camera pulled with `rtsp_transport` (interleaved TCP or UDP unicast).
fn rtsp_pool_case(transport: &str) {
    let cam_port = free_port();
    let camera = common::rtsp::Camera::start(cam_port);
    let prism = Prism::start(&format!(
        "{}[[source]]\nstream = \"cams/mem\"\n\
         url = \"rtsp://admin:hunter22@127.0.0.1:{cam_port}/cam\"\nrtsp_transport = \"{transport}\"\n",
        base_config()
    ));
    wait_until(
        Duration::from_secs(20),
        "the camera source to publish",
        || prism.metric_value("prism_source_up{stream=\"cams/mem\"}") == Some(1.0),
    );
    let peak = live_peak(&prism, "rtsp", Duration::from_secs(3));
    // Interleaved input (256 KiB before it is refused) or, over UDP, two readers' 64 KiB
    // buffers per track, 2048 queued and 32 reordered packets per track; partial frames.
    assert!(peak <= (32 << 20) as f64, "{transport}: {peak}");
    drop(camera);
    // The pull ends when the camera's connection closes; retries fail before holding any.
    drained(&prism, "rtsp", Duration::from_secs(20));
}

#[test]
fn webrtc_pool_follows_whip_and_whep_sessions() {
    let python = common::webrtc::pyav_python();
    assert!(
        python.exists(),
        "{} missing: run ./scripts/test.sh (it installs PyAV) or set PRISM_PYAV_PYTHON",
        python.display()
    );
    let (sig, udp) = (free_port(), free_udp_port());
    let prism = Prism::start(&format!(
        "{}[webrtc]\nlisten = \"127.0.0.1:{sig}\"\nudp = \"127.0.0.1:{udp}\"\n\
         consent_timeout_ms = 5000\n\
         [[route]]\nstream = \"in/*\"\npublish_tokens = [\"mem-token-1234\"]\n",
        base_config()
    ));
    let dir = TempDir::new("whip-cert");
    let cert = common::webrtc::p256_cert(&dir);
    let publisher = common::webrtc::pyav_whip(
        &format!("http://127.0.0.1:{sig}/in/mem/whip"),
        "mem-token-1234",
        60,
        &cert,
    );
    wait_until(
        Duration::from_secs(20),
        "the WHIP stream to be live",
        || prism.metric_value("prism_streams_active") == Some(1.0),
    );
    let whip = live_peak(&prism, "webrtc", Duration::from_secs(3));
    // 512 queued datagrams and 45 reordered packets, each at most 64 KiB.
    assert!(whip <= (557 * 65_536) as f64, "{whip}");
    // A WHEP viewer (Chromium, tests/js/webrtc.mjs) for 10 s: str0m's send buffer grows
    // with the video sent, up to 1000 packets.
    let seconds: u32 = 10;
    let mut viewer = common::webrtc::Reaped(
        std::process::Command::new("node")
            .arg(workspace_dir().join("tests/js/webrtc.mjs"))
            .args(["whep", &format!("http://127.0.0.1:{sig}/in/mem/whep")])
            .args([&seconds.to_string(), "", ""])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("node tests/js/webrtc.mjs (run ./scripts/test.sh)"),
    );
    wait_until(Duration::from_secs(30), "the WHEP viewer's bytes", || {
        pool(&prism, "webrtc") > whip + 32.0 * 1024.0
    });
    let both = live_peak(&prism, "webrtc", Duration::from_secs(2));
    // Two sessions: the above, plus 1000 video packets, 50 audio ones and the queue.
    assert!(
        both <= whip + (1000 * 1200 + 50 * 1500 + 557 * 65_536) as f64,
        "{both}"
    );
    assert!(
        wait_child(&mut viewer.0, Duration::from_secs(u64::from(seconds) + 60)).is_some(),
        "the viewer did not finish"
    );
    // SIGKILL: no DELETE, no DTLS close: the session ends on the publisher idle bound.
    drop(publisher);
    drained(&prism, "webrtc", Duration::from_secs(30));
}

#[test]
fn transcode_pool_follows_a_ladder_worker() {
    let clip = make_clip(5);
    let prism = Prism::start(&format!(
        "{}[[transcode]]\nstream = \"live/*\"\n  [[transcode.rendition]]\n  name = \"audio\"\n  \
         video = \"none\"\n  audio = {{ bitrate_kbps = 48 }}\n",
        base_config()
    ));
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "ladder"), &clip, true);
    wait_until(Duration::from_secs(20), "the rendition to be live", || {
        prism.metric_value("prism_streams_active") == Some(2.0)
    });
    let peak = live_peak(&prism, "transcode", Duration::from_secs(3));
    // The feeder's batch and one rendition's read buffer (256 KiB each), its partial tag.
    assert!(peak <= (16 << 20) as f64, "{peak}");
    publisher.stop();
    drained(&prism, "transcode", Duration::from_secs(20));
}
