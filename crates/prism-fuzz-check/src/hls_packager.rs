//! The `hls_packager` fuzz target's body.
//!
//! Input: records `[op:1][dt_ms:2][len:2][bytes:len]` (big-endian). `op & 3`: 0 a video and
//! 1 an audio payload (FLV-style, timestamp advanced by `dt_ms`, as the hub delivers them:
//! monotonic), 2 the end of the stream (again: it resumes), 3 a viewer URL (`path?query`). The clock moves with
//! the media. After every record the playlists and the MPD are rendered; each media playlist
//! must parse and keep the rules the packager controls whatever the input (numbering, part
//! names, preload hint, parts adding up to their segment; the MPEG-TS playlist its classic
//! rules, its segments whole packets); URLs are parsed and their readiness looked up.
//! Segments spill to a simulated disk (a write fails when the record's op has its high bit
//! set); every file deleted was written, none twice, and every listed segment's bytes are
//! found, in memory or in its file.

use bytes::Bytes;
use prism_hls::check::{check_media, check_ts_media, parse_media};
use prism_hls::playlist::{self, MediaOptions};
use prism_hls::{request, Container, DiskJob, Located, Packager, PackagerConfig, TrackKind};
use prism_media::MediaKind;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// Rules that depend on the input (a single sample longer than the part target, say) and
/// are therefore not checked here.
const INPUT_DEPENDENT: [&str; 2] = ["PART-TARGET", "target duration"];

/// Complete segments of the main track at the end, for the corpus test.
pub fn run(data: &[u8]) -> usize {
    let cfg = PackagerConfig {
        segment: Duration::from_millis(1000),
        part: Duration::from_millis(200),
        // Short, so that the seeds spill.
        window_segments: 2,
        dvr_window: Duration::from_secs(5),
        max_bytes: 64 * 1024,
        grace: Duration::from_secs(2),
        // Both, so the MPEG-TS twin is cut and muxed from the same input too.
        container: Container::Both,
        spill: true,
    };
    let mut disk: HashMap<(TrackKind, u64), usize> = HashMap::new();
    let mut p = Packager::new(cfg);
    let (t0, wall0) = (
        Instant::now(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    let mut ts: u32 = 0;
    let mut rest = data;
    while rest.len() >= 5 {
        let op = rest[0] & 3;
        let disk_full = rest[0] & 0x80 != 0;
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
            2 if p.is_ended() => {
                p.resume();
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
        service_disk(&mut p, &mut disk, disk_full);
        check_rendering(&p, wall);
        check_storage(&p, &disk);
    }
    p.track(p.main()).map_or(0, |t| t.segments.len())
}

/// The driver's part: file sizes by segment.
fn service_disk(p: &mut Packager, disk: &mut HashMap<(TrackKind, u64), usize>, fail: bool) {
    for job in p.take_disk_jobs() {
        match job {
            DiskJob::Write { track, msn, parts } => {
                if !fail {
                    let len = parts.iter().map(|b| b.len()).sum();
                    assert!(disk.insert((track, msn), len).is_none(), "written twice");
                }
                p.spilled(track, msn, !fail);
            }
            DiskJob::Delete { track, msn } => {
                assert!(
                    disk.remove(&(track, msn)).is_some(),
                    "deleted, never written"
                );
            }
        }
    }
}

/// Every segment's bytes are where the packager says.
fn check_storage(p: &Packager, disk: &HashMap<(TrackKind, u64), usize>) {
    for t in p.tracks() {
        for seg in &t.segments {
            match t.segment_data(seg.msn) {
                Some(Located::Disk { msn, offset, len }) => {
                    assert_eq!(msn, seg.msn);
                    let file = disk.get(&(t.kind, msn)).copied();
                    assert_eq!(file, Some((offset + len) as usize), "file of {msn}");
                    assert_eq!(len as usize, seg.bytes());
                }
                Some(Located::Memory(chunks)) => {
                    assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), seg.bytes());
                }
                None => panic!("segment {} not found", seg.msn),
            }
        }
    }
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
