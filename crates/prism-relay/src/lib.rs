//! Tokio drivers between the byte streams transports accept and the hub: RTMP sessions
//! (publish and play) over any `AsyncRead + AsyncWrite`, and push targets that reconnect.
//!
//! A transport (TCP, TLS, HTTP tunnel, ...) accepts connections and calls
//! [`serve_rtmp`]; nothing here knows which transport a byte stream came from beyond the
//! name it is given for metrics. The protocol itself lives in prism-rtmp, the fan-out in
//! prism-hub.

mod context;
mod dial;
mod drive;
mod egress;
mod ingest;
mod push;
mod reload;
mod server;

pub use context::Relay;
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
pub use push::{spawn_targets, Backoff};
pub use server::serve_rtmp;
