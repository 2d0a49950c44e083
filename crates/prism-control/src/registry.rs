//! What the admin API sees and steers: the live streams with their publisher and running
//! push targets, targets added and removed at run time, publishers kicked.
//!
//! Counters are the targets' own metric handles and atomics the push tasks already update:
//! nothing here adds a lock to the per-frame path. The registry lock is taken when a
//! stream or target starts or stops and when the API asks.

use crate::conn::ConnInfo;
use atomic_waker::AtomicWaker;
use prism_config::{redact_url, ResolvedTarget};
use prism_hub::{Stream, SubCloser};
use prometheus::{IntCounter, IntGauge};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

/// Where a push target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// Dialing, handshaking, publishing: not sending media yet.
    Connecting,
    /// The destination accepted the stream; media flows.
    Up,
    /// The last attempt failed; waiting (jittered exponential backoff) to retry.
    Backoff,
    /// Stopped: the stream ended or the target was removed (seen while it unpublishes).
    Down,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Connecting => "connecting",
            TargetState::Up => "up",
            TargetState::Backoff => "backoff",
            TargetState::Down => "down",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => TargetState::Connecting,
            1 => TargetState::Up,
            2 => TargetState::Backoff,
            _ => TargetState::Down,
        }
    }
}

/// Whether a target came from the configuration or was added through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetOrigin {
    Config,
    Api,
}

impl TargetOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetOrigin::Config => "config",
            TargetOrigin::Api => "api",
        }
    }
}

/// One running push target, shared by its task and the registry.
#[derive(Debug)]
pub struct TargetStatus {
    pub name: String,
    shown_url: String,
    pub origin: TargetOrigin,
    /// What it was started with: a reload restarts it when its config entry differs.
    pub spec: TargetSpec,
    started: Instant,
    state: AtomicU8,
    /// The target's metric handles: the same atomics the push path updates.
    up: IntGauge,
    bytes: IntCounter,
    /// `bytes` when this target started (the series may outlive an earlier target of the
    /// same name).
    bytes_base: u64,
    queue: IntGauge,
    pub drops: AtomicU64,
    pub reconnects: AtomicU64,
    last_error: Mutex<Option<String>>,
    cancelled: AtomicBool,
    /// Wakes the target's task on cancel. An AtomicWaker, not a Notify: it is polled on
    /// every wake-up of a live push (the fan-out hot path), where a Notify would take a lock.
    cancel: AtomicWaker,
    /// The current attempt's subscription, closed on cancel so the push unpublishes.
    closer: Mutex<Option<SubCloser>>,
    /// Set (and `finished_notify` woken) once its task has ended and left the registry.
    finished: AtomicBool,
    finished_notify: tokio::sync::Notify,
}

/// The resolved target a push task runs. `Debug` shows the URL redacted: the stream key
/// is a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TargetSpec(pub ResolvedTarget);

impl std::fmt::Debug for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TargetSpec({}, {})",
            self.0.name,
            redact_url(&self.0.url)
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TargetStatus {
    pub fn new(
        target: &ResolvedTarget,
        origin: TargetOrigin,
        up: IntGauge,
        bytes: IntCounter,
        queue: IntGauge,
    ) -> Self {
        TargetStatus {
            name: target.name.clone(),
            shown_url: redact_url(&target.url),
            origin,
            spec: TargetSpec(target.clone()),
            started: Instant::now(),
            state: AtomicU8::new(TargetState::Connecting as u8),
            bytes_base: bytes.get(),
            up,
            bytes,
            queue,
            drops: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            last_error: Mutex::new(None),
            cancelled: AtomicBool::new(false),
            cancel: AtomicWaker::new(),
            closer: Mutex::new(None),
            finished: AtomicBool::new(false),
            finished_notify: tokio::sync::Notify::new(),
        }
    }

    /// The target's URL, redacted (never the stream key).
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// Called by the target's task as its last act.
    pub fn mark_finished(&self) {
        self.finished.store(true, Ordering::Release);
        self.finished_notify.notify_waiters();
    }

    /// Resolves once the target's task has ended (after unpublishing, if it was cancelled).
    pub async fn finished(&self) {
        loop {
            let notified = self.finished_notify.notified();
            if self.finished.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    pub fn set_state(&self, s: TargetState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    pub fn state(&self) -> TargetState {
        match TargetState::from_u8(self.state.load(Ordering::Relaxed)) {
            // Removed: unpublishing, about to go.
            _ if self.is_cancelled() => TargetState::Down,
            // Sinks (srt://, ...) report being up through the gauge only.
            TargetState::Connecting if self.up.get() == 1 => TargetState::Up,
            s => s,
        }
    }

    pub fn set_error(&self, reason: prism_metrics::ErrorReason, detail: &str) {
        *lock(&self.last_error) = Some(format!("{reason}: {detail}"));
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Resolves once [`TargetStatus::cancel`] was called.
    /// Only the target's own task may wait on it (one waker is kept).
    pub async fn cancelled(&self) {
        std::future::poll_fn(|cx| {
            self.cancel.register(cx.waker());
            if self.is_cancelled() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Stops the target: a connecting attempt or backoff ends at once, a publishing one
    /// ends its subscription and so unpublishes from the destination.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.cancel.wake();
        if let Some(c) = lock(&self.closer).take() {
            c.close();
        }
    }

    /// Sets `prism_target_queue_bytes` from the queue itself. The push task exports it too,
    /// but only when it wakes: a target that caught up as its stream paused would keep
    /// showing its last backlog.
    fn refresh_queue_gauge(&self) {
        let bytes = match self.state() {
            TargetState::Connecting | TargetState::Up => {
                lock(&self.closer).as_ref().map_or(0, |c| c.queue_bytes())
            }
            // The last attempt's subscription is gone.
            TargetState::Backoff | TargetState::Down => 0,
        };
        self.queue.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Records the current attempt's subscription (closing it at once if cancelled).
    pub fn set_subscription(&self, closer: SubCloser) {
        let mut slot = lock(&self.closer);
        if self.is_cancelled() {
            closer.close();
        } else {
            *slot = Some(closer);
        }
    }

    pub fn snapshot(&self) -> TargetSnapshot {
        TargetSnapshot {
            name: self.name.clone(),
            url: self.shown_url.clone(),
            origin: self.origin,
            state: self.state(),
            uptime: self.started.elapsed(),
            bytes_sent: self.bytes.get().saturating_sub(self.bytes_base),
            queue_bytes: self.queue.get().max(0) as u64,
            drops: self.drops.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
            queue: self.spec.0.queue,
            tls: self.spec.0.tls.clone(),
        }
    }
}

/// A push target as the admin API shows it. `url` is redacted.
#[derive(Debug, Clone)]
pub struct TargetSnapshot {
    pub name: String,
    /// Redacted with [`prism_config::redact_url`]: never the stream key.
    pub url: String,
    pub origin: TargetOrigin,
    pub state: TargetState,
    /// Since the target started (it keeps running across reconnects).
    pub uptime: Duration,
    pub bytes_sent: u64,
    pub queue_bytes: u64,
    /// Frames dropped from its queue (all reasons).
    pub drops: u64,
    pub reconnects: u64,
    /// The reason the last attempt failed, if one did.
    pub last_error: Option<String>,
    /// Its queue budget and TLS options, as configured or as the API added it.
    pub queue: prism_config::QueueConfig,
    pub tls: prism_config::TargetTls,
}

/// A live stream as the admin API shows it.
#[derive(Debug, Clone)]
pub struct StreamSnapshot {
    pub stream: Arc<Stream>,
    /// The connection that publishes it (the last one, while in the reconnect grace window).
    pub publisher: ConnInfo,
    /// False while the publisher is gone and the stream waits for it (grace window).
    pub publisher_connected: bool,
    pub targets: Vec<TargetSnapshot>,
}

/// Registry entry of one live stream.
#[derive(Debug)]
struct LiveEntry {
    stream: Arc<Stream>,
    publisher: ConnInfo,
    targets: Vec<Arc<TargetStatus>>,
    /// Configured targets an operator removed through the API: a config reload does not
    /// bring them back while this stream lasts.
    removed_config: HashSet<String>,
}

/// A live stream's targets, as a config reload reconciles them.
pub struct LiveTargets {
    pub stream: Arc<Stream>,
    pub targets: Vec<Arc<TargetStatus>>,
    /// Configured targets an operator removed through the API.
    pub removed_config: HashSet<String>,
}

/// The registry: stream name → live entry.
#[derive(Debug, Default)]
pub struct Registry {
    streams: Mutex<HashMap<String, LiveEntry>>,
}

/// Why a target could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddTargetError {
    #[error("stream {0} is not live")]
    NotLive(String),
    #[error("stream {stream} already has a target named {name}")]
    Exists { stream: String, name: String },
    #[error("target {name} of stream {stream} is still being removed; retry in a few seconds")]
    Removing { stream: String, name: String },
    /// `[limits] max_targets_per_stream` reached.
    #[error("stream {stream} already has {max} targets ([limits] max_targets_per_stream)")]
    TooMany { stream: String, max: usize },
}

/// Why a target could not be removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoveTargetError {
    #[error("stream {0} is not live")]
    NotLive(String),
    #[error("stream {stream} has no target named {name}")]
    NoSuchTarget { stream: String, name: String },
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, LiveEntry>> {
        lock(&self.streams)
    }

    /// A stream started (`resumed` = a publisher came back within the grace window).
    pub fn publish_started(&self, stream: &Arc<Stream>, publisher: ConnInfo, resumed: bool) {
        let mut streams = self.lock();
        match streams.get_mut(stream.name()) {
            Some(e) if resumed && Arc::ptr_eq(&e.stream, stream) => e.publisher = publisher,
            _ => {
                streams.insert(
                    stream.name().to_owned(),
                    LiveEntry {
                        stream: stream.clone(),
                        publisher,
                        targets: Vec::new(),
                        removed_config: HashSet::new(),
                    },
                );
            }
        }
    }

    pub fn stream_ended(&self, stream: &Arc<Stream>) {
        let mut streams = self.lock();
        if streams
            .get(stream.name())
            .is_some_and(|e| Arc::ptr_eq(&e.stream, stream))
        {
            streams.remove(stream.name());
        }
    }

    /// Registers a target of `stream` under a name not yet used there, if it has fewer than
    /// `max` others. `make` builds it under the registry lock, so a concurrent removal of
    /// the same name cannot interleave.
    pub fn add_target(
        &self,
        stream: &Arc<Stream>,
        name: &str,
        max: usize,
        make: impl FnOnce() -> Arc<TargetStatus>,
    ) -> Result<Arc<TargetStatus>, AddTargetError> {
        let mut streams = self.lock();
        let entry = streams
            .get_mut(stream.name())
            .filter(|e| Arc::ptr_eq(&e.stream, stream) && !stream.is_ended())
            .ok_or_else(|| AddTargetError::NotLive(stream.name().to_owned()))?;
        if let Some(t) = entry.targets.iter().find(|t| t.name == name) {
            if t.is_cancelled() {
                return Err(AddTargetError::Removing {
                    stream: stream.name().to_owned(),
                    name: name.to_owned(),
                });
            }
            return Err(AddTargetError::Exists {
                stream: stream.name().to_owned(),
                name: name.to_owned(),
            });
        }
        // Targets being removed still hold a connection until they unpublish: they count.
        if entry.targets.len() >= max {
            return Err(AddTargetError::TooMany {
                stream: stream.name().to_owned(),
                max,
            });
        }
        let status = make();
        entry.targets.push(status.clone());
        Ok(status)
    }

    /// Unregisters a target whose task ended; `then` runs under the registry lock with
    /// whether its name is now free on that stream.
    pub fn target_ended(
        &self,
        stream: &Arc<Stream>,
        status: &Arc<TargetStatus>,
        then: impl FnOnce(bool),
    ) {
        let mut streams = self.lock();
        let mut free = true;
        if let Some(e) = streams
            .get_mut(stream.name())
            .filter(|e| Arc::ptr_eq(&e.stream, stream))
        {
            e.targets.retain(|t| !Arc::ptr_eq(t, status));
            free = !e.targets.iter().any(|t| t.name == status.name);
        }
        then(free);
    }

    /// Every live stream with its running targets and the configured target names an
    /// operator removed (for a config reload).
    pub fn live_targets(&self) -> Vec<LiveTargets> {
        let streams = self.lock();
        streams
            .values()
            .filter(|e| !e.stream.is_ended())
            .map(|e| LiveTargets {
                stream: e.stream.clone(),
                targets: e.targets.clone(),
                removed_config: e.removed_config.clone(),
            })
            .collect()
    }

    /// Remembers that an operator removed the configured target `name` of `stream`.
    pub fn config_target_removed(&self, stream: &Arc<Stream>, name: &str) {
        if let Some(e) = self
            .lock()
            .get_mut(stream.name())
            .filter(|e| Arc::ptr_eq(&e.stream, stream))
        {
            e.removed_config.insert(name.to_owned());
        }
    }

    pub fn find_live(&self, app: &str, key: &str) -> Option<(Arc<Stream>, Vec<Arc<TargetStatus>>)> {
        let streams = self.lock();
        let e = streams.get(&format!("{app}/{key}"))?;
        (!e.stream.is_ended()).then(|| (e.stream.clone(), e.targets.clone()))
    }

    pub fn refresh_queue_gauges(&self) {
        let targets: Vec<Arc<TargetStatus>> = self
            .lock()
            .values()
            .flat_map(|e| e.targets.iter().cloned())
            .collect();
        for t in targets {
            t.refresh_queue_gauge();
        }
    }

    pub fn snapshot(&self) -> Vec<StreamSnapshot> {
        let streams = self.lock();
        let mut out: Vec<StreamSnapshot> = streams
            .values()
            .filter(|e| e.stream.is_live())
            .map(|e| StreamSnapshot {
                stream: e.stream.clone(),
                publisher: e.publisher,
                publisher_connected: e.stream.has_publisher(),
                targets: e.targets.iter().map(|t| t.snapshot()).collect(),
            })
            .collect();
        drop(streams);
        out.sort_by(|a, b| a.stream.name().cmp(b.stream.name()));
        out
    }
}
