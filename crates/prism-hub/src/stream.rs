//! Streams, publishers and subscriptions.

use crate::queue::{DropReason, PushOutcome, QueueLimits, SubQueue};
use crate::timestamps::{TimestampNormalizer, Track};
use crate::{Frame, FrameKind};
use atomic_waker::AtomicWaker;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct HubConfig {
    /// How long a stream whose publisher vanished (without unpublishing) waits for it to
    /// come back before ending.
    pub reconnect_grace: Duration,
    /// Cap on the cached GOP; a longer GOP is not cached (joiners then wait for the next keyframe).
    pub gop_cache_max_bytes: usize,
    /// The process's media-memory budget: every published frame is charged to it (pool
    /// `frames`) until its last holder drops it. Above its high-water mark the streams
    /// holding more than their share shed (see [`PublishHandle::send`]). None: unaccounted.
    pub memory: Option<Arc<prism_mem::Budget>>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            reconnect_grace: Duration::from_secs(5),
            gop_cache_max_bytes: 32 * 1024 * 1024,
            memory: None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    #[error("stream {0} is already being published")]
    AlreadyLive(String),
    /// The hub was [closed](Hub::close): the server is shutting down.
    #[error("the server is shutting down")]
    Closed,
    /// [`Hub::publish_within`]: the limit of live streams is reached.
    #[error("{0} streams are live already")]
    TooManyStreams(usize),
}

/// Locks a mutex, recovering from poisoning: a panic elsewhere must not take the hub down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The registry of streams.
///
/// The hub reads no clock: callers pass `now` to whatever depends on time, and the end of a
/// reconnect grace window is a timer the hub's owner drives through [`Hub::poll_timeout`] and
/// [`Hub::handle_timeout`] (woken by [`Hub::timer_changed`] when an earlier one appears). A
/// hub-level timer, rather than one task per detached stream, keeps the hub free of any
/// runtime and lets tests run the grace window on virtual time.
#[derive(Debug)]
pub struct Hub {
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    config: HubConfig,
    next_publisher: AtomicU64,
    /// Set by [`Hub::close`]; read under the `streams` lock.
    closed: AtomicBool,
    timers: Mutex<Timers>,
    /// Set when the earliest expiry moved earlier (or the hub closed); cleared by
    /// [`Hub::poll_timer_changed`].
    timer_changed: AtomicBool,
    timer_waker: AtomicWaker,
}

#[derive(Debug, Default)]
struct Timers {
    /// Grace expiries of detached streams, keyed by (deadline, id of the publisher that
    /// left), so that one stream detached twice has two distinct entries.
    expiries: BTreeMap<(Instant, u64), Arc<Stream>>,
    /// The latest `now` the hub was given; what a [`PublishHandle`] dropped without
    /// [`PublishHandle::detach`] counts as its detach time (see its `Drop`).
    latest: Option<Instant>,
    /// Streams holding riding audio for some subscriber (see [`Subscription::set_audio_ride`]),
    /// keyed by (when it is due, the stream's address); at most one entry per stream is
    /// current ([`StreamState::ride_timer`]), a stale one finds nothing to do.
    rides: BTreeMap<(Instant, usize), Arc<Stream>>,
    /// What [`Hub::poll_timeout`] last returned: the driver sleeps until then, so a ride
    /// due later needs no wake-up.
    sleeping_until: Option<Instant>,
}

/// Riding audio due within this of a hub timer's expiry goes out with it: the timer driver
/// wakes at most once per this span for all streams' rides together, and audio waits
/// between the ride less this and the ride.
const RIDE_SLACK: Duration = Duration::from_millis(10);

impl Hub {
    pub fn new(config: HubConfig) -> Arc<Hub> {
        Arc::new(Hub {
            streams: Mutex::new(HashMap::new()),
            config,
            next_publisher: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            timers: Mutex::new(Timers::default()),
            timer_changed: AtomicBool::new(false),
            timer_waker: AtomicWaker::new(),
        })
    }

    /// Shuts the hub: every stream ends as if its publisher unpublished (subscribers get
    /// their queued frames, then the end; publishers' connections see
    /// [`Stream::poll_kicked`]), players waiting for a stream that never started get the
    /// end too, and from now on publishing is refused and subscriptions end at once.
    /// The timer driver sees [`Hub::timer_changed`] and [`Hub::is_closed`] and may stop.
    /// Returns how many live streams were ended.
    pub fn close(&self) -> usize {
        let streams: Vec<Arc<Stream>> = {
            let streams = lock(&self.streams);
            self.closed.store(true, Ordering::Release);
            streams.values().cloned().collect()
        };
        let mut live = 0;
        for s in streams {
            let was_live = s.is_live();
            if s.kick() && was_live {
                live += 1;
            }
        }
        {
            let mut t = lock(&self.timers);
            t.expiries.clear();
            t.rides.clear();
        }
        self.signal_timer_changed();
        live
    }

    /// True once [`Hub::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Starts (or, within the grace window, resumes) publishing `app/key` at `now`. A
    /// stream whose grace window is over at `now` is not resumed, even if
    /// [`Hub::handle_timeout`] has not ended it yet: the result depends on the times given,
    /// not on how late the timer driver runs.
    pub fn publish(
        self: &Arc<Self>,
        app: &str,
        key: &str,
        now: Instant,
    ) -> Result<PublishHandle, PublishError> {
        self.publish_inner(app, key, now, None)
    }

    /// [`Hub::publish`], refused with [`PublishError::TooManyStreams`] when `max_streams`
    /// streams are live and `app/key` is not one of them (its own publisher coming back
    /// within the grace window, or a duplicate, is not a new stream). The count is taken
    /// under the lock that registers the stream, so concurrent publishes cannot overshoot.
    pub fn publish_within(
        self: &Arc<Self>,
        app: &str,
        key: &str,
        now: Instant,
        max_streams: usize,
    ) -> Result<PublishHandle, PublishError> {
        self.publish_inner(app, key, now, Some(max_streams))
    }

    fn publish_inner(
        self: &Arc<Self>,
        app: &str,
        key: &str,
        now: Instant,
        max_streams: Option<usize>,
    ) -> Result<PublishHandle, PublishError> {
        self.observe(now);
        let name = format!("{app}/{key}");
        let id = self.next_publisher.fetch_add(1, Ordering::Relaxed);
        let mut streams = lock(&self.streams);
        if self.closed.load(Ordering::Acquire) {
            return Err(PublishError::Closed);
        }
        if let Some(max) = max_streams {
            let known = streams.get(&name).is_some_and(|s| s.is_live());
            if !known && streams.values().filter(|s| s.is_live()).count() >= max {
                return Err(PublishError::TooManyStreams(max));
            }
        }
        let mut stream = streams
            .entry(name.clone())
            .or_insert_with(|| Stream::new(app, key, Arc::downgrade(self), now))
            .clone();
        let mut expired = None;
        {
            let st = lock(&stream.state);
            let over = st.detached.as_ref().is_some_and(|d| now >= d.deadline);
            if st.ended || over {
                // Ended but not yet unregistered, or past its grace: start afresh.
                if over {
                    expired = Some(stream.clone());
                }
                drop(st);
                stream = Stream::new(app, key, Arc::downgrade(self), now);
                streams.insert(name.clone(), stream.clone());
            }
        }
        drop(streams);
        if let Some(old) = expired {
            old.expire_grace(now);
        }
        let mut st = lock(&stream.state);
        if st.publisher.is_some() {
            return Err(PublishError::AlreadyLive(name));
        }
        let detached = st.detached.take();
        let resumed = match &detached {
            Some(d) => {
                let gap = now.saturating_duration_since(d.at).as_millis();
                st.ts.rebase_after(gap.min(u32::MAX as u128) as u32);
                // The new publisher sends its own metadata and sequence headers; the old GOP
                // no longer matches them.
                st.gop.clear();
                st.gop_bytes = 0;
                st.gop_valid = false;
                st.gop_cold = 0;
                true
            }
            None => false,
        };
        st.publisher = Some(id);
        st.live = true;
        st.last_now = st.last_now.max(now);
        drop(st);
        if let Some(d) = detached {
            self.disarm(&d);
        }
        Ok(PublishHandle {
            stream,
            id,
            resumed,
            finished: false,
        })
    }

    /// Subscribes to `app/key`, creating an idle entry when nobody publishes it yet (the
    /// subscriber then waits for a publisher, as players of nginx-rtmp do).
    pub fn subscribe(
        self: &Arc<Self>,
        app: &str,
        key: &str,
        limits: QueueLimits,
        now: Instant,
    ) -> Subscription {
        let name = format!("{app}/{key}");
        let mut streams = lock(&self.streams);
        if self.closed.load(Ordering::Acquire) {
            return Subscription::ended(Stream::new(app, key, Weak::new(), now));
        }
        let stream = streams
            .entry(name)
            .or_insert_with(|| Stream::new(app, key, Arc::downgrade(self), now))
            .clone();
        drop(streams);
        match stream.subscribe(limits, now) {
            Some(s) => s,
            // Ended between lookup and subscribe: a finished subscription.
            None => Subscription::ended(stream),
        }
    }

    pub fn get(&self, app: &str, key: &str) -> Option<Arc<Stream>> {
        lock(&self.streams).get(&format!("{app}/{key}")).cloned()
    }

    /// Streams with a publisher attached or within the grace window.
    pub fn live_streams(&self) -> Vec<Arc<Stream>> {
        let streams = lock(&self.streams);
        streams.values().filter(|s| s.is_live()).cloned().collect()
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The media-memory budget, if the hub accounts one.
    pub fn memory(&self) -> Option<&Arc<prism_mem::Budget>> {
        self.config.memory.as_ref()
    }

    /// The earliest instant at which [`Hub::handle_timeout`] has something to do: the end
    /// of the first reconnect grace window, or audio held for riding subscribers that is
    /// due (see [`Subscription::set_audio_ride`]). None when there is neither.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = lock(&self.timers);
        let grace = t.expiries.first_key_value().map(|((at, _), _)| *at);
        let ride = t.rides.first_key_value().map(|((at, _), _)| *at);
        let at = match (grace, ride) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        t.sleeping_until = at;
        at
    }

    /// Ends every stream whose reconnect grace window is over at `now` (deadline <= now)
    /// and whose publisher did not come back. Subscribers get their queued frames, then
    /// the end. Wakes riding subscribers whose held audio is due (within [`RIDE_SLACK`]).
    pub fn handle_timeout(&self, now: Instant) {
        let (due, rides) = {
            let mut t = lock(&self.timers);
            t.latest = t.latest.max(Some(now));
            t.sleeping_until = None;
            let mut due = Vec::new();
            while let Some(entry) = t.expiries.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            let mut rides = Vec::new();
            let horizon = now.checked_add(RIDE_SLACK).unwrap_or(now);
            while let Some(entry) = t.rides.first_entry() {
                if entry.key().0 > horizon {
                    break;
                }
                let at = entry.key().0;
                rides.push((at, entry.remove()));
            }
            (due, rides)
        };
        for stream in due {
            // A publisher that came back, or left again later, is judged by its own state.
            stream.expire_grace(now);
        }
        for (at, stream) in rides {
            if let Some(next) = stream.release_riders(at, now) {
                self.arm_ride(next, stream);
            }
        }
    }

    /// Registers `stream`'s riding audio, due `at`.
    fn arm_ride(&self, at: Instant, stream: Arc<Stream>) {
        let wake = {
            let mut t = lock(&self.timers);
            let key = (at, Arc::as_ptr(&stream) as usize);
            t.rides.insert(key, stream);
            // A driver sleeping until before `at` sees it when it wakes.
            let wake = t.sleeping_until.map_or(true, |s| at < s);
            if wake {
                t.sleeping_until = Some(at);
            }
            wake
        };
        if wake {
            self.signal_timer_changed();
        }
    }

    /// Ready when the earliest expiry may have moved earlier than the last
    /// [`Hub::poll_timeout`] said, or the hub closed: the driver should look again. One
    /// driver: the last task to poll is the one woken.
    pub fn poll_timer_changed(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.timer_waker.register(cx.waker());
        if self.timer_changed.swap(false, Ordering::AcqRel) || self.is_closed() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// See [`Hub::poll_timer_changed`].
    pub async fn timer_changed(&self) {
        std::future::poll_fn(|cx| self.poll_timer_changed(cx)).await
    }

    fn signal_timer_changed(&self) {
        self.timer_changed.store(true, Ordering::Release);
        self.timer_waker.wake();
    }

    /// Records `now` as the latest time the hub was given.
    fn observe(&self, now: Instant) {
        let mut t = lock(&self.timers);
        t.latest = t.latest.max(Some(now));
    }

    fn latest(&self) -> Option<Instant> {
        lock(&self.timers).latest
    }

    /// Starts the grace timer of a stream whose publisher `d.publisher` left.
    fn arm(&self, d: &Detached, stream: Arc<Stream>) {
        let earliest = {
            let mut t = lock(&self.timers);
            t.latest = t.latest.max(Some(d.at));
            t.expiries.insert((d.deadline, d.publisher), stream);
            t.expiries
                .first_key_value()
                .is_some_and(|(k, _)| *k == (d.deadline, d.publisher))
        };
        if earliest {
            self.signal_timer_changed();
        }
    }

    /// Cancels a grace timer. No wake-up: a driver sleeping until it only wakes early.
    fn disarm(&self, d: &Detached) {
        lock(&self.timers)
            .expiries
            .remove(&(d.deadline, d.publisher));
    }

    fn remove_if_same(&self, stream: &Arc<Stream>) {
        let mut streams = lock(&self.streams);
        if let Some(cur) = streams.get(&stream.name) {
            if Arc::ptr_eq(cur, stream) {
                streams.remove(&stream.name);
            }
        }
    }
}

/// A stream's publisher left without unpublishing: the grace window.
#[derive(Debug, Clone, Copy)]
struct Detached {
    at: Instant,
    deadline: Instant,
    /// The publisher that left; tells this window from a later one of the same stream.
    publisher: u64,
}

#[derive(Debug)]
struct StreamState {
    publisher: Option<u64>,
    live: bool,
    ended: bool,
    /// Some while in the grace window (the publisher vanished without unpublishing).
    detached: Option<Detached>,
    /// The latest `now` given with this stream's publish or frames: the detach time of a
    /// publisher dropped without [`PublishHandle::detach`].
    last_now: Instant,
    metadata: Option<Arc<Frame>>,
    video_header: Option<Arc<Frame>>,
    audio_header: Option<Arc<Frame>>,
    gop: Vec<Arc<Frame>>,
    gop_bytes: usize,
    gop_valid: bool,
    /// The earliest deadline of audio held for riding subscribers; None when none is held.
    ride_deadline: Option<Instant>,
    /// The deadline of this stream's current entry in the hub's ride timers, if any.
    ride_timer: Option<Instant>,
    /// GOP-cache frames before this index are past the live edge (cold copies where their
    /// egress cache was set).
    gop_cold: usize,
    ts: TimestampNormalizer,
    subscribers: Vec<Arc<SubShared>>,
    video_codec: &'static str,
    audio_codec: &'static str,
}

/// One stream, shared by its publisher and subscribers.
#[derive(Debug)]
pub struct Stream {
    name: String,
    app: String,
    key: String,
    hub: Weak<Hub>,
    state: Mutex<StreamState>,
    started: Instant,
    bytes_in: AtomicU64,
    /// Tasks in [`Stream::poll_ended`] / [`Stream::wait_ended`], woken and cleared by the
    /// end. One entry per waiting task (a `wait_ended` future removes its own when dropped),
    /// so the list stays as long as the number of waiters.
    end_waiters: Mutex<EndWaiters>,
    gop_limit: usize,
    /// The hub's media-memory budget, if any (see [`HubConfig::memory`]).
    memory: Option<Arc<prism_mem::Budget>>,
    /// Set by [`Stream::kick`]; the publisher's connection registers in `kick_waker`.
    kicked: AtomicBool,
    kick_waker: AtomicWaker,
    /// Where the kick asked the publisher to reconnect ([`Stream::kick_to`]).
    moved_to: Mutex<Option<String>>,
}

impl Stream {
    fn new(app: &str, key: &str, hub: Weak<Hub>, now: Instant) -> Arc<Stream> {
        let gop_limit = hub
            .upgrade()
            .map_or(HubConfig::default().gop_cache_max_bytes, |h| {
                h.config.gop_cache_max_bytes
            });
        let memory = hub.upgrade().and_then(|h| h.config.memory.clone());
        Arc::new(Stream {
            gop_limit,
            memory,
            name: format!("{app}/{key}"),
            app: app.to_owned(),
            key: key.to_owned(),
            hub,
            started: now,
            bytes_in: AtomicU64::new(0),
            end_waiters: Mutex::new(EndWaiters::default()),
            kicked: AtomicBool::new(false),
            kick_waker: AtomicWaker::new(),
            moved_to: Mutex::new(None),
            state: Mutex::new(StreamState {
                publisher: None,
                live: false,
                ended: false,
                detached: None,
                last_now: now,
                metadata: None,
                video_header: None,
                audio_header: None,
                gop: Vec::new(),
                gop_bytes: 0,
                gop_valid: false,
                gop_cold: 0,
                ride_deadline: None,
                ride_timer: None,
                ts: TimestampNormalizer::default(),
                subscribers: Vec::new(),
                video_codec: "",
                audio_codec: "",
            }),
        })
    }

    /// "app/key".
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn app(&self) -> &str {
        &self.app
    }
    pub fn key(&self) -> &str {
        &self.key
    }
    /// Time since the stream's entry was created (by its first publisher or player).
    pub fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }
    pub fn is_live(&self) -> bool {
        lock(&self.state).live
    }
    pub fn is_ended(&self) -> bool {
        lock(&self.state).ended
    }
    /// True while a publisher is attached (false in the reconnect grace window).
    pub fn has_publisher(&self) -> bool {
        lock(&self.state).publisher.is_some()
    }
    /// Resolves once the stream has ended.
    pub async fn wait_ended(&self) {
        let mut slot = EndSlot {
            stream: self,
            id: None,
        };
        std::future::poll_fn(|cx| slot.poll(cx)).await
    }

    /// Ready once the stream has ended; the task in `cx` is woken by the end. Each distinct
    /// task polling here keeps one entry until the end (prefer [`Stream::wait_ended`] for a
    /// waiter that may give up: it removes its entry when dropped).
    pub fn poll_ended(&self, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut w = lock(&self.end_waiters);
            // Among the anonymous entries only: a `wait_ended` of the same task removes its
            // own entry when dropped.
            let known = w
                .list
                .iter()
                .any(|(id, k)| id.is_none() && k.will_wake(cx.waker()));
            if !known {
                w.list.push((None, cx.waker().clone()));
            }
        }
        // Look after registering: an end after this look wakes the entry made above.
        if self.is_ended() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    pub fn subscriber_count(&self) -> usize {
        lock(&self.state).subscribers.len()
    }
    pub fn codecs(&self) -> (&'static str, &'static str) {
        let st = lock(&self.state);
        (st.video_codec, st.audio_codec)
    }

    /// The cached video and audio sequence headers (what a new subscriber starts with).
    pub fn sequence_headers(&self) -> (Option<Arc<Frame>>, Option<Arc<Frame>>) {
        let st = lock(&self.state);
        (st.video_header.clone(), st.audio_header.clone())
    }

    /// Adds a subscriber whose queue starts with metadata, sequence headers and the cached
    /// GOP, so it can start decoding at once. None if the stream has ended.
    pub fn subscribe(self: &Arc<Self>, limits: QueueLimits, now: Instant) -> Option<Subscription> {
        let mut st = lock(&self.state);
        if st.ended {
            return None;
        }
        let mut queue = SubQueue::new(limits);
        let cached = [&st.metadata, &st.video_header, &st.audio_header];
        for f in cached.into_iter().flatten() {
            queue.push(f.clone(), now);
        }
        for f in &st.gop {
            queue.push(f.clone(), now);
        }
        let shared = Arc::new(SubShared {
            queue: Mutex::new(queue),
            waker: AtomicWaker::new(),
            ended: AtomicBool::new(false),
            kicked: AtomicBool::new(false),
        });
        st.subscribers.push(shared.clone());
        Some(Subscription {
            stream: self.clone(),
            shared,
        })
    }

    /// Ends the stream now on the operator's behalf: the publisher is detached (no reconnect
    /// grace), subscribers see the end, and the publisher's connection, polling
    /// [`Stream::poll_kicked`], closes. False if the stream had already ended.
    pub fn kick(self: &Arc<Self>) -> bool {
        {
            let mut st = lock(&self.state);
            if st.ended {
                return false;
            }
            st.publisher = None;
        }
        self.kicked.store(true, Ordering::Release);
        self.end();
        self.kick_waker.wake();
        true
    }

    /// [`Stream::kick`], telling the publisher's connection where the stream moves
    /// ([`Stream::moved_to`]): an Enhanced RTMP v2 publisher is asked to reconnect there.
    pub fn kick_to(self: &Arc<Self>, reconnect_url: Option<String>) -> bool {
        // Set before the kick wakes the connection, which reads it then.
        *lock(&self.moved_to) = reconnect_url;
        self.kick()
    }

    /// The reconnect URL of a [`Stream::kick_to`], if any.
    pub fn moved_to(&self) -> Option<String> {
        lock(&self.moved_to).clone()
    }

    /// Ready once the stream was [kicked](Stream::kick). For the publisher's connection
    /// (one waiter: the last task to poll is the one woken); costs an atomic per poll.
    pub fn poll_kicked(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.kick_waker.register(cx.waker());
        if self.kicked.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::Acquire)
    }

    fn end(self: &Arc<Self>) {
        self.end_if(|_| true);
    }

    /// Ends the stream if `cond` holds, judged under the same lock that marks it ended (so
    /// a publisher coming back meanwhile cannot be ended by a stale decision).
    fn end_if(self: &Arc<Self>, cond: impl FnOnce(&StreamState) -> bool) {
        let (subs, detached) = {
            let mut st = lock(&self.state);
            if st.ended || !cond(&st) {
                return;
            }
            st.ended = true;
            st.live = false;
            (std::mem::take(&mut st.subscribers), st.detached.take())
        };
        // Out of the registry before anyone is woken: a woken task (a push target, the
        // metrics' per-stream series) that looks the stream up must not find it still there,
        // or it keeps what it should drop (the soak saw metric series grow this way).
        if let Some(hub) = self.hub.upgrade() {
            if let Some(d) = detached {
                hub.disarm(&d);
            }
            hub.remove_if_same(self);
        }
        for s in subs {
            s.ended.store(true, Ordering::Release);
            s.waker.wake();
        }
        let waiters = std::mem::take(&mut lock(&self.end_waiters).list);
        for (_, w) in waiters {
            w.wake();
        }
    }

    /// Ends the stream if its grace window is over at `now` and no publisher came back.
    fn expire_grace(self: &Arc<Self>, now: Instant) {
        self.end_if(|st| {
            st.publisher.is_none() && st.detached.as_ref().is_some_and(|d| d.deadline <= now)
        });
    }

    /// The hub's ride timer entry due `at` expired at `now`: wakes the subscribers whose
    /// riding audio is due (within [`RIDE_SLACK`]). Returns when to look again, if audio is
    /// still held and no other entry is armed for this stream.
    fn release_riders(self: &Arc<Self>, at: Instant, now: Instant) -> Option<Instant> {
        let mut st = lock(&self.state);
        if st.ride_timer == Some(at) {
            st.ride_timer = None;
        }
        let deadline = st.ride_deadline?;
        let horizon = now.checked_add(RIDE_SLACK).unwrap_or(now);
        if deadline <= horizon {
            let mut next: Option<Instant> = None;
            for sub in &st.subscribers {
                let mut q = lock(&sub.queue);
                match q.ride_deadline() {
                    Some(d) if d <= horizon => {
                        q.end_ride();
                        drop(q);
                        sub.waker.wake();
                    }
                    Some(d) => next = Some(next.map_or(d, |n| n.min(d))),
                    None => {}
                }
            }
            st.ride_deadline = next;
        }
        let next = st.ride_deadline.filter(|_| st.ride_timer.is_none());
        st.ride_timer = st.ride_timer.or(next);
        next
    }

    /// Removes an idle entry (no publisher, never live) once its last subscriber leaves.
    fn unsubscribe(self: &Arc<Self>, sub: &Arc<SubShared>) {
        let idle = {
            let mut st = lock(&self.state);
            st.subscribers.retain(|s| !Arc::ptr_eq(s, sub));
            st.subscribers.is_empty() && st.publisher.is_none() && st.detached.is_none()
        };
        if idle {
            if let Some(hub) = self.hub.upgrade() {
                let mut streams = lock(&hub.streams);
                // Re-check under the registry lock: a publisher may have arrived meanwhile.
                let st = lock(&self.state);
                if st.subscribers.is_empty() && st.publisher.is_none() && st.detached.is_none() {
                    if let Some(cur) = streams.get(&self.name) {
                        if Arc::ptr_eq(cur, self) {
                            streams.remove(&self.name);
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct EndWaiters {
    /// Entries of `wait_ended` futures carry their id; those of `poll_ended` have none.
    list: Vec<(Option<u64>, Waker)>,
    next: u64,
}

impl EndWaiters {
    fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

/// The entry of one [`Stream::wait_ended`] future in `end_waiters`, removed when it is
/// dropped, so waiters that give up (a `select!` that took another branch) leave nothing.
struct EndSlot<'a> {
    stream: &'a Stream,
    id: Option<u64>,
}

impl EndSlot<'_> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut w = lock(&self.stream.end_waiters);
            let mine = self
                .id
                .and_then(|id| w.list.iter_mut().find(|(i, _)| *i == Some(id)));
            match mine {
                Some((_, waker)) => waker.clone_from(cx.waker()),
                // First poll, or the end took the list (then the look below sees it).
                None => {
                    let id = w.next_id();
                    w.list.push((Some(id), cx.waker().clone()));
                    self.id = Some(id);
                }
            }
        }
        // Look after registering: an end after this look wakes the entry above.
        if self.stream.is_ended() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for EndSlot<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            lock(&self.stream.end_waiters)
                .list
                .retain(|(i, _)| *i != Some(id));
        }
    }
}

#[derive(Debug)]
struct SubShared {
    queue: Mutex<SubQueue>,
    /// The subscriber's task, woken when frames arrive or the stream ends. Cheaper than a
    /// Notify on the fan-out path: waking a task that is already awake costs one atomic.
    waker: AtomicWaker,
    ended: AtomicBool,
    kicked: AtomicBool,
}

/// The publishing side of a stream. [`PublishHandle::detach`] (the connection was lost)
/// starts the reconnect grace window; [`PublishHandle::unpublish`] ends the stream at once.
/// Dropping it without either is a detach at the latest time the hub knows of.
#[derive(Debug)]
pub struct PublishHandle {
    stream: Arc<Stream>,
    id: u64,
    resumed: bool,
    finished: bool,
}

impl PublishHandle {
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// True when this publisher took over a stream within its grace window (its targets
    /// are still running).
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Publishes one frame, received at `now`, to every subscriber. Never blocks on a
    /// subscriber.
    pub fn send(&self, mut frame: Frame, now: Instant) {
        self.stream
            .bytes_in
            .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
        let budget = self.stream.memory.as_ref();
        if let Some(b) = budget {
            frame.mem = b.charge(prism_mem::Pool::Frames, frame.payload.len());
        }
        // Under memory pressure (over the high-water mark, or lately), a stream may hold (in its GOP cache, in any one queue) at
        // most an equal share of the low-water mark: the streams holding most shed, those
        // within their share are untouched. Frames are shared by the cache and every queue,
        // so a stream's holding is about the larger of the two.
        let share = match budget {
            Some(b) if b.under_pressure() => {
                let streams = self
                    .stream
                    .hub
                    .upgrade()
                    .map_or(1, |h| lock(&h.streams).len());
                Some(b.low_water() / streams.max(1))
            }
            _ => None,
        };
        let mut st = lock(&self.stream.state);
        st.last_now = st.last_now.max(now);
        let track = match frame.kind {
            FrameKind::Audio => Track::Audio,
            FrameKind::Video => Track::Video,
            FrameKind::Data => Track::Other,
        };
        frame.timestamp = st.ts.map(frame.timestamp, track);
        let frame = Arc::new(frame);
        if frame.kind == FrameKind::Data {
            st.metadata = Some(frame.clone());
        } else if frame.sequence_header {
            if frame.kind == FrameKind::Video {
                st.video_header = Some(frame.clone());
            } else {
                st.audio_header = Some(frame.clone());
            }
        } else {
            let limit = share.map_or(self.stream.gop_limit, |s| s.min(self.stream.gop_limit));
            cache_gop(&mut st, &frame, limit);
        }
        let mut kicked = false;
        let mut ride_deadline: Option<Instant> = None;
        for sub in &st.subscribers {
            let mut q = lock(&sub.queue);
            let outcome = q.push(frame.clone(), now);
            if let Some(share) = share {
                q.shed_to(share);
            }
            let rides = q.ride(&frame, outcome, now);
            drop(q);
            if outcome == PushOutcome::Disconnect {
                sub.kicked.store(true, Ordering::Release);
                kicked = true;
            }
            // Audio riding to the next video frame does not wake its subscriber: one wake
            // per video frame, and its write carries the audio before it.
            match rides {
                Some(d) => ride_deadline = Some(ride_deadline.map_or(d, |r| r.min(d))),
                None => sub.waker.wake(),
            }
        }
        if kicked {
            st.subscribers.retain(|s| !s.kicked.load(Ordering::Acquire));
        }
        st.ride_deadline = ride_deadline;
        // The hub's timer wakes the riders if no video comes first; one entry per stream.
        let arm = ride_deadline.filter(|d| st.ride_timer.map_or(true, |t| *d < t));
        if arm.is_some() {
            st.ride_timer = arm;
        }
        drop(st);
        if let Some(at) = arm {
            match self.stream.hub.upgrade() {
                Some(hub) => hub.arm_ride(at, self.stream.clone()),
                // No hub to time the ride: nobody rides.
                None => {
                    let _ = self.stream.release_riders(at, at);
                }
            }
        }
    }

    /// Records codec names for status reporting.
    pub fn set_codecs(&self, video: &'static str, audio: &'static str) {
        let mut st = lock(&self.stream.state);
        if !video.is_empty() {
            st.video_codec = video;
        }
        if !audio.is_empty() {
            st.audio_codec = audio;
        }
    }

    /// The publisher's connection was lost at `now`: the stream waits for it to come back
    /// until `now + reconnect_grace` (see [`Hub::poll_timeout`]), then ends. With no grace
    /// (or no hub any more) it ends at once.
    pub fn detach(mut self, now: Instant) {
        self.finished = true;
        self.detach_at(now);
    }

    fn detach_at(&self, now: Instant) {
        let hub = self.stream.hub.upgrade();
        let grace = hub
            .as_ref()
            .map(|h| h.config.reconnect_grace)
            .unwrap_or_default();
        let detached = {
            let mut st = lock(&self.stream.state);
            if st.publisher != Some(self.id) {
                return;
            }
            st.publisher = None;
            // Clamped so an absurd configured grace cannot overflow the Instant.
            let grace = grace.min(Duration::from_secs(10 * 365 * 24 * 3600));
            let d = Detached {
                at: now,
                deadline: now.checked_add(grace).unwrap_or(now),
                publisher: self.id,
            };
            if !grace.is_zero() && hub.is_some() {
                st.detached = Some(d);
            }
            d
        };
        match hub {
            Some(hub) if !grace.is_zero() => hub.arm(&detached, self.stream.clone()),
            _ => self.stream.end(),
        }
    }

    /// Ends the stream now (the publisher said it is done).
    pub fn unpublish(mut self) {
        self.finished = true;
        let mine = {
            let mut st = lock(&self.stream.state);
            let mine = st.publisher == Some(self.id);
            if mine {
                st.publisher = None;
            }
            mine
        };
        if mine {
            self.stream.end();
        }
    }
}

/// How long a GOP-cache frame keeps its egress cache (its RTMP chunks, shared by every
/// subscriber): live subscribers take a frame well within this (a push target's audio
/// rides ≤ 40 ms); a late joiner's replay, a lagging subscriber or one merging writes over
/// longer spans serializes again (per connection: more iovecs, no copy). Past it, the cache
/// holds a cold copy of the frame ([`Frame::cold_copy`]). 250 ms against
/// 1000: 72 against 81 MB RSS at 50 streams × 2 Mbit/s. Without the drop the cache doubled the GOP
/// cache's memory (benches/README.md, "Memory at 50 streams").
const EGRESS_CACHE_MS: u32 = 250;

fn cache_gop(st: &mut StreamState, frame: &Arc<Frame>, max_bytes: usize) {
    if frame.kind == FrameKind::Video && frame.keyframe {
        st.gop.clear();
        st.gop_bytes = 0;
        st.gop_valid = true;
        st.gop_cold = 0;
    }
    if !st.gop_valid {
        return;
    }
    st.gop_bytes += frame.payload.len();
    if st.gop_bytes > max_bytes {
        st.gop.clear();
        st.gop_bytes = 0;
        st.gop_valid = false;
        st.gop_cold = 0;
        return;
    }
    st.gop.push(frame.clone());
    while let Some(old) = st.gop.get_mut(st.gop_cold) {
        if frame.timestamp.saturating_sub(old.timestamp) <= EGRESS_CACHE_MS {
            break;
        }
        // Subscribers still holding the old frame keep its serialization until they drop
        // it; the cache keeps a copy without one (and so does a late joiner).
        if old.wire.is_set() {
            *old = Arc::new(old.cold_copy());
        }
        st.gop_cold += 1;
    }
}

impl Drop for PublishHandle {
    /// A handle dropped without [`PublishHandle::detach`] or [`PublishHandle::unpublish`]
    /// (an owner that panicked or forgot) cannot be given `now`: it counts as detached at the
    /// latest time known, that of the stream's last frame or of the hub's last call, which
    /// is at most a little early, so its grace window may end a little early too.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let last = lock(&self.stream.state).last_now;
        let latest = self.stream.hub.upgrade().and_then(|h| h.latest());
        self.detach_at(latest.map_or(last, |l| l.max(last)));
    }
}

/// What [`Subscription::recv`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvStatus {
    /// Frames were appended.
    Frames,
    /// The stream ended; nothing more will come.
    Ended,
    /// This subscriber stayed over its queue budget too long and was dropped from the stream.
    TooSlow,
}

/// Queue depth and drop counters of one subscriber.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubStats {
    pub queue_bytes: usize,
    pub queue_frames: usize,
    pub dropped_queue_full: u64,
    pub dropped_waiting_keyframe: u64,
    pub dropped_audio_overflow: u64,
}

impl SubStats {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::QueueFull => self.dropped_queue_full,
            DropReason::WaitingKeyframe => self.dropped_waiting_keyframe,
            DropReason::AudioOverflow => self.dropped_audio_overflow,
        }
    }
}

/// A subscriber's handle: frames come out of its own bounded queue. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    stream: Arc<Stream>,
    shared: Arc<SubShared>,
}

impl Subscription {
    fn ended(stream: Arc<Stream>) -> Subscription {
        Subscription {
            stream,
            shared: Arc::new(SubShared {
                queue: Mutex::new(SubQueue::new(QueueLimits::default())),
                waker: AtomicWaker::new(),
                ended: AtomicBool::new(true),
                kicked: AtomicBool::new(false),
            }),
        }
    }

    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Waits for frames and moves up to about `max_bytes` of them into `out`.
    /// Queued frames are delivered before `Ended`.
    pub async fn recv(&self, out: &mut Vec<Arc<Frame>>, max_bytes: usize) -> RecvStatus {
        std::future::poll_fn(|cx| self.poll_recv(cx, out, max_bytes)).await
    }

    /// Poll form of [`Subscription::recv`]: the task in `cx` is woken when frames arrive.
    pub fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        out: &mut Vec<Arc<Frame>>,
        max_bytes: usize,
    ) -> Poll<RecvStatus> {
        // Register before looking, so a frame pushed right after the look still wakes us;
        // the registration stays armed after a Ready too, so the caller need not poll again
        // just to re-arm it.
        self.shared.waker.register(cx.waker());
        match self.try_recv(out, max_bytes) {
            Some(status) => Poll::Ready(status),
            None => Poll::Pending,
        }
    }

    /// Lets this subscriber's audio ride with the next video frame: an audio frame queued
    /// after the last video frame does not wake it until the next video frame (or
    /// metadata, or a sequence header) arrives or `ride` has passed since the first such
    /// audio frame (timed by [`Hub::poll_timeout`], up to [`RIDE_SLACK`] early). One
    /// wake-up and one write per video frame instead of one per message, decided once per
    /// frame here rather than by a timer per subscriber. Zero (the default): every frame
    /// wakes it. For push targets (see `QueueConfig::target_audio_ride` in prism-config).
    pub fn set_audio_ride(&self, ride: Duration) {
        lock(&self.shared.queue).set_audio_ride(ride);
    }

    /// Non-blocking [`Subscription::recv`]: None when nothing is queued yet.
    pub fn try_recv(&self, out: &mut Vec<Arc<Frame>>, max_bytes: usize) -> Option<RecvStatus> {
        if self.shared.kicked.load(Ordering::Acquire) {
            return Some(RecvStatus::TooSlow);
        }
        let mut q = lock(&self.shared.queue);
        if !q.is_empty() {
            q.pop_batch(out, max_bytes);
            return Some(RecvStatus::Frames);
        }
        drop(q);
        if self.shared.ended.load(Ordering::Acquire) {
            return Some(RecvStatus::Ended);
        }
        None
    }

    /// True once this subscriber was dropped from the stream for staying over its queue
    /// budget; `recv` then returns [`RecvStatus::TooSlow`]. Lets a driver that is not
    /// polling `recv` (its output is blocked) notice.
    pub fn is_too_slow(&self) -> bool {
        self.shared.kicked.load(Ordering::Acquire)
    }

    /// True once nothing more will be queued: the stream ended or this subscriber was
    /// dropped for being too slow. A caller that stops polling after a `Ready(Frames)` must
    /// check this: the wake-up announcing the end may be the one it is handling.
    pub fn is_finished(&self) -> bool {
        self.shared.ended.load(Ordering::Acquire) || self.shared.kicked.load(Ordering::Acquire)
    }

    /// A handle that ends this subscription from elsewhere (removing a push target): the
    /// subscriber gets its queued frames, then [`RecvStatus::Ended`], as if the stream ended.
    pub fn closer(&self) -> SubCloser {
        SubCloser {
            stream: self.stream.clone(),
            shared: self.shared.clone(),
        }
    }

    pub fn stats(&self) -> SubStats {
        let q = lock(&self.shared.queue);
        SubStats {
            queue_bytes: q.bytes(),
            queue_frames: q.len(),
            dropped_queue_full: q.dropped(DropReason::QueueFull),
            dropped_waiting_keyframe: q.dropped(DropReason::WaitingKeyframe),
            dropped_audio_overflow: q.dropped(DropReason::AudioOverflow),
        }
    }
}

/// See [`Subscription::closer`].
#[derive(Debug, Clone)]
pub struct SubCloser {
    stream: Arc<Stream>,
    shared: Arc<SubShared>,
}

impl SubCloser {
    /// Bytes queued for the subscription now.
    pub fn queue_bytes(&self) -> usize {
        lock(&self.shared.queue).bytes()
    }

    /// Stops queueing frames for the subscription and wakes it to see the end.
    pub fn close(&self) {
        self.stream.unsubscribe(&self.shared);
        self.shared.ended.store(true, Ordering::Release);
        self.shared.waker.wake();
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stream.unsubscribe(&self.shared);
    }
}
