//! Push targets: one task per destination of a live stream, each with its own hub queue,
//! reconnecting with jittered exponential backoff for as long as the stream is live.

use crate::conn::{merge_deadline, Conn, MAX_IOVECS, MERGE_FLUSH_BYTES};
use crate::context::{epoch_ms, handshake_random, Relay};
use crate::dial::{BoxedStream, Dialer, SinkReport};
use crate::egress::{media_kind, shared_body};
use crate::server::ConnError;
use crate::status::{AddTargetError, TargetOrigin, TargetState, TargetStatus};
use bytes::BytesMut;
use prism_config::{redact_url, ResolvedTarget};
use prism_hub::{DropReason, Frame, QueueLimits, RecvStatus, Stream, Subscription};
use prism_rtmp::session::{ClientConfig, ClientEvent, ClientSession, SessionConfig};
use prism_rtmp::url::RtmpUrl;
use prism_rtmp::OutQueue;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tracing::{info, warn};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect + handshake + publish must finish within this.
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// Output queued toward a target above which it stops taking frames from its hub queue.
const HIGH_WATER: usize = 256 * 1024;
/// How often a live push exports its queue and drops and checks the overflow verdict, even
/// while its output is blocked.
const STATS_INTERVAL: Duration = Duration::from_millis(250);
/// Most frame bytes taken from the hub queue per wake-up.
const BATCH_BYTES: usize = 256 * 1024;
/// A connection that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Jittered exponential backoff: about 1 s doubling up to a cap.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
    seed: u64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            next: min,
            min,
            max,
            seed: u64::from_le_bytes(handshake_random()[..8].try_into().unwrap_or([1; 8])) | 1,
        }
    }

    /// The delay before the next attempt: the current step ±25%.
    pub fn next_delay(&mut self) -> Duration {
        // xorshift64: jitter only, no need for a real RNG.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let base = self.next.as_millis() as u64;
        let jitter = base / 2;
        let delay = base - base / 4 + if jitter > 0 { self.seed % jitter } else { 0 };
        self.next = (self.next * 2).min(self.max);
        Duration::from_millis(delay)
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Starts one push task per configured target of `stream`.
pub fn spawn_targets(relay: &Arc<Relay>, stream: Arc<Stream>) {
    // Not interleaved with a config reload: the targets started are those of one config.
    let _reconciling = relay.reconcile_lock();
    let targets = relay.config().targets_for(stream.app(), stream.key());
    for target in targets {
        if let Err(e) = spawn_target(relay, &stream, target, TargetOrigin::Config) {
            // The stream ended meanwhile; names from the config are unique per stream.
            info!(stream = %stream.name(), "target not started: {e}");
        }
    }
}

/// Registers a target of `stream` (its name must be free there) and starts its task.
pub(crate) fn spawn_target(
    relay: &Arc<Relay>,
    stream: &Arc<Stream>,
    target: ResolvedTarget,
    origin: TargetOrigin,
) -> Result<Arc<TargetStatus>, AddTargetError> {
    let mut tm = None;
    let max = relay.config().limits.max_targets_per_stream;
    let status = relay.registry().add_target(stream, &target.name, max, || {
        let m = &relay.metrics;
        let labels = [stream.name(), target.name.as_str()];
        let up = m.target_up.with_label_values(&labels);
        let bytes = m.target_bytes_sent_total.with_label_values(&labels);
        let queue = m.target_queue_bytes.with_label_values(&labels);
        let status = Arc::new(TargetStatus::new(
            &target,
            origin,
            up.clone(),
            bytes.clone(),
            queue.clone(),
        ));
        tm = Some(TargetMetrics {
            stream: stream.name().to_owned(),
            target: target.name.clone(),
            up,
            bytes,
            queue,
            reconnects: m.target_reconnects_total.with_label_values(&labels),
            status: status.clone(),
        });
        status
    })?;
    if let Some(tm) = tm {
        tokio::spawn(run_target(relay.clone(), stream.clone(), target, tm));
    }
    Ok(status)
}

struct TargetMetrics {
    stream: String,
    target: String,
    up: prometheus::IntGauge,
    bytes: prometheus::IntCounter,
    queue: prometheus::IntGauge,
    reconnects: prometheus::IntCounter,
    status: Arc<TargetStatus>,
}

async fn run_target(
    relay: Arc<Relay>,
    stream: Arc<Stream>,
    target: ResolvedTarget,
    tm: TargetMetrics,
) {
    // Shutdown waits for the goodbye (FCUnpublish, deleteStream) to go out.
    let _in_flight = relay.track(|| format!("target {} of {}", tm.target, tm.stream));
    let m = &relay.metrics;
    let status = tm.status.clone();
    let shown_url = redact_url(&target.url);
    let limits = QueueLimits {
        max_bytes: target.queue.max_queue_bytes,
        max_ms: target.queue.max_queue_ms,
        overflow_disconnect: target.queue.overflow_disconnect,
    };
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    let mut attempt = 0u64;
    loop {
        if stream.is_ended() || status.is_cancelled() {
            break;
        }
        if attempt > 0 {
            tm.reconnects.inc();
            status.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        attempt += 1;
        status.set_state(TargetState::Connecting);
        let started = Instant::now();
        // A removed target ends through its subscription (closed on cancel): while
        // connecting at once, while publishing by unpublishing, with the goodbye's flush
        // bounded. No select here: this future is polled on every frame of a live push.
        let result = push_once(&relay, &stream, &target, limits, &tm).await;
        tm.up.set(0);
        tm.queue.set(0);
        if status.is_cancelled() {
            info!(stream = %tm.stream, target = %tm.target, "target finished: removed");
            break;
        }
        match result {
            Ok(()) => {
                info!(stream = %tm.stream, target = %tm.target, "target finished: stream ended");
                break;
            }
            Err(e) => {
                m.target_disconnects_total
                    .with_label_values(&[&tm.stream, &tm.target, e.reason])
                    .inc();
                status.set_error(e.reason, &e.detail);
                warn!(stream = %tm.stream, target = %tm.target, url = %shown_url, reason = e.reason, "target down: {}", e.detail);
            }
        }
        if started.elapsed() > STABLE_AFTER {
            backoff.reset();
        }
        status.set_state(TargetState::Backoff);
        let wake = Instant::now() + backoff.next_delay();
        // Sleep, but give up as soon as the stream ends or the target is removed.
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = stream.wait_ended() => {}
            _ = status.cancelled() => {}
        }
    }
    status.set_state(TargetState::Down);
    relay
        .registry()
        .target_ended(&stream, &status, |name_free| {
            // A new stream may already run under the same name, or a target re-added under
            // this name: leave their series alone.
            let stream_gone = relay.hub.get(stream.app(), stream.key()).is_none();
            if stream_gone || (status.is_cancelled() && name_free) {
                m.forget_target(&tm.stream, &tm.target);
            }
        });
    status.mark_finished();
}

async fn push_once(
    relay: &Arc<Relay>,
    stream: &Arc<Stream>,
    target: &ResolvedTarget,
    limits: QueueLimits,
    tm: &TargetMetrics,
) -> Result<(), ConnError> {
    let scheme = target
        .url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    if let Some(sink) = relay.sink(&scheme).cloned() {
        let Some(sub) = stream.subscribe(limits) else {
            return Ok(());
        };
        tm.status.set_subscription(sub.closer());
        let report = SinkReport {
            up: tm.up.clone(),
            bytes_sent: tm.bytes.clone(),
        };
        let mut reported = [0u64; 3];
        let result = tokio::select! {
            r = sink.run(&sub, target, &report) => r.map_err(|e| ConnError::new(e.reason, e.detail)),
            e = watch_queue(relay, tm, &sub, &mut reported) => Err(e),
            // A stream that ends while its sink is still connecting stops the attempt.
            _ = stream.wait_ended() => Ok(()),
        };
        report_stats(relay, tm, &sub, &mut reported);
        return result;
    }
    let url = RtmpUrl::parse(&target.url).map_err(|e| ConnError::new("bad_url", e))?;
    let Some(dialer) = relay.dialer(&url.scheme).cloned() else {
        return Err(ConnError::new(
            "unsupported_scheme",
            format!("no transport serves {}:// targets", url.scheme),
        ));
    };
    // Subscribe before connecting: the new connection starts with metadata, sequence
    // headers and the current GOP from a keyframe.
    let Some(sub) = stream.subscribe(limits) else {
        return Ok(());
    };
    tm.status.set_subscription(sub.closer());
    let mut reported = [0u64; 3];
    let result = drive(
        relay,
        dialer.as_ref(),
        &sub,
        &url,
        target,
        tm,
        &mut reported,
    )
    .await;
    // Drops while connecting or just before a failure count too.
    report_stats(relay, tm, &sub, &mut reported);
    result
}

/// Exports a sink's queue depth and drops on a timer; returns when the hub gives up on it.
async fn watch_queue(
    relay: &Relay,
    tm: &TargetMetrics,
    sub: &Subscription,
    reported: &mut [u64; 3],
) -> ConnError {
    let mut tick = tokio::time::interval(STATS_INTERVAL);
    loop {
        tick.tick().await;
        report_stats(relay, tm, sub, reported);
        if sub.is_too_slow() {
            return too_slow();
        }
    }
}

/// Connects, publishes and forwards frames until the stream ends or the connection fails.
async fn drive(
    relay: &Arc<Relay>,
    dialer: &dyn Dialer,
    sub: &Subscription,
    url: &RtmpUrl,
    target: &ResolvedTarget,
    tm: &TargetMetrics,
    reported: &mut [u64; 3],
) -> Result<(), ConnError> {
    // A stream that ends while its target is still connecting stops the attempt; once
    // publishing, the end arrives through the subscription.
    let connecting = connect_and_publish(relay, dialer, url, target);
    let (session, conn) = tokio::select! {
        r = connecting => r?,
        _ = sub.stream().wait_ended() => return Ok(()),
        _ = tm.status.cancelled() => return Ok(()),
    };
    tm.up.set(1);
    tm.status.set_state(TargetState::Up);
    info!(stream = %tm.stream, target = %tm.target, "target publishing");
    let merge = target.queue.write_merge;
    forward(relay, session, conn, sub, tm, merge, reported).await
}

/// Dials, handshakes and publishes (connect, releaseStream, FCPublish, createStream, publish).
async fn connect_and_publish(
    relay: &Arc<Relay>,
    dialer: &dyn Dialer,
    url: &RtmpUrl,
    target: &ResolvedTarget,
) -> Result<(ClientSession, Conn<BoxedStream>), ConnError> {
    let io = tokio::time::timeout(CONNECT_TIMEOUT, dialer.dial(url, target))
        .await
        .map_err(|_| ConnError::new("connect_timeout", "connect timed out"))?
        .map_err(|e| ConnError::new(e.reason, e.detail))?;
    let config = relay.config();
    let mut session = ClientSession::new(
        ClientConfig {
            app: url.app.clone(),
            tc_url: url.tc_url(),
            key: url.key.clone(),
            session: SessionConfig {
                chunk_size: config.rtmp.chunk_size,
                handshake_timeout: SETUP_TIMEOUT,
                ..SessionConfig::default()
            },
        },
        handshake_random(),
        epoch_ms(),
        Instant::now().into_std(),
    );
    let mut conn = Conn::new(io);

    // Set-up: handshake, connect, createStream, publish.
    let setup = async {
        loop {
            conn.queue(session.out());
            conn.flush_all()
                .await
                .map_err(|e| ConnError::new("io", e))?;
            if session.is_publishing() {
                return Ok(());
            }
            let n = conn.read().await.map_err(|e| ConnError::new("io", e))?;
            if n == 0 {
                return Err(ConnError::new(
                    "closed",
                    "destination closed the connection during set-up",
                ));
            }
            session
                .handle_input(&mut conn.input, Instant::now().into_std())
                .map_err(|e| ConnError::new("refused", e))?;
            while let Some(ClientEvent::Publishing) = session.poll_event() {}
        }
    };
    tokio::time::timeout(SETUP_TIMEOUT, setup)
        .await
        .map_err(|_| {
            ConnError::new(
                "setup_timeout",
                "handshake/publish did not complete in time",
            )
        })??;
    Ok((session, conn))
}

/// Publishes the frames of `sub` on a publishing connection until the stream ends.
async fn forward(
    relay: &Arc<Relay>,
    mut session: ClientSession,
    conn: Conn<BoxedStream>,
    sub: &Subscription,
    tm: &TargetMetrics,
    merge: Duration,
    reported: &mut [u64; 3],
) -> Result<(), ConnError> {
    let Conn {
        reader,
        writer,
        input,
        pending,
        stalled_since,
        ..
    } = conn;
    let mut live = Live {
        io: reader.unsplit(writer),
        input,
        pending,
        stalled_since,
        frames: Vec::new(),
        read_buf: vec![0; 16 * 1024],
        next_check: Instant::now(),
        timer: Box::pin(tokio::time::sleep(WRITE_TIMEOUT)),
        reads_skipped: 0,
        merge,
        hold_until: None,
    };
    // Runs until the stream ends; then unpublish politely.
    std::future::poll_fn(|cx| live.poll(cx, &mut session, sub, relay, tm, reported)).await?;
    session.unpublish();
    live.pending.append(session.out());
    let mut conn = Conn::new(live.io);
    conn.pending = live.pending;
    let before = conn.bytes_written;
    let _ = tokio::time::timeout(Duration::from_secs(3), conn.flush_all()).await;
    tm.bytes.inc_by(conn.bytes_written - before);
    Ok(())
}

/// A publishing push connection, driven by hand rather than by `select!`: this is the
/// per-target hot path of the fan-out, and one poll function that owns the stream (no
/// split lock), keeps its futures (no re-creation per wake-up) and writes in the same
/// wake-up that received frames costs a fraction of the select machinery.
struct Live<S> {
    io: S,
    input: BytesMut,
    pending: OutQueue,
    /// See [`Conn::stalled_since`].
    stalled_since: Instant,
    frames: Vec<Arc<Frame>>,
    read_buf: Vec<u8>,
    /// When queue depth, drops and the overflow verdict are next exported and checked.
    next_check: Instant,
    /// Armed only while output is pending: the write timeout, and while output is above
    /// HIGH_WATER (frames are not taken, so nothing else wakes us) the next check, so a
    /// stalled destination is shed after overflow_disconnect, not only after WRITE_TIMEOUT.
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Wake-ups with frames since the socket was last polled for reading (a destination
    /// sends almost nothing: acknowledgements, and errors on close).
    reads_skipped: u32,
    /// `write_merge_ms`: how long output is held before it is written.
    merge: Duration,
    /// Set when held output started waiting; cleared once everything is written. While
    /// it is in the future neither the hub queue nor the socket is looked at (frames
    /// wait in the hub queue, under its budget, and do not wake this task), so one
    /// wake-up and one write carry the whole span.
    hold_until: Option<Instant>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Live<S> {
    /// Runs until the stream ends (Ok) or the connection fails.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        session: &mut ClientSession,
        sub: &Subscription,
        relay: &Relay,
        tm: &TargetMetrics,
        reported: &mut [u64; 3],
    ) -> Poll<Result<(), ConnError>> {
        loop {
            let mut progress = false;
            let now = Instant::now();
            if now >= self.next_check {
                self.next_check = now + STATS_INTERVAL;
                report_stats(relay, tm, sub, reported);
                if sub.is_too_slow() {
                    return Poll::Ready(Err(too_slow()));
                }
                // Ended or removed while output is blocked (frames are not being taken, so
                // the subscription's end would not be seen): say goodbye now. A held
                // (merging) target takes its frames and then the end at its next tick.
                if sub.is_finished() && self.pending.len() >= HIGH_WATER {
                    return Poll::Ready(Ok(()));
                }
            }
            let mut got_frames = false;
            let holding = self.hold_until.is_some_and(|t| now < t);
            // A hold just ended: a merging target whose stream still flows stays on the
            // merge grid, woken by its timer alone, so it looks without registering with
            // the hub; only an empty queue makes it wait for the hub's wake-up again.
            let tick = self.hold_until.is_some() && !holding;
            if self.pending.len() < HIGH_WATER && !holding {
                let polled = match tick {
                    true => match sub.try_recv(&mut self.frames, BATCH_BYTES) {
                        Some(status) => Poll::Ready(status),
                        None => sub.poll_recv(cx, &mut self.frames, BATCH_BYTES),
                    },
                    false => sub.poll_recv(cx, &mut self.frames, BATCH_BYTES),
                };
                match polled {
                    Poll::Ready(RecvStatus::Frames) => {
                        let chunk_size = session.chunk_size();
                        let batch: usize = self.frames.iter().map(|f| f.payload.len()).sum();
                        for f in self.frames.drain(..) {
                            let kind = media_kind(f.kind);
                            match shared_body(&f, kind, chunk_size) {
                                Some(body) => {
                                    session.send_media_shared(kind, f.timestamp, &f.payload, body)
                                }
                                None => session.send_media(kind, f.timestamp, &f.payload),
                            }
                        }
                        self.queue(session.out());
                        if !self.merge.is_zero() && self.hold_until.is_none() {
                            self.hold_until = Some(merge_deadline(now, self.merge));
                        }
                        // The subscription stays armed; only a full batch (more may be
                        // queued already) or the end (its wake-up may be this one) needs
                        // another look.
                        progress = batch >= BATCH_BYTES || sub.is_finished();
                        got_frames = true;
                    }
                    Poll::Ready(RecvStatus::Ended) => return Poll::Ready(Ok(())),
                    Poll::Ready(RecvStatus::TooSlow) => return Poll::Ready(Err(too_slow())),
                    Poll::Pending => {}
                }
            }
            let hold = self
                .hold_until
                .filter(|t| now < *t && self.pending.len() < MERGE_FLUSH_BYTES);
            while hold.is_none() && !self.pending.is_empty() {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let n = self.pending.chunks_vectored(&mut slices);
                match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(ConnError::new("io", "write returned zero")))
                    }
                    Poll::Ready(Ok(written)) => {
                        let was_blocked = self.pending.len() >= HIGH_WATER;
                        self.pending.advance(written);
                        self.stalled_since = Instant::now();
                        tm.bytes.inc_by(written as u64);
                        // Room again for frames that were held back.
                        progress |= was_blocked && self.pending.len() < HIGH_WATER;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(ConnError::new("io", e))),
                    Poll::Pending => break,
                }
            }
            if self.pending.is_empty() {
                if !holding {
                    self.hold_until = match tick && got_frames {
                        true => Some(merge_deadline(now, self.merge)),
                        false => None,
                    };
                }
                // TLS streams may keep encrypted bytes back after accepting a write; push
                // them out now rather than with the next frame (a no-op for TCP).
                if let Poll::Ready(Err(e)) = Pin::new(&mut self.io).poll_flush(cx) {
                    return Poll::Ready(Err(ConnError::new("io", e)));
                }
            }
            // The read registration made on the last Pending stays armed, so skipping the
            // poll on busy wake-ups loses nothing; a quiet wake-up may be the read.
            self.reads_skipped += 1;
            if !got_frames || self.reads_skipped >= 16 {
                self.reads_skipped = 0;
                let mut buf = ReadBuf::new(&mut self.read_buf);
                match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                        return Poll::Ready(Err(ConnError::new(
                            "closed",
                            "destination closed the connection",
                        )))
                    }
                    Poll::Ready(Ok(())) => {
                        self.input.extend_from_slice(buf.filled());
                        if let Err(e) =
                            session.handle_input(&mut self.input, Instant::now().into_std())
                        {
                            return Poll::Ready(Err(ConnError::new("protocol", e)));
                        }
                        self.queue(session.out());
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(ConnError::new("io", e))),
                    Poll::Pending => {}
                }
            }
            let write_deadline = self.stalled_since + WRITE_TIMEOUT;
            let mut deadline = None;
            if !self.pending.is_empty() {
                deadline = Some(write_deadline);
                if self.pending.len() >= HIGH_WATER {
                    deadline = Some(write_deadline.min(self.next_check));
                }
            }
            if let Some(h) = self.hold_until.filter(|t| now < *t) {
                deadline = Some(deadline.map_or(h, |d| d.min(h)));
            }
            if let Some(deadline) = deadline {
                if self.timer.deadline() != deadline {
                    self.timer.as_mut().reset(deadline);
                }
                if self.timer.as_mut().poll(cx).is_ready() {
                    if !self.pending.is_empty() && Instant::now() >= write_deadline {
                        return Poll::Ready(Err(ConnError::new(
                            "write_timeout",
                            "destination stopped reading",
                        )));
                    }
                    // A queue check or the end of a hold is due.
                    progress = true;
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    fn queue(&mut self, out: &mut OutQueue) {
        if !out.is_empty() && self.pending.is_empty() {
            self.stalled_since = Instant::now();
        }
        self.pending.append(out);
    }
}

fn too_slow() -> ConnError {
    ConnError::new("too_slow", "target stayed over its queue budget")
}

/// Exports the subscription's queue depth and any drops not reported yet.
fn report_stats(relay: &Relay, tm: &TargetMetrics, sub: &Subscription, reported: &mut [u64; 3]) {
    let stats = sub.stats();
    tm.queue.set(stats.queue_bytes as i64);
    for (i, reason) in DropReason::ALL.iter().enumerate() {
        let now = stats.dropped(*reason);
        if now > reported[i] {
            tm.status
                .drops
                .fetch_add(now - reported[i], Ordering::Relaxed);
            relay
                .metrics
                .target_dropped_frames_total
                .with_label_values(&[&tm.stream, &tm.target, reason.as_str()])
                .inc_by(now - reported[i]);
            reported[i] = now;
        }
    }
}
