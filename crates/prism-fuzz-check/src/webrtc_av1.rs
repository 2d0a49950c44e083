//! The `webrtc_av1` fuzz target's body: prism-webrtc's `Av1Egress` (what a WHEP viewer of an
//! Enhanced RTMP AV1 stream is sent) on a publisher's payloads.
//!
//! Input: payloads one after another, each a 16-bit big-endian length and that many bytes
//! (a short last one is taken as it is). Checks besides "no panic": a keyframe's temporal
//! unit starts with a sequence header OBU; another frame's is never longer than its payload;
//! its RTP payloads (at two sizes) carry more than their header and keep within the size,
//! N set on a keyframe's first one only.

use bytes::Bytes;
use prism_webrtc::av1::{packetize, Av1Egress};

pub fn run(data: &[u8]) {
    let mut egress = Av1Egress::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let (payload, tail) = rest[2..].split_at(len.min(rest.len() - 2));
        rest = tail;
        let payload = Bytes::copy_from_slice(payload);
        if let Some(tu) = egress.push(&payload) {
            if tu.keyframe {
                let obu_type = tu.data.first().map(|h| (h >> 3) & 0x0F);
                assert_eq!(obu_type, Some(1), "keyframe without a sequence header");
            } else {
                assert!(tu.data.len() <= payload.len());
            }
            for max in [3, 1120] {
                let payloads = packetize(&tu.data, max, tu.keyframe);
                assert!(payloads.iter().all(|p| p.len() > 1 && p.len() <= max));
                for (i, p) in payloads.iter().enumerate() {
                    assert_eq!(p[0] & 0x08 != 0, i == 0 && tu.keyframe, "N bit");
                }
            }
        }
    }
}
