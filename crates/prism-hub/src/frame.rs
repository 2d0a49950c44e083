use bytes::Bytes;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    Audio,
    Video,
    /// Script data (onMetaData and friends).
    Data,
}

impl FrameKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FrameKind::Audio => "audio",
            FrameKind::Video => "video",
            FrameKind::Data => "data",
        }
    }
}

/// One media message as published. The payload is shared by every subscriber, never copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    /// Milliseconds; monotonic per stream once the hub has normalized it.
    pub timestamp: u32,
    pub payload: Bytes,
    pub keyframe: bool,
    pub sequence_header: bool,
    pub disposable: bool,
}

impl Frame {
    /// Metadata and sequence headers: small, needed to decode anything, never dropped.
    pub fn is_config(&self) -> bool {
        self.kind == FrameKind::Data || self.sequence_header
    }

    pub fn media(kind: FrameKind, timestamp: u32, payload: Bytes) -> Self {
        Frame {
            kind,
            timestamp,
            payload,
            keyframe: false,
            sequence_header: false,
            disposable: false,
        }
    }
}
