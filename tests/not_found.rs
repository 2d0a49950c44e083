//! An edge asked for a stream: RTSP players pull it like RTMP ones, and a stream the origin
//! does not have yields a clean "not found" for every kind of consumer within a bound (RTMP:
//! the play ends; HLS: 404; RTSP: DESCRIBE answers 404). Two Prism processes; ffmpeg and
//! ffprobe as the consumers.

mod common;

use common::*;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// The bound the issue asks for: the edge tries every origin, then answers.
const BOUND: Duration = Duration::from_secs(15);

fn origin() -> (Prism, u16) {
    let rtmp = free_port();
    let p = Prism::start(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n",
        free_port()
    ));
    (p, rtmp)
}

fn edge(origin_rtmp: u16, hls: u16, rtsp: u16) -> Prism {
    Prism::start(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
         [hls]\nlisten = \"127.0.0.1:{hls}\"\nsegment_ms = 1000\npart_ms = 200\n\
         [rtsp]\nlisten = \"127.0.0.1:{rtsp}\"\n\
         [edge]\norigin = \"rtmp://127.0.0.1:{origin_rtmp}/{{app}}/{{stream}}\"\n\
         close_after_idle_ms = 1000\n",
        free_port(),
        free_port()
    ))
}

/// `ffprobe -rtsp_transport tcp` of `url` for 3 s: (success, video frames, stderr).
fn probe_rtsp(url: &str) -> (bool, u64, String) {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-rtsp_transport", "tcp", "-count_frames"]);
    cmd.args(["-select_streams", "v:0", "-show_entries"]);
    cmd.args(["stream=nb_read_frames", "-of", "csv=p=0"]);
    cmd.args(["-read_intervals", "%+3", url]);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(40)).expect("ffprobe");
    let frames = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (
        out.status.success(),
        frames,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn rtsp_player_on_an_edge_pulls_from_the_origin() {
    let clip = make_clip(5);
    let (origin, origin_rtmp) = origin();
    let mut publisher = Publisher::start(&origin.rtmp_url("live", "cam"), &clip, true);
    wait_until(Duration::from_secs(10), "the origin stream", || {
        origin.metric_value("prism_streams_active") == Some(1.0)
    });
    let rtsp = free_port();
    let edge = edge(origin_rtmp, free_port(), rtsp);
    wait_port(([127, 0, 0, 1], rtsp).into(), Duration::from_secs(10));
    let (ok, frames, stderr) = probe_rtsp(&format!("rtsp://127.0.0.1:{rtsp}/live/cam"));
    assert!(
        ok && frames >= 25,
        "frames {frames}: {stderr}\n{}",
        edge.stderr()
    );
    assert!(edge.stderr().contains("edge: pulling the stream"));
    // The player left: the pull stops.
    wait_until(Duration::from_secs(15), "the edge to stop pulling", || {
        origin.metric_value("prism_players_active{stream=\"live/cam\"}") == Some(0.0)
    });
    publisher.kill();
}

#[test]
fn a_stream_the_origin_does_not_have_is_not_found_within_a_bound() {
    let (_origin, origin_rtmp) = origin();
    let (hls_port, rtsp) = (free_port(), free_port());
    let hls: SocketAddr = ([127, 0, 0, 1], hls_port).into();
    let edge = edge(origin_rtmp, hls_port, rtsp);
    wait_port(hls, Duration::from_secs(10));
    wait_port(([127, 0, 0, 1], rtsp).into(), Duration::from_secs(10));

    // HLS: the first request starts the pull and is answered 404 once it failed.
    let t0 = Instant::now();
    let (status, _) =
        common::http_get_bytes_within(hls, "/live/nothing/index.m3u8", BOUND).expect("GET");
    let hls_took = t0.elapsed();
    assert_eq!(status, 404);
    assert!(hls_took < BOUND, "HLS took {hls_took:?}");

    // RTSP: DESCRIBE answers 404 (ffprobe reports it).
    let t0 = Instant::now();
    let (ok, frames, stderr) = probe_rtsp(&format!("rtsp://127.0.0.1:{rtsp}/live/nada"));
    let rtsp_took = t0.elapsed();
    assert!(!ok && frames == 0, "{stderr}");
    assert!(stderr.contains("404"), "{stderr}");
    assert!(rtsp_took < BOUND, "RTSP took {rtsp_took:?}");

    // RTMP: the play ends with nothing decoded.
    let t0 = Instant::now();
    let r = decode(
        &edge.rtmp_url("live", "niente"),
        Some(3.0),
        Duration::from_secs(40),
    )
    .expect("the player returns");
    let rtmp_took = t0.elapsed();
    assert_eq!(r.video_frames, 0);
    assert!(rtmp_took < BOUND, "RTMP took {rtmp_took:?}");
    eprintln!("[not_found] HLS {hls_took:?}, RTSP {rtsp_took:?}, RTMP {rtmp_took:?}");

    // Nothing is left pulling: the consumers are gone, so are the edge's sources.
    let api = common::api::Api::new(edge.http_addr.unwrap(), None);
    wait_until(Duration::from_secs(20), "the edge sources to go", || {
        api.call("GET", "/api/v1/sources", None).json()["sources"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    });
}
