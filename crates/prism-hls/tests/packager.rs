//! The packager in virtual time: synthetic H.264 + AAC frames as an RTMP encoder sends them.

use bytes::Bytes;
use prism_hls::check::{check_delta, check_media, parse_media};
use prism_hls::playlist::{self, MediaOptions};
use prism_hls::request::{self, Readiness};
use prism_hls::{Packager, PackagerConfig, TrackKind};
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
}
