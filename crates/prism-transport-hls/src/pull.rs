//! HLS viewers as consumers of pulled streams (an `[edge]`, an on-demand `[[source]]`).
//!
//! An HLS viewer has no connection per stream: it is a series of requests. Each request for
//! a stream this node can pull renews a lease; the lease holds one [`Demand`] (the relay's
//! "someone wants this stream") until no request came for [`LEASE`]. So the first request
//! for a stream that is not live starts the pull, every viewer of it keeps the one pull
//! alive, and the pull stops `close_after_idle_ms` after the last lease ran out.

use prism_relay::{Demand, Relay};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A stream stays wanted this long after its last HLS request. Players reload the playlist
/// at least every target duration (a few seconds); LL-HLS ones every part.
pub(crate) const LEASE: Duration = Duration::from_secs(10);
/// How long the request that started a pull waits for the stream to go live before it is
/// answered "not found" (the pull's own failure answers sooner, see
/// [`Relay::pull_failed`]).
pub(crate) const PULL_WAIT: Duration = Duration::from_secs(10);
/// How often that request looks whether the stream is live.
const POLL: Duration = Duration::from_millis(100);

/// The leases by stream name; bounded by `[limits] max_streams`.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    streams: Mutex<HashMap<String, (Demand, Instant)>>,
}

/// How a wait for a pulled stream ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pulled {
    /// The stream is live here now.
    Live,
    /// The pull failed on every origin, or the stream did not come within [`PULL_WAIT`].
    NotFound,
}

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Demand, Instant)>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Renews the lease of `app/key` when this node pulls it (or could). False when the
    /// stream is not one this node pulls, or the table is full.
    pub(crate) fn renew(&self, relay: &Arc<Relay>, app: &str, key: &str) -> bool {
        let name = format!("{app}/{key}");
        let until = Instant::now() + LEASE;
        if let Some(lease) = self.lock().get_mut(&name) {
            lease.1 = until;
            return true;
        }
        if !relay.can_pull(app, key) {
            return false;
        }
        let max = relay.config().limits.max_streams;
        let mut streams = self.lock();
        if streams.len() >= max && !streams.contains_key(&name) {
            return false;
        }
        // `want` starts the pull when the stream is not live (one pull however many ask).
        let demand = relay.want(app, key);
        streams.entry(name).or_insert((demand, until)).1 = until;
        true
    }

    /// Drops the leases that ran out; each ends one want of its stream.
    pub(crate) fn sweep(&self, now: Instant) {
        let expired: Vec<(Demand, Instant)> = {
            let mut streams = self.lock();
            let names: Vec<String> = streams
                .iter()
                .filter(|(_, (_, until))| *until <= now)
                .map(|(n, _)| n.clone())
                .collect();
            names.iter().filter_map(|n| streams.remove(n)).collect()
        };
        // Dropped outside the lock: a Demand's drop takes the relay's.
        drop(expired);
    }

    /// Number of leases held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Sweeps `leases` until the process ends.
pub(crate) async fn run_sweeper(leases: Arc<Leases>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        leases.sweep(Instant::now());
    }
}

/// Waits until `app/key` is live here (the pull a lease started published it), the pull
/// failed on every origin, or [`PULL_WAIT`] passed.
pub(crate) async fn wait_live(relay: &Relay, app: &str, key: &str) -> Pulled {
    let deadline = Instant::now() + PULL_WAIT;
    loop {
        if relay.stream(app, key).is_some_and(|s| s.is_live()) {
            return Pulled::Live;
        }
        if relay.pull_failed(app, key) || Instant::now() >= deadline {
            return Pulled::NotFound;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_metrics::Metrics;

    fn edge_relay() -> Arc<Relay> {
        let config = prism_config::Config::from_toml_str(
            "[edge]\norigin = \"rtmp://127.0.0.1:1/{app}/{stream}\"\n[limits]\nmax_streams = 2\n",
            "test.toml",
        )
        .unwrap();
        let relay = Relay::new(config, Metrics::new(), Vec::new(), Vec::new());
        relay.add_puller(Arc::new(prism_relay::RtmpPuller));
        relay
    }

    #[tokio::test]
    async fn leases_are_renewed_bounded_and_expire() {
        let relay = edge_relay();
        let leases = Leases::default();
        let t0 = Instant::now();
        assert!(leases.renew(&relay, "live", "a"));
        assert!(leases.renew(&relay, "live", "a"));
        assert!(leases.renew(&relay, "live", "b"));
        // [limits] max_streams = 2: a third stream gets no lease.
        assert!(!leases.renew(&relay, "live", "c"));
        assert_eq!(leases.len(), 2);
        leases.sweep(t0 + LEASE / 2);
        assert_eq!(leases.len(), 2);
        leases.sweep(Instant::now() + LEASE + Duration::from_millis(1));
        assert_eq!(leases.len(), 0);
        // Room again once they ran out.
        assert!(leases.renew(&relay, "live", "c"));
    }

    #[tokio::test]
    async fn nothing_to_pull_without_an_edge() {
        let config = prism_config::Config::from_toml_str("", "test.toml").unwrap();
        let relay = Relay::new(config, Metrics::new(), Vec::new(), Vec::new());
        let leases = Leases::default();
        assert!(!leases.renew(&relay, "live", "a"));
        assert_eq!(leases.len(), 0);
    }
}
