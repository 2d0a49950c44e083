//! Plain RTMP over TCP: accepts connections and hands each byte stream to the relay, and
//! dials `rtmp://` push targets.
//!
//! This crate knows sockets and the `rtmp` transport name, nothing about the protocol or
//! the hub: every RTMP byte is handled by prism-relay's [`serve_rtmp`].

use prism_config::ResolvedTarget;
use prism_relay::{
    serve_rtmp, BoxedStream, ConnInfo, DialError, DialFuture, Dialer, ErrorReason, Relay,
};
use prism_rtmp::url::RtmpUrl;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tracing::warn;

/// The `transport` metrics label of this crate's connections.
pub const TRANSPORT: &str = "rtmp";

/// Accepts connections until the task is dropped.
pub async fn run(listener: TcpListener, relay: Arc<Relay>) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                // Over `[limits]`: closed at once (the relay counts and logs it).
                let Ok(permit) = relay.admit(peer, TRANSPORT) else {
                    continue;
                };
                prepare_accepted(&tcp);
                let relay = relay.clone();
                let info = ConnInfo {
                    peer,
                    transport: TRANSPORT,
                };
                tokio::spawn(async move {
                    serve_rtmp(tcp, info, relay).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(transport = TRANSPORT, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Kernel send buffer of sockets Prism sends media on (the kernel doubles it): about half a second of an
/// 8 Mbit/s stream, plenty for the bandwidth-delay product of a distant ingest, while bytes
/// parked in a large kernel buffer (Linux grows it to megabytes) would escape the per-target
/// queue budget and its drops.
const SEND_BUFFER_BYTES: u32 = 256 * 1024;

/// Socket options for an accepted connection, for every TCP-based transport: no Nagle
/// delay, and a capped send buffer so a stalled player's backlog stays in its hub queue,
/// where the budget and drop policy apply, instead of megabytes of kernel buffer.
pub fn prepare_accepted(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
    let _ = socket2::SockRef::from(tcp).set_send_buffer_size(SEND_BUFFER_BYTES as usize);
}

/// Dials `rtmp://` push targets over plain TCP.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpDialer;

impl Dialer for TcpDialer {
    fn scheme(&self) -> &'static str {
        "rtmp"
    }

    fn dial<'a>(&'a self, url: &'a RtmpUrl, _target: &'a ResolvedTarget) -> DialFuture<'a> {
        Box::pin(async move {
            let tcp = connect(&url.host, url.port)
                .await
                .map_err(|e| DialError::new(ErrorReason::Connect, e))?;
            Ok(Box::new(tcp) as BoxedStream)
        })
    }
}

/// Resolves `host` and connects to the first address that answers, with a capped send buffer.
pub async fn connect(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let mut last_err = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        let _ = socket.set_send_buffer_size(SEND_BUFFER_BYTES);
        match socket.connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "host resolved to no address")
    }))
}

/// How long an `rtmpe://` target's RTMPE handshake may take after the TCP connect.
const RTMPE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Dials `rtmpe://` push targets: TCP, then the RTMPE handshake; the push session then
/// talks plain RTMP through the RC4 stream.
#[derive(Debug, Default, Clone, Copy)]
pub struct RtmpeDialer;

impl Dialer for RtmpeDialer {
    fn scheme(&self) -> &'static str {
        "rtmpe"
    }

    fn dial<'a>(&'a self, url: &'a RtmpUrl, _target: &'a ResolvedTarget) -> DialFuture<'a> {
        Box::pin(async move {
            let tcp = connect(&url.host, url.port)
                .await
                .map_err(|e| DialError::new(ErrorReason::Connect, e))?;
            let stream = prism_relay::rtmpe::connect(tcp, RTMPE_HANDSHAKE_TIMEOUT).await?;
            Ok(Box::new(stream) as BoxedStream)
        })
    }

    fn handshakes(&self) -> bool {
        true
    }
}
