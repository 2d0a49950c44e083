//! The seam between push targets and transports: each transport crate provides a [`Dialer`]
//! for its URL scheme, and push targets pick one by the scheme of their URL.

use prism_config::ResolvedTarget;
use prism_hub::Subscription;
use prism_metrics::ErrorReason;
use prism_rtmp::url::RtmpUrl;
use prometheus::{IntCounter, IntGauge};
use std::future::Future;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};

/// Any duplex byte stream a transport produces (TCP, TLS, ...).
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T> ByteStream for T where T: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

pub type BoxedStream = Box<dyn ByteStream>;

/// Why a connection, a dial or a push failed: `reason` is the metrics label
/// ([`ErrorReason::Connect`], [`ErrorReason::TlsVerify`], [`ErrorReason::TooSlow`], ...),
/// `detail` a line for the log (no secrets).
#[derive(Debug)]
pub struct ConnError {
    pub reason: ErrorReason,
    pub detail: String,
}

/// A dial's error is a connection error.
pub type DialError = ConnError;

impl ConnError {
    pub fn new(reason: ErrorReason, detail: impl ToString) -> Self {
        ConnError {
            reason,
            detail: detail.to_string(),
        }
    }

    /// The egress engine's verdict on a player or target.
    pub fn failed(f: prism_egress::Failure) -> Self {
        let reason = match f {
            prism_egress::Failure::TooSlow => ErrorReason::TooSlow,
            prism_egress::Failure::WriteTimeout => ErrorReason::WriteTimeout,
            // `Failure` is non-exhaustive; a new verdict gets its own word here (the test
            // below keeps the two vocabularies equal).
            _ => ErrorReason::Io,
        };
        ConnError::new(reason, f.detail())
    }
}

pub type DialFuture<'a> = Pin<Box<dyn Future<Output = Result<BoxedStream, DialError>> + Send + 'a>>;

/// Opens outgoing byte streams for one URL scheme.
pub trait Dialer: Send + Sync + 'static {
    /// The URL scheme served ("rtmp", "rtmps", ...).
    fn scheme(&self) -> &'static str;
    /// Connects to `url`'s host and port; `target` carries per-target options (CA, ...).
    /// Timeouts are the caller's.
    fn dial<'a>(&'a self, url: &'a RtmpUrl, target: &'a ResolvedTarget) -> DialFuture<'a>;
    /// Whether the streams `dial` returns did the RTMP handshake already (RTMPE does its
    /// own): the push session then starts at `connect`.
    fn handshakes(&self) -> bool {
        false
    }
}

pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DialError>> + Send + 'a>>;

/// Pushes a stream to a destination that is not an RTMP server (an SRT listener, ...):
/// given the target's subscription, connect and forward frames until the stream ends (Ok)
/// or the connection fails. Reconnects and backoff are the caller's; the sink keeps the
/// target's metrics current through its [`SinkReport`], queue and drops included (from
/// its driver's [`Output::report`](crate::Output::report), as push targets do).
pub trait TargetSink: Send + Sync + 'static {
    /// The URL scheme served ("srt", ...).
    fn scheme(&self) -> &'static str;
    fn run<'a>(
        &'a self,
        sub: &'a Subscription,
        target: &'a ResolvedTarget,
        report: &'a SinkReport,
    ) -> SinkFuture<'a>;
}

/// The metrics a running sink keeps current.
pub struct SinkReport {
    /// `prism_target_up`: set 1 once the destination accepts the stream.
    pub up: IntGauge,
    /// `prism_target_bytes_sent_total`.
    pub bytes_sent: IntCounter,
    /// The push supervisor's export of the target's queue depth and drops.
    queue: Box<dyn Fn(&Subscription) + Send + Sync>,
}

impl SinkReport {
    pub(crate) fn new(
        up: IntGauge,
        bytes_sent: IntCounter,
        queue: impl Fn(&Subscription) + Send + Sync + 'static,
    ) -> Self {
        SinkReport {
            up,
            bytes_sent,
            queue: Box::new(queue),
        }
    }

    /// Exports the subscription's queue depth (`prism_target_queue_bytes`) and any drops
    /// not reported yet (`prism_target_dropped_frames_total`): call it from the driver's
    /// [`Output::report`](crate::Output::report).
    pub fn report(&self, sub: &Subscription) {
        (self.queue)(sub)
    }
}

impl std::fmt::Debug for SinkReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkReport")
            .field("up", &self.up.get())
            .field("bytes_sent", &self.bytes_sent.get())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for dyn TargetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TargetSink({})", self.scheme())
    }
}

impl std::fmt::Debug for dyn Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dialer({})", self.scheme())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_failures_keep_their_words() {
        for f in [
            prism_egress::Failure::TooSlow,
            prism_egress::Failure::WriteTimeout,
        ] {
            assert_eq!(ConnError::failed(f).reason.as_str(), f.as_str());
        }
    }
}
