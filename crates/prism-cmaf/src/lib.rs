//! Sans-I/O fMP4/CMAF packaging of FLV-style frames.
//!
//! "FLV-style" payloads are the FLV tag bodies RTMP carries in audio and video messages
//! (see `prism-mpegts`): legacy AVC (`0x17/0x27`), the non-standard legacy HEVC codec id
//! 12, legacy AAC (`0xAF`), and the Enhanced RTMP (v1/v2) FourCC forms for `avc1`, `hvc1`,
//! `av01`, `mp4a` and `Opus`.
//!
//! Three steps, all pure functions over [`bytes::Bytes`]:
//! - [`parse_video`] / [`parse_audio`] turn one payload into a [`Payload`]: a
//!   [`TrackConfig`] from a sequence header, a frame (zero-copy: its data is a slice of the
//!   payload, exactly the bytes that go into `mdat`), or [`Payload::Skip`].
//! - [`init_segment`] writes `ftyp` + `moov` for a set of tracks (one `trak` each, track id
//!   = index + 1, `mvex`/`trex`, no samples).
//! - [`fragment`] writes one `moof` + `mdat` for runs of [`Sample`]s, one `traf` per run.
//!
//! Timing is the caller's: samples carry durations and composition offsets in their
//! track's timescale ([`TrackConfig::timescale`]: 90 kHz for video, the sample rate for
//! audio, 48 kHz for Opus).
//!
//! ```
//! use bytes::Bytes;
//! use prism_cmaf::{fragment, init_segment, parse_video, Payload, Sample, TrackRun};
//!
//! # let avcc = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe0, 0]);
//! # let frame = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]);
//! let Ok(Payload::Config(video)) = parse_video(&avcc) else { panic!() };
//! let init = init_segment(&[&video]); // track 1
//! let Ok(Payload::Frame { keyframe, cts_ms, data }) = parse_video(&frame) else { panic!() };
//! let ticks_per_ms = video.timescale as i32 / 1000;
//! let samples = [Sample { duration: 3000, cts_offset: cts_ms * ticks_per_ms, keyframe, data }];
//! let run = TrackRun { track_id: 1, base_decode_time: 0, samples: &samples };
//! let segment = fragment(1, &[run]);
//! # assert!(init.len() > 100 && segment.len() > 50);
//! ```
//!
//! Everything here reads untrusted bytes: nothing panics or indexes out of bounds on any
//! input. This crate must not know about sockets, tokio, HTTP or the hub.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod mp4;
mod parse;

pub use mp4::{fragment, init_segment, Sample, TrackRun};
pub use parse::{av1_leb128, av1_obus, parse_audio, parse_video};

/// A codec this crate can package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    H264,
    Hevc,
    Av1,
    Aac,
    Opus,
}

impl Codec {
    /// Whether this is a video codec.
    pub fn is_video(self) -> bool {
        matches!(self, Codec::H264 | Codec::Hevc | Codec::Av1)
    }

    /// Short name: "h264", "hevc", "av1", "aac" or "opus" (the names `prism-rtmp` uses).
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::Hevc => "hevc",
            Codec::Av1 => "av1",
            Codec::Aac => "aac",
            Codec::Opus => "opus",
        }
    }
}

/// One track's decoder configuration, from a sequence header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackConfig {
    pub codec: Codec,
    /// Ticks per second of the track's media timeline: 90 000 for video, the sample rate
    /// for AAC (the core rate, as the AudioSpecificConfig gives it), 48 000 for Opus.
    pub timescale: u32,
    /// Video: luma width in pixels from the SPS (cropped for H.264; the coded
    /// `pic_width_in_luma_samples` for HEVC) or the AV1 sequence header's maximum frame
    /// width; 0 if unknown or for audio.
    pub width: u16,
    /// Video: height in pixels, as for `width`.
    pub height: u16,
    /// Audio: sample rate in Hz (48 000 for Opus); 0 for video.
    pub sample_rate: u32,
    /// Audio: channel count; 0 for video.
    pub channels: u16,
    /// The record as the sequence header carried it: the avcC / hvcC / av1C body, the AAC
    /// AudioSpecificConfig or the OpusHead. Written into the sample entry verbatim (the
    /// OpusHead is converted to a `dOps` box).
    pub record: bytes::Bytes,
}

impl TrackConfig {
    /// The RFC 6381 `CODECS` string: "avc1.64001f", "hvc1.1.6.L93.B0", "av01.0.08M.08",
    /// "mp4a.40.2", "opus".
    pub fn codec_string(&self) -> String {
        parse::codec_string(self)
    }

    /// For H.264 and HEVC, the size in bytes (1, 2 or 4; 3 is tolerated) of the NAL unit
    /// length prefixes in this stream's frames, from the record's `lengthSizeMinusOne`.
    /// Frames are packaged as they came, so the record in the init segment and the
    /// samples agree; this is informational. `None` for other codecs.
    pub fn nal_length_size(&self) -> Option<u8> {
        let byte = match self.codec {
            Codec::H264 => self.record.get(4)?,
            Codec::Hevc => self.record.get(21)?,
            _ => return None,
        };
        Some((byte & 0x03) + 1)
    }
}

/// What one FLV-style payload is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A sequence header: the track's decoder configuration.
    Config(TrackConfig),
    /// One frame (an access unit / temporal unit / audio frame).
    Frame {
        /// A sync sample (video keyframe; always true for audio).
        keyframe: bool,
        /// Composition time offset in milliseconds (PTS − DTS); 0 for audio and AV1.
        cts_ms: i32,
        /// The sample as it goes into `mdat`: length-prefixed NAL units for H.264/HEVC
        /// (prefix size as the record says, see [`TrackConfig::nal_length_size`]), the OBUs
        /// of one temporal unit for AV1 (a leading temporal delimiter OBU is dropped, as
        /// AV1-ISOBMFF samples carry none), a raw AAC or Opus packet. A slice of the
        /// payload (no copy).
        data: bytes::Bytes,
    },
    /// Nothing to package: end of sequence, metadata, command frames, multitrack packets,
    /// MPEG-2 TS sequence starts, and codecs this crate does not package (MP3, VP9, ...).
    Skip,
}

/// Why a payload could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Truncated or inconsistent bytes.
    #[error("malformed payload: {0}")]
    Malformed(&'static str),
    /// A codec this crate packages, in a form it does not implement (an unknown packet
    /// type, a record version it does not know, ...).
    #[error("unsupported payload: {0}")]
    Unsupported(&'static str),
}
