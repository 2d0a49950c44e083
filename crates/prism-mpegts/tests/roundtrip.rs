//! TS → FLV → TS: an ffmpeg-made H.264 (with B-frames) + AAC transport stream goes through
//! the demuxer into FLV frames and back through the muxer into a transport stream (taken
//! off as SRT datagrams). ffprobe finds the same codecs and frame counts as in the source,
//! ffmpeg decodes it without a word, and the timestamps are the source's plus one constant
//! offset (the muxer's), within the millisecond FLV timestamps can carry. The intermediate
//! frames, written as FLV, decode cleanly too.

mod demux_common;
mod mux_common;

use std::io::Write;

use bytes::BytesMut;
use demux_common::{probe_packets, ProbePacket};
use prism_mpegts::mux::{next_datagram, Muxer, MuxerConfig, DATAGRAM_SIZE, TS_PACKET_SIZE};
use prism_mpegts::{FlvFrame, FrameKind};

/// 90 kHz ticks in a millisecond.
const TICKS_PER_MS: i64 = 90;
/// How far a round-tripped timestamp may be off: the millisecond FLV timestamps carry.
const TOLERANCE: i64 = TICKS_PER_MS;

/// H.264 (x264, GOP 25, two B-frames) + AAC-LC 44.1 kHz stereo, 2 s, in MPEG-TS.
fn source_ts() -> std::path::PathBuf {
    demux_common::ffmpeg_fixture(
        "avc_aac_bf2.ts",
        "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 -c:v libx264 -g 25 -bf 2 -preset veryfast -c:a aac -ac 2 -t 2 -f mpegts",
    )
}

/// Muxes `frames` with the default config into `path`, one datagram (7 packets, or fewer
/// for the flush after each frame) per write, as the SRT egress sends them.
fn mux_to_file(frames: &[FlvFrame], path: &std::path::Path) -> prism_mpegts::mux::MuxStats {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut muxer = Muxer::new(MuxerConfig::default());
    let mut out = BytesMut::new();
    let mut full = 0;
    for frame in frames {
        muxer.push_frame(frame, &mut out);
        while let Some(datagram) = next_datagram(&mut out, true) {
            assert!(!datagram.is_empty() && datagram.len() <= DATAGRAM_SIZE);
            assert_eq!(datagram.len() % TS_PACKET_SIZE, 0, "whole packets");
            full += usize::from(datagram.len() == DATAGRAM_SIZE);
            file.write_all(&datagram).unwrap();
        }
    }
    assert!(out.is_empty(), "nothing left behind");
    file.flush().unwrap();
    assert!(full > 0, "keyframes fill whole datagrams");
    muxer.stats().clone()
}

/// Asserts `out` is `src` shifted by `offset` ticks, within a millisecond, packet by packet.
#[track_caller]
fn assert_shifted(what: &str, src: &[ProbePacket], out: &[ProbePacket], offset: i64) {
    assert_eq!(src.len(), out.len(), "{what}: packet count");
    for (i, (s, o)) in src.iter().zip(out).enumerate() {
        for (field, s, o) in [("pts", s.pts, o.pts), ("dts", s.dts, o.dts)] {
            let (s, o) = (s.unwrap(), o.unwrap());
            assert!(
                (o - s - offset).abs() <= TOLERANCE,
                "{what} packet {i}: {field} {o} is not source {s} + {offset} (off by {})",
                o - s - offset
            );
        }
    }
}

#[test]
fn ts_to_flv_to_ts_keeps_frames_and_timestamps() {
    if !mux_common::have_ffmpeg(&["libx264", "aac"]) {
        return;
    }
    let src = source_ts();

    // TS → FLV frames, pushed in datagram-sized slices as SRT delivers them.
    let (frames, stats) = demux_common::demux_all(&std::fs::read(&src).unwrap(), || DATAGRAM_SIZE);
    assert_eq!(stats.cc_errors, 0, "{stats:?}");
    assert_eq!(stats.resyncs, 0, "{stats:?}");
    assert_eq!(stats.dropped_pes, 0, "{stats:?}");
    assert_eq!(stats.malformed_frames, 0, "{stats:?}");
    assert_eq!(stats.frames_before_keyframe, 0, "{stats:?}");
    let headers = frames.iter().filter(|f| f.sequence_header).count();
    assert_eq!(headers, 2, "one AVC and one AAC sequence header");

    // The source, as ffprobe sees it.
    let expected = mux_common::frame_counts(&src);
    assert_eq!(expected.len(), 2, "{expected:?}");
    assert_eq!(expected[0].0, "h264");
    assert_eq!(expected[1].0, "aac");
    assert_eq!(expected[0].1, 50, "2 s at 25 fps");
    let count = |kind| {
        frames
            .iter()
            .filter(|f| f.kind == kind && !f.sequence_header)
            .count() as u64
    };
    assert_eq!(count(FrameKind::Video), expected[0].1);
    assert_eq!(count(FrameKind::Audio), expected[1].1);

    let dir = mux_common::scratch_dir("roundtrip");

    // FLV side: the intermediate frames are a valid FLV ffmpeg decodes without errors.
    let flv = dir.join("mid.flv");
    std::fs::write(&flv, demux_common::flv_file(&frames, true, true)).unwrap();
    let errors = demux_common::ffmpeg_decode_errors(&flv, None);
    assert!(errors.trim().is_empty(), "ffmpeg on the FLV: {errors}");
    assert_eq!(mux_common::frame_counts(&flv), expected, "FLV frame counts");

    // FLV frames → TS.
    let out = dir.join("out.ts");
    let mux_stats = mux_to_file(&frames, &out);
    assert_eq!(mux_stats.configs_stored, 2, "{mux_stats:?}");
    assert_eq!(
        mux_stats.frames_muxed,
        (frames.len() - headers) as u64,
        "every frame muxed: {mux_stats:?}"
    );

    // Same codecs and decoded frame counts; a clean decode.
    assert_eq!(mux_common::frame_counts(&out), expected);
    assert_eq!(mux_common::decode_errors(&out), "", "ffmpeg on the TS");

    // Timestamps: the source's plus one constant offset, for video (B-frames: PTS ≠ DTS)
    // and for audio alike, so A/V sync survives the round trip.
    let (src_v, out_v) = (probe_packets(&src, "v:0"), probe_packets(&out, "v:0"));
    let (src_a, out_a) = (probe_packets(&src, "a:0"), probe_packets(&out, "a:0"));
    assert_eq!(src_v.len(), 50);
    let reordered = src_v.iter().filter(|p| p.pts != p.dts).count();
    assert!(reordered > 40, "B-frames reorder the source: {reordered}");
    let offset = out_v[0].dts.unwrap() - src_v[0].dts.unwrap();
    // The demuxer starts the FLV timeline at the earliest source timestamp; the muxer
    // adds its timestamp offset (1 s by default).
    let start = src_v[0].dts.unwrap().min(src_a[0].pts.unwrap());
    let muxer_offset = i64::from(MuxerConfig::default().timestamp_offset_ms) * TICKS_PER_MS;
    assert!(
        (offset - (muxer_offset - start)).abs() <= TOLERANCE,
        "offset {offset}, source starts at {start}"
    );
    assert_shifted("video", &src_v, &out_v, offset);
    let keys = |p: &[ProbePacket]| p.iter().map(|p| p.key).collect::<Vec<_>>();
    assert_eq!(keys(&src_v), keys(&out_v), "keyframes where they were");
    assert_shifted("audio", &src_a, &out_a, offset);

    let _ = std::fs::remove_dir_all(&dir);
}
