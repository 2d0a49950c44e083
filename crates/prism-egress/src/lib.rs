//! The egress engine: the state machine between a subscriber's hub queue and the write side
//! of its connection, shared by every output (RTMP players and push targets, SRT, and the
//! HTTP/WebRTC/RTSP outputs to come). An output protocol only turns frames into bytes; when
//! to take frames, when to write, how long output may be held to merge writes, when a peer
//! is too slow and when it has stopped reading are decided here, once.
//!
//! Sans-I/O and clock-free, in quinn's vocabulary: `handle_*` methods take inputs (bytes
//! queued, bytes written, the hub's answer, `now`), `#[must_use] poll_*` methods say what to
//! do next. The engine never sees a socket, a frame or a clock: it counts bytes, so it is
//! tested with virtual time (tests/).
//!
//! It must not know about tokio, the hub's types, or any wire format.
//!
//! # Driving it
//!
//! Each wake-up of the connection's task runs one round, in this order:
//!
//! 1. [`Egress::handle_timeout`]`(now)`: expires timers (write timeout, queue check).
//! 2. [`Egress::poll_event`] until `None`: [`Event::Check`] asks the driver to export the
//!    subscription's drops and answer with [`Egress::handle_verdict`]; [`Event::Failed`]
//!    and [`Event::Finished`] end the connection.
//! 3. [`Egress::poll_take`]: `Some(Take::Wait)` = take frames from the hub queue registering
//!    for a wake-up, `Some(Take::Peek)` = look without registering (a merge tick; fall back
//!    to `Wait` if nothing is there), `None` = leave them in the hub queue. Encode what was
//!    taken, add its bytes with [`Egress::handle_queued`], then report the take with
//!    [`Egress::handle_took`].
//! 4. [`Egress::poll_transmit`]: while `true`, write the pending output and report what the
//!    socket took with [`Egress::handle_written`].
//! 5. Read only while [`Egress::wants_input`]; queue any reply with `handle_queued`.
//! 6. [`Egress::poll_timeout`]: arm the task's timer; sleep until it or an I/O wake-up.
//!
//! ```
//! use prism_egress::{Config, Egress, Event, Take};
//! use std::time::{Duration, Instant};
//!
//! let t0 = Instant::now();
//! let mut e = Egress::new(Config::default(), t0, t0);
//! let mut socket_room = 100_000; // what a pretend socket accepts
//! let mut now = t0;
//! for _round in 0..3 {
//!     e.handle_timeout(now);
//!     while let Some(ev) = e.poll_event() {
//!         match ev {
//!             Event::Check => e.handle_verdict(false, false),
//!             Event::Failed(reason) => panic!("{}", reason.as_str()),
//!             Event::Finished => return,
//!         }
//!     }
//!     if let Some(Take::Wait | Take::Peek) = e.poll_take(now) {
//!         e.handle_queued(4_000, now); // one encoded frame
//!         e.handle_took(true, now);
//!     }
//!     while e.poll_transmit(now) {
//!         let n = e.pending().min(socket_room);
//!         if n == 0 { break; }
//!         socket_room -= n;
//!         e.handle_written(n, now);
//!     }
//!     let _sleep_until = e.poll_timeout(now);
//!     now += Duration::from_millis(40);
//! }
//! assert_eq!(e.bytes_written(), 12_000);
//! ```
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::time::{Duration, Instant};

/// Tunables; one set for every kind of output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Pending output above which no frames are taken: a slow peer's backlog stays in the
    /// hub queue, where the GOP-aware drop policy and the queue budget apply.
    pub high_water: usize,
    /// Most frame bytes taken from the hub queue per take.
    pub batch_bytes: usize,
    /// Pending output that made no progress for this long fails the connection.
    pub write_timeout: Duration,
    /// `write_merge_ms`: how long output may be held so several frames go out in one write
    /// (zero: every take is written at once).
    pub merge: Duration,
    /// Held output this large is written at once: the merge has paid off.
    pub merge_flush_bytes: usize,
    /// How often drops are exported and the hub's verdict is looked at.
    pub check_interval: Duration,
    /// Pending output above which the peer's input is not read. Almost every message a peer
    /// sends can queue a reply (pings, commands), so a peer that sends without reading
    /// would otherwise grow the output without bound; it is closed by the write timeout.
    pub max_pending_reading: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            high_water: 256 * 1024,
            batch_bytes: 256 * 1024,
            // Targets used 20 s, players 30 s; a stalled peer is normally shed by its queue
            // budget (overflow_disconnect, 10 s by default) well before either.
            write_timeout: Duration::from_secs(20),
            merge: Duration::ZERO,
            merge_flush_bytes: 64 * 1024,
            check_interval: Duration::from_millis(250),
            max_pending_reading: 1024 * 1024,
        }
    }
}

/// How to take frames from the hub queue this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Take what is queued and register for a wake-up when more arrives.
    Wait,
    /// A merge tick: take what is queued without registering (the stream is flowing, the
    /// timer wakes us next); if nothing is queued, fall back to [`Take::Wait`].
    Peek,
}

/// Why the engine gave up on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Failure {
    /// The hub dropped the subscriber for staying over its queue budget.
    TooSlow,
    /// Pending output made no progress for [`Config::write_timeout`].
    WriteTimeout,
}

impl Failure {
    /// The metrics label (`reason`), the same for players and targets.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::TooSlow => "too_slow",
            Failure::WriteTimeout => "write_timeout",
        }
    }

    /// A line for the log.
    pub fn detail(self) -> &'static str {
        match self {
            Failure::TooSlow => "stayed over its queue budget",
            Failure::WriteTimeout => "peer stopped reading",
        }
    }
}

/// What the driver must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Export the subscription's drops and queue depth, then answer with
    /// [`Egress::handle_verdict`].
    Check,
    /// The subscription ended while output was blocked (it is not being read, so its end
    /// would not be seen otherwise): say goodbye and close.
    Finished,
    /// Close the connection with this reason.
    Failed(Failure),
}

/// One output connection's pacing state. See the crate docs for the poll order.
#[derive(Debug)]
pub struct Egress {
    cfg: Config,
    /// Origin of the merge grid, shared by every connection of the process so held
    /// connections flush on the same ticks (the workers write in bursts and sleep between).
    epoch: Instant,
    pending: usize,
    /// Since when pending output has waited without write progress: the last write, or when
    /// output was queued while nothing was pending. Never an old write before an idle spell.
    stalled_since: Instant,
    /// While merging: when held output is released. Some and in the past = a tick is due.
    hold_until: Option<Instant>,
    /// A tick released held output: write everything pending even though the next hold has
    /// started.
    flushing: bool,
    next_check: Instant,
    check_due: bool,
    finished: bool,
    failed: Option<Failure>,
    /// The end (failed or finished) was reported.
    done: bool,
    bytes_written: u64,
}

impl Egress {
    /// `epoch`: the process-wide origin of the merge grid; `now`: the connection's start.
    pub fn new(cfg: Config, epoch: Instant, now: Instant) -> Self {
        Egress {
            cfg,
            epoch,
            pending: 0,
            stalled_since: now,
            hold_until: None,
            flushing: false,
            next_check: now + cfg.check_interval,
            check_due: false,
            finished: false,
            failed: None,
            done: false,
            bytes_written: 0,
        }
    }

    // --- getters ---------------------------------------------------------------------

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Output queued and not written yet.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Bytes the socket took so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// True while pending output is above the high-water mark (no frames are taken).
    pub fn is_blocked(&self) -> bool {
        self.pending >= self.cfg.high_water
    }

    /// Whether the peer's input may be read now (see [`Config::max_pending_reading`]).
    pub fn wants_input(&self) -> bool {
        self.pending < self.cfg.max_pending_reading
    }

    /// True while output is held for the merge grid.
    pub fn is_holding(&self, now: Instant) -> bool {
        self.hold_until.is_some_and(|t| now < t)
    }

    // --- inputs ----------------------------------------------------------------------

    /// `n` bytes were added to the connection's output (encoded frames, protocol replies).
    pub fn handle_queued(&mut self, n: usize, now: Instant) {
        if n == 0 {
            return;
        }
        if self.pending == 0 {
            self.stalled_since = now;
        }
        self.pending += n;
    }

    /// The answer to [`Egress::poll_take`]: whether frames were taken (their bytes already
    /// reported with `handle_queued`).
    pub fn handle_took(&mut self, took: bool, now: Instant) {
        if self.cfg.merge.is_zero() {
            return;
        }
        match self.hold_until {
            // A tick: what was held goes out now. A stream still flowing stays on the grid,
            // woken by the timer alone; an empty look waits for the hub's wake-up again.
            Some(t) if t <= now => {
                self.flushing = true;
                self.hold_until = took.then(|| self.next_tick(now));
            }
            Some(_) => {}
            None if took => self.hold_until = Some(self.next_tick(now)),
            None => {}
        }
    }

    /// The socket took `n` bytes of pending output.
    pub fn handle_written(&mut self, n: usize, now: Instant) {
        self.pending -= n.min(self.pending);
        self.bytes_written += n as u64;
        self.stalled_since = now;
        if self.pending == 0 {
            self.flushing = false;
        }
    }

    /// Expires timers; call at the start of every round.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_check {
            self.next_check = now + self.cfg.check_interval;
            self.check_due = true;
        }
        if self.pending > 0 && now >= self.stalled_since + self.cfg.write_timeout {
            self.failed.get_or_insert(Failure::WriteTimeout);
        }
    }

    /// The answer to [`Event::Check`]: whether the hub gave up on the subscriber, and
    /// whether its subscription has finished (stream ended or subscriber removed).
    pub fn handle_verdict(&mut self, too_slow: bool, finished: bool) {
        if too_slow {
            self.failed.get_or_insert(Failure::TooSlow);
        } else if finished && self.is_blocked() {
            // Frames are not being taken, so the end in the hub queue would not be seen. A
            // held (merging) connection takes its frames and then the end at its next tick.
            self.finished = true;
        }
    }

    // --- outputs ---------------------------------------------------------------------

    /// What to do next: see [`Event`].
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        // Each end is reported once; the connection is over after it.
        if self.done {
            return None;
        }
        if let Some(f) = self.failed {
            self.done = true;
            return Some(Event::Failed(f));
        }
        if self.finished {
            self.done = true;
            return Some(Event::Finished);
        }
        if std::mem::take(&mut self.check_due) {
            return Some(Event::Check);
        }
        None
    }

    /// Whether (and how) to take frames from the hub queue now.
    #[must_use]
    pub fn poll_take(&self, now: Instant) -> Option<Take> {
        if self.is_blocked() {
            return None;
        }
        match self.hold_until {
            Some(t) if now < t => None,
            Some(_) => Some(Take::Peek),
            None => Some(Take::Wait),
        }
    }

    /// True when pending output should be written now (false while it is held for the
    /// merge grid, below [`Config::merge_flush_bytes`], or when nothing is pending).
    #[must_use]
    pub fn poll_transmit(&self, now: Instant) -> bool {
        self.pending > 0
            && (self.flushing
                || !self.is_holding(now)
                || self.pending >= self.cfg.merge_flush_bytes)
    }

    /// When the driver must run a round even without I/O: the write timeout while output is
    /// pending, the queue check while output is blocked (frames are not being taken, so
    /// nothing else would notice the hub's verdict), and the end of a hold.
    #[must_use]
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let mut deadline: Option<Instant> = None;
        let mut at = |t: Instant| deadline = Some(deadline.map_or(t, |d| d.min(t)));
        if self.pending > 0 {
            at(self.stalled_since + self.cfg.write_timeout);
            if self.is_blocked() {
                at(self.next_check);
            }
        }
        // Only a hold still to come: an expired one is resolved by the next take, which the
        // next I/O wake-up makes (or, while blocked, the write that unblocks).
        if let Some(t) = self.hold_until.filter(|t| now < *t) {
            at(t);
        }
        if (self.failed.is_some() || self.finished) && !self.done || self.check_due {
            at(now);
        }
        deadline
    }

    /// The next tick of the merge grid after `now`: a frame waits less than `merge` (half
    /// of it on average).
    fn next_tick(&self, now: Instant) -> Instant {
        let step = self.cfg.merge.as_nanos().max(1);
        let since = now.saturating_duration_since(self.epoch).as_nanos();
        let ticks = since / step + 1;
        self.epoch + Duration::from_nanos(u64::try_from(ticks * step).unwrap_or(u64::MAX))
    }
}

/// Turns running totals (drops per reason, ...) into the increments not exported yet, so a
/// counter metric is advanced by each drop exactly once however often it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deltas<const N: usize> {
    reported: [u64; N],
}

impl<const N: usize> Default for Deltas<N> {
    fn default() -> Self {
        Deltas { reported: [0; N] }
    }
}

impl<const N: usize> Deltas<N> {
    /// The increase of counter `i` since the last call, given its running `total` (0 for an
    /// out-of-range `i` or a total that went backwards).
    pub fn delta(&mut self, i: usize, total: u64) -> u64 {
        let Some(r) = self.reported.get_mut(i) else {
            return 0;
        };
        let d = total.saturating_sub(*r);
        *r = (*r).max(total);
        d
    }
}
