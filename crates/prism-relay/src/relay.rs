use crate::dial::{Dialer, TargetSink};
use prism_config::Config;
use prism_control::{
    Action, ConnInfo, ConnPermit, Control, InFlightGuard, LimitExceeded, Refusal,
    RemoveTargetError, ShutdownReport, StreamRequest, StreamSnapshot,
};
use prism_hub::{Hub, Stream};
use prism_metrics::{
    ConnectionMetrics, ErrorReason, Metrics, SrtDirection, SrtMetrics, WebrtcMetrics,
};
use prometheus::IntCounter;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Everything a connection driver needs: the hub, the metrics, and the control plane
/// (config, limits, access, registry, in-flight tracking) it asks before acting.
///
/// Transports reach it only through its methods: the hub is private (a publish goes through
/// [`Relay::publish`] and its access checks), and a transport's own series (its connection
/// errors, an SRT connection's statistics) are handed out one by one
/// ([`Relay::connection_error`], [`Relay::srt_metrics`], ...), never the whole registry.
#[derive(Debug)]
pub struct Relay {
    hub: Arc<Hub>,
    metrics: Metrics,
    /// Config, limits, in-flight tracking: the control plane.
    control: Control,
    dialers: Vec<Arc<dyn Dialer>>,
    sinks: Vec<Arc<dyn TargetSink>>,
    /// Outputs every new stream is handed to (HLS, ...), registered at start-up.
    outputs: RwLock<Vec<Arc<dyn StreamOutput>>>,
    /// Pulled sources: the pullers transports registered, and the running sources by stream.
    pub(crate) pullers: RwLock<Vec<Arc<dyn crate::source::SourcePuller>>>,
    pub(crate) sources: Mutex<HashMap<String, Arc<crate::source::SourceStatus>>>,
    pub(crate) demand: crate::source::DemandTable,
    /// Streams' shared Opus → AAC transcoders.
    aac: crate::audio::AudioTable,
    opus: crate::audio::AudioTable,
    /// Drain requests (`POST /api/v1/drain`): how many so far, and who waits for the next.
    drains: (std::sync::atomic::AtomicU64, tokio::sync::Notify),
}

/// An output that serves streams without a connection of their own per stream (HLS/DASH
/// packaging, recording, ...): it is handed every stream when it starts and subscribes to
/// it as it sees fit. Transports register one with [`Relay::add_output`]; the relay knows
/// no more of it.
pub trait StreamOutput: Send + Sync + std::fmt::Debug + 'static {
    /// A stream started (not resumed within its reconnect grace: that is the same stream).
    fn stream_started(&self, relay: &Arc<Relay>, stream: &Arc<Stream>);
    /// A publisher came back within the reconnect grace: the same stream goes on with a new
    /// encoder session (the hub continues its timestamps; its sequence headers come again).
    fn stream_resumed(&self, _relay: &Arc<Relay>, _stream: &Arc<Stream>) {}
}

impl Relay {
    /// `dialers` (RTMP over some byte stream) and `sinks` (other protocols) serve push
    /// targets, one per URL scheme.
    pub fn new(
        config: Config,
        metrics: Metrics,
        dialers: Vec<Arc<dyn Dialer>>,
        sinks: Vec<Arc<dyn TargetSink>>,
    ) -> Arc<Relay> {
        let runtime = tokio::runtime::Handle::try_current().ok();
        let hub = Hub::new(prism_hub::HubConfig {
            // Without a runtime nothing would end a grace window: streams end at once, as
            // they did when a publisher vanished outside a runtime.
            reconnect_grace: if runtime.is_some() {
                config.hub.reconnect_grace
            } else {
                Duration::ZERO
            },
            gop_cache_max_bytes: if config.hub.gop_cache {
                config.hub.gop_cache_max_bytes
            } else {
                0
            },
            // `[limits] max_memory_mb`, resolved (0 = automatic) by the binary at start.
            memory: match config.limits.max_memory_mb {
                0 => None,
                mb => Some(prism_mem::Budget::new(
                    usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
                )),
            },
        });
        if let Some(rt) = runtime {
            rt.spawn(drive_hub_timers(hub.clone()));
        }
        Arc::new(Relay {
            hub,
            control: Control::new(config, metrics.clone()),
            metrics,
            dialers,
            sinks,
            outputs: RwLock::new(Vec::new()),
            pullers: RwLock::new(Vec::new()),
            sources: Mutex::new(HashMap::new()),
            demand: Default::default(),
            aac: crate::audio::AudioTable::new(prism_audio::Want::Aac),
            opus: crate::audio::AudioTable::new(prism_audio::Want::Opus),
            drains: Default::default(),
        })
    }

    /// Registers an output every stream that starts from now on is handed to.
    pub fn add_output(&self, output: Arc<dyn StreamOutput>) {
        self.outputs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(output);
    }

    /// Hands a new stream to every registered output.
    pub(crate) fn stream_started(self: &Arc<Self>, stream: &Arc<Stream>) {
        let outputs = self
            .outputs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for o in outputs {
            o.stream_started(self, stream);
        }
    }

    /// Tells every registered output that a publisher resumed `stream`.
    pub(crate) fn stream_resumed(self: &Arc<Self>, stream: &Arc<Stream>) {
        let outputs = self
            .outputs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for o in outputs {
            o.stream_resumed(self, stream);
        }
    }

    /// Whether `info` may play `req` (route rules, then the `[auth] on_play` webhook), for
    /// outputs that serve many requests per viewer (HLS) and so do not go through
    /// [`Relay::play`]. Refusals are logged and counted as for players.
    pub async fn authorize_play(
        &self,
        req: StreamRequest<'_>,
        info: &ConnInfo,
    ) -> Result<(), Refusal> {
        self.control.authorize(Action::Play, req, info).await
    }

    /// The sink for a URL scheme, if a transport provides one.
    pub fn sink(&self, scheme: &str) -> Option<&Arc<dyn TargetSink>> {
        self.sinks.iter().find(|s| s.scheme() == scheme)
    }

    /// The dialer for a URL scheme, if a transport provides one.
    pub fn dialer(&self, scheme: &str) -> Option<&Arc<dyn Dialer>> {
        self.dialers.iter().find(|d| d.scheme() == scheme)
    }

    pub fn config(&self) -> Arc<Config> {
        self.control.config()
    }

    pub fn set_config(&self, config: Config) {
        self.control.set_config(config)
    }

    /// The control plane: config, limits, access, registry, in-flight tracking.
    pub(crate) fn control(&self) -> &Control {
        &self.control
    }

    /// The metric handles, for the relay's own drivers.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// `prism_connection_errors_total{transport,reason}`, for what a transport refuses or
    /// loses outside an RTMP session ([`serve_rtmp`](crate::serve_rtmp) counts its own):
    /// failed TLS handshakes, tunnel refusals, SRT rejections.
    pub fn connection_error(&self, transport: &'static str, reason: ErrorReason) -> IntCounter {
        self.metrics.connection_error(transport, reason)
    }

    /// `prism_connections_{active,total}{transport}`, for a transport that runs its
    /// sessions without [`serve_rtmp`](crate::serve_rtmp) (SRT).
    pub fn connection_metrics(&self, transport: &'static str) -> ConnectionMetrics {
        self.metrics.connection(transport)
    }

    /// The `prism_srt_*` series of one SRT connection; [`Relay::forget_srt`] when it ends.
    pub fn srt_metrics(&self, stream: &str, direction: SrtDirection, target: &str) -> SrtMetrics {
        self.metrics.srt(stream, direction, target)
    }

    /// `prism_rtsp_dropped_total{reason}`: media an RTSP pull dropped.
    pub fn rtsp_dropped(&self, reason: &'static str) -> IntCounter {
        self.metrics.rtsp_dropped(reason)
    }

    /// Removes the `prism_srt_*` series of one SRT connection.
    pub fn forget_srt(&self, stream: &str, direction: SrtDirection, target: &str) {
        self.metrics.forget_srt(stream, direction, target)
    }

    /// An output's view of `stream`'s Opus → AAC transcoder (one per stream, made by the
    /// first output that asks).
    pub fn aac_audio(&self, stream: &Arc<Stream>) -> crate::audio::AudioView {
        self.aac.get(stream, self.hub.memory()).view()
    }

    /// A WebRTC viewer's view of `stream`'s AAC → Opus transcoder (one per stream, shared
    /// by every viewer, made by the first that asks).
    pub fn opus_audio(&self, stream: &Arc<Stream>) -> crate::audio::AudioView {
        self.opus.get(stream, self.hub.memory()).view()
    }

    /// The `prism_webrtc_*` series of a stream (`direction`: `whip` or `whep`); they go
    /// with the stream's other series when it ends.
    pub fn webrtc_metrics(&self, stream: &str, direction: &'static str) -> WebrtcMetrics {
        self.metrics.webrtc(stream, direction)
    }

    /// The Prometheus text exposition of every metric, gauges refreshed first.
    pub fn render_metrics(&self) -> String {
        self.refresh_gauges();
        self.metrics.render()
    }

    /// The stream published as `app/key`, if it is live (or in its reconnect grace
    /// window). To publish or play, use [`Relay::publish`] and [`Relay::play`].
    pub fn stream(&self, app: &str, key: &str) -> Option<Arc<Stream>> {
        self.hub.get(app, key)
    }

    /// The hub, for the relay's own drivers.
    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Brings gauges that are cheaper to read than to keep current up to date; called
    /// before metrics are rendered.
    pub fn refresh_gauges(&self) {
        self.metrics
            .streams_active()
            .set(self.hub.live_streams().len() as i64);
        self.control.registry().refresh_queue_gauges();
        if let Some(b) = self.hub.memory() {
            for pool in prism_mem::Pool::ALL {
                self.metrics
                    .memory_bytes(pool.as_str())
                    .set(b.pool(pool) as i64);
            }
            self.metrics.memory_budget_bytes().set(b.limit() as i64);
        }
        // Outside a runtime (tests rendering directly) there is nothing to count.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            self.metrics
                .runtime_alive_tasks()
                .set(rt.metrics().num_alive_tasks() as i64);
        }
    }

    /// The media-memory budget (`[limits] max_memory_mb`), if one is accounted: holders of
    /// media bytes outside the hub (reassembly, tunnels, HLS windows) charge it too.
    pub fn memory(&self) -> Option<&Arc<prism_mem::Budget>> {
        self.hub.memory()
    }

    /// Live streams (publishing or within the reconnect grace window), sorted by name,
    /// with their publisher and running targets.
    pub fn live_status(&self) -> Vec<StreamSnapshot> {
        self.control.live_status()
    }

    /// Stops the target `name` of the live stream `app/key`: it unpublishes from its
    /// destination (giving up after a few seconds) and goes away.
    pub fn remove_target(&self, app: &str, key: &str, name: &str) -> Result<(), RemoveTargetError> {
        self.control.remove_target(app, key, name)
    }

    /// Ends the live stream `app/key` and closes its publisher's connection. False if it
    /// is not live.
    pub fn kick(&self, app: &str, key: &str) -> bool {
        self.control.kick(app, key)
    }

    /// [`kick`](Self::kick), first asking an Enhanced RTMP v2 publisher that handles it to
    /// reconnect to `reconnect_url` (`NetConnection.Connect.ReconnectRequest`): the stream
    /// moves to another node. Legacy publishers are just disconnected.
    pub fn kick_to(&self, app: &str, key: &str, reconnect_url: Option<String>) -> bool {
        self.control.kick_to(app, key, reconnect_url)
    }

    /// Admits a new connection from `peer` on `transport` under `[limits]`, or refuses it:
    /// then it is counted in `prism_connection_errors_total{transport,reason}` and logged
    /// (rate-limited), and the caller closes it. Hold the permit while the connection lives.
    pub fn admit(
        &self,
        peer: SocketAddr,
        transport: &'static str,
    ) -> Result<ConnPermit, LimitExceeded> {
        self.control.admit(peer, transport)
    }

    /// Counts a connection, push target or session as open until the guard drops, so
    /// that [`Relay::shutdown`] waits for it. `what` describes it for the log (called at
    /// once; it must not contain secrets).
    pub fn track(&self, what: impl FnOnce() -> String) -> InFlightGuard {
        self.control.track(what)
    }

    /// True once [`Relay::shutdown`] has begun.
    pub fn is_closing(&self) -> bool {
        self.control.is_closing()
    }

    /// Resolves once [`Relay::shutdown`] has begun: connections that serve no stream close
    /// then (those that do end with their stream).
    pub async fn closing(&self) {
        self.control.closing().await
    }

    /// Asks the Enhanced RTMP v2 publishers connected now to reconnect elsewhere
    /// (`NetConnection.Connect.ReconnectRequest`, `[rtmp] reconnect_url`), then closes
    /// their connections; other connections are untouched. The admin API's drain.
    pub fn drain(&self) {
        self.drains
            .0
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.drains.1.notify_waiters();
    }

    /// How many drains were requested so far (see [`Relay::drained_after`]).
    pub fn drain_count(&self) -> u64 {
        self.drains.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once a drain is requested after the `seen`-th.
    pub async fn drained_after(&self, seen: u64) {
        loop {
            let notified = self.drains.1.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.drain_count() > seen {
                return;
            }
            notified.await;
        }
    }

    /// Ends every stream as an unpublish does (targets send FCUnpublish and deleteStream
    /// and close, players get the end of stream and close, publishers' connections close),
    /// refuses new publishers and players, and waits up to `bound` for all of that to
    /// finish. The transports' accept loops should be stopped first.
    pub async fn shutdown(&self, bound: Duration) -> ShutdownReport {
        let started = Instant::now();
        self.control.begin_shutdown();
        let streams_ended = self.hub.close();
        let still_open = self.control.drain(bound).await;
        ShutdownReport {
            streams_ended,
            elapsed: started.elapsed(),
            still_open,
        }
    }
}

/// Ends reconnect grace windows on time: the hub reads no clock, so this task sleeps until its
/// earliest expiry (looking again when an earlier one appears) and hands it the time. Stops
/// once the hub is closed (shutdown ends every stream, so no window is left to time).
async fn drive_hub_timers(hub: Arc<Hub>) {
    while !hub.is_closed() {
        match hub.poll_timeout() {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = hub.timer_changed() => {}
                }
            }
            None => hub.timer_changed().await,
        }
        hub.handle_timeout(std::time::Instant::now());
    }
}
