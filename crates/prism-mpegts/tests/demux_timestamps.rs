//! Timestamps: the 33-bit wrap, discontinuities (re-based, monotonic, A/V kept together),
//! and the shared zero.

mod demux_common;

use demux_common::*;
use prism_mpegts::{FlvFrame, FrameKind};

const WRAP: u64 = 1 << 33;
const VIDEO: u16 = 0x100;
const AUDIO: u16 = 0x101;

/// `seconds` of 25 fps video and 48 kHz AAC starting at raw PTS `start`; `jump(t)` gives
/// the raw offset applied to a frame at `t` ticks (to simulate breaks), and `disc_at` the
/// time from which the first PES of each stream carries the discontinuity indicator.
fn stream(start: u64, seconds: u64, jump: impl Fn(u64) -> u64, disc_at: Option<u64>) -> Vec<u8> {
    let mut ts = TsWriter::default();
    ts.pat(0x1000);
    ts.pmt(0x1000, VIDEO, &[(0x1B, VIDEO), (0x0F, AUDIO)]);
    let audio_step = 1920; // 1024 samples at 48 kHz in 90 kHz ticks
    let mut audio_t = 0u64;
    let (mut vdisc, mut adisc) = (disc_at, disc_at);
    for i in 0..seconds * 25 {
        let t = i * 3600;
        let raw = |t: u64| (start + t + jump(t)) % WRAP;
        let flag = |d: &mut Option<u64>, t: u64| match *d {
            Some(at) if t >= at => {
                *d = None;
                true
            }
            _ => false,
        };
        let key = i % 25 == 0;
        let df = flag(&mut vdisc, t);
        ts.pes(
            VIDEO,
            0xE0,
            raw(t),
            Some(raw(t)),
            &avc_access_unit(key, 300),
            PesOpts {
                bounded: false,
                discontinuity: df,
            },
        );
        // Audio up to this video frame, two ADTS frames per PES.
        while audio_t <= t {
            let mut pes = adts_frame(100);
            pes.extend_from_slice(&adts_frame(90));
            let df = flag(&mut adisc, audio_t);
            ts.pes(
                AUDIO,
                0xC0,
                raw(audio_t),
                None,
                &pes,
                PesOpts {
                    bounded: true,
                    discontinuity: df,
                },
            );
            audio_t += 2 * audio_step;
        }
    }
    ts.out
}

fn media(frames: &[FlvFrame], kind: FrameKind) -> Vec<u32> {
    frames
        .iter()
        .filter(|f| f.kind == kind && !f.sequence_header)
        .map(|f| f.timestamp)
        .collect()
}

fn assert_monotonic(ts: &[u32]) {
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
}

#[test]
fn pts_wrap_is_seamless() {
    // Starts 1 s before the 33-bit wrap, runs 3 s.
    let data = stream(WRAP - 90_000, 3, |_| 0, None);
    let (frames, stats) = demux_all(&data, || 1316);
    assert_eq!(stats.discontinuities, 0);
    let video = media(&frames, FrameKind::Video);
    let want: Vec<u32> = (0..75).map(|i| i * 40).collect();
    assert_eq!(video, want);
    let audio = media(&frames, FrameKind::Audio);
    // Audio PES every 3840 ticks up to the last video frame (74 * 3600), two frames each.
    assert_eq!(audio.len(), 2 * (74 * 3600 / 3840 + 1));
    // 1024 samples at 48 kHz: 21.33 ms apart, floor-mapped from exact 90 kHz times.
    for (n, &t) in audio.iter().enumerate() {
        assert_eq!(t, (n as u64 * 1920 / 90) as u32);
    }
}

#[test]
fn ffmpeg_stream_across_the_wrap() {
    if !have_ffmpeg() {
        return;
    }
    // ffmpeg's muxer writes PTS modulo 2^33: this one wraps about 0.8 s in.
    let ts = ffmpeg_fixture(
        "wrap.ts",
        "-f lavfi -i testsrc2=size=160x120:rate=25 -f lavfi -i sine=sample_rate=48000 -c:v libx264 -g 25 -c:a aac -t 3 -output_ts_offset 95441.5 -f mpegts",
    );
    let data = std::fs::read(&ts).unwrap();
    let (frames, stats) = demux_all(&data, || 1316);
    assert_eq!(stats.discontinuities, 0);
    let video = media(&frames, FrameKind::Video);
    let audio = media(&frames, FrameKind::Audio);
    assert_eq!(video.len(), probe_frame_count(&ts, "v:0"));
    assert_monotonic(&video);
    assert_monotonic(&audio);
    assert!(video[0] < 100);
    assert!(video.windows(2).all(|w| w[1] - w[0] == 40), "{video:?}");
    assert!(video.last().unwrap().abs_diff(*audio.last().unwrap()) < 200);
}

#[test]
fn backward_jump_is_rebased_for_both_streams() {
    // At 1 s the source clock jumps back an hour (an encoder restart), no indicator.
    let hour = 3600 * 90_000;
    let data = stream(
        10 * hour,
        3,
        |t| if t >= 90_000 { WRAP - hour } else { 0 },
        None,
    );
    let (frames, stats) = demux_all(&data, || 1316);
    assert_eq!(
        stats.discontinuities, 1,
        "one re-base, shared by audio and video"
    );
    let video = media(&frames, FrameKind::Video);
    let audio = media(&frames, FrameKind::Audio);
    assert_monotonic(&video);
    assert_monotonic(&audio);
    assert_eq!(video.len(), 75);
    // No gap and no pile-up: frames stay about 40 ms apart across the break.
    assert!(video.windows(2).all(|w| w[1] - w[0] <= 80), "{video:?}");
    assert!(*video.last().unwrap() < 3100);
    // A/V stay together after the break.
    assert!(video.last().unwrap().abs_diff(*audio.last().unwrap()) < 100);
}

#[test]
fn forward_jump_over_ten_seconds_is_rebased() {
    let data = stream(
        900_000,
        3,
        |t| if t >= 90_000 { 60 * 90_000 } else { 0 },
        None,
    );
    let (frames, stats) = demux_all(&data, || 1316);
    assert_eq!(stats.discontinuities, 1);
    let video = media(&frames, FrameKind::Video);
    assert!(*video.last().unwrap() < 3100, "{video:?}");
    assert_monotonic(&video);
    assert_monotonic(&media(&frames, FrameKind::Audio));
}

#[test]
fn forward_gap_under_ten_seconds_is_kept() {
    // A 5 s gap is real time passing (say, a stalled encoder), not a broken clock.
    let data = stream(
        900_000,
        2,
        |t| if t >= 90_000 { 5 * 90_000 } else { 0 },
        None,
    );
    let (frames, stats) = demux_all(&data, || 1316);
    assert_eq!(stats.discontinuities, 0);
    let video = media(&frames, FrameKind::Video);
    assert_eq!(video[25] - video[24], 5040);
}

#[test]
fn discontinuity_indicator_rebases_a_small_backward_step() {
    // A 500 ms step back is within the tolerance, but flagged: re-based.
    let data = stream(
        900_000,
        2,
        |t| if t >= 90_000 { WRAP - 45_000 } else { 0 },
        Some(90_000),
    );
    let (frames, stats) = demux_all(&data, || 1316);
    assert_eq!(stats.discontinuities, 1);
    let video = media(&frames, FrameKind::Video);
    assert_monotonic(&video);
    assert!(video.windows(2).all(|w| w[1] - w[0] <= 80), "{video:?}");
    assert_monotonic(&media(&frames, FrameKind::Audio));
}

#[test]
fn sequence_header_again_when_sps_changes() {
    let mut ts = TsWriter::default();
    ts.pat(0x1000);
    ts.pmt(0x1000, VIDEO, &[(0x1B, VIDEO)]);
    for i in 0..4u64 {
        let mut au = avc_access_unit(true, 100);
        if i >= 2 {
            // Same SPS id, level 1.3 -> 3.0: a new configuration.
            au[10 + 3] = 0x1E;
        }
        ts.pes(VIDEO, 0xE0, 90_000 + i * 3600, None, &au, UNBOUNDED);
    }
    let (frames, _) = demux_all(&ts.out, || 188);
    let seq: Vec<&FlvFrame> = frames.iter().filter(|f| f.sequence_header).collect();
    assert_eq!(seq.len(), 2);
    assert_eq!(seq[0].payload[5 + 3], 0x0D);
    assert_eq!(seq[1].payload[5 + 3], 0x1E);
    assert_eq!(seq[1].timestamp, 80);
    let kinds: Vec<bool> = frames.iter().map(|f| f.sequence_header).collect();
    assert_eq!(kinds, vec![true, false, false, true, false, false]);
}

#[test]
fn adts_frame_straddling_two_pes() {
    let mut ts = TsWriter::default();
    ts.pat(0x1000);
    ts.pmt(0x1000, AUDIO, &[(0x0F, AUDIO)]);
    let frames: Vec<Vec<u8>> = (0..6).map(|i| adts_frame(50 + i)).collect();
    let all: Vec<u8> = frames.concat();
    // PES 1: frames 0, 1 and half of 2; PES 2: the rest of 2, then 3..6 (PTS of frame 3).
    let cut = frames[0].len() + frames[1].len() + 20;
    ts.pes(AUDIO, 0xC0, 90_000, None, &all[..cut], BOUNDED);
    ts.pes(AUDIO, 0xC0, 90_000 + 3 * 1920, None, &all[cut..], BOUNDED);
    let (out, stats) = demux_all(&ts.out, || 188);
    assert_eq!(stats.malformed_frames, 0);
    let audio: Vec<&FlvFrame> = out.iter().filter(|f| !f.sequence_header).collect();
    assert_eq!(audio.len(), 6);
    for (i, f) in audio.iter().enumerate() {
        assert_eq!(f.payload.len(), 2 + 50 + i, "ADTS header stripped");
        assert_eq!(f.timestamp, (i as u64 * 1920 / 90) as u32);
    }
    assert_eq!(&out[0].payload[..], &[0xAF, 0x00, 0x11, 0x90]);
}
