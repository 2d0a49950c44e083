//! The live-stream hub: one entry per live stream (app/key), the caches a late joiner needs
//! (metadata, sequence headers, the current GOP), and one bounded queue per subscriber with
//! GOP-aware drops, so a slow subscriber never slows the publisher or anyone else.
//!
//! The hub knows frames, not protocols: it must not know which transport a publisher or
//! subscriber uses, nor anything about RTMP chunks, sockets or metrics exporters.

mod frame;
mod queue;
mod stream;
mod timestamps;

pub use frame::{EgressCache, Frame, FrameKind};
pub use queue::{DropReason, PushOutcome, QueueLimits, SubQueue};
pub use stream::{
    Hub, HubConfig, PublishError, PublishHandle, RecvStatus, Stream, SubCloser, SubStats,
    Subscription,
};
pub use timestamps::{TimestampNormalizer, Track};
