//! What a WHEP viewer is sent of one coded picture: its RTP payloads, packetized once per
//! stream ([`crate::h264`]: RFC 6184; [`crate::av1`]: the AOM's RTP payload format for AV1)
//! and shared by every viewer (str0m's `RtpWrite` takes an `Arc<[u8]>`, so a viewer's send
//! and retransmission buffers hold no copy).

use std::sync::Arc;

/// One coded picture (an H.264 access unit, an AV1 temporal unit) as RTP payloads, in
/// order; the last one takes the marker bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpFrame {
    pub payloads: Vec<Arc<[u8]>>,
    pub keyframe: bool,
    /// Composition time offset (PTS - DTS), milliseconds (H.264 with B-frames; 0 for AV1).
    pub cts_ms: i32,
}
