//! H.264 (RFC 6184) and H.265 (RFC 7798) over RTP: NAL units of an access unit →
//! payloads (single NAL unit packets, FU-A / FU fragments), and payloads → access units
//! (single NAL units, STAP-A / AP aggregates, FU-A / FU fragments), bounded.

use crate::rtp::RtpHeader;
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    H265,
}

impl VideoCodec {
    fn header_len(self) -> usize {
        match self {
            VideoCodec::H264 => 1,
            VideoCodec::H265 => 2,
        }
    }

    /// The NAL unit type of a NAL unit (or payload header).
    pub fn nal_type(self, nal: &[u8]) -> Option<u8> {
        let b = *nal.first()?;
        Some(match self {
            VideoCodec::H264 => b & 0x1F,
            VideoCodec::H265 => (b >> 1) & 0x3F,
        })
    }

    /// An IDR (H.264) or IRAP (H.265) picture's NAL unit.
    pub fn is_keyframe_nal(self, nal: &[u8]) -> bool {
        match (self, self.nal_type(nal)) {
            (VideoCodec::H264, Some(t)) => t == 5,
            (VideoCodec::H265, Some(t)) => (16..=21).contains(&t),
            _ => false,
        }
    }

    /// Whether RTP carries `nal` as a unit: more than its header, and not of a type the
    /// payload format takes for its own packets (H.264 0 and 24-31, RFC 6184; H.265 48-50,
    /// RFC 7798), which no encoder writes and a receiver would misread.
    pub fn rtp_carries(self, nal: &[u8]) -> bool {
        nal.len() > self.header_len()
            && match (self, self.nal_type(nal)) {
                (VideoCodec::H264, Some(t)) => !matches!(t, 0 | 24..=31),
                (VideoCodec::H265, Some(t)) => !(48..=50).contains(&t),
                _ => false,
            }
    }

    /// SPS, PPS (and VPS for H.265).
    pub fn is_parameter_set(self, nal: &[u8]) -> bool {
        match (self, self.nal_type(nal)) {
            (VideoCodec::H264, Some(t)) => t == 7 || t == 8,
            (VideoCodec::H265, Some(t)) => (32..=34).contains(&t),
            _ => false,
        }
    }

    fn aggregate_type(self) -> u8 {
        match self {
            VideoCodec::H264 => 24,
            VideoCodec::H265 => 48,
        }
    }

    fn fragment_type(self) -> u8 {
        match self {
            VideoCodec::H264 => 28,
            VideoCodec::H265 => 49,
        }
    }
}

/// Splits one access unit's NAL units into RTP payloads of at most `mtu` bytes, calling
/// `emit(parts, marker)` per packet (the parts are concatenated into the payload; the
/// marker is set on the access unit's last packet). NAL units that fit go alone; larger
/// ones are fragmented; those RTP does not carry ([`VideoCodec::rtp_carries`]) are left
/// out. No aggregation: a server gains little from it and players reassemble single NAL
/// units most simply.
pub fn packetize<'a>(
    codec: VideoCodec,
    nals: impl IntoIterator<Item = &'a [u8]>,
    mtu: usize,
    mut emit: impl FnMut(&[&[u8]], bool),
) {
    let hl = codec.header_len();
    let mtu = mtu.max(hl + 2 + 16);
    let nals: Vec<&[u8]> = nals.into_iter().filter(|n| codec.rtp_carries(n)).collect();
    let count = nals.len();
    for (i, nal) in nals.into_iter().enumerate() {
        let last_nal = i + 1 == count;
        if nal.len() <= mtu {
            emit(&[nal], last_nal);
            continue;
        }
        let (fu, body) = match codec {
            VideoCodec::H264 => {
                let t = nal[0] & 0x1F;
                ([(nal[0] & 0xE0) | 28, t, 0], &nal[1..])
            }
            VideoCodec::H265 => {
                let t = (nal[0] >> 1) & 0x3F;
                ([(nal[0] & 0x81) | (49 << 1), nal[1], t], &nal[2..])
            }
        };
        let fu_len = hl + 1;
        let chunk = mtu - fu_len;
        let pieces = body.len().div_ceil(chunk);
        for (j, piece) in body.chunks(chunk).enumerate() {
            let mut h = fu;
            let flags = &mut h[fu_len - 1];
            if j == 0 {
                *flags |= 0x80;
            }
            if j + 1 == pieces {
                *flags |= 0x40;
            }
            emit(&[&h[..fu_len], piece], last_nal && j + 1 == pieces);
        }
    }
}

/// Bounds of the depacketizer.
#[derive(Debug, Clone, Copy)]
pub struct DepackLimits {
    pub max_access_unit: usize,
    pub max_nals: usize,
}

impl Default for DepackLimits {
    fn default() -> Self {
        DepackLimits {
            // A 4K intra frame at a high bitrate stays well under this.
            max_access_unit: 8 * 1024 * 1024,
            max_nals: 1024,
        }
    }
}

/// One access unit: its NAL units (without start codes or length prefixes) and RTP time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    pub timestamp: u32,
    pub nals: Vec<Bytes>,
}

/// Why a packet was dropped (counted, never fatal: the next keyframe recovers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepackError {
    /// Too short, or a NAL unit type RTP does not allow here.
    Malformed,
    /// A fragment without its start (lost packets before it).
    FragmentWithoutStart,
    /// The access unit grew over [`DepackLimits`].
    TooLarge,
}

impl DepackError {
    pub fn as_str(self) -> &'static str {
        match self {
            DepackError::Malformed => "malformed",
            DepackError::FragmentWithoutStart => "fragment_without_start",
            DepackError::TooLarge => "too_large",
        }
    }
}

/// Reassembles access units from RTP packets of one video track.
#[derive(Debug)]
pub struct Depacketizer {
    codec: VideoCodec,
    limits: DepackLimits,
    nals: Vec<Bytes>,
    size: usize,
    timestamp: Option<u32>,
    fragment: Option<BytesMut>,
    /// The current access unit lost a piece: dropped when complete.
    broken: bool,
    ready: VecDeque<AccessUnit>,
}

impl Depacketizer {
    pub fn new(codec: VideoCodec, limits: DepackLimits) -> Self {
        Depacketizer {
            codec,
            limits,
            nals: Vec::new(),
            size: 0,
            timestamp: None,
            fragment: None,
            broken: false,
            ready: VecDeque::new(),
        }
    }

    /// Takes one packet; `gap` = packets were lost just before it. Complete access units
    /// are then taken with [`Depacketizer::pop`].
    pub fn push(&mut self, hdr: &RtpHeader, payload: Bytes, gap: bool) -> Result<(), DepackError> {
        if self.timestamp.is_some_and(|t| t != hdr.timestamp) {
            // The previous access unit lost its marker packet: end it here.
            self.finish();
        }
        if gap {
            self.fragment = None;
            self.broken |= !self.nals.is_empty();
        }
        self.timestamp = Some(hdr.timestamp);
        let r = self.take(payload);
        if r.is_err() {
            self.broken = true;
        }
        if hdr.marker {
            self.finish();
        }
        r
    }

    pub fn pop(&mut self) -> Option<AccessUnit> {
        self.ready.pop_front()
    }

    /// Bytes held: the access unit being built (bounded by `max_access_unit`), its open
    /// fragment, and complete units not yet popped.
    pub fn buffered_bytes(&self) -> usize {
        let ready: usize = self
            .ready
            .iter()
            .flat_map(|au| au.nals.iter())
            .map(Bytes::len)
            .sum();
        self.size + self.fragment.as_ref().map_or(0, BytesMut::capacity) + ready
    }

    fn take(&mut self, payload: Bytes) -> Result<(), DepackError> {
        let hl = self.codec.header_len();
        if payload.len() <= hl {
            return Err(DepackError::Malformed);
        }
        let t = self
            .codec
            .nal_type(&payload)
            .ok_or(DepackError::Malformed)?;
        if t == self.codec.aggregate_type() {
            let mut rest = payload.slice(hl..);
            while rest.len() >= 2 {
                let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                if n == 0 || rest.len() < 2 + n {
                    return Err(DepackError::Malformed);
                }
                self.add(rest.slice(2..2 + n))?;
                rest = rest.slice(2 + n..);
            }
            return Ok(());
        }
        if t == self.codec.fragment_type() {
            let fh = *payload.get(hl).ok_or(DepackError::Malformed)?;
            let (start, end) = (fh & 0x80 != 0, fh & 0x40 != 0);
            let body = payload.slice(hl + 1..);
            if start {
                let mut f = BytesMut::with_capacity(hl + body.len() * 4);
                match self.codec {
                    VideoCodec::H264 => f.put_u8((payload[0] & 0xE0) | (fh & 0x1F)),
                    VideoCodec::H265 => {
                        f.put_u8((payload[0] & 0x81) | ((fh & 0x3F) << 1));
                        f.put_u8(payload[1]);
                    }
                }
                self.fragment = Some(f);
            }
            let Some(f) = self.fragment.as_mut() else {
                return Err(DepackError::FragmentWithoutStart);
            };
            if self.size + f.len() + body.len() > self.limits.max_access_unit {
                self.fragment = None;
                return Err(DepackError::TooLarge);
            }
            f.put_slice(&body);
            if end {
                if let Some(f) = self.fragment.take() {
                    self.add(f.freeze())?;
                }
            }
            return Ok(());
        }
        match (self.codec, t) {
            // Reserved / unspecified in the RTP payload formats.
            (VideoCodec::H264, 0 | 25..=31) | (VideoCodec::H265, 50..=63) => {
                Err(DepackError::Malformed)
            }
            _ => self.add(payload),
        }
    }

    fn add(&mut self, nal: Bytes) -> Result<(), DepackError> {
        if nal.len() < self.codec.header_len() {
            return Err(DepackError::Malformed);
        }
        if self.nals.len() >= self.limits.max_nals
            || self.size + nal.len() > self.limits.max_access_unit
        {
            return Err(DepackError::TooLarge);
        }
        self.size += nal.len();
        self.nals.push(nal);
        Ok(())
    }

    fn finish(&mut self) {
        let nals = std::mem::take(&mut self.nals);
        let broken = std::mem::take(&mut self.broken);
        self.size = 0;
        self.fragment = None;
        if let (false, Some(timestamp), false) = (broken, self.timestamp, nals.is_empty()) {
            self.ready.push_back(AccessUnit { timestamp, nals });
        }
        self.timestamp = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_rtp_does_not_carry_are_left_out() {
        // H.264: a slice, a header alone, a type-24 unit (STAP-A's type), a type-0 unit;
        // H.265: a slice, a type-49 unit (FU's type), a header alone.
        for (codec, nals, kept) in [
            (
                VideoCodec::H264,
                vec![&[0x41, 9][..], &[0x09], &[0x18, 0, 1, 2], &[0x00, 5]],
                vec![0x41u8, 9],
            ),
            (
                VideoCodec::H265,
                vec![&[0x02, 1, 7][..], &[0x62, 1, 3], &[0x40, 1]],
                vec![0x02, 1, 7],
            ),
        ] {
            let mut out = Vec::new();
            packetize(codec, nals, 1200, |parts, marker| {
                out.push((parts.concat(), marker));
            });
            assert_eq!(out, vec![(kept, true)], "{codec:?}");
        }
    }

    fn roundtrip(codec: VideoCodec, nals: &[Vec<u8>], mtu: usize) -> (usize, Vec<AccessUnit>) {
        let mut d = Depacketizer::new(codec, DepackLimits::default());
        let mut packets = 0;
        let mut seq = 0u16;
        packetize(codec, nals.iter().map(|n| &n[..]), mtu, |parts, marker| {
            let payload: Vec<u8> = parts.concat();
            assert!(payload.len() <= mtu);
            packets += 1;
            let hdr = RtpHeader {
                marker,
                payload_type: 96,
                sequence: seq,
                timestamp: 3000,
                ssrc: 1,
            };
            seq += 1;
            d.push(&hdr, Bytes::from(payload), false).unwrap();
        });
        let mut aus = vec![];
        while let Some(a) = d.pop() {
            aus.push(a);
        }
        (packets, aus)
    }

    #[test]
    fn h264_single_and_fu_a() {
        let sps = vec![0x67, 1, 2, 3];
        let idr: Vec<u8> = std::iter::once(0x65)
            .chain((0..5000).map(|i| i as u8))
            .collect();
        let (packets, aus) = roundtrip(VideoCodec::H264, &[sps.clone(), idr.clone()], 1200);
        assert_eq!(packets, 1 + 5);
        assert_eq!(aus.len(), 1);
        assert_eq!(aus[0].nals, vec![Bytes::from(sps), Bytes::from(idr)]);
        assert!(VideoCodec::H264.is_keyframe_nal(&aus[0].nals[1]));
    }

    #[test]
    fn h265_single_and_fu() {
        let vps = vec![0x40, 0x01, 9];
        let idr: Vec<u8> = [0x26, 0x01]
            .into_iter()
            .chain((0..4000).map(|i| (i * 7) as u8))
            .collect();
        let (_, aus) = roundtrip(VideoCodec::H265, &[vps.clone(), idr.clone()], 1000);
        assert_eq!(
            aus[0].nals,
            vec![Bytes::from(vps), Bytes::from(idr.clone())]
        );
        assert!(VideoCodec::H265.is_keyframe_nal(&idr));
    }

    #[test]
    fn stap_a_and_ap() {
        let hdr = RtpHeader {
            marker: true,
            payload_type: 96,
            sequence: 0,
            timestamp: 0,
            ssrc: 0,
        };
        let mut d = Depacketizer::new(VideoCodec::H264, DepackLimits::default());
        d.push(
            &hdr,
            Bytes::from_static(&[24, 0, 2, 0x67, 1, 0, 2, 0x68, 2]),
            false,
        )
        .unwrap();
        assert_eq!(d.pop().unwrap().nals.len(), 2);
        let mut d = Depacketizer::new(VideoCodec::H265, DepackLimits::default());
        d.push(
            &hdr,
            Bytes::from_static(&[96, 1, 0, 3, 0x40, 1, 5, 0, 3, 0x42, 1, 6]),
            false,
        )
        .unwrap();
        assert_eq!(d.pop().unwrap().nals.len(), 2);
        // A lying length.
        assert_eq!(
            d.push(&hdr, Bytes::from_static(&[96, 1, 0, 99, 0x40]), false),
            Err(DepackError::Malformed)
        );
        assert!(d.pop().is_none());
    }

    #[test]
    fn loss_drops_the_access_unit_and_recovers() {
        let mut d = Depacketizer::new(VideoCodec::H264, DepackLimits::default());
        let h = |seq, ts, marker| RtpHeader {
            marker,
            payload_type: 96,
            sequence: seq,
            timestamp: ts,
            ssrc: 0,
        };
        // FU-A start, then (lost middle) end: the access unit is dropped.
        d.push(
            &h(0, 1, false),
            Bytes::from_static(&[28, 0x85, 1, 2]),
            false,
        )
        .unwrap();
        d.push(&h(2, 1, true), Bytes::from_static(&[28, 0x45, 3]), true)
            .unwrap_err();
        assert!(d.pop().is_none());
        // A new access unit without its marker ends when the timestamp changes.
        d.push(&h(3, 2, false), Bytes::from_static(&[0x41, 9]), false)
            .unwrap();
        d.push(&h(4, 3, true), Bytes::from_static(&[0x41, 8]), false)
            .unwrap();
        assert_eq!(d.pop().unwrap().timestamp, 2);
        assert_eq!(d.pop().unwrap().timestamp, 3);
    }

    #[test]
    fn bounded_and_no_panic_on_garbage() {
        let limits = DepackLimits {
            max_access_unit: 10_000,
            max_nals: 8,
        };
        let mut d = Depacketizer::new(VideoCodec::H264, limits);
        let hdr = |marker| RtpHeader {
            marker,
            payload_type: 96,
            sequence: 0,
            timestamp: 0,
            ssrc: 0,
        };
        d.push(&hdr(false), Bytes::from_static(&[28, 0x85]), false)
            .unwrap();
        let big = Bytes::from(vec![0u8; 20_000]);
        let mut fu = vec![28, 0x05];
        fu.extend_from_slice(&big);
        assert_eq!(
            d.push(&hdr(true), Bytes::from(fu), false),
            Err(DepackError::TooLarge)
        );
        let mut x: u32 = 99;
        for codec in [VideoCodec::H264, VideoCodec::H265] {
            let mut d = Depacketizer::new(codec, limits);
            for i in 0..20_000u32 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let len = (x % 40) as usize;
                let p: Vec<u8> = (0..len).map(|j| (x >> (j % 24)) as u8).collect();
                let _ = d.push(&hdr(i % 3 == 0), Bytes::from(p), i % 11 == 0);
                while d.pop().is_some() {}
            }
        }
    }
}
