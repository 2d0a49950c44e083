//! HEVC with B-frames in Enhanced RTMP form (`hvc1` SequenceStart, CodedFrames and
//! CodedFramesX), muxed to MPEG-TS with stream type 0x24.
//!
//! ffmpeg 5.1 cannot write Enhanced RTMP FLV, so the test builds the payloads itself from
//! an x265 encode: the HEVCDecoderConfigurationRecord from the MP4's `hvcC` box, the access
//! units from the same packets as an Annex B stream (`-c copy -f hevc`), and the timestamps
//! from ffprobe. Parameter sets and delimiters are stripped from the access units, as
//! publishers send them, so the muxer's own must make the stream decodable.

mod mux_common;

use bytes::Bytes;
use mux_common::*;
use prism_mpegts::mux::VIDEO_PID;
use prism_mpegts::{FlvFrame, FrameKind};

/// Splits an Annex B stream into NAL units (start codes and trailing zeros dropped).
fn nal_units(annex_b: &[u8]) -> Vec<&[u8]> {
    let starts: Vec<usize> = (0..annex_b.len().saturating_sub(2))
        .filter(|&i| annex_b[i..i + 3] == [0, 0, 1])
        .map(|i| i + 3)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(n, &s)| {
            let end = starts.get(n + 1).map_or(annex_b.len(), |&next| next - 3);
            let mut nal = &annex_b[s..end];
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            nal
        })
        .collect()
}

/// Groups NAL units into access units (ISO/IEC 23008-2 7.4.2.4.4).
fn access_units<'a>(nals: &[&'a [u8]]) -> Vec<Vec<&'a [u8]>> {
    let mut units: Vec<Vec<&[u8]>> = Vec::new();
    let mut has_picture = false;
    for &nal in nals {
        let nal_type = (nal[0] >> 1) & 0x3F;
        let vcl = nal_type < 32;
        let first_slice = vcl && nal[2] & 0x80 != 0;
        let starts_unit = matches!(nal_type, 32..=35 | 39) || first_slice;
        if units.is_empty() || (has_picture && starts_unit) {
            units.push(Vec::new());
            has_picture = false;
        }
        has_picture |= vcl;
        units.last_mut().unwrap().push(nal);
    }
    units
}

fn ms(seconds: &str) -> i64 {
    (seconds.parse::<f64>().unwrap() * 1000.0).round() as i64
}

#[test]
fn enhanced_rtmp_hevc_with_b_frames() {
    if !have_ffmpeg(&["libx265"]) {
        return;
    }
    let dir = scratch_dir("hevc");
    let mp4 = dir.join("in.mp4");
    let hevc = dir.join("in.hevc");
    let ts_path = dir.join("out.ts");
    #[rustfmt::skip]
    ffmpeg(&[
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
        "-c:v", "libx265", "-x265-params", "keyint=25:bframes=2:log-level=error", "-t", "2",
        mp4.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-i",
        mp4.to_str().unwrap(),
        "-c",
        "copy",
        "-f",
        "hevc",
        hevc.to_str().unwrap(),
    ]);

    let mp4_bytes = std::fs::read(&mp4).unwrap();
    let at = mp4_bytes
        .windows(4)
        .position(|w| w == b"hvcC")
        .expect("hvcC box");
    let box_len = u32::from_be_bytes(mp4_bytes[at - 4..at].try_into().unwrap()) as usize;
    let hvcc = &mp4_bytes[at + 4..at - 4 + box_len];
    assert_eq!(hvcc[21] & 3, 3, "4-byte NAL lengths");

    // (dts ms, pts ms, key) per packet, in decode order.
    let probe = ffprobe(&[
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=pts_time,dts_time,flags",
        "-of",
        "compact=p=0",
        mp4.to_str().unwrap(),
    ]);
    let packets: Vec<(i64, i64, bool)> = probe
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let field = |key: &str| {
                l.split('|')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .unwrap_or_else(|| panic!("{key} in {l}"))
            };
            (
                ms(field("dts_time")),
                ms(field("pts_time")),
                field("flags").starts_with('K'),
            )
        })
        .collect();
    let first_dts = packets[0].0;

    let annex_b = std::fs::read(&hevc).unwrap();
    let units = access_units(&nal_units(&annex_b));
    assert_eq!(units.len(), packets.len(), "one access unit per packet");

    let mut frames = vec![FlvFrame {
        kind: FrameKind::Video,
        timestamp: 0,
        // IsExHeader | key frame | SequenceStart, FourCC
        payload: Bytes::from([&[0x90][..], b"hvc1", hvcc].concat()),
        keyframe: false,
        sequence_header: true,
    }];
    let mut expected = Vec::new();
    for (unit, &(dts, pts, key)) in units.iter().zip(&packets) {
        let cts = pts - dts;
        let frame_type = if key { 1 } else { 2 };
        // CodedFrames when there is a composition offset, CodedFramesX when it is zero.
        let mut p = vec![0x80 | frame_type << 4 | if cts != 0 { 1 } else { 3 }];
        p.extend_from_slice(b"hvc1");
        if cts != 0 {
            p.extend_from_slice(&(cts as i32).to_be_bytes()[1..]);
        }
        for nal in unit {
            if !matches!((nal[0] >> 1) & 0x3F, 32..=35) {
                p.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                p.extend_from_slice(nal);
            }
        }
        let timestamp = u32::try_from(dts - first_dts).unwrap();
        expected.push((timestamp, cts, key));
        frames.push(FlvFrame {
            kind: FrameKind::Video,
            timestamp,
            payload: Bytes::from(p),
            keyframe: key,
            sequence_header: false,
        });
    }
    assert!(
        expected.iter().any(|e| e.1 != 0),
        "B-frames give composition offsets"
    );

    let (ts, stats) = mux(&frames);
    std::fs::write(&ts_path, &ts).unwrap();
    assert_eq!(stats.frames_muxed, packets.len() as u64, "{stats:?}");

    let source = frame_counts(&mp4);
    assert_eq!(source, [("hevc".to_string(), packets.len() as u64)]);
    assert_eq!(frame_counts(&ts_path), source);
    assert_eq!(decode_errors(&ts_path), "");

    let report = check_common(&ts);
    assert_eq!(report.streams, [(VIDEO_PID, 0x24)]);
    assert_eq!(report.pcr_pid, Some(VIDEO_PID));
    let pes = &report.pes[&VIDEO_PID];
    assert_eq!(pes.len(), expected.len());
    for (pes, &(timestamp, cts, key)) in pes.iter().zip(&expected) {
        let dts = (i64::from(timestamp) + 1000) * 90;
        assert_eq!((pes.dts as i64, pes.pts as i64), (dts, dts + cts * 90));
        assert_eq!(pes.random_access, key);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
