//! Who is on the other end of a connection.

use std::net::SocketAddr;

/// Who is on the other end of a connection, as the transport saw it.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The `transport` metrics label: rtmp, rtmps, rtmpt, ...
    pub transport: &'static str,
}
