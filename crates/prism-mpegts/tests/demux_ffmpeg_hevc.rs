//! HEVC + AAC from ffmpeg: Enhanced RTMP (hvc1) framing, the HEVCDecoderConfigurationRecord
//! against the SPS, keyframes and counts against ffprobe, and ffmpeg decoding the NAL units
//! we produced. (This ffmpeg's FLV demuxer predates Enhanced RTMP, so the oracle is the
//! record's parameter sets plus every frame's NAL units, back in Annex B form.)

mod demux_common;

use demux_common::*;
use prism_mpegts::nal;
use prism_mpegts::FrameKind;

#[test]
fn hevc_aac_matches_ffprobe() {
    if !have_ffmpeg() {
        return;
    }
    let ts = hevc_aac_ts();
    let data = std::fs::read(&ts).unwrap();
    let (frames, stats) = demux_all(&data, || 1316);
    assert_eq!(
        stats.cc_errors + stats.dropped_pes + stats.malformed_frames,
        0
    );

    let video: Vec<_> = frames
        .iter()
        .filter(|f| f.kind == FrameKind::Video)
        .collect();
    let audio: Vec<_> = frames
        .iter()
        .filter(|f| f.kind == FrameKind::Audio)
        .collect();
    assert!(video[0].sequence_header && audio[0].sequence_header);
    assert_eq!(video.iter().filter(|f| f.sequence_header).count(), 1);
    // AAC-LC, 48 kHz (index 3), mono: 0x11 0x88.
    assert_eq!(&audio[0].payload[..], &[0xAF, 0x00, 0x11, 0x88]);
    assert_eq!(audio.len() - 1, probe_frame_count(&ts, "a:0"));

    // Sequence start: [IsExHeader | key frame | PacketTypeSequenceStart] "hvc1" record.
    let seq = &video[0].payload;
    assert_eq!(&seq[..5], b"\x90hvc1");
    let record = &seq[5..];
    let sets = nal::hevc_record_parameter_sets(record).unwrap();
    let types: Vec<u8> = sets
        .iter()
        .map(|n| nal::hevc_nal_type(n).unwrap())
        .collect();
    assert_eq!(types, vec![32, 33, 34]);
    let sps = nal::parse_hevc_sps(sets[1]).unwrap();
    assert_eq!((sps.width, sps.height), (320, 240));
    assert_eq!(sps.general_profile_idc, 1, "Main");
    assert_eq!(record[1] & 0x1F, sps.general_profile_idc);
    assert_eq!(record[12], sps.general_level_idc);
    assert_eq!(
        u32::from_be_bytes(record[2..6].try_into().unwrap()),
        sps.general_profile_compatibility_flags
    );
    assert_eq!(record[21] & 0x03, 3, "4-byte NAL lengths");

    let coded: Vec<_> = video.iter().filter(|f| !f.sequence_header).collect();
    let probe = probe_packets(&ts, "v:0");
    assert_eq!(coded.len(), probe_frame_count(&ts, "v:0"));
    assert_eq!(
        coded.iter().map(|f| f.keyframe).collect::<Vec<_>>(),
        probe.iter().map(|p| p.key).collect::<Vec<_>>()
    );
    let mut annex_b = Vec::new();
    for f in &coded {
        // [IsExHeader | FrameType | PacketTypeCodedFrames] "hvc1" SI24 CTS, NAL units.
        let p = &f.payload;
        assert_eq!(p[0], if f.keyframe { 0x91 } else { 0xA1 });
        assert_eq!(&p[1..5], b"hvc1");
        let nals: Vec<&[u8]> = nal::split_length_prefixed(&p[8..]).collect();
        assert_eq!(nals.iter().map(|n| n.len() + 4).sum::<usize>(), p.len() - 8);
        let irap = nals
            .iter()
            .any(|n| (16..=21).contains(&nal::hevc_nal_type(n).unwrap()));
        assert_eq!(irap, f.keyframe);
        if f.keyframe {
            for s in &sets {
                annex_b.extend_from_slice(&[0, 0, 0, 1]);
                annex_b.extend_from_slice(s);
            }
        }
        for n in nals {
            annex_b.extend_from_slice(&[0, 0, 0, 1]);
            annex_b.extend_from_slice(n);
        }
    }
    assert!(coded.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    assert!(coded[0].timestamp < 100);
    for (f, p) in coded.iter().zip(&probe) {
        let want = (p.pts.unwrap() - p.dts.unwrap()) as f64 / 90.0;
        assert!((f64::from(si24(&f.payload[5..8])) - want).abs() <= 1.0);
    }

    let path = tmp_path("hevc_demuxed.hevc");
    std::fs::write(&path, &annex_b).unwrap();
    let errors = ffmpeg_decode_errors(&path, Some("hevc"));
    assert!(errors.trim().is_empty(), "ffmpeg: {errors}");
    assert_eq!(probe_frame_count(&path, "v:0"), coded.len());

    // The audio still goes through FLV cleanly.
    let flv = tmp_path("hevc_aac_demuxed_audio.flv");
    let audio_only: Vec<_> = audio.iter().map(|f| (*f).clone()).collect();
    std::fs::write(&flv, flv_file(&audio_only, true, false)).unwrap();
    let errors = ffmpeg_decode_errors(&flv, None);
    assert!(errors.trim().is_empty(), "ffmpeg: {errors}");
}
