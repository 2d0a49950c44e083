//! An encoder whose timestamps jump (an hour back, a day forward, half a second back;
//! mid-GOP) does not reach the destinations: the target's recording has increasing video
//! timestamps with no gap, and decodes without a complaint.
//!
//! The publisher is Prism's own RTMP client session (prism_rtmp's `ClientSession`) fed
//! with the tags of the test clip, so the timestamps on the wire are exactly the ones
//! chosen here.

mod common;

use common::flv::{flv_tags, publish};
use common::*;
use prism_rtmp::session::MediaKind;
use std::io::{Read, Write};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// `dts_ms` of every video packet of a recording, in file order.
fn video_dts(path: &std::path::Path) -> Vec<i64> {
    let out = run_with_timeout(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
            .args(["packet=dts_time", "-of", "csv=p=0"])
            .arg(path),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("ffprobe packets: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .map(|s| (s * 1000.0).round() as i64)
        .collect()
}

#[test]
fn jumps_back_and_forward_reach_targets_monotonic() {
    let t0 = Instant::now();
    let clip = std::fs::read(make_clip(5)).expect("read clip");
    let tags = flv_tags(&clip);
    let clip_ms = tags.iter().map(|t| t.timestamp).max().unwrap() + 40;
    let nginx = Nginx::start();
    let prism = Prism::start(&simple_config(
        free_port(),
        free_port(),
        &[("dest", &nginx.rtmp_url("app", "{stream}"))],
    ));
    let (mut tcp, mut session) = publish(prism.rtmp_addr.unwrap(), "live", "tj");
    // Acknowledgements and pings from Prism: read and ignore them.
    let mut drain = tcp.try_clone().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(drain.read(&mut buf), Ok(n) if n > 0) {}
    });

    // Two passes over the clip, 10 s of media, sent at twice real time. The encoder's
    // clock starts an hour in, jumps an hour back after a quarter, a day forward after
    // half, and half a second back (less than audio/video interleaving may differ) after
    // three quarters; no jump falls on a keyframe.
    let total = 2 * clip_ms;
    let offset = |media_ms: u32| match media_ms {
        t if t < total / 4 + 13 => 3_600_000,
        t if t < total / 2 + 27 => 0,
        t if t < 3 * total / 4 + 13 => 86_400_000,
        _ => 86_400_000 - 500,
    };
    let start = Instant::now();
    let mut video_tags = 0;
    for pass in 0..2 {
        for tag in &tags {
            let media_ms = pass * clip_ms + tag.timestamp;
            let due = start + Duration::from_millis(u64::from(media_ms) / 2);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            session.send_media(tag.kind, media_ms + offset(media_ms), &tag.body);
            tcp.write_all(&session.out().take_all())
                .expect("write media to prism");
            if tag.kind == MediaKind::Video {
                video_tags += 1;
            }
        }
    }
    nginx.wait_bytes_in("tj", 0, Duration::from_secs(5));
    session.unpublish();
    tcp.write_all(&session.out().take_all()).expect("unpublish");
    wait_until(Duration::from_secs(10), "nginx to end stream tj", || {
        !nginx.is_publishing("tj")
    });

    let rec = nginx.recording("tj");
    let dts = video_dts(&rec);
    assert!(
        dts.len() as u64 >= video_tags as u64 * 9 / 10,
        "only {} of {video_tags} video frames recorded",
        dts.len()
    );
    let backwards: Vec<_> = dts.windows(2).filter(|w| w[1] <= w[0]).collect();
    assert!(
        backwards.is_empty(),
        "video DTS do not increase: {backwards:?}"
    );
    let biggest_step = dts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(
        biggest_step <= 1000,
        "a jump reached the destination: video DTS step of {biggest_step} ms"
    );
    let span = dts.last().unwrap() - dts.first().unwrap();
    assert!(
        (8_000..=12_000).contains(&span),
        "recording spans {span} ms for 10 s of media"
    );
    let frames = decode_ok(rec.to_str().expect("utf-8 path"), Duration::from_secs(30))
        .expect("recording decodes");
    eprintln!(
        "{frames} frames decoded, biggest DTS step {biggest_step} ms; took {:?}",
        t0.elapsed()
    );
}
