//! Depacketized media → FLV-style frames (what the hub carries): AVC and Enhanced RTMP
//! HEVC frames with sequence headers built from the SDP's `sprop-*` parameter sets or
//! in-band ones, AAC with its AudioSpecificConfig from the SDP `config=`, and Enhanced RTMP
//! Opus with an OpusHead for the SDP's channel count.
//!
//! RTP carries presentation times only. With B-frames they go backwards in decode
//! order; instead of failing (retina's "Timestamp jumped", #61/#64), the decode time is
//! estimated as the presentation time minus the largest reordering seen so far (capped),
//! kept non-decreasing, and the difference goes into the composition time offset.

use crate::video::{AccessUnit, VideoCodec};
use bytes::{BufMut, Bytes, BytesMut};
use prism_media::MediaKind;
use prism_mpegts::nal;
pub use prism_mpegts::FlvFrame;

/// Largest reordering delay believed (B-frame pyramids stay far below).
const MAX_REORDER_MS: i64 = 1000;

/// Why a video access unit did not become a frame (counted by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoSkip {
    /// No parameter sets yet (neither in the SDP nor in-band).
    NoParameterSets,
    /// Waiting for the first keyframe.
    BeforeKeyframe,
    /// Parameter sets only.
    Empty,
}

/// One video track's access units → FLV-style frames.
#[derive(Debug)]
pub struct VideoToFlv {
    codec: VideoCodec,
    vps: Option<Bytes>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    dirty: bool,
    record: Option<Vec<u8>>,
    sent_record: Option<Vec<u8>>,
    seen_keyframe: bool,
    last_pts: Option<i64>,
    reorder: i64,
    last_dts: i64,
}

impl VideoToFlv {
    /// `params`: parameter sets from the SDP (may be empty: then in-band ones are awaited).
    pub fn new(codec: VideoCodec, params: &[Vec<u8>]) -> Self {
        let mut v = VideoToFlv {
            codec,
            vps: None,
            sps: None,
            pps: None,
            dirty: false,
            record: None,
            sent_record: None,
            seen_keyframe: false,
            last_pts: None,
            reorder: 0,
            last_dts: i64::MIN,
        };
        for p in params {
            v.store(Bytes::copy_from_slice(p));
        }
        v
    }

    fn store(&mut self, nal: Bytes) -> bool {
        let Some(t) = self.codec.nal_type(&nal) else {
            return false;
        };
        let slot = match (self.codec, t) {
            (VideoCodec::H264, 7) | (VideoCodec::H265, 33) => &mut self.sps,
            (VideoCodec::H264, 8) | (VideoCodec::H265, 34) => &mut self.pps,
            (VideoCodec::H265, 32) => &mut self.vps,
            _ => return false,
        };
        if slot.as_ref() != Some(&nal) {
            *slot = Some(nal);
            self.dirty = true;
        }
        true
    }

    fn build_record(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let (Some(sps), Some(pps)) = (&self.sps, &self.pps) else {
            return;
        };
        let record = match self.codec {
            VideoCodec::H264 => nal::avc_decoder_configuration_record(&[sps], &[pps]),
            VideoCodec::H265 => match &self.vps {
                Some(vps) => nal::hevc_decoder_configuration_record(&[vps], &[sps], &[pps]),
                None => None,
            },
        };
        if record.is_some() {
            self.record = record;
        }
    }

    /// Turns one access unit presented at `pts_ms` into frames (a sequence header first
    /// when the parameter sets changed).
    pub fn push(
        &mut self,
        au: &AccessUnit,
        pts_ms: i64,
        out: &mut Vec<FlvFrame>,
    ) -> Result<(), VideoSkip> {
        let mut keyframe = false;
        let mut nals: Vec<&Bytes> = Vec::with_capacity(au.nals.len());
        for n in &au.nals {
            let t = self.codec.nal_type(n).unwrap_or(0);
            // Access unit delimiters and filler are not carried in FLV.
            let skip = match self.codec {
                VideoCodec::H264 => t == 9 || t == 12,
                VideoCodec::H265 => t == 35 || t == 38,
            };
            if skip || self.store(n.clone()) {
                continue;
            }
            keyframe |= self.codec.is_keyframe_nal(n);
            nals.push(n);
        }
        if nals.is_empty() {
            return Err(VideoSkip::Empty);
        }
        self.build_record();
        // Decode time: see the module docs.
        if let Some(last) = self.last_pts {
            if pts_ms < last {
                self.reorder = self.reorder.max(last - pts_ms).min(MAX_REORDER_MS);
            }
        }
        self.last_pts = Some(pts_ms);
        let dts = (pts_ms - self.reorder).max(self.last_dts).max(0);
        self.last_dts = dts;
        let cts = (pts_ms - dts).clamp(0, 0x7F_FFFF) as i32;
        let Some(record) = &self.record else {
            return Err(VideoSkip::NoParameterSets);
        };
        if !self.seen_keyframe && !keyframe {
            return Err(VideoSkip::BeforeKeyframe);
        }
        self.seen_keyframe = true;
        let hevc = self.codec == VideoCodec::H265;
        if self.sent_record.as_ref() != Some(record) {
            let mut p = BytesMut::with_capacity(5 + record.len());
            if hevc {
                p.put_u8(0x80 | (1 << 4)); // keyframe, PacketTypeSequenceStart
                p.put_slice(b"hvc1");
            } else {
                p.put_slice(&[0x17, 0x00, 0, 0, 0]);
            }
            p.put_slice(record);
            out.push(FlvFrame {
                kind: MediaKind::Video,
                timestamp: dts as u32,
                payload: p.freeze(),
                keyframe: false,
                sequence_header: true,
            });
            self.sent_record = Some(record.clone());
        }
        let body: usize = nals.iter().map(|n| 4 + n.len()).sum();
        let mut p = BytesMut::with_capacity(8 + body);
        if hevc {
            // Enhanced RTMP: [IsExHeader | FrameType | PacketTypeCodedFrames] "hvc1" SI24 CTS
            p.put_u8(0x80 | (if keyframe { 1 } else { 2 } << 4) | 1);
            p.put_slice(b"hvc1");
        } else {
            p.put_u8(if keyframe { 0x17 } else { 0x27 });
            p.put_u8(0x01);
        }
        p.put_slice(&cts.to_be_bytes()[1..]);
        for n in nals {
            p.put_u32(n.len() as u32);
            p.put_slice(n);
        }
        out.push(FlvFrame {
            kind: MediaKind::Video,
            timestamp: dts as u32,
            payload: p.freeze(),
            keyframe,
            sequence_header: false,
        });
        Ok(())
    }
}

/// The parameter sets of an H.264 `sprop-parameter-sets` or the H.265
/// `sprop-vps`/`sprop-sps`/`sprop-pps` values (comma-separated base64).
pub fn sprop_nals(values: &[&str]) -> Vec<Vec<u8>> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .filter_map(crate::auth::base64_decode)
        .filter(|n| !n.is_empty() && n.len() < 4096)
        .take(16)
        .collect()
}

/// AAC frames → FLV-style frames: the sequence header once, then raw frames.
#[derive(Debug)]
pub struct AacToFlv {
    config: Bytes,
    sent: bool,
}

impl AacToFlv {
    pub fn new(asc: Vec<u8>) -> Self {
        AacToFlv {
            config: Bytes::from(asc),
            sent: false,
        }
    }

    pub fn push(&mut self, frame: &Bytes, ms: i64, out: &mut Vec<FlvFrame>) {
        let ts = ms.max(0) as u32;
        if !self.sent {
            self.sent = true;
            let mut p = BytesMut::with_capacity(2 + self.config.len());
            p.put_slice(&[0xAF, 0x00]);
            p.put_slice(&self.config);
            out.push(FlvFrame {
                kind: MediaKind::Audio,
                timestamp: ts,
                payload: p.freeze(),
                keyframe: false,
                sequence_header: true,
            });
        }
        let mut p = BytesMut::with_capacity(2 + frame.len());
        p.put_slice(&[0xAF, 0x01]);
        p.put_slice(frame);
        out.push(FlvFrame {
            kind: MediaKind::Audio,
            timestamp: ts,
            payload: p.freeze(),
            keyframe: false,
            sequence_header: false,
        });
    }
}

/// Opus packets → Enhanced RTMP audio frames (`Opus` FourCC): an OpusHead sequence
/// header once, then one packet per frame.
#[derive(Debug)]
pub struct OpusToFlv {
    head: Bytes,
    sent: bool,
}

/// Enhanced RTMP audio: SoundFormat 9 (ExHeader) with the packet type in the low nibble.
const EX_AUDIO_SEQUENCE_START: u8 = 0x90;
const EX_AUDIO_CODED_FRAMES: u8 = 0x91;

impl OpusToFlv {
    pub fn new(channels: u8) -> Self {
        // RFC 7845 §5.1: version 1, channels, pre-skip 312 (6.5 ms, libopus's default),
        // input rate 48 kHz, gain 0, mapping family 0 (mono or stereo).
        let mut head = BytesMut::with_capacity(19);
        head.put_slice(b"OpusHead");
        head.put_u8(1);
        head.put_u8(channels.clamp(1, 2));
        head.put_u16_le(312);
        head.put_u32_le(48_000);
        head.put_u16_le(0);
        head.put_u8(0);
        OpusToFlv {
            head: head.freeze(),
            sent: false,
        }
    }

    pub fn push(&mut self, packet: &Bytes, ms: i64, out: &mut Vec<FlvFrame>) {
        let ts = ms.max(0) as u32;
        let frame = |first: u8, body: &[u8], sequence_header: bool| {
            let mut p = BytesMut::with_capacity(5 + body.len());
            p.put_u8(first);
            p.put_slice(b"Opus");
            p.put_slice(body);
            FlvFrame {
                kind: MediaKind::Audio,
                timestamp: ts,
                payload: p.freeze(),
                keyframe: false,
                sequence_header,
            }
        };
        if !self.sent {
            self.sent = true;
            out.push(frame(EX_AUDIO_SEQUENCE_START, &self.head, true));
        }
        out.push(frame(EX_AUDIO_CODED_FRAMES, packet, false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real 1280x720 High profile SPS/PPS pair.
    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    fn au(nals: &[&[u8]]) -> AccessUnit {
        AccessUnit {
            timestamp: 0,
            nals: nals.iter().map(|n| Bytes::copy_from_slice(n)).collect(),
        }
    }

    #[test]
    fn h264_in_band_parameter_sets_and_b_frames() {
        let mut v = VideoToFlv::new(VideoCodec::H264, &[]);
        let mut out = vec![];
        assert_eq!(
            v.push(&au(&[&[0x41, 1]]), 0, &mut out),
            Err(VideoSkip::NoParameterSets)
        );
        v.push(&au(&[SPS, PPS, &[0x65, 1, 2]]), 40, &mut out)
            .unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].sequence_header && out[1].keyframe);
        assert_eq!(&out[1].payload[..2], &[0x17, 0x01]);
        // P at 160, then B at 80 and 120: decode times stay non-decreasing.
        out.clear();
        for pts in [160, 80, 120, 280, 200, 240] {
            v.push(&au(&[&[0x41, 9]]), pts, &mut out).unwrap();
        }
        let dts: Vec<u32> = out.iter().map(|f| f.timestamp).collect();
        assert!(dts.windows(2).all(|w| w[0] <= w[1]), "{dts:?}");
        // After reordering is seen, the composition offset is the reorder delay.
        let last = out.last().unwrap();
        let cts = i32::from_be_bytes([0, last.payload[2], last.payload[3], last.payload[4]]);
        assert_eq!(last.timestamp as i32 + cts, 240);
    }

    #[test]
    fn h264_from_sprop_and_waits_for_keyframe() {
        let sprop = format!(
            "{},{}",
            crate::auth::base64_encode(SPS),
            crate::auth::base64_encode(PPS)
        );
        let params = sprop_nals(&[&sprop]);
        assert_eq!(params.len(), 2);
        let mut v = VideoToFlv::new(VideoCodec::H264, &params);
        let mut out = vec![];
        assert_eq!(
            v.push(&au(&[&[0x41, 1]]), 0, &mut out),
            Err(VideoSkip::BeforeKeyframe)
        );
        v.push(&au(&[&[0x09, 0x10], &[0x65, 1]]), 40, &mut out)
            .unwrap();
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn opus() {
        let mut o = OpusToFlv::new(2);
        let mut out = vec![];
        o.push(&Bytes::from_static(&[0xfc, 1]), 5, &mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].sequence_header);
        assert_eq!(&out[0].payload[..13], b"\x90OpusOpusHead");
        assert_eq!(&out[1].payload[..], b"\x91Opus\xfc\x01");
    }

    #[test]
    fn aac() {
        let mut a = AacToFlv::new(vec![0x12, 0x10]);
        let mut out = vec![];
        a.push(&Bytes::from_static(&[1, 2]), 10, &mut out);
        a.push(&Bytes::from_static(&[3]), 33, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(&out[0].payload[..], &[0xAF, 0, 0x12, 0x10]);
        assert_eq!(&out[2].payload[..], &[0xAF, 1, 3]);
    }
}
