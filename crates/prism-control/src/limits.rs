//! Connection admission: `[limits] max_connections` overall and `max_connections_per_ip`,
//! shared by every transport. A transport asks the relay to admit a connection right after
//! accepting (for RTMPT when a tunnel session opens, for SRT when a caller's handshake
//! starts) and holds the [`ConnPermit`] for as long as the connection lives.

use prism_metrics::ErrorReason;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Refusals are logged at most this often (with a count of those not logged): a flood must
/// not become a flood of log lines.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Open connections, in total and per client address.
#[derive(Debug, Default)]
pub struct ConnLimiter {
    inner: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    last_log: Option<Instant>,
    unlogged: u64,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
#[must_use = "the connection counts as open only while its permit lives"]
pub struct ConnPermit {
    inner: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    /// `max_connections`.
    Total,
    /// `max_connections_per_ip`.
    PerIp,
}

impl LimitExceeded {
    /// The `reason` label in `prism_connection_errors_total`.
    pub fn reason(self) -> ErrorReason {
        match self {
            LimitExceeded::Total => ErrorReason::TooManyConnections,
            LimitExceeded::PerIp => ErrorReason::TooManyPerIp,
        }
    }
}

fn lock(m: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ConnLimiter {
    pub fn admit(
        &self,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: usize,
    ) -> Result<ConnPermit, LimitExceeded> {
        let ip = prism_config::canonical_ip(ip);
        let mut c = lock(&self.inner);
        if c.total >= max_total {
            return Err(LimitExceeded::Total);
        }
        let n = c.per_ip.entry(ip).or_insert(0);
        if *n >= max_per_ip {
            return Err(LimitExceeded::PerIp);
        }
        *n += 1;
        c.total += 1;
        Ok(ConnPermit {
            inner: self.inner.clone(),
            ip,
        })
    }

    /// Whether a refusal should be logged now; if so, also how many were not logged since.
    pub fn should_log(&self, now: Instant) -> Option<u64> {
        let mut c = lock(&self.inner);
        if c.last_log
            .is_some_and(|t| now.duration_since(t) < LOG_EVERY)
        {
            c.unlogged += 1;
            return None;
        }
        c.last_log = Some(now);
        Some(std::mem::take(&mut c.unlogged))
    }

    #[cfg(test)]
    fn open(&self) -> (usize, usize) {
        let c = lock(&self.inner);
        (c.total, c.per_ip.len())
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut c = lock(&self.inner);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_total_and_per_ip_and_frees_on_drop() {
        let l = ConnLimiter::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = l.admit(a, 3, 2).unwrap();
        let p2 = l.admit(a, 3, 2).unwrap();
        assert_eq!(l.admit(a, 3, 2).unwrap_err(), LimitExceeded::PerIp);
        // The same client over a dual-stack socket is the same client.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(l.admit(mapped, 3, 2).unwrap_err(), LimitExceeded::PerIp);
        let p3 = l.admit(b, 3, 2).unwrap();
        assert_eq!(l.admit(b, 3, 2).unwrap_err(), LimitExceeded::Total);
        drop(p1);
        let p4 = l.admit(a, 3, 2).unwrap();
        drop((p2, p3, p4));
        assert_eq!(l.open(), (0, 0), "every permit returned its place");
    }

    #[test]
    fn refusal_logs_are_rate_limited() {
        let l = ConnLimiter::default();
        let t = Instant::now();
        assert_eq!(l.should_log(t), Some(0));
        assert_eq!(l.should_log(t + Duration::from_millis(10)), None);
        assert_eq!(l.should_log(t + Duration::from_millis(20)), None);
        assert_eq!(l.should_log(t + Duration::from_secs(2)), Some(2));
    }
}
