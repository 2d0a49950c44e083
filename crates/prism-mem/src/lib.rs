//! One accounted budget for every byte of media the process holds (`[limits]
//! max_memory_mb`). Holders of media bytes take a [`MemCharge`] from the [`Budget`] for
//! what they hold; the charge credits the bytes back when dropped, so the counters follow
//! the data whatever path frees it (a queue shed, a GOP replaced, a connection closed).
//!
//! The budget only counts and answers questions (is it above its high-water mark?): what
//! to refuse or shed is the holders' business. Atomics only, no locks: it is touched once
//! per frame on the fan-out path.
//!
//! Hysteresis: the budget turns "high" at [`Budget::high_water`] (90 % of the limit) and
//! back to normal only below [`Budget::low_water`] (75 %), so publishes are not refused
//! and admitted in turn by every frame around one threshold. Shedding brings usage under
//! the low mark within a frame or two, so the budget also stays [under
//! pressure](Budget::under_pressure) for [`PRESSURE_HOLD`] after each crossing of the high
//! mark: long enough for new publishes to be refused and hoarders kept small, rather than
//! one GOP cache refilling and being shed in turn.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long the budget stays under pressure after usage last crossed the high-water mark.
pub const PRESSURE_HOLD: Duration = Duration::from_secs(10);

/// Nanoseconds since the first call (0 is never returned: it means "never").
fn clock_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    (epoch.elapsed().as_nanos() as u64).max(1)
}

/// What a charge's bytes are held for: the `pool` label of `prism_memory_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pool {
    /// Media frames the hub holds (GOP caches, subscriber queues) with their once-per-frame
    /// egress serialization. A frame shared by the cache and every queue counts once.
    Frames,
    /// Protocol reassembly: messages arriving in pieces (RTMP chunks, over TCP or a tunnel).
    Reassembly,
    /// RTMPT (HTTP tunnel) sessions' buffered bytes.
    Rtmpt,
    /// HLS/LL-HLS segments and parts kept for serving (including the DVR window).
    Hls,
    /// Anything else holding media.
    Other,
    /// SRT ingest: the MPEG-TS demuxer's input, PSI and PES reassembly buffers, and an
    /// estimate of srt-tokio's receive buffer (receive rate × latency).
    Srt,
    /// RTSP ingest (pulled cameras): interleaved-TCP input, UDP reorder buffers and the
    /// depacketizers' partial access units.
    Rtsp,
    /// WebRTC sessions: datagrams queued for the session task and an estimate of what
    /// str0m holds (receive reordering, send buffer for retransmissions).
    Webrtc,
    /// Transcoder workers: the buffers of the pipes to and from each ffmpeg child.
    Transcode,
}

impl Pool {
    pub const ALL: [Pool; 9] = [
        Pool::Frames,
        Pool::Reassembly,
        Pool::Rtmpt,
        Pool::Hls,
        Pool::Other,
        Pool::Srt,
        Pool::Rtsp,
        Pool::Webrtc,
        Pool::Transcode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Frames => "frames",
            Pool::Reassembly => "reassembly",
            Pool::Rtmpt => "rtmpt",
            Pool::Hls => "hls",
            Pool::Other => "other",
            Pool::Srt => "srt",
            Pool::Rtsp => "rtsp",
            Pool::Webrtc => "webrtc",
            Pool::Transcode => "transcode",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What [`MemCharge::track`] rounds to.
pub const TRACK_GRANULE: usize = 4096;

/// High-water mark, in percent of the limit.
const HIGH_PERCENT: usize = 90;
/// Low-water mark, in percent of the limit.
const LOW_PERCENT: usize = 75;

/// The process's media-memory budget: bytes per pool against one limit.
pub struct Budget {
    limit: usize,
    pools: [AtomicUsize; Pool::ALL.len()],
    total: AtomicUsize,
    high: AtomicBool,
    /// [`clock_ns`] of the last crossing of the high-water mark; 0 = never.
    high_at: AtomicU64,
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("limit", &self.limit)
            .field("used", &self.used())
            .field("high", &self.is_high())
            .finish()
    }
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit: limit.max(1),
            pools: Default::default(),
            total: AtomicUsize::new(0),
            high: AtomicBool::new(false),
            high_at: AtomicU64::new(0),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
    /// Above this, new publishes are refused and the biggest holders shed.
    pub fn high_water(&self) -> usize {
        self.limit / 100 * HIGH_PERCENT
    }
    /// Below this, the budget is back to normal.
    pub fn low_water(&self) -> usize {
        self.limit / 100 * LOW_PERCENT
    }

    /// Bytes charged now, all pools.
    pub fn used(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Bytes charged now to `pool`.
    pub fn pool(&self, pool: Pool) -> usize {
        self.pools[pool.index()].load(Ordering::Relaxed)
    }

    /// True from the moment usage crosses the high-water mark until it falls below the
    /// low-water mark.
    pub fn is_high(&self) -> bool {
        self.high.load(Ordering::Relaxed)
    }

    /// True while [high](Budget::is_high) and for [`PRESSURE_HOLD`] after usage last
    /// crossed the high-water mark: new publishes are refused and the streams holding more
    /// than their share shed.
    pub fn under_pressure(&self) -> bool {
        if self.is_high() {
            return true;
        }
        let at = self.high_at.load(Ordering::Relaxed);
        at != 0 && clock_ns().saturating_sub(at) < PRESSURE_HOLD.as_nanos() as u64
    }

    /// Charges `bytes` to `pool`; the returned guard credits them back when dropped.
    pub fn charge(self: &Arc<Self>, pool: Pool, bytes: usize) -> MemCharge {
        self.add(pool, bytes);
        MemCharge {
            inner: Some(Charged {
                budget: self.clone(),
                pool,
                bytes: AtomicUsize::new(bytes),
            }),
        }
    }

    fn add(&self, pool: Pool, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.pools[pool.index()].fetch_add(bytes, Ordering::Relaxed);
        let total = self.total.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total > self.high_water() && !self.high.load(Ordering::Relaxed) {
            self.high.store(true, Ordering::Relaxed);
            self.high_at.store(clock_ns(), Ordering::Relaxed);
        }
    }

    fn sub(&self, pool: Pool, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.pools[pool.index()].fetch_sub(bytes, Ordering::Relaxed);
        let total = self.total.fetch_sub(bytes, Ordering::Relaxed) - bytes;
        if total < self.low_water() && self.high.load(Ordering::Relaxed) {
            self.high.store(false, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
struct Charged {
    budget: Arc<Budget>,
    pool: Pool,
    bytes: AtomicUsize,
}

/// Bytes charged to a [`Budget`] pool, credited back when dropped. The default charge is
/// empty and belongs to no budget (then [`MemCharge::grow`] and friends do nothing): code
/// that runs without a budget (tests, tools) pays one `None` per holder.
///
/// A clone is empty, like a clone of a frame's egress cache: the bytes belong to one holder,
/// and a cloned frame shares its payload rather than holding new bytes. Charges never make
/// two holders differ (`==` is always true), so frames compare by content.
#[derive(Debug, Default)]
pub struct MemCharge {
    inner: Option<Charged>,
}

impl MemCharge {
    /// Bytes this charge holds now.
    pub fn bytes(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |c| c.bytes.load(Ordering::Relaxed))
    }

    /// Adds `bytes` to the charge (the holder grew: an egress serialization was cached).
    /// Through `&self`, so a charge inside a shared frame can grow.
    pub fn grow(&self, bytes: usize) {
        if let Some(c) = &self.inner {
            c.bytes.fetch_add(bytes, Ordering::Relaxed);
            c.budget.add(c.pool, bytes);
        }
    }

    /// Takes `bytes` off the charge (the holder gave some up), never below 0.
    pub fn shrink(&self, bytes: usize) {
        if let Some(c) = &self.inner {
            let mut old = c.bytes.load(Ordering::Relaxed);
            loop {
                let new = old.saturating_sub(bytes);
                match c
                    .bytes
                    .compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => {
                        c.budget.sub(c.pool, old - new);
                        return;
                    }
                    Err(now) => old = now,
                }
            }
        }
    }

    /// Sets the charge to `bytes` (a buffer grew or shrank).
    pub fn set(&self, bytes: usize) {
        if let Some(c) = &self.inner {
            let old = c.bytes.swap(bytes, Ordering::Relaxed);
            if bytes > old {
                c.budget.add(c.pool, bytes - old);
            } else {
                c.budget.sub(c.pool, old - bytes);
            }
        }
    }

    /// Sets the charge to `bytes` rounded up to [`TRACK_GRANULE`], touching the budget only
    /// when that changes: for holders that re-measure their buffers as they go (per read,
    /// per wake-up), so a buffer moving by a few bytes costs one load.
    pub fn track(&self, bytes: usize) {
        if let Some(c) = &self.inner {
            let rounded = bytes.div_ceil(TRACK_GRANULE) * TRACK_GRANULE;
            if rounded != c.bytes.load(Ordering::Relaxed) {
                self.set(rounded);
            }
        }
    }

    /// Moves up to `bytes` of this charge into a new charge of the same budget and pool
    /// (the budget's totals do not change): a holder handing part of what it holds to
    /// another (a frame's payload to the frame's cold copy). Empty for an empty charge.
    pub fn split_off(&self, bytes: usize) -> MemCharge {
        let Some(c) = &self.inner else {
            return MemCharge::default();
        };
        let old = c
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b - b.min(bytes))
            })
            .unwrap_or_else(|b| b);
        MemCharge {
            inner: Some(Charged {
                budget: c.budget.clone(),
                pool: c.pool,
                bytes: AtomicUsize::new(old.min(bytes)),
            }),
        }
    }

    /// The budget charged, if any.
    pub fn budget(&self) -> Option<&Arc<Budget>> {
        self.inner.as_ref().map(|c| &c.budget)
    }
}

impl Drop for MemCharge {
    fn drop(&mut self) {
        if let Some(c) = &self.inner {
            c.budget.sub(c.pool, c.bytes.load(Ordering::Relaxed));
        }
    }
}

impl Clone for MemCharge {
    fn clone(&self) -> Self {
        MemCharge::default()
    }
}

impl PartialEq for MemCharge {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for MemCharge {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_credit_back_on_drop() {
        let b = Budget::new(1000);
        let a = b.charge(Pool::Frames, 100);
        let h = b.charge(Pool::Hls, 50);
        assert_eq!(
            (b.used(), b.pool(Pool::Frames), b.pool(Pool::Hls)),
            (150, 100, 50)
        );
        a.grow(20);
        assert_eq!((a.bytes(), b.pool(Pool::Frames)), (120, 120));
        a.shrink(30);
        assert_eq!((a.bytes(), b.pool(Pool::Frames)), (90, 90));
        a.shrink(1000);
        assert_eq!((a.bytes(), b.pool(Pool::Frames)), (0, 0), "never below 0");
        a.grow(120);
        h.set(10);
        assert_eq!(b.used(), 130);
        drop(a);
        assert_eq!(b.used(), 10);
        let c = h.clone();
        assert_eq!(c.bytes(), 0, "a clone holds nothing");
        drop(c);
        drop(h);
        assert_eq!(b.used(), 0);
        for p in Pool::ALL {
            assert_eq!(b.pool(p), 0);
        }
    }

    #[test]
    fn split_off_moves_bytes_without_changing_the_totals() {
        let b = Budget::new(1000);
        let a = b.charge(Pool::Frames, 300);
        let part = a.split_off(100);
        assert_eq!((a.bytes(), part.bytes(), b.used()), (200, 100, 300));
        // More than it holds: all of it, and the rest of the budget is untouched.
        let rest = a.split_off(500);
        assert_eq!(
            (a.bytes(), rest.bytes(), b.pool(Pool::Frames)),
            (0, 200, 300)
        );
        drop(a);
        assert_eq!(b.used(), 300);
        drop(part);
        assert_eq!(b.used(), 200);
        drop(rest);
        assert_eq!(b.used(), 0);
        assert_eq!(MemCharge::default().split_off(10).bytes(), 0);
    }

    #[test]
    fn high_water_with_hysteresis() {
        let b = Budget::new(1000);
        assert_eq!((b.high_water(), b.low_water()), (900, 750));
        let base = b.charge(Pool::Frames, 800);
        assert!(!b.is_high());
        let spike = b.charge(Pool::Frames, 150);
        assert!(b.is_high());
        drop(spike);
        // 800: below high, above low: still high.
        assert!(b.is_high());
        base.set(700);
        assert!(!b.is_high());
        // Still under pressure for a while after the crossing.
        assert!(b.under_pressure());
        assert!(!Budget::new(1000).under_pressure());
    }

    #[test]
    fn track_rounds_to_the_granule() {
        let b = Budget::new(1 << 20);
        let c = b.charge(Pool::Srt, 0);
        c.track(1);
        assert_eq!(b.pool(Pool::Srt), TRACK_GRANULE);
        c.track(TRACK_GRANULE + 1);
        assert_eq!(b.pool(Pool::Srt), 2 * TRACK_GRANULE);
        c.track(0);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn default_charge_is_inert() {
        let c = MemCharge::default();
        c.grow(10);
        c.set(5);
        c.shrink(3);
        c.track(5);
        assert_eq!(c.bytes(), 0);
        assert!(c.budget().is_none());
    }
}
