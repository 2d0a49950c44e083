//! Graceful shutdown: every live stream ends the way an unpublish does, and the relay
//! waits (bounded) for what is still saying goodbye: targets unpublishing from their
//! destinations, players being told the stream ended, connections flushing.
//!
//! The transports stop accepting before this runs (the binary drops their accept loops);
//! what is already connected is tracked here with [`InFlightGuard`]s, taken once per
//! connection, target or session (never per frame).

use crate::context::Relay;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What is open: connections, push targets, sessions, by id, with a description for the
/// log should the shutdown bound hit.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    open: Mutex<BTreeMap<u64, String>>,
    next: AtomicU64,
    /// Woken when `open` becomes empty.
    idle: Notify,
    closing: AtomicBool,
    closing_notify: Notify,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, String>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps one connection, target or session counted as open until dropped.
#[derive(Debug)]
#[must_use = "the guard counts as open only while it lives"]
pub struct InFlightGuard {
    set: Arc<InFlight>,
    id: u64,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut open = self.set.lock();
        open.remove(&self.id);
        if open.is_empty() {
            self.set.idle.notify_waiters();
        }
    }
}

/// How a shutdown went.
#[derive(Debug, Clone)]
pub struct ShutdownReport {
    /// Live streams ended.
    pub streams_ended: usize,
    /// How long the goodbyes took (the bound, if it hit).
    pub elapsed: Duration,
    /// Connections, targets and sessions still open when the bound hit (empty if every
    /// one finished in time).
    pub still_open: Vec<String>,
}

impl Relay {
    /// Counts a connection, push target or session as open until the guard drops, so
    /// that [`Relay::shutdown`] waits for it. `what` describes it for the log (called at
    /// once; it must not contain secrets).
    pub fn track(&self, what: impl FnOnce() -> String) -> InFlightGuard {
        let set = self.in_flight.clone();
        let id = set.next.fetch_add(1, Ordering::Relaxed);
        set.lock().insert(id, what());
        InFlightGuard { set, id }
    }

    /// True once [`Relay::shutdown`] has begun.
    pub fn is_closing(&self) -> bool {
        self.in_flight.closing.load(Ordering::Acquire)
    }

    /// Resolves once [`Relay::shutdown`] has begun: connections that serve no stream close
    /// then (those that do end with their stream).
    pub async fn closing(&self) {
        loop {
            let notified = self.in_flight.closing_notify.notified();
            if self.is_closing() {
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
        self.in_flight.closing.store(true, Ordering::Release);
        self.in_flight.closing_notify.notify_waiters();
        let streams_ended = self.hub.close();
        let drained = async {
            loop {
                let idle = self.in_flight.idle.notified();
                if self.in_flight.lock().is_empty() {
                    return;
                }
                idle.await;
            }
        };
        let still_open = match tokio::time::timeout(bound, drained).await {
            Ok(()) => Vec::new(),
            Err(_) => self.in_flight.lock().values().cloned().collect(),
        };
        ShutdownReport {
            streams_ended,
            elapsed: started.elapsed(),
            still_open,
        }
    }
}
