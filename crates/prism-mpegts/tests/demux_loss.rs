//! Loss, sync loss and garbage: the demuxer counts, skips and keeps producing frames; it
//! never panics and never stalls.

mod demux_common;

use demux_common::*;
use prism_mpegts::demux::{DemuxLimits, Demuxer};
use prism_mpegts::{FlvFrame, FrameKind};

fn packets(data: &[u8]) -> Vec<&[u8]> {
    data.chunks_exact(188).collect()
}

fn monotonic(frames: &[FlvFrame], kind: FrameKind) -> bool {
    let ts: Vec<u32> = frames
        .iter()
        .filter(|f| f.kind == kind)
        .map(|f| f.timestamp)
        .collect();
    ts.windows(2).all(|w| w[0] <= w[1])
}

#[test]
fn two_percent_packet_loss() {
    if !have_ffmpeg() {
        return;
    }
    let data = std::fs::read(avc_aac_short_gop_ts()).unwrap();
    let (clean, _) = demux_all(&data, || 1316);
    let clean_video = clean.iter().filter(|f| f.kind == FrameKind::Video).count();
    for seed in 1..=5u64 {
        let mut rng = Rng::new(seed);
        let mut lossy = Vec::new();
        let mut dropped = 0;
        for p in packets(&data) {
            if rng.below(100) < 2 {
                dropped += 1;
            } else {
                lossy.extend_from_slice(p);
            }
        }
        let (frames, stats) = demux_all(&lossy, || 1316);
        assert!(stats.cc_errors > 0, "seed {seed}: {stats:?}");
        assert!(stats.cc_errors <= dropped, "seed {seed}: {stats:?}");
        assert!(stats.dropped_pes > 0, "seed {seed}: {stats:?}");
        assert_eq!(stats.resyncs, 0, "whole packets lost: sync is never lost");
        let video = frames.iter().filter(|f| f.kind == FrameKind::Video).count();
        assert!(
            video > clean_video / 2,
            "seed {seed}: {video} of {clean_video} {stats:?}"
        );
        assert!(monotonic(&frames, FrameKind::Video) && monotonic(&frames, FrameKind::Audio));
        // Still producing at the end of the stream, not stalled after the first loss.
        let last = frames
            .iter()
            .rev()
            .find(|f| f.kind == FrameKind::Video)
            .unwrap();
        assert!(
            last.timestamp > 5800,
            "seed {seed}: last video at {}",
            last.timestamp
        );
    }
}

#[test]
fn lossy_byte_at_a_time() {
    if !have_ffmpeg() {
        return;
    }
    let data = std::fs::read(avc_aac_ts()).unwrap();
    let mut rng = Rng::new(42);
    let lossy: Vec<u8> = packets(&data)
        .into_iter()
        .filter(|_| rng.below(50) != 0)
        .flatten()
        .copied()
        .collect();
    let (by_datagram, _) = demux_all(&lossy, || 1316);
    let (by_byte, stats) = demux_all(&lossy, || 1);
    assert_eq!(by_datagram, by_byte);
    assert!(stats.cc_errors > 0);
}

#[test]
fn truncated_packets_resync() {
    if !have_ffmpeg() {
        return;
    }
    let data = std::fs::read(avc_aac_ts()).unwrap();
    let mut rng = Rng::new(3);
    // Now and then a datagram arrives cut short: sync is lost mid-stream.
    let mut cut = Vec::new();
    let mut cuts = 0;
    for p in packets(&data) {
        if rng.below(200) == 0 {
            cut.extend_from_slice(&p[..rng.below(187) as usize + 1]);
            cuts += 1;
        } else {
            cut.extend_from_slice(p);
        }
    }
    assert!(cuts > 0);
    let (frames, stats) = demux_all(&cut, || 1316);
    assert!(stats.resyncs > 0 && stats.resyncs <= cuts, "{stats:?}");
    assert!(stats.skipped_bytes > 0);
    let video = frames.iter().filter(|f| f.kind == FrameKind::Video).count();
    assert!(video > 25, "{stats:?}");
    assert!(monotonic(&frames, FrameKind::Video) && monotonic(&frames, FrameKind::Audio));
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng::new(99);
    // Pure noise.
    let noise: Vec<u8> = (0..200_000).map(|_| rng.next_u64() as u8).collect();
    let (frames, _) = demux_all(&noise, || 1000);
    assert!(frames.is_empty());
    // Noise that looks like packets: every PID we might track, random flags and payload.
    for _ in 0..20 {
        let mut ts = TsWriter::default();
        ts.pat(0x1000);
        ts.pmt(0x1000, 0x100, &[(0x1B, 0x100), (0x0F, 0x101)]);
        for _ in 0..2000 {
            let mut p = [0u8; 188];
            p.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
            p[0] = 0x47;
            p[1] &= 0x5F; // no transport error
            p[1] = (p[1] & 0xE0) | [0x00, 0x10, 0x01, 0x01][rng.below(4) as usize];
            p[2] = [0x00, 0x00, 0x00, 0x01][rng.below(4) as usize];
            ts.out.extend_from_slice(&p);
        }
        let _ = demux_all(&ts.out, || 1316);
    }
}

#[test]
fn corrupted_real_stream_never_panics() {
    if !have_ffmpeg() {
        return;
    }
    for path in [avc_aac_ts(), hevc_aac_ts()] {
        let data = std::fs::read(path).unwrap();
        for seed in 1..=20u64 {
            let mut rng = Rng::new(seed);
            let mut bad = data.clone();
            // Flip a few bytes in ~5% of packets, sparing the sync byte.
            for p in bad.chunks_exact_mut(188) {
                if rng.below(20) == 0 {
                    for _ in 0..=rng.below(4) {
                        let at = 1 + rng.below(187) as usize;
                        p[at] = rng.next_u64() as u8;
                    }
                }
            }
            let (frames, _) = demux_all(&bad, || 1316);
            assert!(!frames.is_empty());
        }
    }
}

#[test]
fn oversize_pes_is_dropped_before_growing() {
    let mut ts = TsWriter::default();
    ts.pat(0x1000);
    ts.pmt(0x1000, 0x100, &[(0x1B, 0x100)]);
    for i in 0..10u64 {
        // Frame 5 is 20 kB, over a 10 kB limit; the rest are small.
        let au = avc_access_unit(i % 5 == 0, if i == 5 { 20_000 } else { 500 });
        ts.pes(0x100, 0xE0, 90_000 + i * 3600, None, &au, UNBOUNDED);
    }
    let limits = DemuxLimits {
        max_pes_bytes: 10_000,
        ..DemuxLimits::default()
    };
    let mut demux = Demuxer::new(limits).unwrap();
    demux.push(&ts.out);
    demux.flush();
    let frames: Vec<_> = std::iter::from_fn(|| demux.poll_frame()).collect();
    assert_eq!(demux.stats().oversize_pes, 1);
    assert_eq!(demux.dropped_pes(), 1);
    // Sequence header + 9 frames; the one after the big frame is not lost with it.
    assert_eq!(frames.len(), 10);
    assert!(frames.iter().any(|f| f.timestamp == 240));
    assert!(Demuxer::new(DemuxLimits {
        max_pes_bytes: 10,
        ..DemuxLimits::default()
    })
    .is_err());
}

#[test]
fn cc_gap_drops_only_the_broken_pes() {
    let mut ts = TsWriter::default();
    ts.pat(0x1000);
    ts.pmt(0x1000, 0x100, &[(0x1B, 0x100)]);
    let mut marks = Vec::new();
    for i in 0..6u64 {
        marks.push(ts.out.len());
        ts.pes(
            0x100,
            0xE0,
            90_000 + i * 3600,
            None,
            &avc_access_unit(i == 0, 1000),
            UNBOUNDED,
        );
    }
    // Remove the second packet of frame 2 (of 6 packets each).
    let at = marks[2] + 188;
    let mut data = ts.out.clone();
    data.drain(at..at + 188);
    let (frames, stats) = demux_all(&data, || 188);
    assert_eq!(stats.cc_errors, 1);
    assert_eq!(stats.dropped_pes, 1);
    let ts: Vec<u32> = frames
        .iter()
        .filter(|f| !f.sequence_header)
        .map(|f| f.timestamp)
        .collect();
    assert_eq!(ts, vec![0, 40, 120, 160, 200]);
}

#[test]
fn output_queue_is_bounded() {
    if !have_ffmpeg() {
        return;
    }
    let data = std::fs::read(avc_aac_ts()).unwrap();
    let limits = DemuxLimits {
        max_queued_frames: 10,
        ..DemuxLimits::default()
    };
    let mut demux = Demuxer::new(limits).unwrap();
    // A caller that never drains: the queue stops at the limit and counts the rest.
    demux.push(&data);
    assert!(demux.stats().dropped_frames > 0);
    let queued: Vec<_> = std::iter::from_fn(|| demux.poll_frame()).collect();
    assert_eq!(queued.len(), 10);
    // Draining again resumes.
    demux.push(&data);
    let again: Vec<_> = std::iter::from_fn(|| demux.poll_frame()).collect();
    assert!(!again.is_empty());
}

/// What `buffered_bytes` reports (a memory budget's charge): the PES being reassembled,
/// within `max_pes_bytes`, and nothing more after an oversize PES is dropped.
#[test]
fn buffered_bytes_follow_the_pes_in_reassembly() {
    let mut ts = TsWriter::default();
    ts.pat(0x1000);
    ts.pmt(0x1000, 0x100, &[(0x1B, 0x100)]);
    ts.pes(
        0x100,
        0xE0,
        90_000,
        None,
        &avc_access_unit(true, 50_000),
        UNBOUNDED,
    );
    let limits = DemuxLimits {
        max_pes_bytes: 100_000,
        ..DemuxLimits::default()
    };
    let mut demux = Demuxer::new(limits).unwrap();
    let idle = demux.buffered_bytes();
    assert!(idle < 4096, "{idle}");
    // The video PES is unbounded: it stays in reassembly until the next one starts.
    demux.push(&ts.out);
    let held = demux.buffered_bytes();
    assert!(held >= idle + 50_000, "{held}");
    assert!(held <= 2 * 100_000 + 4096, "{held}");
    // A PES over the limit is dropped before it grows past it.
    let mut big = TsWriter::default();
    big.pes(
        0x100,
        0xE0,
        93_600,
        None,
        &avc_access_unit(false, 500_000),
        UNBOUNDED,
    );
    demux.push(&big.out);
    assert_eq!(demux.stats().oversize_pes, 1, "{:?}", demux.stats());
    assert!(demux.buffered_bytes() <= 2 * 100_000 + 4096);
}
