//! WebRTC (`[webrtc]`): WHIP ingest and WHEP playback, with str0m as the WebRTC stack.
//!
//! - [`http`]: the signalling endpoint (hyper): `POST /{app}/{key}/whip|whep` with an SDP
//!   offer creates a session (the route's publish/play rules apply as for RTMP), `DELETE`
//!   on its `Location` ends it, `PATCH` and `OPTIONS` as RFC 9725 allows an ICE-lite server.
//! - [`table`]: the live sessions, by id, by local ICE ufrag and by remote address, with
//!   the per-IP and overall bounds.
//! - the UDP front ([`WebrtcServer::run`]): one socket for all media; each datagram goes
//!   to its session's queue (by address once known, by STUN USERNAME before), anything
//!   else is dropped and counted.
//! - [`session`]: one tokio task per session owns its `str0m::Rtc` and moves media
//!   between it and the hub (H.264 and Opus through prism-webrtc's converters).
//!
//! Audio: Opus passes through both ways; WHEP viewers of an AAC source get Opus from the
//! relay's shared AAC → Opus transcoder (`prism_relay::audio`, once per stream for all its
//! viewers). WHIP's Opus goes to the hub as Enhanced RTMP Opus; RTMP/SRT targets and HLS
//! get it as AAC from the Opus → AAC one (once per stream; a target's `audio = "copy"`
//! keeps the Opus).
//!
//! This crate knows WebRTC, UDP and HTTP signalling; policy is prism-control's (through
//! the relay), the frame conversions are prism-webrtc's.

mod http;
mod session;
mod table;
mod udp;

use prism_config::WebrtcConfig;
use prism_relay::Relay;
use prism_transport_tls::ReloadableTls;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, warn};

/// The `transport` metrics label of this crate's sessions.
pub const TRANSPORT: &str = "webrtc";

/// Largest datagram read from the media port (WebRTC keeps packets under ~1200 bytes).
const MAX_DATAGRAM: usize = 2048;

/// The bound listeners of `[webrtc]`.
pub struct WebrtcServer {
    config: WebrtcConfig,
    http: TcpListener,
    udp: Arc<udp::MediaSocket>,
    tls: Option<Arc<ReloadableTls>>,
    candidates: Vec<SocketAddr>,
}

impl WebrtcServer {
    /// Binds the signalling listener and the media socket and loads the certificate, so a
    /// bad `[webrtc]` fails at start.
    pub async fn bind(config: &WebrtcConfig) -> Result<WebrtcServer, String> {
        let tls = match &config.tls {
            Some(files) => {
                Some(Arc::new(ReloadableTls::load(files).map_err(|e| {
                    format!("loading the [webrtc] certificate: {e}")
                })?))
            }
            None => None,
        };
        let http = TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("binding [webrtc] listen {}: {e}", config.listen))?;
        let udp = bind_udp(config.udp)
            .and_then(udp::MediaSocket::new)
            .map_err(|e| format!("binding [webrtc] udp {}: {e}", config.udp))?;
        let port = udp.local_addr().map_err(|e| e.to_string())?.port();
        let candidates = candidates(config, port);
        if candidates.is_empty() {
            return Err("[webrtc]: no address to advertise; set public_ips".into());
        }
        Ok(WebrtcServer {
            config: config.clone(),
            http,
            udp: Arc::new(udp),
            tls,
            candidates,
        })
    }

    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    pub fn udp_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// The certificate, for SIGHUP reloads.
    pub fn tls(&self) -> Option<Arc<ReloadableTls>> {
        self.tls.clone()
    }

    /// Serves signalling and media until aborted.
    pub async fn run(self, relay: Arc<Relay>) {
        let table = Arc::new(table::Table::new(
            self.config.max_sessions,
            self.config.max_sessions_per_ip,
        ));
        let server = Arc::new(http::Server::new(
            relay.clone(),
            &self.config,
            table.clone(),
            self.udp.clone(),
            self.candidates,
        ));
        let signalling = tokio::spawn(http::serve(self.http, server, self.tls));
        // Aborting `run` must not leave the signalling task behind.
        struct AbortOnDrop(tokio::task::JoinHandle<()>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let _signalling = AbortOnDrop(signalling);
        let garbage = relay.connection_error(TRANSPORT, prism_metrics::ErrorReason::Protocol);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, from) = match self.udp.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors surface here on Linux; they concern one peer only.
                    debug!("webrtc udp recv: {e}");
                    continue;
                }
            };
            if !table.deliver(from, &buf[..n]) {
                garbage.inc();
            }
        }
    }
}

/// Kernel buffers of the media socket: every session's media goes through it, and a
/// burst (keyframes of many viewers' NACKs, a flood) must not overflow the default.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: capped by net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// The host candidates: `public_ips`, else the `udp` address, else (unspecified) the
/// address this host reaches the outside from, plus loopback.
fn candidates(config: &WebrtcConfig, port: u16) -> Vec<SocketAddr> {
    if !config.public_ips.is_empty() {
        return config
            .public_ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect();
    }
    if !config.udp.ip().is_unspecified() {
        return vec![SocketAddr::new(config.udp.ip(), port)];
    }
    let mut out = Vec::new();
    // Connecting a UDP socket sends nothing; it only picks the outgoing interface.
    let probe = StdUdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).map(|()| s))
        .and_then(|s| s.local_addr());
    match probe {
        Ok(a) if !a.ip().is_unspecified() => out.push(SocketAddr::new(a.ip(), port)),
        _ => warn!("[webrtc]: could not find this host's address; set public_ips"),
    }
    out.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    out
}
