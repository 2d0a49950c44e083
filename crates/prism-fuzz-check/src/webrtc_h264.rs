//! The `webrtc_h264` fuzz target's body: prism-webrtc's `AvcEgress::push_rtp` (the RTP
//! payloads a WHEP viewer of an H.264 stream is sent, packetized once for all viewers) on a
//! publisher's payloads.
//!
//! Input: a byte choosing the largest payload (19 + 5 × byte), then payloads one after
//! another, each a 16-bit big-endian length and that many bytes (a short last one is taken
//! as it is). Checks besides "no panic": every RTP payload is non-empty and within the
//! size; depacketized by RTSP ingest's depacketizer, the payloads give the NAL units of the
//! Annex B access unit `AvcEgress::push` makes of the same frame, byte for byte.

use prism_webrtc::h264::AvcEgress;
use prism_webrtc::rtp::depacketize_h264;

pub fn run(data: &[u8]) {
    let Some((&size, mut rest)) = data.split_first() else {
        return;
    };
    let max = 19 + 5 * usize::from(size);
    let (mut rtp, mut annex_b) = (AvcEgress::new(), AvcEgress::new());
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let (payload, tail) = rest[2..].split_at(len.min(rest.len() - 2));
        rest = tail;
        let au = rtp.push_rtp(payload, max);
        let plain = annex_b.push(payload);
        assert_eq!(au.is_some(), plain.is_some());
        let (Some(au), Some(plain)) = (au, plain) else {
            continue;
        };
        assert_eq!(au.keyframe, plain.keyframe);
        assert!(au.payloads.iter().all(|p| !p.is_empty() && p.len() <= max));
        let mut joined = Vec::new();
        let nals = depacketize_h264(&au.payloads).expect("one whole access unit");
        for nal in nals {
            joined.extend_from_slice(&[0, 0, 0, 1]);
            joined.extend_from_slice(&nal);
        }
        assert_eq!(joined, plain.data);
    }
}
