//! The public SRT port: Prism's own UDP socket in front of srt-tokio.
//!
//! Why not hand the socket to `SrtListener`: srt-tokio 0.4.4 panics in its listener task on
//! some caller handshakes (see [`crate::handshake`]), and that one task serves every
//! session on the port. So the front
//! - checks each datagram with [`handshake::check`] and answers bad handshakes with an SRT
//!   rejection (reason code) itself: the library never sees them;
//! - gives each caller ("leg", keyed by its address) a private srt-tokio listener on a
//!   loopback socket and relays datagrams both ways. A panic the checks did not foresee
//!   ends that caller's listener task, and only that caller's session.
//!
//! The relay costs one loopback send per datagram each way, small next to what a stream
//! costs to demux, and worth it: established sessions no longer share fate with strangers.

use crate::handshake::{self, Policy, RejectCode, Verdict};
use crate::session;
use prism_config::SrtConfig;
use prism_metrics::ErrorReason;
use prism_relay::{ConnPermit, Relay};
use srt_tokio::{SrtIncoming, SrtListener};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, warn};

/// Callers served at once (sessions and handshakes).
const MAX_LEGS: usize = 512;
/// Callers still in their handshake: bounds what a flood of inductions can cost.
const MAX_HANDSHAKING: usize = 64;
/// A caller that has not completed its handshake within this is forgotten.
const HANDSHAKE_IDLE: Duration = Duration::from_secs(5);
/// An established caller silent this long is forgotten (srt's own idle timeout, 5 s,
/// normally ends the session first).
const SESSION_IDLE: Duration = Duration::from_secs(15);
/// Largest datagram read; SRT packets are at most the MTU.
const MAX_DATAGRAM: usize = 2048;

/// A bound SRT listener, not serving yet: bind at start-up, [`SrtServer::run`] once the
/// relay exists.
pub struct SrtServer {
    socket: Arc<UdpSocket>,
    config: SrtConfig,
}

/// One caller: its loopback socket toward its private srt-tokio listener.
struct Leg {
    id: u64,
    sock: Arc<UdpSocket>,
    last_rx: Instant,
    /// Set once srt-tokio hands the session a connection request.
    established: Arc<AtomicBool>,
    /// The listener task ends when this is dropped.
    _listener: SrtListener,
    /// The caller's place under `[limits]`, held while the leg lives.
    _permit: ConnPermit,
    tasks: [AbortHandle; 2],
}

impl Drop for Leg {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl SrtServer {
    /// Binds the UDP port of `[srt] listen`.
    pub async fn bind(config: &SrtConfig) -> io::Result<SrtServer> {
        let socket = UdpSocket::bind(config.listen).await?;
        Ok(SrtServer {
            socket: Arc::new(socket),
            config: config.clone(),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves callers until the task is dropped.
    pub async fn run(self, relay: Arc<Relay>) {
        let policy = Policy {
            key_len: self
                .config
                .passphrase
                .as_ref()
                .map(|_| self.config.pbkeylen),
        };
        let mut front = Front {
            public: self.socket,
            config: Arc::new(self.config),
            relay,
            policy,
            legs: HashMap::new(),
            next_id: 0,
        };
        let (closed_tx, mut closed_rx) = mpsc::unbounded_channel::<(SocketAddr, u64)>();
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            tokio::select! {
                r = front.public.recv_from(&mut buf) => match r {
                    Ok((n, peer)) => front.handle(peer, &mut buf[..n], &closed_tx).await,
                    // ICMP errors from earlier sends surface here on some systems: not ours.
                    Err(e) => debug!(transport = crate::TRANSPORT, "recv: {e}"),
                },
                Some((peer, id)) = closed_rx.recv() => {
                    if front.legs.get(&peer).is_some_and(|l| l.id == id) {
                        front.legs.remove(&peer);
                    }
                }
                _ = sweep.tick() => front.sweep(),
            }
        }
    }
}

struct Front {
    public: Arc<UdpSocket>,
    config: Arc<SrtConfig>,
    relay: Arc<Relay>,
    policy: Policy,
    legs: HashMap<SocketAddr, Leg>,
    next_id: u64,
}

impl Front {
    async fn handle(
        &mut self,
        peer: SocketAddr,
        packet: &mut [u8],
        closed: &mpsc::UnboundedSender<(SocketAddr, u64)>,
    ) {
        match handshake::check(packet, self.policy) {
            Verdict::Drop(reason) => {
                debug!(%peer, transport = crate::TRANSPORT, reason, "dropped datagram");
            }
            Verdict::Reject(code) => self.reject(peer, packet, code).await,
            Verdict::Induction if !self.legs.contains_key(&peer) => {
                let Ok(permit) = self.relay.admit(peer, crate::TRANSPORT) else {
                    // Counted and logged by the relay; the caller hears "overloaded".
                    let reply = handshake::reject_packet(packet, RejectCode::OVERLOAD);
                    let _ = self.public.send_to(&reply, peer).await;
                    return;
                };
                if let Err(code) = self.open_leg(peer, closed, permit).await {
                    self.reject(peer, packet, code).await;
                    return;
                }
                self.forward(peer, packet);
                // The fresh listener may not be reading yet and lose this first induction,
                // which would cost the caller a ~250 ms retransmit. Send it once more a
                // moment later; a repeated induction is answered the same way.
                if let Some(leg) = self.legs.get(&peer) {
                    let (sock, again) = (leg.sock.clone(), packet.to_vec());
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let _ = sock.try_send(&again);
                    });
                }
            }
            Verdict::Induction | Verdict::Conclusion | Verdict::Forward => {
                self.forward(peer, packet)
            }
        }
    }

    /// Relays a caller's datagram to its listener. UDP semantics: a full loopback buffer
    /// drops it, and SRT recovers as from any loss.
    fn forward(&mut self, peer: SocketAddr, packet: &[u8]) {
        if let Some(leg) = self.legs.get_mut(&peer) {
            leg.last_rx = Instant::now();
            let _ = leg.sock.try_send(packet);
        }
    }

    async fn reject(&mut self, peer: SocketAddr, request: &[u8], code: RejectCode) {
        self.relay
            .connection_error(crate::TRANSPORT, reason(code))
            .inc();
        warn!(%peer, transport = crate::TRANSPORT, reason = reason(code).as_str(), code = code.0, "refused SRT caller");
        let _ = self
            .public
            .send_to(&handshake::reject_packet(request, code), peer)
            .await;
        // A caller that was still shaking hands is done; an established session from the
        // same address keeps going (its packets are checked one by one).
        if self
            .legs
            .get(&peer)
            .is_some_and(|l| !l.established.load(Ordering::Relaxed))
        {
            self.legs.remove(&peer);
        }
    }

    async fn open_leg(
        &mut self,
        peer: SocketAddr,
        closed: &mpsc::UnboundedSender<(SocketAddr, u64)>,
        permit: ConnPermit,
    ) -> Result<(), RejectCode> {
        // Shutting down: sessions already open finish; no new ones.
        if self.relay.is_closing() {
            return Err(RejectCode::SHUTTING_DOWN);
        }
        let handshaking = self
            .legs
            .values()
            .filter(|l| !l.established.load(Ordering::Relaxed))
            .count();
        if self.legs.len() >= MAX_LEGS || handshaking >= MAX_HANDSHAKING {
            return Err(RejectCode::BACKLOG);
        }
        let (listener, incoming, inner) = self
            .bind_listener()
            .await
            .map_err(|_| RejectCode::BACKLOG)?;
        let sock = UdpSocket::bind(("127.0.0.1", 0))
            .await
            .map_err(|_| RejectCode::BACKLOG)?;
        sock.connect(inner).await.map_err(|_| RejectCode::BACKLOG)?;
        let sock = Arc::new(sock);
        let id = self.next_id;
        self.next_id += 1;
        let established = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(relay_back(sock.clone(), self.public.clone(), peer));
        let closed = closed.clone();
        let session = tokio::spawn({
            let (relay, config, established) =
                (self.relay.clone(), self.config.clone(), established.clone());
            async move {
                session::serve(incoming, peer, relay, config, established).await;
                let _ = closed.send((peer, id));
            }
        });
        self.legs.insert(
            peer,
            Leg {
                id,
                sock,
                last_rx: Instant::now(),
                established,
                _listener: listener,
                _permit: permit,
                tasks: [reader.abort_handle(), session.abort_handle()],
            },
        );
        Ok(())
    }

    /// A private srt-tokio listener on loopback for one caller.
    async fn bind_listener(&self) -> io::Result<(SrtListener, SrtIncoming, SocketAddr)> {
        let socket = UdpSocket::bind(("127.0.0.1", 0)).await?;
        let addr = socket.local_addr()?;
        let latency = self.config.latency;
        let mut builder = SrtListener::builder()
            .set(|o| crate::tune(o, latency))
            .socket(socket);
        if let Some(p) = &self.config.passphrase {
            builder = builder.set(|o| {
                o.encryption.passphrase = p.expose().to_owned().try_into().ok();
                o.encryption.key_size = u16::from(self.config.pbkeylen)
                    .try_into()
                    .unwrap_or_default();
            });
        }
        let (listener, incoming) = builder.bind(addr).await?;
        Ok((listener, incoming, addr))
    }

    fn sweep(&mut self) {
        self.legs.retain(|_, l| {
            let limit = if l.established.load(Ordering::Relaxed) {
                SESSION_IDLE
            } else {
                HANDSHAKE_IDLE
            };
            l.last_rx.elapsed() < limit
        });
    }
}

/// Relays what a caller's listener sends back to the caller through the public socket.
async fn relay_back(sock: Arc<UdpSocket>, public: Arc<UdpSocket>, peer: SocketAddr) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match sock.recv(&mut buf).await {
            Ok(n) => {
                let _ = public.send_to(&buf[..n], peer).await;
            }
            // The listener is gone (ICMP refusal on loopback): the leg is about to go too.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The metrics `reason` of a handshake rejection (kept out of `handshake.rs`, which stays
/// plain std code for the fuzz target that compiles it in).
fn reason(code: RejectCode) -> ErrorReason {
    match code {
        RejectCode::ROGUE => ErrorReason::BadHandshake,
        RejectCode::BAD_SECRET => ErrorReason::KeyLengthMismatch,
        RejectCode::UNSECURE => ErrorReason::EncryptionMismatch,
        RejectCode::CONGESTION => ErrorReason::CongestionExt,
        RejectCode::FILTER => ErrorReason::FilterExt,
        RejectCode::GROUP => ErrorReason::GroupExt,
        RejectCode::BACKLOG => ErrorReason::TooManyHandshakes,
        RejectCode::SHUTTING_DOWN => ErrorReason::ShuttingDown,
        _ => ErrorReason::Rejected,
    }
}
