//! The `webrtc_h264` fuzz target's body: prism-webrtc's `AvcEgress::push_rtp` (the RTP
//! payloads a WHEP viewer of an H.264 stream is sent, packetized once for all viewers) on a
//! publisher's payloads.
//!
//! Input: a byte choosing the largest payload (3 + 5 × byte), then payloads one after
//! another, each a 16-bit big-endian length and that many bytes (a short last one is taken
//! as it is). Checks besides "no panic": every RTP payload is non-empty and within the
//! size; depacketized, the payloads give the NAL units of the Annex B access unit
//! `AvcEgress::push` makes of the same frame, byte for byte.

use prism_webrtc::h264::AvcEgress;
use std::sync::Arc;

pub fn run(data: &[u8]) {
    let Some((&size, mut rest)) = data.split_first() else {
        return;
    };
    let max = 3 + 5 * usize::from(size);
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
        for nal in depacketize(&au.payloads) {
            joined.extend_from_slice(&[0, 0, 0, 1]);
            joined.extend_from_slice(&nal);
        }
        assert_eq!(joined, plain.data);
    }
}

/// RFC 6184 depacketization (STAP-A, FU-A, single units), as a receiver does it.
fn depacketize(payloads: &[Arc<[u8]>]) -> Vec<Vec<u8>> {
    let mut nals = Vec::new();
    let mut fu: Option<Vec<u8>> = None;
    for p in payloads {
        match p[0] & 0x1F {
            24 => {
                let mut rest = &p[1..];
                while !rest.is_empty() {
                    assert!(rest.len() >= 2, "STAP-A size cut");
                    let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                    assert!(rest.len() >= 2 + len, "STAP-A unit cut");
                    nals.push(rest[2..2 + len].to_vec());
                    rest = &rest[2 + len..];
                }
            }
            28 => {
                assert!(p.len() >= 3, "FU-A without data");
                if p[1] & 0x80 != 0 {
                    assert!(fu.is_none(), "fragment started twice");
                    fu = Some(vec![(p[0] & 0xE0) | (p[1] & 0x1F)]);
                }
                let unit = fu.as_mut().expect("fragment without a start");
                unit.extend_from_slice(&p[2..]);
                if p[1] & 0x40 != 0 {
                    nals.extend(fu.take());
                }
            }
            _ => nals.push(p.to_vec()),
        }
    }
    assert!(fu.is_none(), "unfinished fragment");
    nals
}
