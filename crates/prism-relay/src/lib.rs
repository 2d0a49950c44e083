//! Tokio drivers between the byte streams transports accept and the hub: RTMP sessions
//! (publish and play) over any `AsyncRead + AsyncWrite`, and push targets that reconnect.
//!
//! A transport (TCP, TLS, HTTP tunnel, ...) accepts connections and calls
//! [`serve_rtmp`]; nothing here knows which transport a byte stream came from beyond the
//! name it is given for metrics. The protocol itself lives in prism-rtmp, the fan-out in
//! prism-hub.

mod access;
mod context;
mod dial;
mod drive;
mod egress;
mod ingest;
mod limits;
mod push;
mod reload;
mod server;
mod shutdown;
mod status;

pub use access::{Refusal, StreamRequest};
pub use context::{ConnInfo, Relay};
pub use dial::{
    BoxedStream, ByteStream, ConnError, DialError, DialFuture, Dialer, SinkFuture, SinkReport,
    TargetSink,
};
pub use drive::{Driver, Exit, Flow, Output};
pub use ingest::{Player, Publisher};
pub use limits::{ConnPermit, LimitExceeded};
pub use push::{spawn_targets, Backoff};
pub use reload::{ReloadReport, StreamChanges};
pub use server::serve_rtmp;
pub use shutdown::{InFlightGuard, ShutdownReport};
pub use status::{
    AddTargetError, RemoveTargetError, StreamSnapshot, TargetOrigin, TargetSnapshot, TargetState,
};

/// The metrics label of a hub drop reason. An exhaustive match, so a new hub reason
/// must be given its label here (prism-metrics does not depend on the hub).
pub(crate) fn drop_reason(r: prism_hub::DropReason) -> prism_metrics::DropReason {
    use prism_hub::DropReason as H;
    use prism_metrics::DropReason as M;
    match r {
        H::QueueFull => M::QueueFull,
        H::WaitingKeyframe => M::WaitingKeyframe,
        H::AudioOverflow => M::AudioOverflow,
    }
}
