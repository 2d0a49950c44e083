//! AV1 for WHEP: Enhanced RTMP `av01` frames → temporal units (OBUs in the low-overhead
//! format, with the sequence header OBU in front of every keyframe, so a viewer that joins
//! or loses packets can start decoding at any keyframe) → RTP payloads in the AOM's "RTP
//! Payload Format for AV1" ([`packetize`]).

use crate::rtp::RtpFrame;
use bytes::Bytes;
use prism_cmaf::{av1_obus, Codec, Payload};
use std::sync::Arc;

/// OBU types (AV1 spec 6.2.2): a sequence header, and those an RTP payload leaves out.
const OBU_SEQUENCE_HEADER: u8 = 1;
const OBU_TEMPORAL_DELIMITER: u8 = 2;
const OBU_TILE_LIST: u8 = 8;
const OBU_PADDING: u8 = 15;

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

    /// Whether the sequence header was seen (a keyframe can be sent).
    pub fn ready(&self) -> bool {
        self.sequence_header.is_some()
    }

    /// [`Av1Egress::push`], packetized: the temporal unit's RTP payloads, none longer than
    /// `max_payload`. Depends only on the frame and the sequence header before it, so one
    /// packetization serves every viewer of a stream.
    pub fn push_rtp(&mut self, payload: &Bytes, max_payload: usize) -> Option<RtpFrame> {
        let tu = self.push(payload)?;
        let payloads = packetize(&tu.data, max_payload, tu.keyframe);
        (!payloads.is_empty()).then_some(RtpFrame {
            payloads,
            keyframe: tu.keyframe,
            cts_ms: 0,
        })
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

/// The RTP payloads of one temporal unit (AOM "RTP Payload Format for AV1" 4.4): each
/// OBU as one element without its size field (temporal delimiters, tile lists and padding
/// left out), every element behind a LEB128 length (W = 0), an element that does not fit
/// the rest of a packet continued in the next (Y, then Z), N on the first packet of a
/// keyframe (which starts a coded video sequence: its sequence header is in front). No
/// payload is longer than `max` (at least 3).
pub fn packetize(tu: &[u8], max: usize, keyframe: bool) -> Vec<Arc<[u8]>> {
    let max = max.max(3);
    let mut out: Vec<Arc<[u8]>> = Vec::new();
    // The packet being filled: its aggregation header first.
    let mut packet = vec![0u8];
    let flush = |packet: &mut Vec<u8>, out: &mut Vec<Arc<[u8]>>, continues: bool| {
        if continues {
            packet[0] |= 0x40; // Y
        }
        if out.is_empty() && keyframe {
            packet[0] |= 0x08; // N
        }
        out.push(Arc::from(&packet[..]));
        packet.clear();
        packet.push(if continues { 0x80 } else { 0 }); // Z
    };
    let mut element = Vec::new();
    for (header, payload) in av1_obus(tu) {
        let kind = (header[0] >> 3) & 0x0F;
        if matches!(kind, OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST | OBU_PADDING) {
            continue;
        }
        // The OBU without its size field (the element's length says it).
        element.clear();
        element.push(header[0] & !0x02);
        element.extend_from_slice(&header[1..]);
        element.extend_from_slice(payload);
        let mut rest = &element[..];
        while !rest.is_empty() {
            let room = max - packet.len();
            if leb128_len(rest.len()) + rest.len() <= room {
                write_leb128(&mut packet, rest.len());
                packet.extend_from_slice(rest);
                break;
            }
            // The most of it that fits behind its length (a LEB128 of at most 4 bytes
            // here); a packet with no room for a byte of it goes as it is.
            let n = (1..=4)
                .map(|k| room.saturating_sub(k))
                .find(|&n| n > 0 && leb128_len(n) + n <= room);
            match n {
                Some(n) => {
                    write_leb128(&mut packet, n);
                    packet.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    flush(&mut packet, &mut out, true);
                }
                _ => flush(&mut packet, &mut out, false),
            }
        }
    }
    if packet.len() > 1 {
        flush(&mut packet, &mut out, false);
    }
    out
}

fn leb128_len(mut v: usize) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn write_leb128(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7F) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
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

    /// The OBU elements of a temporal unit's payloads, as a receiver reassembles them.
    fn depacketize(payloads: &[Arc<[u8]>]) -> Vec<Vec<u8>> {
        let mut elements: Vec<Vec<u8>> = Vec::new();
        let mut open = false;
        for p in payloads {
            let (z, y, w) = (p[0] & 0x80 != 0, p[0] & 0x40 != 0, (p[0] >> 4) & 3);
            assert_eq!(w, 0, "every element has its length");
            assert_eq!(z, open, "Z says whether the last element continues");
            let mut rest = &p[1..];
            let mut first = true;
            while !rest.is_empty() {
                let (len, n) = prism_cmaf::av1_leb128(rest).unwrap();
                let bytes = &rest[n..n + len as usize];
                if first && z {
                    elements.last_mut().unwrap().extend_from_slice(bytes);
                } else {
                    elements.push(bytes.to_vec());
                }
                rest = &rest[n + len as usize..];
                first = false;
            }
            open = y;
        }
        assert!(!open, "the last element was left open");
        elements
    }

    /// An OBU with its size field: header byte, LEB128 size, payload.
    fn obu(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut o = vec![(kind << 3) | 0x02];
        write_leb128(&mut o, payload.len());
        o.extend_from_slice(payload);
        o
    }

    #[test]
    fn rtp_payloads_carry_the_obus_without_size_fields() {
        let frame: Vec<u8> = (0..3000).map(|i| (i % 200) as u8).collect();
        let tu = [
            obu(2, &[]),
            obu(1, &[1, 2, 3]),
            obu(6, &frame),
            obu(15, &[0; 9]),
        ]
        .concat();
        let payloads = packetize(&tu, 1120, true);
        assert!(payloads.iter().all(|p| p.len() <= 1120));
        // N on the first packet only.
        let n: Vec<bool> = payloads.iter().map(|p| p[0] & 0x08 != 0).collect();
        assert_eq!(n, [true, false, false]);
        // The temporal delimiter and padding left out; sizes gone from the headers.
        let expected = vec![
            [&[1u8 << 3][..], &[1, 2, 3]].concat(),
            [&[6u8 << 3][..], &frame].concat(),
        ];
        assert_eq!(depacketize(&payloads), expected);
        // An inter frame is not a new coded video sequence.
        assert!(packetize(&obu(6, &[7; 10]), 1120, false)[0][0] & 0x08 == 0);
        // The last OBU may come without a size field (it runs to the end).
        let unsized_last = [obu(1, &[1]), vec![6 << 3, 9, 9]].concat();
        assert_eq!(
            depacketize(&packetize(&unsized_last, 1120, true)),
            vec![vec![1 << 3, 1], vec![6 << 3, 9, 9]]
        );
    }

    #[test]
    fn rtp_packetization_respects_any_size() {
        let obus: Vec<Vec<u8>> = (0..30)
            .map(|i| obu(3 + (i % 4) as u8, &vec![i as u8; (i * 61 + 1) % 400]))
            .collect();
        let tu = obus.concat();
        let expected: Vec<Vec<u8>> = obus
            .iter()
            .map(|o| {
                let (h, p) = obus_of(o);
                [&[h[0] & !0x02][..], p].concat()
            })
            .collect();
        for max in [3, 4, 5, 64, 129, 300, 1120, 1400] {
            let payloads = packetize(&tu, max, false);
            assert!(payloads.iter().all(|p| p.len() <= max), "max {max}");
            assert_eq!(depacketize(&payloads), expected, "max {max}");
        }
        // Garbage: whatever parses is sent, nothing panics.
        for junk in [
            &[][..],
            &[0x0A],
            &[0x0A, 0xFF],
            &[0x0E, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80],
        ] {
            let _ = packetize(junk, 100, true);
        }
    }

    fn obus_of(o: &[u8]) -> (&[u8], &[u8]) {
        av1_obus(o).next().unwrap()
    }
}
