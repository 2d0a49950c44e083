//! Keeps a stream's outgoing timestamps monotonic across publisher reconnects and across
//! large jumps an encoder may send, so every subscriber sees one continuous timeline.

/// Jumps larger than these (ms) are treated as discontinuities and re-based.
const MAX_BACKWARD_MS: i64 = 1_000;
const MAX_FORWARD_MS: i64 = 10_000;
/// After a discontinuity the new timeline starts this long after the last timestamp
/// sent: more than a frame interval, so that no two frames of a track land on one
/// timestamp once a receiver rounds them to its frame rate, and too short to notice.
const JUMP_GAP_MS: i64 = 100;

/// Which timeline a frame belongs to. Within a track (FLV carries decode timestamps)
/// time never goes back; across tracks it may, a little (interleaving).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Audio,
    Video,
    /// Metadata and the like: no monotonic timeline of their own.
    Other,
}

#[derive(Debug, Default, Clone)]
pub struct TimestampNormalizer {
    offset: i64,
    last_in: Option<u32>,
    last_out: Option<u32>,
    /// Last timestamp sent per track (audio, video).
    last_track_out: [Option<u32>; 2],
    /// Set when a new publisher takes over: its first timestamp is placed `gap_ms` after the last one sent.
    rebase_gap: Option<u32>,
}

impl TimestampNormalizer {
    /// The next timestamp starts a new timeline `gap_ms` after the last one sent.
    pub fn rebase_after(&mut self, gap_ms: u32) {
        self.rebase_gap = Some(gap_ms);
    }

    /// The outgoing timestamp of a frame of `track` that came in with `ts_in`.
    pub fn map(&mut self, ts_in: u32, track: Track) -> u32 {
        let slot = match track {
            Track::Audio => Some(0),
            Track::Video => Some(1),
            Track::Other => None,
        };
        let rebase = match (self.rebase_gap.take(), self.last_in, self.last_out) {
            (Some(gap), _, Some(last_out)) => Some(last_out as i64 + gap.max(1) as i64),
            (None, Some(last_in), Some(last_out)) => {
                let delta = ts_in.wrapping_sub(last_in) as i32 as i64;
                let track_back = slot
                    .and_then(|i| self.last_track_out[i])
                    .is_some_and(|last| ts_in as i64 + self.offset < last as i64);
                // A big jump either way, or a track stepping back in time, is a
                // discontinuity of the encoder's clock.
                if !(-MAX_BACKWARD_MS..=MAX_FORWARD_MS).contains(&delta) || track_back {
                    Some(last_out as i64 + JUMP_GAP_MS)
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(target) = rebase {
            self.offset = target - ts_in as i64;
        }
        self.last_in = Some(ts_in);
        let out = (ts_in as i64 + self.offset) as u32;
        self.last_out = Some(self.last_out.map_or(out, |l| l.max(out)));
        if let Some(i) = slot {
            self.last_track_out[i] = Some(out);
        }
        out
    }

    pub fn last_out(&self) -> Option<u32> {
        self.last_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Track::{Audio, Video};

    #[test]
    fn passes_through_normal_timestamps() {
        let mut n = TimestampNormalizer::default();
        // Video and audio interleaved, each in order, slightly out of order across tracks.
        for (ts, track) in [
            (0, Video),
            (33, Video),
            (23, Audio),
            (66, Video),
            (46, Audio),
        ] {
            assert_eq!(n.map(ts, track), ts);
        }
        assert_eq!(n.map(100, Track::Other), 100);
    }

    #[test]
    fn republish_continues_after_gap() {
        let mut n = TimestampNormalizer::default();
        n.map(0, Video);
        n.map(5000, Video);
        n.rebase_after(2000);
        assert_eq!(n.map(0, Video), 7000);
        assert_eq!(n.map(40, Video), 7040);
    }

    #[test]
    fn jumps_are_rebased() {
        let mut n = TimestampNormalizer::default();
        n.map(1000, Video);
        assert_eq!(n.map(1040, Video), 1040);
        // backwards by an hour
        assert_eq!(n.map(10, Video), 1140);
        assert_eq!(n.map(50, Video), 1180);
        // forward by a day
        assert_eq!(n.map(86_400_000, Video), 1280);
    }

    #[test]
    fn a_track_stepping_back_a_little_is_rebased() {
        let mut n = TimestampNormalizer::default();
        n.map(1000, Video);
        n.map(1020, Audio);
        assert_eq!(n.map(1040, Video), 1040);
        // The encoder's clock goes back half a second: within the interleaving
        // tolerance, but video cannot go back.
        assert_eq!(n.map(540, Video), 1140);
        assert_eq!(n.map(560, Audio), 1160);
        assert_eq!(n.map(580, Video), 1180);
    }
}
