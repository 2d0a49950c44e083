//! Sans-I/O MPEG-TS: a demuxer that turns a transport stream (as SRT carries it) into
//! FLV-style frames, and a muxer that turns FLV-style frames back into 188-byte packets.
//!
//! "FLV-style" means the payloads RTMP carries in audio and video messages (an FLV tag
//! body): `0x17 0x00` + AVCDecoderConfigurationRecord, `0x17/0x27 0x01` + CTS + length
//! prefixed NAL units, `0xAF 0x00` + AudioSpecificConfig, `0xAF 0x01` + raw AAC, and the
//! Enhanced RTMP forms for HEVC. So a stream ingested over SRT is byte-for-byte the kind
//! of stream an RTMP encoder sends, and every egress works on it unchanged.
//!
//! This crate must not know about sockets, SRT, tokio or the hub.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod demux;
pub mod mux;
pub mod nal;

/// A frame in FLV-tag-body form, what the demuxer produces and the muxer consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvFrame {
    pub kind: FrameKind,
    /// Milliseconds, decode time (RTMP timestamp).
    pub timestamp: u32,
    /// The FLV tag body (see the crate docs).
    pub payload: bytes::Bytes,
    pub keyframe: bool,
    pub sequence_header: bool,
}

/// The kind every Prism crate shares (prism-media), under this crate's name for it. TS as
/// mapped here carries audio and video only: the demuxer never produces `Data` and the
/// muxer drops it (see [`mux::Muxer::push_frame`]).
pub use prism_media::MediaKind as FrameKind;
