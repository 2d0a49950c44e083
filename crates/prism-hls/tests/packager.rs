//! The packager in virtual time: synthetic H.264 + AAC frames as an RTMP encoder sends them.

use bytes::Bytes;
use prism_hls::check::{check_delta, check_media, parse_media};
use prism_hls::playlist::{self, MediaOptions};
use prism_hls::request::{self, Readiness};
use prism_hls::{Container, DiskJob, Located, Packager, PackagerConfig, TrackKind};
use prism_media::MediaKind;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0D, 0xAC, 0xD9, 0x41, 0x41, 0xFB, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0x20, 0xF1, 0x42, 0x99, 0x60,
];
const PPS: &[u8] = &[0x68, 0xEB, 0xE3, 0xCB, 0x22, 0xC0];

fn avc_config() -> Bytes {
    let mut v = vec![0x17, 0, 0, 0, 0, 1, SPS[1], SPS[2], SPS[3], 0xFF, 0xE1];
    v.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
    v.extend_from_slice(SPS);
    v.push(1);
    v.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
    v.extend_from_slice(PPS);
    Bytes::from(v)
}

fn avc_frame(key: bool, len: usize) -> Bytes {
    let mut v = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    v.extend_from_slice(&(len as u32 + 1).to_be_bytes());
    v.push(if key { 0x65 } else { 0x41 });
    v.extend(std::iter::repeat(0xAB).take(len));
    Bytes::from(v)
}

fn aac_config() -> Bytes {
    // AAC-LC, 48 kHz, stereo.
    Bytes::from_static(&[0xAF, 0x00, 0x11, 0x90])
}

fn aac_frame() -> Bytes {
    Bytes::from(vec![0xAF, 0x01, 0x21, 0x10, 0x04, 0x60, 0x8C, 0x1C])
}

/// Feeds `secs` of 30 fps video (keyframe every `gop` frames) and 48 kHz AAC, interleaved by
/// time as an encoder sends them, with `now` advancing with the media.
struct Feed {
    p: Packager,
    t0: Instant,
    wall0: SystemTime,
    video_n: u32,
    audio_n: u32,
    gop: u32,
}

impl Feed {
    fn new(cfg: PackagerConfig, gop: u32) -> Feed {
        let mut p = Packager::new(cfg);
        let (t0, wall0) = (Instant::now(), SystemTime::now());
        p.push(MediaKind::Video, 0, &avc_config(), t0, wall0);
        p.push(MediaKind::Audio, 0, &aac_config(), t0, wall0);
        Feed {
            p,
            t0,
            wall0,
            video_n: 0,
            audio_n: 0,
            gop,
        }
    }

    fn run_until(&mut self, ms: u32) {
        loop {
            let v = self.video_n * 1000 / 30;
            let a = (u64::from(self.audio_n) * 1024 * 1000 / 48_000) as u32;
            if v.min(a) > ms {
                return;
            }
            let (kind, ts, payload) = if v <= a {
                self.video_n += 1;
                (
                    MediaKind::Video,
                    v,
                    avc_frame((self.video_n - 1) % self.gop == 0, 2000),
                )
            } else {
                self.audio_n += 1;
                (MediaKind::Audio, a, aac_frame())
            };
            let d = Duration::from_millis(u64::from(ts));
            self.p.push(kind, ts, &payload, self.t0 + d, self.wall0 + d);
        }
    }
}

fn media(p: &Packager, kind: TrackKind, skip: bool) -> String {
    playlist::media(p, kind, MediaOptions { skip }, "").unwrap()
}

#[test]
fn segments_on_keyframes_parts_within_target_playlists_valid() {
    let mut f = Feed::new(PackagerConfig::default(), 60);
    f.run_until(20_000);
    let p = &f.p;
    let video = p.track(TrackKind::Video).unwrap();
    assert_eq!(video.segments.len(), 6, "window_segments");
    for seg in &video.segments {
        assert!(
            (seg.duration - 2.0).abs() < 0.001,
            "2 s GOPs: {}",
            seg.duration
        );
        assert!(seg.parts[0].independent, "segments start with a keyframe");
        assert!(seg.parts.iter().skip(1).all(|p| !p.independent));
        assert!(seg.parts.iter().all(|p| !p.data.is_empty()));
    }
    for kind in [TrackKind::Video, TrackKind::Audio] {
        let text = media(p, kind, false);
        let errors = check_media(&text);
        assert!(errors.is_empty(), "{kind:?}: {errors:?}\n{text}");
        let parsed = parse_media(&text).unwrap();
        assert_eq!(parsed.target_duration, 2);
        assert!(!parsed.open_parts.is_empty() || parsed.preload_hint.is_some());
    }
    // Audio segments follow the video cuts (within an audio frame or two).
    let audio = p.track(TrackKind::Audio).unwrap();
    for (a, v) in audio.segments.iter().zip(&video.segments) {
        assert_eq!(a.msn, v.msn);
        assert!(
            (a.duration - v.duration).abs() < 0.05,
            "{} vs {}",
            a.duration,
            v.duration
        );
    }
    let mv = playlist::multivariant(p, "").unwrap();
    assert!(
        mv.contains("TYPE=AUDIO") && mv.contains("video.m3u8"),
        "{mv}"
    );
    let mpd = playlist::dash(p, SystemTime::now(), "").unwrap();
    assert!(mpd.contains("$Number$") && mpd.contains("<S t="), "{mpd}");
    assert!(
        mpd.contains("<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:direct:2014\" value=\"20"),
        "a live MPD carries its clock: {mpd}"
    );
}

#[test]
fn long_gop_makes_long_segments_and_the_target_follows() {
    let mut f = Feed::new(PackagerConfig::default(), 150); // 5 s GOP
    f.run_until(30_000);
    let text = media(&f.p, TrackKind::Video, false);
    assert!(check_media(&text).is_empty(), "{:?}", check_media(&text));
    assert_eq!(parse_media(&text).unwrap().target_duration, 5);
}

#[test]
fn blocking_reload_readiness() {
    let mut f = Feed::new(PackagerConfig::default(), 60);
    f.run_until(5_000);
    let p = &f.p;
    let open = p.open_msn();
    let parts = p.track(TrackKind::Video).unwrap().open.parts.len();
    let ask = |msn: u64, part: Option<usize>| {
        let q = match part {
            Some(part) => format!("_HLS_msn={msn}&_HLS_part={part}"),
            None => format!("_HLS_msn={msn}"),
        };
        let r = request::parse("/live/a/video.m3u8", Some(&q)).unwrap();
        request::readiness(p, &r)
    };
    assert_eq!(ask(open - 1, None), Readiness::Ready);
    assert_eq!(ask(open, None), Readiness::Wait);
    assert_eq!(ask(open, Some(parts - 1)), Readiness::Ready);
    assert_eq!(ask(open, Some(parts)), Readiness::Wait);
    assert_eq!(ask(open + 3, None), Readiness::TooFarAhead);
    let hinted = format!("/live/a/video/{open}.{parts}.m4s");
    let r = request::parse(&hinted, None).unwrap();
    assert_eq!(request::readiness(p, &r), Readiness::Wait);
    let gone = request::parse("/live/a/video/9999.m4s", None).unwrap();
    assert_eq!(request::readiness(p, &gone), Readiness::NotFound);
}

#[test]
fn delta_updates_match_the_full_playlist() {
    let cfg = PackagerConfig {
        segment: Duration::from_secs(1),
        window_segments: 20,
        ..PackagerConfig::default()
    };
    let mut f = Feed::new(cfg, 30);
    f.run_until(30_000);
    let full = media(&f.p, TrackKind::Video, false);
    let delta = media(&f.p, TrackKind::Video, true);
    assert!(delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS="), "{delta}");
    assert!(
        check_delta(&full, &delta).is_empty(),
        "{:?}",
        check_delta(&full, &delta)
    );
}

#[test]
fn dvr_window_keeps_time_and_retired_segments_stay_fetchable() {
    let cfg = PackagerConfig {
        dvr_window: Duration::from_secs(60),
        ..PackagerConfig::default()
    };
    let mut f = Feed::new(cfg, 60);
    f.run_until(100_000);
    let v = f.p.track(TrackKind::Video).unwrap();
    let total: f64 = v.segments.iter().map(|s| s.duration).sum();
    assert!((60.0..=62.0).contains(&total), "{total}");
    // The segment just evicted is still there during the grace.
    let first = v.segments.front().unwrap().msn;
    assert!(v.segment(first - 1).is_some());
    f.p.handle_timeout(f.t0 + Duration::from_secs(200));
    let v = f.p.track(TrackKind::Video).unwrap();
    assert!(v.segment(first - 1).is_none(), "gone after the grace");
}

#[test]
fn end_closes_the_window_with_endlist() {
    let mut f = Feed::new(PackagerConfig::default(), 60);
    f.run_until(5_000);
    f.p.end(f.t0 + Duration::from_secs(6));
    let text = media(&f.p, TrackKind::Video, false);
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    assert!(check_media(&text).is_empty(), "{:?}", check_media(&text));
}

#[test]
fn garbage_frames_are_counted_not_fatal() {
    let mut f = Feed::new(PackagerConfig::default(), 60);
    let (t, w) = (f.t0, f.wall0);
    for junk in [
        &b""[..],
        &[0x17][..],
        &[0x17, 1][..],
        &[0xFF; 40][..],
        &[0x9F, 0, 0][..],
    ] {
        f.p.push(MediaKind::Video, 0, &Bytes::copy_from_slice(junk), t, w);
        f.p.push(MediaKind::Audio, 0, &Bytes::copy_from_slice(junk), t, w);
    }
    f.run_until(3_000);
    assert!(f.p.is_started());
    assert!(f.p.unsupported() > 0, "malformed payloads are counted");
}

#[test]
fn an_audio_dropout_is_a_gap_and_numbering_stays_aligned() {
    let mut f = Feed::new(PackagerConfig::default(), 60);
    f.run_until(6_000);
    // 5 s of video alone: the encoder's audio stalled.
    let (t0, w0) = (f.t0, f.wall0);
    while f.video_n * 1000 / 30 < 11_000 {
        let ts = f.video_n * 1000 / 30;
        let key = f.video_n % 60 == 0;
        f.video_n += 1;
        let d = Duration::from_millis(u64::from(ts));
        f.p.push(MediaKind::Video, ts, &avc_frame(key, 2000), t0 + d, w0 + d);
    }
    f.audio_n = (11_000 * 48 / 1024) as u32 + 1;
    f.run_until(16_000);
    let audio = media(&f.p, TrackKind::Audio, false);
    assert!(audio.contains("#EXT-X-GAP"), "{audio}");
    assert!(
        check_media(&audio).is_empty(),
        "{:?}\n{audio}",
        check_media(&audio)
    );
    let video = parse_media(&media(&f.p, TrackKind::Video, false)).unwrap();
    let audio = parse_media(&audio).unwrap();
    assert_eq!(video.media_sequence, audio.media_sequence);
    assert_eq!(video.segments.len(), audio.segments.len());
    // A gap is not fetchable.
    let gap =
        f.p.track(TrackKind::Audio)
            .unwrap()
            .segments
            .iter()
            .find(|s| s.is_gap())
            .unwrap();
    let url = format!("/live/a/audio/{}.m4s", gap.msn);
    let r = request::parse(&url, None).unwrap();
    assert_eq!(request::readiness(&f.p, &r), Readiness::NotFound);
    // DASH numbers its timeline's entries one by one ($Number$): every number it implies
    // names the segment of that time, on both sides of the gap.
    let mpd = playlist::dash(&f.p, f.wall0, "").unwrap();
    for kind in [TrackKind::Video, TrackKind::Audio] {
        let listed = dash_numbers(&mpd, kind.as_str());
        assert!(
            listed.len() >= 3,
            "{kind:?}: {listed:?}
{mpd}"
        );
        let track = f.p.track(kind).unwrap();
        for (number, t) in listed {
            let seg = track
                .segment(number)
                .unwrap_or_else(|| panic!("{kind:?} {number} listed, not there\n{mpd}"));
            assert_eq!(seg.start, t, "{kind:?} segment {number}\n{mpd}");
            assert!(!seg.is_gap(), "{kind:?} {number} is a gap\n{mpd}");
        }
    }
}

/// (segment number, start time) of each entry of representation `id`'s SegmentTimeline.
fn dash_numbers(mpd: &str, id: &str) -> Vec<(u64, u64)> {
    let (mut number, elements) = dash_s(mpd, id);
    let mut out = Vec::new();
    let mut next_t = 0;
    for (t, d, r) in elements {
        let mut t = t.unwrap_or(next_t);
        for _ in 0..=r {
            out.push((number, t));
            number += 1;
            t += d;
        }
        next_t = t;
    }
    out
}

/// A driver's disk in virtual time: files by (track, msn), written and deleted as the
/// packager asks; `fail` makes every write fail (a full disk).
#[derive(Default)]
struct Disk {
    files: HashMap<(TrackKind, u64), Vec<u8>>,
    writes: usize,
    deletes: usize,
    peak_files: usize,
    fail: bool,
}

impl Disk {
    fn service(&mut self, p: &mut Packager) {
        for job in p.take_disk_jobs() {
            match job {
                DiskJob::Write { track, msn, parts } => {
                    self.writes += 1;
                    if self.fail {
                        p.spilled(track, msn, false);
                        continue;
                    }
                    assert!(
                        self.files.insert((track, msn), parts.concat()).is_none(),
                        "{track:?} {msn} written twice"
                    );
                    p.spilled(track, msn, true);
                }
                DiskJob::Delete { track, msn } => {
                    self.deletes += 1;
                    assert!(
                        self.files.remove(&(track, msn)).is_some(),
                        "delete of {track:?} {msn}, never written"
                    );
                }
            }
        }
        self.peak_files = self.peak_files.max(self.files.len());
    }

    /// The bytes at `at`, from memory or from the file.
    fn read(&self, track: TrackKind, at: Located) -> Vec<u8> {
        match at {
            Located::Memory(chunks) => chunks.concat(),
            Located::Disk { msn, offset, len } => {
                let file = &self.files[&(track, msn)];
                file[offset as usize..(offset + len) as usize].to_vec()
            }
        }
    }
}

fn dvr_config() -> PackagerConfig {
    PackagerConfig {
        dvr_window: Duration::from_secs(60),
        spill: true,
        ..PackagerConfig::default()
    }
}

/// Runs the feed to `ms` in steps of half a second, the disk serviced after each.
fn run_with_disk(f: &mut Feed, disk: &mut Disk, ms: u32) {
    let mut at = f.video_n * 1000 / 30;
    while at < ms {
        at = (at + 500).min(ms);
        f.run_until(at);
        disk.service(&mut f.p);
    }
}

#[test]
fn dvr_spill_keeps_the_live_end_in_memory_and_deletes_what_leaves() {
    let mut f = Feed::new(dvr_config(), 60);
    let mut disk = Disk::default();
    run_with_disk(&mut f, &mut disk, 200_000);
    let p = &f.p;
    for kind in [TrackKind::Video, TrackKind::Audio] {
        let t = p.track(kind).unwrap();
        let total: f64 = t.segments.iter().map(|s| s.duration).sum();
        assert!((60.0..=62.0).contains(&total), "{kind:?}: {total}");
        let n = t.segments.len();
        // Only the live playlist's segments stay in memory.
        for (i, seg) in t.segments.iter().enumerate() {
            let live = i >= n - 6;
            assert_eq!(seg.on_disk(), !live, "{kind:?} segment {i} of {n}");
            if seg.on_disk() {
                assert!(seg.parts.iter().all(|p| p.data.is_empty()));
                assert!(seg.parts.iter().all(|p| p.duration > 0.0), "durations kept");
            }
        }
        let live: u64 = t
            .segments
            .iter()
            .filter(|s| !s.on_disk())
            .map(|s| s.bytes() as u64)
            .sum();
        assert_eq!(t.bytes() - t.disk_bytes(), live + t.open.bytes() as u64);
        // A spilled segment reads back as its parts back to back, each a CMAF fragment.
        let old = &t.segments[0];
        let whole = disk.read(kind, t.segment_data(old.msn).unwrap());
        assert_eq!(whole.len(), old.bytes());
        let mut joined = Vec::new();
        for i in 0..old.parts.len() {
            let part = disk.read(kind, t.part_data(old.msn, i).unwrap());
            assert_eq!(&part[4..8], b"moof", "part {i} starts with its moof");
            joined.extend(part);
        }
        assert_eq!(joined, whole);
        // A live one is served from memory.
        let newest = t.segments.back().unwrap().msn;
        assert!(matches!(t.segment_data(newest), Some(Located::Memory(_))));
    }
    // The playlist is the same with the window on disk.
    let text = media(p, TrackKind::Video, false);
    assert!(check_media(&text).is_empty(), "{:?}", check_media(&text));
    assert!(p.disk_bytes() > 0 && p.disk_bytes() < p.bytes());
    // Files: the DVR window plus the grace, never more; everything older was deleted.
    // Per track: 30 segments of 60 s, 6 of them live (not on disk), 6 retired in the grace.
    assert!(
        disk.deletes > 0,
        "segments that left the window were deleted"
    );
    assert!(
        disk.peak_files <= 2 * (30 - 6 + 6 + 2),
        "{} files at most",
        disk.peak_files
    );
    assert_eq!(disk.writes, disk.files.len() + disk.deletes);
    // Once the grace of everything passed, only the window's files remain.
    let first = p.track(TrackKind::Video).unwrap().segments[0].msn;
    f.p.handle_timeout(f.t0 + Duration::from_secs(1000));
    disk.service(&mut f.p);
    assert!(disk.files.keys().all(|(_, msn)| *msn >= first));
}

#[test]
fn dvr_spill_failure_keeps_the_window_in_memory() {
    let mut f = Feed::new(dvr_config(), 60);
    let mut disk = Disk::default();
    run_with_disk(&mut f, &mut disk, 30_000);
    assert!(f.p.disk_bytes() > 0);
    disk.fail = true;
    run_with_disk(&mut f, &mut disk, 100_000);
    assert!(f.p.spill_failed());
    // One write failed; none was asked for after it.
    let writes = disk.writes;
    run_with_disk(&mut f, &mut disk, 120_000);
    assert_eq!(disk.writes, writes, "no more writes once one failed");
    let v = f.p.track(TrackKind::Video).unwrap();
    let total: f64 = v.segments.iter().map(|s| s.duration).sum();
    assert!(
        (60.0..=62.0).contains(&total),
        "the window still spans {total}"
    );
    assert!(
        v.segments.iter().all(|s| !s.on_disk()),
        "older files left the window"
    );
    for seg in &v.segments {
        assert!(matches!(v.segment_data(seg.msn), Some(Located::Memory(c)) if !c.is_empty()));
    }
    // The files of the segments that left the window are still deleted.
    f.p.handle_timeout(f.t0 + Duration::from_secs(1000));
    disk.service(&mut f.p);
    assert!(disk.files.is_empty(), "{:?}", disk.files.keys());
    let text = media(&f.p, TrackKind::Video, false);
    assert!(check_media(&text).is_empty(), "{:?}", check_media(&text));
}

#[test]
fn dvr_write_in_flight_is_deleted_after_and_a_queued_one_cancelled() {
    // A tiny byte bound evicts segments right after they are due to spill.
    let cfg = PackagerConfig {
        max_bytes: 600_000,
        grace: Duration::ZERO,
        ..dvr_config()
    };
    let mut f = Feed::new(cfg, 60);
    f.run_until(40_000);
    // The writer took nothing yet: writes of segments that left meanwhile were dropped.
    let jobs = f.p.take_disk_jobs();
    let written: Vec<(TrackKind, u64)> = jobs
        .iter()
        .filter_map(|j| match j {
            DiskJob::Write { track, msn, .. } => Some((*track, *msn)),
            DiskJob::Delete { .. } => None,
        })
        .collect();
    assert!(!written.is_empty());
    assert!(jobs.iter().all(|j| matches!(j, DiskJob::Write { .. })));
    for (track, msn) in &written {
        let t = f.p.track(*track).unwrap();
        assert!(
            t.segment(*msn).is_some(),
            "only segments still in the window are written"
        );
    }
    // The writes are in flight while the window moves on: each dropped segment's delete
    // comes after its write.
    f.run_until(120_000);
    for (track, msn) in &written {
        f.p.spilled(*track, *msn, true);
    }
    f.p.handle_timeout(f.t0 + Duration::from_secs(1000));
    let deletes: Vec<(TrackKind, u64)> =
        f.p.take_disk_jobs()
            .into_iter()
            .filter_map(|j| match j {
                DiskJob::Delete { track, msn } => Some((track, msn)),
                DiskJob::Write { .. } => None,
            })
            .collect();
    for w in &written {
        assert!(deletes.contains(w), "{w:?} deleted: {deletes:?}");
    }
}

#[test]
fn a_new_encoder_session_is_a_discontinuity() {
    // A publisher that reconnects within the hub's grace sends its sequence headers again
    // (the same ones) and goes on from a keyframe, after a gap in the timeline.
    let resend_at = |f: &mut Feed, at: u32| {
        let d = Duration::from_millis(u64::from(at));
        f.p.push(MediaKind::Video, at, &avc_config(), f.t0 + d, f.wall0 + d);
        f.p.push(MediaKind::Audio, at, &aac_config(), f.t0 + d, f.wall0 + d);
        // The first frame of the new session is a keyframe.
        f.video_n = at * 30 / 1000;
        f.video_n += 60 - f.video_n % 60;
        f.audio_n = (u64::from(f.video_n * 1000 / 30) * 48 / 1024) as u32;
    };
    let mut f = Feed::new(PackagerConfig::default(), 60);
    f.run_until(9_000);
    f.p.restart();
    resend_at(&mut f, 12_000);
    f.run_until(20_000);
    for kind in [TrackKind::Video, TrackKind::Audio] {
        let text = media(&f.p, kind, false);
        assert_eq!(
            text.matches("#EXT-X-DISCONTINUITY\n").count(),
            1,
            "{kind:?}:\n{text}"
        );
        assert!(check_media(&text).is_empty(), "{:?}", check_media(&text));
        let parsed = parse_media(&text).unwrap();
        assert_eq!(parsed.maps.len(), 2, "a new init segment: {text}");
        assert!(
            parsed.target_duration <= 2,
            "the gap is not in a segment: {text}"
        );
    }
    // The same sequence headers again without a new session (a looping encoder) and no
    // hole longer than a segment in the timeline: no discontinuity.
    let mut g = Feed::new(PackagerConfig::default(), 60);
    g.run_until(9_000);
    resend_at(&mut g, 9_000);
    g.run_until(20_000);
    assert!(!media(&g.p, TrackKind::Video, false).contains("#EXT-X-DISCONTINUITY\n"));
}

#[test]
fn a_resumed_window_goes_on_with_a_discontinuity() {
    let cfg = PackagerConfig {
        dvr_window: Duration::from_secs(60),
        ..PackagerConfig::default()
    };
    let mut f = Feed::new(cfg, 60);
    f.run_until(20_000);
    f.p.end(f.t0 + Duration::from_secs(20));
    let ended = media(&f.p, TrackKind::Video, false);
    assert!(ended.ends_with("#EXT-X-ENDLIST\n"));
    let before = parse_media(&ended).unwrap();
    let last_end = {
        let v = f.p.track(TrackKind::Video).unwrap();
        let s = v.segments.back().unwrap();
        s.start + (s.duration * 90_000.0) as u64
    };
    // A new publisher 5 s later: its timestamps start over at 0.
    assert!(f.p.resume());
    f.t0 += Duration::from_secs(25);
    f.wall0 += Duration::from_secs(25);
    f.video_n = 0;
    f.audio_n = 0;
    f.p.push(MediaKind::Video, 0, &avc_config(), f.t0, f.wall0);
    f.p.push(MediaKind::Audio, 0, &aac_config(), f.t0, f.wall0);
    f.run_until(20_000);
    for kind in [TrackKind::Video, TrackKind::Audio] {
        let text = media(&f.p, kind, false);
        assert!(!text.contains("#EXT-X-ENDLIST"), "{text}");
        assert!(
            check_media(&text).is_empty(),
            "{:?}\n{text}",
            check_media(&text)
        );
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
        let p = parse_media(&text).unwrap();
        assert!(p.target_duration <= 2, "{text}");
        assert_eq!(p.maps.len(), 2, "{text}");
    }
    let after = parse_media(&media(&f.p, TrackKind::Video, false)).unwrap();
    assert_eq!(
        after.media_sequence, before.media_sequence,
        "the window goes on"
    );
    let at = after.segments.iter().position(|s| s.discontinuity).unwrap();
    assert_eq!(at, before.segments.len(), "right after the old segments");
    // The timeline goes on too: about the 5 s of wall clock later, not back to 0.
    let v = f.p.track(TrackKind::Video).unwrap();
    let first_new = v.segments[at].start;
    let gap = (first_new as f64 - last_end as f64) / 90_000.0;
    assert!((4.0..6.5).contains(&gap), "{gap} s between the timelines");
    // A second end and resume work alike.
    f.p.end(f.t0 + Duration::from_secs(21));
    assert!(f.p.resume());
    assert!(!f.p.is_ended());
    assert!(!f.p.resume(), "only an ended window resumes");
}

#[test]
fn dash_numbers_the_current_timeline_from_its_first_segment() {
    let mut f = Feed::new(PackagerConfig::default(), 60);
    f.run_until(9_000);
    f.p.end(f.t0 + Duration::from_secs(9));
    assert!(f.p.resume());
    f.video_n = 0;
    f.audio_n = 0;
    f.t0 += Duration::from_secs(10);
    f.wall0 += Duration::from_secs(10);
    f.p.push(MediaKind::Video, 0, &avc_config(), f.t0, f.wall0);
    f.p.push(MediaKind::Audio, 0, &aac_config(), f.t0, f.wall0);
    f.run_until(9_000);
    let v = f.p.track(TrackKind::Video).unwrap();
    let first_new = v.segments.iter().find(|s| s.discontinuity).unwrap();
    let mpd = playlist::dash(&f.p, f.wall0, "").unwrap();
    assert!(
        mpd.contains(&format!("startNumber=\"{}\"", first_new.msn)),
        "{mpd}"
    );
    assert!(
        mpd.contains(&format!("<S t=\"{}\"", first_new.start)),
        "{mpd}"
    );
}

#[test]
fn a_jump_in_the_timeline_starts_a_new_one_without_a_long_sample() {
    // A subscriber queue that overflowed drops to the next keyframe: the frames resume 35 s
    // later. No sample, part or segment (CMAF or MPEG-TS) may stretch over the hole.
    let cfg = PackagerConfig {
        container: Container::Both,
        ..PackagerConfig::default()
    };
    let mut f = Feed::new(cfg, 60);
    f.run_until(5_000);
    f.video_n = 1200; // 40 s, a keyframe
    f.audio_n = 40_000 * 48 / 1024;
    f.run_until(50_000);
    let video = f.p.track(TrackKind::Video).unwrap();
    assert!(
        video.max_part <= 0.2 + 1.0 / 30.0,
        "part {}",
        video.max_part
    );
    assert!(
        video.max_segment <= 2.0 + 1e-3,
        "segment {}",
        video.max_segment
    );
    for kind in [TrackKind::Video, TrackKind::Audio] {
        let text = media(&f.p, kind, false);
        assert_eq!(check_media(&text), Vec::<String>::new(), "{text}");
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"), "{text}");
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
    }
    let ts = f.p.ts().unwrap();
    assert!(
        ts.max_segment <= 2.0 + 1e-3,
        "TS segment {}",
        ts.max_segment
    );
    let text = playlist::ts_media(&f.p, "").unwrap();
    assert!(text.contains("#EXT-X-TARGETDURATION:2\n"), "{text}");
}

const TRACKS: [TrackKind; 2] = [TrackKind::Video, TrackKind::Audio];

/// Parts of `kind` listed so far (complete segments and the open one).
fn part_count(p: &Packager, kind: TrackKind) -> usize {
    let t = p.track(kind).unwrap();
    t.segments.iter().map(|s| s.parts.len()).sum::<usize>() + t.open.parts.len()
}

#[test]
fn an_audio_part_wakes_blocking_reloads_when_it_closes_and_only_its_own() {
    // Audio parts (a run of AAC frames) close on their own, between the video cuts: the
    // version that parked blocking reloads wait for must change with each of them, or an
    // audio part goes out only with the next video part.
    let mut f = Feed::new(PackagerConfig::default(), 60);
    f.run_until(3_000);
    let mut audio_cuts = 0;
    for _ in 0..600 {
        let (parts, version) = (part_count(&f.p, TrackKind::Audio), f.p.version());
        let video = part_count(&f.p, TrackKind::Video);
        let by_track = |p: &Packager| TRACKS.map(|k| p.track_version(k));
        let before = by_track(&f.p);
        // The next frame (the feed interleaves by time; a video and an audio frame on the
        // same millisecond go in together).
        let v = f.video_n * 1000 / 30;
        let a = (u64::from(f.audio_n) * 1024 * 1000 / 48_000) as u32;
        f.run_until(v.min(a));
        if part_count(&f.p, TrackKind::Audio) > parts && part_count(&f.p, TrackKind::Video) == video
        {
            audio_cuts += 1;
            assert_ne!(
                f.p.version(),
                version,
                "an audio part closed without a version bump"
            );
            let after = by_track(&f.p);
            assert_ne!(after[1], before[1], "the audio track's version");
            // The video rendition's requests sleep through it.
            assert_eq!(after[0], before[0], "the video track's version");
        }
        if part_count(&f.p, TrackKind::Video) > video {
            assert_ne!(
                by_track(&f.p)[0],
                before[0],
                "a video part: the video version"
            );
        }
    }
    assert!(audio_cuts > 10, "only {audio_cuts} audio-only part cuts");
}

/// Representation `id`'s `startNumber` and `S` elements `(t, d, r)` (t as written).
fn dash_s(mpd: &str, id: &str) -> (u64, Vec<(Option<u64>, u64, u64)>) {
    let rep = &mpd[mpd.find(&format!("<Representation id=\"{id}\"")).unwrap()..];
    let rep = &rep[..rep.find("</Representation>").unwrap()];
    let attr = |tag: &str, name: &str| -> Option<u64> {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        tag[at..].split('"').next()?.parse().ok()
    };
    let elements = rep
        .split("<S ")
        .skip(1)
        .map(|tag| {
            let tag = format!(" {}", &tag[..tag.find("/>").unwrap()]);
            (
                attr(&tag, "t"),
                attr(&tag, "d").unwrap(),
                attr(&tag, "r").unwrap_or(0),
            )
        })
        .collect();
    (attr(rep, "startNumber").unwrap(), elements)
}

#[test]
fn dash_timelines_have_no_seams_between_segments() {
    // Audio frames at 48 kHz arrive with millisecond timestamps (21.33 ms apart, so 21 or
    // 22 ms), and a segment's last frame gets its predecessor's duration: the frames' sums
    // leave 1 ms holes or overlaps between segments. DASH forbids an S@t before the
    // previous entry's end and reads one after it as a hole in the media: each entry's d
    // runs to the next segment's start.
    let mut f = Feed::new(PackagerConfig::default(), 60);
    f.run_until(20_500); // the open segment has parts
    let mpd = playlist::dash(&f.p, f.wall0, "").unwrap();
    for (id, kind, ts) in [
        ("video", TrackKind::Video, 90_000.0),
        ("audio", TrackKind::Audio, 48_000.0),
    ] {
        let (_, s) = dash_s(&mpd, id);
        assert!(!s.is_empty(), "{mpd}");
        for w in s.windows(2) {
            let ((t, d, r), (next, _, _)) = (w[0], w[1]);
            if let (Some(t), Some(next)) = (t, next) {
                assert_eq!(t + d * (r + 1), next, "{id}: a seam at {next}\n{mpd}");
            }
        }
        // The segments' own durations agree within a frame.
        let track = f.p.track(kind).unwrap();
        let listed = dash_numbers(&mpd, id);
        assert_eq!(listed.len(), track.segments.len(), "{mpd}");
        for (w, seg) in listed.windows(2).zip(&track.segments) {
            let d = (w[1].1 - w[0].1) as f64 / ts;
            assert!(
                (d - seg.duration).abs() < 0.03,
                "{id}: {d} vs {}",
                seg.duration
            );
        }
        // The last one runs to where the open segment's first part starts.
        assert!(!track.open.parts.is_empty());
        let last_d = s.last().unwrap().1;
        assert_eq!(
            listed.last().unwrap().1 + last_d,
            track.open.start,
            "{id}\n{mpd}"
        );
    }
}
