//! Publishing and playing for any transport: what an RTMP connection, an SRT socket or any
//! later transport does once it knows app/key. Metrics, codec bookkeeping and the stream's
//! push targets are handled here, so transports only move frames.

use crate::relay::Relay;
use bytes::Bytes;
use prism_control::{Action, ConnInfo, Refusal, StreamRequest};
use prism_hub::{Frame, FrameKind, PublishError, PublishHandle, QueueLimits, Stream, Subscription};
use prism_metrics::RejectReason;
use prism_rtmp::media::{inspect_audio, inspect_video, MediaInfo};
use prometheus::{IntCounter, IntGauge};
use std::sync::Arc;
use std::time::Instant;
use tracing::{info, warn};

/// A live publisher. Dropping it without [`Publisher::unpublish`] starts the stream's
/// reconnect grace window (a dropped connection); unpublishing ends the stream at once.
pub struct Publisher {
    /// None once unpublished or detached (taken by `unpublish` or `Drop`).
    handle: Option<PublishHandle>,
    stream: Arc<Stream>,
    bytes: IntCounter,
    /// audio, video, data
    frames: [IntCounter; 3],
    /// Every multitrack track's sequence start, merged into the one the hub caches.
    headers: std::sync::Mutex<prism_rtmp::multitrack::HeaderMerge>,
}

impl Relay {
    /// Starts publishing `req` for a connection of any transport, once the route's rules and
    /// the `[auth] on_publish` webhook allow it (the webhook is awaited, within
    /// `[auth] timeout_ms`). Refusals are logged and counted in
    /// `prism_publish_rejected_total{reason}`; the caller tells its client.
    pub async fn publish(
        self: &Arc<Self>,
        req: StreamRequest<'_>,
        info: &ConnInfo,
    ) -> Result<Publisher, Refusal> {
        let control = self.control();
        control.authorize(Action::Publish, req, info).await?;
        let max = self.config().limits.max_streams;
        // A stream in its reconnect grace (or live) is not a new one: its own publisher may
        // come back whatever the count, and a duplicate is refused by the hub below.
        let known = self
            .hub()
            .get(req.app, req.key)
            .is_some_and(|s| s.is_live());
        if !known && self.hub().live_streams().len() >= max {
            let r = Refusal::TooManyStreams;
            control.refused(Action::Publish, req, info, &r);
            return Err(r);
        }
        // Under memory pressure (above the high-water mark, or lately) no new stream
        // starts; a stream in its grace may come back: its bytes were already held.
        if !known && self.hub().memory().is_some_and(|b| b.under_pressure()) {
            let r = Refusal::OutOfMemory;
            control.refused(Action::Publish, req, info, &r);
            return Err(r);
        }
        // The check above spares the webhook when full; this one, under the hub's lock,
        // is what concurrent publishes cannot race past. The hub's own refusals are logged
        // and counted in start_publish_within.
        match self.start_publish_within(req.app, req.key, info, Some(max)) {
            Ok(p) => Ok(p),
            Err(PublishError::TooManyStreams(_)) => Err(Refusal::TooManyStreams),
            Err(e) => Err(Refusal::Hub(e)),
        }
    }

    /// Starts playing `req` once the route's rules and the `[auth] on_play` webhook allow it.
    /// Refusals are logged and counted in `prism_play_rejected_total{reason}`.
    pub async fn play(
        self: &Arc<Self>,
        req: StreamRequest<'_>,
        info: &ConnInfo,
    ) -> Result<Player, Refusal> {
        self.control().authorize(Action::Play, req, info).await?;
        Ok(self.start_play(req.app, req.key, info))
    }

    /// Starts publishing `app/key` for Prism itself (a transcoding worker's rendition of a
    /// stream that already passed the access rules and limits as a publish): no route rules,
    /// webhook or `max_streams` here. Refusals (the key is live) are logged and counted.
    pub fn publish_internal(
        self: &Arc<Self>,
        app: &str,
        key: &str,
        info: &ConnInfo,
    ) -> Result<Publisher, PublishError> {
        self.start_publish(app, key, info)
    }

    /// Starts publishing `app/key` for a connection of any transport. A refusal (the key is
    /// already live) is logged and counted; the caller tells its client in its protocol.
    /// Transports call [`Relay::publish`], which checks access and limits first.
    pub(crate) fn start_publish(
        self: &Arc<Self>,
        app: &str,
        key: &str,
        info: &ConnInfo,
    ) -> Result<Publisher, PublishError> {
        self.start_publish_within(app, key, info, None)
    }

    /// [`Relay::start_publish`], refused when `max_streams` streams are live
    /// ([`prism_hub::Hub::publish_within`]).
    fn start_publish_within(
        self: &Arc<Self>,
        app: &str,
        key: &str,
        info: &ConnInfo,
        max_streams: Option<usize>,
    ) -> Result<Publisher, PublishError> {
        let m = self.metrics();
        let now = Instant::now();
        let published = match max_streams {
            Some(max) => self.hub().publish_within(app, key, now, max),
            None => self.hub().publish(app, key, now),
        };
        let handle = match published {
            Ok(h) => h,
            Err(e) => {
                let reason = match e {
                    PublishError::AlreadyLive(_) => RejectReason::AlreadyLive,
                    PublishError::Closed => RejectReason::ShuttingDown,
                    PublishError::TooManyStreams(_) => RejectReason::TooManyStreams,
                    _ => RejectReason::Other,
                };
                warn!(peer = %info.peer, transport = info.transport, stream = %format!("{app}/{key}"), "publish refused: {e}");
                m.publish_rejected(reason).inc();
                return Err(e);
            }
        };
        let label = handle.stream().name().to_owned();
        info!(peer = %info.peer, transport = info.transport, stream = %label, resumed = handle.resumed(), "publish started");
        self.control()
            .registry()
            .publish_started(handle.stream(), *info, handle.resumed());
        if !handle.resumed() {
            crate::push::spawn_targets(self, handle.stream().clone());
            self.stream_started(handle.stream());
            // Per-stream label sets go when the stream ends, so labels stay bounded.
            let (stream, relay) = (handle.stream().clone(), self.clone());
            tokio::spawn(async move {
                stream.wait_ended().await;
                relay.control().registry().stream_ended(&stream);
                // Unless a new stream already runs under the same name.
                if relay.hub().get(stream.app(), stream.key()).is_none() {
                    relay.metrics().forget_stream(stream.name());
                }
            });
        } else {
            self.stream_resumed(handle.stream());
        }
        let series = m.ingest(&label);
        Ok(Publisher {
            bytes: series.bytes,
            frames: [series.audio_frames, series.video_frames, series.data_frames],
            stream: handle.stream().clone(),
            handle: Some(handle),
            headers: Default::default(),
        })
    }

    /// Starts playing `app/key` (waiting for a publisher if there is none yet) with the
    /// `[player]` queue budget.
    /// Transports call [`Relay::play`], which checks access first.
    fn start_play(self: &Arc<Self>, app: &str, key: &str, info: &ConnInfo) -> Player {
        // Before subscribing: a stream that is not live may be pulled for this player.
        let demand = self.want(app, key);
        let q = self.config().player;
        let sub = self.hub().subscribe(
            app,
            key,
            QueueLimits {
                max_bytes: q.max_queue_bytes,
                max_ms: q.max_queue_ms,
                overflow_disconnect: q.overflow_disconnect,
            },
            Instant::now(),
        );
        let label = sub.stream().name().to_owned();
        info!(peer = %info.peer, transport = info.transport, stream = %label, "play started");
        let active = self.metrics().players_active(&label);
        active.inc();
        Player {
            _demand: demand,
            sub,
            active,
            relay: self.clone(),
            label,
            reported: [0; 3],
        }
    }
}

impl Publisher {
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Publishes one message in FLV tag body form (what RTMP audio/video/data messages
    /// carry); keyframes and sequence headers are recognized here.
    pub fn send(&self, kind: FrameKind, timestamp: u32, payload: Bytes) {
        let info = inspect(kind, &payload);
        // Enhanced RTMP v2 multitrack: tracks' sequence starts come one message each; the
        // hub caches one sequence header, so it gets all tracks' in one message.
        let payload = if info.sequence_header && kind != FrameKind::Data {
            let merged = self
                .headers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sequence_start(kind == FrameKind::Video, &payload);
            merged.map_or(payload, Bytes::from)
        } else {
            payload
        };
        let frame = Frame {
            kind,
            timestamp,
            payload,
            keyframe: info.keyframe,
            sequence_header: info.sequence_header,
            disposable: info.disposable,
            wire: Default::default(),
            mem: Default::default(),
        };
        self.publish(frame, info.codec);
    }

    /// Publishes a frame, in FLV tag body form, whose flags the transport already knows
    /// (the SRT demuxer builds each payload itself): they are trusted, not re-derived from
    /// the payload. Only sequence headers are looked into, for the codec name the admin API
    /// and status page show; they are rare.
    pub fn send_frame(&self, frame: Frame) {
        let codec = if frame.sequence_header {
            inspect(frame.kind, &frame.payload).codec
        } else {
            ""
        };
        self.publish(frame, codec);
    }

    /// Codec bookkeeping, counters, then the hub. `codec` names a sequence header's codec.
    fn publish(&self, frame: Frame, codec: &'static str) {
        let Some(handle) = &self.handle else {
            return;
        };
        let idx = match frame.kind {
            FrameKind::Audio => 0,
            FrameKind::Video => 1,
            FrameKind::Data => 2,
        };
        if frame.sequence_header {
            match frame.kind {
                FrameKind::Video => handle.set_codecs(codec, ""),
                FrameKind::Audio => handle.set_codecs("", codec),
                FrameKind::Data => {}
            }
        }
        self.bytes.inc_by(frame.payload.len() as u64);
        self.frames[idx].inc();
        handle.send(frame, Instant::now());
    }

    /// Ready once an operator kicked this stream (admin API): the stream has ended and the
    /// transport should close the publisher's connection. One atomic per poll.
    pub fn poll_kicked(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.stream.poll_kicked(cx)
    }

    /// Where the operator's kick moved the stream ([`Relay::kick_to`](crate::Relay::kick_to)).
    pub fn moved_to(&self) -> Option<String> {
        self.stream.moved_to()
    }

    /// Resolves once an operator kicked this stream; see [`Publisher::poll_kicked`].
    pub async fn kicked(&self) {
        std::future::poll_fn(|cx| self.poll_kicked(cx)).await
    }

    /// Ends the stream now (the publisher said it is done).
    pub fn unpublish(mut self) {
        info!(stream = %self.stream.name(), "publish ended");
        if let Some(handle) = self.handle.take() {
            handle.unpublish();
        }
    }
}

/// What the FLV tag body says about itself (nothing, for script data).
fn inspect(kind: FrameKind, payload: &[u8]) -> MediaInfo {
    match kind {
        FrameKind::Audio => inspect_audio(payload),
        FrameKind::Video => inspect_video(payload),
        FrameKind::Data => MediaInfo::default(),
    }
}

impl Drop for Publisher {
    /// The connection is gone without an unpublish: the grace window starts now (the hub
    /// reads no clock; dropping the handle alone would date it from the last frame).
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.detach(Instant::now());
        }
    }
}

/// A player of any transport: its subscription plus the bookkeeping of its metrics.
pub struct Player {
    pub sub: Subscription,
    /// Counts this player as a consumer of the stream (on-demand sources, the edge).
    _demand: crate::source::Demand,
    active: IntGauge,
    relay: Arc<Relay>,
    label: String,
    reported: [u64; 3],
}

impl Player {
    /// Exports drops not reported yet (`prism_player_dropped_frames_total`).
    pub fn report_drops(&mut self) {
        let stats = self.sub.stats();
        for (i, reason) in prism_hub::DropReason::ALL.iter().enumerate() {
            let now = stats.dropped(*reason);
            if now > self.reported[i] {
                self.relay
                    .metrics()
                    .player_dropped(&self.label, crate::egress::drop_reason(*reason))
                    .inc_by(now - self.reported[i]);
                self.reported[i] = now;
            }
        }
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.report_drops();
        self.active.dec();
    }
}
