//! Pulled sources: streams Prism fetches (an IP camera, another server) and publishes into
//! the hub like any publisher. One supervisor task per configured source reconnects with
//! the push targets' jittered backoff for as long as the source is configured.
//!
//! The protocol of a source is a plug-in: a transport crate implements [`SourcePuller`]
//! for its URL schemes and the binary registers it with [`Relay::add_puller`]. A puller
//! connects, asks for the stream and hands frames to its [`SourceSession`]; reconnects,
//! backoff, the refusal of a stream that another publisher already has, metrics and status
//! are this module's.
//!
//! Who wins between a source and a pushing publisher of the same stream: whoever is live
//! first. A source whose stream is live from a pusher is refused (logged, counted in
//! `prism_source_errors_total{reason="already_live"}`) and tries again after its backoff;
//! a pusher arriving while the source publishes is refused by the hub as any duplicate
//! publisher is (`prism_publish_rejected_total{reason="already_live"}`).

use crate::dial::ConnError;
use crate::ingest::Publisher;
use crate::push::Backoff;
use crate::relay::Relay;
use bytes::Bytes;
use prism_config::{redact_url, url_scheme, SourceConfig};
use prism_control::{plan_sources, ConnInfo, RunningSource, SourceOrigin, StreamChanges};
use prism_hub::{Frame, FrameKind, PublishError, Stream};
use prism_metrics::{ErrorReason, SourceMetrics};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::{info, warn};

/// A connection that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

pub type PullFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ConnError>> + Send + 'a>>;

/// Pulls streams for some URL schemes (a transport crate's plug-in).
///
/// [`SourcePuller::pull`] makes one attempt: connect to `source.url`, ask for the stream,
/// call [`SourceSession::start`] once the remote plays it (that publishes into the hub and
/// may be refused), then hand every frame to the session until the remote ends the stream
/// (`Ok`) or the connection fails (`Err`, with a [`ConnError`] reason for the metrics).
/// Every wait must have a timeout (a remote that sends nothing is an error). Reconnects,
/// backoff, the hub, metrics and status are the caller's; the future may be dropped at any
/// point (the source was removed, the stream kicked, the relay shuts down).
pub trait SourcePuller: Send + Sync + 'static {
    /// The URL schemes served, lower case ("rtsp", "rtsps").
    fn schemes(&self) -> &'static [&'static str];
    fn pull<'a>(
        &'a self,
        source: &'a SourceConfig,
        session: &'a mut SourceSession,
    ) -> PullFuture<'a>;
}

impl std::fmt::Debug for dyn SourcePuller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SourcePuller({:?})", self.schemes())
    }
}

/// What a puller hands its stream to: one attempt's publisher, byte counter and status.
pub struct SourceSession {
    relay: Arc<Relay>,
    status: Arc<SourceStatus>,
    transport: &'static str,
    publisher: Option<Publisher>,
}

impl SourceSession {
    /// The relay, for a puller that needs a dialer ([`Relay::dialer`]) or its config.
    pub fn relay(&self) -> &Arc<Relay> {
        &self.relay
    }

    /// The remote plays the stream: publish it into the hub under the source's stream name.
    /// `peer` is the remote's address, if known. Refused (reason `already_live`) when
    /// another publisher has the stream; logged and counted here, the puller just returns
    /// the error. A second call is a no-op.
    pub fn start(&mut self, peer: Option<SocketAddr>) -> Result<(), ConnError> {
        if self.publisher.is_some() {
            return Ok(());
        }
        let (app, key) = self.status.config.app_key();
        let info = ConnInfo {
            peer: peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            transport: self.transport,
        };
        let max = self.relay.config().limits.max_streams;
        if self.relay.hub().get(app, key).is_none() && self.relay.hub().live_streams().len() >= max
        {
            return Err(ConnError::new(
                ErrorReason::PublishRefused,
                format!("[limits] max_streams ({max}) reached"),
            ));
        }
        if self.relay.hub().get(app, key).is_none()
            && self
                .relay
                .hub()
                .memory()
                .is_some_and(|b| b.under_pressure())
        {
            return Err(ConnError::new(
                ErrorReason::PublishRefused,
                "memory budget ([limits] max_memory_mb) under pressure",
            ));
        }
        match self.relay.start_publish(app, key, &info) {
            Ok(p) => {
                let _ = self.status.stream.send(Some(p.stream().clone()));
                self.publisher = Some(p);
                Ok(())
            }
            Err(PublishError::AlreadyLive(_)) => Err(already_live()),
            Err(e) => Err(ConnError::new(ErrorReason::PublishRefused, e)),
        }
    }

    /// True once [`SourceSession::start`] succeeded.
    pub fn is_started(&self) -> bool {
        self.publisher.is_some()
    }

    /// One message in FLV tag body form (what RTMP carries); flags are derived from it.
    /// Ignored before [`SourceSession::start`].
    pub fn send(&self, kind: FrameKind, timestamp: u32, payload: Bytes) {
        if let Some(p) = &self.publisher {
            p.send(kind, timestamp, payload);
        }
    }

    /// A frame whose flags the puller knows (a demuxer or depacketizer built it).
    /// Ignored before [`SourceSession::start`].
    pub fn send_frame(&self, frame: Frame) {
        if let Some(p) = &self.publisher {
            p.send_frame(frame);
        }
    }

    /// Counts `n` bytes read from the source's connection.
    pub fn received(&self, n: usize) {
        self.status.metrics.bytes_received.inc_by(n as u64);
    }
}

/// The refusal of a source whose stream another publisher has.
fn already_live() -> ConnError {
    ConnError::new(
        ErrorReason::AlreadyLive,
        "the stream is already live from another publisher; not pulling it",
    )
}

/// What a source is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// Connecting and asking for the stream.
    Connecting,
    /// Publishing the pulled stream.
    Up,
    /// Waiting before the next attempt.
    Backoff,
    /// On demand: nobody wants the stream, nothing is pulled.
    Idle,
    /// Removed, or the relay is shutting down.
    Down,
}

impl SourceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Connecting => "connecting",
            SourceState::Up => "up",
            SourceState::Backoff => "backoff",
            SourceState::Idle => "idle",
            SourceState::Down => "down",
        }
    }
}

/// One source as the API and status page show it. The URL is redacted.
#[derive(Debug, Clone)]
pub struct SourceSnapshot {
    pub stream: String,
    pub origin: SourceOrigin,
    /// Redacted URL.
    pub url: String,
    pub on_demand: bool,
    pub state: SourceState,
    pub reconnects: u64,
    pub bytes_received: u64,
    /// Bits per second received, over the time since the previous snapshot (at most 10 s
    /// ago; 0 before there is one).
    pub bitrate_bps: u64,
    /// `(reason, detail)` of the last failed attempt.
    pub last_error: Option<(ErrorReason, String)>,
}

/// The shared state of one configured source.
#[derive(Debug)]
pub(crate) struct SourceStatus {
    pub(crate) config: SourceConfig,
    origin: SourceOrigin,
    /// The URLs tried in turn: the config's, or an edge's origins.
    urls: Vec<String>,
    /// True once its supervisor has stopped (the stream is unpublished).
    done: watch::Sender<bool>,
    metrics: SourceMetrics,
    state: Mutex<Inner>,
    reconnects: AtomicU64,
    /// The stream while the current attempt publishes (for the kick watch).
    stream: watch::Sender<Option<Arc<Stream>>>,
    cancel: Notify,
    cancelled: std::sync::atomic::AtomicBool,
    /// Every URL failed since the last attempt that published (what
    /// [`Relay::pull_failed`] tells consumers waiting for the stream).
    failed_all: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Inner {
    state: SourceState,
    last_error: Option<(ErrorReason, String)>,
    /// `(when, bytes)` of the previous snapshot, for the bitrate.
    sample: Option<(Instant, u64)>,
    bitrate_bps: u64,
}

impl SourceStatus {
    fn new(config: SourceConfig, origin: SourceOrigin, metrics: SourceMetrics) -> Self {
        SourceStatus {
            urls: vec![config.url.clone()],
            config,
            origin,
            done: watch::channel(false).0,
            metrics,
            state: Mutex::new(Inner {
                state: SourceState::Connecting,
                last_error: None,
                sample: None,
                bitrate_bps: 0,
            }),
            reconnects: AtomicU64::new(0),
            stream: watch::channel(None).0,
            cancel: Notify::new(),
            cancelled: Default::default(),
            failed_all: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, s: SourceState) {
        self.lock().state = s;
        self.metrics.up.set(i64::from(s == SourceState::Up));
    }

    fn set_error(&self, e: &ConnError) {
        self.lock().last_error = Some((e.reason, e.detail.chars().take(300).collect()));
    }

    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.cancel.notify_waiters();
        self.cancel.notify_one();
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Resolves once the supervisor has stopped.
    async fn finished(&self) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    pub(crate) fn snapshot(&self) -> SourceSnapshot {
        let bytes = self.metrics.bytes_received.get();
        let now = Instant::now();
        let mut st = self.lock();
        match st.sample {
            Some((at, before)) if now.duration_since(at) >= Duration::from_millis(500) => {
                let secs = now.duration_since(at).as_secs_f64();
                st.bitrate_bps = ((bytes.saturating_sub(before)) as f64 * 8.0 / secs) as u64;
                st.sample = Some((now, bytes));
            }
            Some((at, _)) if now.duration_since(at) < Duration::from_millis(500) => {}
            _ => st.sample = Some((now, bytes)),
        }
        if st.state != SourceState::Up {
            st.bitrate_bps = 0;
        }
        SourceSnapshot {
            stream: self.config.stream.clone(),
            origin: self.origin,
            url: redact_url(&self.config.url),
            on_demand: self.config.options.on_demand,
            state: st.state,
            reconnects: self.reconnects.load(Ordering::Relaxed),
            bytes_received: bytes,
            bitrate_bps: st.bitrate_bps,
            last_error: st.last_error.clone(),
        }
    }
}

/// Why a source cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddSourceError {
    /// Another source already publishes this stream.
    #[error("a source already publishes {0}")]
    Exists(String),
    /// No registered puller serves the URL's scheme.
    #[error("{0}")]
    UnsupportedScheme(String),
    /// As many sources as `[limits] max_streams` run already.
    #[error("{0} sources run already ([limits] max_streams)")]
    TooMany(usize),
}

/// The message for a source whose scheme no transport of this build serves.
pub fn unsupported_scheme_message(scheme: &str) -> String {
    format!("{scheme}:// sources are not supported by this build of Prism")
}

impl Relay {
    /// Registers the puller of some URL schemes; sources started from now on may use them.
    pub fn add_puller(&self, puller: Arc<dyn SourcePuller>) {
        self.pullers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(puller);
    }

    /// The puller for a URL scheme, if a transport registered one.
    pub fn puller(&self, scheme: &str) -> Option<Arc<dyn SourcePuller>> {
        self.pullers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|p| p.schemes().contains(&scheme))
            .cloned()
    }

    /// Starts every `[[source]]` of the running config. Call once, after the pullers are
    /// registered.
    pub fn start_sources(self: &Arc<Self>) {
        for source in self.config().sources.clone() {
            let stream = source.stream.clone();
            if let Err(e) = self.spawn_source(source, SourceOrigin::Config) {
                warn!(stream = %stream, "source not started: {e}");
            }
        }
    }

    /// Starts pulling `source` (the admin API); it runs until [`Relay::remove_source`] or
    /// shutdown. A config reload leaves it alone.
    pub fn add_source(
        self: &Arc<Self>,
        source: SourceConfig,
    ) -> Result<SourceSnapshot, AddSourceError> {
        self.spawn_source(source, SourceOrigin::Api)
    }

    fn spawn_source(
        self: &Arc<Self>,
        source: SourceConfig,
        origin: SourceOrigin,
    ) -> Result<SourceSnapshot, AddSourceError> {
        self.spawn_source_with(source, origin, Vec::new())
    }

    /// As [`Relay::spawn_source`]; `more_urls` are tried after the source's own, in turn.
    fn spawn_source_with(
        self: &Arc<Self>,
        source: SourceConfig,
        origin: SourceOrigin,
        more_urls: Vec<String>,
    ) -> Result<SourceSnapshot, AddSourceError> {
        let scheme = url_scheme(&source.url);
        if self.puller(&scheme).is_none() {
            return Err(AddSourceError::UnsupportedScheme(
                unsupported_scheme_message(&scheme),
            ));
        }
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if sources.contains_key(&source.stream) {
            return Err(AddSourceError::Exists(source.stream));
        }
        // Each source is a stream: the table stays as bounded as the streams are.
        let max = self.config().limits.max_streams;
        if sources.len() >= max {
            return Err(AddSourceError::TooMany(max));
        }
        let metrics = self.metrics().source(&source.stream);
        let mut status = SourceStatus::new(source.clone(), origin, metrics);
        status.urls.extend(more_urls);
        let status = Arc::new(status);
        sources.insert(source.stream.clone(), status.clone());
        drop(sources);
        info!(stream = %source.stream, url = %redact_url(&source.url), "source added");
        tokio::spawn(run_source(self.clone(), status.clone()));
        Ok(status.snapshot())
    }

    /// Stops pulling the source of `stream` (its stream ends at once). False if there is
    /// none.
    pub fn remove_source(&self, stream: &str) -> bool {
        let removed = self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(stream);
        match removed {
            Some(s) => {
                s.cancel();
                info!(stream = %stream, "source removed");
                true
            }
            None => false,
        }
    }

    /// Every configured or added source, sorted by stream.
    pub fn sources(&self) -> Vec<SourceSnapshot> {
        let sources: Vec<_> = self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut out: Vec<_> = sources.iter().map(|s| s.snapshot()).collect();
        out.sort_by(|a, b| a.stream.cmp(&b.stream));
        out
    }

    /// Applies the running config's `[[source]]` tables (after a reload): starts new ones,
    /// stops removed ones, restarts changed ones once the old one has stopped. Sources
    /// added through the admin API are left alone.
    pub(crate) fn reload_sources(self: &Arc<Self>) -> StreamChanges {
        let config = self.config();
        let running: Vec<Arc<SourceStatus>> = self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let view: Vec<RunningSource<'_>> = running
            .iter()
            .map(|s| RunningSource {
                spec: &s.config,
                origin: s.origin,
            })
            .collect();
        let plan = plan_sources(&view, &config.sources);
        let mut changes = StreamChanges {
            conflicts: plan.conflicts.clone(),
            ..Default::default()
        };
        for stream in &plan.stop {
            if self.remove_source(stream) {
                changes.stopped.push(stream.clone());
            }
        }
        for source in plan.start {
            let stream = source.stream.clone();
            match self.spawn_source(source, SourceOrigin::Config) {
                Ok(_) => changes.started.push(stream),
                Err(e) => warn!(stream = %stream, "source not started: {e}"),
            }
        }
        for source in plan.restart {
            let old = running
                .iter()
                .find(|s| s.config.stream == source.stream)
                .cloned();
            changes.restarted.push(source.stream.clone());
            self.remove_source(&source.stream);
            let relay = self.clone();
            // The new one starts once the old one has unpublished: it would find the
            // stream live otherwise.
            tokio::spawn(async move {
                if let Some(old) = old {
                    old.finished().await;
                }
                // Unless yet another reload changed it meanwhile.
                if !relay.config().sources.contains(&source) {
                    return;
                }
                let stream = source.stream.clone();
                if let Err(e) = relay.spawn_source(source, SourceOrigin::Config) {
                    warn!(stream = %stream, "source not restarted: {e}");
                }
            });
        }
        changes
    }

    /// The config of the running source of `stream`.
    pub(crate) fn source_config(&self, stream: &str) -> Option<SourceConfig> {
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(stream)
            .map(|s| s.config.clone())
    }
}

/// The supervisor of one source: attempts with backoff until cancelled or shutdown; an
/// on-demand source only while its stream is wanted.
async fn run_source(relay: Arc<Relay>, status: Arc<SourceStatus>) {
    let source = status.config.clone();
    let name = source.stream.clone();
    let (app, key) = source.app_key();
    let on_demand = source.options.on_demand;
    let mut demand = relay.demand_watch(&name);
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    // Our own stream, while it waits out its reconnect grace between attempts.
    let mut ours: Option<Arc<Stream>> = None;
    let mut attempt = 0u64;
    // Which URL is next, and how many failed in a row without publishing.
    let mut next_url = 0usize;
    let mut failed_in_row = 0usize;
    loop {
        if status.is_cancelled() || relay.is_closing() {
            break;
        }
        if on_demand && !relay.is_wanted(&source, &demand) {
            if status.origin == SourceOrigin::Edge {
                // Edge pulls exist while wanted; the next want starts a new one (and a
                // want that came in meanwhile, while this one was still listed, does now).
                relay.remove_source_if(&status);
                if relay.is_wanted(&source, &demand) {
                    relay.pull_for_edge(app, key);
                }
                break;
            }
            status.set_state(SourceState::Idle);
            tokio::select! {
                _ = demand.changed() => {}
                _ = status.cancel.notified() => {}
                _ = relay.closing() => {}
            }
            backoff.reset();
            continue;
        }
        if attempt > 0 {
            status.metrics.reconnects.inc();
            status.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        attempt += 1;
        let url = status.urls[next_url % status.urls.len()].clone();
        let shown_url = redact_url(&url);
        let started = Instant::now();
        let mut published = false;
        let result = match relay.hub().get(app, key) {
            // Live from someone else: do not even dial.
            Some(s) if s.is_live() && !ours.as_ref().is_some_and(|o| Arc::ptr_eq(o, &s)) => {
                Err(already_live())
            }
            _ => {
                status.set_state(SourceState::Connecting);
                let r = attempt_once(&relay, &status, &url, &mut ours, &mut demand).await;
                published = r.1;
                r.0
            }
        };
        if status.is_cancelled() || relay.is_closing() {
            break;
        }
        if published {
            failed_in_row = 0;
            status.failed_all.store(false, Ordering::Release);
        }
        match result {
            Ok(()) => {
                info!(stream = %name, url = %shown_url, "source stopped or ended the stream");
                // Stopped for want of consumers: idle at once. A remote that ended the
                // stream is asked again after the backoff (never in a tight loop).
                if on_demand && !relay.is_wanted(&source, &demand) {
                    continue;
                }
            }
            Err(e) => {
                status.metrics.error(e.reason).inc();
                status.set_error(&e);
                if e.reason == ErrorReason::AlreadyLive {
                    warn!(stream = %name, url = %shown_url, reason = e.reason.as_str(), "source refused: the stream is already live from a pushing publisher; trying again later");
                } else {
                    warn!(stream = %name, url = %shown_url, reason = e.reason.as_str(), "source down: {}", e.detail);
                    next_url += 1;
                    failed_in_row += 1;
                }
            }
        }
        // An edge whose every origin failed: the players waiting for the stream are told
        // it is not there rather than left waiting.
        if failed_in_row >= status.urls.len() {
            status.failed_all.store(true, Ordering::Release);
        }
        if status.origin == SourceOrigin::Edge && failed_in_row >= status.urls.len() {
            failed_in_row = 0;
            if relay.end_waiting(app, key) {
                info!(stream = %name, "no origin has the stream: its waiting players were ended");
            }
        }
        if started.elapsed() > STABLE_AFTER {
            backoff.reset();
        }
        status.set_state(SourceState::Backoff);
        let wake = Instant::now() + backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = status.cancel.notified() => {}
            _ = relay.closing() => {}
        }
    }
    status.set_state(SourceState::Down);
    let _ = status.done.send(true);
    // A removed source's series go (unless it was added again meanwhile).
    if (status.is_cancelled() || status.origin == SourceOrigin::Edge)
        && relay.source_config(&name).is_none()
    {
        relay.metrics().forget_source(&name);
    }
}

/// One attempt on `url`, ended early when the source is removed, its stream is kicked, the
/// relay shuts down or (on demand) nobody wanted the stream for `close_after_idle` (Ok:
/// nothing failed). The bool: whether it published. A publisher left at the end is
/// unpublished (Ok) or detached into its grace window (Err), and noted in `ours`.
async fn attempt_once(
    relay: &Arc<Relay>,
    status: &Arc<SourceStatus>,
    url: &str,
    ours: &mut Option<Arc<Stream>>,
    demand: &mut watch::Receiver<usize>,
) -> (Result<(), ConnError>, bool) {
    let scheme = url_scheme(url);
    let Some(puller) = relay.puller(&scheme) else {
        let e = ConnError::new(
            ErrorReason::UnsupportedScheme,
            unsupported_scheme_message(&scheme),
        );
        return (Err(e), false);
    };
    let transport = puller
        .schemes()
        .iter()
        .copied()
        .find(|s| *s == scheme)
        .unwrap_or("source");
    let mut source = status.config.clone();
    source.url = url.to_owned();
    let mut session = SourceSession {
        relay: relay.clone(),
        status: status.clone(),
        transport,
        publisher: None,
    };
    let mut stream_rx = status.stream.subscribe();
    let up = async {
        // Once publishing: Up, and the stream's end (an operator's kick) ends the attempt.
        loop {
            let current = stream_rx.borrow_and_update().clone();
            if let Some(s) = current {
                status.set_state(SourceState::Up);
                s.wait_ended().await;
                return;
            }
            if stream_rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    };
    let idle = async {
        if !status.config.options.on_demand {
            return std::future::pending().await;
        }
        loop {
            if relay.is_wanted(&status.config, demand) {
                if demand.changed().await.is_err() {
                    return std::future::pending().await;
                }
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(status.config.options.close_after_idle) => return,
                _ = demand.changed() => {}
            }
        }
    };
    let result = tokio::select! {
        r = puller.pull(&source, &mut session) => r,
        _ = up => Err(ConnError::new(ErrorReason::Closed, "the stream was ended (kicked)")),
        _ = idle => {
            info!(stream = %status.config.stream, "nobody wants the stream any more: pulling stops");
            Ok(())
        }
        _ = status.cancel.notified() => Ok(()),
        _ = relay.closing() => Ok(()),
    };
    status.metrics.up.set(0);
    let _ = status.stream.send(None);
    let published = session.publisher.is_some();
    if let Some(p) = session.publisher.take() {
        *ours = Some(p.stream().clone());
        match &result {
            // The remote ended the stream, or pulling stopped: so does the stream, at once.
            Ok(()) => p.unpublish(),
            // A lost connection: the stream waits out its grace window for the next attempt.
            Err(_) => drop(p),
        }
    }
    (result, published)
}

/// The consumers of streams (players), for on-demand sources and the edge.
#[derive(Debug, Default)]
pub(crate) struct DemandTable {
    streams: Mutex<HashMap<String, watch::Sender<usize>>>,
}

/// One consumer of a stream; dropping it ends its want.
#[derive(Debug)]
pub struct Demand {
    relay: Arc<Relay>,
    stream: String,
}

impl Drop for Demand {
    fn drop(&mut self) {
        let mut streams = self
            .relay
            .demand
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = streams.get(&self.stream) {
            tx.send_modify(|n| *n = n.saturating_sub(1));
            if *tx.borrow() == 0 && tx.receiver_count() == 0 {
                streams.remove(&self.stream);
            }
        }
    }
}

impl Relay {
    /// A consumer (a player) wants `app/key`: counted until the [`Demand`] drops. When the
    /// stream is not live, this is the hook that pulls it: an on-demand source of the
    /// stream starts, or with `[edge]` the stream is pulled from the origin (one pull
    /// however many consumers ask at once).
    pub fn want(self: &Arc<Self>, app: &str, key: &str) -> Demand {
        let stream = format!("{app}/{key}");
        {
            let mut streams = self
                .demand
                .streams
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            streams
                .entry(stream.clone())
                .or_insert_with(|| watch::channel(0).0)
                .send_modify(|n| *n += 1);
        }
        let live = self.hub().get(app, key).is_some_and(|s| s.is_live());
        if !live {
            self.pull_for_edge(app, key);
        }
        Demand {
            relay: self.clone(),
            stream,
        }
    }

    /// The consumer count of `stream`, to watch.
    fn demand_watch(&self, stream: &str) -> watch::Receiver<usize> {
        let mut streams = self
            .demand
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        streams
            .entry(stream.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Whether an on-demand source's stream is wanted: a consumer plays it, or a route
    /// pushes it to targets (they want it all the time).
    fn is_wanted(&self, source: &SourceConfig, demand: &watch::Receiver<usize>) -> bool {
        let (app, key) = source.app_key();
        *demand.borrow() > 0 || !self.config().targets_for(app, key).is_empty()
    }

    /// With `[edge]`, starts pulling `app/key` from the origin unless a source has it.
    fn pull_for_edge(self: &Arc<Self>, app: &str, key: &str) {
        let config = self.config();
        let Some(edge) = &config.edge else {
            return;
        };
        let stream = format!("{app}/{key}");
        if self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&stream)
        {
            return;
        }
        let mut urls = edge.origins_for(app, key);
        if urls.is_empty() {
            return;
        }
        let first = urls.remove(0);
        let source = SourceConfig {
            stream: stream.clone(),
            url: first,
            options: prism_config::SourceOptions {
                on_demand: true,
                close_after_idle: edge.close_after_idle,
                ..Default::default()
            },
        };
        match self.spawn_source_with(source, SourceOrigin::Edge, urls) {
            Ok(_) => info!(stream = %stream, "edge: pulling the stream from the origin"),
            // Exists: a concurrent first request started it.
            Err(AddSourceError::Exists(_)) => {}
            Err(e) => warn!(stream = %stream, "edge: cannot pull the stream: {e}"),
        }
    }

    /// Removes `status` from the sources if it is still the one there.
    fn remove_source_if(&self, status: &Arc<SourceStatus>) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if sources
            .get(&status.config.stream)
            .is_some_and(|s| Arc::ptr_eq(s, status))
        {
            sources.remove(&status.config.stream);
        }
    }

    /// Ends the wait of the players of `app/key` when it is not live (nothing will come):
    /// they see the end of the stream. False if there was nobody waiting.
    fn end_waiting(&self, app: &str, key: &str) -> bool {
        match self.hub().get(app, key) {
            Some(s) if !s.is_live() => s.kick(),
            _ => false,
        }
    }
}

impl Relay {
    /// Whether a consumer asking for `app/key` while it is not live makes this node pull it
    /// ([`Relay::want`]): `[edge]` has an origin for it, or an on-demand source publishes it.
    /// Outputs that otherwise answer "not found" at once (HLS, RTSP) wait for the pull then.
    pub fn can_pull(&self, app: &str, key: &str) -> bool {
        let stream = format!("{app}/{key}");
        let source = self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&stream)
            .map(|s| s.config.options.on_demand);
        match source {
            Some(on_demand) => on_demand,
            None => self
                .config()
                .edge
                .as_ref()
                .is_some_and(|e| !e.origins_for(app, key).is_empty()),
        }
    }

    /// True when the pull of `app/key` failed on every URL it has (an origin that does not
    /// have the stream, a camera that is down) since it last published: a consumer waiting
    /// for the stream can be told "not found" now rather than at its own deadline.
    pub fn pull_failed(&self, app: &str, key: &str) -> bool {
        let stream = format!("{app}/{key}");
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&stream)
            .is_some_and(|s| s.failed_all.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_config::Config;
    use prism_metrics::Metrics;

    fn relay(toml: &str) -> Arc<Relay> {
        let config = Config::from_toml_str(toml, "t.toml").unwrap();
        let relay = Relay::new(config, Metrics::new(), Vec::new(), Vec::new());
        relay.add_puller(Arc::new(crate::RtmpPuller));
        relay
    }

    #[tokio::test]
    async fn what_can_be_pulled() {
        let none = relay("");
        assert!(!none.can_pull("live", "a"));
        assert!(!none.pull_failed("live", "a"));
        let edge = relay("[edge]\norigin = \"rtmp://127.0.0.1:1/{app}/{stream}\"\n");
        assert!(edge.can_pull("live", "a"));
        let sources = relay(
            "[[source]]\nstream = \"cams/lazy\"\nurl = \"rtmp://127.0.0.1:1/a/b\"\non_demand = true\n\n\
             [[source]]\nstream = \"cams/always\"\nurl = \"rtmp://127.0.0.1:1/a/c\"\n",
        );
        sources.start_sources();
        assert!(sources.can_pull("cams", "lazy"));
        // Pulled all the time: a consumer's want changes nothing.
        assert!(!sources.can_pull("cams", "always"));
        assert!(!sources.can_pull("cams", "other"));
    }

    #[tokio::test]
    async fn a_pull_whose_every_url_failed_is_reported() {
        // Port 1 refuses at once: the edge's one origin fails.
        let edge = relay("[edge]\norigin = \"rtmp://127.0.0.1:1/{app}/{stream}\"\n");
        let _want = edge.want("live", "a");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !edge.pull_failed("live", "a") {
            assert!(Instant::now() < deadline, "{:?}", edge.sources());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!edge.pull_failed("live", "b"));
    }
}
