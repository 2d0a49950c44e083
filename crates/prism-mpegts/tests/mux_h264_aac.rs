//! H.264 with B-frames plus AAC, as an RTMP publisher sends them (ffmpeg's FLV output),
//! muxed to MPEG-TS: ffprobe decodes every frame, ffmpeg reports no error, and the
//! timestamps match the FLV ones.

mod mux_common;

use mux_common::*;
use prism_mpegts::mux::{AUDIO_PID, VIDEO_PID};
use prism_mpegts::FrameKind;

#[test]
fn h264_with_b_frames_and_aac() {
    if !have_ffmpeg(&["libx264", "aac"]) {
        return;
    }
    let dir = scratch_dir("h264-aac");
    let flv = dir.join("in.flv");
    let ts_path = dir.join("out.ts");
    #[rustfmt::skip]
    ffmpeg(&[
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
        "-f", "lavfi", "-i", "sine",
        "-c:v", "libx264", "-g", "25", "-bf", "2", "-c:a", "aac", "-t", "2",
        "-f", "flv", flv.to_str().unwrap(),
    ]);
    let frames = read_flv(&std::fs::read(&flv).unwrap());
    let (ts, stats) = mux(&frames);
    std::fs::write(&ts_path, &ts).unwrap();

    // ffmpeg ends the FLV with an AVC end-of-sequence tag, which has no TS form.
    let end_of_sequence = frames
        .iter()
        .filter(|f| f.payload[..2] == [0x17, 0x02])
        .count();
    assert_eq!(end_of_sequence, 1);
    assert_eq!(stats.configs_stored, 2);
    assert_eq!(stats.dropped_unsupported, 1);
    assert_eq!(stats.frames_muxed + 3, frames.len() as u64, "{stats:?}");

    // ffprobe decodes as many frames from the TS as from the FLV.
    let expected = frame_counts(&flv);
    assert_eq!(
        expected,
        [("h264".to_string(), 50), ("aac".to_string(), 88)],
        "the source"
    );
    assert_eq!(frame_counts(&ts_path), expected);
    assert_eq!(decode_errors(&ts_path), "");

    let report = check_common(&ts);
    assert_eq!(report.streams, [(VIDEO_PID, 0x1B), (AUDIO_PID, 0x0F)]);
    assert_eq!(report.pcr_pid, Some(VIDEO_PID));

    // Every PES carries its FLV frame's timestamps, offset by 1 s; B-frames make the
    // composition offsets non-zero.
    let media = |kind| {
        frames
            .iter()
            .filter(move |f| f.kind == kind && f.payload[1] == 1)
            .collect::<Vec<_>>()
    };
    let video = &report.pes[&VIDEO_PID];
    let flv_video = media(FrameKind::Video);
    assert_eq!(video.len(), flv_video.len());
    let mut reordered = 0;
    for (pes, frame) in video.iter().zip(&flv_video) {
        let p = &frame.payload;
        let cts = (i32::from_be_bytes([p[2], p[3], p[4], 0]) >> 8) as i64;
        let dts = (i64::from(frame.timestamp) + 1000) * 90;
        assert_eq!(pes.dts as i64, dts);
        assert_eq!(pes.pts as i64, dts + cts * 90);
        assert_eq!(pes.random_access, frame.keyframe);
        reordered += usize::from(cts != 0);
    }
    assert!(reordered > 40, "B-frames give composition offsets");
    assert_eq!(video.iter().filter(|p| p.random_access).count(), 2);

    let audio = &report.pes[&AUDIO_PID];
    let flv_audio = media(FrameKind::Audio);
    assert_eq!(audio.len(), flv_audio.len());
    for (pes, frame) in audio.iter().zip(&flv_audio) {
        assert_eq!(pes.pts, (u64::from(frame.timestamp) + 1000) * 90);
        assert_eq!(pes.pcr, None);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
