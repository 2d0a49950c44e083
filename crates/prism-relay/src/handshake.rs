//! What an RTMP handshake needs from outside the protocol: some randomness and the epoch
//! time (prism-rtmp reads no clock and draws no random numbers itself).

/// Randomness for handshakes (not security-relevant: RTMP's digest is a version check).
pub(crate) fn handshake_random() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(epoch_ms() as u64);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

pub(crate) fn epoch_ms() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u32)
        .unwrap_or(0)
}
