//! Sans-I/O pieces of WebRTC that Prism owns, next to the WebRTC stack (str0m, used by
//! prism-transport-webrtc): what a WHIP/WHEP request may be ([`signal`]), the bounds an SDP
//! offer must keep and what it must offer ([`sdp`]), H.264, AV1 and Opus between the
//! FLV-style frames of the hub and RTP ([`h264`], [`av1`], [`opus`]), the timestamp mapping
//! both ways with wrap handling ([`clock`]), and the first look at datagrams on the shared
//! media port ([`demux`]).
//!
//! Egress (WHEP): video frames become RTP payloads here, once per stream for all viewers
//! ([`rtp`]: RFC 6184 single NAL / FU-A for H.264, by prism-rtsp's packetizer, with SPS/PPS
//! before every IDR; the AOM's AV1 payload format, with the sequence header before every
//! keyframe); str0m numbers, encrypts and retransmits them per viewer. Ingest (WHIP): str0m
//! depacketizes H.264 into Annex B access units, which become AVCC frames with a sequence
//! header built from the parameter sets.
//!
//! No sockets, no clock, no runtime: bytes and times in, values out. Everything here reads
//! untrusted bytes and returns `None`/errors on anything malformed; it never panics.

pub mod av1;
pub mod clock;
pub mod demux;
pub mod h264;
pub mod opus;
pub mod rtp;
pub mod sdp;
pub mod signal;
