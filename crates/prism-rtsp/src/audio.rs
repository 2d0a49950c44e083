//! AAC over RTP as RFC 3640 `mpeg4-generic` AAC-hbr (13-bit sizes, 3-bit indexes), and
//! Opus (RFC 7587: one Opus packet per RTP payload, nothing to add or take away).

use bytes::{Bytes, BytesMut};

/// Samples per AAC-LC frame: the RTP timestamp step between frames of one packet.
pub const AAC_FRAME_SAMPLES: u32 = 1024;

/// The 4 bytes that go before one raw AAC frame in an AAC-hbr payload: the AU-headers
/// length (16 bits) and one AU header (13-bit size, 3-bit index 0).
pub fn aac_au_header(frame_len: usize) -> [u8; 4] {
    let size = (frame_len.min(0x1FFF) as u16) << 3;
    let s = size.to_be_bytes();
    [0, 16, s[0], s[1]]
}

/// The AAC-hbr `fmtp` for an AudioSpecificConfig.
pub fn aac_fmtp(config: &[u8]) -> String {
    let hex: String = config.iter().map(|b| format!("{b:02X}")).collect();
    format!("streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config={hex}")
}

/// Parses hex (`config=` of an fmtp), at most 64 bytes of it.
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 || s.len() > 128 || s.is_empty() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The sample rate and channel count an AudioSpecificConfig gives (None for escapes
/// Prism does not follow).
pub fn asc_rate_channels(asc: &[u8]) -> Option<(u32, u8)> {
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let b0 = *asc.first()?;
    let b1 = *asc.get(1)?;
    let idx = ((b0 & 0x07) << 1) | (b1 >> 7);
    let rate = *RATES.get(usize::from(idx))?;
    let ch = (b1 >> 3) & 0x0F;
    Some((rate, ch))
}

/// AAC-hbr depacketizer parameters (from the SDP `fmtp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacParams {
    pub size_length: u8,
    pub index_length: u8,
    pub index_delta_length: u8,
}

impl Default for AacParams {
    fn default() -> Self {
        AacParams {
            size_length: 13,
            index_length: 3,
            index_delta_length: 3,
        }
    }
}

/// Most frames taken from one packet; a camera sends one to a handful.
const MAX_FRAMES_PER_PACKET: usize = 64;
/// Largest AAC frame accepted (6144 bits per channel × 8 channels).
const MAX_FRAME: usize = 8 * 768;

/// Reassembles AAC frames (each with its own RTP timestamp) from AAC-hbr payloads.
#[derive(Debug, Default)]
pub struct AacDepacketizer {
    params: AacParams,
    /// A frame split over several packets: its declared size and what came so far.
    fragment: Option<(usize, u32, BytesMut)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacError(pub &'static str);

impl AacDepacketizer {
    pub fn new(params: AacParams) -> Self {
        AacDepacketizer {
            params,
            fragment: None,
        }
    }

    /// Bytes held: a frame split over packets, while it is incomplete (at most `MAX_FRAME`).
    pub fn buffered_bytes(&self) -> usize {
        self.fragment.as_ref().map_or(0, |(_, _, b)| b.capacity())
    }

    /// Appends the frames of one payload (with their RTP timestamps) to `out`.
    pub fn push(
        &mut self,
        timestamp: u32,
        payload: &Bytes,
        gap: bool,
        out: &mut Vec<(u32, Bytes)>,
    ) -> Result<(), AacError> {
        if gap {
            self.fragment = None;
        }
        let p = self.params;
        let hb = payload.get(..2).ok_or(AacError("short payload"))?;
        let header_bits = usize::from(u16::from_be_bytes([hb[0], hb[1]]));
        let header_bytes = header_bits.div_ceil(8);
        let data_start = 2 + header_bytes;
        if data_start > payload.len() {
            return Err(AacError("AU headers past the end"));
        }
        let first_len = usize::from(p.size_length) + usize::from(p.index_length);
        let next_len = usize::from(p.size_length) + usize::from(p.index_delta_length);
        if first_len == 0 || next_len == 0 || p.size_length == 0 || p.size_length > 16 {
            return Err(AacError("bad AU header lengths"));
        }
        let headers = &payload[2..data_start];
        let mut bit = 0;
        let mut data = data_start;
        let mut n = 0u32;
        while bit + if n == 0 { first_len } else { next_len } <= header_bits {
            let size = read_bits(headers, bit, usize::from(p.size_length)) as usize;
            bit += if n == 0 { first_len } else { next_len };
            if n as usize >= MAX_FRAMES_PER_PACKET || size > MAX_FRAME {
                return Err(AacError("absurd AU header"));
            }
            let ts = timestamp.wrapping_add(n * AAC_FRAME_SAMPLES);
            let avail = payload.len() - data;
            if size > avail {
                // The start of a fragmented frame (it must be the only one).
                if n != 0 {
                    return Err(AacError("AU size past the end"));
                }
                match &mut self.fragment {
                    Some((want, fts, buf)) if *want == size && *fts == timestamp => {
                        buf.extend_from_slice(&payload[data..]);
                        if buf.len() >= size {
                            buf.truncate(size);
                            out.push((timestamp, std::mem::take(buf).freeze()));
                            self.fragment = None;
                        } else if buf.len() > MAX_FRAME {
                            self.fragment = None;
                        }
                    }
                    _ => {
                        let mut buf = BytesMut::with_capacity(size);
                        buf.extend_from_slice(&payload[data..]);
                        self.fragment = Some((size, timestamp, buf));
                    }
                }
                return Ok(());
            }
            if let Some((want, fts, buf)) = &mut self.fragment {
                // The last piece of a fragmented frame carries the full size too.
                if *want == size && *fts == timestamp {
                    buf.extend_from_slice(&payload[data..]);
                    if buf.len() >= size {
                        buf.truncate(size);
                        out.push((timestamp, std::mem::take(buf).freeze()));
                    }
                    self.fragment = None;
                    return Ok(());
                }
                self.fragment = None;
            }
            out.push((ts, payload.slice(data..data + size)));
            data += size;
            n += 1;
        }
        Ok(())
    }
}

fn read_bits(b: &[u8], start: usize, len: usize) -> u32 {
    let mut v = 0u32;
    for i in start..start + len {
        let byte = b.get(i / 8).copied().unwrap_or(0);
        v = (v << 1) | u32::from((byte >> (7 - i % 8)) & 1);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_roundtrip() {
        let frame = Bytes::from(vec![0x21u8; 300]);
        let mut p = aac_au_header(frame.len()).to_vec();
        p.extend_from_slice(&frame);
        let mut out = vec![];
        AacDepacketizer::default()
            .push(1000, &Bytes::from(p), false, &mut out)
            .unwrap();
        assert_eq!(out, vec![(1000, frame)]);
    }

    #[test]
    fn aac_several_frames_and_fragments() {
        // Two AU headers: sizes 3 and 2.
        let p = Bytes::from_static(&[0, 32, 0, 3 << 3, 0, 2 << 3, 1, 2, 3, 4, 5]);
        let mut out = vec![];
        let mut d = AacDepacketizer::default();
        d.push(0, &p, false, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].0, 1024);
        assert_eq!(&out[1].1[..], &[4, 5]);
        // One frame of 4 bytes over two packets.
        out.clear();
        d.push(
            7,
            &Bytes::from_static(&[0, 16, 0, 4 << 3, 1, 2]),
            false,
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty());
        d.push(
            7,
            &Bytes::from_static(&[0, 16, 0, 4 << 3, 3, 4]),
            false,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, vec![(7, Bytes::from_static(&[1, 2, 3, 4]))]);
    }

    #[test]
    fn aac_garbage() {
        let mut d = AacDepacketizer::default();
        let mut out = vec![];
        assert!(d
            .push(0, &Bytes::from_static(&[0xff, 0xff, 1]), false, &mut out)
            .is_err());
        assert!(d
            .push(0, &Bytes::from_static(&[0]), false, &mut out)
            .is_err());
        let mut x: u32 = 7;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = (x % 24) as usize;
            let p: Vec<u8> = (0..len).map(|j| (x >> (j % 24)) as u8).collect();
            let _ = d.push(x, &Bytes::from(p), x % 5 == 0, &mut out);
            assert!(out.len() < 100_000);
            out.clear();
        }
    }

    #[test]
    fn config_helpers() {
        assert_eq!(parse_hex("1408"), Some(vec![0x14, 0x08]));
        assert_eq!(parse_hex("14G8"), None);
        assert_eq!(asc_rate_channels(&[0x14, 0x08]), Some((16000, 1)));
        assert_eq!(asc_rate_channels(&[0x12, 0x10]), Some((44100, 2)));
        assert!(aac_fmtp(&[0x12, 0x10]).ends_with("config=1210"));
    }
}
