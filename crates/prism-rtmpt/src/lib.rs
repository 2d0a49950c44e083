//! RTMPT, RTMP tunnelled over HTTP, without I/O: what a tunnel request asks for, the table of
//! tunnel sessions (ids, limits, expiry) and the polling-interval byte that opens each reply.
//!
//! The protocol, as Red5 and FMS serve it and as ffmpeg and librtmp speak it: every request is
//! a `POST` with `Content-Type: application/x-fcs`.
//!
//! | request | body | reply body |
//! | --- | --- | --- |
//! | `/fcs/ident2` | ignored | none, status 404 (Red5's default; clients go on to `/open`) |
//! | `/open/1` | ignored | the session id and `"\n"` |
//! | `/send/<id>/<seq>` | client→server RTMP bytes | interval byte + pending server bytes |
//! | `/idle/<id>/<seq>` | ignored | interval byte + pending server bytes |
//! | `/close/<id>/<seq>` | ignored | the byte `0` |
//!
//! The client side ([`TunnelClient`]) sequences those requests for Prism's `rtmpt://` push
//! targets.
//!
//! This crate must not know sockets, HTTP libraries, the clock or RTMP: the transport crate
//! (prism-transport-rtmpt) parses HTTP, passes `now` in, and moves the session's bytes, which
//! are opaque here.

pub mod client;
mod poll;
mod request;
mod table;

pub use client::{ClientError, ClientLimits, ClientRequest, RequestKind, TunnelClient};
pub use poll::PollInterval;
pub use request::{parse, Command, RequestError, Target};
pub use table::{SessionId, SessionTable, TableFull, TableLimits};
