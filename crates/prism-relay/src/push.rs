//! Push targets: one task per destination of a live stream, each with its own hub queue,
//! reconnecting with jittered exponential backoff for as long as the stream is live.

use crate::dial::{BoxedStream, ConnError, Dialer, SinkReport};
use crate::drive::{Driver, Exit, Flow, Output};
use crate::egress::shared_body;
use crate::handshake::{epoch_ms, handshake_random};
use crate::relay::Relay;
use bytes::BytesMut;
use prism_config::{redact_url, ResolvedTarget, TargetTracks};
use prism_control::{AddTargetError, TargetOrigin, TargetSnapshot, TargetState, TargetStatus};
use prism_egress::Deltas;
use prism_hub::{DropReason, Frame, QueueLimits, Stream, Subscription};
use prism_metrics::ErrorReason;
use prism_rtmp::session::{ClientConfig, ClientSession, SessionConfig};
use prism_rtmp::url::RtmpUrl;
use prism_rtmp::OutQueue;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect + handshake + publish must finish within this.
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the goodbye (FCUnpublish, deleteStream) may take to flush.
const GOODBYE_FLUSH: Duration = Duration::from_secs(3);
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
    let _reconciling = relay.control().reconcile_lock();
    let targets = relay.config().targets_for(stream.app(), stream.key());
    for target in targets {
        if let Err(e) = spawn_target(relay, &stream, target, TargetOrigin::Config) {
            // The stream ended meanwhile; names from the config are unique per stream.
            info!(stream = %stream.name(), "target not started: {e}");
        }
    }
}

impl Relay {
    /// Adds a push target to the live stream `app/key` without touching its others; it
    /// runs until the stream ends or it is removed. `Err` if the stream is not live or
    /// already has a target of that name.
    pub fn add_target(
        self: &Arc<Self>,
        app: &str,
        key: &str,
        target: ResolvedTarget,
    ) -> Result<TargetSnapshot, AddTargetError> {
        let Some((stream, _)) = self.control().registry().find_live(app, key) else {
            return Err(AddTargetError::NotLive(format!("{app}/{key}")));
        };
        let status = spawn_target(self, &stream, target, TargetOrigin::Api)?;
        info!(stream = %stream.name(), target = %status.name, url = %status.shown_url(), "target added");
        Ok(status.snapshot())
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
    let status = relay
        .control()
        .registry()
        .add_target(stream, &target.name, max, || {
            let series = relay.metrics().target(stream.name(), &target.name);
            let status = Arc::new(TargetStatus::new(
                &target,
                origin,
                series.up.clone(),
                series.bytes_sent.clone(),
                series.queue_bytes.clone(),
            ));
            tm = Some(TargetMetrics {
                stream: stream.name().to_owned(),
                target: target.name.clone(),
                series,
                status: status.clone(),
            });
            status
        })?;
    if let Some(tm) = tm {
        tokio::spawn(run_target(relay.clone(), stream.clone(), target, tm));
    }
    Ok(status)
}

#[derive(Clone)]
struct TargetMetrics {
    stream: String,
    target: String,
    series: prism_metrics::TargetMetrics,
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
    let m = relay.metrics();
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
            tm.series.reconnects.inc();
            status.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        attempt += 1;
        status.set_state(TargetState::Connecting);
        let started = Instant::now();
        // A removed target ends through its subscription (closed on cancel): while
        // connecting at once, while publishing by unpublishing, with the goodbye's flush
        // bounded. No select here: this future is polled on every frame of a live push.
        let result = push_once(&relay, &stream, &target, limits, &tm).await;
        tm.series.up.set(0);
        tm.series.queue_bytes.set(0);
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
                tm.series.disconnected(e.reason).inc();
                status.set_error(e.reason, &e.detail);
                warn!(stream = %tm.stream, target = %tm.target, url = %shown_url, reason = e.reason.as_str(), "target down: {}", e.detail);
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
        .control()
        .registry()
        .target_ended(&stream, &status, |name_free| {
            // A new stream may already run under the same name, or a target re-added under
            // this name: leave their series alone.
            let stream_gone = relay.hub().get(stream.app(), stream.key()).is_none();
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
        let Some(sub) = stream.subscribe(limits, Instant::now().into_std()) else {
            return Ok(());
        };
        tm.status.set_subscription(sub.closer());
        // The sink's driver reports on its periodic check, as an RTMP push does.
        let reported = Mutex::new(Deltas::<3>::default());
        let (stats_tm, up, bytes_sent) = (
            tm.clone(),
            tm.series.up.clone(),
            tm.series.bytes_sent.clone(),
        );
        let report = SinkReport::new(up, bytes_sent, move |sub| {
            report_stats(
                &stats_tm,
                sub,
                &mut reported.lock().unwrap_or_else(|e| e.into_inner()),
            )
        });
        let result = tokio::select! {
            r = sink.run(&sub, target, &report) => r,
            // A stream that ends while its sink is still connecting stops the attempt.
            _ = stream.wait_ended() => Ok(()),
        };
        // Drops while connecting or just before a failure count too.
        report.report(&sub);
        return result;
    }
    let url = RtmpUrl::parse(&target.url).map_err(|e| ConnError::new(ErrorReason::BadUrl, e))?;
    let Some(dialer) = relay.dialer(&url.scheme).cloned() else {
        return Err(ConnError::new(
            ErrorReason::UnsupportedScheme,
            format!("no transport serves {}:// targets", url.scheme),
        ));
    };
    // Subscribe before connecting: the new connection starts with metadata, sequence
    // headers and the current GOP from a keyframe.
    let Some(sub) = stream.subscribe(limits, Instant::now().into_std()) else {
        return Ok(());
    };
    // Audio waits (in the hub, without waking this task) for the next video frame.
    sub.set_audio_ride(target.queue.target_audio_ride());
    tm.status.set_subscription(sub.closer());
    let mut reported = Deltas::<3>::default();
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
    report_stats(tm, &sub, &mut reported);
    result
}

/// Connects, publishes and forwards frames until the stream ends or the connection fails.
async fn drive(
    relay: &Arc<Relay>,
    dialer: &dyn Dialer,
    sub: &Subscription,
    url: &RtmpUrl,
    target: &ResolvedTarget,
    tm: &TargetMetrics,
    reported: &mut Deltas<3>,
) -> Result<(), ConnError> {
    // A stream that ends while its target is still connecting stops the attempt; once
    // publishing, the end arrives through the subscription.
    let connecting = connect_and_publish(relay, dialer, url, target);
    let (session, mut driver) = tokio::select! {
        r = connecting => r?,
        _ = sub.stream().wait_ended() => return Ok(()),
        _ = tm.status.cancelled() => return Ok(()),
    };
    tm.series.up.set(1);
    tm.status.set_state(TargetState::Up);
    info!(stream = %tm.stream, target = %tm.target, "target publishing");
    driver.set_merge(target.queue.target_write_merge());
    if target.audio == prism_config::TargetAudio::Aac {
        driver.set_audio(Some(relay.aac_audio(sub.stream())));
    }
    driver.set_tracks(target_tracks(target.tracks, session.peer_multitrack()));
    let mut push = RtmpPush {
        session,
        sub,
        tm,
        reported,
    };
    // Runs until the stream ends; then unpublish politely.
    match driver.run(&mut push).await? {
        Exit::Closed => {
            return Err(ConnError::new(
                ErrorReason::Closed,
                "destination closed the connection",
            ))
        }
        Exit::Ended | Exit::Yield | Exit::Stopped => {}
    }
    push.session.unpublish();
    driver.queue(push.session.out());
    let before = driver.bytes_written();
    driver.flush(GOODBYE_FLUSH).await;
    tm.series.bytes_sent.inc_by(driver.bytes_written() - before);
    Ok(())
}

/// The `capsEx` a push announces in `connect`.
const PUSH_CAPS_EX: u32 = prism_rtmp::session::caps_ex::MULTITRACK
    | prism_rtmp::session::caps_ex::MODEX
    | prism_rtmp::session::caps_ex::TIMESTAMP_NANO_OFFSET;

/// The tracks a target gets: its `video_track` / `audio_track` if set; else all of them if
/// its connect `_result` confirmed multitrack, and track 0 as a plain stream if not (a
/// legacy destination would misread multitrack messages).
fn target_tracks(configured: TargetTracks, peer_multitrack: bool) -> TargetTracks {
    if configured != TargetTracks::default() || peer_multitrack {
        return configured;
    }
    TargetTracks {
        video: Some(0),
        audio: Some(0),
    }
}

/// Dials, handshakes and publishes (connect, releaseStream, FCPublish, createStream, publish).
async fn connect_and_publish(
    relay: &Arc<Relay>,
    dialer: &dyn Dialer,
    url: &RtmpUrl,
    target: &ResolvedTarget,
) -> Result<(ClientSession, Driver<BoxedStream>), ConnError> {
    let io = tokio::time::timeout(CONNECT_TIMEOUT, dialer.dial(url, target))
        .await
        .map_err(|_| ConnError::new(ErrorReason::ConnectTimeout, "connect timed out"))??;
    let config = relay.config();
    let client_config = ClientConfig {
        app: url.app.clone(),
        tc_url: url.tc_url(),
        key: url.key.clone(),
        session: SessionConfig {
            chunk_size: config.rtmp.chunk_size,
            // The client's set-up timer: handshake, connect, createStream, publish.
            handshake_timeout: SETUP_TIMEOUT,
            ..SessionConfig::default()
        },
    };
    // Enhanced RTMP v2: say what Prism forwards, so a v2 destination can confirm multitrack
    // (see `target_tracks`). Not RECONNECT: a push does not follow reconnect requests.
    let session = if dialer.handshakes() {
        ClientSession::after_handshake_announcing(
            client_config,
            Some(PUSH_CAPS_EX),
            std::time::Instant::now(),
        )
    } else {
        let mut session = ClientSession::new(
            client_config,
            handshake_random(),
            epoch_ms(),
            std::time::Instant::now(),
        );
        session.announce_caps_ex(PUSH_CAPS_EX);
        session
    };
    let mut driver = Driver::new(io, prism_egress::Config::default());
    let mut setup = Setup(session);
    driver.queue(setup.0.out());
    // Set-up: handshake, connect, createStream, publish.
    match driver.run(&mut setup).await? {
        Exit::Yield => Ok((setup.0, driver)),
        _ => Err(ConnError::new(
            ErrorReason::Closed,
            "destination closed the connection during set-up",
        )),
    }
}

/// Feeds a destination's bytes to a push session and queues its replies; its events
/// (Publishing) are read from the session's state instead. `reason` labels a failure.
fn client_input(
    session: &mut ClientSession,
    input: &mut BytesMut,
    now: std::time::Instant,
    out: &mut OutQueue,
    reason: ErrorReason,
) -> Result<(), ConnError> {
    let handled = session.handle_input(input, now);
    while session.poll_event().is_some() {}
    out.append(session.out());
    handled.map_err(|e| ConnError::new(reason, e))
}

/// A push connection setting up: the driver's [`Output`] until the session publishes.
struct Setup(ClientSession);

impl Output for Setup {
    fn subscription(&self) -> Option<&Subscription> {
        None
    }

    fn send_frames(&mut self, frames: &mut Vec<Arc<Frame>>, _out: &mut OutQueue) {
        frames.clear();
    }

    fn handle_input(
        &mut self,
        input: &mut BytesMut,
        now: std::time::Instant,
        out: &mut OutQueue,
    ) -> Result<Flow, ConnError> {
        client_input(&mut self.0, input, now, out, ErrorReason::Refused)?;
        Ok(match self.0.is_publishing() {
            true => Flow::Yield,
            false => Flow::Continue,
        })
    }

    fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.0.poll_timeout()
    }

    fn handle_timeout(&mut self, now: std::time::Instant) -> Result<(), ConnError> {
        self.0.handle_timeout(now).map_err(|_| {
            ConnError::new(
                ErrorReason::SetupTimeout,
                "handshake/publish did not complete in time",
            )
        })
    }
}

/// A publishing push connection as the driver's [`Output`].
struct RtmpPush<'a> {
    session: ClientSession,
    sub: &'a Subscription,
    tm: &'a TargetMetrics,
    reported: &'a mut Deltas<3>,
}

impl Output for RtmpPush<'_> {
    fn subscription(&self) -> Option<&Subscription> {
        Some(self.sub)
    }

    fn send_frames(&mut self, frames: &mut Vec<Arc<Frame>>, out: &mut OutQueue) {
        let chunk_size = self.session.chunk_size();
        for f in frames.drain(..) {
            let kind = f.kind;
            match shared_body(&f, chunk_size) {
                Some(body) => self
                    .session
                    .send_media_shared(kind, f.timestamp, &f.payload, body),
                None => self.session.send_media(kind, f.timestamp, &f.payload),
            }
        }
        out.append(self.session.out());
    }

    fn handle_input(
        &mut self,
        input: &mut BytesMut,
        now: std::time::Instant,
        out: &mut OutQueue,
    ) -> Result<Flow, ConnError> {
        // A destination sends acknowledgements, and errors on close.
        client_input(&mut self.session, input, now, out, ErrorReason::Protocol)?;
        Ok(Flow::Continue)
    }

    fn report(&mut self) {
        report_stats(self.tm, self.sub, self.reported);
    }

    fn wrote(&mut self, n: usize) {
        self.tm.series.bytes_sent.inc_by(n as u64);
    }
}

/// Exports the subscription's queue depth and any drops not reported yet.
fn report_stats(tm: &TargetMetrics, sub: &Subscription, reported: &mut Deltas<3>) {
    let stats = sub.stats();
    tm.series.queue_bytes.set(stats.queue_bytes as i64);
    for (i, reason) in DropReason::ALL.iter().enumerate() {
        let new = reported.delta(i, stats.dropped(*reason));
        if new > 0 {
            tm.status.drops.fetch_add(new, Ordering::Relaxed);
            tm.series
                .dropped(crate::egress::drop_reason(*reason))
                .inc_by(new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_that_did_not_confirm_multitrack_get_track_0() {
        let all = TargetTracks::default();
        let zero = TargetTracks {
            video: Some(0),
            audio: Some(0),
        };
        let chosen = TargetTracks {
            video: Some(1),
            audio: None,
        };
        assert_eq!(target_tracks(all, true), all, "v2 destination: every track");
        assert_eq!(target_tracks(all, false), zero, "legacy: track 0, plain");
        // The configured choice wins either way.
        assert_eq!(target_tracks(chosen, true), chosen);
        assert_eq!(target_tracks(chosen, false), chosen);
    }
}
