//! Helpers of the HLS tests (tests/hls*.rs).

use super::run_with_timeout;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// ffprobe's frames of a file: (key_frame, pts_time), and whether decoding reported errors.
pub fn probe_frames(path: &Path, stream: &str) -> (Vec<(bool, f64)>, String) {
    let out = run_with_timeout(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", stream, "-show_frames"])
            .args([
                "-show_entries",
                "frame=key_frame,pts_time",
                "-of",
                "csv=p=0",
            ])
            .arg(path),
        Duration::from_secs(30),
    )
    .expect("ffprobe");
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split(',');
            let key = it.next()? == "1";
            let pts = it.next()?.parse().ok()?;
            Some((key, pts))
        })
        .collect();
    (frames, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The hls.js errors a page reported (`report.errors`) other than its non-fatal stall
/// recovery on a saturated 2-core box: the stall itself (the buffer ran dry because parts
/// came late), nudging the playhead on (bufferNudgeOnStall) and skipping the small hole a
/// stall left (bufferSeekOverHole). Any other error, and any fatal one, is kept.
pub fn unrecovered_errors(report: &serde_json::Value) -> Vec<String> {
    report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str())
        .filter(|e| {
            !matches!(
                *e,
                "mediaError:bufferStalledError"
                    | "mediaError:bufferNudgeOnStall"
                    | "mediaError:bufferSeekOverHole"
            )
        })
        .map(str::to_owned)
        .collect()
}
