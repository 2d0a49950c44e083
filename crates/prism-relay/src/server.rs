//! Serves one RTMP connection (publisher or player) over any byte stream.

use crate::dial::ConnError;
use crate::drive::{Driver, Exit, Flow, Output};
use crate::egress::shared_body;
use crate::handshake::{epoch_ms, handshake_random};
use crate::ingest::{Player, Publisher};
use crate::relay::Relay;
use bytes::BytesMut;
use prism_control::{ConnInfo, Refusal, StreamRequest};
use prism_hub::{Frame, PublishError, Subscription};
use prism_metrics::{ErrorReason, RejectReason};
use prism_rtmp::chunk::DecoderLimits;
use prism_rtmp::session::{ServerEvent, ServerSession, SessionConfig, SessionError};
use prism_rtmp::OutQueue;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info};

/// How long a goodbye (end of play, a refusal's onStatus) may take to flush.
const GOODBYE_FLUSH: Duration = Duration::from_secs(2);

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
    let m = relay.metrics();
    let conn = m.connection(info.transport);
    conn.accepted.inc();
    conn.active.inc();
    let result = run(io, info, &relay).await;
    conn.active.dec();
    match result {
        Ok(()) => debug!(peer = %info.peer, transport = info.transport, "connection closed"),
        Err(e) => {
            m.connection_error(info.transport, e.reason).inc();
            info!(peer = %info.peer, transport = info.transport, reason = e.reason.as_str(), "connection closed: {}", e.detail);
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
        handshake_timeout: config.rtmp.handshake_timeout,
        idle_timeout: Some(config.rtmp.idle_timeout),
        ..SessionConfig::default()
    };
    // RTMPE (C0 = 6/8/9) is told apart by its first byte; its handshake runs before the
    // session, which then starts at `connect` over the decrypting stream.
    // A connection still waiting for its first byte must not hold a shutdown up.
    let accepted = tokio::select! {
        accepted = crate::rtmpe::accept(io, config.rtmp.rtmpe, config.rtmp.handshake_timeout) => accepted?,
        _ = relay.closing() => return Ok(()),
    };
    let io = accepted.stream;
    let now = Instant::now();
    let session = if accepted.handshaken {
        debug!(peer = %info.peer, transport = info.transport, "RTMPE handshake done");
        ServerSession::after_handshake(session_config, now)
    } else {
        ServerSession::new(session_config, handshake_random(), epoch_ms(), now)
    };
    let mut conn = RtmpConn {
        session,
        relay: relay.clone(),
        info,
        publishing: None,
        playing: None,
        request: None,
        closing: Box::pin({
            let relay = relay.clone();
            async move { relay.closing().await }
        }),
        draining: Some(Box::pin({
            let relay = relay.clone();
            let seen = relay.drain_count();
            async move { relay.drained_after(seen).await }
        })),
        drained: false,
        mem: relay
            .memory()
            .map(|b| b.charge(prism_mem::Pool::Reassembly, 0))
            .unwrap_or_default(),
    };
    let mut driver = Driver::new(Box::pin(io), prism_egress::Config::default());
    driver.set_merge(config.player.player_write_merge());
    let result = loop {
        driver.queue(conn.session.out());
        match driver.run(&mut conn).await {
            Err(e) => break Err(e),
            Ok(Exit::Closed) => break Ok(()),
            Ok(Exit::Stopped) => {
                if let Some(p) = &conn.publishing {
                    // Shutting down or draining: an Enhanced RTMP v2 publisher that said it
                    // can is asked to reconnect (to `[rtmp] reconnect_url` if set) first.
                    let moved_to = p.publisher.moved_to();
                    if let Some(url) = moved_to.as_deref() {
                        // Kicked by `DELETE /api/v1/streams/..?reconnect_url=`: the stream moves.
                        if conn
                            .session
                            .request_reconnect(Some(url), "the stream moved to another node")
                        {
                            info!(peer = %info.peer, transport = info.transport, "reconnect request sent to an Enhanced RTMP v2 publisher: its stream moved");
                        }
                    } else if conn.drained || relay.is_closing() {
                        let url = relay.config().rtmp.reconnect_url.clone();
                        if conn
                            .session
                            .request_reconnect(url.as_deref(), "Prism is draining this node")
                        {
                            info!(peer = %info.peer, transport = info.transport, to_other_node = url.is_some(), "reconnect request sent to an Enhanced RTMP v2 publisher");
                        }
                    }
                    // Kicked or shutting down: the publisher hears that its publish is over
                    // (NetStream.Unpublish.Success) before the close, not a bare reset.
                    conn.session.end_publish(p.stream_id);
                    driver.queue(conn.session.out());
                    driver.flush(GOODBYE_FLUSH).await;
                    info!(peer = %info.peer, transport = info.transport, "closing the connection of a kicked publisher");
                }
                break Ok(());
            }
            Ok(Exit::Ended) => {
                if let Some(p) = conn.playing.take() {
                    conn.session.end_play(p.stream_id);
                    driver.queue(conn.session.out());
                    driver.flush(GOODBYE_FLUSH).await;
                }
                break Ok(());
            }
            Ok(Exit::Yield) => {
                // A publish or play request awaits the relay's verdict (the `[auth]` webhook,
                // bounded by its timeout): the connection has nothing else to do meanwhile.
                let mut denied = None;
                if let Some(ev) = conn.request.take() {
                    denied = handle_request(ev, &mut conn).await;
                }
                // Events that came in the same read as the request.
                if denied.is_none() {
                    match conn.handle_events() {
                        Ok(_) => {}
                        Err(e) => break Err(e),
                    }
                    if conn.request.is_some() {
                        // Another request in the same read: handled on the next turn.
                        driver.queue(conn.session.out());
                        continue;
                    }
                }
                // A client refused for who it is gets its onStatus, then the connection
                // closes: it cannot try token after token on one connection.
                if let Some(r) = denied {
                    driver.queue(conn.session.out());
                    driver.flush(GOODBYE_FLUSH).await;
                    info!(peer = %info.peer, transport = info.transport, reason = r.reason().as_str(), "closing a refused connection");
                    break Ok(());
                }
                // A player gets Opus (WebRTC publishers) as AAC, like targets: RTMP players
                // that predate Enhanced RTMP (most) take AAC only.
                if let Some(p) = &conn.playing {
                    driver.set_audio(Some(relay.aac_audio(p.player.sub.stream())));
                }
            }
        }
    };
    // Dropping a player updates its metrics; dropping a publisher without unpublish starts
    // the stream's reconnect grace window.
    drop((conn.publishing.take(), conn.playing.take()));
    result
}

/// One RTMP server connection as the driver's [`Output`]: publishing, playing, or neither
/// yet (handshake, connect, commands).
struct RtmpConn {
    session: ServerSession,
    relay: Arc<Relay>,
    info: ConnInfo,
    publishing: Option<Publishing>,
    playing: Option<Playing>,
    /// A publish or play request waiting for the caller (it awaits the access check).
    request: Option<ServerEvent>,
    /// Resolves when the relay shuts down: a connection serving no stream closes then
    /// (those that do end with their stream).
    closing: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Resolves at the next drain request (`POST /api/v1/drain`); taken once it did.
    draining: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// A drain request stopped this (v2) publisher's connection.
    drained: bool,
    /// Received bytes not yet whole messages (partial messages and the unparsed input),
    /// charged to the media-memory budget (pool `reassembly`).
    mem: prism_mem::MemCharge,
}

impl RtmpConn {
    /// Handles the session's events until one needs the caller ([`Flow::Yield`]).
    fn handle_events(&mut self) -> Result<Flow, ConnError> {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                ServerEvent::Connected { app, .. } => {
                    debug!(peer = %self.info.peer, app = %app, "connected");
                }
                ServerEvent::PublishRequested { stream_id, .. }
                    if self.publishing.is_some() || self.playing.is_some() =>
                {
                    self.session.reject_publish(
                        stream_id,
                        "NetStream.Publish.BadConnection",
                        "Connection already has a stream",
                    );
                    self.relay
                        .metrics()
                        .publish_rejected(RejectReason::BusyConnection)
                        .inc();
                }
                ServerEvent::PlayRequested { stream_id, .. }
                    if self.publishing.is_some() || self.playing.is_some() =>
                {
                    self.session.reject_play(
                        stream_id,
                        "NetStream.Play.Failed",
                        "Connection already has a stream",
                    );
                }
                ev @ (ServerEvent::PublishRequested { .. } | ServerEvent::PlayRequested { .. }) => {
                    self.request = Some(ev);
                    return Ok(Flow::Yield);
                }
                ServerEvent::Media {
                    stream_id,
                    kind,
                    timestamp,
                    payload,
                } => {
                    // Media for a stream this connection does not publish: ignored.
                    if let Some(p) = self
                        .publishing
                        .as_ref()
                        .filter(|p| p.stream_id == stream_id)
                    {
                        p.publisher.send(kind, timestamp, payload);
                    }
                }
                ServerEvent::StreamClosed { stream_id } => {
                    if self
                        .publishing
                        .as_ref()
                        .is_some_and(|p| p.stream_id == stream_id)
                    {
                        if let Some(p) = self.publishing.take() {
                            p.publisher.unpublish();
                        }
                    }
                    if self
                        .playing
                        .as_ref()
                        .is_some_and(|p| p.stream_id == stream_id)
                    {
                        self.playing = None;
                    }
                }
            }
        }
        Ok(Flow::Continue)
    }
}

impl Output for RtmpConn {
    fn subscription(&self) -> Option<&Subscription> {
        self.playing.as_ref().map(|p| &p.player.sub)
    }

    /// Encodes hub frames for a player (chunked bodies shared with every other connection).
    fn send_frames(&mut self, frames: &mut Vec<Arc<Frame>>, out: &mut OutQueue) {
        let Some(stream_id) = self.playing.as_ref().map(|p| p.stream_id) else {
            return;
        };
        let chunk_size = self.session.chunk_size();
        for f in frames.drain(..) {
            let kind = f.kind;
            match shared_body(&f, chunk_size) {
                Some(body) => {
                    self.session
                        .send_media_shared(stream_id, kind, f.timestamp, &f.payload, body)
                }
                None => self
                    .session
                    .send_media(stream_id, kind, f.timestamp, &f.payload),
            }
        }
        out.append(self.session.out());
    }

    fn handle_input(
        &mut self,
        input: &mut BytesMut,
        now: Instant,
        out: &mut OutQueue,
    ) -> Result<Flow, ConnError> {
        let handled = self.session.handle_input(input, now);
        self.mem.set(self.session.buffered_bytes() + input.len());
        let flow = match handled {
            Ok(()) => self.handle_events(),
            Err(e) => Err(ConnError::new(ErrorReason::Protocol, e)),
        };
        out.append(self.session.out());
        flow
    }

    fn report(&mut self) {
        if let Some(p) = self.playing.as_mut() {
            p.player.report_drops();
        }
    }

    fn poll_stop(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match (&self.publishing, &self.playing) {
            // An operator kicked the stream (admin API): it has ended; close the connection.
            (Some(p), _) => {
                if p.publisher.poll_kicked(cx).is_ready() {
                    return Poll::Ready(());
                }
                // A drain stops only publishers that can be asked to reconnect.
                if !self.session.supports_reconnect() {
                    return Poll::Pending;
                }
                match self.draining.as_mut().map(|d| d.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => {
                        self.draining = None;
                        self.drained = true;
                        Poll::Ready(())
                    }
                    _ => Poll::Pending,
                }
            }
            (None, None) => self.closing.as_mut().poll(cx),
            (None, Some(_)) => Poll::Pending,
        }
    }

    /// The session's handshake and idle timers (players, who may send nothing for a long
    /// time, have none: only their write progress counts).
    fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), ConnError> {
        // A server session's timers end it with one of these two.
        self.session.handle_timeout(now).map_err(|e| {
            let reason = match e {
                SessionError::HandshakeTimeout(_) => ErrorReason::HandshakeTimeout,
                SessionError::IdleTimeout(_) => ErrorReason::IdleTimeout,
                _ => ErrorReason::Protocol,
            };
            ConnError::new(reason, e)
        })
    }
}

/// Answers a publish or play request once the relay has decided. Returns the refusal when
/// the client was denied access, so the caller closes.
async fn handle_request(ev: ServerEvent, conn: &mut RtmpConn) -> Option<Refusal> {
    let (relay, info) = (conn.relay.clone(), conn.info);
    match ev {
        ServerEvent::PublishRequested {
            stream_id,
            app,
            key,
            query,
        } => {
            let req = StreamRequest {
                app: &app,
                key: &key,
                query: &query,
            };
            match relay.publish(req, &info).await {
                Ok(publisher) => {
                    conn.session.accept_publish(stream_id);
                    conn.publishing = Some(Publishing {
                        stream_id,
                        publisher,
                    });
                }
                Err(Refusal::Hub(PublishError::AlreadyLive(_))) => conn.session.reject_publish(
                    stream_id,
                    "NetStream.Publish.BadName",
                    "Stream already publishing",
                ),
                Err(r) => {
                    conn.session
                        .reject_publish(stream_id, r.rtmp_publish_code(), &r.to_string());
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
            let req = StreamRequest {
                app: &app,
                key: &key,
                query: &query,
            };
            match relay.play(req, &info).await {
                Ok(player) => {
                    conn.session.accept_play(stream_id);
                    conn.playing = Some(Playing { stream_id, player });
                }
                Err(r) => {
                    // librtmp closes on Play.Failed; ffmpeg prints the description.
                    conn.session
                        .reject_play(stream_id, "NetStream.Play.Failed", &r.to_string());
                    if r.is_access_denied() {
                        return Some(r);
                    }
                }
            }
        }
        _ => {}
    }
    None
}
