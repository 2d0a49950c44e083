//! What the server and the client share: UDP port pairs and random identifiers.

use std::net::IpAddr;
use std::time::SystemTime;
use tokio::net::UdpSocket;

/// Binds an even/odd UDP port pair (RTP, RTCP; RFC 3550 §11) on `ip` (all IPv4
/// addresses if None).
pub(crate) async fn bind_pair(ip: Option<IpAddr>) -> Option<(UdpSocket, UdpSocket)> {
    let ip = ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    for _ in 0..16 {
        let a = UdpSocket::bind((ip, 0)).await.ok()?;
        let port = a.local_addr().ok()?.port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        if let Ok(b) = UdpSocket::bind((ip, port + 1)).await {
            return Some((a, b));
        }
    }
    None
}

/// An unpredictable-enough u32 for SSRCs, sequence and timestamp origins, session ids
/// and client nonces: none is a secret. RandomState is seeded per process and instance.
pub(crate) fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default(),
    );
    h.finish() as u32
}
