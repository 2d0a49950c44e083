//! What is still open, for a graceful shutdown: the relay ends every live stream the way an
//! unpublish does, then waits (bounded) here for what is still saying goodbye: targets
//! unpublishing from their destinations, players being told the stream ended, connections
//! flushing.
//!
//! The transports stop accepting before this runs (the binary drops their accept loops);
//! what is already connected is tracked here with [`InFlightGuard`]s, taken once per
//! connection, target or session (never per frame).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// What is open: connections, push targets, sessions, by id, with a description for the
/// log should the shutdown bound hit.
#[derive(Debug, Default)]
pub struct InFlight {
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

impl InFlight {
    /// Counts a connection, push target or session as open until the guard drops, so
    /// that [`InFlight::drain`] waits for it. `what` describes it for the log (called at
    /// once; it must not contain secrets).
    pub fn track(self: &Arc<Self>, what: impl FnOnce() -> String) -> InFlightGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, what());
        InFlightGuard {
            set: self.clone(),
            id,
        }
    }

    /// True once [`InFlight::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Resolves once [`InFlight::close`] was called.
    pub async fn closing(&self) {
        loop {
            let notified = self.closing_notify.notified();
            if self.is_closing() {
                return;
            }
            notified.await;
        }
    }

    /// Marks the start of a shutdown: [`InFlight::closing`] resolves from now on.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.closing_notify.notify_waiters();
    }

    /// Waits up to `bound` for everything tracked to finish; returns what is still open
    /// when the bound hit (empty if every one finished in time).
    pub async fn drain(&self, bound: Duration) -> Vec<String> {
        let drained = async {
            loop {
                let idle = self.idle.notified();
                if self.lock().is_empty() {
                    return;
                }
                idle.await;
            }
        };
        match tokio::time::timeout(bound, drained).await {
            Ok(()) => Vec::new(),
            Err(_) => self.lock().values().cloned().collect(),
        }
    }
}
