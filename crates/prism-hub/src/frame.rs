use bytes::Bytes;
use std::any::Any;
use std::fmt;
use std::sync::{Arc, RwLock};

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

/// A slot where egress code keeps a serialized form of a frame (such as its RTMP chunks),
/// computed by the first subscriber that needs it and shared by the rest. The hub never
/// looks inside; subscribers receive frames as `Arc<Frame>`, so the slot is shared. The hub
/// empties it ([`Frame::drop_egress_cache`]) once the frame is past the live edge, so the
/// GOP cache does not keep a second copy of every frame; a late taker computes it again.
/// A read-write lock: every subscriber reads it, on both workers at once; only the first
/// (and the hub's drop) write.
#[derive(Default)]
pub struct EgressCache(RwLock<Option<Arc<dyn Any + Send + Sync>>>);

impl EgressCache {
    /// The cached value, computing it with `init` if the slot is empty. None if the slot
    /// holds a value of another type.
    pub fn get_or_init<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Option<Arc<T>> {
        let cached = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        let v = match cached {
            Some(v) => v,
            None => self.write().get_or_insert_with(|| Arc::new(init())).clone(),
        };
        v.downcast().ok()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Option<Arc<dyn Any + Send + Sync>>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Frame {
    /// Empties the egress cache and gives its bytes back to the memory budget (the charge
    /// is the payload's again). Holders of the cached value keep it until they drop it.
    pub fn drop_egress_cache(&self) {
        let mut slot = self.wire.write();
        if slot.take().is_some() {
            self.mem.set(self.payload.len());
        }
    }
}

impl fmt::Debug for EgressCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.read().map_or(true, |v| v.is_some()) {
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
