//! RTMPS: RTMP over TLS. Accepts TLS connections and hands the decrypted byte stream to the
//! relay, with certificates that can be reloaded while running ([`ReloadableTls`]), and
//! dials `rtmps://` push targets ([`TlsDialer`]).
//!
//! This crate knows TLS and the `rtmps` transport name, nothing about RTMP or the hub: every
//! RTMP byte is handled by prism-relay's [`serve_rtmp`]. The RTMPT-over-HTTPS tunnel reuses
//! [`ReloadableTls`] for its listener.
//!
//! Choices:
//! * **rustls with the `ring` provider**, passed explicitly to every config builder
//!   (`builder_with_provider`) rather than installed process-wide, so no other crate's
//!   choice of default provider can change ours, and `ring` builds without a C toolchain
//!   step that aws-lc-rs needs.
//! * **Trust roots from `webpki-roots`** (Mozilla's CA list compiled in) rather than the OS
//!   store: Prism runs in minimal and distroless containers that have no CA bundle, and
//!   the same binary trusts the same roots on every host. Updates ship with the crate.
//!   A target whose destination uses a private CA names its PEM in `ca`; it then trusts
//!   that CA only.

mod client;
mod eof;
mod files;
mod server;

pub use client::{connect_client, TlsDialer};
pub use eof::LenientClose;
pub use files::TlsError;
pub use server::{HandshakeError, ReloadableTls};

use prism_relay::{serve_rtmp, ConnInfo, Relay};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

/// The `transport` metrics label of this crate's connections.
pub const TRANSPORT: &str = "rtmps";

/// The crypto provider of every TLS config built here.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts connections until the task is dropped. Each one must finish its TLS handshake
/// within `handshake_timeout`; failed handshakes are logged and counted in
/// `prism_connection_errors_total{transport="rtmps"}` (they never reach
/// `prism_connections_total`, which counts RTMP sessions).
pub async fn run(
    listener: TcpListener,
    relay: Arc<Relay>,
    tls: Arc<ReloadableTls>,
    handshake_timeout: Duration,
) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                // Over `[limits]`: closed before any TLS work (the relay counts and logs it).
                let Ok(permit) = relay.admit(peer, TRANSPORT) else {
                    continue;
                };
                prism_transport_rtmp::prepare_accepted(&tcp);
                let serving = serve(tcp, peer, relay.clone(), tls.clone(), handshake_timeout);
                tokio::spawn(async move {
                    serving.await;
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

async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    relay: Arc<Relay>,
    tls: Arc<ReloadableTls>,
    handshake_timeout: Duration,
) {
    match tls.accept(tcp, handshake_timeout).await {
        Ok(stream) => {
            let info = ConnInfo {
                peer,
                transport: TRANSPORT,
            };
            serve_rtmp(LenientClose(stream), info, relay).await;
        }
        Err(e) => {
            relay.connection_error(TRANSPORT, e.reason).inc();
            // Scanners and misconfigured clients are routine on a public port: info, not warn.
            info!(%peer, transport = TRANSPORT, reason = e.reason.as_str(), "TLS handshake failed: {}", e.detail);
        }
    }
}

#[cfg(test)]
mod tests;
