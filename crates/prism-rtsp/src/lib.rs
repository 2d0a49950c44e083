//! Sans-I/O RTSP 1.0 (RFC 2326), SDP and RTP/RTCP for Prism's RTSP server (players out)
//! and client (cameras in): bytes and times in, messages, packets and frames out.
//!
//! - [`message`]: requests, responses and `$`-interleaved data on one byte stream, with
//!   bounds on header size and count, body size and interleaved lengths.
//! - [`sdp`]: a camera's DESCRIBE answer → media; a stream's codecs → an SDP.
//! - [`rtp`]: RTP headers, RTCP SR/RR, the RTP clock → hub milliseconds (wraps, jumps and
//!   SSRC changes re-anchored), a bounded reorder buffer for UDP.
//! - [`video`], [`audio`]: H.264 (RFC 6184), H.265 (RFC 7798), AAC-hbr (RFC 3640) and Opus
//!   (RFC 7587) packetizers and depacketizers.
//! - [`flv`]: depacketized media → FLV-style frames (the hub's vocabulary); [`ingest`]: a
//!   camera session's tracks, RTP/RTCP in, frames, receiver reports and drop counts out.
//! - [`client`]: the client's OPTIONS/DESCRIBE/SETUP/PLAY sequence with auth retries.
//! - [`auth`]: Basic and Digest (client side); [`url`]: `rtsp://` URLs and request paths.
//!
//! In-house rather than `retina` (a maintained client): retina fails a session on
//! presentation timestamps that go backwards (B-frames: retina#61, #64), has no reorder
//! buffer for UDP, owns its tokio I/O (this project keeps protocol cores sans-I/O) and has
//! no server side, which Prism needs as much. `rtsp-types` would cover only the message
//! syntax, the smallest part, and brings `nom` and `cookie-factory`; the parser here is
//! a few hundred lines with the bounds Prism wants built in.
//!
//! Everything here reads untrusted bytes: nothing panics or grows without bound on any
//! input. This crate must not know about sockets, tokio or the hub.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod audio;
pub mod auth;
pub mod client;
pub mod flv;
pub mod ingest;
pub mod message;
pub mod rtp;
pub mod sdp;
pub mod url;
pub mod video;
