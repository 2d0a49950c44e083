//! The one vocabulary for what a media frame carries, shared by every crate that hands
//! frames across a boundary: the wire crates (prism-rtmp, prism-mpegts), the hub, the relay
//! and the transports. One type means no conversions between per-crate copies of it.
//!
//! It must stay dependency-free and know no protocol or hub: RTMP chunk stream ids and
//! message types stay in prism-rtmp, TS stream types in prism-mpegts, queueing in the hub.
#![no_std]

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
    /// Script data (onMetaData and friends).
    Data,
}

impl MediaKind {
    /// Lower-case name, as used in metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Data => "data",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(MediaKind::Audio.as_str(), "audio");
        assert_eq!(MediaKind::Video.as_str(), "video");
        assert_eq!(MediaKind::Data.as_str(), "data");
    }
}
