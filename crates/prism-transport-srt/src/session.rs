//! One SRT caller after its handshake: the stream id decides publish or play.

use crate::media::{self, IngestEnd, SendEnd};
use crate::stats::{self, Direction};
use crate::streamid::{self, Mode};
use futures::{SinkExt, StreamExt};
use prism_config::SrtConfig;
use prism_hub::PublishError;
use prism_metrics::ErrorReason;
use prism_relay::{ConnInfo, Refusal, Relay, StreamRequest};
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::SrtIncoming;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// A caller whose conclusion never reaches the library (lost, or refused by it) is given up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the (single) caller of a per-caller listener.
pub(crate) async fn serve(
    mut incoming: SrtIncoming,
    peer: SocketAddr,
    relay: Arc<Relay>,
    config: Arc<SrtConfig>,
    established: Arc<AtomicBool>,
) {
    let Ok(Some(request)) = tokio::time::timeout(REQUEST_TIMEOUT, incoming.incoming().next()).await
    else {
        return;
    };
    established.store(true, Ordering::Relaxed);
    // A graceful shutdown waits for the session to end with its stream.
    let _in_flight = relay.track(|| format!("srt session from {peer}"));
    let conn = relay.connection_metrics(crate::TRANSPORT);
    conn.accepted.inc();
    let active = conn.active;
    active.inc();
    let _active = scopeguard(move || active.dec());
    let info = ConnInfo {
        peer,
        transport: crate::TRANSPORT,
    };
    let sid = request.stream_id().map(|s| s.as_str()).unwrap_or_default();
    let wanted = match streamid::parse(sid, config.default_stream.as_deref()) {
        Ok(w) => w,
        Err(e) => {
            warn!(%peer, transport = crate::TRANSPORT, "refused SRT caller: {e}");
            refused(&relay, ErrorReason::BadStreamId);
            let _ = request
                .reject(RejectReason::Server(ServerRejectReason::BadRequest))
                .await;
            return;
        }
    };
    let label = format!("{}/{}", wanted.app, wanted.key);
    match wanted.mode {
        Mode::Publish => {
            let publisher = match relay.publish(stream_request(&wanted), &info).await {
                Ok(p) => p,
                Err(r) => {
                    refused(&relay, ErrorReason::PublishRefused);
                    let _ = request
                        .reject(RejectReason::Server(reject_reason(&r)))
                        .await;
                    return;
                }
            };
            let mut socket = match request.accept(None).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(%peer, transport = crate::TRANSPORT, "SRT accept failed: {e}");
                    publisher.unpublish();
                    return;
                }
            };
            let label = publisher.stream().name().to_owned();
            let _stats = stats::watch(&relay, &mut socket, &label, Direction::Ingest);
            let end = media::ingest(&mut socket, publisher, media::demux_charge(&relay)).await;
            info!(%peer, transport = crate::TRANSPORT, stream = %label, ?end, "SRT publisher gone");
            if end == IngestEnd::Lost {
                relay
                    .connection_error(crate::TRANSPORT, ErrorReason::Lost)
                    .inc();
            }
        }
        Mode::Play => {
            let mut player = match relay.play(stream_request(&wanted), &info).await {
                Ok(p) => p,
                Err(r) => {
                    refused(&relay, ErrorReason::PlayRefused);
                    let _ = request
                        .reject(RejectReason::Server(reject_reason(&r)))
                        .await;
                    return;
                }
            };
            let mut socket = match request.accept(None).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(%peer, transport = crate::TRANSPORT, "SRT accept failed: {e}");
                    return;
                }
            };
            let _stats = stats::watch(&relay, &mut socket, &label, Direction::Play);
            let end = media::send_stream(
                &mut socket,
                &player.sub,
                Some(relay.aac_audio(player.sub.stream())),
                |_| {},
                || {},
            )
            .await;
            player.report_drops();
            info!(%peer, transport = crate::TRANSPORT, stream = %label, ?end, "SRT player gone");
            if matches!(end, SendEnd::StreamEnded) {
                // Let the peer read what is queued before it hears the close.
                let _ = tokio::time::timeout(Duration::from_secs(2), socket.close()).await;
            }
        }
    }
}

fn stream_request(w: &streamid::StreamRequest) -> StreamRequest<'_> {
    StreamRequest {
        app: &w.app,
        key: &w.key,
        query: &w.query,
    }
}

/// The SRT rejection code (HTTP-like, 2xxx) for a refused publish or play.
fn reject_reason(r: &Refusal) -> ServerRejectReason {
    match r {
        Refusal::Hub(PublishError::AlreadyLive(_)) => ServerRejectReason::Conflict,
        Refusal::Unauthorized | Refusal::WebhookRefused | Refusal::WebhookError => {
            ServerRejectReason::Unauthorized
        }
        Refusal::ForbiddenAddress | Refusal::PlayDisabled => ServerRejectReason::Forbidden,
        Refusal::TooManyStreams => ServerRejectReason::Overload,
        Refusal::OutOfMemory => ServerRejectReason::Overload,
        _ => ServerRejectReason::Unacceptable,
    }
}

fn refused(relay: &Relay, reason: ErrorReason) {
    relay.connection_error(crate::TRANSPORT, reason).inc();
}

/// Runs `f` on drop.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
