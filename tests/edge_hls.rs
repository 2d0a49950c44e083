//! HLS viewers on an edge: their requests for a stream that is not live there make the edge
//! pull it from the origin (one pull for all of them), their playlist reloads keep the pull
//! alive, and it stops after they leave. Two Prism processes; ffmpeg/ffprobe as viewers.

mod common;

use common::api::Api;
use common::*;
use std::fs;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn edge_config(origin_rtmp: u16, hls: u16) -> String {
    format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
         [hls]\nlisten = \"127.0.0.1:{hls}\"\nsegment_ms = 1000\npart_ms = 200\n\
         [edge]\norigin = \"rtmp://127.0.0.1:{origin_rtmp}/{{app}}/{{stream}}\"\n\
         close_after_idle_ms = 1000\n",
        free_port(),
        free_port()
    )
}

fn get_bytes(addr: SocketAddr, path: &str) -> Vec<u8> {
    // The first request starts the pull and waits for it (up to 10 s on Prism's side).
    match http_get_bytes_within(addr, path, Duration::from_secs(15)) {
        Ok((200, body)) => body,
        other => panic!("GET {path}: {other:?}"),
    }
}

#[test]
fn hls_viewers_on_an_edge_cause_one_pull_and_let_go() {
    let clip = make_clip(5);
    let origin_rtmp = free_port();
    let origin = Prism::start(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:{origin_rtmp}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n",
        free_port()
    ));
    let mut publisher = Publisher::start(&origin.rtmp_url("live", "show"), &clip, true);
    wait_until(Duration::from_secs(10), "the origin stream", || {
        origin.metric_value("prism_streams_active") == Some(1.0)
    });
    let hls_port = free_port();
    let hls: SocketAddr = ([127, 0, 0, 1], hls_port).into();
    let edge = Prism::start(&edge_config(origin_rtmp, hls_port));
    let edge_api = Api::new(edge.http_addr.unwrap(), None);
    wait_port(hls, Duration::from_secs(10));
    // Nothing is pulled before a viewer asks.
    assert_eq!(edge.metric_value("prism_streams_active"), Some(0.0));

    // Three viewers at once: one pull.
    let url = format!("http://{hls}/live/show/index.m3u8");
    let viewers: Vec<NullPlayer> = (0..3).map(|_| NullPlayer::start(&url)).collect();
    wait_until(Duration::from_secs(20), "the edge to pull", || {
        edge.metric_value("prism_source_up{stream=\"live/show\"}") == Some(1.0)
    });
    assert_eq!(
        origin.metric_value("prism_players_active{stream=\"live/show\"}"),
        Some(1.0),
        "the origin should see one player (the edge)"
    );
    let pulls = edge.stderr().matches("edge: pulling the stream").count();
    assert_eq!(pulls, 1, "{}", edge.stderr());
    let r = edge_api.call("GET", "/api/v1/sources/live/show", None);
    assert_eq!(r.json()["origin"], "edge", "{}", r.body);

    // What the viewers get decodes: a segment of the edge's playlist through ffprobe.
    let playlist = wait_for(Duration::from_secs(20), "two segments", || {
        let (status, body) = http_get_bytes(hls, "/live/show/video.m3u8").ok()?;
        let text = String::from_utf8(body).ok()?;
        let segs: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        (status == 200 && segs.len() >= 2).then_some((text, segs))
    });
    let (text, segs) = playlist;
    let map = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|l| l.split('"').next())
        .unwrap_or_else(|| panic!("no EXT-X-MAP: {text}"))
        .to_owned();
    let dir = TempDir::new("edge-hls");
    let mut file = get_bytes(hls, &format!("/live/show/{map}"));
    file.extend(get_bytes(hls, &format!("/live/show/{}", segs[0])));
    let path = dir.join("seg.mp4");
    fs::write(&path, &file).unwrap();
    let p = probe(&path, Duration::from_secs(30)).unwrap();
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert!(p.video_frames_decoded >= 10, "{p:?}");
    // The viewers' own ffmpeg reads go on without error.
    std::thread::sleep(Duration::from_secs(2));
    for v in &viewers {
        assert!(v.stderr().is_empty(), "viewer: {}", v.stderr());
    }
    assert_eq!(
        edge.metric_value("prism_source_up{stream=\"live/show\"}"),
        Some(1.0),
        "the viewers' requests keep the pull up"
    );

    // The viewers leave: the lease runs out, the edge stops pulling, the origin loses its
    // player (lease 10 s + close_after_idle_ms 1 s).
    drop(viewers);
    let t0 = Instant::now();
    wait_until(Duration::from_secs(30), "the edge to stop pulling", || {
        origin.metric_value("prism_players_active{stream=\"live/show\"}") == Some(0.0)
    });
    eprintln!(
        "[edge_hls] pull stopped {:?} after the viewers left",
        t0.elapsed()
    );
    wait_until(Duration::from_secs(5), "the edge source to go", || {
        edge_api
            .call("GET", "/api/v1/sources/live/show", None)
            .status
            == 404
    });
    publisher.kill();
}
