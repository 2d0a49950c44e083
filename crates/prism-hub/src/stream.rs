//! Streams, publishers and subscriptions.

use crate::queue::{DropReason, PushOutcome, QueueLimits, SubQueue};
use crate::timestamps::{TimestampNormalizer, Track};
use crate::{Frame, FrameKind};
use atomic_waker::AtomicWaker;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct HubConfig {
    /// How long a stream whose publisher vanished (without unpublishing) waits for it to
    /// come back before ending.
    pub reconnect_grace: Duration,
    /// Cap on the cached GOP; a longer GOP is not cached (joiners then wait for the next keyframe).
    pub gop_cache_max_bytes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            reconnect_grace: Duration::from_secs(5),
            gop_cache_max_bytes: 32 * 1024 * 1024,
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
}

/// Locks a mutex, recovering from poisoning: a panic elsewhere must not take the hub down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The registry of streams.
#[derive(Debug)]
pub struct Hub {
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    config: HubConfig,
    next_publisher: AtomicU64,
    /// Set by [`Hub::close`]; read under the `streams` lock.
    closed: AtomicBool,
}

impl Hub {
    pub fn new(config: HubConfig) -> Arc<Hub> {
        Arc::new(Hub {
            streams: Mutex::new(HashMap::new()),
            config,
            next_publisher: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        })
    }

    /// Shuts the hub: every stream ends as if its publisher unpublished (subscribers get
    /// their queued frames, then the end; publishers' connections see
    /// [`Stream::poll_kicked`]), players waiting for a stream that never started get the
    /// end too, and from now on publishing is refused and subscriptions end at once.
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
        live
    }

    /// True once [`Hub::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Starts (or, within the grace window, resumes) publishing `app/key`.
    pub fn publish(self: &Arc<Self>, app: &str, key: &str) -> Result<PublishHandle, PublishError> {
        let name = format!("{app}/{key}");
        let id = self.next_publisher.fetch_add(1, Ordering::Relaxed);
        let mut streams = lock(&self.streams);
        if self.closed.load(Ordering::Acquire) {
            return Err(PublishError::Closed);
        }
        let mut stream = streams
            .entry(name.clone())
            .or_insert_with(|| Stream::new(app, key, Arc::downgrade(self)))
            .clone();
        if stream.is_ended() {
            // Ended but not yet unregistered: start afresh instead of resuming it.
            stream = Stream::new(app, key, Arc::downgrade(self));
            streams.insert(name.clone(), stream.clone());
        }
        drop(streams);
        let mut st = lock(&stream.state);
        if st.publisher.is_some() {
            return Err(PublishError::AlreadyLive(name));
        }
        let resumed = match st.detached_at.take() {
            Some(at) => {
                let gap = at.elapsed().as_millis().min(u32::MAX as u128) as u32;
                st.ts.rebase_after(gap);
                // The new publisher sends its own metadata and sequence headers; the old GOP
                // no longer matches them.
                st.gop.clear();
                st.gop_bytes = 0;
                st.gop_valid = false;
                true
            }
            None => false,
        };
        st.publisher = Some(id);
        st.live = true;
        drop(st);
        Ok(PublishHandle {
            stream,
            id,
            resumed,
            finished: false,
        })
    }

    /// Subscribes to `app/key`, creating an idle entry when nobody publishes it yet (the
    /// subscriber then waits for a publisher, as players of nginx-rtmp do).
    pub fn subscribe(self: &Arc<Self>, app: &str, key: &str, limits: QueueLimits) -> Subscription {
        let name = format!("{app}/{key}");
        let mut streams = lock(&self.streams);
        if self.closed.load(Ordering::Acquire) {
            return Subscription::ended(Stream::new(app, key, Weak::new()));
        }
        let stream = streams
            .entry(name)
            .or_insert_with(|| Stream::new(app, key, Arc::downgrade(self)))
            .clone();
        drop(streams);
        match stream.subscribe(limits) {
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

    fn remove_if_same(&self, stream: &Arc<Stream>) {
        let mut streams = lock(&self.streams);
        if let Some(cur) = streams.get(&stream.name) {
            if Arc::ptr_eq(cur, stream) {
                streams.remove(&stream.name);
            }
        }
    }
}

#[derive(Debug)]
struct StreamState {
    publisher: Option<u64>,
    live: bool,
    ended: bool,
    /// When the publisher vanished without unpublishing; Some while in the grace window.
    detached_at: Option<Instant>,
    metadata: Option<Arc<Frame>>,
    video_header: Option<Arc<Frame>>,
    audio_header: Option<Arc<Frame>>,
    gop: Vec<Arc<Frame>>,
    gop_bytes: usize,
    gop_valid: bool,
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
    end_notify: Notify,
    gop_limit: usize,
    /// Set by [`Stream::kick`]; the publisher's connection registers in `kick_waker`.
    kicked: AtomicBool,
    kick_waker: AtomicWaker,
}

impl Stream {
    fn new(app: &str, key: &str, hub: Weak<Hub>) -> Arc<Stream> {
        let gop_limit = hub
            .upgrade()
            .map_or(HubConfig::default().gop_cache_max_bytes, |h| {
                h.config.gop_cache_max_bytes
            });
        Arc::new(Stream {
            gop_limit,
            name: format!("{app}/{key}"),
            app: app.to_owned(),
            key: key.to_owned(),
            hub,
            started: Instant::now(),
            bytes_in: AtomicU64::new(0),
            end_notify: Notify::new(),
            kicked: AtomicBool::new(false),
            kick_waker: AtomicWaker::new(),
            state: Mutex::new(StreamState {
                publisher: None,
                live: false,
                ended: false,
                detached_at: None,
                metadata: None,
                video_header: None,
                audio_header: None,
                gop: Vec::new(),
                gop_bytes: 0,
                gop_valid: false,
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
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
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
        loop {
            let notified = self.end_notify.notified();
            if self.is_ended() {
                return;
            }
            notified.await;
        }
    }

    pub fn subscriber_count(&self) -> usize {
        lock(&self.state).subscribers.len()
    }
    pub fn codecs(&self) -> (&'static str, &'static str) {
        let st = lock(&self.state);
        (st.video_codec, st.audio_codec)
    }

    /// Adds a subscriber whose queue starts with metadata, sequence headers and the cached
    /// GOP, so it can start decoding at once. None if the stream has ended.
    pub fn subscribe(self: &Arc<Self>, limits: QueueLimits) -> Option<Subscription> {
        let mut st = lock(&self.state);
        if st.ended {
            return None;
        }
        let mut queue = SubQueue::new(limits);
        let now = Instant::now();
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
            st.detached_at = None;
        }
        self.kicked.store(true, Ordering::Release);
        self.end();
        self.kick_waker.wake();
        true
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
        let subs = {
            let mut st = lock(&self.state);
            if st.ended {
                return;
            }
            st.ended = true;
            st.live = false;
            std::mem::take(&mut st.subscribers)
        };
        for s in subs {
            s.ended.store(true, Ordering::Release);
            s.waker.wake();
        }
        self.end_notify.notify_waiters();
        if let Some(hub) = self.hub.upgrade() {
            hub.remove_if_same(self);
        }
    }

    /// Removes an idle entry (no publisher, never live) once its last subscriber leaves.
    fn unsubscribe(self: &Arc<Self>, sub: &Arc<SubShared>) {
        let idle = {
            let mut st = lock(&self.state);
            st.subscribers.retain(|s| !Arc::ptr_eq(s, sub));
            st.subscribers.is_empty() && st.publisher.is_none() && st.detached_at.is_none()
        };
        if idle {
            if let Some(hub) = self.hub.upgrade() {
                let mut streams = lock(&hub.streams);
                // Re-check under the registry lock: a publisher may have arrived meanwhile.
                let st = lock(&self.state);
                if st.subscribers.is_empty() && st.publisher.is_none() && st.detached_at.is_none() {
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

#[derive(Debug)]
struct SubShared {
    queue: Mutex<SubQueue>,
    /// The subscriber's task, woken when frames arrive or the stream ends. Cheaper than a
    /// Notify on the fan-out path: waking a task that is already awake costs one atomic.
    waker: AtomicWaker,
    ended: AtomicBool,
    kicked: AtomicBool,
}

/// The publishing side of a stream. Dropping it without [`PublishHandle::unpublish`] starts
/// the reconnect grace window; unpublishing ends the stream at once.
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

    /// Publishes one frame to every subscriber. Never blocks on a subscriber.
    pub fn send(&self, mut frame: Frame) {
        let now = Instant::now();
        self.stream
            .bytes_in
            .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
        let mut st = lock(&self.stream.state);
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
            cache_gop(&mut st, &frame, self.stream.gop_limit);
        }
        let mut kicked = false;
        for sub in &st.subscribers {
            let outcome = lock(&sub.queue).push(frame.clone(), now);
            if outcome == PushOutcome::Disconnect {
                sub.kicked.store(true, Ordering::Release);
                kicked = true;
            }
            sub.waker.wake();
        }
        if kicked {
            st.subscribers.retain(|s| !s.kicked.load(Ordering::Acquire));
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

fn cache_gop(st: &mut StreamState, frame: &Arc<Frame>, max_bytes: usize) {
    if frame.kind == FrameKind::Video && frame.keyframe {
        st.gop.clear();
        st.gop_bytes = 0;
        st.gop_valid = true;
    }
    if !st.gop_valid {
        return;
    }
    st.gop_bytes += frame.payload.len();
    if st.gop_bytes > max_bytes {
        st.gop.clear();
        st.gop_bytes = 0;
        st.gop_valid = false;
        return;
    }
    st.gop.push(frame.clone());
}

impl Drop for PublishHandle {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let grace = self
            .stream
            .hub
            .upgrade()
            .map(|h| h.config.reconnect_grace)
            .unwrap_or_default();
        {
            let mut st = lock(&self.stream.state);
            if st.publisher != Some(self.id) {
                return;
            }
            st.publisher = None;
            st.detached_at = Some(Instant::now());
        }
        let stream = self.stream.clone();
        let expire = move || {
            let expired = {
                let st = lock(&stream.state);
                st.publisher.is_none() && st.detached_at.is_some_and(|at| at.elapsed() >= grace)
            };
            if expired {
                stream.end();
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if !grace.is_zero() => {
                rt.spawn(async move {
                    tokio::time::sleep(grace).await;
                    expire();
                });
            }
            _ => self.stream.end(),
        }
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
