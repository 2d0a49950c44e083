//! H.264 between the hub's FLV-style video frames and RTP: RFC 6184 payloads,
//! packetization-mode 1, for WHEP viewers ([`AvcEgress::push_rtp`]); Annex B access units
//! from a WHIP publisher (what str0m hands back depacketized).
//!
//! Egress ([`AvcEgress`]): the sequence header's SPS/PPS are remembered and put in front of
//! every IDR access unit (a browser joining mid-stream, or recovering after a PLI, has no
//! other way to get them). [`AvcEgress::push`] gives the same units as Annex B (what the
//! RTP payloads carry, with start codes: the packetizer's fuzz target checks one against
//! the other).
//!
//! Ingest ([`AvcIngest`]): SPS/PPS are taken out of the access units; a sequence header
//! (AVCDecoderConfigurationRecord) is emitted whenever they change, and each access unit
//! becomes a `0x17/0x27 0x01` frame with 4-byte length prefixes. Nothing is emitted before
//! the first SPS/PPS and IDR, so the hub's first video frame is a decodable keyframe.

use prism_mpegts::nal::{
    avc_decoder_configuration_record, avc_nal_type, avc_record_parameter_sets, split_annex_b,
};

use crate::rtp::RtpFrame;
use prism_rtsp::video::{packetize as packetize_rtp, VideoCodec};
use std::sync::Arc;

const START_CODE: [u8; 4] = [0, 0, 0, 1];
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;
/// Largest access unit accepted on ingest (a 4K intra frame stays well below).
pub const MAX_ACCESS_UNIT: usize = 8 * 1024 * 1024;

/// One coded picture, Annex B, ready for the packetizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    pub data: Vec<u8>,
    pub keyframe: bool,
    /// Composition time offset (PTS - DTS), milliseconds; B-frames make it non-zero.
    pub cts_ms: i32,
}

/// What an FLV video tag body is, for H.264 (classic `codec_id 7` or Enhanced RTMP `avc1`).
#[derive(Debug, PartialEq, Eq)]
enum AvcTag<'a> {
    SequenceHeader(&'a [u8]),
    Frame {
        keyframe: bool,
        cts_ms: i32,
        nals: &'a [u8],
    },
    Other,
}

fn parse_tag(p: &[u8]) -> Option<AvcTag<'_>> {
    let b0 = *p.first()?;
    let frame_type = (b0 >> 4) & 0x07;
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: [IsExHeader:1][FrameType:3][PacketType:4][FourCC:4]...
        if p.get(1..5)? != b"avc1" {
            return None;
        }
        let rest = &p[5..];
        return Some(match b0 & 0x0F {
            0 => AvcTag::SequenceHeader(rest),
            1 => AvcTag::Frame {
                keyframe: frame_type == 1,
                cts_ms: cts(rest.get(..3)?),
                nals: &rest[3..],
            },
            3 => AvcTag::Frame {
                keyframe: frame_type == 1,
                cts_ms: 0,
                nals: rest,
            },
            _ => AvcTag::Other,
        });
    }
    if b0 & 0x0F != 7 {
        return None;
    }
    Some(match *p.get(1)? {
        0 => AvcTag::SequenceHeader(&p[p.len().min(5)..]),
        1 => AvcTag::Frame {
            keyframe: frame_type == 1,
            cts_ms: cts(p.get(2..5)?),
            nals: &p[5..],
        },
        _ => AvcTag::Other,
    })
}

/// Signed 24-bit big-endian composition time offset.
fn cts(b: &[u8]) -> i32 {
    let v = (i32::from(b[0]) << 16) | (i32::from(b[1]) << 8) | i32::from(b[2]);
    (v << 8) >> 8
}

/// Whether an FLV video tag body is H.264 (a WHEP session can only send H.264 for now).
pub fn is_avc(p: &[u8]) -> bool {
    parse_tag(p).is_some()
}

/// Hub frames → RTP payloads ([`AvcEgress::push_rtp`]) or Annex B access units
/// ([`AvcEgress::push`]).
#[derive(Debug, Default)]
pub struct AvcEgress {
    /// SPS and PPS NAL units of the current record.
    sets: Vec<Vec<u8>>,
    /// NAL length size of the current record (1, 2 or 4 bytes).
    length_size: usize,
}

/// The NAL units of one coded picture, in order, parameter sets first when it needs them.
struct Units<'a> {
    nals: Vec<&'a [u8]>,
    keyframe: bool,
    cts_ms: i32,
}

impl AvcEgress {
    pub fn new() -> Self {
        Self {
            sets: Vec::new(),
            length_size: 4,
        }
    }

    /// Whether a sequence header was seen (nothing can be sent before).
    pub fn ready(&self) -> bool {
        !self.sets.is_empty()
    }

    /// Takes one FLV video tag body; returns the access unit of a coded frame. Sequence
    /// headers update the parameter sets; anything else (or malformed) gives `None`.
    pub fn push(&mut self, payload: &[u8]) -> Option<AccessUnit> {
        let u = self.units(payload)?;
        let size: usize = u.nals.iter().map(|n| n.len() + START_CODE.len()).sum();
        let mut data = Vec::with_capacity(size);
        for nal in &u.nals {
            data.extend_from_slice(&START_CODE);
            data.extend_from_slice(nal);
        }
        Some(AccessUnit {
            data,
            keyframe: u.keyframe,
            cts_ms: u.cts_ms,
        })
    }

    /// [`AvcEgress::push`], packetized: the RTP payloads (RFC 6184, packetization-mode 1)
    /// of the access unit, none longer than `max_payload`; the last one takes the marker
    /// bit. Depends only on the frame and the sequence header before it, so every viewer of
    /// a stream gets the same payloads and one packetization can serve them all.
    pub fn push_rtp(&mut self, payload: &[u8], max_payload: usize) -> Option<RtpFrame> {
        let u = self.units(payload)?;
        Some(RtpFrame {
            payloads: packetize(&u.nals, max_payload),
            keyframe: u.keyframe,
            cts_ms: u.cts_ms,
        })
    }

    fn units<'a>(&'a mut self, payload: &'a [u8]) -> Option<Units<'a>> {
        match parse_tag(payload)? {
            AvcTag::SequenceHeader(record) => {
                let sets = avc_record_parameter_sets(record)?;
                let length_size = usize::from(record.get(4)? & 0x03) + 1;
                if length_size == 3 {
                    return None;
                }
                // As a frame's units: what RTP does not carry is left out.
                self.sets = sets
                    .into_iter()
                    .filter(|s| VideoCodec::H264.rtp_carries(s))
                    .map(<[u8]>::to_vec)
                    .collect();
                self.length_size = length_size;
                None
            }
            AvcTag::Frame {
                keyframe,
                cts_ms,
                nals,
            } => {
                if self.sets.is_empty() {
                    return None;
                }
                let mut has_params = false;
                let mut idr = false;
                let mut units = Vec::new();
                for nal in split_prefixed(nals, self.length_size) {
                    // What the RTP packetizer leaves out (a header alone, the types RTP
                    // takes for its own packets) is left out of the Annex B unit too.
                    if !VideoCodec::H264.rtp_carries(nal) {
                        continue;
                    }
                    match avc_nal_type(nal) {
                        Some(NAL_SPS) => has_params = true,
                        Some(NAL_IDR) => idr = true,
                        // Access unit delimiters are optional and only cost bytes.
                        Some(NAL_AUD) => continue,
                        _ => {}
                    }
                    units.push(nal);
                }
                if units.is_empty() {
                    return None;
                }
                let keyframe = keyframe || idr;
                if keyframe && !has_params {
                    let sets = self.sets.iter().map(Vec::as_slice);
                    units.splice(0..0, sets);
                }
                Some(Units {
                    nals: units,
                    keyframe,
                    cts_ms,
                })
            }
            AvcTag::Other => None,
        }
    }
}

/// RFC 6184 packetization-mode 1 of one access unit's NAL units into shareable payloads,
/// by the packetizer RTSP players use (prism-rtsp: single NAL units, FU-A fragments of equal
/// size but the last, so a frame's datagrams stay one GSO batch; no aggregation). No
/// payload is longer than `max` (at least 19 bytes); what RTP does not carry is left out.
pub fn packetize(nals: &[&[u8]], max: usize) -> Vec<Arc<[u8]>> {
    let mut out: Vec<Arc<[u8]>> = Vec::new();
    let mut scratch = Vec::with_capacity(max);
    packetize_rtp(VideoCodec::H264, nals.iter().copied(), max, |parts, _| {
        out.push(match parts {
            [one] => Arc::from(*one),
            _ => {
                scratch.clear();
                parts.iter().for_each(|p| scratch.extend_from_slice(p));
                Arc::from(&scratch[..])
            }
        });
    });
    out
}

/// NAL units with `size`-byte big-endian length prefixes; stops at the first truncated one.
fn split_prefixed(mut data: &[u8], size: usize) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = data
            .get(..size)?
            .iter()
            .fold(0usize, |a, b| a << 8 | usize::from(*b));
        let nal = data.get(size..size.checked_add(len)?)?;
        data = &data[size + len..];
        (!nal.is_empty()).then_some(nal)
    })
}

/// What one depacketized access unit gives the hub.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IngestOut {
    /// A new sequence header (`0x17 0x00 ...`), to publish before `frame`.
    pub header: Option<Vec<u8>>,
    /// The frame (`0x17/0x27 0x01 cts=0 ...`) and whether it is a keyframe.
    pub frame: Option<(Vec<u8>, bool)>,
}

/// Depacketized Annex B access units → hub frames.
#[derive(Debug, Default)]
pub struct AvcIngest {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    /// The record last published (a new one only when SPS/PPS change).
    record: Option<Vec<u8>>,
    /// A keyframe went out since the last sequence header: inter frames may follow.
    keyed: bool,
}

impl AvcIngest {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the next inter frame would be dropped for want of a keyframe (the driver
    /// then asks the publisher for one).
    pub fn needs_keyframe(&self) -> bool {
        !self.keyed
    }

    pub fn push(&mut self, annex_b: &[u8]) -> IngestOut {
        let mut out = IngestOut::default();
        if annex_b.len() > MAX_ACCESS_UNIT {
            return out;
        }
        let mut body = Vec::with_capacity(annex_b.len() + 32);
        body.extend_from_slice(&[0x27, 0x01, 0, 0, 0]);
        let mut idr = false;
        for nal in split_annex_b(annex_b) {
            match avc_nal_type(nal) {
                Some(NAL_SPS) => self.sps = Some(nal.to_vec()),
                Some(NAL_PPS) => self.pps = Some(nal.to_vec()),
                Some(NAL_AUD) => {}
                Some(t) => {
                    idr |= t == NAL_IDR;
                    body.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    body.extend_from_slice(nal);
                }
                None => {}
            }
        }
        if let (Some(sps), Some(pps)) = (&self.sps, &self.pps) {
            let record = avc_decoder_configuration_record(&[sps], &[pps]);
            if record.is_some() && record != self.record {
                let record = record.unwrap_or_default();
                let mut header = vec![0x17, 0x00, 0, 0, 0];
                header.extend_from_slice(&record);
                out.header = Some(header);
                self.record = Some(record);
                self.keyed = false;
            }
        }
        if body.len() == 5 || self.record.is_none() || !(idr || self.keyed) {
            return out;
        }
        if idr {
            body[0] = 0x17;
            self.keyed = true;
        }
        out.frame = Some((body, idr));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Baseline 320x240 SPS and a PPS (from an x264 stream).
    const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
        0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x20,
    ];
    const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];

    fn record() -> Vec<u8> {
        avc_decoder_configuration_record(&[SPS], &[PPS]).unwrap()
    }

    fn flv(keyframe: bool, cts: i32, nals: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![if keyframe { 0x17 } else { 0x27 }, 1];
        v.extend_from_slice(&cts.to_be_bytes()[1..]);
        for n in nals {
            v.extend_from_slice(&(n.len() as u32).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn egress_puts_parameter_sets_before_idr_only() {
        let mut e = AvcEgress::new();
        assert_eq!(e.push(&flv(true, 0, &[&[0x65, 1]])), None, "no header yet");
        let mut header = vec![0x17, 0, 0, 0, 0];
        header.extend_from_slice(&record());
        assert_eq!(e.push(&header), None);
        let au = e
            .push(&flv(true, 40, &[&[0x09, 0xf0], &[0x65, 1, 2]]))
            .unwrap();
        let nals: Vec<&[u8]> = split_annex_b(&au.data).collect();
        assert_eq!(
            nals,
            vec![SPS, PPS, &[0x65, 1, 2][..]],
            "AUD dropped, SPS/PPS first"
        );
        assert!(au.keyframe);
        assert_eq!(au.cts_ms, 40);
        let au = e.push(&flv(false, -80, &[&[0x41, 9]])).unwrap();
        assert_eq!(au.data, vec![0, 0, 0, 1, 0x41, 9]);
        assert_eq!(au.cts_ms, -80);
        assert!(!au.keyframe);
    }

    #[test]
    fn egress_reads_enhanced_rtmp_avc1() {
        let mut e = AvcEgress::new();
        let mut header = vec![0x90, b'a', b'v', b'c', b'1'];
        header.extend_from_slice(&record());
        e.push(&header);
        let mut frame = vec![0xa3, b'a', b'v', b'c', b'1'];
        frame.extend_from_slice(&[0, 0, 0, 2, 0x41, 7]);
        let au = e.push(&frame).unwrap();
        assert_eq!(au.data, vec![0, 0, 0, 1, 0x41, 7]);
        assert!(!is_avc(&[0x90, b'h', b'v', b'c', b'1']));
    }

    #[test]
    fn egress_survives_garbage() {
        let mut e = AvcEgress::new();
        for junk in [
            &[][..],
            &[0x17],
            &[0x17, 0],
            &[0x17, 0, 0, 0, 0, 1, 2],
            &[0x17, 1, 0, 0],
            &[0x90],
            &[0x91, b'a', b'v', b'c', b'1'],
        ] {
            e.push(junk);
        }
        let mut header = vec![0x17, 0, 0, 0, 0];
        header.extend_from_slice(&record());
        e.push(&header);
        // A length prefix past the end: the truncated unit is dropped.
        assert_eq!(e.push(&[0x27, 1, 0, 0, 0, 0, 0, 0, 9, 0x41]), None);
        assert_eq!(e.push(&[0x27, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]), None);
    }

    fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&[0, 0, 1]);
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn ingest_waits_for_parameter_sets_and_idr_then_round_trips() {
        let mut i = AvcIngest::new();
        assert_eq!(i.push(&annex_b(&[&[0x41, 1]])), IngestOut::default());
        assert!(i.needs_keyframe());
        let out = i.push(&annex_b(&[SPS, PPS, &[0x65, 5, 5]]));
        let header = out.header.unwrap();
        assert_eq!(&header[..5], &[0x17, 0, 0, 0, 0]);
        let (frame, key) = out.frame.unwrap();
        assert!(key && !i.needs_keyframe());
        assert_eq!(frame, flv(true, 0, &[&[0x65, 5, 5]]));
        // Same SPS/PPS again: no new header.
        let out = i.push(&annex_b(&[SPS, PPS, &[0x65, 6]]));
        assert!(out.header.is_none());
        let out = i.push(&annex_b(&[&[0x41, 2]]));
        assert_eq!(out.frame, Some((flv(false, 0, &[&[0x41, 2]]), false)));
        // And back through egress: the same units, parameter sets first.
        let mut e = AvcEgress::new();
        e.push(&header);
        let au = e.push(&frame).unwrap();
        assert_eq!(au.data, annex_b_4(&[SPS, PPS, &[0x65, 5, 5]]));
    }

    fn annex_b_4(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&START_CODE);
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn ingest_survives_garbage() {
        let mut i = AvcIngest::new();
        for junk in [
            &[][..],
            &[0, 0, 1],
            &[0, 0, 1, 0x67],
            &[0xff; 64],
            &[0, 0, 1, 0x68, 0],
        ] {
            let _ = i.push(junk);
        }
        // A bad SPS builds no record, so nothing is published.
        let out = i.push(&annex_b(&[&[0x67, 0xff], PPS, &[0x65, 1]]));
        assert_eq!(out, IngestOut::default());
    }

    /// The NAL units a receiver gets from the payloads: RTSP ingest's depacketizer.
    fn depacketize(payloads: &[Arc<[u8]>]) -> Vec<Vec<u8>> {
        crate::rtp::depacketize_h264(payloads).expect("one whole access unit")
    }

    #[test]
    fn rtp_payloads_carry_the_access_unit_within_the_size() {
        let mut e = AvcEgress::new();
        let mut header = vec![0x17, 0, 0, 0, 0];
        header.extend_from_slice(&record());
        assert_eq!(e.push_rtp(&header, 1200), None);
        let idr: Vec<u8> = [0x65]
            .into_iter()
            .chain((0..5000).map(|i| i as u8))
            .collect();
        let sei: &[u8] = &[0x06, 5, 1, 2];
        let au = e
            .push_rtp(&flv(true, 40, &[&[0x09, 0xf0], sei, &idr]), 1200)
            .unwrap();
        assert!(au.keyframe);
        assert_eq!(au.cts_ms, 40);
        // SPS, PPS and the SEI as they are (the AUD left out), then the IDR in fragments
        // of one size but the last.
        let sizes: Vec<usize> = au.payloads.iter().map(|p| p.len()).collect();
        assert_eq!(
            sizes,
            [SPS.len(), PPS.len(), 4, 1200, 1200, 1200, 1200, 210]
        );
        assert_eq!(depacketize(&au.payloads), vec![SPS, PPS, sei, &idr[..]]);
        // An inter frame that fits goes as it is; a unit of a type RTP keeps for its own
        // packets (here 24, STAP-A), which no encoder writes, and a header alone are left out.
        let p = e
            .push_rtp(
                &flv(false, 0, &[&[0x41, 9], &[0x18, 0, 1, 2], &[0x0a]]),
                1200,
            )
            .unwrap();
        assert_eq!(p.payloads, vec![Arc::<[u8]>::from(&[0x41, 9][..])]);
    }

    #[test]
    fn rtp_packetization_respects_any_size() {
        let units: Vec<Vec<u8>> = (0..40)
            .map(|i| {
                let len = (i * 97 + 1) % 700 + 1;
                let mut u = vec![0x41 + (i as u8 % 2) * 0x20];
                u.extend((0..len).map(|b| b as u8));
                u
            })
            .collect();
        let refs: Vec<&[u8]> = units.iter().map(Vec::as_slice).collect();
        for max in [19, 20, 50, 100, 700, 1120, 1400] {
            let payloads = packetize(&refs, max);
            assert!(payloads.iter().all(|p| p.len() <= max), "max {max}");
            assert_eq!(depacketize(&payloads), units, "max {max}");
        }
        assert!(packetize(&[&[][..], &[]], 1200).is_empty());
    }
}
