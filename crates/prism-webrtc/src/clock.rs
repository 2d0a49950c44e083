//! Timestamps between the hub (milliseconds, 32 bits, monotonic per stream but wrapping
//! after 49.7 days) and RTP (32-bit ticks of the codec clock, random start, wrapping).
//!
//! Egress: [`Unwrap32`] extends hub milliseconds to 64 bits, [`to_rtp`] scales them to the
//! codec clock (str0m takes 64-bit media times and truncates to 32 bits on the wire, so
//! the RTP side wraps naturally). Ingest: [`TrackClock`] anchors each track's first RTP
//! timestamp at the time it arrived on a clock shared by the session's tracks, so audio
//! and video start in sync within the network's jitter, then follows RTP time exactly.

/// Extends a wrapping 32-bit counter to 64 bits: a step forward of less than half the
/// range is a step forward, even across the wrap; a step back is taken as a step back.
#[derive(Debug, Default, Clone)]
pub struct Unwrap32 {
    last: Option<u64>,
}

impl Unwrap32 {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn unwrap(&mut self, v: u32) -> u64 {
        let Some(last) = self.last else {
            // Start in the middle of the 64-bit range's second period so a step back from
            // the first value cannot go below zero.
            let first = (1u64 << 32) | u64::from(v);
            self.last = Some(first);
            return first;
        };
        let delta = v.wrapping_sub(last as u32) as i32;
        let next = last.saturating_add_signed(i64::from(delta));
        self.last = Some(next);
        next
    }
}

/// `ms` milliseconds in ticks of a `rate` Hz clock.
pub fn to_rtp(ms: u64, rate: u32) -> u64 {
    ms.saturating_mul(u64::from(rate)) / 1000
}

/// `ticks` of a `rate` Hz clock in milliseconds (rounded down); 0 for a zero rate.
pub fn to_ms(ticks: u64, rate: u32) -> u64 {
    ticks
        .saturating_mul(1000)
        .checked_div(u64::from(rate))
        .unwrap_or(0)
}

/// One ingest track's mapping from RTP time to session milliseconds.
#[derive(Debug, Clone)]
pub struct TrackClock {
    rate: u32,
    unwrap: Unwrap32,
    /// First RTP time (unwrapped) and the session time it arrived at.
    anchor: Option<(u64, u64)>,
}

impl TrackClock {
    pub fn new(rate: u32) -> Self {
        Self {
            rate,
            unwrap: Unwrap32::new(),
            anchor: None,
        }
    }

    /// Session milliseconds of a packet with RTP timestamp `rtp`, which arrived at
    /// `arrival_ms` on the session's clock (only the first arrival matters). A timestamp
    /// from before the anchor maps to the anchor.
    pub fn map(&mut self, rtp: u32, arrival_ms: u64) -> u64 {
        let t = self.unwrap.unwrap(rtp);
        let (base, at) = *self.anchor.get_or_insert((t, arrival_ms));
        at.saturating_add(to_ms(t.saturating_sub(base), self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_crosses_the_wrap_both_ways() {
        let mut u = Unwrap32::new();
        let a = u.unwrap(u32::MAX - 10);
        let b = u.unwrap(5);
        assert_eq!(b - a, 16);
        let c = u.unwrap(u32::MAX - 2);
        assert_eq!(b - c, 8, "a step back over the wrap");
        let d = u.unwrap(1 << 30);
        assert!(d > b);
    }

    #[test]
    fn ticks_and_milliseconds() {
        assert_eq!(to_rtp(1000, 90_000), 90_000);
        assert_eq!(to_rtp(33, 90_000), 2970);
        assert_eq!(to_ms(48_000, 48_000), 1000);
        assert_eq!(to_ms(1, 0), 0);
        // Hub milliseconds past 2^32 keep growing once unwrapped.
        let mut u = Unwrap32::new();
        let a = u.unwrap(u32::MAX);
        let b = u.unwrap(9);
        assert_eq!(to_rtp(b, 90_000) - to_rtp(a, 90_000), 900);
    }

    #[test]
    fn tracks_anchor_at_arrival_and_follow_rtp_time() {
        let mut video = TrackClock::new(90_000);
        let mut audio = TrackClock::new(48_000);
        assert_eq!(video.map(4_294_000_000, 100), 100);
        assert_eq!(audio.map(77, 120), 120);
        // 1 s later by RTP time, whatever the arrival jitter.
        assert_eq!(video.map(4_294_090_000, 1500), 1100);
        // Across the 32-bit wrap.
        let wrapped = (4_294_000_000u64 + 9_000_000 - (1 << 32)) as u32;
        assert_eq!(video.map(wrapped, 0), 100_100);
        assert_eq!(audio.map(77 + 48_000, 0), 1120);
        // Reordered from before the anchor: clamped.
        assert_eq!(audio.map(10, 0), 120);
    }
}
