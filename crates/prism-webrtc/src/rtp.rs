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

/// The NAL units of one access unit's H.264 payloads as RTSP ingest's depacketizer
/// (prism-rtsp) reassembles them, unbounded: a check of the packetizer by another
/// implementation (unit tests, the `webrtc_h264` fuzz target). None unless the payloads make
/// exactly one whole access unit.
pub fn depacketize_h264(payloads: &[Arc<[u8]>]) -> Option<Vec<Vec<u8>>> {
    use prism_rtsp::rtp::RtpHeader;
    use prism_rtsp::video::{DepackLimits, Depacketizer, VideoCodec};
    let limits = DepackLimits {
        max_access_unit: usize::MAX,
        max_nals: usize::MAX,
    };
    let mut d = Depacketizer::new(VideoCodec::H264, limits);
    for (i, p) in payloads.iter().enumerate() {
        let header = RtpHeader {
            marker: i + 1 == payloads.len(),
            payload_type: 96,
            sequence: i as u16,
            timestamp: 0,
            ssrc: 1,
        };
        d.push(&header, bytes::Bytes::copy_from_slice(p), false)
            .ok()?;
    }
    let au = d.pop()?;
    d.pop()
        .is_none()
        .then(|| au.nals.iter().map(|n| n.to_vec()).collect())
}
