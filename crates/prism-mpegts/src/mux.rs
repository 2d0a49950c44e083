//! Sans-I/O MPEG-TS muxer: FLV-style frames in, 188-byte transport stream packets out.
//!
//! One program (number 1, PMT on PID 0x1000) with at most one video stream on PID 0x100
//! (H.264 or HEVC) and one AAC stream (ADTS) on PID 0x101. Feed every frame of a stream to
//! [`Muxer::push_frame`], in order; it appends whole packets to a buffer the caller owns and
//! never reads a clock: all timing comes from the frames' timestamps.
//!
//! ```
//! use bytes::BytesMut;
//! use prism_mpegts::mux::{next_datagram, Muxer, MuxerConfig};
//! # fn send(_datagram: &[u8]) {}
//! # let frames: Vec<prism_mpegts::FlvFrame> = Vec::new();
//! let mut muxer = Muxer::new(MuxerConfig::default());
//! let mut out = BytesMut::new();
//! for frame in &frames {
//!     muxer.push_frame(frame, &mut out);
//!     // Live: send what is ready now, a short last datagram included.
//!     while let Some(datagram) = next_datagram(&mut out, true) {
//!         send(&datagram);
//!     }
//! }
//! ```
//!
//! What goes in the stream:
//! - PAT and PMT before the first PES, before every video keyframe, whenever the set of
//!   streams changes (the PMT version is bumped) and at least every
//!   [`MuxerConfig::psi_interval_ms`] of stream time.
//! - Video PES (stream id 0xE0, unbounded length) carry one access unit in Annex B form:
//!   an access unit delimiter first, then on keyframes the parameter sets from the stored
//!   decoder configuration record (unless the frame carries its own), then the frame's NAL
//!   units with start codes. Keyframes set the random access indicator.
//! - Audio PES (stream id 0xC0) carry one ADTS frame each, built from the stored
//!   AudioSpecificConfig.
//! - The PCR goes on the video PID when there is video, else on the audio PID; it is written
//!   in the first packet of every PES on that PID and trails the DTS by
//!   [`MuxerConfig::pcr_delay_ms`]. When video frames are sparse, an audio frame more than
//!   40 ms after the last PCR brings a PCR-only packet on the video PID.
//!
//! Sequence headers are stored, not emitted. Frames that cannot be muxed are dropped and
//! counted in [`MuxStats`]; nothing a publisher sends can make the muxer panic.

use bytes::{Bytes, BytesMut};

use crate::{FlvFrame, FrameKind};

/// Size of one transport stream packet.
pub const TS_PACKET_SIZE: usize = 188;
/// TS packets per SRT datagram (the live-streaming convention: 7 × 188 = 1316 bytes).
pub const PACKETS_PER_DATAGRAM: usize = 7;
/// Bytes in a full SRT datagram.
pub const DATAGRAM_SIZE: usize = PACKETS_PER_DATAGRAM * TS_PACKET_SIZE;

/// PID of the program association table.
pub const PAT_PID: u16 = 0x0000;
/// PID of the program map table of program 1.
pub const PMT_PID: u16 = 0x1000;
/// PID of the video elementary stream.
pub const VIDEO_PID: u16 = 0x0100;
/// PID of the audio elementary stream.
pub const AUDIO_PID: u16 = 0x0101;

/// `stream_type` of H.264 video in the PMT.
pub const STREAM_TYPE_H264: u8 = 0x1B;
/// `stream_type` of HEVC video in the PMT.
pub const STREAM_TYPE_HEVC: u8 = 0x24;
/// `stream_type` of AAC audio with ADTS framing in the PMT.
pub const STREAM_TYPE_AAC_ADTS: u8 = 0x0F;

const PROGRAM_NUMBER: u16 = 1;
const TRANSPORT_STREAM_ID: u16 = 1;
const VIDEO_STREAM_ID: u8 = 0xE0;
const AUDIO_STREAM_ID: u8 = 0xC0;
/// PTS, DTS and PCR base are 33-bit counters of a 90 kHz clock.
const TS_CLOCK_MASK: u64 = (1 << 33) - 1;
/// Stream time after which an audio frame brings a PCR-only packet on the video PID.
/// PCRs can only be written when a frame arrives, so this is well under the 100 ms maximum
/// spacing of ISO/IEC 13818-1 (DVB recommends 40 ms): audio frames up to 60 ms apart keep
/// within it.
const PCR_ONLY_INTERVAL_MS: u64 = 40;
/// A PCR further back than this from the last one is a timebase discontinuity, not jitter.
const PCR_JUMP_BACK_MS: u64 = 1000;
/// An ADTS frame_length is 13 bits and includes the 7-byte header.
const ADTS_MAX_PAYLOAD: usize = (1 << 13) - 1 - 7;

/// Muxer settings. Times are in milliseconds of stream time (frame timestamps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuxerConfig {
    /// Added to every timestamp, so the PCR, which trails the first DTS, does not start
    /// below zero. Default 1000.
    pub timestamp_offset_ms: u32,
    /// How far the PCR trails the DTS of the PES it is written with: the receiver's
    /// buffering headroom. Capped at `timestamp_offset_ms`. Default 100.
    pub pcr_delay_ms: u32,
    /// Longest stretch of stream time without PAT/PMT. Default 100.
    pub psi_interval_ms: u32,
}

impl Default for MuxerConfig {
    fn default() -> Self {
        Self {
            timestamp_offset_ms: 1000,
            pcr_delay_ms: 100,
            psi_interval_ms: 100,
        }
    }
}

/// What [`Muxer::push_frame`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The frame was written as one PES.
    Muxed,
    /// A sequence header: the codec configuration was stored.
    ConfigStored,
    /// Nothing was written; the reason is counted in [`MuxStats`].
    Dropped(DropReason),
}

/// Why a frame was not muxed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// No sequence header for this codec has been seen yet.
    NoCodecConfig,
    /// Video before the first keyframe: a receiver could not decode it.
    AwaitingKeyframe,
    /// A codec, packet type or stream layout MPEG-TS carriage is not implemented for
    /// (legacy codecs, AV1, multitrack, sequence end, script data, ...).
    Unsupported,
    /// Truncated or inconsistent payload.
    Malformed,
}

/// Counters of what the muxer has done, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MuxStats {
    /// Frames written as PES.
    pub frames_muxed: u64,
    /// Sequence headers stored.
    pub configs_stored: u64,
    /// Frames dropped with [`DropReason::NoCodecConfig`].
    pub dropped_no_config: u64,
    /// Frames dropped with [`DropReason::AwaitingKeyframe`].
    pub dropped_awaiting_keyframe: u64,
    /// Frames dropped with [`DropReason::Unsupported`].
    pub dropped_unsupported: u64,
    /// Frames dropped with [`DropReason::Malformed`].
    pub dropped_malformed: u64,
    /// TS packets written, PSI included.
    pub packets_written: u64,
}

/// Takes the next datagram's worth of packets off the front of `out`.
///
/// Returns 7 packets while at least that many are buffered; with `flush`, then also the
/// remaining whole packets (a live sender flushes after every frame rather than hold
/// packets back). Bytes short of a whole packet are never returned (the muxer does not
/// leave any).
pub fn next_datagram(out: &mut BytesMut, flush: bool) -> Option<Bytes> {
    let whole = out.len() / TS_PACKET_SIZE * TS_PACKET_SIZE;
    let take = if whole >= DATAGRAM_SIZE {
        DATAGRAM_SIZE
    } else if flush && whole > 0 {
        whole
    } else {
        return None;
    };
    Some(out.split_to(take).freeze())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VideoCodec {
    H264,
    Hevc,
}

impl VideoCodec {
    fn stream_type(self) -> u8 {
        match self {
            Self::H264 => STREAM_TYPE_H264,
            Self::Hevc => STREAM_TYPE_HEVC,
        }
    }

    fn nal_type(self, header: u8) -> u8 {
        match self {
            Self::H264 => header & 0x1F,
            Self::Hevc => (header >> 1) & 0x3F,
        }
    }

    fn is_aud(self, nal_type: u8) -> bool {
        match self {
            Self::H264 => nal_type == 9,
            Self::Hevc => nal_type == 35,
        }
    }

    /// Parameter sets a decoder needs to start at a keyframe.
    fn is_parameter_set(self, nal_type: u8) -> bool {
        match self {
            Self::H264 => nal_type == 7 || nal_type == 8,
            Self::Hevc => (32..=34).contains(&nal_type),
        }
    }

    fn is_sps(self, nal_type: u8) -> bool {
        match self {
            Self::H264 => nal_type == 7,
            Self::Hevc => nal_type == 33,
        }
    }

    /// An access unit delimiter with start code, allowing any picture type.
    fn aud(self) -> &'static [u8] {
        match self {
            // primary_pic_type 7 (any), rbsp stop bit.
            Self::H264 => &[0, 0, 0, 1, 0x09, 0xF0],
            // NAL type 35, layer 0, temporal id 1; pic_type 2 (any), rbsp stop bit.
            Self::Hevc => &[0, 0, 0, 1, 0x46, 0x01, 0x50],
        }
    }
}

/// What a video sequence header told us.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VideoConfig {
    codec: VideoCodec,
    /// Bytes in each NAL unit length prefix (1 to 4).
    nal_length_size: usize,
    /// The configuration record's parameter sets in Annex B form, ready to prepend.
    parameter_sets: Vec<u8>,
}

/// The fields of an AudioSpecificConfig that an ADTS header repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AacConfig {
    /// ADTS profile: audio object type minus one (0 to 3).
    profile: u8,
    sampling_frequency_index: u8,
    channel_configuration: u8,
}

/// The streams a PMT announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Program {
    video: Option<VideoCodec>,
    audio: bool,
}

impl Program {
    fn pcr_pid(self) -> u16 {
        if self.video.is_some() || !self.audio {
            VIDEO_PID
        } else {
            AUDIO_PID
        }
    }
}

/// A PCR to write: the 90 kHz base, and whether it starts a new timebase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pcr {
    base: u64,
    discontinuity: bool,
}

/// A parsed video payload.
enum VideoPayload<'a> {
    Config(VideoConfig),
    Frame {
        codec: VideoCodec,
        keyframe: bool,
        cts_ms: i32,
        data: &'a [u8],
    },
}

/// A parsed audio payload.
enum AudioPayload<'a> {
    Config(AacConfig),
    Frame(&'a [u8]),
}

/// The MPEG-TS muxer for one stream. See the module docs.
#[derive(Debug)]
pub struct Muxer {
    config: MuxerConfig,
    video: Option<VideoConfig>,
    audio: Option<AacConfig>,
    /// The program the last PMT described, `None` before the first.
    announced: Option<Program>,
    pmt_version: u8,
    /// Stream time (90 kHz, unmasked) of the last PAT/PMT.
    last_psi: Option<u64>,
    /// Last PCR base written (90 kHz, unmasked); PCRs never go backwards.
    last_pcr: Option<u64>,
    /// Whether a video keyframe has been muxed since the video codec was configured.
    video_started: bool,
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
    cc_audio: u8,
    /// PES assembly buffer, reused so steady-state muxing does not allocate.
    pes: Vec<u8>,
    stats: MuxStats,
}

impl Muxer {
    /// A muxer that has seen no frames yet.
    pub fn new(config: MuxerConfig) -> Self {
        Self {
            config,
            video: None,
            audio: None,
            announced: None,
            pmt_version: 0,
            last_psi: None,
            last_pcr: None,
            video_started: false,
            cc_pat: 0,
            cc_pmt: 0,
            cc_video: 0,
            cc_audio: 0,
            pes: Vec::new(),
            stats: MuxStats::default(),
        }
    }

    /// Counters of muxed and dropped frames.
    pub fn stats(&self) -> &MuxStats {
        &self.stats
    }

    /// Makes the next PES be preceded by PAT and PMT, whatever the interval: a segmenter
    /// calls this where a file starts (an HLS segment), so each file can be read alone even
    /// when it does not start with a video keyframe (audio only).
    pub fn repeat_psi(&mut self) {
        self.last_psi = None;
    }

    /// Muxes one frame, appending whole TS packets (possibly none) to `out`. Script data
    /// is dropped as [`DropReason::Unsupported`].
    pub fn push_frame(&mut self, frame: &FlvFrame, out: &mut BytesMut) -> Pushed {
        let result = match frame.kind {
            FrameKind::Video => self.push_video(frame, out),
            FrameKind::Audio => self.push_audio(frame, out),
            // Script data (onMetaData) has no place in this TS mapping.
            FrameKind::Data => Pushed::Dropped(DropReason::Unsupported),
        };
        match result {
            Pushed::Muxed => self.stats.frames_muxed += 1,
            Pushed::ConfigStored => self.stats.configs_stored += 1,
            Pushed::Dropped(DropReason::NoCodecConfig) => self.stats.dropped_no_config += 1,
            Pushed::Dropped(DropReason::AwaitingKeyframe) => {
                self.stats.dropped_awaiting_keyframe += 1
            }
            Pushed::Dropped(DropReason::Unsupported) => self.stats.dropped_unsupported += 1,
            Pushed::Dropped(DropReason::Malformed) => self.stats.dropped_malformed += 1,
        }
        result
    }

    fn push_video(&mut self, frame: &FlvFrame, out: &mut BytesMut) -> Pushed {
        let (codec, keyframe, cts_ms, data) = match parse_video(&frame.payload) {
            Err(reason) => return Pushed::Dropped(reason),
            Ok(VideoPayload::Config(config)) => {
                if self.video.as_ref() != Some(&config) {
                    // A new configuration (a reconfigured encoder) needs a keyframe to start.
                    self.video_started = false;
                }
                self.video = Some(config);
                return Pushed::ConfigStored;
            }
            Ok(VideoPayload::Frame {
                codec,
                keyframe,
                cts_ms,
                data,
            }) => (codec, keyframe || frame.keyframe, cts_ms, data),
        };
        let Some(config) = self.video.as_ref() else {
            return Pushed::Dropped(DropReason::NoCodecConfig);
        };
        if config.codec != codec {
            return Pushed::Dropped(DropReason::NoCodecConfig);
        }
        if !keyframe && !self.video_started {
            return Pushed::Dropped(DropReason::AwaitingKeyframe);
        }

        // Check the whole frame before writing anything.
        let mut has_sps = false;
        let complete = for_each_nal(data, config.nal_length_size, |nal| {
            has_sps |= codec.is_sps(codec.nal_type(nal[0]));
        });
        if !complete {
            return Pushed::Dropped(DropReason::Malformed);
        }

        let (dts, pts) = self.timestamps(frame.timestamp, cts_ms);
        let mut pes = std::mem::take(&mut self.pes);
        pes.clear();
        write_pes_header(&mut pes, VIDEO_STREAM_ID, pts, dts, None);
        pes.extend_from_slice(codec.aud());
        if keyframe && !has_sps {
            pes.extend_from_slice(&config.parameter_sets);
        }
        for_each_nal(data, config.nal_length_size, |nal| {
            // Ours is the access unit's delimiter; one from the publisher would be a second.
            if !codec.is_aud(codec.nal_type(nal[0])) {
                pes.extend_from_slice(&[0, 0, 0, 1]);
                pes.extend_from_slice(nal);
            }
        });

        if keyframe {
            self.video_started = true;
        }
        self.write_psi_if_due(dts, keyframe, out);
        let program = self.program();
        let pcr = (program.pcr_pid() == VIDEO_PID).then(|| self.next_pcr(dts));
        let mut cc = self.cc_video;
        self.stats.packets_written += packetize(VIDEO_PID, &mut cc, &pes, pcr, keyframe, out);
        self.cc_video = cc;
        self.pes = pes;
        Pushed::Muxed
    }

    fn push_audio(&mut self, frame: &FlvFrame, out: &mut BytesMut) -> Pushed {
        let data = match parse_audio(&frame.payload) {
            Err(reason) => return Pushed::Dropped(reason),
            Ok(AudioPayload::Config(config)) => {
                self.audio = Some(config);
                return Pushed::ConfigStored;
            }
            Ok(AudioPayload::Frame(data)) => data,
        };
        let Some(config) = self.audio else {
            return Pushed::Dropped(DropReason::NoCodecConfig);
        };
        if data.len() > ADTS_MAX_PAYLOAD {
            return Pushed::Dropped(DropReason::Malformed);
        }

        let (dts, pts) = self.timestamps(frame.timestamp, 0);
        let mut pes = std::mem::take(&mut self.pes);
        pes.clear();
        let es_len = 7 + data.len();
        write_pes_header(&mut pes, AUDIO_STREAM_ID, pts, dts, Some(es_len));
        write_adts_header(&mut pes, config, es_len);
        pes.extend_from_slice(data);

        self.write_psi_if_due(dts, false, out);
        let program = self.program();
        let pcr = if program.pcr_pid() == AUDIO_PID {
            Some(self.next_pcr(dts))
        } else {
            // Video is the PCR PID; keep the PCR flowing if video frames are sparse.
            self.write_pcr_only_if_due(dts, out);
            None
        };
        let mut cc = self.cc_audio;
        self.stats.packets_written += packetize(AUDIO_PID, &mut cc, &pes, pcr, false, out);
        self.cc_audio = cc;
        self.pes = pes;
        Pushed::Muxed
    }

    /// DTS and PTS in 90 kHz ticks, offset but not yet wrapped to 33 bits.
    ///
    /// FLV's 32-bit millisecond timestamps wrap after 49.7 days; that wrap is not smoothed.
    fn timestamps(&self, timestamp_ms: u32, cts_ms: i32) -> (u64, u64) {
        let dts_ms = u64::from(timestamp_ms) + u64::from(self.config.timestamp_offset_ms);
        // A negative composition offset would put PTS before DTS, which no decoder
        // accepts: present such a frame at its DTS.
        let pts_ms = dts_ms.saturating_add_signed(i64::from(cts_ms)).max(dts_ms);
        (dts_ms * 90, pts_ms * 90)
    }

    fn program(&self) -> Program {
        Program {
            video: self.video.as_ref().map(|v| v.codec),
            audio: self.audio.is_some(),
        }
    }

    /// The PCR delay in 90 kHz ticks.
    fn pcr_delay(&self) -> u64 {
        let ms = self
            .config
            .pcr_delay_ms
            .min(self.config.timestamp_offset_ms);
        u64::from(ms) * 90
    }

    /// The PCR to write with a PES (or alone) whose DTS is `dts`.
    fn next_pcr(&mut self, dts: u64) -> Pcr {
        let target = dts.saturating_sub(self.pcr_delay());
        let pcr = match self.last_pcr {
            // Timestamps that jump back (a publisher restarted behind the same output) start
            // a new timebase, which the receiver must be told about.
            Some(last) if target + PCR_JUMP_BACK_MS * 90 < last => Pcr {
                base: target,
                discontinuity: true,
            },
            // Audio and video interleave a little out of order; the PCR never goes back.
            Some(last) => Pcr {
                base: target.max(last),
                discontinuity: false,
            },
            None => Pcr {
                base: target,
                discontinuity: false,
            },
        };
        self.last_pcr = Some(pcr.base);
        pcr
    }

    fn interval_elapsed(&self, last: Option<u64>, now: u64) -> bool {
        match last {
            None => true,
            // Timestamps that jump backwards (a publisher restart) count as elapsed.
            Some(last) => now < last || now - last >= u64::from(self.config.psi_interval_ms) * 90,
        }
    }

    fn write_psi_if_due(&mut self, dts: u64, keyframe: bool, out: &mut BytesMut) {
        let program = self.program();
        let changed = self.announced != Some(program);
        if !(changed || keyframe || self.interval_elapsed(self.last_psi, dts)) {
            return;
        }
        if changed && self.announced.is_some() {
            self.pmt_version = (self.pmt_version + 1) & 0x1F;
        }
        self.announced = Some(program);
        self.last_psi = Some(dts);

        let mut section = [0u8; 64];
        let len = pat_section(&mut section);
        write_psi_packet(PAT_PID, &mut self.cc_pat, &section[..len], out);
        let len = pmt_section(program, self.pmt_version, &mut section);
        write_psi_packet(PMT_PID, &mut self.cc_pmt, &section[..len], out);
        self.stats.packets_written += 2;
    }

    fn write_pcr_only_if_due(&mut self, dts: u64, out: &mut BytesMut) {
        let due = self.last_pcr.map_or(true, |last| {
            dts.saturating_sub(self.pcr_delay()) >= last + PCR_ONLY_INTERVAL_MS * 90
        });
        if !due {
            return;
        }
        let pcr = self.next_pcr(dts);
        // An adaptation-field-only packet: the continuity counter does not advance.
        let start = out.len();
        out.resize(start + TS_PACKET_SIZE, 0xFF);
        let p = &mut out[start..];
        p[0] = 0x47;
        p[1] = (VIDEO_PID >> 8) as u8;
        p[2] = VIDEO_PID as u8;
        p[3] = 0x20 | (self.cc_video.wrapping_sub(1) & 0x0F);
        p[4] = 183;
        p[5] = 0x10 | if pcr.discontinuity { 0x80 } else { 0 };
        write_pcr(&mut p[6..12], pcr.base);
        self.stats.packets_written += 1;
    }
}

/// Reads a big-endian unsigned integer of `bytes.len()` (at most 4) bytes.
fn read_be(bytes: &[u8]) -> usize {
    bytes.iter().fold(0, |acc, &b| (acc << 8) | usize::from(b))
}

/// Reads FLV's 24-bit signed composition time offset.
fn read_cts(bytes: &[u8]) -> Option<i32> {
    let b = bytes.get(..3)?;
    let raw = (i32::from(b[0]) << 16) | (i32::from(b[1]) << 8) | i32::from(b[2]);
    Some((raw << 8) >> 8)
}

fn parse_video(p: &[u8]) -> Result<VideoPayload<'_>, DropReason> {
    let b0 = *p.first().ok_or(DropReason::Malformed)?;
    let frame_type = (b0 >> 4) & 0x07;
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: [IsExHeader:1][FrameType:3][PacketType:4][FourCC:4]
        let packet_type = b0 & 0x0F;
        let codec = match p.get(1..5).ok_or(DropReason::Malformed)? {
            b"avc1" => VideoCodec::H264,
            b"hvc1" => VideoCodec::Hevc,
            _ => return Err(DropReason::Unsupported),
        };
        // Frame type 5 is a command frame: no picture.
        if frame_type == 5 {
            return Err(DropReason::Unsupported);
        }
        let body = &p[5..];
        return match packet_type {
            0 => parse_decoder_config(codec, body).map(VideoPayload::Config),
            1 => Ok(VideoPayload::Frame {
                codec,
                keyframe: frame_type == 1,
                cts_ms: read_cts(body).ok_or(DropReason::Malformed)?,
                data: &body[3..],
            }),
            3 => Ok(VideoPayload::Frame {
                codec,
                keyframe: frame_type == 1,
                cts_ms: 0,
                data: body,
            }),
            _ => Err(DropReason::Unsupported),
        };
    }
    let codec = match b0 & 0x0F {
        7 => VideoCodec::H264,
        // The widespread non-standard legacy HEVC codec id.
        12 => VideoCodec::Hevc,
        _ => return Err(DropReason::Unsupported),
    };
    if frame_type == 5 {
        return Err(DropReason::Unsupported);
    }
    let packet_type = *p.get(1).ok_or(DropReason::Malformed)?;
    let cts_ms = read_cts(p.get(2..).ok_or(DropReason::Malformed)?).ok_or(DropReason::Malformed)?;
    let body = &p[5..];
    match packet_type {
        0 => parse_decoder_config(codec, body).map(VideoPayload::Config),
        1 => Ok(VideoPayload::Frame {
            codec,
            keyframe: frame_type == 1,
            cts_ms,
            data: body,
        }),
        // 2 is end of sequence.
        _ => Err(DropReason::Unsupported),
    }
}

/// Parses an AVCDecoderConfigurationRecord or HEVCDecoderConfigurationRecord.
fn parse_decoder_config(codec: VideoCodec, record: &[u8]) -> Result<VideoConfig, DropReason> {
    let mut parameter_sets = Vec::new();
    let mut push_nal = |nal: &[u8]| {
        if let Some(&header) = nal.first() {
            if codec.is_parameter_set(codec.nal_type(header)) {
                parameter_sets.extend_from_slice(&[0, 0, 0, 1]);
                parameter_sets.extend_from_slice(nal);
            }
        }
    };
    let nal_length_size;
    match codec {
        VideoCodec::H264 => {
            // version, profile, compatibility, level, 6 bits reserved + lengthSizeMinusOne
            let head = record.get(..5).ok_or(DropReason::Malformed)?;
            if head[0] != 1 {
                return Err(DropReason::Malformed);
            }
            nal_length_size = usize::from(head[4] & 0x03) + 1;
            let mut rest = &record[5..];
            // SPS list (count in 5 bits), then PPS list (count in 8 bits).
            for mask in [0x1F, 0xFF] {
                let (&count, tail) = rest.split_first().ok_or(DropReason::Malformed)?;
                rest = tail;
                for _ in 0..(count & mask) {
                    let (nal, tail) = take_u16_prefixed(rest)?;
                    push_nal(nal);
                    rest = tail;
                }
            }
            // Any profile-specific extension after the PPS list is not needed.
        }
        VideoCodec::Hevc => {
            // 21 bytes of profile/tier/level and format fields, then
            // 6 bits of rate info + lengthSizeMinusOne, then numOfArrays.
            let head = record.get(..23).ok_or(DropReason::Malformed)?;
            if head[0] != 1 {
                return Err(DropReason::Malformed);
            }
            nal_length_size = usize::from(head[21] & 0x03) + 1;
            let mut rest = &record[23..];
            for _ in 0..head[22] {
                // array_completeness, reserved, NAL_unit_type; then a u16 count
                let count = rest.get(1..3).map(read_be).ok_or(DropReason::Malformed)?;
                rest = &rest[3..];
                for _ in 0..count {
                    let (nal, tail) = take_u16_prefixed(rest)?;
                    push_nal(nal);
                    rest = tail;
                }
            }
        }
    }
    // A length size of 3 is not allowed by either record's spec, but decodes fine.
    Ok(VideoConfig {
        codec,
        nal_length_size,
        parameter_sets,
    })
}

fn take_u16_prefixed(p: &[u8]) -> Result<(&[u8], &[u8]), DropReason> {
    let len = p.get(..2).map(read_be).ok_or(DropReason::Malformed)?;
    let rest = &p[2..];
    if rest.len() < len {
        return Err(DropReason::Malformed);
    }
    Ok(rest.split_at(len))
}

/// Calls `f` with every non-empty NAL unit of a length-prefixed sequence; false if the
/// sequence is truncated.
fn for_each_nal(mut data: &[u8], length_size: usize, mut f: impl FnMut(&[u8])) -> bool {
    while !data.is_empty() {
        let Some(prefix) = data.get(..length_size) else {
            return false;
        };
        let len = read_be(prefix);
        let rest = &data[length_size..];
        if rest.len() < len {
            return false;
        }
        let (nal, tail) = rest.split_at(len);
        if !nal.is_empty() {
            f(nal);
        }
        data = tail;
    }
    true
}

fn parse_audio(p: &[u8]) -> Result<AudioPayload<'_>, DropReason> {
    let b0 = *p.first().ok_or(DropReason::Malformed)?;
    let (packet_type, body) = match b0 >> 4 {
        10 => (*p.get(1).ok_or(DropReason::Malformed)?, &p[2..]),
        // Enhanced RTMP audio: [SoundFormat=9:4][AudioPacketType:4][FourCC:4]
        9 => {
            if p.get(1..5).ok_or(DropReason::Malformed)? != b"mp4a" {
                return Err(DropReason::Unsupported);
            }
            (b0 & 0x0F, &p[5..])
        }
        _ => return Err(DropReason::Unsupported),
    };
    match packet_type {
        0 => parse_audio_specific_config(body).map(AudioPayload::Config),
        1 => Ok(AudioPayload::Frame(body)),
        _ => Err(DropReason::Unsupported),
    }
}

/// Reads MSB-first bit fields.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn read(&mut self, bits: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..bits {
            let byte = self.data.get(self.pos / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }

    fn object_type(&mut self) -> Option<u32> {
        match self.read(5)? {
            31 => Some(32 + self.read(6)?),
            t => Some(t),
        }
    }

    fn frequency_index(&mut self) -> Option<u32> {
        match self.read(4)? {
            15 => {
                // An explicit frequency; ADTS can only carry the standard ones.
                let hz = self.read(24)?;
                const RATES: [u32; 13] = [
                    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025,
                    8000, 7350,
                ];
                RATES.iter().position(|&r| r == hz).map(|i| i as u32)
            }
            i => Some(i),
        }
    }
}

/// Parses the start of an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1).
fn parse_audio_specific_config(asc: &[u8]) -> Result<AacConfig, DropReason> {
    let mut r = BitReader { data: asc, pos: 0 };
    let mut object_type = r.object_type().ok_or(DropReason::Malformed)?;
    let frequency_index = r.frequency_index().ok_or(DropReason::Unsupported)?;
    let channels = r.read(4).ok_or(DropReason::Malformed)?;
    if object_type == 5 || object_type == 29 {
        // Explicitly signalled SBR/PS: ADTS carries the core (AAC LC) layer, and the
        // decoder finds the extension in the bitstream as with implicit signalling.
        r.frequency_index().ok_or(DropReason::Unsupported)?;
        object_type = r.object_type().ok_or(DropReason::Malformed)?;
    }
    // ADTS has 2 bits for the profile (object types 1 to 4) and cannot carry a program
    // config element out of band (channel configuration 0).
    if !(1..=4).contains(&object_type) || frequency_index > 12 || channels == 0 || channels > 7 {
        return Err(DropReason::Unsupported);
    }
    Ok(AacConfig {
        profile: (object_type - 1) as u8,
        sampling_frequency_index: frequency_index as u8,
        channel_configuration: channels as u8,
    })
}

/// Writes a 7-byte ADTS header (no CRC) for a frame of `frame_len` bytes, header included.
fn write_adts_header(out: &mut Vec<u8>, c: AacConfig, frame_len: usize) {
    let len = frame_len as u32;
    out.extend_from_slice(&[
        0xFF,
        0xF1, // sync, MPEG-4, layer 0, no CRC
        (c.profile << 6) | (c.sampling_frequency_index << 2) | (c.channel_configuration >> 2),
        ((c.channel_configuration & 0x03) << 6) | ((len >> 11) & 0x03) as u8,
        (len >> 3) as u8,
        (((len & 0x07) << 5) as u8) | 0x1F, // buffer fullness 0x7FF: variable rate
        0xFC,                               // one raw data block
    ]);
}

/// Writes a PES header with a PTS, and a DTS when it differs. `es_len` is the bytes that
/// follow the header, or `None` for an unbounded (video) PES.
fn write_pes_header(out: &mut Vec<u8>, stream_id: u8, pts: u64, dts: u64, es_len: Option<usize>) {
    let with_dts = pts != dts;
    let header_data_len: usize = if with_dts { 10 } else { 5 };
    // An audio PES is at most 3 + 10 + 8191 bytes, well inside 16 bits.
    let packet_len = es_len.map_or(0, |len| (3 + header_data_len + len).min(0xFFFF) as u16);
    out.extend_from_slice(&[0, 0, 1, stream_id]);
    out.extend_from_slice(&packet_len.to_be_bytes());
    // '10', not scrambled, no priority, data_alignment_indicator (each PES starts with an
    // AUD or ADTS sync word), no copyright, copy.
    out.push(0x84);
    out.push(if with_dts { 0xC0 } else { 0x80 });
    out.push(header_data_len as u8);
    write_timestamp(out, if with_dts { 0x3 } else { 0x2 }, pts);
    if with_dts {
        write_timestamp(out, 0x1, dts);
    }
}

fn write_timestamp(out: &mut Vec<u8>, prefix: u8, ts: u64) {
    let ts = ts & TS_CLOCK_MASK;
    out.extend_from_slice(&[
        (prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1,
        (ts >> 22) as u8,
        (((ts >> 15) as u8 & 0x7F) << 1) | 1,
        (ts >> 7) as u8,
        ((ts as u8 & 0x7F) << 1) | 1,
    ]);
}

/// Writes a 6-byte PCR field: 33-bit base, 6 reserved bits, 9-bit extension (zero).
fn write_pcr(out: &mut [u8], base: u64) {
    let base = base & TS_CLOCK_MASK;
    out[0] = (base >> 25) as u8;
    out[1] = (base >> 17) as u8;
    out[2] = (base >> 9) as u8;
    out[3] = (base >> 1) as u8;
    out[4] = (((base & 1) as u8) << 7) | 0x7E;
    out[5] = 0;
}

/// Splits a PES into TS packets on `pid`. The first packet carries the PCR and random
/// access indicator when asked; the last is padded with adaptation field stuffing.
/// Returns the number of packets written.
fn packetize(
    pid: u16,
    cc: &mut u8,
    mut pes: &[u8],
    pcr: Option<Pcr>,
    random_access: bool,
    out: &mut BytesMut,
) -> u64 {
    let mut packets = 0;
    let mut first = true;
    out.reserve((pes.len() / 176 + 1) * TS_PACKET_SIZE);
    while !pes.is_empty() {
        let pcr = if first { pcr } else { None };
        let random_access = first && random_access;
        // Adaptation field bytes needed for flags: length, flags, PCR.
        let mut af_len = if pcr.is_some() || random_access { 2 } else { 0 };
        if pcr.is_some() {
            af_len += 6;
        }
        let payload_len = pes.len().min(184 - af_len);
        // Stuffing fills whatever the payload leaves over (only in a PES's last packet).
        let af_len = 184 - payload_len;

        let start = out.len();
        out.resize(start + TS_PACKET_SIZE, 0xFF);
        let p = &mut out[start..];
        p[0] = 0x47;
        p[1] = (if first { 0x40 } else { 0 }) | ((pid >> 8) as u8 & 0x1F);
        p[2] = pid as u8;
        p[3] = (if af_len > 0 { 0x30 } else { 0x10 }) | *cc;
        *cc = (*cc + 1) & 0x0F;
        if af_len > 0 {
            p[4] = (af_len - 1) as u8;
            if af_len > 1 {
                let mut flags = 0;
                if random_access {
                    flags |= 0x40;
                }
                if let Some(pcr) = pcr {
                    flags |= 0x10;
                    if pcr.discontinuity {
                        flags |= 0x80;
                    }
                    write_pcr(&mut p[6..12], pcr.base);
                }
                p[5] = flags;
            }
        }
        let (chunk, rest) = pes.split_at(payload_len);
        p[4 + af_len..].copy_from_slice(chunk);
        pes = rest;
        first = false;
        packets += 1;
    }
    packets
}

/// Writes one section (which fits one packet) with a pointer field and 0xFF stuffing.
fn write_psi_packet(pid: u16, cc: &mut u8, section: &[u8], out: &mut BytesMut) {
    let start = out.len();
    out.resize(start + TS_PACKET_SIZE, 0xFF);
    let p = &mut out[start..];
    p[0] = 0x47;
    p[1] = 0x40 | ((pid >> 8) as u8 & 0x1F);
    p[2] = pid as u8;
    p[3] = 0x10 | *cc;
    *cc = (*cc + 1) & 0x0F;
    p[4] = 0; // pointer_field
    p[5..5 + section.len()].copy_from_slice(section);
}

/// Writes the PAT section into `buf`, returning its length.
fn pat_section(buf: &mut [u8]) -> usize {
    let body = [
        (PROGRAM_NUMBER >> 8) as u8,
        PROGRAM_NUMBER as u8,
        0xE0 | (PMT_PID >> 8) as u8,
        PMT_PID as u8,
    ];
    section(buf, 0x00, TRANSPORT_STREAM_ID, 0, &body)
}

/// Writes the PMT section for `program` into `buf`, returning its length.
fn pmt_section(program: Program, version: u8, buf: &mut [u8]) -> usize {
    let pcr_pid = program.pcr_pid();
    let mut body = [0u8; 4 + 2 * 5];
    body[..4].copy_from_slice(&[
        0xE0 | (pcr_pid >> 8) as u8,
        pcr_pid as u8,
        0xF0, // program_info_length 0
        0x00,
    ]);
    let mut len = 4;
    let streams = [
        program.video.map(|c| (c.stream_type(), VIDEO_PID)),
        program.audio.then_some((STREAM_TYPE_AAC_ADTS, AUDIO_PID)),
    ];
    for (stream_type, pid) in streams.into_iter().flatten() {
        body[len..len + 5].copy_from_slice(&[
            stream_type,
            0xE0 | (pid >> 8) as u8,
            pid as u8,
            0xF0, // ES_info_length 0
            0x00,
        ]);
        len += 5;
    }
    section(buf, 0x02, PROGRAM_NUMBER, version, &body[..len])
}

/// Writes a long-form PSI section (one of one) with its CRC, returning its length.
fn section(buf: &mut [u8], table_id: u8, id: u16, version: u8, body: &[u8]) -> usize {
    // After section_length: id (2), version (1), section numbers (2), body, CRC (4).
    let section_length = 5 + body.len() + 4;
    buf[0] = table_id;
    // section_syntax_indicator, '0', reserved '11', 12-bit length.
    buf[1] = 0xB0 | (section_length >> 8) as u8;
    buf[2] = section_length as u8;
    buf[3] = (id >> 8) as u8;
    buf[4] = id as u8;
    buf[5] = 0xC1 | ((version & 0x1F) << 1); // reserved, version, current_next_indicator
    buf[6] = 0; // section_number
    buf[7] = 0; // last_section_number
    buf[8..8 + body.len()].copy_from_slice(body);
    let crc_at = 8 + body.len();
    let crc = crc32_mpeg2(&buf[..crc_at]);
    buf[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
    crc_at + 4
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32/MPEG-2: polynomial 0x04C11DB7, initial 0xFFFFFFFF, not reflected, no final XOR.
fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xFFFF_FFFF, |crc, &b| {
        (crc << 8) ^ CRC_TABLE[((crc >> 24) as u8 ^ b) as usize]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const AVC_CONFIG: &[u8] = &[
        0x17, 0x00, 0, 0, 0, // AVC sequence header
        1, 0x64, 0x00, 0x1F, 0xFF,
        0xE1, // version, profile, compat, level, 4-byte lengths, 1 SPS
        0, 4, 0x67, 0x64, 0x00, 0x1F, // SPS
        1, 0, 2, 0x68, 0xEE, // 1 PPS
    ];
    const AAC_CONFIG: &[u8] = &[0xAF, 0x00, 0x12, 0x10]; // AAC LC, 44.1 kHz, stereo

    fn frame(kind: FrameKind, timestamp: u32, payload: &[u8]) -> FlvFrame {
        FlvFrame {
            kind,
            timestamp,
            payload: Bytes::copy_from_slice(payload),
            keyframe: false,
            sequence_header: false,
        }
    }

    fn video(timestamp: u32, keyframe: bool, cts: i32, nals: &[&[u8]]) -> FlvFrame {
        let mut p = vec![if keyframe { 0x17 } else { 0x27 }, 0x01];
        p.extend_from_slice(&cts.to_be_bytes()[1..]);
        for nal in nals {
            p.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            p.extend_from_slice(nal);
        }
        frame(FrameKind::Video, timestamp, &p)
    }

    fn audio(timestamp: u32, raw: &[u8]) -> FlvFrame {
        let mut p = vec![0xAF, 0x01];
        p.extend_from_slice(raw);
        frame(FrameKind::Audio, timestamp, &p)
    }

    #[derive(Debug)]
    struct Packet {
        pid: u16,
        pusi: bool,
        cc: u8,
        has_payload: bool,
        random_access: bool,
        discontinuity: bool,
        pcr: Option<u64>,
        payload: Vec<u8>,
    }

    fn parse(ts: &[u8]) -> Vec<Packet> {
        assert_eq!(ts.len() % TS_PACKET_SIZE, 0);
        ts.chunks(TS_PACKET_SIZE)
            .map(|p| {
                assert_eq!(p[0], 0x47);
                let afc = (p[3] >> 4) & 3;
                let mut at = 4;
                let (mut random_access, mut discontinuity, mut pcr) = (false, false, None);
                if afc & 2 != 0 {
                    let len = p[4] as usize;
                    if len > 0 {
                        random_access = p[5] & 0x40 != 0;
                        discontinuity = p[5] & 0x80 != 0;
                        if p[5] & 0x10 != 0 {
                            let b = &p[6..12];
                            pcr = Some(
                                (u64::from(b[0]) << 25)
                                    | (u64::from(b[1]) << 17)
                                    | (u64::from(b[2]) << 9)
                                    | (u64::from(b[3]) << 1)
                                    | u64::from(b[4] >> 7),
                            );
                        }
                    }
                    at += 1 + len;
                }
                Packet {
                    pid: (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]),
                    pusi: p[1] & 0x40 != 0,
                    cc: p[3] & 0x0F,
                    has_payload: afc & 1 != 0,
                    random_access,
                    discontinuity,
                    pcr,
                    payload: if afc & 1 != 0 {
                        p[at..].to_vec()
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect()
    }

    fn read_ts(b: &[u8]) -> u64 {
        (u64::from(b[0] >> 1) & 7) << 30
            | u64::from(b[1]) << 22
            | u64::from(b[2] >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4] >> 1)
    }

    /// (pid, PTS, DTS, PES bytes) of every PES, reassembled.
    fn pes_packets(packets: &[Packet]) -> Vec<(u16, u64, u64, Vec<u8>)> {
        let mut done = Vec::new();
        let mut open: Vec<(u16, Vec<u8>)> = Vec::new();
        for p in packets
            .iter()
            .filter(|p| p.pid == VIDEO_PID || p.pid == AUDIO_PID)
        {
            if p.pusi {
                if let Some(i) = open.iter().position(|(pid, _)| *pid == p.pid) {
                    done.push(open.remove(i));
                }
                open.push((p.pid, Vec::new()));
            }
            if let Some((_, buf)) = open.iter_mut().find(|(pid, _)| *pid == p.pid) {
                buf.extend_from_slice(&p.payload);
            }
        }
        done.extend(open);
        done.into_iter()
            .map(|(pid, pes)| {
                assert_eq!(&pes[..3], &[0, 0, 1]);
                let pts = read_ts(&pes[9..14]);
                let dts = if pes[7] & 0x40 != 0 {
                    read_ts(&pes[14..19])
                } else {
                    pts
                };
                let body = pes[9 + pes[8] as usize..].to_vec();
                (pid, pts, dts, body)
            })
            .collect()
    }

    fn psi_section(packets: &[Packet], pid: u16) -> Vec<u8> {
        let p = packets
            .iter()
            .rev()
            .find(|p| p.pid == pid)
            .expect("psi packet");
        let len = ((usize::from(p.payload[2]) & 0x0F) << 8 | usize::from(p.payload[3])) + 3;
        p.payload[1..1 + len].to_vec()
    }

    #[test]
    fn crc32_mpeg2_check_value_and_known_pat() {
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
        let mut buf = [0u8; 64];
        let len = pat_section(&mut buf);
        // The PAT ffmpeg writes for the same program layout.
        assert_eq!(
            &buf[..len],
            &[
                0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00, 0x2A, 0xB1,
                0x04, 0xB2
            ]
        );
        // A section with its CRC appended checks to zero.
        let len = pmt_section(
            Program {
                video: Some(VideoCodec::Hevc),
                audio: true,
            },
            3,
            &mut buf,
        );
        assert_eq!(crc32_mpeg2(&buf[..len]), 0);
    }

    fn h264_stream() -> (Muxer, BytesMut) {
        let mut m = Muxer::new(MuxerConfig::default());
        let mut out = BytesMut::new();
        assert_eq!(
            m.push_frame(&frame(FrameKind::Video, 0, AVC_CONFIG), &mut out),
            Pushed::ConfigStored
        );
        assert_eq!(
            m.push_frame(&frame(FrameKind::Audio, 0, AAC_CONFIG), &mut out),
            Pushed::ConfigStored
        );
        assert!(out.is_empty(), "sequence headers are stored, not emitted");
        let big = vec![0x55u8; 1000];
        for i in 0..50u32 {
            let f = if i % 25 == 0 {
                video(i * 40, true, 80, &[&[0x65, 1, 2], &big])
            } else {
                video(i * 40, false, 40, &[&[0x41, 3, 4]])
            };
            assert_eq!(m.push_frame(&f, &mut out), Pushed::Muxed);
            assert_eq!(
                m.push_frame(&audio(i * 40 + 5, &[0x21; 300]), &mut out),
                Pushed::Muxed
            );
        }
        (m, out)
    }

    #[test]
    fn packets_are_188_bytes_with_continuous_counters() {
        let (m, out) = h264_stream();
        let packets = parse(&out);
        assert_eq!(m.stats().packets_written, packets.len() as u64);
        for pid in [PAT_PID, PMT_PID, VIDEO_PID, AUDIO_PID] {
            let ccs: Vec<u8> = packets
                .iter()
                .filter(|p| p.pid == pid && p.has_payload)
                .map(|p| p.cc)
                .collect();
            assert!(ccs.len() > 16, "pid {pid:#x}: {} packets", ccs.len());
            assert_eq!(ccs[0], 0);
            for w in ccs.windows(2) {
                assert_eq!(w[1], (w[0] + 1) & 0x0F, "pid {pid:#x}");
            }
        }
        assert!(next_datagram(&mut out.clone(), false).is_some_and(|d| d.len() == DATAGRAM_SIZE));
    }

    #[test]
    fn keyframes_carry_psi_pcr_and_random_access() {
        let (_, out) = h264_stream();
        let packets = parse(&out);
        assert_eq!(packets[0].pid, PAT_PID);
        assert_eq!(packets[1].pid, PMT_PID);
        let video_starts: Vec<usize> = (0..packets.len())
            .filter(|&i| packets[i].pid == VIDEO_PID && packets[i].pusi)
            .collect();
        assert_eq!(video_starts.len(), 50);
        let pes = pes_packets(&packets);
        let video_pes: Vec<_> = pes.iter().filter(|p| p.0 == VIDEO_PID).collect();
        for (n, &i) in video_starts.iter().enumerate() {
            let p = &packets[i];
            let pcr = p.pcr.expect("PCR on every video PES");
            let dts = video_pes[n].2;
            assert!(pcr <= dts && dts - pcr == 100 * 90, "pcr {pcr} dts {dts}");
            let key = n % 25 == 0;
            assert_eq!(p.random_access, key);
            if key {
                assert_eq!((packets[i - 2].pid, packets[i - 1].pid), (PAT_PID, PMT_PID));
            }
        }
        // No PCR on the audio PID while there is video.
        assert!(packets
            .iter()
            .filter(|p| p.pid == AUDIO_PID)
            .all(|p| p.pcr.is_none()));
        let pmt = psi_section(&packets, PMT_PID);
        assert_eq!(&pmt[8..10], &[0xE1, 0x00], "PCR PID is video");
        assert_eq!(
            &pmt[12..22],
            &[0x1B, 0xE1, 0x00, 0xF0, 0, 0x0F, 0xE1, 0x01, 0xF0, 0]
        );
    }

    #[test]
    fn video_pes_is_annex_b_with_aud_and_parameter_sets_on_keyframes() {
        let (_, out) = h264_stream();
        let pes = pes_packets(&parse(&out));
        let video: Vec<_> = pes.iter().filter(|p| p.0 == VIDEO_PID).collect();
        let (_, pts, dts, body) = video[0];
        assert_eq!((*pts, *dts), (1080 * 90, 1000 * 90));
        let mut expected = vec![0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1F];
        expected.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xEE, 0, 0, 0, 1, 0x65, 1, 2, 0, 0, 0, 1]);
        assert_eq!(&body[..expected.len()], &expected[..]);
        assert_eq!(body.len(), expected.len() + 1000);
        let (_, pts, dts, body) = video[1];
        assert_eq!((*pts, *dts), (1080 * 90, 1040 * 90));
        assert_eq!(&body[..], &[0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1, 0x41, 3, 4]);
    }

    #[test]
    fn audio_pes_is_adts_with_length() {
        let (_, out) = h264_stream();
        let packets = parse(&out);
        let first = packets
            .iter()
            .find(|p| p.pid == AUDIO_PID && p.pusi)
            .expect("audio");
        let pes_len = usize::from(u16::from_be_bytes([first.payload[4], first.payload[5]]));
        assert_eq!(pes_len, 3 + 5 + 7 + 300);
        let pes = pes_packets(&packets);
        let (_, pts, dts, body) = pes.iter().find(|p| p.0 == AUDIO_PID).expect("audio");
        assert_eq!((*pts, *dts), (1005 * 90, 1005 * 90));
        // AAC LC (profile 1), 44.1 kHz (index 4), 2 channels, frame length 307.
        assert_eq!(&body[..7], &[0xFF, 0xF1, 0x50, 0x80, 0x26, 0x7F, 0xFC]);
        assert_eq!(body.len(), 307);
    }

    #[test]
    fn frames_before_config_or_keyframe_are_dropped_and_counted() {
        let mut m = Muxer::new(MuxerConfig::default());
        let mut out = BytesMut::new();
        let drop = Pushed::Dropped(DropReason::NoCodecConfig);
        assert_eq!(m.push_frame(&video(0, true, 0, &[&[0x65]]), &mut out), drop);
        assert_eq!(m.push_frame(&audio(0, &[1, 2]), &mut out), drop);
        m.push_frame(&frame(FrameKind::Video, 0, AVC_CONFIG), &mut out);
        let awaiting = Pushed::Dropped(DropReason::AwaitingKeyframe);
        assert_eq!(
            m.push_frame(&video(40, false, 0, &[&[0x41]]), &mut out),
            awaiting
        );
        assert!(out.is_empty());
        assert_eq!(
            m.push_frame(&video(80, true, 0, &[&[0x65]]), &mut out),
            Pushed::Muxed
        );
        assert_eq!(
            m.push_frame(&video(120, false, 0, &[&[0x41]]), &mut out),
            Pushed::Muxed
        );
        let s = m.stats();
        assert_eq!(
            (
                s.dropped_no_config,
                s.dropped_awaiting_keyframe,
                s.frames_muxed
            ),
            (2, 1, 2)
        );
    }

    #[test]
    fn unsupported_and_malformed_payloads_are_skipped_without_panic() {
        let mut m = Muxer::new(MuxerConfig::default());
        let mut out = BytesMut::new();
        m.push_frame(&frame(FrameKind::Video, 0, AVC_CONFIG), &mut out);
        m.push_frame(&frame(FrameKind::Audio, 0, AAC_CONFIG), &mut out);
        let unsupported = Pushed::Dropped(DropReason::Unsupported);
        for (kind, p) in [
            (FrameKind::Video, &[0x22, 0, 0][..]), // Sorenson H.263
            (FrameKind::Video, &[0x91, b'a', b'v', b'0', b'1', 0]), // AV1
            (FrameKind::Video, &[0x17, 0x02, 0, 0, 0]), // AVC end of sequence
            (FrameKind::Audio, &[0x2F, 0xFF, 0xFB]), // MP3
            (FrameKind::Audio, &[0x90, b'O', b'p', b'u', b's']),
            (FrameKind::Data, &[0x02, 0x00, 0x0A]), // onMetaData: no TS mapping
        ] {
            assert_eq!(
                m.push_frame(&frame(kind, 0, p), &mut out),
                unsupported,
                "{p:02x?}"
            );
        }
        let malformed = Pushed::Dropped(DropReason::Malformed);
        // A NAL length running past the end.
        assert_eq!(
            m.push_frame(
                &frame(FrameKind::Video, 0, &[0x17, 1, 0, 0, 0, 0, 0, 0, 9, 0x65]),
                &mut out
            ),
            malformed
        );
        assert!(out.is_empty());
        assert_eq!(m.stats().dropped_unsupported, 6);
        assert_eq!(m.stats().dropped_malformed, 1);

        // Every truncation of every valid payload, in both roles: no panic.
        let key = video(0, true, 0, &[&[0x65, 1, 2, 3]]).payload;
        let hevc = hevc_config();
        for p in [
            AVC_CONFIG,
            AAC_CONFIG,
            &key[..],
            &hevc[..],
            &[0x9F, b'm', b'p', b'4', b'a', 0x12, 0x10],
        ] {
            for len in 0..=p.len() {
                for kind in [FrameKind::Video, FrameKind::Audio] {
                    let mut m = Muxer::new(MuxerConfig::default());
                    m.push_frame(&frame(FrameKind::Video, 0, AVC_CONFIG), &mut out);
                    m.push_frame(&frame(FrameKind::Audio, 0, AAC_CONFIG), &mut out);
                    m.push_frame(&frame(kind, 0, &p[..len]), &mut out);
                    m.push_frame(&frame(kind, 0, &p[..len]), &mut out);
                }
            }
        }
        assert_eq!(out.len() % TS_PACKET_SIZE, 0);
    }

    #[test]
    fn audio_only_puts_pcr_on_audio_pid() {
        let mut m = Muxer::new(MuxerConfig::default());
        let mut out = BytesMut::new();
        m.push_frame(&frame(FrameKind::Audio, 0, AAC_CONFIG), &mut out);
        for i in 0..10 {
            m.push_frame(&audio(i * 23, &[0x21; 200]), &mut out);
        }
        let packets = parse(&out);
        let pmt = psi_section(&packets, PMT_PID);
        assert_eq!(&pmt[8..10], &[0xE1, 0x01], "PCR PID is audio");
        assert_eq!(&pmt[12..17], &[0x0F, 0xE1, 0x01, 0xF0, 0]);
        assert_eq!(pmt.len(), 12 + 5 + 4);
        let starts: Vec<_> = packets
            .iter()
            .filter(|p| p.pid == AUDIO_PID && p.pusi)
            .collect();
        assert_eq!(starts.len(), 10);
        assert!(starts.iter().all(|p| p.pcr.is_some()));
    }

    #[test]
    fn pmt_version_bumps_when_audio_arrives_later() {
        let mut m = Muxer::new(MuxerConfig::default());
        let mut out = BytesMut::new();
        m.push_frame(&frame(FrameKind::Video, 0, AVC_CONFIG), &mut out);
        m.push_frame(&video(0, true, 0, &[&[0x65]]), &mut out);
        let first = psi_section(&parse(&out), PMT_PID);
        assert_eq!(first[5], 0xC1, "version 0");
        assert_eq!(first.len(), 12 + 5 + 4);
        out.clear();
        m.push_frame(&frame(FrameKind::Audio, 10, AAC_CONFIG), &mut out);
        m.push_frame(&audio(20, &[1, 2, 3]), &mut out);
        let packets = parse(&out);
        assert_eq!(
            (packets[0].pid, packets[1].pid),
            (PAT_PID, PMT_PID),
            "PMT re-sent at once"
        );
        let second = psi_section(&packets, PMT_PID);
        assert_eq!(second[5], 0xC3, "version 1");
        assert_eq!(second.len(), 12 + 10 + 4);
    }

    #[test]
    fn sparse_video_gets_pcr_only_packets_between_frames() {
        let mut m = Muxer::new(MuxerConfig::default());
        let mut out = BytesMut::new();
        m.push_frame(&frame(FrameKind::Video, 0, AVC_CONFIG), &mut out);
        m.push_frame(&frame(FrameKind::Audio, 0, AAC_CONFIG), &mut out);
        m.push_frame(&video(0, true, 0, &[&[0x65]]), &mut out);
        for i in 1..44 {
            m.push_frame(&audio(i * 23, &[1, 2, 3]), &mut out);
        }
        m.push_frame(&video(1000, false, 0, &[&[0x41]]), &mut out);
        let packets = parse(&out);
        let video: Vec<_> = packets.iter().filter(|p| p.pid == VIDEO_PID).collect();
        let pcrs: Vec<u64> = video.iter().filter_map(|p| p.pcr).collect();
        assert!(pcrs.len() >= 5, "{pcrs:?}");
        assert!(
            pcrs.windows(2)
                .all(|w| w[0] <= w[1] && w[1] - w[0] <= 100 * 90),
            "{pcrs:?}"
        );
        // PCR-only packets repeat the counter; payload packets continue it.
        let ccs: Vec<(bool, u8)> = video.iter().map(|p| (p.has_payload, p.cc)).collect();
        assert_eq!(ccs.first(), Some(&(true, 0)));
        assert!(
            ccs[1..ccs.len() - 1].iter().all(|&c| c == (false, 0)),
            "{ccs:?}"
        );
        assert_eq!(ccs.last(), Some(&(true, 1)));
    }

    #[test]
    fn negative_composition_offset_never_puts_pts_before_dts() {
        let mut m = Muxer::new(MuxerConfig::default());
        let mut out = BytesMut::new();
        m.push_frame(&frame(FrameKind::Video, 0, AVC_CONFIG), &mut out);
        m.push_frame(&video(0, true, -40, &[&[0x65]]), &mut out);
        m.push_frame(&video(40, false, -2000, &[&[0x41]]), &mut out);
        let pes = pes_packets(&parse(&out));
        // PTS would be 960 ms, before its DTS: presented at its DTS instead.
        assert_eq!((pes[0].1, pes[0].2), (1000 * 90, 1000 * 90));
        assert!(pes.iter().all(|p| p.1 >= p.2));
    }

    #[test]
    fn timestamps_jumping_back_start_a_new_timebase() {
        let mut m = Muxer::new(MuxerConfig::default());
        let mut out = BytesMut::new();
        m.push_frame(&frame(FrameKind::Video, 0, AVC_CONFIG), &mut out);
        m.push_frame(&frame(FrameKind::Audio, 0, AAC_CONFIG), &mut out);
        // Jitter: audio a little behind video keeps the PCR where it was.
        m.push_frame(&video(60_000, true, 0, &[&[0x65]]), &mut out);
        m.push_frame(&audio(59_900, &[1]), &mut out);
        m.push_frame(&video(60_040, false, 0, &[&[0x41]]), &mut out);
        // The publisher restarts at zero.
        m.push_frame(&video(0, true, 0, &[&[0x65]]), &mut out);
        m.push_frame(&video(40, false, 0, &[&[0x41]]), &mut out);
        let pcrs: Vec<(u64, bool)> = parse(&out)
            .iter()
            .filter_map(|p| Some((p.pcr?, p.discontinuity)))
            .collect();
        let ms = |ms: u64| ms * 90;
        assert_eq!(
            pcrs,
            [
                (ms(60_900), false),
                (ms(60_940), false),
                (ms(900), true),
                (ms(940), false)
            ]
        );
    }

    /// An Enhanced RTMP hvc1 SequenceStart with VPS, SPS, PPS and a prefix SEI.
    fn hevc_config() -> Vec<u8> {
        let mut p = vec![0x90, b'h', b'v', b'c', b'1', 1];
        p.extend_from_slice(&[0; 20]);
        p.push(0x0F); // lengthSizeMinusOne 3
        p.push(4);
        for (t, nal) in [
            (32u8, &[0x40, 0x01, 0xA][..]),
            (33, &[0x42, 0x01, 0xB]),
            (34, &[0x44, 0x01, 0xC]),
            (39, &[0x4E, 0x01, 0xD]),
        ] {
            p.extend_from_slice(&[0x80 | t, 0, 1, 0, nal.len() as u8]);
            p.extend_from_slice(nal);
        }
        p
    }

    #[test]
    fn enhanced_rtmp_hevc() {
        let mut m = Muxer::new(MuxerConfig::default());
        let mut out = BytesMut::new();
        let config = frame(FrameKind::Video, 0, &hevc_config());
        assert_eq!(m.push_frame(&config, &mut out), Pushed::ConfigStored);
        // CodedFrames (with CTS), key frame: an IDR_W_RADL slice.
        let key = [
            0x91, b'h', b'v', b'c', b'1', 0, 0, 40, 0, 0, 0, 3, 0x26, 0x01, 0xAF,
        ];
        assert_eq!(
            m.push_frame(&frame(FrameKind::Video, 0, &key), &mut out),
            Pushed::Muxed
        );
        // CodedFramesX, inter frame: a TRAIL_R slice; no CTS.
        let inter = [0xA3, b'h', b'v', b'c', b'1', 0, 0, 0, 3, 0x02, 0x01, 0xD0];
        assert_eq!(
            m.push_frame(&frame(FrameKind::Video, 40, &inter), &mut out),
            Pushed::Muxed
        );
        let packets = parse(&out);
        let pmt = psi_section(&packets, PMT_PID);
        assert_eq!(&pmt[12..17], &[0x24, 0xE1, 0x00, 0xF0, 0]);
        let pes = pes_packets(&packets);
        assert_eq!((pes[0].1, pes[0].2), (1040 * 90, 1000 * 90));
        let aud = [0, 0, 0, 1, 0x46, 0x01, 0x50];
        let mut expected = aud.to_vec();
        for nal in [
            &[0x40, 0x01, 0xA][..],
            &[0x42, 0x01, 0xB],
            &[0x44, 0x01, 0xC],
            &[0x26, 0x01, 0xAF],
        ] {
            expected.extend_from_slice(&[0, 0, 0, 1]);
            expected.extend_from_slice(nal);
        }
        assert_eq!(pes[0].3, expected);
        assert_eq!((pes[1].1, pes[1].2), (1040 * 90, 1040 * 90));
        assert_eq!(
            pes[1].3,
            [&aud[..], &[0, 0, 0, 1, 0x02, 0x01, 0xD0]].concat()
        );
    }

    #[test]
    fn datagrams_are_seven_packets_and_flush_the_rest() {
        let mut out = BytesMut::from(&vec![0x47; 10 * TS_PACKET_SIZE][..]);
        assert_eq!(
            next_datagram(&mut out, false).map(|d| d.len()),
            Some(DATAGRAM_SIZE)
        );
        assert_eq!(next_datagram(&mut out, false), None);
        assert_eq!(
            next_datagram(&mut out, true).map(|d| d.len()),
            Some(3 * TS_PACKET_SIZE)
        );
        assert_eq!(next_datagram(&mut out, true), None);
    }
    #[test]
    fn repeat_psi_puts_pat_and_pmt_before_the_next_pes() {
        let mut muxer = Muxer::new(MuxerConfig::default());
        let mut out = BytesMut::new();
        muxer.push_frame(&frame(FrameKind::Audio, 0, AAC_CONFIG), &mut out);
        muxer.push_frame(&audio(0, &[1, 2, 3]), &mut out);
        // Well within the PSI interval: no PAT/PMT unless asked for.
        out.clear();
        muxer.push_frame(&audio(23, &[1, 2, 3]), &mut out);
        assert_eq!(parse(&out)[0].pid, AUDIO_PID);
        out.clear();
        muxer.repeat_psi();
        muxer.push_frame(&audio(46, &[1, 2, 3]), &mut out);
        let pids: Vec<u16> = parse(&out).iter().map(|p| p.pid).collect();
        assert_eq!(pids, [PAT_PID, PMT_PID, AUDIO_PID]);
    }
}
