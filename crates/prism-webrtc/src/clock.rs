//! Timestamps between the hub (milliseconds, 32 bits, monotonic per stream but wrapping
//! after 49.7 days) and RTP (32-bit ticks of the codec clock, random start, wrapping).
//!
//! Egress: [`Unwrap32`] extends hub milliseconds to 64 bits, [`to_rtp`] scales them to the
//! codec clock (str0m takes 64-bit media times and truncates to 32 bits on the wire, so
//! the RTP side wraps naturally). Ingest: [`TrackClock`] anchors each track's first RTP
//! timestamp at the time it arrived on a clock shared by the session's tracks, so audio
//! and video start in sync within the network's jitter, then follows RTP time exactly.
//!
//! A/V sync from RTCP sender reports: arrival times only line tracks up when the sender
//! sends each sample as soon as it is captured. An encoder that holds video back (look-
//! ahead, a slow keyframe) or a network path that delays one track skews them. A sender
//! report pairs an RTP time with the sender's wall clock (NTP), the same clock for all its
//! tracks (RFC 3550 §6.4.1), so once a track has one its packets are placed by sender wall
//! time: [`TrackClock::map_synced`] with the session's [`SyncOrigin`] (where sender wall
//! time meets session time, set by the first report). Tracks without a report keep their
//! arrival anchor; a track's times never step back when it switches.

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

    /// What `v` unwraps to next to the last value, without moving on (`None` before the
    /// first value).
    pub fn peek(&self, v: u32) -> Option<u64> {
        let last = self.last?;
        let delta = v.wrapping_sub(last as u32) as i32;
        Some(last.saturating_add_signed(i64::from(delta)))
    }
}

/// Where the sender's wall clock (ms) meets session time (ms): set from the first sender
/// report of any track, shared by the session's tracks.
pub type SyncOrigin = Option<(u64, u64)>;

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
    /// The latest sender report: RTP time (as received) and sender wall time in ms.
    report: Option<(u32, u64)>,
    /// The last time handed out (synced times never step back).
    last_out: Option<u64>,
}

impl TrackClock {
    pub fn new(rate: u32) -> Self {
        Self {
            rate,
            unwrap: Unwrap32::new(),
            anchor: None,
            report: None,
            last_out: None,
        }
    }

    /// A sender report of this track: RTP time `rtp` was the sender's wall clock
    /// `wall_ms` (any fixed origin shared by the sender's tracks, e.g. the Unix epoch).
    pub fn sender_report(&mut self, rtp: u32, wall_ms: u64) {
        self.report = Some((rtp, wall_ms));
    }

    /// As [`TrackClock::map`], but by the sender's wall clock once this track has a sender
    /// report: session time = `origin`'s session time + sender wall time since `origin`'s.
    /// The first track to map with a report sets `origin` where its arrival anchor put
    /// that packet, so nothing jumps for it.
    pub fn map_synced(&mut self, rtp: u32, arrival_ms: u64, origin: &mut SyncOrigin) -> u64 {
        let by_arrival = self.map(rtp, arrival_ms);
        let out = match self.report {
            Some((sr_rtp, sr_wall)) => {
                // Both unwrapped next to this packet's time.
                let t = self.unwrap.peek(rtp).unwrap_or(0);
                let sr_t = self.unwrap.peek(sr_rtp).unwrap_or(t);
                let since_sr = t as i64 - sr_t as i64;
                let ms = since_sr.saturating_mul(1000) / i64::from(self.rate.max(1));
                let wall = sr_wall.saturating_add_signed(ms);
                let (o_wall, o_session) = *origin.get_or_insert((wall, by_arrival));
                o_session.saturating_add_signed(wall as i64 - o_wall as i64)
            }
            None => by_arrival,
        };
        let out = self.last_out.map_or(out, |l| out.max(l));
        self.last_out = Some(out);
        out
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

    /// A sender captures audio and video together at wall time W (ms) but its video
    /// reaches Prism 200 ms later than its audio (encoder look-ahead). Virtual time: the
    /// session clock is arrival ms, wall clock ms = session ms + 1_000_000.
    #[test]
    fn sender_reports_line_up_tracks_that_arrive_skewed() {
        const SKEW: u64 = 200;
        const WALL: u64 = 1_000_000;
        let mut video = TrackClock::new(90_000);
        let mut audio = TrackClock::new(48_000);
        let mut origin: SyncOrigin = None;
        // Random RTP starts, video's about to wrap.
        let (v0, a0) = (u32::MAX - 45_000, 123_456u32);
        let v_rtp = |ms: u64| v0.wrapping_add((ms * 90) as u32);
        let a_rtp = |ms: u64| a0.wrapping_add((ms * 48) as u32);
        // Capture time c arrives at c (audio) and c + SKEW (video).
        let mut skew_before = None;
        let mut skew_after = None;
        for c in (0..10_000u64).step_by(20) {
            if c == 5_000 {
                // Sender reports (RFC 3550: same wall clock for both tracks).
                video.sender_report(v_rtp(c), WALL + c);
                audio.sender_report(a_rtp(c), WALL + c);
            }
            let a = audio.map_synced(a_rtp(c), c + 100, &mut origin);
            let v = video.map_synced(v_rtp(c), c + 100 + SKEW, &mut origin);
            let skew = v as i64 - a as i64;
            if c == 4_000 {
                skew_before = Some(skew);
            }
            if c == 9_000 {
                skew_after = Some(skew);
            }
        }
        assert_eq!(
            skew_before,
            Some(SKEW as i64),
            "arrival anchors carry the skew"
        );
        assert_eq!(skew_after, Some(0), "sender reports remove it");
        // The first synced packet set the origin at its arrival-anchored time: audio did
        // not jump (its anchor was right).
        assert_eq!(audio.map_synced(a_rtp(10_000), 0, &mut origin), 10_100);
        // Video's switch went back by the skew: held, never stepping back.
        let mut v = TrackClock::new(90_000);
        let mut o: SyncOrigin = Some((WALL, 100));
        let t1 = v.map_synced(v_rtp(0), 300, &mut o);
        v.sender_report(v_rtp(0), WALL);
        let t2 = v.map_synced(v_rtp(20), 320, &mut o);
        assert_eq!((t1, t2), (300, 300));
        assert_eq!(v.map_synced(v_rtp(400), 700, &mut o), 500);
    }
}
