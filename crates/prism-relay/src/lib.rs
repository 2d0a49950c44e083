//! Tokio drivers between the byte streams transports accept and the hub: RTMP sessions
//! (publish and play) over any `AsyncRead + AsyncWrite`, and the push supervisor (one task
//! per push target, reconnecting). [`Relay`] is what transports hold: they reach the hub,
//! the metrics and the control plane only through its methods.
//!
//! A transport (TCP, TLS, HTTP tunnel, ...) accepts connections and calls
//! [`serve_rtmp`]; nothing here knows which transport a byte stream came from beyond the
//! name it is given for metrics. The protocol itself lives in prism-rtmp, the fan-out in
//! prism-hub, the egress plumbing in prism-egress. What is allowed, what is live and what a
//! reload changes is decided in prism-control (no protocol there): this crate asks it, then
//! moves the media. It must not decide policy itself (access, limits, reload diffs).
//!
//! Modules, each depending only on those listed before it: `dial`, `egress`, `handshake`
//! (leaves); `drive` (the one connection driver); `relay` (the [`Relay`] value, delegating
//! to the control plane); `push` (the supervisor); `ingest` (publish/play);
//! `reload` (applies a reload plan); `server` (RTMP sessions).

pub mod audio;
mod dial;
mod drive;
mod egress;
mod handshake;
mod ingest;
mod pull_rtmp;
mod push;
mod relay;
mod reload;
pub mod rtmpe;
mod server;
mod source;
mod tracks;

pub use dial::{
    BoxedStream, ByteStream, ConnError, DialError, DialFuture, Dialer, SinkFuture, SinkReport,
    TargetSink,
};
pub use drive::{Driver, Exit, Flow, Output};
pub use ingest::{Player, Publisher};
pub use prism_control::{
    AddTargetError, ConnInfo, ConnPermit, InFlightGuard, LimitExceeded, Refusal, RemoveTargetError,
    ShutdownReport, StreamRequest, StreamSnapshot, TargetOrigin, TargetSnapshot, TargetState,
};
pub use prism_control::{ReloadReport, StreamChanges};
pub use prism_metrics::ErrorReason;
pub use push::{spawn_targets, Backoff};
pub use relay::{Relay, StreamOutput};
pub use server::serve_rtmp;
// Pulled sources (issue 14).
pub use pull_rtmp::RtmpPuller;
pub use source::{
    unsupported_scheme_message, AddSourceError, Demand, PullFuture, SourcePuller, SourceSession,
    SourceSnapshot, SourceState,
};
pub use tracks::track_ids;
