//! Sans-I/O RTMP: the handshake, the chunk stream, protocol control and command messages,
//! and the server and client session state machines built from them.
//!
//! Nothing here performs I/O or reads a clock: bytes and time come in through `handle_*`
//! methods, bytes and events go out through `poll_*` methods or buffers the caller owns.
//! The tokio drivers (prism-relay) and every transport (TCP, TLS, HTTP tunnel) reuse this
//! crate unchanged. It must not know about the hub, sockets, or tokio.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod chunk;
pub mod control;
pub mod handshake;
pub mod media;
pub mod message;
pub mod multitrack;
pub mod out;
pub mod rtmpe;
pub mod session;

pub use out::OutQueue;
pub mod url;
