//! Serves one RTMP connection (publisher or player) over any byte stream.

use crate::access::{Refusal, StreamRequest};
use crate::conn::{
    merge_deadline, read_some, sleep_until_opt, write_some, Conn, MERGE_FLUSH_BYTES,
};
use crate::context::{epoch_ms, handshake_random, ConnInfo, Relay};
use crate::egress::{media_kind, shared_body};
use crate::ingest::{Player, Publisher};
use prism_hub::{Frame, FrameKind, PublishError, RecvStatus};
use prism_rtmp::chunk::DecoderLimits;
use prism_rtmp::session::{MediaKind, ServerEvent, ServerSession, SessionConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::{debug, info};

/// Queued output above which a player stops taking frames from its hub queue (the hub queue,
/// with its drop policy, is where a slow player's backlog belongs).
const PLAYER_HIGH_WATER: usize = 256 * 1024;
/// Queued output above which the connection stops reading. Almost every message a peer sends
/// can queue a reply (pings, commands), so a peer that sends without reading would otherwise
/// grow the queue without bound. Well above what a player queues (high water plus one batch
/// of frames); a peer stuck here is closed by the write timeout.
const MAX_PENDING_READING: usize = 1024 * 1024;
/// How often a player's drops and overflow verdict are checked while its output is blocked.
const STATS_INTERVAL: Duration = Duration::from_millis(250);
/// A write that makes no progress for this long closes the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

struct Publishing {
    stream_id: u32,
    publisher: Publisher,
}

struct Playing {
    stream_id: u32,
    player: Player,
}

/// Runs one RTMP connection to its end. Errors are logged and counted here.
pub async fn serve_rtmp<S>(io: S, info: ConnInfo, relay: Arc<Relay>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    // A graceful shutdown waits for the connection (a player's end of stream to flush).
    let _in_flight = relay.track(|| format!("{} connection from {}", info.transport, info.peer));
    let m = &relay.metrics;
    m.connections_total
        .with_label_values(&[info.transport])
        .inc();
    m.connections_active
        .with_label_values(&[info.transport])
        .inc();
    let result = run(io, info, &relay).await;
    m.connections_active
        .with_label_values(&[info.transport])
        .dec();
    match result {
        Ok(()) => debug!(peer = %info.peer, transport = info.transport, "connection closed"),
        Err(e) => {
            m.connection_errors_total
                .with_label_values(&[info.transport, e.reason])
                .inc();
            info!(peer = %info.peer, transport = info.transport, reason = e.reason, "connection closed: {}", e.detail);
        }
    }
}

pub(crate) struct ConnError {
    pub reason: &'static str,
    pub detail: String,
}

impl ConnError {
    pub(crate) fn new(reason: &'static str, detail: impl ToString) -> Self {
        ConnError {
            reason,
            detail: detail.to_string(),
        }
    }
}

async fn run<S>(io: S, info: ConnInfo, relay: &Arc<Relay>) -> Result<(), ConnError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let config = relay.config();
    let session_config = SessionConfig {
        chunk_size: config.rtmp.chunk_size,
        limits: DecoderLimits {
            max_message_size: config.rtmp.max_message_bytes,
            max_chunk_size: config.rtmp.max_chunk_size,
            ..DecoderLimits::default()
        },
        ..SessionConfig::default()
    };
    let mut session = ServerSession::new(
        session_config,
        handshake_random(),
        epoch_ms(),
        Instant::now().into_std(),
    );
    let mut conn = Conn::new(io);
    let handshake_deadline = Instant::now() + config.rtmp.handshake_timeout;
    let mut last_read = Instant::now();
    let mut publishing: Option<Publishing> = None;
    let mut playing: Option<Playing> = None;
    let mut frames: Vec<Arc<Frame>> = Vec::new();
    let mut check = tokio::time::interval(STATS_INTERVAL);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let merge = config.player.write_merge;
    // Set when held output started waiting (see push.rs's Live); cleared once written.
    let mut hold_until: Option<Instant> = None;

    let result = loop {
        conn.queue(session.out());
        let write_deadline = conn.write_deadline(WRITE_TIMEOUT);
        let deadline = if !session.is_connected() {
            Some(handshake_deadline)
        } else if playing.is_some() {
            // Players may legitimately send nothing for a long time (an acknowledgement per
            // window at most): only their write progress counts.
            write_deadline
        } else {
            let idle = last_read + config.rtmp.idle_timeout;
            Some(write_deadline.map_or(idle, |w| w.min(idle)))
        };
        // A hold ended: what arrived meanwhile goes out with what was held. A stream still
        // flowing stays on the merge grid, woken by its timer alone (the hub queue is looked
        // at without registering); an empty look waits for the hub's wake-up again.
        if hold_until.is_some_and(|t| t <= Instant::now()) {
            let mut took = false;
            if let Some(p) = playing.as_mut() {
                if conn.pending.len() < PLAYER_HIGH_WATER {
                    if let Some(RecvStatus::Frames) = p.player.sub.try_recv(&mut frames, 256 * 1024)
                    {
                        send_frames(&mut session, p.stream_id, &mut frames);
                        conn.queue(session.out());
                        took = true;
                    }
                }
            }
            if let Err(e) = conn.write_now().await {
                break Err(ConnError::new("io", e));
            }
            hold_until =
                (took && conn.pending.is_empty()).then(|| merge_deadline(Instant::now(), merge));
        }
        // While holding, neither the hub queue (its frames wait there without waking us)
        // nor, below MERGE_FLUSH_BYTES, the write is looked at.
        let holding = hold_until.is_some();
        let hold_writes = holding && conn.pending.len() < MERGE_FLUSH_BYTES;
        let want_frames = playing.is_some() && conn.pending.len() < PLAYER_HIGH_WATER && !holding;
        tokio::select! {
            read = read_some(&mut conn.reader, &mut conn.input), if conn.pending.len() < MAX_PENDING_READING => {
                match read {
                    Ok(0) => break Ok(()),
                    Ok(_) => {
                        last_read = Instant::now();
                        if let Err(e) = session.handle_input(&mut conn.input, last_read.into_std()) {
                            break Err(ConnError::new("protocol", e));
                        }
                        let mut denied = None;
                        while let Some(ev) = session.poll_event() {
                            denied = handle_event(ev, &mut session, relay, &info, &mut publishing, &mut playing).await;
                            if denied.is_some() {
                                break;
                            }
                        }
                        // A client refused for who it is gets its onStatus, then the connection
                        // closes: it cannot try token after token on one connection.
                        if let Some(r) = denied {
                            conn.queue(session.out());
                            let _ = tokio::time::timeout(Duration::from_secs(2), conn.flush_all()).await;
                            info!(peer = %info.peer, transport = info.transport, reason = r.reason(), "closing a refused connection");
                            break Ok(());
                        }
                    }
                    Err(e) => break Err(ConnError::new("io", e)),
                }
            }
            written = write_some(&mut conn.writer, &conn.pending), if !conn.pending.is_empty() && !hold_writes => {
                match written {
                    Ok(n) => conn.wrote(n),
                    Err(e) => break Err(ConnError::new("io", e)),
                }
            }
            status = recv_frames(&playing, &mut frames), if want_frames => {
                let Some(p) = playing.as_mut() else { continue };
                match status {
                    RecvStatus::Frames => {
                        send_frames(&mut session, p.stream_id, &mut frames);
                        conn.queue(session.out());
                        // Drops happen while the player lags; the next batch reports them.
                        p.player.report_drops();
                        if !merge.is_zero() {
                            hold_until = Some(merge_deadline(Instant::now(), merge));
                            continue;
                        }
                        if let Err(e) = conn.write_now().await {
                            break Err(ConnError::new("io", e));
                        }
                    }
                    RecvStatus::Ended => {
                        session.end_play(p.stream_id);
                        playing = None;
                        conn.queue(session.out());
                        let _ = tokio::time::timeout(Duration::from_secs(2), conn.flush_all()).await;
                        break Ok(());
                    }
                    RecvStatus::TooSlow => {
                        break Err(ConnError::new("player_too_slow", "player stayed over its queue budget"));
                    }
                }
            }
            // An operator kicked the stream (admin API): it has ended; close the connection.
            _ = kicked(&publishing), if publishing.is_some() => {
                info!(peer = %info.peer, transport = info.transport, "closing the connection of a kicked publisher");
                break Ok(());
            }
            // Shutting down: a connection serving no stream has nothing to finish (those that
            // do end with their stream).
            _ = relay.closing(), if publishing.is_none() && playing.is_none() => break Ok(()),
            // While the output is above the high-water mark the queue is not polled: check the
            // hub's verdict and drops on a timer so a stalled player is shed on time. Only
            // then: a timer per player is 4 wake-ups a second, times thousands of players.
            _ = check.tick(), if playing.is_some() && conn.pending.len() >= PLAYER_HIGH_WATER => {
                if let Some(p) = playing.as_mut() {
                    p.player.report_drops();
                    if p.player.sub.is_too_slow() {
                        break Err(ConnError::new("player_too_slow", "player stayed over its queue budget"));
                    }
                }
            }
            // The end of a hold is handled at the top of the loop.
            _ = sleep_until_opt(hold_until), if holding => {}
            _ = sleep_until_opt(deadline) => {
                break Err(if !session.is_connected() {
                    ConnError::new("handshake_timeout", "handshake or connect did not complete in time")
                } else if write_deadline.is_some_and(|w| w <= Instant::now()) {
                    ConnError::new("write_timeout", "peer stopped reading")
                } else {
                    ConnError::new("idle_timeout", "no data from peer")
                });
            }
        }
    };
    // Dropping a player updates its metrics; dropping a publisher without unpublish starts the stream's reconnect grace window.
    drop((publishing, playing));
    result
}

/// Encodes hub frames for a player (chunked bodies shared with every other connection).
fn send_frames(session: &mut ServerSession, stream_id: u32, frames: &mut Vec<Arc<Frame>>) {
    let chunk_size = session.chunk_size();
    for f in frames.drain(..) {
        let kind = media_kind(f.kind);
        match shared_body(&f, kind, chunk_size) {
            Some(body) => session.send_media_shared(stream_id, kind, f.timestamp, &f.payload, body),
            None => session.send_media(stream_id, kind, f.timestamp, &f.payload),
        }
    }
}

async fn kicked(publishing: &Option<Publishing>) {
    match publishing {
        Some(p) => p.publisher.kicked().await,
        None => std::future::pending().await,
    }
}

async fn recv_frames(playing: &Option<Playing>, frames: &mut Vec<Arc<Frame>>) -> RecvStatus {
    match playing {
        Some(p) => p.player.sub.recv(frames, 256 * 1024).await,
        None => std::future::pending().await,
    }
}

/// Handles one session event. Publish and play requests await the relay's verdict (the
/// `[auth]` webhook, bounded by its timeout): the connection has nothing else to do
/// meanwhile. Returns the refusal when the client was denied access, so the caller closes.
async fn handle_event(
    ev: ServerEvent,
    session: &mut ServerSession,
    relay: &Arc<Relay>,
    info: &ConnInfo,
    publishing: &mut Option<Publishing>,
    playing: &mut Option<Playing>,
) -> Option<Refusal> {
    let m = &relay.metrics;
    match ev {
        ServerEvent::Connected { app, .. } => {
            debug!(peer = %info.peer, app = %app, "connected");
        }
        ServerEvent::PublishRequested {
            stream_id,
            app,
            key,
            query,
        } => {
            if publishing.is_some() || playing.is_some() {
                session.reject_publish(
                    stream_id,
                    "NetStream.Publish.BadConnection",
                    "Connection already has a stream",
                );
                m.publish_rejected_total
                    .with_label_values(&["busy_connection"])
                    .inc();
                return None;
            }
            let req = StreamRequest {
                app: &app,
                key: &key,
                query: &query,
            };
            match relay.publish(req, info).await {
                Ok(publisher) => {
                    session.accept_publish(stream_id);
                    *publishing = Some(Publishing {
                        stream_id,
                        publisher,
                    });
                }
                Err(Refusal::Hub(PublishError::AlreadyLive(_))) => session.reject_publish(
                    stream_id,
                    "NetStream.Publish.BadName",
                    "Stream already publishing",
                ),
                Err(r) => {
                    session.reject_publish(stream_id, r.rtmp_publish_code(), &r.to_string());
                    if r.is_access_denied() {
                        return Some(r);
                    }
                }
            }
        }
        ServerEvent::PlayRequested {
            stream_id,
            app,
            key,
            query,
        } => {
            if publishing.is_some() || playing.is_some() {
                session.reject_play(
                    stream_id,
                    "NetStream.Play.Failed",
                    "Connection already has a stream",
                );
                return None;
            }
            let req = StreamRequest {
                app: &app,
                key: &key,
                query: &query,
            };
            match relay.play(req, info).await {
                Ok(player) => {
                    session.accept_play(stream_id);
                    *playing = Some(Playing { stream_id, player });
                }
                Err(r) => {
                    // librtmp closes on Play.Failed; ffmpeg prints the description.
                    session.reject_play(stream_id, "NetStream.Play.Failed", &r.to_string());
                    if r.is_access_denied() {
                        return Some(r);
                    }
                }
            }
        }
        ServerEvent::Media {
            stream_id,
            kind,
            timestamp,
            payload,
        } => {
            // Media for a stream this connection does not publish: ignored.
            let p = publishing.as_ref().filter(|p| p.stream_id == stream_id)?;
            let kind = match kind {
                MediaKind::Audio => FrameKind::Audio,
                MediaKind::Video => FrameKind::Video,
                MediaKind::Data => FrameKind::Data,
            };
            p.publisher.send(kind, timestamp, payload);
        }
        ServerEvent::StreamClosed { stream_id } => {
            if publishing
                .as_ref()
                .is_some_and(|p| p.stream_id == stream_id)
            {
                if let Some(p) = publishing.take() {
                    p.publisher.unpublish();
                }
            }
            if playing.as_ref().is_some_and(|p| p.stream_id == stream_id) {
                *playing = None;
            }
        }
    }
    None
}
