//! An AAC-only stream (no video sequence header ever comes): the PCR moves to the audio
//! PID and the TS still decodes frame for frame.

mod mux_common;

use mux_common::*;
use prism_mpegts::mux::AUDIO_PID;

#[test]
fn aac_only_stream_carries_pcr_on_audio_pid() {
    if !have_ffmpeg(&["aac"]) {
        return;
    }
    let dir = scratch_dir("audio-only");
    let flv = dir.join("in.flv");
    let ts_path = dir.join("out.ts");
    #[rustfmt::skip]
    ffmpeg(&[
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-ac", "2", "-c:a", "aac", "-t", "2", "-f", "flv", flv.to_str().unwrap(),
    ]);
    let frames = read_flv(&std::fs::read(&flv).unwrap());
    let (ts, stats) = mux(&frames);
    std::fs::write(&ts_path, &ts).unwrap();
    assert_eq!(stats.frames_muxed + 1, frames.len() as u64, "{stats:?}");

    let expected = frame_counts(&flv);
    assert_eq!(expected.len(), 1);
    assert_eq!(expected[0].0, "aac");
    assert_eq!(frame_counts(&ts_path), expected);
    assert_eq!(decode_errors(&ts_path), "");

    // check_common also requires a PCR, not after the DTS, in every PES on the PCR PID.
    let report = check_common(&ts);
    assert_eq!(report.streams, [(AUDIO_PID, 0x0F)]);
    assert_eq!(report.pcr_pid, Some(AUDIO_PID));
    assert_eq!(report.pes[&AUDIO_PID].len() as u64, stats.frames_muxed);
    let _ = std::fs::remove_dir_all(&dir);
}
