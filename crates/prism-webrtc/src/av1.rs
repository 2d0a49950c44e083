//! AV1 for WHEP: Enhanced RTMP `av01` frames → temporal units as the AOM's "RTP Payload
//! Format for AV1" packetizer takes them: OBUs in the low-overhead format,
//! with the sequence header OBU in front of every keyframe, so a viewer that joins or
//! loses packets can start decoding at any keyframe.

use bytes::Bytes;
use prism_cmaf::{Codec, Payload};

/// OBU type of a sequence header (AV1 spec 6.2.2).
const OBU_SEQUENCE_HEADER: u8 = 1;

/// One temporal unit ready for the packetizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporalUnit {
    pub keyframe: bool,
    pub data: Vec<u8>,
}

/// Whether an FLV-style video payload is Enhanced RTMP AV1 (FourCC `av01`).
pub fn is_av1(p: &[u8]) -> bool {
    p.first().is_some_and(|b| b & 0x80 != 0) && p.get(1..5) == Some(b"av01")
}

/// Keeps the stream's sequence header (from the `av1C` record) and turns frames into
/// temporal units.
#[derive(Debug, Default)]
pub struct Av1Egress {
    sequence_header: Option<Bytes>,
}

impl Av1Egress {
    pub fn new() -> Self {
        Self::default()
    }

    /// A frame's temporal unit; `None` for the sequence start (remembered), for what has
    /// no picture, and for a keyframe before any sequence header (nothing could decode it).
    pub fn push(&mut self, payload: &Bytes) -> Option<TemporalUnit> {
        match prism_cmaf::parse_video(payload).ok()? {
            Payload::Config(c) if c.codec == Codec::Av1 => {
                // av1C: 4 bytes of fields, then configOBUs (the sequence header OBU).
                self.sequence_header = (c.record.len() > 4).then(|| c.record.slice(4..));
                None
            }
            Payload::Frame { keyframe, data, .. } => {
                let prefix: &[u8] = match &self.sequence_header {
                    _ if !keyframe || obu_type(&data) == Some(OBU_SEQUENCE_HEADER) => &[],
                    Some(sh) if obu_type(sh) == Some(OBU_SEQUENCE_HEADER) => sh,
                    _ => return None,
                };
                Some(TemporalUnit {
                    keyframe,
                    data: [prefix, &data].concat(),
                })
            }
            _ => None,
        }
    }
}

/// The type of the first OBU (header byte bits 6..3).
fn obu_type(obus: &[u8]) -> Option<u8> {
    obus.first().map(|h| (h >> 3) & 0x0F)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Enhanced RTMP `av01` video payload: frame type, packet type, FourCC, body.
    fn ertmp(frame_type: u8, packet_type: u8, body: &[u8]) -> Bytes {
        let mut p = vec![0x80 | (frame_type << 4) | packet_type];
        p.extend_from_slice(b"av01");
        p.extend_from_slice(body);
        Bytes::from(p)
    }

    // A sequence header OBU (type 1, size field set) and a frame OBU (type 6), both with
    // made-up bodies: only their headers matter here.
    const SEQ: &[u8] = &[0x0A, 0x03, 0x00, 0x00, 0x00];
    const FRAME: &[u8] = &[0x32, 0x02, 0xAA, 0xBB];

    fn av1c() -> Vec<u8> {
        // marker/version, seq_profile/level, tier/bitdepth/..., presentation delay: 4 bytes.
        let mut r = vec![0x81, 0x00, 0x0C, 0x00];
        r.extend_from_slice(SEQ);
        r
    }

    #[test]
    fn keyframes_carry_the_sequence_header_and_other_frames_pass_as_they_are() {
        let mut e = Av1Egress::new();
        assert!(is_av1(&ertmp(1, 0, &av1c())));
        // A keyframe before the record cannot be decoded by a joining viewer.
        assert_eq!(e.push(&ertmp(1, 1, FRAME)), None);
        assert_eq!(e.push(&ertmp(1, 0, &av1c())), None);
        let key = e.push(&ertmp(1, 1, FRAME)).expect("keyframe");
        assert!(key.keyframe);
        assert_eq!(key.data, [SEQ, FRAME].concat());
        // A keyframe that has its own sequence header is not given a second one.
        let own = e
            .push(&ertmp(1, 1, &[SEQ, FRAME].concat()))
            .expect("keyframe");
        assert_eq!(own.data, [SEQ, FRAME].concat());
        let inter = e.push(&ertmp(2, 1, FRAME)).expect("inter frame");
        assert!(!inter.keyframe);
        assert_eq!(inter.data, FRAME);
        assert!(!is_av1(&Bytes::from_static(&[0x17, 0x01, 0, 0, 0])));
    }
}
