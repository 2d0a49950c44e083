//! SRT transport: ingest (MPEG-TS over SRT → hub), play (hub → MPEG-TS over SRT),
//! `srt://` push targets and `srt://` pulled sources, with srt-tokio as the SRT engine.
//!
//! Robustness comes first here: srt-tokio 0.4.4 panics inside its listener task on several
//! caller handshakes, which would end every session on the port. So Prism owns the public
//! UDP socket ([`front`]): it checks every handshake before the library sees it
//! ([`handshake`], sans-I/O) and answers bad callers with an SRT rejection, and it gives
//! each caller its own srt-tokio listener on a loopback socket, so that anything the
//! checks miss can only take down that caller's own session.
//!
//! This crate knows SRT, UDP and the `srt` transport name; MPEG-TS is prism-mpegts's, the
//! hub and metrics bookkeeping are prism-relay's.

mod front;
pub mod handshake;
mod media;
mod pull;
mod session;
mod sink;
mod stats;
pub mod streamid;

pub use front::SrtServer;
pub use sink::SrtSink;
// Pulled sources (issue 14).
pub use pull::SrtPuller;

/// The `transport` metrics label of this crate's connections.
pub const TRANSPORT: &str = "srt";

/// srt-tokio's default send buffer is 46592 bytes (about 32 packets): a keyframe burst
/// overflows it. 8 MiB holds several seconds of a typical stream.
const SEND_BUFFER_BYTES: u64 = 8 * 1024 * 1024;
const RECV_BUFFER_BYTES: u64 = 8 * 1024 * 1024;

/// Socket options shared by listeners and callers: latency and the larger buffers.
fn tune(options: &mut srt_tokio::options::SocketOptions, latency: std::time::Duration) {
    use srt_tokio::options::ByteCount;
    options.sender.buffer_size = ByteCount(SEND_BUFFER_BYTES);
    options.receiver.buffer_size = ByteCount(RECV_BUFFER_BYTES);
    options.sender.peer_latency = latency;
    options.receiver.latency = latency;
}
