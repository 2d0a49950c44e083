//! The live sessions: by id (the resource URL), by local ICE ufrag (STUN USERNAME) and by
//! remote address (everything else), with the overall and per-IP bounds.

use prism_webrtc::demux;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{mpsc, Notify};

/// Datagrams queued per session before new ones are dropped (a session task that falls
/// this far behind would only deliver stale media anyway).
pub(crate) const QUEUE: usize = 512;
/// Remote addresses one session may be reached from (ICE checks from several of the
/// client's candidates); more are ignored.
const MAX_ADDRS: usize = 8;

/// A datagram for a session.
pub(crate) struct Datagram {
    pub from: SocketAddr,
    pub data: Vec<u8>,
    pub at: Instant,
}

/// What the front and the signalling know of a session.
pub(crate) struct Entry {
    pub id: String,
    pub ufrag: String,
    pub tx: mpsc::Sender<Datagram>,
    /// Notified by `DELETE`.
    pub close: Notify,
    /// Bytes of the datagrams in `tx`'s queue (added here, taken by the session), for the
    /// memory budget: at most [`QUEUE`] datagrams.
    pub queued: AtomicUsize,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Arc<Entry>>,
    by_ufrag: HashMap<String, Arc<Entry>>,
    by_addr: HashMap<SocketAddr, Arc<Entry>>,
    /// Addresses learned per session id, to forget them with it.
    addrs: HashMap<String, Vec<SocketAddr>>,
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
}

pub(crate) struct Table {
    inner: Mutex<Inner>,
    /// Stream name → the WHIP session publishing it, woken when a viewer needs a keyframe
    /// (the hub has no such hook; WHEP viewers and WHIP publishers both live here).
    keyframes: Mutex<HashMap<String, Arc<Notify>>>,
    max: usize,
    max_per_ip: usize,
}

/// Why a session could not be admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    Overall,
    PerIp,
}

/// A reserved session slot: released on drop (with the session's routes, once inserted).
pub(crate) struct Slot {
    table: Arc<Table>,
    ip: IpAddr,
    id: Option<String>,
}

impl Table {
    pub fn new(max: usize, max_per_ip: usize) -> Table {
        Table {
            inner: Mutex::new(Inner::default()),
            keyframes: Mutex::new(HashMap::new()),
            max,
            max_per_ip,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves room for one more session from `ip`.
    pub fn reserve(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Full> {
        let mut t = self.lock();
        if t.total >= self.max {
            return Err(Full::Overall);
        }
        let n = t.per_ip.entry(ip).or_default();
        if *n >= self.max_per_ip {
            return Err(Full::PerIp);
        }
        *n += 1;
        t.total += 1;
        Ok(Slot {
            table: self.clone(),
            ip,
            id: None,
        })
    }

    /// Makes a session reachable (its slot removes it again).
    pub fn insert(&self, slot: &mut Slot, entry: Arc<Entry>) {
        let mut t = self.lock();
        t.by_ufrag.insert(entry.ufrag.clone(), entry.clone());
        t.by_id.insert(entry.id.clone(), entry.clone());
        slot.id = Some(entry.id.clone());
    }

    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.lock().by_id.get(id).cloned()
    }

    /// Hands a datagram to its session; false if it belongs to none (or is garbage).
    /// STUN names its session by ufrag and ties its source address to it; anything else
    /// must come from an address a STUN check already tied.
    pub fn deliver(&self, from: SocketAddr, data: &[u8]) -> bool {
        let kind = demux::classify(data);
        if kind == demux::Kind::Garbage {
            return false;
        }
        let entry = {
            let mut t = self.lock();
            let by_ufrag = match kind {
                demux::Kind::Stun => demux::stun_local_ufrag(data)
                    .and_then(|u| t.by_ufrag.get(u))
                    .cloned(),
                _ => None,
            };
            match by_ufrag {
                Some(e) => {
                    let known = t.by_addr.get(&from).is_some_and(|o| Arc::ptr_eq(o, &e));
                    if !known {
                        let addrs = t.addrs.entry(e.id.clone()).or_default();
                        if addrs.len() < MAX_ADDRS {
                            addrs.push(from);
                            // An address moves to the session that last named it.
                            t.by_addr.insert(from, e.clone());
                        }
                    }
                    e
                }
                None => match t.by_addr.get(&from) {
                    Some(e) => e.clone(),
                    None => return false,
                },
            }
        };
        // Full queue: dropped like a lost packet (counted by the session's loss stats).
        // Counted before it is queued, so the session never takes more than was added.
        entry.queued.fetch_add(data.len(), Ordering::Relaxed);
        if entry
            .tx
            .try_send(Datagram {
                from,
                data: data.to_vec(),
                at: Instant::now(),
            })
            .is_err()
        {
            entry.queued.fetch_sub(data.len(), Ordering::Relaxed);
        }
        true
    }

    fn remove(&self, ip: IpAddr, id: Option<&str>) {
        let mut t = self.lock();
        t.total = t.total.saturating_sub(1);
        if let Some(n) = t.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.per_ip.remove(&ip);
            }
        }
        let Some(id) = id else { return };
        if let Some(e) = t.by_id.remove(id) {
            t.by_ufrag.remove(&e.ufrag);
            for a in t.addrs.remove(id).unwrap_or_default() {
                if t.by_addr.get(&a).is_some_and(|o| Arc::ptr_eq(o, &e)) {
                    t.by_addr.remove(&a);
                }
            }
        }
    }

    /// Registers the WHIP publisher of `stream`; keyframe wishes for it wake the returned
    /// notifier until [`Table::forget_publisher`].
    pub fn register_publisher(&self, stream: &str) -> Arc<Notify> {
        let n = Arc::new(Notify::new());
        lock(&self.keyframes).insert(stream.to_owned(), n.clone());
        n
    }

    pub fn forget_publisher(&self, stream: &str, n: &Arc<Notify>) {
        let mut k = lock(&self.keyframes);
        if k.get(stream).is_some_and(|o| Arc::ptr_eq(o, n)) {
            k.remove(stream);
        }
    }

    /// A viewer of `stream` needs a keyframe: its WHIP publisher, if any, asks for one.
    pub fn want_keyframe(&self, stream: &str) {
        if let Some(n) = lock(&self.keyframes).get(stream) {
            n.notify_one();
        }
    }

    #[cfg(test)]
    fn sessions(&self) -> usize {
        self.lock().total
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.remove(self.ip, self.id.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(ufrag: &str) -> Vec<u8> {
        let user = format!("{ufrag}:remote");
        let mut attr = vec![0x00, 0x06];
        attr.extend_from_slice(&(user.len() as u16).to_be_bytes());
        attr.extend_from_slice(user.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        m.extend_from_slice(&[1; 12]);
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn routes_by_ufrag_then_address_and_forgets() {
        let table = Arc::new(Table::new(2, 1));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut slot = table.reserve(ip).unwrap();
        assert_eq!(table.reserve(ip).err(), Some(Full::PerIp));
        let (tx, mut rx) = mpsc::channel(4);
        table.insert(
            &mut slot,
            Arc::new(Entry {
                id: "id1".into(),
                ufrag: "uf1".into(),
                tx,
                close: Notify::new(),
                queued: Default::default(),
            }),
        );
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        assert!(!table.deliver(peer, &[0x80, 1, 2]), "RTP before any STUN");
        assert!(!table.deliver(peer, &stun("other")));
        assert!(table.deliver(peer, &stun("uf1")));
        assert!(table.deliver(peer, &[0x80, 1, 2]));
        assert!(!table.deliver(peer, &[0xff, 1]), "garbage");
        assert_eq!(rx.try_recv().unwrap().data, stun("uf1"));
        assert_eq!(rx.try_recv().unwrap().data, vec![0x80, 1, 2]);
        // A full queue drops, it does not block.
        for _ in 0..10 {
            table.deliver(peer, &[0x80]);
        }
        assert!(table.get("id1").is_some());
        drop(slot);
        assert_eq!(table.sessions(), 0);
        assert!(table.get("id1").is_none());
        assert!(!table.deliver(peer, &[0x80, 1, 2]));
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let _a = table.reserve(ip).unwrap();
        let _b = table.reserve(other).unwrap();
        assert_eq!(
            table.reserve("10.0.0.3".parse().unwrap()).err(),
            Some(Full::Overall)
        );
    }
}
