//! Keeps a stream's outgoing timestamps monotonic across publisher reconnects and across
//! large jumps an encoder may send, so every subscriber sees one continuous timeline.

/// Jumps larger than these (ms) are treated as discontinuities and re-based.
const MAX_BACKWARD_MS: i64 = 1_000;
const MAX_FORWARD_MS: i64 = 10_000;

#[derive(Debug, Default, Clone)]
pub struct TimestampNormalizer {
    offset: i64,
    last_in: Option<u32>,
    last_out: Option<u32>,
    /// Set when a new publisher takes over: its first timestamp is placed `gap_ms` after the last one sent.
    rebase_gap: Option<u32>,
}

impl TimestampNormalizer {
    /// The next timestamp starts a new timeline `gap_ms` after the last one sent.
    pub fn rebase_after(&mut self, gap_ms: u32) {
        self.rebase_gap = Some(gap_ms);
    }

    pub fn map(&mut self, ts_in: u32) -> u32 {
        let rebase = match (self.rebase_gap.take(), self.last_in, self.last_out) {
            (Some(gap), _, Some(last_out)) => Some(last_out as i64 + gap.max(1) as i64),
            (None, Some(last_in), Some(last_out)) => {
                let delta = ts_in.wrapping_sub(last_in) as i32 as i64;
                if !(-MAX_BACKWARD_MS..=MAX_FORWARD_MS).contains(&delta) {
                    Some(last_out as i64 + 1)
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
        self.last_out = Some(out);
        out
    }

    pub fn last_out(&self) -> Option<u32> {
        self.last_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_through_normal_timestamps() {
        let mut n = TimestampNormalizer::default();
        for ts in [0, 33, 23, 66, 46, 100] {
            assert_eq!(n.map(ts), ts);
        }
    }

    #[test]
    fn republish_continues_after_gap() {
        let mut n = TimestampNormalizer::default();
        n.map(0);
        n.map(5000);
        n.rebase_after(2000);
        assert_eq!(n.map(0), 7000);
        assert_eq!(n.map(40), 7040);
    }

    #[test]
    fn jumps_are_rebased() {
        let mut n = TimestampNormalizer::default();
        n.map(1000);
        assert_eq!(n.map(1040), 1040);
        // backwards by an hour
        assert_eq!(n.map(10), 1041);
        assert_eq!(n.map(50), 1081);
        // forward by a day
        assert_eq!(n.map(86_400_000), 1082);
    }
}
