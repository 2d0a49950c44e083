//! RTMP messages as the chunk layer carries them, and the protocol control messages.

use bytes::Bytes;

/// Message type ids (RTMP spec 5.4, 7.1). Kept as constants on an open newtype so an
/// unknown id is carried, not rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType(pub u8);

impl MessageType {
    pub const SET_CHUNK_SIZE: Self = Self(1);
    pub const ABORT: Self = Self(2);
    pub const ACKNOWLEDGEMENT: Self = Self(3);
    pub const USER_CONTROL: Self = Self(4);
    pub const WINDOW_ACK_SIZE: Self = Self(5);
    pub const SET_PEER_BANDWIDTH: Self = Self(6);
    pub const AUDIO: Self = Self(8);
    pub const VIDEO: Self = Self(9);
    pub const DATA_AMF3: Self = Self(15);
    pub const SHARED_OBJECT_AMF3: Self = Self(16);
    pub const COMMAND_AMF3: Self = Self(17);
    pub const DATA_AMF0: Self = Self(18);
    pub const SHARED_OBJECT_AMF0: Self = Self(19);
    pub const COMMAND_AMF0: Self = Self(20);
    pub const AGGREGATE: Self = Self(22);
}

/// One complete message: what the chunk decoder yields and the chunk encoder takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// Absolute timestamp in milliseconds (deltas already resolved; 32-bit, wraps).
    pub timestamp: u32,
    pub type_id: MessageType,
    pub stream_id: u32,
    pub payload: Bytes,
}

/// User control event types (RTMP spec 7.1.7).
pub mod user_control {
    pub const STREAM_BEGIN: u16 = 0;
    pub const STREAM_EOF: u16 = 1;
    pub const STREAM_DRY: u16 = 2;
    pub const SET_BUFFER_LENGTH: u16 = 3;
    pub const STREAM_IS_RECORDED: u16 = 4;
    pub const PING_REQUEST: u16 = 6;
    pub const PING_RESPONSE: u16 = 7;
}

/// Chunk stream ids Prism uses when sending (the same choices as ffmpeg and nginx-rtmp).
pub mod csid {
    pub const CONTROL: u32 = 2;
    pub const COMMAND: u32 = 3;
    pub const AUDIO: u32 = 4;
    pub const VIDEO: u32 = 6;
    pub const DATA: u32 = 5;
}

/// Largest chunk size the spec allows (31 bits).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Chunk size in force before any Set Chunk Size.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
