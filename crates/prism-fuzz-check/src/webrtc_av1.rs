//! The `webrtc_av1` fuzz target's body: prism-webrtc's `Av1Egress` (what a WHEP viewer of an
//! Enhanced RTMP AV1 stream is sent) on a publisher's payloads.
//!
//! Input: payloads one after another, each a 16-bit big-endian length and that many bytes
//! (a short last one is taken as it is). Checks besides "no panic": a keyframe's temporal
//! unit starts with a sequence header OBU; another frame's is never longer than its payload.

use bytes::Bytes;
use prism_webrtc::av1::Av1Egress;

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
        }
    }
}
