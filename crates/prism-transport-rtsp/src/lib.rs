//! RTSP transport: the RTSP server (players out: RTP over TCP interleaved or UDP unicast)
//! and the `rtsp://` pull client (cameras in), over the sans-I/O core in prism-rtsp.
//!
//! This crate knows sockets, tokio and the `rtsp` transport name. RTSP, SDP and RTP are
//! prism-rtsp's; the hub, access checks and metrics bookkeeping are prism-relay's (a
//! player subscribes through [`prism_relay::Relay::play`] and runs on its `Driver`; a
//! pulled camera publishes through [`prism_relay::Relay::publish`], as SRT ingest does).

mod pull;
mod server;
mod udp;

pub use pull::{pull, pull_with, PullOptions, RtspPuller, RtspTransport};
pub use server::{run, run_tls, serve, TLS_HANDSHAKE_TIMEOUT};

/// The `transport` metrics label of this crate's connections.
pub const TRANSPORT: &str = "rtsp";
/// The `transport` label of `[rtsps]` (RTSP over TLS) connections.
pub const TRANSPORT_TLS: &str = "rtsps";
