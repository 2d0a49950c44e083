//! FLV-style payloads → [`Payload`], and the decoder configuration records' few fields
//! (dimensions, sample rate, channels, codec strings).

use bytes::Bytes;
use prism_mpegts::nal::{
    avc_nal_type, avc_profile_has_chroma_info, avc_record_parameter_sets, avc_type,
    hevc_record_parameter_sets, parse_hevc_sps, remove_emulation_prevention, BitReader, Reader,
};

use crate::{Codec, ParseError, Payload, TrackConfig};

/// Video timescale: the 90 kHz clock of MPEG systems, which every player expects.
const VIDEO_TIMESCALE: u32 = 90_000;
/// Opus always decodes at 48 kHz (RFC 7845 §4).
const OPUS_RATE: u32 = 48_000;

/// Enhanced RTMP video packet types.
mod video_packet {
    pub const SEQUENCE_START: u8 = 0;
    pub const CODED_FRAMES: u8 = 1;
    pub const SEQUENCE_END: u8 = 2;
    pub const CODED_FRAMES_X: u8 = 3;
    pub const METADATA: u8 = 4;
    pub const MPEG2TS_SEQUENCE_START: u8 = 5;
    pub const MULTITRACK: u8 = 6;
    pub const MOD_EX: u8 = 7;
}

/// Enhanced RTMP audio packet types.
mod audio_packet {
    pub const SEQUENCE_START: u8 = 0;
    pub const CODED_FRAMES: u8 = 1;
    pub const SEQUENCE_END: u8 = 2;
    pub const MULTICHANNEL_CONFIG: u8 = 4;
    pub const MULTITRACK: u8 = 5;
    pub const MOD_EX: u8 = 7;
}

/// Frame type 1: a keyframe. 5: a video info/command frame (no picture).
const FRAME_TYPE_KEY: u8 = 1;
const FRAME_TYPE_COMMAND: u8 = 5;

fn malformed(what: &'static str) -> ParseError {
    ParseError::Malformed(what)
}

/// Reads FLV's 24-bit signed composition time offset.
fn read_si24(b: &[u8]) -> Option<i32> {
    let b = b.get(..3)?;
    let raw = (i32::from(b[0]) << 16) | (i32::from(b[1]) << 8) | i32::from(b[2]);
    Some((raw << 8) >> 8)
}

/// Skips Enhanced RTMP v2 ModEx prefixes starting at `pos` (just after the first byte,
/// whose packet type was ModEx). Returns the real packet type and the position after the
/// byte that carried it. The only ModEx type defined (TimestampOffsetNano) is sub-ms
/// timing, which fMP4 at these timescales has no use for.
fn skip_mod_ex(p: &[u8], mut pos: usize, mod_ex: u8) -> Result<(u8, usize), ParseError> {
    loop {
        let mut size = usize::from(*p.get(pos).ok_or(malformed("ModEx size"))?) + 1;
        pos += 1;
        if size == 256 {
            let b = p.get(pos..pos + 2).ok_or(malformed("ModEx size"))?;
            size = usize::from(u16::from_be_bytes([b[0], b[1]])) + 1;
            pos += 2;
        }
        pos = pos
            .checked_add(size)
            .filter(|&end| end <= p.len())
            .ok_or(malformed("ModEx data"))?;
        let packet_type = *p.get(pos).ok_or(malformed("ModEx packet type"))? & 0x0F;
        pos += 1;
        if packet_type != mod_ex {
            return Ok((packet_type, pos));
        }
    }
}

/// Parses a video message payload (FLV VIDEODATA tag body).
pub fn parse_video(payload: &Bytes) -> Result<Payload, ParseError> {
    let p: &[u8] = payload;
    let b0 = *p.first().ok_or(malformed("empty video payload"))?;
    if b0 & 0x80 != 0 {
        return parse_enhanced_video(payload, b0);
    }
    let frame_type = b0 >> 4;
    let codec = match b0 & 0x0F {
        7 => Codec::H264,
        // The widespread non-standard legacy HEVC codec id.
        12 => Codec::Hevc,
        _ => return Ok(Payload::Skip),
    };
    if frame_type == FRAME_TYPE_COMMAND {
        return Ok(Payload::Skip);
    }
    let packet_type = *p.get(1).ok_or(malformed("AVCPacketType"))?;
    let cts_ms = p.get(2..5).and_then(read_si24).ok_or(malformed("CTS"))?;
    match packet_type {
        0 => video_config(codec, payload.slice(5..)),
        1 => Ok(video_frame(frame_type, cts_ms, payload.slice(5..))),
        // 2: end of sequence.
        2 => Ok(Payload::Skip),
        _ => Err(ParseError::Unsupported("AVCPacketType")),
    }
}

fn parse_enhanced_video(payload: &Bytes, b0: u8) -> Result<Payload, ParseError> {
    let p: &[u8] = payload;
    // [IsExHeader:1][FrameType:3][PacketType:4]
    let frame_type = (b0 >> 4) & 0x07;
    let mut packet_type = b0 & 0x0F;
    let mut pos = 1;
    if packet_type == video_packet::METADATA {
        return Ok(Payload::Skip);
    }
    if frame_type == FRAME_TYPE_COMMAND {
        return Ok(Payload::Skip);
    }
    if packet_type == video_packet::MOD_EX {
        (packet_type, pos) = skip_mod_ex(p, pos, video_packet::MOD_EX)?;
    }
    if packet_type == video_packet::MULTITRACK {
        return Ok(Payload::Skip);
    }
    let fourcc = p.get(pos..pos + 4).ok_or(malformed("video FourCC"))?;
    let codec = match fourcc {
        b"avc1" => Codec::H264,
        b"hvc1" => Codec::Hevc,
        b"av01" => Codec::Av1,
        _ => return Ok(Payload::Skip),
    };
    let body = pos + 4;
    match packet_type {
        video_packet::SEQUENCE_START => video_config(codec, payload.slice(body..)),
        video_packet::CODED_FRAMES | video_packet::CODED_FRAMES_X if codec == Codec::Av1 => {
            // AV1 coded frames carry no composition time (E-RTMP v2, ExVideoTagBody).
            let data = strip_temporal_delimiter(payload.slice(body..));
            Ok(video_frame(frame_type, 0, data))
        }
        video_packet::CODED_FRAMES => {
            let cts_ms = p.get(body..).and_then(read_si24).ok_or(malformed("CTS"))?;
            Ok(video_frame(frame_type, cts_ms, payload.slice(body + 3..)))
        }
        video_packet::CODED_FRAMES_X => Ok(video_frame(frame_type, 0, payload.slice(body..))),
        video_packet::SEQUENCE_END
        | video_packet::METADATA
        | video_packet::MPEG2TS_SEQUENCE_START => Ok(Payload::Skip),
        _ => Err(ParseError::Unsupported("video packet type")),
    }
}

/// Drops a leading temporal delimiter OBU from an AV1 temporal unit: AV1-ISOBMFF samples
/// do not carry them (the sample boundary is the delimiter). Zero-copy: a re-slice.
fn strip_temporal_delimiter(data: Bytes) -> Bytes {
    let mut c = Reader::new(&data);
    let Some(header) = c.u8() else { return data };
    // Type 2 with its size field (a delimiter without one would be the last OBU).
    if (header >> 3) & 0x0F != 2 || header & 0x02 == 0 {
        return data;
    }
    if header & 0x04 != 0 && c.u8().is_none() {
        return data;
    }
    let Some(size) = read_leb128(&mut c) else {
        return data;
    };
    match usize::try_from(size).ok().and_then(|n| c.take(n)) {
        Some(_) => {
            let start = data.len() - c.rest().len();
            data.slice(start..)
        }
        None => data,
    }
}

fn video_frame(frame_type: u8, cts_ms: i32, data: Bytes) -> Payload {
    Payload::Frame {
        keyframe: frame_type == FRAME_TYPE_KEY,
        cts_ms,
        data,
    }
}

fn video_config(codec: Codec, record: Bytes) -> Result<Payload, ParseError> {
    let (width, height) = match codec {
        Codec::H264 => avc_record_dimensions(&record)?,
        Codec::Hevc => hevc_record_dimensions(&record)?,
        _ => av1_record_dimensions(&record)?,
    };
    Ok(Payload::Config(TrackConfig {
        codec,
        timescale: VIDEO_TIMESCALE,
        width,
        height,
        sample_rate: 0,
        channels: 0,
        record,
    }))
}

/// Parses an audio message payload (FLV AUDIODATA tag body).
pub fn parse_audio(payload: &Bytes) -> Result<Payload, ParseError> {
    let p: &[u8] = payload;
    let b0 = *p.first().ok_or(malformed("empty audio payload"))?;
    match b0 >> 4 {
        // Legacy AAC: [SoundFormat=10:4][rate:2][size:1][type:1][AACPacketType:8]
        10 => match *p.get(1).ok_or(malformed("AACPacketType"))? {
            0 => aac_config(payload.slice(2..)),
            1 => Ok(audio_frame(payload.slice(2..))),
            _ => Err(ParseError::Unsupported("AACPacketType")),
        },
        // Enhanced RTMP: [SoundFormat=9:4][AudioPacketType:4][FourCC:32]
        9 => {
            let mut packet_type = b0 & 0x0F;
            let mut pos = 1;
            if packet_type == audio_packet::MOD_EX {
                (packet_type, pos) = skip_mod_ex(p, pos, audio_packet::MOD_EX)?;
            }
            if packet_type == audio_packet::MULTITRACK {
                return Ok(Payload::Skip);
            }
            let fourcc = p.get(pos..pos + 4).ok_or(malformed("audio FourCC"))?;
            let codec = match fourcc {
                b"mp4a" => Codec::Aac,
                b"Opus" => Codec::Opus,
                _ => return Ok(Payload::Skip),
            };
            let body = payload.slice(pos + 4..);
            match (packet_type, codec) {
                (audio_packet::SEQUENCE_START, Codec::Aac) => aac_config(body),
                (audio_packet::SEQUENCE_START, _) => opus_config(body),
                (audio_packet::CODED_FRAMES, _) => Ok(audio_frame(body)),
                (audio_packet::SEQUENCE_END | audio_packet::MULTICHANNEL_CONFIG, _) => {
                    Ok(Payload::Skip)
                }
                _ => Err(ParseError::Unsupported("audio packet type")),
            }
        }
        _ => Ok(Payload::Skip),
    }
}

fn audio_frame(data: Bytes) -> Payload {
    Payload::Frame {
        keyframe: true,
        cts_ms: 0,
        data,
    }
}

const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// The AudioSpecificConfig fields a sample entry needs (ISO/IEC 14496-3 1.6.2.1).
struct Asc {
    object_type: u32,
    sample_rate: u32,
    channel_configuration: u32,
}

fn read_aac_object_type(r: &mut BitReader<'_>) -> Option<u32> {
    match r.read_bits(5)? as u32 {
        31 => Some(32 + r.read_bits(6)? as u32),
        t => Some(t),
    }
}

fn read_aac_rate(r: &mut BitReader<'_>) -> Option<u32> {
    match r.read_bits(4)? as usize {
        15 => Some(r.read_bits(24)? as u32),
        i => AAC_RATES.get(i).copied(),
    }
}

fn parse_asc(asc: &[u8]) -> Option<Asc> {
    let mut r = BitReader::new(asc);
    let object_type = read_aac_object_type(&mut r)?;
    let sample_rate = read_aac_rate(&mut r)?;
    let channel_configuration = r.read_bits(4)? as u32;
    (object_type != 0 && sample_rate != 0).then_some(Asc {
        object_type,
        sample_rate,
        channel_configuration,
    })
}

fn aac_config(record: Bytes) -> Result<Payload, ParseError> {
    let asc = parse_asc(&record).ok_or(malformed("AudioSpecificConfig"))?;
    let channels = match asc.channel_configuration {
        c @ 1..=6 => c as u16,
        7 | 12 | 14 => 8,
        11 => 7,
        13 => 24,
        // 0: a program config element in the bitstream; the sample entry's count is
        // informative only.
        _ => 2,
    };
    Ok(Payload::Config(TrackConfig {
        codec: Codec::Aac,
        timescale: asc.sample_rate,
        width: 0,
        height: 0,
        sample_rate: asc.sample_rate,
        channels,
        record,
    }))
}

/// The fields of an OpusHead (RFC 7845 §5.1) a `dOps` box repeats.
pub(crate) struct OpusHead<'a> {
    pub channels: u8,
    pub pre_skip: u16,
    pub input_sample_rate: u32,
    pub output_gain: i16,
    pub mapping_family: u8,
    /// Stream count, coupled count and the channel mapping, when `mapping_family != 0`.
    pub mapping: &'a [u8],
}

pub(crate) fn parse_opus_head(h: &[u8]) -> Option<OpusHead<'_>> {
    if h.get(..8)? != b"OpusHead" {
        return None;
    }
    let f = h.get(8..19)?;
    // Version: the major version (upper nibble) must be 0.
    if f[0] >> 4 != 0 {
        return None;
    }
    let channels = f[1];
    if channels == 0 {
        return None;
    }
    let mapping_family = f[10];
    let mapping = if mapping_family == 0 {
        if channels > 2 {
            return None;
        }
        &[][..]
    } else {
        h.get(19..21 + usize::from(channels))?
    };
    Some(OpusHead {
        channels,
        pre_skip: u16::from_le_bytes([f[2], f[3]]),
        input_sample_rate: u32::from_le_bytes([f[4], f[5], f[6], f[7]]),
        output_gain: i16::from_le_bytes([f[8], f[9]]),
        mapping_family,
        mapping,
    })
}

fn opus_config(record: Bytes) -> Result<Payload, ParseError> {
    let head = parse_opus_head(&record).ok_or(malformed("OpusHead"))?;
    let channels = u16::from(head.channels);
    Ok(Payload::Config(TrackConfig {
        codec: Codec::Opus,
        timescale: OPUS_RATE,
        width: 0,
        height: 0,
        sample_rate: OPUS_RATE,
        channels,
        record,
    }))
}

fn clamp_u16(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// Checks an AVCDecoderConfigurationRecord's structure; the first SPS's dimensions.
fn avc_record_dimensions(record: &[u8]) -> Result<(u16, u16), ParseError> {
    if record.first().is_some_and(|&v| v != 1) {
        return Err(ParseError::Unsupported(
            "AVCDecoderConfigurationRecord version",
        ));
    }
    let sets =
        avc_record_parameter_sets(record).ok_or(malformed("AVCDecoderConfigurationRecord"))?;
    Ok(sets
        .into_iter()
        .find(|n| avc_nal_type(n) == Some(avc_type::SPS))
        .and_then(avc_sps_dimensions)
        .map_or((0, 0), |(w, h)| (clamp_u16(w), clamp_u16(h))))
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Option<()> {
    let mut last = 8i32;
    let mut next = 8i32;
    for _ in 0..size {
        if next != 0 {
            let delta = r.read_se()?;
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// The cropped frame size an H.264 SPS (with its NAL header byte) describes
/// (H.264 7.3.2.1.1).
fn avc_sps_dimensions(nal: &[u8]) -> Option<(u32, u32)> {
    if nal.first()? & 0x1F != 7 {
        return None;
    }
    let rbsp = remove_emulation_prevention(nal.get(1..)?);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.read_u8()?;
    r.skip_bits(16)?; // constraint flags, level_idc
    r.read_ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if avc_profile_has_chroma_info(profile_idc) {
        chroma_format_idc = r.read_ue()?;
        if chroma_format_idc > 3 {
            return None;
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.read_bit()?;
        }
        r.read_ue()?; // bit_depth_luma_minus8
        r.read_ue()?; // bit_depth_chroma_minus8
        r.skip_bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.read_bit()? {
            // seq_scaling_matrix_present_flag
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.read_bit()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.read_ue()?; // log2_max_frame_num_minus4
    match r.read_ue()? {
        0 => {
            r.read_ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.skip_bits(1)?;
            r.read_se()?;
            r.read_se()?;
            let cycle = r.read_ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.read_se()?;
            }
        }
        _ => {}
    }
    r.read_ue()?; // max_num_ref_frames
    r.skip_bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.read_ue()?) + 1;
    let height_map_units = u64::from(r.read_ue()?) + 1;
    let frame_mbs_only = r.read_bit()?;
    if !frame_mbs_only {
        r.skip_bits(1)?; // mb_adaptive_frame_field_flag
    }
    r.skip_bits(1)?; // direct_8x8_inference_flag
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let mut width = width_mbs * 16;
    let mut height = height_map_units * 16 * field_factor;
    if r.read_bit()? {
        // frame_cropping_flag
        let (crop_x, crop_y) = if separate_colour_plane || chroma_format_idc == 0 {
            (1, field_factor)
        } else {
            let sub_w = if chroma_format_idc == 3 { 1 } else { 2 };
            let sub_h = if chroma_format_idc == 1 { 2 } else { 1 };
            (sub_w, sub_h * field_factor)
        };
        let left = u64::from(r.read_ue()?);
        let right = u64::from(r.read_ue()?);
        let top = u64::from(r.read_ue()?);
        let bottom = u64::from(r.read_ue()?);
        width = width.checked_sub(crop_x * (left + right))?;
        height = height.checked_sub(crop_y * (top + bottom))?;
    }
    Some((u32::try_from(width).ok()?, u32::try_from(height).ok()?))
}

/// Checks an HEVCDecoderConfigurationRecord's structure; the first SPS's dimensions
/// (`pic_width/height_in_luma_samples`, before the conformance window).
fn hevc_record_dimensions(record: &[u8]) -> Result<(u16, u16), ParseError> {
    if record.first().is_some_and(|&v| v != 1) {
        return Err(ParseError::Unsupported(
            "HEVCDecoderConfigurationRecord version",
        ));
    }
    let sets =
        hevc_record_parameter_sets(record).ok_or(malformed("HEVCDecoderConfigurationRecord"))?;
    Ok(sets
        .into_iter()
        .find_map(parse_hevc_sps)
        .map_or((0, 0), |s| (clamp_u16(s.width), clamp_u16(s.height))))
}

/// The OBUs of AV1 data in the low-overhead format (AV1 spec 5.3) as (header, payload):
/// the header with its extension byte if any, the payload without the size field (an OBU
/// without one runs to the end). Stops at the first truncated OBU.
pub fn av1_obus(data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut c = Reader::new(data);
    std::iter::from_fn(move || {
        let start = c.rest();
        let header = c.u8()?;
        if header & 0x04 != 0 {
            c.u8()?; // extension header
        }
        let header_bytes = &start[..start.len() - c.rest().len()];
        let size = if header & 0x02 != 0 {
            usize::try_from(read_leb128(&mut c)?).unwrap_or(usize::MAX)
        } else {
            c.rest().len()
        };
        Some((header_bytes, c.take(size)?))
    })
}

/// An AV1 `leb128()` at the start of `b`: its value and length.
pub fn av1_leb128(b: &[u8]) -> Option<(u64, usize)> {
    let mut c = Reader::new(b);
    let v = read_leb128(&mut c)?;
    Some((v, b.len() - c.rest().len()))
}

/// Reads an AV1 `leb128()`.
fn read_leb128(c: &mut Reader<'_>) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..8 {
        let b = c.u8()?;
        value |= u64::from(b & 0x7F) << (i * 7);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Checks an AV1CodecConfigurationRecord; the maximum frame size from the sequence header
/// OBU among its configOBUs, if there is one.
fn av1_record_dimensions(record: &[u8]) -> Result<(u16, u16), ParseError> {
    let head = record
        .get(..4)
        .ok_or(malformed("AV1CodecConfigurationRecord"))?;
    // marker (1) and version (1).
    if head[0] != 0x81 {
        return Err(ParseError::Unsupported(
            "AV1CodecConfigurationRecord marker/version",
        ));
    }
    for (header, obu) in av1_obus(&record[4..]) {
        if (header[0] >> 3) & 0x0F == 1 {
            if let Some((w, h)) = av1_sequence_header_dimensions(obu) {
                return Ok((clamp_u16(w), clamp_u16(h)));
            }
        }
    }
    Ok((0, 0))
}

fn skip_av1_uvlc(r: &mut BitReader<'_>) -> Option<()> {
    let mut zeros = 0u32;
    while !r.read_bit()? {
        zeros += 1;
        if zeros >= 32 {
            return Some(());
        }
    }
    r.read_bits(zeros).map(|_| ())
}

/// `max_frame_width_minus_1 + 1` and the height from a sequence header OBU payload
/// (AV1 5.5.1).
fn av1_sequence_header_dimensions(obu: &[u8]) -> Option<(u32, u32)> {
    let mut r = BitReader::new(obu);
    r.skip_bits(4)?; // seq_profile, still_picture
    let reduced_still_picture_header = r.read_bit()?;
    if reduced_still_picture_header {
        r.skip_bits(5)?; // seq_level_idx[0]
    } else {
        let timing_info_present = r.read_bit()?;
        let mut decoder_model_info_present = false;
        let mut buffer_delay_length = 0;
        if timing_info_present {
            r.skip_bits(64)?; // num_units_in_display_tick, time_scale
            if r.read_bit()? {
                skip_av1_uvlc(&mut r)?; // num_ticks_per_picture_minus_1
            }
            decoder_model_info_present = r.read_bit()?;
            if decoder_model_info_present {
                buffer_delay_length = r.read_bits(5)? as usize + 1;
                r.skip_bits(32 + 5 + 5)?;
            }
        }
        let initial_display_delay_present = r.read_bit()?;
        let operating_points = r.read_bits(5)? + 1;
        for _ in 0..operating_points {
            r.skip_bits(12)?; // operating_point_idc
            if r.read_bits(5)? > 7 {
                r.skip_bits(1)?; // seq_tier
            }
            if decoder_model_info_present && r.read_bit()? {
                r.skip_bits(2 * buffer_delay_length + 1)?;
            }
            if initial_display_delay_present && r.read_bit()? {
                r.skip_bits(4)?;
            }
        }
    }
    let width_bits = r.read_bits(4)? as u32 + 1;
    let height_bits = r.read_bits(4)? as u32 + 1;
    let width = r.read_bits(width_bits)? + 1;
    let height = r.read_bits(height_bits)? + 1;
    Some((u32::try_from(width).ok()?, u32::try_from(height).ok()?))
}

pub(crate) fn codec_string(config: &TrackConfig) -> String {
    let r: &[u8] = &config.record;
    match config.codec {
        Codec::H264 => match r.get(1..4) {
            Some(b) => format!("avc1.{:02x}{:02x}{:02x}", b[0], b[1], b[2]),
            None => "avc1".to_owned(),
        },
        Codec::Hevc => hevc_codec_string(r).unwrap_or_else(|| "hvc1".to_owned()),
        Codec::Av1 => av1_codec_string(r).unwrap_or_else(|| "av01".to_owned()),
        Codec::Aac => match parse_asc(r) {
            Some(asc) => format!("mp4a.40.{}", asc.object_type),
            None => "mp4a.40.2".to_owned(),
        },
        Codec::Opus => "opus".to_owned(),
    }
}

/// ISO/IEC 14496-15 Annex E.3: `hvc1.[A-C]?<profile>.<compat, bit-reversed, hex>.
/// <L|H><level>.<constraint bytes, trailing zeros omitted>`.
fn hevc_codec_string(r: &[u8]) -> Option<String> {
    let b = r.get(1..13)?;
    let space = match b[0] >> 6 {
        0 => "",
        1 => "A",
        2 => "B",
        _ => "C",
    };
    let tier = if b[0] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = b[0] & 0x1F;
    let compat = u32::from_be_bytes([b[1], b[2], b[3], b[4]]).reverse_bits();
    let mut s = format!("hvc1.{space}{profile}.{compat:X}.{tier}{}", b[11]);
    let constraints = &b[5..11];
    let used = constraints
        .iter()
        .rposition(|&c| c != 0)
        .map_or(0, |i| i + 1);
    for c in &constraints[..used] {
        s.push_str(&format!(".{c:X}"));
    }
    Some(s)
}

/// AV1 codec ISO media file format binding, "Codecs Parameter String":
/// `av01.<profile>.<level><tier>.<bit depth>`.
fn av1_codec_string(r: &[u8]) -> Option<String> {
    let b = r.get(1..3)?;
    let profile = b[0] >> 5;
    let level = b[0] & 0x1F;
    let tier = if b[1] & 0x80 != 0 { 'H' } else { 'M' };
    let depth = match (b[1] & 0x40 != 0, b[1] & 0x20 != 0) {
        (false, _) => 8,
        (true, false) => 10,
        (true, true) => 12,
    };
    Some(format!("av01.{profile}.{level:02}{tier}.{depth:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si24_sign_extends() {
        assert_eq!(read_si24(&[0xFF, 0xFF, 0xFE]), Some(-2));
        assert_eq!(read_si24(&[0x00, 0x00, 0x21]), Some(33));
        assert_eq!(read_si24(&[0x00, 0x00]), None);
    }

    #[test]
    fn codec_strings() {
        let cfg = |codec, record: &'static [u8]| TrackConfig {
            codec,
            timescale: 1,
            width: 0,
            height: 0,
            sample_rate: 0,
            channels: 0,
            record: Bytes::from_static(record),
        };
        assert_eq!(
            cfg(Codec::H264, &[1, 0x64, 0x00, 0x1f, 0xff]).codec_string(),
            "avc1.64001f"
        );
        assert_eq!(cfg(Codec::Aac, &[0x12, 0x10]).codec_string(), "mp4a.40.2");
        assert_eq!(
            cfg(Codec::Av1, &[0x81, 0x08, 0x0c, 0]).codec_string(),
            "av01.0.08M.08"
        );
        // Main profile, compat flags 1 and 2, progressive source + frame only, level 3.1.
        let hvcc: &[u8] = &[
            1, 0x01, 0x60, 0, 0, 0, 0xB0, 0, 0, 0, 0, 0, 93, 0xF0, 0, 0xFC, 0xFD, 0xF8, 0xF8, 0, 0,
            0x0F, 0,
        ];
        assert_eq!(cfg(Codec::Hevc, hvcc).codec_string(), "hvc1.1.6.L93.B0");
        assert_eq!(cfg(Codec::Opus, b"").codec_string(), "opus");
    }
}
