//! H.264 + AAC from ffmpeg: frame counts, keyframes, timestamps and configuration records
//! match ffprobe, and ffmpeg decodes the demuxed frames (written as FLV) without errors.

mod demux_common;

use demux_common::*;
use prism_mpegts::nal;
use prism_mpegts::{FlvFrame, FrameKind};

fn split(frames: &[FlvFrame], kind: FrameKind) -> (Vec<&FlvFrame>, Vec<&FlvFrame>) {
    frames
        .iter()
        .filter(|f| f.kind == kind)
        .partition(|f| f.sequence_header)
}

#[test]
fn avc_aac_matches_ffprobe() {
    if !have_ffmpeg() {
        return;
    }
    let ts = avc_aac_ts();
    let data = std::fs::read(&ts).unwrap();
    // Datagram-sized pushes, as SRT delivers them.
    let (frames, stats) = demux_all(&data, || 7 * 188);
    assert_eq!(stats.cc_errors, 0);
    assert_eq!(stats.resyncs, 0);
    assert_eq!(stats.dropped_pes, 0);
    assert_eq!(stats.psi_errors, 0);
    assert_eq!(stats.malformed_frames, 0);

    let (vseq, video) = split(&frames, FrameKind::Video);
    let (aseq, audio) = split(&frames, FrameKind::Audio);
    assert_eq!(video.len(), probe_frame_count(&ts, "v:0"));
    assert_eq!(audio.len(), probe_frame_count(&ts, "a:0"));

    // One sequence header each, before the first frame of its kind.
    assert_eq!(vseq.len(), 1);
    assert_eq!(aseq.len(), 1);
    let first = |kind| frames.iter().position(|f| f.kind == kind).unwrap();
    assert!(frames[first(FrameKind::Video)].sequence_header);
    assert!(frames[first(FrameKind::Audio)].sequence_header);

    // AVC record: profile/level as in the SPS it carries.
    let seq = &vseq[0].payload;
    assert_eq!(&seq[..5], &[0x17, 0x00, 0, 0, 0]);
    let record = &seq[5..];
    let sets = nal::avc_record_parameter_sets(record).unwrap();
    let sps = nal::parse_avc_sps(sets[0]).unwrap();
    assert_eq!(record[1], sps.profile_idc);
    assert_eq!(record[3], sps.level_idc);
    assert_eq!(sps.profile_idc, 100, "x264 default is High");
    assert_eq!(nal::avc_nal_type(sets[1]), Some(8));

    // AAC-LC, 44.1 kHz, stereo.
    assert_eq!(&aseq[0].payload[..], &[0xAF, 0x00, 0x12, 0x10]);

    // Keyframes exactly where ffprobe has them; frames in ffprobe's (decode) order.
    let probe_v = probe_packets(&ts, "v:0");
    let probe_a = probe_packets(&ts, "a:0");
    assert_eq!(probe_v.len(), video.len());
    let keys: Vec<bool> = video.iter().map(|f| f.keyframe).collect();
    let probe_keys: Vec<bool> = probe_v.iter().map(|p| p.key).collect();
    assert_eq!(keys, probe_keys);
    assert_eq!(
        keys.iter().filter(|&&k| k).count(),
        2,
        "GOP 25 over 50 frames"
    );
    for f in &video {
        let b0 = f.payload[0];
        assert_eq!(b0, if f.keyframe { 0x17 } else { 0x27 });
        assert_eq!(f.payload[1], 0x01);
        // Length-prefixed NAL units fill the rest exactly; no AUD, SPS or PPS left in.
        let body = &f.payload[5..];
        let nals: Vec<&[u8]> = nal::split_length_prefixed(body).collect();
        assert_eq!(nals.iter().map(|n| n.len() + 4).sum::<usize>(), body.len());
        assert!(nals.iter().all(|n| !matches!(n[0] & 0x1F, 7..=9)));
        assert_eq!(f.keyframe, nals.iter().any(|n| n[0] & 0x1F == 5));
    }

    // Timestamps: monotonic per stream, near 0 at the start, spaced as ffprobe's.
    for list in [&video, &audio] {
        assert!(list.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    }
    let dts0 = probe_v[0].dts.unwrap();
    let pts0_a = probe_a[0].pts.unwrap();
    let base = dts0.min(pts0_a);
    assert!(video[0].timestamp < 100 && audio[0].timestamp < 100);
    for (f, p) in video.iter().zip(&probe_v) {
        let want_dts = (p.dts.unwrap() - base) as f64 / 90.0;
        assert!(
            (f64::from(f.timestamp) - want_dts).abs() <= 1.0,
            "{} vs {want_dts}",
            f.timestamp
        );
        let want_cts = (p.pts.unwrap() - p.dts.unwrap()) as f64 / 90.0;
        let cts = f64::from(si24(&f.payload[2..5]));
        assert!((cts - want_cts).abs() <= 1.0, "cts {cts} vs {want_cts}");
    }
    for (f, p) in audio.iter().zip(&probe_a) {
        let want = (p.pts.unwrap() - base) as f64 / 90.0;
        assert!(
            (f64::from(f.timestamp) - want).abs() <= 1.0,
            "{} vs {want}",
            f.timestamp
        );
    }
    // B-frames are in there, so composition offsets are not all zero.
    assert!(video.iter().any(|f| si24(&f.payload[2..5]) > 0));

    // The oracle: ffmpeg decodes our FLV cleanly, and finds every frame.
    let flv = tmp_path("avc_aac_demuxed.flv");
    std::fs::write(&flv, flv_file(&frames, true, true)).unwrap();
    let errors = ffmpeg_decode_errors(&flv, None);
    assert!(errors.trim().is_empty(), "ffmpeg: {errors}");
    assert_eq!(probe_frame_count(&flv, "v:0"), video.len());
    assert_eq!(probe_frame_count(&flv, "a:0"), audio.len());
}

#[test]
fn any_slicing_gives_the_same_frames() {
    if !have_ffmpeg() {
        return;
    }
    let data = std::fs::read(avc_aac_ts()).unwrap();
    let (whole, _) = demux_all(&data, || usize::MAX);
    let mut rng = Rng::new(7);
    let (random, stats) = demux_all(&data, || rng.below(1000) as usize + 1);
    assert_eq!(whole, random);
    assert_eq!(stats.resyncs, 0);
    // One byte at a time: slowest, same result.
    let (bytewise, _) = demux_all(&data, || 1);
    assert_eq!(whole, bytewise);
}
