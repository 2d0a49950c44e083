use bytes::Bytes;
use std::any::Any;
use std::fmt;
use std::sync::OnceLock;

/// What a frame carries: the kind every crate shares (prism-media), under the hub's name
/// for it, so publishers and egress code pass it through without converting.
pub use prism_media::MediaKind as FrameKind;

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
    /// Egress code's once-per-frame serialization, shared by every subscriber.
    pub wire: EgressCache,
    /// The frame's bytes charged to the process's memory budget (by the hub when published),
    /// credited back when the last holder drops the frame.
    pub mem: prism_mem::MemCharge,
}

/// Slots where egress code keeps serialized forms of a frame (its RTMP chunks, its RTP
/// payloads), each computed by the first subscriber that needs it and shared by the rest.
/// The hub never looks inside; subscribers receive frames as `Arc<Frame>`, so the slots are
/// shared. One value per type, in [`EGRESS_SLOTS`] slots: a stream watched over RTMP and
/// WebRTC keeps both forms.
///
/// Set once and never emptied, so every later read is a lock-free load returning a
/// reference (no lock, no `Arc` clone per subscriber per message on the fan-out path). To
/// keep the GOP cache from holding a second copy of every frame, the hub instead replaces a
/// cached frame past the live edge by a [`Frame::cold_copy`] (same payload, empty slots); a
/// late taker serializes that copy again.
#[derive(Default)]
pub struct EgressCache([OnceLock<Box<dyn Any + Send + Sync>>; EGRESS_SLOTS]);

/// How many serialized forms a frame can keep (one per egress kind that caches one).
pub const EGRESS_SLOTS: usize = 3;

impl EgressCache {
    /// The cached value of type `T`, computing it with `init` in the first empty slot if
    /// there is none (concurrent callers wait for the first one's `init`). None if every
    /// slot holds a value of another type.
    pub fn get_or_init<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Option<&T> {
        let mut init = Some(init);
        for slot in &self.0 {
            // A slot another type won (even while this call waited for it) is skipped;
            // `init` runs at most once, in the slot this call fills, which then holds a `T`
            // (the unit is never stored: a taken `init` returned from the loop).
            let v = slot.get_or_init(|| match init.take() {
                Some(f) => Box::new(f()),
                None => Box::new(()),
            });
            if let Some(v) = v.downcast_ref() {
                return Some(v);
            }
        }
        None
    }

    /// Whether a value was cached.
    pub fn is_set(&self) -> bool {
        self.0.iter().any(|s| s.get().is_some())
    }
}

impl Frame {
    /// The same frame with an empty egress cache, sharing the payload (no copy): what the
    /// GOP cache keeps once the frame is past the live edge. The payload's memory charge
    /// moves to the copy (the cache's longer-lived holder); this frame keeps only the
    /// charge of its serialization, credited back when its last holder (a subscriber's
    /// queue, an egress connection) drops it.
    pub fn cold_copy(&self) -> Frame {
        Frame {
            kind: self.kind,
            timestamp: self.timestamp,
            payload: self.payload.clone(),
            keyframe: self.keyframe,
            sequence_header: self.sequence_header,
            disposable: self.disposable,
            wire: EgressCache::default(),
            mem: self.mem.split_off(self.payload.len()),
        }
    }
}

impl fmt::Debug for EgressCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() {
            "EgressCache(set)"
        } else {
            "EgressCache"
        })
    }
}

/// A clone starts empty: the cache belongs to one shared frame.
impl Clone for EgressCache {
    fn clone(&self) -> Self {
        EgressCache::default()
    }
}

/// Caches never make frames differ.
impl PartialEq for EgressCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for EgressCache {}

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
            wire: EgressCache::default(),
            mem: Default::default(),
        }
    }
}
