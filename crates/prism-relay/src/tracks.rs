//! A target's `video_track` / `audio_track`: keeps one track of Enhanced RTMP v2 multitrack
//! messages and rebuilds it as a plain single-track message (see
//! [`prism_rtmp::multitrack::extract_track`]), so a destination that knows nothing of
//! multitrack gets an ordinary stream with its own sequence header.

use std::sync::Arc;

use prism_config::TargetTracks;
use prism_hub::{Frame, FrameKind};
use prism_rtmp::multitrack::{extract_track, is_ex_audio, is_ex_video, parse_audio, parse_video};

/// What to do with one frame.
enum Pick {
    Keep,
    Drop,
    Replace(Vec<u8>),
}

fn pick(frame: &Frame, tracks: TargetTracks) -> Pick {
    let (video, id) = match (frame.kind, tracks.video, tracks.audio) {
        (FrameKind::Video, Some(id), _) => (true, id),
        (FrameKind::Audio, _, Some(id)) => (false, id),
        _ => return Pick::Keep,
    };
    let p = &frame.payload[..];
    let ex = if video {
        is_ex_video(p)
    } else {
        is_ex_audio(p)
    };
    let parsed = if !ex {
        None
    } else if video {
        parse_video(p).ok()
    } else {
        parse_audio(p).ok()
    };
    match parsed {
        Some(m) if m.multitrack.is_some() => match extract_track(&m, video, id) {
            Some(b) => Pick::Replace(b),
            None => Pick::Drop,
        },
        // Legacy, single-track or malformed messages are track 0.
        _ if id == 0 => Pick::Keep,
        _ => Pick::Drop,
    }
}

/// Keeps only the chosen tracks of `frames`, rebuilt as single-track messages.
///
/// The hub starts a subscriber (and resumes it after a GOP-aware drop) at a keyframe of
/// *any* track; with `video_track` chosen and the tracks' keyframes not aligned, that can be
/// a delta frame of the chosen one. So while `*wait_key` is set, the chosen track's video is
/// dropped until its own keyframe (sequence headers pass): the target starts decodable.
pub fn select(frames: &mut Vec<Arc<Frame>>, tracks: TargetTracks, wait_key: &mut bool) {
    if tracks == TargetTracks::default() {
        return;
    }
    let input = std::mem::take(frames);
    for f in input {
        let gated = tracks.video.is_some() && f.kind == FrameKind::Video && !f.is_config();
        let out = match pick(&f, tracks) {
            Pick::Keep => f,
            Pick::Drop => continue,
            Pick::Replace(b) => Arc::new(Frame {
                keyframe: f.keyframe,
                sequence_header: f.sequence_header,
                disposable: f.disposable,
                ..Frame::media(f.kind, f.timestamp, b.into())
            }),
        };
        if gated && *wait_key {
            if !out.keyframe {
                continue;
            }
            *wait_key = false;
        }
        frames.push(out);
    }
}

/// The track ids a stream's cached sequence header (the merge of every track's, see
/// [`prism_rtmp::multitrack::HeaderMerge`]) carries: what a target's `video_track` /
/// `audio_track` can choose. A plain (legacy or single-track E-RTMP) header is track 0.
pub fn track_ids(header: &Frame) -> Vec<u8> {
    let p = &header.payload[..];
    let parsed = match header.kind {
        FrameKind::Video if is_ex_video(p) => parse_video(p).ok(),
        FrameKind::Audio if is_ex_audio(p) => parse_audio(p).ok(),
        FrameKind::Data => return Vec::new(),
        _ => None,
    };
    match parsed {
        Some(m) if m.multitrack.is_some() => {
            let mut ids: Vec<u8> = m.tracks.iter().map(|t| t.id).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        }
        _ => vec![0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use prism_rtmp::multitrack::{build, MultitrackType};

    fn frame(kind: FrameKind, p: Vec<u8>, seq: bool) -> Arc<Frame> {
        Arc::new(Frame {
            sequence_header: seq,
            ..Frame::media(kind, 40, Bytes::from(p))
        })
    }

    #[test]
    fn picks_one_track_and_passes_the_rest() {
        let seq = build::multitrack(
            0x90,
            6,
            MultitrackType::ManyTracks,
            0,
            &[(0, *b"avc1", &[1, 0x64]), (1, *b"avc1", &[1, 0x42])],
        );
        let aud = build::multitrack(
            0x90,
            5,
            MultitrackType::ManyTracksManyCodecs,
            1,
            &[(0, *b"mp4a", &[0x21]), (1, *b"Opus", &[0xfc])],
        );
        let data = frame(FrameKind::Data, vec![2, 0, 1], false);
        let mut frames = vec![
            data.clone(),
            frame(FrameKind::Video, seq, true),
            frame(FrameKind::Audio, aud, false),
            // A legacy AVC frame is track 0: dropped for a target of track 1.
            frame(FrameKind::Video, vec![0x27, 1, 0, 0, 0], false),
        ];
        select(
            &mut frames,
            TargetTracks {
                video: Some(1),
                audio: Some(1),
            },
            &mut true,
        );
        assert_eq!(frames.len(), 3);
        assert!(Arc::ptr_eq(&frames[0], &data));
        assert_eq!(&frames[1].payload[..], [0x17, 0, 0, 0, 0, 1, 0x42]);
        assert!(frames[1].sequence_header);
        assert_eq!(frames[1].timestamp, 40);
        assert_eq!(&frames[2].payload[..], [0x91, b'O', b'p', b'u', b's', 0xfc]);
    }

    #[test]
    fn track_ids_of_merged_and_plain_headers() {
        let seq = build::multitrack(
            0x90,
            6,
            MultitrackType::ManyTracks,
            0,
            &[(1, *b"avc1", &[1, 0x42]), (0, *b"avc1", &[1, 0x64])],
        );
        assert_eq!(track_ids(&frame(FrameKind::Video, seq, true)), [0, 1]);
        let avc = frame(FrameKind::Video, vec![0x17, 0, 0, 0, 0, 1], true);
        assert_eq!(track_ids(&avc), [0]);
        let aac = frame(FrameKind::Audio, vec![0xAF, 0, 0x12, 0x10], true);
        assert_eq!(track_ids(&aac), [0]);
    }

    #[test]
    fn no_choice_is_untouched() {
        let seq = build::multitrack(0x90, 6, MultitrackType::OneTrack, 0, &[(3, *b"hvc1", &[1])]);
        let f = frame(FrameKind::Video, seq, true);
        let mut frames = vec![f.clone()];
        select(&mut frames, TargetTracks::default(), &mut true);
        assert!(Arc::ptr_eq(&frames[0], &f));
        // Track 2 asked, only track 3 present: nothing.
        select(
            &mut frames,
            TargetTracks {
                video: Some(2),
                audio: None,
            },
            &mut true,
        );
        assert!(frames.is_empty());
    }

    #[test]
    fn the_chosen_track_starts_at_its_own_keyframe() {
        // Keyframes not aligned across tracks: the hub starts this subscriber at track 0's
        // keyframe; track 1's delta frames before its own keyframe are not decodable.
        let one = |frame_type: u8, track: u8, key: bool| {
            let p = build::multitrack(
                0x80 | frame_type << 4,
                6,
                MultitrackType::OneTrack,
                1,
                &[(track, *b"avc1", &[0, 0, 0, 7])],
            );
            Arc::new(Frame {
                keyframe: key,
                ..Frame::media(FrameKind::Video, 40, Bytes::from(p))
            })
        };
        let tracks = TargetTracks {
            video: Some(1),
            audio: None,
        };
        let mut wait = true;
        let mut frames = vec![
            one(1, 0, true),
            one(2, 1, false),
            one(1, 1, true),
            one(2, 1, false),
        ];
        select(&mut frames, tracks, &mut wait);
        assert_eq!(frames.len(), 2, "track 1 from its keyframe on");
        assert!(frames[0].keyframe && !frames[1].keyframe);
        assert!(!wait);
        // Open now: delta frames pass until the driver sets the gate again (after a drop).
        let mut frames = vec![one(2, 1, false)];
        select(&mut frames, tracks, &mut wait);
        assert_eq!(frames.len(), 1);
        wait = true;
        let mut frames = vec![one(2, 1, false)];
        select(&mut frames, tracks, &mut wait);
        assert!(frames.is_empty());
    }
}
