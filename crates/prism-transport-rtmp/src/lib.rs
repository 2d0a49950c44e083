//! Plain RTMP over TCP: accepts connections and hands each byte stream to the relay.
//!
//! This crate knows sockets and the `rtmp` transport name, nothing about the protocol or
//! the hub: every RTMP byte is handled by prism-relay's [`serve_rtmp`].

use prism_relay::{serve_rtmp, ConnInfo, Relay};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::warn;

/// The `transport` metrics label of this crate's connections.
pub const TRANSPORT: &str = "rtmp";

/// Accepts connections until the task is dropped.
pub async fn run(listener: TcpListener, relay: Arc<Relay>) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                let relay = relay.clone();
                tokio::spawn(serve_rtmp(
                    tcp,
                    ConnInfo {
                        peer,
                        transport: TRANSPORT,
                    },
                    relay,
                ));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(transport = TRANSPORT, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
