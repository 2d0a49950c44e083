//! Putting a rendition's tags on the source's timeline, sans-I/O: tags in (as the worker
//! wrote them), tags out (with the times to publish them at).
//!
//! ffmpeg moves each output's timestamps away from the source's (its start time, B-frame
//! delay, AAC priming; after a restart mid-stream, by the whole start time). The first
//! output keyframe is the first source keyframe fed to the worker (the first audio frame,
//! for an audio-only rendition): the difference is measured there and taken off every tag,
//! so each rendition's keyframes fall at the source's times. Tags before that wait.
//!
//! A restarted worker starts again at the source's cached GOP, before what the last run
//! published: media up to there is skipped (video up to a keyframe after it), so the
//! rendition's clock never steps back (the hub would take that for a new timeline).

use crate::flv::Tag;
use prism_hub::FrameKind;

/// Tags held until the offset is known (a GOP or so of output).
pub const MAX_PENDING: usize = 1000;

/// What the source's first frames fed to this run were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FedStart {
    /// Presentation time of the first video keyframe fed.
    pub key: Option<u32>,
    /// Timestamp of the first audio frame fed.
    pub audio: Option<u32>,
}

/// One run's aligner for one rendition.
#[derive(Debug)]
pub struct Aligner {
    video: bool,
    offset: Option<i64>,
    pending: Vec<Tag>,
    /// The last media time the rendition published (this run and earlier ones).
    last_ts: Option<u32>,
    /// The previous runs' last time: media up to it is skipped.
    after: Option<u32>,
    video_on: bool,
    /// A restarted run's sequence headers and script data, held until its first media
    /// tag goes out: sent earlier, they would sit in the hub in front of the last run's
    /// cached GOP, and a player joining then would decode old frames with new headers.
    held: Vec<Tag>,
    /// This run has published media of the kind: audio, video.
    started: [bool; 2],
}

/// Too much output without a keyframe to align on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoKeyframe;

impl Aligner {
    /// `video`: the rendition has video. `last_ts`: the last media time the rendition
    /// published in earlier runs, if any.
    pub fn new(video: bool, last_ts: Option<u32>) -> Aligner {
        Aligner {
            video,
            offset: None,
            pending: Vec::new(),
            last_ts,
            after: last_ts,
            video_on: last_ts.is_none(),
            held: Vec::new(),
            started: [false; 2],
        }
    }

    /// Bytes of the tags held until the run can be aligned (at most [`MAX_PENDING`] tags)
    /// or its first media tag goes out.
    pub fn buffered_bytes(&self) -> usize {
        self.pending
            .iter()
            .chain(&self.held)
            .map(|t| t.body.len())
            .sum()
    }

    /// The last media time published, for the next run.
    pub fn last_ts(&self) -> Option<u32> {
        self.last_ts
    }

    /// One tag from the worker; `fed` is what the source's first frames were (read now:
    /// the feeder sets it as it goes). Appends the tags to publish now, with their times.
    pub fn push(
        &mut self,
        tag: Tag,
        fed: FedStart,
        out: &mut Vec<(Tag, u32)>,
    ) -> Result<(), NoKeyframe> {
        if self.offset.is_none() {
            self.offset = match tag.kind {
                FrameKind::Video if self.video && is_keyframe(&tag.body) => fed
                    .key
                    .map(|k| k as i64 - pts(&tag.body, tag.timestamp) as i64),
                FrameKind::Audio if !self.video && !is_sequence_header(&tag.body) => {
                    fed.audio.map(|a| a as i64 - tag.timestamp as i64)
                }
                _ => None,
            };
            if self.offset.is_none() {
                if self.pending.len() >= MAX_PENDING {
                    return Err(NoKeyframe);
                }
                self.pending.push(tag);
                return Ok(());
            }
        }
        let pending = std::mem::take(&mut self.pending);
        for t in pending.into_iter().chain(std::iter::once(tag)) {
            self.place(t, out);
        }
        Ok(())
    }

    fn place(&mut self, t: Tag, out: &mut Vec<(Tag, u32)>) {
        let off = self.offset.unwrap_or(0);
        let ts = (t.timestamp as i64 + off).clamp(0, u32::MAX as i64) as u32;
        // A restarted run's onMetaData says what the first run's did; sent mid-stream it
        // makes ffmpeg's FLV demuxer (5.1) add a data stream, and ffprobe crash on it.
        if t.kind == FrameKind::Data && self.after.is_some() {
            return;
        }
        let header = t.kind == FrameKind::Data || is_sequence_header(&t.body);
        let kind = usize::from(t.kind == FrameKind::Video);
        let waiting = match t.kind {
            FrameKind::Data => !self.started.iter().any(|s| *s),
            _ => !self.started[kind],
        };
        if header && self.after.is_some() && waiting {
            // Bounded: ffmpeg writes one of each per output.
            if self.held.len() < 8 {
                self.held.push(t);
            }
            return;
        }
        if !header {
            if let Some(a) = self.after {
                if t.kind == FrameKind::Video && !self.video_on {
                    self.video_on = ts > a && is_keyframe(&t.body);
                }
                let skip = match t.kind {
                    FrameKind::Video => !self.video_on,
                    _ => ts <= a,
                };
                if skip {
                    return;
                }
            }
        }
        // Headers and script data (ffmpeg writes onMetaData at time 0) go out at the
        // rendition's current time: never a step back.
        let ts = match (header, self.last_ts) {
            (true, Some(l)) => ts.max(l),
            _ => ts,
        };
        if !header {
            if !self.started[kind] {
                self.started[kind] = true;
                // The held headers of this kind (and script data), just before it.
                let at = ts.max(self.last_ts.unwrap_or(0));
                let (now, keep): (Vec<Tag>, Vec<Tag>) = std::mem::take(&mut self.held)
                    .into_iter()
                    .partition(|h| h.kind == t.kind || h.kind == FrameKind::Data);
                self.held = keep;
                out.extend(now.into_iter().map(|h| (h, at)));
            }
            self.last_ts = Some(self.last_ts.map_or(ts, |l| l.max(ts)));
        }
        out.push((t, ts));
    }
}

/// An AVC/HEVC FLV video body that is a keyframe with picture data (not a header).
pub fn is_keyframe(body: &[u8]) -> bool {
    body.len() > 5 && body[0] >> 4 == 1 && body[1] == 1
}

/// An AAC or AVC FLV body that is a sequence header.
pub fn is_sequence_header(body: &[u8]) -> bool {
    body.len() > 1 && body[1] == 0 && (body[0] >> 4 == 10 || body[0] & 0x0f == 7)
}

/// Presentation time of a video tag: its (decode) timestamp plus the composition offset
/// an AVC FLV body carries (signed 24 bits); the timestamp alone for anything else.
pub fn pts(body: &[u8], ts: u32) -> u32 {
    if body.len() > 5 && body[0] & 0x0f == 7 && body[1] == 1 {
        let cts = i32::from_be_bytes([body[2], body[3], body[4], 0]) >> 8;
        return (ts as i64 + cts as i64).max(0) as u32;
    }
    ts
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn video(ts: u32, key: bool, cts: i32) -> Tag {
        let c = cts.to_be_bytes();
        let first = if key { 0x17 } else { 0x27 };
        Tag {
            kind: FrameKind::Video,
            timestamp: ts,
            body: Bytes::from(vec![first, 1, c[1], c[2], c[3], 0xaa]),
        }
    }
    fn video_header(ts: u32) -> Tag {
        Tag {
            kind: FrameKind::Video,
            timestamp: ts,
            body: Bytes::from_static(&[0x17, 0, 0, 0, 0, 1]),
        }
    }
    fn audio(ts: u32) -> Tag {
        Tag {
            kind: FrameKind::Audio,
            timestamp: ts,
            body: Bytes::from_static(&[0xaf, 1, 0x21]),
        }
    }
    fn audio_header(ts: u32) -> Tag {
        Tag {
            kind: FrameKind::Audio,
            timestamp: ts,
            body: Bytes::from_static(&[0xaf, 0, 0x12, 0x10]),
        }
    }
    fn times(out: &[(Tag, u32)]) -> Vec<(FrameKind, u32)> {
        out.iter().map(|(t, ts)| (t.kind, *ts)).collect()
    }

    #[test]
    fn pts_reads_the_signed_composition_offset() {
        assert_eq!(pts(&video(1000, true, 80).body, 1000), 1080);
        assert_eq!(pts(&video(1000, true, -40).body, 1000), 960);
        assert_eq!(pts(&audio(5).body, 5), 5);
        assert!(is_keyframe(&video(0, true, 0).body));
        assert!(!is_keyframe(&video_header(0).body));
        assert!(is_sequence_header(&video_header(0).body));
        assert!(is_sequence_header(&audio_header(0).body));
        assert!(!is_sequence_header(&audio(0).body));
    }

    // ffmpeg started its output near 0 (B-frame delay 80 ms) for a source fed from its
    // keyframe at 50 000 (pts): everything moves so that keyframe is at 50 000 again.
    #[test]
    fn first_keyframe_lands_on_the_source_keyframe() {
        let fed = FedStart {
            key: Some(50_000),
            audio: Some(49_990),
        };
        let mut a = Aligner::new(true, None);
        let mut out = Vec::new();
        a.push(video_header(0), fed, &mut out).unwrap();
        a.push(audio_header(0), fed, &mut out).unwrap();
        a.push(audio(3), fed, &mut out).unwrap();
        assert!(out.is_empty(), "held until the keyframe");
        a.push(video(0, true, 80), fed, &mut out).unwrap();
        a.push(video(40, false, 80), fed, &mut out).unwrap();
        // offset = 50 000 - 80: the keyframe's pts (0 + 80) becomes 50 000.
        assert_eq!(
            times(&out),
            [
                (FrameKind::Video, 49_920),
                (FrameKind::Audio, 49_920),
                (FrameKind::Audio, 49_923),
                (FrameKind::Video, 49_920),
                (FrameKind::Video, 49_960),
            ]
        );
        assert_eq!(pts(&out[3].0.body, out[3].1), 50_000);
        assert_eq!(a.last_ts(), Some(49_960));
    }

    #[test]
    fn audio_only_aligns_on_the_first_audio_frame() {
        let fed = FedStart {
            key: Some(50_000),
            audio: Some(49_990),
        };
        let mut a = Aligner::new(false, None);
        let mut out = Vec::new();
        // The header is shifted with the rest (offset 49 990 - 21).
        a.push(audio_header(0), fed, &mut out).unwrap();
        a.push(audio(21), fed, &mut out).unwrap();
        assert_eq!(
            times(&out),
            [(FrameKind::Audio, 49_969), (FrameKind::Audio, 49_990)]
        );
    }

    // A restarted run begins at the source's cached GOP, 1.5 s before what the rendition
    // already published: skipped up to a keyframe after it; headers at the current time.
    #[test]
    fn a_restart_never_steps_back() {
        let fed = FedStart {
            key: Some(60_000),
            audio: Some(60_000),
        };
        let mut a = Aligner::new(true, Some(61_500));
        let mut out = Vec::new();
        let metadata = Tag {
            kind: FrameKind::Data,
            timestamp: 0,
            body: Bytes::from_static(&[2, 0, 10]),
        };
        a.push(metadata, fed, &mut out).unwrap();
        a.push(video_header(0), fed, &mut out).unwrap();
        a.push(video(0, true, 0), fed, &mut out).unwrap();
        a.push(audio(1000), fed, &mut out).unwrap();
        a.push(video(1000, false, 0), fed, &mut out).unwrap();
        a.push(audio(1600), fed, &mut out).unwrap();
        a.push(video(1600, false, 0), fed, &mut out).unwrap();
        a.push(video(2000, true, 0), fed, &mut out).unwrap();
        // The video header waits for the first video that goes out, just before it; the
        // metadata (the same as the first run's) is not sent again.
        assert_eq!(
            times(&out),
            [
                (FrameKind::Audio, 61_600),
                (FrameKind::Video, 62_000),
                (FrameKind::Video, 62_000),
            ]
        );
        assert!(is_sequence_header(&out[1].0.body));
        assert!(is_keyframe(&out[2].0.body));
    }

    #[test]
    fn output_without_a_keyframe_is_bounded() {
        let fed = FedStart::default();
        let mut a = Aligner::new(true, None);
        let mut out = Vec::new();
        for i in 0..MAX_PENDING as u32 {
            a.push(audio(i), fed, &mut out).unwrap();
        }
        assert_eq!(a.push(audio(0), fed, &mut out), Err(NoKeyframe));
        assert!(out.is_empty());
    }
}
