//! [`Control`]: the relay's control-plane state in one value. Each piece lives in its own
//! module; this one only holds them together and answers for them.

use crate::access::{Action, Refusal, StreamRequest, MAX_KEY_LEN};
use crate::conn::ConnInfo;
use crate::limits::{ConnLimiter, ConnPermit, LimitExceeded};
use crate::registry::{Registry, RemoveTargetError, StreamSnapshot, TargetOrigin};
use crate::reload::{keep_startup_sections, plan_streams, ReloadPlan};
use crate::shutdown::{InFlight, InFlightGuard};
use prism_config::Config;
use prism_metrics::Metrics;
use std::net::SocketAddr;
use std::sync::{Arc, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The current config, limits, in-flight tracking: what decides, not what moves media.
#[derive(Debug)]
pub struct Control {
    config: RwLock<Arc<Config>>,
    metrics: Metrics,
    /// Live streams, their publishers and running targets (the admin API's view).
    registry: Registry,
    /// Open connections, targets and sessions, for a graceful shutdown.
    in_flight: Arc<InFlight>,
    /// Held while a stream's configured targets are started or a reload reconciles them.
    reconcile: std::sync::Mutex<()>,
    /// Open client connections under `[limits]` (see [`Control::admit`]).
    limiter: ConnLimiter,
}

impl Control {
    pub fn new(config: Config, metrics: Metrics) -> Control {
        Control {
            config: RwLock::new(Arc::new(config)),
            metrics,
            registry: Default::default(),
            in_flight: Default::default(),
            reconcile: Default::default(),
            limiter: Default::default(),
        }
    }

    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    /// Stores a new (validated) configuration and plans what it changes: for every live
    /// stream, the configured targets to start, stop and restart. Listener and `[stream]`
    /// changes need a restart: they are kept as running and reported. The plan holds the
    /// reconcile lock until dropped; the relay carries it out meanwhile.
    pub fn plan_reload(&self, mut new: Config) -> ReloadPlan<'_> {
        let reconciling = self.reconcile_lock();
        let old = self.config();
        let restart_needed = keep_startup_sections(&old, &mut new);
        self.set_config(new);
        let config = self.config();
        ReloadPlan {
            restart_needed,
            streams: plan_streams(&config, self.registry.live_targets()),
            _reconciling: reconciling,
        }
    }

    /// Serializes starting a stream's configured targets with config reloads.
    pub fn reconcile_lock(&self) -> MutexGuard<'_, ()> {
        self.reconcile.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `info` may `action` `req`: the route's rules, then the `[auth]` webhook
    /// (awaited, within `[auth] timeout_ms`). A refusal is logged and counted (see
    /// [`Control::refused`]).
    pub async fn authorize(
        &self,
        action: Action,
        req: StreamRequest<'_>,
        info: &ConnInfo,
    ) -> Result<(), Refusal> {
        let config = self.config();
        let result = crate::access::check(action, req, info, &config).await;
        if let Err(r) = &result {
            self.refused(action, req, info, r);
        }
        result
    }

    /// Logs a refused publish or play and counts it in
    /// `prism_publish_rejected_total{reason}` / `prism_play_rejected_total{reason}`.
    pub fn refused(&self, action: Action, req: StreamRequest<'_>, info: &ConnInfo, r: &Refusal) {
        match action {
            Action::Publish => self.metrics.publish_rejected(r.reason()).inc(),
            Action::Play => self.metrics.play_rejected(r.reason()).inc(),
        }
        // A refused name may be huge: log a bounded prefix of it.
        let stream: String = format!("{}/{}", req.app, req.key)
            .chars()
            .take(MAX_KEY_LEN)
            .collect();
        warn!(
            peer = %info.peer,
            transport = info.transport,
            stream = %stream,
            reason = r.reason().as_str(),
            "{} refused: {r}",
            action.as_str()
        );
    }

    /// Live streams, their publishers and running targets.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Live streams (publishing or within the reconnect grace window), sorted by name,
    /// with their publisher and running targets.
    pub fn live_status(&self) -> Vec<StreamSnapshot> {
        self.registry.snapshot()
    }

    /// Stops the target `name` of the live stream `app/key`: it unpublishes from its
    /// destination (giving up after a few seconds) and goes away.
    pub fn remove_target(&self, app: &str, key: &str, name: &str) -> Result<(), RemoveTargetError> {
        let Some((stream, targets)) = self.registry.find_live(app, key) else {
            return Err(RemoveTargetError::NotLive(format!("{app}/{key}")));
        };
        let Some(t) = targets.iter().find(|t| t.name == name && !t.is_cancelled()) else {
            return Err(RemoveTargetError::NoSuchTarget {
                stream: stream.name().to_owned(),
                name: name.to_owned(),
            });
        };
        info!(stream = %stream.name(), target = %name, "target removed");
        if t.origin == TargetOrigin::Config {
            self.registry.config_target_removed(&stream, name);
        }
        t.cancel();
        Ok(())
    }

    /// Ends the live stream `app/key` and closes its publisher's connection. False if it
    /// is not live.
    pub fn kick(&self, app: &str, key: &str) -> bool {
        self.kick_to(app, key, None)
    }

    /// [`kick`](Self::kick), asking an Enhanced RTMP v2 publisher to reconnect to
    /// `reconnect_url` (the stream moves to another node) before its connection closes.
    pub fn kick_to(&self, app: &str, key: &str, reconnect_url: Option<String>) -> bool {
        let Some((stream, _)) = self.registry.find_live(app, key) else {
            return false;
        };
        let kicked = stream.kick_to(reconnect_url);
        if kicked {
            info!(stream = %stream.name(), "stream kicked: publisher disconnected");
        }
        kicked
    }

    /// Admits a new connection from `peer` on `transport` under `[limits]`, or refuses it:
    /// then it is counted in `prism_connection_errors_total{transport,reason}` and logged
    /// (rate-limited), and the caller closes it.
    pub fn admit(
        &self,
        peer: SocketAddr,
        transport: &'static str,
    ) -> Result<ConnPermit, LimitExceeded> {
        let limits = self.config().limits;
        let result = self.limiter.admit(
            peer.ip(),
            limits.max_connections,
            limits.max_connections_per_ip,
        );
        if let Err(e) = result {
            self.metrics.connection_error(transport, e.reason()).inc();
            if let Some(unlogged) = self.limiter.should_log(Instant::now()) {
                let (what, max) = match e {
                    LimitExceeded::Total => ("max_connections", limits.max_connections),
                    LimitExceeded::PerIp => {
                        ("max_connections_per_ip", limits.max_connections_per_ip)
                    }
                };
                warn!(%peer, transport, reason = e.reason().as_str(), unlogged, "connection refused: [limits] {what} ({max}) reached");
            }
        }
        result
    }

    /// Counts a connection, push target or session as open until the guard drops, so that
    /// a shutdown waits for it. `what` describes it for the log (called at once; it must
    /// not contain secrets).
    pub fn track(&self, what: impl FnOnce() -> String) -> InFlightGuard {
        self.in_flight.track(what)
    }

    /// True once a shutdown has begun ([`Control::begin_shutdown`]).
    pub fn is_closing(&self) -> bool {
        self.in_flight.is_closing()
    }

    /// Resolves once a shutdown has begun.
    pub async fn closing(&self) {
        self.in_flight.closing().await
    }

    /// The first step of a shutdown: [`Control::closing`] resolves from now on.
    pub fn begin_shutdown(&self) {
        self.in_flight.close()
    }

    /// Waits up to `bound` for every tracked connection, target and session to finish;
    /// returns those still open when the bound hit.
    pub async fn drain(&self, bound: Duration) -> Vec<String> {
        self.in_flight.drain(bound).await
    }
}
