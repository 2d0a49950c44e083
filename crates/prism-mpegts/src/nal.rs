//! NAL unit helpers shared by the demuxer and the muxer: Annex B splitting, length-prefixed
//! splitting, emulation-prevention removal, an exp-Golomb bit reader, the few SPS fields a
//! decoder configuration record needs, and the AVC/HEVC records themselves (built from
//! parameter sets, and taken apart again).
//!
//! Everything here reads untrusted bytes: parsers return `None` on anything malformed and
//! never index out of bounds.

/// H.264 NAL unit types this crate acts on.
pub mod avc_type {
    pub const NON_IDR: u8 = 1;
    pub const IDR: u8 = 5;
    pub const SEI: u8 = 6;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const AUD: u8 = 9;
    pub const FILLER: u8 = 12;
}

/// HEVC NAL unit types this crate acts on.
pub mod hevc_type {
    /// IRAP pictures (BLA, IDR, CRA and the reserved IRAP types) are `16..=23`; 22 and 23
    /// are reserved, so a keyframe is `16..=21`.
    pub const IRAP_FIRST: u8 = 16;
    pub const IRAP_LAST: u8 = 21;
    pub const VPS: u8 = 32;
    pub const SPS: u8 = 33;
    pub const PPS: u8 = 34;
    pub const AUD: u8 = 35;
    pub const FILLER: u8 = 38;
}

/// The H.264 NAL unit type of a NAL unit (first byte, low 5 bits).
pub fn avc_nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1F)
}

/// The HEVC NAL unit type of a NAL unit (first byte, bits 1..=6).
pub fn hevc_nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| (b >> 1) & 0x3F)
}

/// Splits an Annex B byte stream into NAL units (without start codes).
///
/// Accepts 3- and 4-byte start codes, ignores bytes before the first start code, and trims
/// trailing zero bytes (the `zero_byte` of a following 4-byte start code, or
/// `trailing_zero_8bits`) from each unit, which is safe because a NAL unit always ends in a
/// non-zero byte (`rbsp_trailing_bits` or `cabac_zero_word`'s 0x03). Empty units are skipped.
pub fn split_annex_b(data: &[u8]) -> AnnexB<'_> {
    let pos = find_start_code(data, 0).map_or(data.len(), |i| i + 3);
    AnnexB { data, pos }
}

/// Iterator returned by [`split_annex_b`].
#[derive(Debug, Clone)]
pub struct AnnexB<'a> {
    data: &'a [u8],
    /// Start of the next NAL unit (just past a start code), or `data.len()` when done.
    pos: usize,
}

impl<'a> Iterator for AnnexB<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while self.pos < self.data.len() {
            let start = self.pos;
            let end = match find_start_code(self.data, start) {
                Some(i) => {
                    self.pos = i + 3;
                    i
                }
                None => {
                    self.pos = self.data.len();
                    self.data.len()
                }
            };
            let mut nal = &self.data[start..end];
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            if !nal.is_empty() {
                return Some(nal);
            }
        }
        None
    }
}

/// Index of the next `00 00 01` at or after `from`.
fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 2 < data.len() {
        let b2 = data[i + 2];
        if b2 > 1 {
            // No start code can begin at i, i+1 or i+2.
            i += 3;
        } else if b2 == 1 && data[i] == 0 && data[i + 1] == 0 {
            return Some(i);
        } else {
            i += 1;
        }
    }
    None
}

/// Splits NAL units with 4-byte big-endian length prefixes (the FLV/MP4 form). Stops at the
/// first truncated or zero-length unit.
pub fn split_length_prefixed(data: &[u8]) -> LengthPrefixed<'_> {
    LengthPrefixed { data }
}

/// Iterator returned by [`split_length_prefixed`].
#[derive(Debug, Clone)]
pub struct LengthPrefixed<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for LengthPrefixed<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.data.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        if len == 0 || len > rest.len() {
            self.data = &[];
            return None;
        }
        let (nal, rest) = rest.split_at(len);
        self.data = rest;
        Some(nal)
    }
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`), giving the RBSP.
pub fn remove_emulation_prevention(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0usize;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// A big-endian bit reader with exp-Golomb decoding, for parameter-set RBSPs.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    bit: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        BitReader { data, bit: 0 }
    }

    pub fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.bit / 8)?;
        let v = (byte >> (7 - (self.bit % 8))) & 1;
        self.bit += 1;
        Some(v == 1)
    }

    /// Reads `n <= 64` bits.
    pub fn read_bits(&mut self, n: u32) -> Option<u64> {
        if n > 64 || self.bit + n as usize > self.data.len() * 8 {
            return None;
        }
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.read_bit()?);
        }
        Some(v)
    }

    pub fn read_u8(&mut self) -> Option<u8> {
        self.read_bits(8).map(|v| v as u8)
    }

    pub fn skip_bits(&mut self, n: usize) -> Option<()> {
        if self.bit + n > self.data.len() * 8 {
            return None;
        }
        self.bit += n;
        Some(())
    }

    /// Unsigned exp-Golomb `ue(v)`; values needing more than 32 bits are rejected.
    pub fn read_ue(&mut self) -> Option<u32> {
        let mut zeros = 0u32;
        while !self.read_bit()? {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.read_bits(zeros)?;
        u32::try_from((1u64 << zeros) - 1 + rest).ok()
    }

    /// Signed exp-Golomb `se(v)`.
    pub fn read_se(&mut self) -> Option<i32> {
        let k = i64::from(self.read_ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(v).ok()
    }
}

/// The H.264 SPS fields an AVCDecoderConfigurationRecord needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvcSps {
    pub id: u32,
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub chroma_format_idc: u32,
    pub bit_depth_luma_minus8: u32,
    pub bit_depth_chroma_minus8: u32,
}

/// Profiles whose SPS carries chroma_format_idc and bit depths (H.264 7.3.2.1.1).
pub fn avc_profile_has_chroma_info(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

/// Parses the start of an H.264 SPS NAL unit (with its 1-byte header).
pub fn parse_avc_sps(nal: &[u8]) -> Option<AvcSps> {
    if avc_nal_type(nal)? != avc_type::SPS {
        return None;
    }
    let rbsp = remove_emulation_prevention(nal.get(1..)?);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.read_u8()?;
    let constraint_flags = r.read_u8()?;
    let level_idc = r.read_u8()?;
    let id = r.read_ue()?;
    if id > 31 {
        return None;
    }
    let mut sps = AvcSps {
        id,
        profile_idc,
        constraint_flags,
        level_idc,
        chroma_format_idc: 1,
        bit_depth_luma_minus8: 0,
        bit_depth_chroma_minus8: 0,
    };
    if avc_profile_has_chroma_info(profile_idc) {
        sps.chroma_format_idc = r.read_ue()?;
        if sps.chroma_format_idc > 3 {
            return None;
        }
        if sps.chroma_format_idc == 3 {
            r.skip_bits(1)?; // separate_colour_plane_flag
        }
        sps.bit_depth_luma_minus8 = r.read_ue()?;
        sps.bit_depth_chroma_minus8 = r.read_ue()?;
        if sps.bit_depth_luma_minus8 > 6 || sps.bit_depth_chroma_minus8 > 6 {
            return None;
        }
    }
    Some(sps)
}

/// The `pic_parameter_set_id` of an H.264 PPS NAL unit.
pub fn avc_pps_id(nal: &[u8]) -> Option<u32> {
    if avc_nal_type(nal)? != avc_type::PPS {
        return None;
    }
    let rbsp = remove_emulation_prevention(nal.get(1..nal.len().min(16))?);
    let id = BitReader::new(&rbsp).read_ue()?;
    (id <= 255).then_some(id)
}

/// Builds an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1) with 4-byte NAL unit
/// lengths. Profile, compatibility and level come from the first SPS; the chroma/bit-depth
/// extension is written for the profiles that require it.
pub fn avc_decoder_configuration_record(sps: &[&[u8]], pps: &[&[u8]]) -> Option<Vec<u8>> {
    if sps.is_empty() || sps.len() > 31 || pps.is_empty() || pps.len() > 255 {
        return None;
    }
    if sps
        .iter()
        .chain(pps)
        .any(|n| n.len() > usize::from(u16::MAX))
    {
        return None;
    }
    let info = parse_avc_sps(sps[0])?;
    let size: usize = 7 + 4 + sps.iter().chain(pps).map(|n| 2 + n.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&[
        1,
        info.profile_idc,
        info.constraint_flags,
        info.level_idc,
        0xFC | 3, // lengthSizeMinusOne = 3
        0xE0 | sps.len() as u8,
    ]);
    for n in sps {
        out.extend_from_slice(&(n.len() as u16).to_be_bytes());
        out.extend_from_slice(n);
    }
    out.push(pps.len() as u8);
    for n in pps {
        out.extend_from_slice(&(n.len() as u16).to_be_bytes());
        out.extend_from_slice(n);
    }
    if matches!(info.profile_idc, 100 | 110 | 122 | 144) {
        out.extend_from_slice(&[
            0xFC | info.chroma_format_idc as u8,
            0xF8 | info.bit_depth_luma_minus8 as u8,
            0xF8 | info.bit_depth_chroma_minus8 as u8,
            0, // numOfSequenceParameterSetExt
        ]);
    }
    Some(out)
}

/// The SPS and PPS NAL units in an AVCDecoderConfigurationRecord, in record order.
pub fn avc_record_parameter_sets(record: &[u8]) -> Option<Vec<&[u8]>> {
    let mut r = Reader(record);
    if r.u8()? != 1 {
        return None;
    }
    r.take(4)?;
    let mut out = Vec::new();
    let num_sps = r.u8()? & 0x1F;
    for _ in 0..num_sps {
        let len = r.u16()?;
        out.push(r.take(usize::from(len))?);
    }
    let num_pps = r.u8()?;
    for _ in 0..num_pps {
        let len = r.u16()?;
        out.push(r.take(usize::from(len))?);
    }
    Some(out)
}

/// The HEVC SPS fields an HEVCDecoderConfigurationRecord needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HevcSps {
    pub id: u32,
    pub vps_id: u8,
    pub max_sub_layers_minus1: u8,
    pub temporal_id_nesting: bool,
    pub general_profile_space: u8,
    pub general_tier_flag: bool,
    pub general_profile_idc: u8,
    pub general_profile_compatibility_flags: u32,
    /// 48 bits: progressive/interlaced/non-packed/frame-only flags and the 44 that follow.
    pub general_constraint_indicator_flags: u64,
    pub general_level_idc: u8,
    pub chroma_format_idc: u32,
    pub width: u32,
    pub height: u32,
    pub bit_depth_luma_minus8: u32,
    pub bit_depth_chroma_minus8: u32,
}

/// Parses the start of an HEVC SPS NAL unit (with its 2-byte header): profile_tier_level
/// (H.265 7.3.3, general part kept, sub-layer parts skipped) up to the bit depths.
pub fn parse_hevc_sps(nal: &[u8]) -> Option<HevcSps> {
    if hevc_nal_type(nal)? != hevc_type::SPS {
        return None;
    }
    let rbsp = remove_emulation_prevention(nal.get(2..)?);
    let mut r = BitReader::new(&rbsp);
    let vps_id = r.read_bits(4)? as u8;
    let max_sub_layers_minus1 = r.read_bits(3)? as u8;
    if max_sub_layers_minus1 > 6 {
        return None;
    }
    let temporal_id_nesting = r.read_bit()?;
    let general_profile_space = r.read_bits(2)? as u8;
    let general_tier_flag = r.read_bit()?;
    let general_profile_idc = r.read_bits(5)? as u8;
    let general_profile_compatibility_flags = r.read_bits(32)? as u32;
    let general_constraint_indicator_flags = r.read_bits(48)?;
    let general_level_idc = r.read_u8()?;
    let mut profile_present = [false; 8];
    let mut level_present = [false; 8];
    let n = usize::from(max_sub_layers_minus1);
    for i in 0..n {
        profile_present[i] = r.read_bit()?;
        level_present[i] = r.read_bit()?;
    }
    if n > 0 {
        r.skip_bits(2 * (8 - n))?; // reserved_zero_2bits
    }
    for i in 0..n {
        if profile_present[i] {
            r.skip_bits(88)?;
        }
        if level_present[i] {
            r.skip_bits(8)?;
        }
    }
    let id = r.read_ue()?;
    if id > 15 {
        return None;
    }
    let chroma_format_idc = r.read_ue()?;
    if chroma_format_idc > 3 {
        return None;
    }
    if chroma_format_idc == 3 {
        r.skip_bits(1)?; // separate_colour_plane_flag
    }
    let width = r.read_ue()?;
    let height = r.read_ue()?;
    if r.read_bit()? {
        // conformance_window offsets
        for _ in 0..4 {
            r.read_ue()?;
        }
    }
    let bit_depth_luma_minus8 = r.read_ue()?;
    let bit_depth_chroma_minus8 = r.read_ue()?;
    if bit_depth_luma_minus8 > 7 || bit_depth_chroma_minus8 > 7 {
        return None;
    }
    Some(HevcSps {
        id,
        vps_id,
        max_sub_layers_minus1,
        temporal_id_nesting,
        general_profile_space,
        general_tier_flag,
        general_profile_idc,
        general_profile_compatibility_flags,
        general_constraint_indicator_flags,
        general_level_idc,
        chroma_format_idc,
        width,
        height,
        bit_depth_luma_minus8,
        bit_depth_chroma_minus8,
    })
}

/// The `vps_video_parameter_set_id` of an HEVC VPS NAL unit.
pub fn hevc_vps_id(nal: &[u8]) -> Option<u32> {
    if hevc_nal_type(nal)? != hevc_type::VPS {
        return None;
    }
    nal.get(2).map(|b| u32::from(b >> 4))
}

/// The `pps_pic_parameter_set_id` of an HEVC PPS NAL unit.
pub fn hevc_pps_id(nal: &[u8]) -> Option<u32> {
    if hevc_nal_type(nal)? != hevc_type::PPS {
        return None;
    }
    let rbsp = remove_emulation_prevention(nal.get(2..nal.len().min(16))?);
    let id = BitReader::new(&rbsp).read_ue()?;
    (id <= 63).then_some(id)
}

/// Builds an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1) with 4-byte NAL unit
/// lengths and `array_completeness = 1` (hvc1: every parameter set is in the record). The
/// general_* fields come from the first SPS; min_spatial_segmentation_idc, parallelismType,
/// avgFrameRate and constantFrameRate are written as 0 ("unknown"), which the spec allows
/// and which spares a VUI parse.
pub fn hevc_decoder_configuration_record(
    vps: &[&[u8]],
    sps: &[&[u8]],
    pps: &[&[u8]],
) -> Option<Vec<u8>> {
    if vps.is_empty() || sps.is_empty() || pps.is_empty() {
        return None;
    }
    let all = || vps.iter().chain(sps).chain(pps);
    if all().any(|n| n.len() > usize::from(u16::MAX)) {
        return None;
    }
    let info = parse_hevc_sps(sps[0])?;
    let size = 23 + 3 * 3 + all().map(|n| 2 + n.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.push(1);
    out.push(
        (info.general_profile_space << 6)
            | (u8::from(info.general_tier_flag) << 5)
            | info.general_profile_idc,
    );
    out.extend_from_slice(&info.general_profile_compatibility_flags.to_be_bytes());
    out.extend_from_slice(&info.general_constraint_indicator_flags.to_be_bytes()[2..]);
    out.push(info.general_level_idc);
    out.extend_from_slice(&[
        0xF0,
        0x00, // min_spatial_segmentation_idc = 0
        0xFC, // parallelismType = 0
        0xFC | info.chroma_format_idc as u8,
        0xF8 | info.bit_depth_luma_minus8 as u8,
        0xF8 | info.bit_depth_chroma_minus8 as u8,
        0,
        0, // avgFrameRate
        ((info.max_sub_layers_minus1 + 1) << 3) | (u8::from(info.temporal_id_nesting) << 2) | 3,
        3, // numOfArrays
    ]);
    for (nal_type, list) in [
        (hevc_type::VPS, vps),
        (hevc_type::SPS, sps),
        (hevc_type::PPS, pps),
    ] {
        out.push(0x80 | nal_type); // array_completeness = 1
        out.extend_from_slice(&(list.len() as u16).to_be_bytes());
        for n in list {
            out.extend_from_slice(&(n.len() as u16).to_be_bytes());
            out.extend_from_slice(n);
        }
    }
    Some(out)
}

/// The parameter-set NAL units in an HEVCDecoderConfigurationRecord, in record order.
pub fn hevc_record_parameter_sets(record: &[u8]) -> Option<Vec<&[u8]>> {
    let mut r = Reader(record);
    if r.u8()? != 1 {
        return None;
    }
    r.take(21)?;
    let arrays = r.u8()?;
    let mut out = Vec::new();
    for _ in 0..arrays {
        r.u8()?;
        let count = r.u16()?;
        for _ in 0..count {
            let len = r.u16()?;
            out.push(r.take(usize::from(len))?);
        }
    }
    Some(out)
}

/// A byte cursor over untrusted bytes: every read is bounds-checked and `None` past the end.
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader(data)
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.0
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_b_three_and_four_byte_start_codes() {
        let data = [
            0xAA, 0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 4, 0, 0,
        ];
        let nals: Vec<&[u8]> = split_annex_b(&data).collect();
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4]]);
        assert_eq!(split_annex_b(&[]).count(), 0);
        assert_eq!(split_annex_b(&[1, 2, 3]).count(), 0);
        assert_eq!(split_annex_b(&[0, 0, 1]).count(), 0);
        assert_eq!(split_annex_b(&[0, 0, 1, 0, 0, 1, 9]).count(), 1);
    }

    #[test]
    fn length_prefixed_round_trip_and_truncation() {
        let data = [0, 0, 0, 2, 0x65, 1, 0, 0, 0, 1, 0x41, 0, 0, 0, 9, 1];
        let nals: Vec<&[u8]> = split_length_prefixed(&data).collect();
        assert_eq!(nals, vec![&[0x65, 1][..], &[0x41]]);
    }

    #[test]
    fn emulation_prevention() {
        assert_eq!(
            remove_emulation_prevention(&[0, 0, 3, 1, 0, 0, 3, 0, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 0]
        );
    }

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> ue 0, 1, 2, 3, se(4 -> -2)
        let bits = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&bits);
        assert_eq!(r.read_ue(), Some(0));
        assert_eq!(r.read_ue(), Some(1));
        assert_eq!(r.read_ue(), Some(2));
        assert_eq!(r.read_ue(), Some(3));
        assert_eq!(r.read_se(), Some(-2));
        assert_eq!(BitReader::new(&[0, 0, 0, 0, 0]).read_ue(), None);
        assert_eq!(BitReader::new(&[]).read_bit(), None);
    }

    // x264 High@1.3 SPS and PPS for 320x240 (note the emulation-prevention bytes).
    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x0D, 0xAC, 0xD9, 0x41, 0x41, 0xFB, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xF1, 0x42, 0x99, 0x60,
    ];
    const PPS: &[u8] = &[0x68, 0xEB, 0xE3, 0xCB, 0x22, 0xC0];

    #[test]
    fn avc_sps_and_record() {
        let sps = parse_avc_sps(SPS).unwrap();
        assert_eq!((sps.profile_idc, sps.level_idc, sps.id), (100, 13, 0));
        assert_eq!(sps.chroma_format_idc, 1);
        assert_eq!(avc_pps_id(PPS), Some(0));
        let rec = avc_decoder_configuration_record(&[SPS], &[PPS]).unwrap();
        assert_eq!(&rec[..6], &[1, 0x64, 0x00, 0x0D, 0xFF, 0xE1]);
        assert_eq!(&rec[rec.len() - 4..], &[0xFD, 0xF8, 0xF8, 0]);
        assert_eq!(avc_record_parameter_sets(&rec).unwrap(), vec![SPS, PPS]);
        assert_eq!(avc_decoder_configuration_record(&[], &[PPS]), None);
        assert_eq!(parse_avc_sps(&SPS[..4]), None);
    }

    // x265 Main@L2 VPS, SPS and PPS for 320x240.
    const HVPS: &[u8] = &[
        0x40, 0x01, 0x0C, 0x01, 0xFF, 0xFF, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00,
        0x03, 0x00, 0x00, 0x03, 0x00, 0x3C, 0x95, 0x98, 0x09,
    ];
    const HSPS: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x3C, 0xA0, 0x0A, 0x08, 0x0F, 0x16, 0x59, 0x59, 0xA4, 0x93, 0x2B, 0xC0, 0x5A,
        0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x32, 0x10,
    ];
    const HPPS: &[u8] = &[0x44, 0x01, 0xC1, 0x72, 0xB4, 0x62, 0x40];

    #[test]
    fn hevc_sps_and_record() {
        let sps = parse_hevc_sps(HSPS).unwrap();
        assert_eq!(sps.general_profile_idc, 1);
        assert_eq!(sps.general_level_idc, 60);
        assert_eq!(sps.general_profile_compatibility_flags, 0x6000_0000);
        assert_eq!(sps.general_constraint_indicator_flags, 0x9000_0000_0000);
        assert_eq!(
            (sps.width, sps.height, sps.chroma_format_idc),
            (320, 240, 1)
        );
        assert_eq!(
            (sps.bit_depth_luma_minus8, sps.max_sub_layers_minus1),
            (0, 0)
        );
        assert_eq!(hevc_vps_id(HVPS), Some(0));
        assert_eq!(hevc_pps_id(HPPS), Some(0));
        let rec = hevc_decoder_configuration_record(&[HVPS], &[HSPS], &[HPPS]).unwrap();
        assert_eq!(
            &rec[..23],
            &[
                1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 60, 0xF0, 0, 0xFC, 0xFD, 0xF8, 0xF8,
                0, 0, 0x0F, 3
            ]
        );
        assert_eq!(
            hevc_record_parameter_sets(&rec).unwrap(),
            vec![HVPS, HSPS, HPPS]
        );
    }

    #[test]
    fn truncated_parameter_sets_do_not_panic() {
        for n in 0..SPS.len() {
            let _ = parse_avc_sps(&SPS[..n]);
            let _ = parse_hevc_sps(&SPS[..n]);
            let _ = avc_pps_id(&PPS[..n.min(PPS.len())]);
            let _ = hevc_record_parameter_sets(&SPS[..n]);
            let _ = avc_record_parameter_sets(&SPS[..n]);
        }
    }
}
