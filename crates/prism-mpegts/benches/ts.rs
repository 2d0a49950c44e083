//! MPEG-TS micro-benchmarks: muxing FLV-style frames into datagrams (the SRT egress) and
//! demuxing a transport stream back into frames (the SRT ingest), on a synthetic 4-second
//! H.264 + AAC stream at the load tool's 4.7 Mbit/s. The TS input is made by the crate's
//! own muxer during setup, so no fixture files are needed.
//!
//! Run: `cargo bench -p prism-mpegts --bench ts` (add `-- --quick` for a short run).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prism_mpegts::demux::Demuxer;
use prism_mpegts::mux::{next_datagram, Muxer, MuxerConfig, DATAGRAM_SIZE};
use prism_mpegts::{FlvFrame, FrameKind};

const SECONDS: u32 = 4;
const FPS: u32 = 25;
/// A keyframe every 2 s, as the load tool and most live encoders send.
const GOP: u32 = 2 * FPS;
/// AAC-LC, 48 kHz: 1024 samples per frame.
const AAC_FRAMES_PER_S: u32 = 47;
const AUDIO_BITS_PER_S: usize = 128_000;
const TOTAL_BITS_PER_S: usize = 4_700_000;

/// x264 SPS and PPS (High, level 1.3): the demuxer parses the SPS to rebuild the AVC record.
const AVC_SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0D, 0xAC, 0xD9, 0x41, 0x41, 0xFB, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0x20, 0xF1, 0x42, 0x99, 0x60,
];
const AVC_PPS: &[u8] = &[0x68, 0xEB, 0xE3, 0xCB, 0x22, 0xC0];

fn frame(kind: FrameKind, timestamp: u32, payload: Vec<u8>, key: bool, seq: bool) -> FlvFrame {
    FlvFrame {
        kind,
        timestamp,
        payload: Bytes::from(payload),
        keyframe: key,
        sequence_header: seq,
    }
}

/// Filler that never contains a zero byte, so no start code appears once the muxer writes
/// the NAL units in Annex B form (real slices are emulation-prevented the same way).
fn filler(len: usize, seed: usize) -> impl Iterator<Item = u8> {
    (0..len).map(move |i| ((i * 31 + seed * 7) as u8) | 1)
}

/// Sequence headers, then `SECONDS` of 25 fps video (a keyframe 4x an inter frame) and
/// 47 AAC frames/s, interleaved in timestamp order as a publisher sends them.
fn flv_frames() -> Vec<FlvFrame> {
    let mut avcc = vec![
        0x17, 0x00, 0, 0, 0, 1, AVC_SPS[1], AVC_SPS[2], AVC_SPS[3], 0xFF, 0xE1,
    ];
    avcc.extend_from_slice(&(AVC_SPS.len() as u16).to_be_bytes());
    avcc.extend_from_slice(AVC_SPS);
    avcc.push(1);
    avcc.extend_from_slice(&(AVC_PPS.len() as u16).to_be_bytes());
    avcc.extend_from_slice(AVC_PPS);
    // AudioSpecificConfig: AAC-LC, 48 kHz, stereo.
    let asc = vec![0xAF, 0x00, 0x11, 0x90];
    let mut frames = vec![
        frame(FrameKind::Video, 0, avcc, false, true),
        frame(FrameKind::Audio, 0, asc, false, true),
    ];

    let video_bytes = (TOTAL_BITS_PER_S - AUDIO_BITS_PER_S) / 8;
    let inter = video_bytes / (FPS as usize - 1 + 4);
    let audio_raw = AUDIO_BITS_PER_S / 8 / AAC_FRAMES_PER_S as usize;
    let video = (0..SECONDS * FPS).map(|i| {
        let key = i % GOP == 0;
        let len = if key { 4 * inter } else { inter };
        let nal_header = if key { 0x65 } else { 0x41 };
        let mut p = vec![if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
        p.extend_from_slice(&(len as u32 + 1).to_be_bytes());
        p.push(nal_header);
        p.extend(filler(len, i as usize));
        frame(FrameKind::Video, i * 1000 / FPS, p, key, false)
    });
    let audio = (0..SECONDS * AAC_FRAMES_PER_S).map(|i| {
        let mut p = vec![0xAF, 0x01];
        p.extend(filler(audio_raw, i as usize));
        frame(FrameKind::Audio, i * 1024 * 1000 / 48_000, p, false, false)
    });
    let mut media: Vec<FlvFrame> = video.chain(audio).collect();
    // Stable: at equal timestamps video stays before audio.
    media.sort_by_key(|f| f.timestamp);
    frames.extend(media);
    frames
}

/// Muxes `frames` the way the SRT egress does: a flush after every frame.
fn mux_all(frames: &[FlvFrame], out: &mut BytesMut, mut sink: impl FnMut(Bytes)) {
    let mut muxer = Muxer::new(MuxerConfig::default());
    for f in frames {
        muxer.push_frame(f, out);
        while let Some(datagram) = next_datagram(out, true) {
            sink(datagram);
        }
    }
}

fn ts(c: &mut Criterion) {
    let frames = flv_frames();
    let flv_bytes: usize = frames.iter().map(|f| f.payload.len()).sum();
    let mut ts = Vec::new();
    mux_all(&frames, &mut BytesMut::new(), |d| ts.extend_from_slice(&d));

    // The input must demux cleanly, or the benchmark would time error paths.
    let mut check = Demuxer::default();
    let mut demuxed = 0;
    for datagram in ts.chunks(DATAGRAM_SIZE) {
        check.push(datagram);
        while check.poll_frame().is_some() {
            demuxed += 1;
        }
    }
    check.flush();
    while check.poll_frame().is_some() {
        demuxed += 1;
    }
    let stats = check.stats();
    assert_eq!(demuxed, frames.len(), "{stats:?}");
    assert_eq!(
        stats.cc_errors + stats.dropped_pes + stats.malformed_frames,
        0,
        "{stats:?}"
    );

    let mut g = c.benchmark_group("mpegts");

    g.throughput(Throughput::Bytes(flv_bytes as u64));
    g.bench_function("mux_4s_4.7Mbps", |b| {
        let mut out = BytesMut::new();
        b.iter(|| mux_all(&frames, &mut out, |d| drop(black_box(d))))
    });

    g.throughput(Throughput::Bytes(ts.len() as u64));
    g.bench_function("demux_4s_4.7Mbps", |b| {
        b.iter(|| {
            // A fresh demuxer per pass: replaying the stream into one would count the wrap
            // back to the start as loss and a timestamp discontinuity.
            let mut demux = Demuxer::default();
            // One SRT datagram (7 packets) per push, as the SRT ingest receives them.
            for datagram in ts.chunks(DATAGRAM_SIZE) {
                demux.push(datagram);
                while let Some(f) = demux.poll_frame() {
                    black_box(f);
                }
            }
            demux.flush();
            while let Some(f) = demux.poll_frame() {
                black_box(f);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, ts);
criterion_main!(benches);
