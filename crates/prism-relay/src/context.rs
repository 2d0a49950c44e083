use crate::dial::{Dialer, TargetSink};
use prism_config::Config;
use prism_hub::Hub;
use prism_metrics::Metrics;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Everything a connection driver needs: the hub, the current config, the metrics.
#[derive(Debug)]
pub struct Relay {
    pub hub: Arc<Hub>,
    pub metrics: Metrics,
    config: RwLock<Arc<Config>>,
    dialers: Vec<Arc<dyn Dialer>>,
    sinks: Vec<Arc<dyn TargetSink>>,
    /// Live streams, their publishers and running targets (the admin API's view).
    pub(crate) registry: crate::status::Registry,
    /// Open connections, targets and sessions, for a graceful shutdown.
    pub(crate) in_flight: Arc<crate::shutdown::InFlight>,
    /// Held while a stream's configured targets are started or a reload reconciles them.
    reconcile: std::sync::Mutex<()>,
    /// Open client connections under `[limits]` (see [`Relay::admit`]).
    pub(crate) limiter: crate::limits::ConnLimiter,
}

impl std::fmt::Debug for dyn TargetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TargetSink({})", self.scheme())
    }
}

impl std::fmt::Debug for dyn Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dialer({})", self.scheme())
    }
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
        });
        if let Some(rt) = runtime {
            rt.spawn(drive_hub_timers(hub.clone()));
        }
        Arc::new(Relay {
            hub,
            metrics,
            config: RwLock::new(Arc::new(config)),
            dialers,
            sinks,
            registry: Default::default(),
            in_flight: Default::default(),
            reconcile: Default::default(),
            limiter: Default::default(),
        })
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
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }

    /// Serializes starting a stream's configured targets with config reloads.
    pub(crate) fn reconcile_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.reconcile.lock().unwrap_or_else(|e| e.into_inner())
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

/// Who is on the other end of a connection, as the transport saw it.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The `transport` metrics label: rtmp, rtmps, rtmpt, ...
    pub transport: &'static str,
}

/// Randomness for handshakes (not security-relevant: RTMP's digest is a version check).
pub(crate) fn handshake_random() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(epoch_ms() as u64);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

pub(crate) fn epoch_ms() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u32)
        .unwrap_or(0)
}
