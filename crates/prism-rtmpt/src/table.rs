//! The tunnel sessions: ids, the session limit, and expiry of sessions nobody polls.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// Limits of a [`SessionTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLimits {
    /// Most sessions open at once.
    pub max_sessions: usize,
    /// A session without any request for this long expires.
    pub session_timeout: Duration,
}

/// A session id: 32 lowercase hex digits (128 bits). The id is the only credential of a
/// tunnel session, so it is unguessable: a keyed SipHash (random key per table) of a counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Lookups by `&str`; the derived Hash of the newtype hashes like the inner `str`.
impl std::borrow::Borrow<str> for SessionId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// [`SessionTable::open`] refused: the table holds `max_sessions` live sessions. The value is
/// handed back.
#[derive(Debug, thiserror::Error)]
#[error("too many RTMPT sessions")]
pub struct TableFull<T>(pub T);

struct Slot<T> {
    value: T,
    last_seen: Instant,
}

/// The open tunnel sessions, each holding a caller's `T` (its connection), keyed by id.
///
/// Time is an input: every call that can see a session age takes `now`. A session expires
/// `session_timeout` after its last request. An expired session is invisible to
/// [`get`](Self::get) at once, but stays in the table (and counts against the limit) until
/// [`drain_expired`](Self::drain_expired) hands it out, so the caller decides when its value
/// is dropped. [`open`](Self::open) drains on its own when the table is full and gives the
/// expired values back with its result.
///
/// Run loop: call `drain_expired(now)` at [`poll_timeout`](Self::poll_timeout) (and whenever
/// convenient), and close what it returns.
pub struct SessionTable<T> {
    limits: TableLimits,
    sessions: HashMap<SessionId, Slot<T>>,
    key: RandomState,
    counter: u64,
}

impl<T> SessionTable<T> {
    pub fn new(limits: TableLimits) -> Self {
        SessionTable {
            limits,
            sessions: HashMap::new(),
            key: RandomState::new(),
            counter: 0,
        }
    }

    pub fn limits(&self) -> TableLimits {
        self.limits
    }

    /// Sessions in the table, expired ones not yet drained included.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Opens a session holding `value`. When the table is full, expired sessions are drained
    /// into `expired` first; if it is still full, the value comes back in [`TableFull`].
    pub fn open(
        &mut self,
        now: Instant,
        value: T,
        expired: &mut Vec<(SessionId, T)>,
    ) -> Result<SessionId, TableFull<T>> {
        if self.sessions.len() >= self.limits.max_sessions {
            self.drain_expired(now, expired);
            if self.sessions.len() >= self.limits.max_sessions {
                return Err(TableFull(value));
            }
        }
        loop {
            let id = self.next_id();
            // 128-bit ids do not collide in practice; the check keeps it a certainty.
            if let Entry::Vacant(v) = self.sessions.entry(id.clone()) {
                v.insert(Slot {
                    value,
                    last_seen: now,
                });
                return Ok(id);
            }
        }
    }

    /// The live session `id`, its expiry pushed back to `now + session_timeout` (any request
    /// counts as activity). `None` for unknown and expired ids.
    pub fn get(&mut self, id: &str, now: Instant) -> Option<&mut T> {
        let timeout = self.limits.session_timeout;
        let slot = self.sessions.get_mut(id)?;
        if now.saturating_duration_since(slot.last_seen) >= timeout {
            return None;
        }
        slot.last_seen = now;
        Some(&mut slot.value)
    }

    /// Removes session `id` (expired or not) and returns its value.
    pub fn remove(&mut self, id: &str) -> Option<T> {
        self.sessions.remove(id).map(|s| s.value)
    }

    /// Moves every session expired at `now` into `out`. Linear in the table size, which
    /// `max_sessions` bounds.
    pub fn drain_expired(&mut self, now: Instant, out: &mut Vec<(SessionId, T)>) {
        let timeout = self.limits.session_timeout;
        let expired: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_seen) >= timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(s) = self.sessions.remove(&id) {
                out.push((id, s.value));
            }
        }
    }

    /// When the next session expires, if there is one: the time to call
    /// [`drain_expired`](Self::drain_expired). Only opening a session can make it earlier,
    /// and never earlier than `now + session_timeout`.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions
            .values()
            .map(|s| s.last_seen + self.limits.session_timeout)
            .min()
    }

    fn next_id(&mut self) -> SessionId {
        let mut id = String::with_capacity(32);
        for _ in 0..2 {
            self.counter = self.counter.wrapping_add(1);
            let mut h = self.key.build_hasher();
            h.write_u64(self.counter);
            id.push_str(&format!("{:016x}", h.finish()));
        }
        SessionId(id)
    }
}

impl<T> fmt::Debug for SessionTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTable")
            .field("limits", &self.limits)
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const TIMEOUT: Duration = Duration::from_secs(15);

    fn table(max_sessions: usize) -> SessionTable<u32> {
        SessionTable::new(TableLimits {
            max_sessions,
            session_timeout: TIMEOUT,
        })
    }

    fn open(t: &mut SessionTable<u32>, now: Instant, v: u32) -> SessionId {
        let mut expired = Vec::new();
        let id = t.open(now, v, &mut expired).expect("room for a session");
        assert!(expired.is_empty());
        id
    }

    #[test]
    fn ids_are_unique_opaque_hex() {
        let now = Instant::now();
        let mut t = table(1000);
        let ids: HashSet<String> = (0..1000)
            .map(|i| open(&mut t, now, i).as_str().to_owned())
            .collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        // Another table (another key) does not hand out the same ids.
        let mut other = table(1000);
        let theirs = open(&mut other, now, 0);
        assert!(!ids.contains(theirs.as_str()));
    }

    #[test]
    fn unknown_ids_are_not_found() {
        let now = Instant::now();
        let mut t = table(10);
        let id = open(&mut t, now, 7);
        assert_eq!(t.get(id.as_str(), now).copied(), Some(7));
        assert!(t.get("", now).is_none());
        assert!(t.get("0123456789abcdef0123456789abcdef", now).is_none());
        assert!(t.get(&id.as_str()[..31], now).is_none());
        assert!(t.remove("nope").is_none());
        assert_eq!(t.remove(id.as_str()), Some(7));
        assert!(t.get(id.as_str(), now).is_none());
        assert!(t.is_empty());
    }

    #[test]
    fn max_sessions_then_room_after_remove() {
        let now = Instant::now();
        let mut t = table(3);
        let ids: Vec<SessionId> = (0..3).map(|i| open(&mut t, now, i)).collect();
        let mut expired = Vec::new();
        match t.open(now, 99, &mut expired) {
            Err(TableFull(v)) => assert_eq!(v, 99),
            Ok(id) => panic!("opened {id} beyond max_sessions"),
        }
        assert!(expired.is_empty());
        assert_eq!(t.len(), 3);
        t.remove(ids[1].as_str());
        open(&mut t, now, 4);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn sessions_expire_without_requests() {
        let t0 = Instant::now();
        let mut t = table(10);
        let quiet = open(&mut t, t0, 1);
        let busy = open(&mut t, t0, 2);
        assert_eq!(t.poll_timeout(), Some(t0 + TIMEOUT));

        // Any request counts as activity and pushes expiry back.
        let t1 = t0 + Duration::from_secs(10);
        assert!(t.get(busy.as_str(), t1).is_some());
        assert_eq!(t.poll_timeout(), Some(t0 + TIMEOUT));

        let mut out = Vec::new();
        t.drain_expired(t0 + TIMEOUT - Duration::from_millis(1), &mut out);
        assert!(out.is_empty());
        assert!(t
            .get(quiet.as_str(), t0 + TIMEOUT - Duration::from_millis(1))
            .is_some());

        // `quiet` was touched just now; let it lapse.
        let t2 = t0 + TIMEOUT * 2;
        assert!(t.get(quiet.as_str(), t2).is_none(), "expired is invisible");
        assert_eq!(t.len(), 2, "until drained");
        t.drain_expired(t2, &mut out);
        let mut drained: Vec<u32> = out.iter().map(|(_, v)| *v).collect();
        drained.sort_unstable();
        assert_eq!(drained, [1, 2]);
        assert!(t.is_empty());
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn open_on_a_full_table_drains_expired_first() {
        let t0 = Instant::now();
        let mut t = table(2);
        let old = open(&mut t, t0, 1);
        let t1 = t0 + Duration::from_secs(5);
        open(&mut t, t1, 2);
        let mut expired = Vec::new();
        let t2 = t0 + TIMEOUT;
        let id = t
            .open(t2, 3, &mut expired)
            .expect("expired session made room");
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].0, old);
        assert_eq!(expired[0].1, 1);
        assert_eq!(t.get(id.as_str(), t2).copied(), Some(3));
        assert_eq!(t.poll_timeout(), Some(t1 + TIMEOUT));
    }

    #[test]
    fn sequence_numbers_do_not_matter_to_the_table() {
        // The table is keyed by id alone: any order of requests keeps a session alive.
        let t0 = Instant::now();
        let mut t = table(1);
        let id = open(&mut t, t0, 1);
        for (i, seq) in [0u64, 2, 2, 1, 100, 3].iter().enumerate() {
            let now = t0 + TIMEOUT / 2 * (i as u32 + 1);
            let path = format!("/idle/{id}/{seq}");
            let cmd = crate::parse("POST", &path).expect("parses");
            let crate::Command::Idle(target) = cmd else {
                panic!("{cmd:?}")
            };
            assert_eq!(target.seq, Some(*seq));
            assert!(t.get(target.session, now).is_some(), "seq {seq}");
        }
    }
}
