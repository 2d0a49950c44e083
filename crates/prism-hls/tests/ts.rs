//! MPEG-TS segments (`container` "ts" or "both") in virtual time: synthetic H.264 + AAC
//! frames as an RTMP encoder sends them, the TS read back packet by packet.

use bytes::Bytes;
use prism_hls::check::{check_media, check_ts_media, parse_media};
use prism_hls::playlist::{self, MediaOptions};
use prism_hls::request::{self, Readiness};
use prism_hls::{Container, Packager, PackagerConfig, TrackKind};
use prism_media::MediaKind;
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

fn opus_config() -> Bytes {
    let mut p = vec![0x90];
    p.extend_from_slice(b"OpusOpusHead");
    p.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0]);
    Bytes::from(p)
}

fn opus_frame() -> Bytes {
    let mut p = vec![0x91];
    p.extend_from_slice(b"Opus");
    p.extend_from_slice(&[0xFC, 0xFF, 0xFE]);
    Bytes::from(p)
}

/// Hub time of the `n`th AAC frame (1024 samples at 48 kHz).
fn audio_ms(n: u32) -> u32 {
    (u64::from(n) * 1024 * 1000 / 48_000) as u32
}

/// 30 fps video (a keyframe every `gop` frames) and 48 kHz AAC; audio is sent `lead` ms
/// ahead of the video (encoders interleave loosely), the clock moves with the media.
struct Feed {
    p: Packager,
    t0: Instant,
    wall0: SystemTime,
    video_n: u32,
    audio_n: u32,
    gop: u32,
    lead: u32,
    video: bool,
    opus: bool,
}

impl Feed {
    fn new(container: Container, gop: u32, lead: u32) -> Feed {
        let cfg = PackagerConfig {
            container,
            ..PackagerConfig::default()
        };
        Feed::with(cfg, gop, lead, true, false)
    }

    fn with(cfg: PackagerConfig, gop: u32, lead: u32, video: bool, opus: bool) -> Feed {
        let mut p = Packager::new(cfg);
        let (t0, wall0) = (Instant::now(), SystemTime::now());
        if video {
            p.push(MediaKind::Video, 0, &avc_config(), t0, wall0);
        }
        let audio = if opus { opus_config() } else { aac_config() };
        p.push(MediaKind::Audio, 0, &audio, t0, wall0);
        Feed {
            p,
            t0,
            wall0,
            video_n: 0,
            audio_n: 0,
            gop,
            lead,
            video,
            opus,
        }
    }

    fn run_until(&mut self, ms: u32) {
        loop {
            let v = if self.video {
                self.video_n * 1000 / 30
            } else {
                u32::MAX
            };
            let a = audio_ms(self.audio_n);
            if v.min(a) > ms {
                return;
            }
            let (kind, ts, payload) = if v <= a.saturating_sub(self.lead) {
                self.video_n += 1;
                let key = (self.video_n - 1) % self.gop == 0;
                (MediaKind::Video, v, avc_frame(key, 2000))
            } else {
                self.audio_n += 1;
                let frame = if self.opus { opus_frame() } else { aac_frame() };
                (MediaKind::Audio, a, frame)
            };
            let d = Duration::from_millis(u64::from(ts));
            self.p.push(kind, ts, &payload, self.t0 + d, self.wall0 + d);
        }
    }
}

/// One TS packet, as far as these tests read it.
#[derive(Debug)]
struct Packet {
    pid: u16,
    pusi: bool,
    cc: u8,
    has_payload: bool,
    random_access: bool,
    /// PTS (90 kHz) of a PES starting in this packet.
    pts: Option<u64>,
}

fn packets(ts: &[u8]) -> Vec<Packet> {
    assert_eq!(ts.len() % 188, 0, "whole packets");
    ts.chunks(188)
        .map(|p| {
            assert_eq!(p[0], 0x47, "sync byte");
            let afc = (p[3] >> 4) & 3;
            let mut at = 4;
            let mut random_access = false;
            if afc & 2 != 0 {
                let len = usize::from(p[4]);
                random_access = len > 0 && p[5] & 0x40 != 0;
                at += 1 + len;
            }
            let pusi = p[1] & 0x40 != 0;
            let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
            let pes = &p[at..];
            let pts =
                (pusi && pid != 0 && pid != 0x1000 && pes.starts_with(&[0, 0, 1])).then(|| {
                    let b = &pes[9..14];
                    (u64::from(b[0] >> 1) & 7) << 30
                        | u64::from(b[1]) << 22
                        | u64::from(b[2] >> 1) << 15
                        | u64::from(b[3]) << 7
                        | u64::from(b[4] >> 1)
                });
            Packet {
                pid,
                pusi,
                cc: p[3] & 0x0F,
                has_payload: afc & 1 != 0,
                random_access,
                pts,
            }
        })
        .collect()
}

const VIDEO_PID: u16 = 0x100;
const AUDIO_PID: u16 = 0x101;
/// The muxer's timestamp offset (ms), so PTS = (hub ms + 1000) × 90.
const OFFSET_MS: u64 = 1000;

#[test]
fn ts_segments_are_the_cmaf_segments_twins() {
    // Audio runs 50 ms ahead: frames stamped after a cut arrive before the keyframe that
    // makes it, and must still go to the next segment, as they do in CMAF.
    let mut f = Feed::new(Container::Both, 30, 50);
    f.run_until(20_000);
    let p = &f.p;
    let ts = p.ts().expect("TS on");
    let video = p.track(TrackKind::Video).unwrap();
    assert_eq!(ts.segments.len(), 6, "window_segments");
    // Durations in microseconds: CMAF sums sample durations, TS subtracts cut times.
    let us = |d: f64| (d * 1e6).round() as u64;
    let cmaf: Vec<(u64, u64, bool)> = video
        .segments
        .iter()
        .map(|s| (s.msn, us(s.duration), s.discontinuity))
        .collect();
    let twins: Vec<(u64, u64, bool)> = ts
        .segments
        .iter()
        .map(|s| (s.msn, us(s.duration), s.discontinuity))
        .collect();
    assert_eq!(cmaf, twins, "same numbers, durations, discontinuities");

    let all: Vec<u8> = ts.segments.iter().flat_map(|s| s.data.to_vec()).collect();
    let mut cc: [Option<u8>; 0x2000] = [None; 0x2000];
    for seg in &ts.segments {
        let pk = packets(&seg.data);
        // PAT, PMT, then the keyframe (random access) opens every segment.
        assert_eq!((pk[0].pid, pk[1].pid), (0, 0x1000), "segment {}", seg.msn);
        assert!(pk[2].pid == VIDEO_PID && pk[2].pusi && pk[2].random_access);
        let start_ms = (pk[2].pts.unwrap() / 90 - OFFSET_MS) as f64;
        let end_ms = start_ms + seg.duration * 1000.0;
        // Every frame of the segment lies in its time; audio and video both there.
        let mut audio = 0;
        for q in &pk {
            if let Some(pts) = q.pts {
                let ms = (pts / 90 - OFFSET_MS) as f64;
                assert!(
                    (start_ms..end_ms).contains(&ms),
                    "segment {} [{start_ms}, {end_ms}) has a frame at {ms}",
                    seg.msn
                );
                audio += usize::from(q.pid == AUDIO_PID);
            }
        }
        let expected = (0..2000)
            .filter(|&n| (start_ms..end_ms).contains(&f64::from(audio_ms(n))))
            .count();
        assert_eq!(
            audio, expected,
            "segment {}: every audio frame of its time",
            seg.msn
        );
    }
    // Continuity counters run on from one segment to the next.
    for q in packets(&all).iter().filter(|q| q.has_payload) {
        if let Some(prev) = cc[usize::from(q.pid)] {
            assert_eq!(q.cc, (prev + 1) & 0x0F, "pid {:#x}", q.pid);
        }
        cc[usize::from(q.pid)] = Some(q.cc);
    }

    let text = playlist::ts_media(p, "").unwrap();
    assert_eq!(check_ts_media(&text), Vec::<String>::new(), "{text}");
    let listed = parse_media(&text).unwrap();
    let fmp4 =
        parse_media(&playlist::media(p, TrackKind::Video, MediaOptions::default(), "").unwrap())
            .unwrap();
    let pairs = |l: &prism_hls::check::MediaPlaylist| -> Vec<(u64, String)> {
        l.segments
            .iter()
            .map(|s| (s.msn, format!("{:.3}", s.duration)))
            .collect()
    };
    assert_eq!(pairs(&listed), pairs(&fmp4));
    assert!(text.contains("#EXT-X-VERSION:3") && !text.contains("#EXT-X-PART"));
    assert_eq!(
        text.matches("#EXT-X-PROGRAM-DATE-TIME:").count(),
        listed.segments.len()
    );
    // "both": the multivariant playlist lists the fMP4 variant; ts.m3u8 is beside it.
    let index = playlist::multivariant(p, "").unwrap();
    assert!(
        index.contains("video.m3u8") && !index.contains("ts.m3u8"),
        "{index}"
    );
}

#[test]
fn ts_only_does_no_cmaf_work_and_serves_no_cmaf() {
    let mut f = Feed::new(Container::Ts, 60, 0);
    f.run_until(20_000);
    let p = &f.p;
    let ts = p.ts().unwrap();
    assert_eq!(ts.segments.len(), 6);
    assert!(ts.segments.iter().all(|s| (s.duration - 2.0).abs() < 0.001));
    for t in p.tracks() {
        assert!(
            t.segments.iter().all(|s| s.parts.is_empty()),
            "no CMAF fragments"
        );
    }
    assert_eq!(p.bytes(), ts.bytes(), "only TS held");
    let index = playlist::multivariant(p, "token=t").unwrap();
    assert!(
        index.contains("#EXT-X-STREAM-INF:") && index.contains("\nts.m3u8?token=t\n"),
        "{index}"
    );
    assert!(
        index.contains("avc1.") && index.contains("mp4a.40.2"),
        "{index}"
    );
    assert!(!index.contains("video.m3u8"), "{index}");
    let ready = |path: &str| {
        let (path, query) = path
            .split_once('?')
            .map_or((path, None), |(a, b)| (a, Some(b)));
        request::readiness(p, &request::parse(path, query).unwrap())
    };
    let first = ts.segments.front().unwrap().msn;
    let open = p.open_msn();
    for path in [
        "/l/k/video.m3u8",
        "/l/k/manifest.mpd",
        "/l/k/video/init1.mp4",
        &format!("/l/k/video/{first}.m4s"),
        &format!("/l/k/video/{open}.0.m4s"),
    ] {
        assert_eq!(ready(path), Readiness::NotFound, "{path}");
    }
    assert_eq!(ready("/l/k/ts.m3u8"), Readiness::Ready);
    assert_eq!(ready(&format!("/l/k/ts/{first}.ts")), Readiness::Ready);
    assert_eq!(ready(&format!("/l/k/ts/{open}.ts")), Readiness::Wait);
    assert_eq!(
        ready(&format!("/l/k/ts/{}.ts", open + 5)),
        Readiness::NotFound
    );
    // Blocking reload by segment: waits for the open one, refuses far ahead.
    assert_eq!(
        ready(&format!("/l/k/ts.m3u8?_HLS_msn={}", open - 1)),
        Readiness::Ready
    );
    assert_eq!(
        ready(&format!("/l/k/ts.m3u8?_HLS_msn={open}")),
        Readiness::Wait
    );
    assert_eq!(
        ready(&format!("/l/k/ts.m3u8?_HLS_msn={}", open + 3)),
        Readiness::TooFarAhead
    );
}

#[test]
fn fmp4_only_has_no_ts() {
    let mut f = Feed::new(Container::Fmp4, 60, 0);
    f.run_until(5_000);
    assert!(f.p.ts().is_none());
    assert!(playlist::ts_media(&f.p, "").is_none());
    let r = request::parse("/l/k/ts.m3u8", None).unwrap();
    assert_eq!(request::readiness(&f.p, &r), Readiness::NotFound);
}

#[test]
fn eviction_follows_the_window_and_the_grace() {
    let cfg = PackagerConfig {
        container: Container::Both,
        window_segments: 3,
        grace: Duration::from_secs(5),
        ..PackagerConfig::default()
    };
    let mut f = Feed::with(cfg, 60, 0, true, false);
    f.run_until(30_000);
    let ts = f.p.ts().unwrap();
    let video = f.p.track(TrackKind::Video).unwrap();
    assert_eq!(ts.segments.len(), 3);
    assert_eq!(
        ts.segments.front().map(|s| s.msn),
        video.segments.front().map(|s| s.msn)
    );
    let first = ts.segments.front().unwrap().msn;
    // Just left the playlist: still fetchable during the grace, gone after it.
    assert!(ts.segment(first - 1).is_some());
    let held = ts.bytes();
    let listed: u64 = ts.segments.iter().map(|s| s.data.len() as u64).sum();
    assert!(
        held >= listed && held < listed + 200_000,
        "{held} vs {listed}"
    );
    f.p.handle_timeout(f.t0 + Duration::from_secs(36));
    let ts = f.p.ts().unwrap();
    assert!(ts.segment(first - 1).is_none(), "gone after the grace");
    assert!(ts.segment(first).is_some());
}

#[test]
fn end_lists_the_last_segment_with_endlist() {
    let mut f = Feed::new(Container::Both, 30, 0);
    f.run_until(4_500);
    f.p.end(f.t0 + Duration::from_secs(5));
    let text = playlist::ts_media(&f.p, "").unwrap();
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    assert_eq!(check_ts_media(&text), Vec::<String>::new());
    let ts = f.p.ts().unwrap();
    let video = f.p.track(TrackKind::Video).unwrap();
    let last_ts = ts.segments.back().unwrap();
    let last_cmaf = video.segments.back().unwrap();
    assert_eq!(last_ts.msn, last_cmaf.msn);
    assert!(
        (last_ts.duration - last_cmaf.duration).abs() < 0.034,
        "{} vs {}",
        last_ts.duration,
        last_cmaf.duration
    );
}

#[test]
fn audio_only_segments_start_with_pat_and_pmt() {
    let cfg = PackagerConfig {
        container: Container::Ts,
        ..PackagerConfig::default()
    };
    let mut f = Feed::with(cfg, 1, 0, false, false);
    f.run_until(12_000);
    let ts = f.p.ts().unwrap();
    assert!(ts.segments.len() >= 4);
    for seg in &ts.segments {
        let pk = packets(&seg.data);
        assert_eq!((pk[0].pid, pk[1].pid, pk[2].pid), (0, 0x1000, AUDIO_PID));
        assert!((seg.duration - 2.0).abs() < 0.05, "{}", seg.duration);
    }
    let index = playlist::multivariant(&f.p, "").unwrap();
    assert!(
        index.contains("mp4a.40.2") && !index.contains("avc1"),
        "{index}"
    );
}

#[test]
fn a_codec_ts_cannot_carry_leaves_fmp4_alone() {
    let cfg = PackagerConfig {
        container: Container::Both,
        ..PackagerConfig::default()
    };
    let mut f = Feed::with(cfg, 30, 0, true, true);
    f.run_until(8_000);
    let p = &f.p;
    let ts = p.ts().unwrap();
    let why = ts.unsupported().expect("Opus is not carried in TS");
    assert!(why.contains("Opus"), "{why}");
    assert!(ts.segments.is_empty() && ts.bytes() == 0);
    assert!(playlist::ts_media(p, "").is_none());
    let r = request::parse("/l/k/ts.m3u8", None).unwrap();
    assert_eq!(
        request::readiness(p, &r),
        Readiness::Ready,
        "answered at once (with the reason)"
    );
    // CMAF goes on: Opus audio and H.264 video.
    let audio = playlist::media(p, TrackKind::Audio, MediaOptions::default(), "").unwrap();
    assert!(check_media(&audio).is_empty());
    assert!(p.track(TrackKind::Audio).unwrap().segments.len() >= 3);
}

#[test]
fn ts_stops_while_a_codec_it_cannot_carry_lasts_and_resumes_after() {
    let mut f = Feed::new(Container::Both, 30, 0);
    f.run_until(6_000);
    let push_config = |f: &mut Feed, payload: Bytes| {
        let ms = audio_ms(f.audio_n);
        let d = Duration::from_millis(u64::from(ms));
        f.p.push(MediaKind::Audio, ms, &payload, f.t0 + d, f.wall0 + d);
    };
    assert!(f.p.ts().unwrap().segments.len() >= 2);

    // The publisher switches to Opus: from the next keyframe on, no TS.
    push_config(&mut f, opus_config());
    f.opus = true;
    f.run_until(9_000);
    let ts = f.p.ts().unwrap();
    assert!(ts.unsupported().is_some_and(|w| w.contains("Opus")));
    assert!(ts.segments.is_empty() && ts.segment(2).is_none());
    assert!(playlist::ts_media(&f.p, "").is_none());

    // Back to AAC: TS resumes after a discontinuity, numbered as the CMAF segments.
    push_config(&mut f, aac_config());
    f.opus = false;
    f.run_until(16_000);
    let p = &f.p;
    let ts = p.ts().unwrap();
    assert!(ts.unsupported().is_none());
    assert!(ts.segments.len() >= 3, "{}", ts.segments.len());
    let first = ts.segments.front().unwrap();
    assert!(first.discontinuity, "resumed after a discontinuity");
    assert!(ts.segments.iter().skip(1).all(|s| !s.discontinuity));
    let video = p.track(TrackKind::Video).unwrap();
    for s in &ts.segments {
        let v = video.segment(s.msn).expect("the CMAF twin");
        assert!((v.duration - s.duration).abs() < 1e-6);
        assert_eq!(v.disc_seq, s.disc_seq);
        let pk = packets(&s.data);
        assert_eq!((pk[0].pid, pk[1].pid, pk[2].pid), (0, 0x1000, VIDEO_PID));
        assert!(pk.iter().any(|q| q.pid == AUDIO_PID && q.pusi), "AAC again");
    }
    let text = playlist::ts_media(p, "").unwrap();
    assert_eq!(check_ts_media(&text), Vec::<String>::new(), "{text}");
    let listed = parse_media(&text).unwrap();
    assert_eq!(listed.media_sequence, first.msn);
    assert!(text.contains(&format!("#EXT-X-DISCONTINUITY-SEQUENCE:{}", first.disc_seq)));
}

#[test]
fn a_resumed_window_continues_its_ts_twin_after_a_discontinuity() {
    // A publisher ends, another one of the same name comes back (timestamps from 0 again):
    // the TS twin goes on with the CMAF tracks, a discontinuity first, numbered alike.
    let mut f = Feed::new(Container::Both, 30, 0);
    f.run_until(8_000);
    let end = f.t0 + Duration::from_millis(8_100);
    f.p.end(end);
    assert!(f.p.resume());
    f.video_n = 0;
    f.audio_n = 0;
    let (t0, wall0) = (end, f.wall0 + Duration::from_millis(8_100));
    f.t0 = t0;
    f.wall0 = wall0;
    f.p.push(MediaKind::Video, 0, &avc_config(), t0, wall0);
    f.p.push(MediaKind::Audio, 0, &aac_config(), t0, wall0);
    f.run_until(9_000);

    let p = &f.p;
    let us = |d: f64| (d * 1e6).round() as u64;
    let video = p.track(TrackKind::Video).unwrap();
    let cmaf: Vec<(u64, u64, bool)> = video
        .segments
        .iter()
        .map(|s| (s.msn, us(s.duration), s.discontinuity))
        .collect();
    let ts = p.ts().expect("TS on");
    let twins: Vec<(u64, u64, bool)> = ts
        .segments
        .iter()
        .map(|s| (s.msn, us(s.duration), s.discontinuity))
        .collect();
    assert_eq!(cmaf, twins, "same numbers, durations, discontinuities");
    assert_eq!(
        twins.iter().filter(|s| s.2).count(),
        1,
        "one discontinuity: {twins:?}"
    );
    let text = playlist::ts_media(p, "").unwrap();
    assert_eq!(check_ts_media(&text), Vec::<String>::new(), "{text}");
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
    // The resumed segment starts with PAT, PMT and the new publisher's keyframe.
    let first = ts.segments.iter().find(|s| s.discontinuity).unwrap();
    let pk = packets(&first.data);
    assert_eq!((pk[0].pid, pk[1].pid), (0, 0x1000));
    assert!(pk[2].pid == VIDEO_PID && pk[2].random_access);
}
