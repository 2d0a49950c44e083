//! Slow player: one player stops reading while ffmpeg publishes at 8 Mbit/s and
//! a normal ffmpeg player watches the same stream. Prism sheds the stalled
//! player within its small `[player]` budget (drops frames, then disconnects
//! it for staying over budget: `too_slow`), while the normal player
//! decodes cleanly throughout and ingest keeps flowing.
//!
//! The stalled player is prism-rtmp's `ClientSession` in play mode
//! (`common::rtmp_player`): it reads until the first video frame arrives, then
//! never reads again while holding the socket open. A client that never read
//! at all would not get past the handshake, so its queue would never fill.

mod common;

use common::*;
use prism_rtmp::session::MediaKind;
use std::thread;
use std::time::{Duration, Instant};

const KEY: &str = "slow";
const STREAM: &str = "live/slow";

fn metric(prism: &Prism, sel: &str) -> f64 {
    prism.metric_value(sel).unwrap_or(0.0)
}

fn too_slow(prism: &Prism) -> f64 {
    metric(
        prism,
        "prism_connection_errors_total{reason=\"too_slow\",transport=\"rtmp\"}",
    )
}

/// `prism_player_dropped_frames_total` of [`STREAM`], all reasons.
fn player_drops(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("prism_player_dropped_frames_total{"))
        .filter(|l| l.contains(&format!("stream=\"{STREAM}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn stalled_player_is_disconnected_while_others_play_on() {
    let clip = make_clip(5);
    let (rtmp, http) = (free_port(), free_port());
    let prism = Prism::start(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\n\n[http]\nlisten = \"127.0.0.1:{http}\"\n\n\
         [player]\nmax_queue_bytes = 200000\nmax_queue_ms = 1000\noverflow_disconnect_ms = 2000\n"
    ));
    let url = prism.rtmp_url("live", KEY);
    let mut publisher = Publisher::start_with_args(&url, &clip, true, &HIGH_BITRATE_VIDEO);
    let video_in = |p: &Prism| {
        metric(
            p,
            &format!("prism_ingest_frames_total{{kind=\"video\",stream=\"{STREAM}\"}}"),
        )
    };
    wait_until(Duration::from_secs(15), "ingest of video", || {
        video_in(&prism) > 25.0
    });
    let players = |p: &Prism| metric(p, &format!("prism_players_active{{stream=\"{STREAM}\"}}"));

    // The normal player decodes through the whole stall and disconnect (about
    // 8 s of it here), in a thread.
    const WATCH_SECS: f64 = 16.0;
    let normal = {
        let url = url.clone();
        thread::spawn(move || {
            decode(&url, Some(WATCH_SECS), Duration::from_secs(60)).and_then(|r| {
                if r.exit_ok && r.errors.is_empty() && r.video_frames > 0 {
                    Ok(r.video_frames)
                } else {
                    Err(format!(
                        "normal player: exit_ok={} video_frames={} errors:\n{}",
                        r.exit_ok,
                        r.video_frames,
                        r.errors.join("\n")
                    ))
                }
            })
        })
    };
    wait_until(Duration::from_secs(10), "the ffmpeg player", || {
        players(&prism) == 1.0
    });

    // The raw player gets going, then stops reading.
    let mut stalled = rtmp_player(prism.rtmp_addr.expect("rtmp addr"), "live", KEY);
    stalled.wait_media(MediaKind::Video);
    let stalled_at = Instant::now();
    assert_eq!(players(&prism), 2.0, "{}", prism.metrics());
    assert_eq!(too_slow(&prism), 0.0);
    let ingest_at_stall = video_in(&prism);

    // Prism drops frames for it once the kernel buffers are full, then
    // disconnects it after overflow_disconnect_ms (2 s) over budget.
    wait_until(
        Duration::from_secs(20),
        "the stalled player to be disconnected as too_slow",
        || too_slow(&prism) >= 1.0,
    );
    let disconnected_after = stalled_at.elapsed();
    eprintln!("stalled player disconnected {disconnected_after:?} after it stopped reading");
    assert!(
        !normal.is_finished(),
        "the normal player stopped before the disconnect: {:?}",
        normal.join()
    );
    let text = prism.metrics();
    let drops = player_drops(&text);
    for l in text
        .lines()
        .filter(|l| l.starts_with("prism_player_dropped"))
    {
        eprintln!("  {l}");
    }
    assert!(
        drops > 0.0,
        "no player drops counted before the disconnect\n{text}"
    );
    assert_eq!(too_slow(&prism), 1.0, "only the stalled player is too slow");

    // Its socket sees the close (after what the kernel still held).
    let t = Instant::now();
    let drained = stalled
        .drain_to_close(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "stalled player: {drained} bytes left in the kernel buffers, EOF after {:?}",
        t.elapsed()
    );
    wait_until(Duration::from_secs(5), "one player left", || {
        players(&prism) == 1.0
    });

    // Ingest kept flowing meanwhile and still does.
    let ingest_at_disconnect = video_in(&prism);
    assert!(
        ingest_at_disconnect - ingest_at_stall >= 25.0 * disconnected_after.as_secs_f64() * 0.7,
        "ingest stalled: {ingest_at_stall} -> {ingest_at_disconnect} video frames in {disconnected_after:?}"
    );
    wait_until(
        Duration::from_secs(5),
        "ingest after the disconnect",
        || video_in(&prism) >= ingest_at_disconnect + 25.0,
    );
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());

    // The normal player decoded cleanly throughout.
    let frames = normal
        .join()
        .expect("normal player thread")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        frames as f64 >= 25.0 * WATCH_SECS * 0.9,
        "the normal player decoded only {frames} frames in {WATCH_SECS} s"
    );
    assert_eq!(too_slow(&prism), 1.0, "{}", prism.metrics());
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());
    publisher.stop();
}
