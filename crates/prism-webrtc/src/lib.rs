//! Sans-I/O pieces of WebRTC that Prism owns, next to the WebRTC stack (str0m, used by
//! prism-transport-webrtc): what a WHIP/WHEP request may be ([`signal`]), the bounds an SDP
//! offer must keep and what it must offer ([`sdp`]), H.264 and Opus between the FLV-style
//! frames of the hub and the access units / packets the stack packetizes into RTP
//! ([`h264`], [`opus`]), the timestamp mapping both ways with wrap handling ([`clock`]),
//! and the first look at datagrams on the shared media port ([`demux`]).
//!
//! RTP packetization itself (RFC 6184 single NAL / STAP-A / FU-A, RFC 7587 Opus) is the
//! stack's: str0m packetizes Annex B access units and hands back depacketized ones, so
//! this crate turns FLV's length-prefixed NAL units into Annex B with SPS/PPS before every
//! IDR, and back into AVCC frames with a sequence header built from the parameter sets.
//!
//! No sockets, no clock, no runtime: bytes and times in, values out. Everything here reads
//! untrusted bytes and returns `None`/errors on anything malformed; it never panics.

pub mod av1;
pub mod clock;
pub mod demux;
pub mod h264;
pub mod opus;
pub mod sdp;
pub mod signal;
