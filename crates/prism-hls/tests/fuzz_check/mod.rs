//! The `hls_packager` fuzz target's body, shared with `tests/fuzz_corpus.rs` (which replays
//! the checked-in corpus under `cargo test`); the fuzz target includes this file by path.
//!
//! Input: records `[op:1][dt_ms:2][len:2][bytes:len]` (big-endian). `op & 3`: 0 a video and
//! 1 an audio payload (FLV-style, timestamp advanced by `dt_ms`, as the hub delivers them:
//! monotonic), 2 the end of the stream, 3 a viewer URL (`path?query`). The clock moves with
//! the media. After every record the playlists and the MPD are rendered; each media playlist
//! must parse and keep the rules the packager controls whatever the input (numbering, part
//! names, preload hint, parts adding up to their segment; the MPEG-TS playlist its classic
//! rules, its segments whole packets); URLs are parsed and their readiness looked up.

use bytes::Bytes;
use prism_hls::check::{check_media, check_ts_media, parse_media};
use prism_hls::playlist::{self, MediaOptions};
use prism_hls::{request, Container, Packager, PackagerConfig, TrackKind};
use prism_media::MediaKind;
use std::time::{Duration, Instant, SystemTime};

/// Rules that depend on the input (a single sample longer than the part target, say) and
/// are therefore not checked here.
const INPUT_DEPENDENT: [&str; 2] = ["PART-TARGET", "target duration"];

/// Complete segments of the main track at the end, for the corpus test.
pub fn run(data: &[u8]) -> usize {
    let cfg = PackagerConfig {
        segment: Duration::from_millis(1000),
        part: Duration::from_millis(200),
        window_segments: 4,
        dvr_window: Duration::from_secs(5),
        max_bytes: 64 * 1024,
        grace: Duration::from_secs(2),
        // Both, so the MPEG-TS twin is cut and muxed from the same input too.
        container: Container::Both,
    };
    let mut p = Packager::new(cfg);
    let (t0, wall0) = (
        Instant::now(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    let mut ts: u32 = 0;
    let mut rest = data;
    while rest.len() >= 5 {
        let op = rest[0] & 3;
        let dt = u16::from_be_bytes([rest[1], rest[2]]);
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]])).min(rest.len() - 5);
        let body = &rest[5..5 + len];
        rest = &rest[5 + len..];
        ts = ts.saturating_add(u32::from(dt));
        let elapsed = Duration::from_millis(u64::from(ts));
        let (now, wall) = (t0 + elapsed, wall0 + elapsed);
        match op {
            0 | 1 => {
                let kind = if op == 0 {
                    MediaKind::Video
                } else {
                    MediaKind::Audio
                };
                p.push(kind, ts, &Bytes::copy_from_slice(body), now, wall);
            }
            2 => p.end(now),
            _ => {
                let Ok(url) = std::str::from_utf8(body) else {
                    continue;
                };
                let (path, query) = match url.split_once('?') {
                    Some((a, b)) => (a, Some(b)),
                    None => (url, None),
                };
                if let Ok(r) = request::parse(path, query) {
                    assert!(!r.app.contains('/') && !r.key.contains('/') && r.app != "..");
                    let _ = request::readiness(&p, &r);
                }
            }
        }
        p.handle_timeout(now);
        check_rendering(&p, wall);
    }
    p.track(p.main()).map_or(0, |t| t.segments.len())
}

fn check_rendering(p: &Packager, now: SystemTime) {
    let _ = playlist::multivariant(p, "token=x");
    if let Some(text) = playlist::ts_media(p, "") {
        let errors: Vec<_> = check_ts_media(&text)
            .into_iter()
            .filter(|e| !INPUT_DEPENDENT.iter().any(|k| e.contains(k)))
            .collect();
        assert!(errors.is_empty(), "{errors:?}\n{text}");
        if let Some(ts) = p.ts() {
            for seg in &ts.segments {
                assert_eq!(seg.data.len() % 188, 0, "whole TS packets");
            }
        }
    }
    let _ = playlist::dash(p, now, "");
    for kind in [TrackKind::Video, TrackKind::Audio] {
        for skip in [false, true] {
            let Some(text) = playlist::media(p, kind, MediaOptions { skip }, "") else {
                continue;
            };
            parse_media(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let errors: Vec<_> = check_media(&text)
                .into_iter()
                .filter(|e| !INPUT_DEPENDENT.iter().any(|k| e.contains(k)))
                .collect();
            assert!(errors.is_empty(), "{errors:?}\n{text}");
        }
    }
}
