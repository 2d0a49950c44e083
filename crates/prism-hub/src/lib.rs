//! The live-stream hub: one entry per live stream (app/key), the caches a late joiner needs
//! (metadata, sequence headers, the current GOP), and one bounded queue per subscriber with
//! GOP-aware drops, so a slow subscriber never slows the publisher or anyone else.
//!
//! The hub knows frames, not protocols: it must not know which transport a publisher or
//! subscriber uses, nor anything about RTMP chunks, sockets or metrics exporters.
//!
//! Nor does it know a runtime or a clock: callers pass `now` wherever time matters, and
//! whoever owns the hub ends reconnect grace windows by sleeping until [`Hub::poll_timeout`]
//! and calling [`Hub::handle_timeout`] (looking again on [`Hub::timer_changed`]).

mod frame;
mod queue;
mod stream;
mod timestamps;

pub use frame::{EgressCache, Frame, FrameKind, EGRESS_SLOTS};
pub use queue::{DropReason, PushOutcome, QueueLimits, SubQueue};
pub use stream::{
    Hub, HubConfig, PublishError, PublishHandle, RecvStatus, Stream, SubCloser, SubStats,
    Subscription,
};
pub use timestamps::{TimestampNormalizer, Track};
