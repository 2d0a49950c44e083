//! The viewers' HTTP endpoint (`[hls]`): every live stream (whatever transport brought it
//! in) packaged as CMAF by [`prism_hls`] and served as LL-HLS, HLS and DASH over hyper,
//! HTTP/1.1 and HTTP/2 (h2 over TLS via ALPN).
//!
//! Two halves share one table of streams:
//! - packaging: [`HlsOutput`] is a [`StreamOutput`]; for each stream that starts it
//!   subscribes to the hub and runs the relay's one connection [`Driver`] with an
//!   [`Output`] that feeds the packager (the "connection" is a sink: HLS has no peer per
//!   stream);
//! - serving ([`serve`]): URLs are parsed and answered from the packager under its lock;
//!   blocking playlist reloads and requests for the next part park on the stream's version
//!   watch, bounded in number and time.

mod dvr;
mod http;
mod pull;

pub use dvr::{check_dir as check_dvr_dir, prepare as prepare_dvr_dir};
pub use http::serve;

use bytes::BytesMut;
use prism_config::{HlsConfig, HlsContainer};
use prism_hls::{Container, Packager, PackagerConfig, TrackKind};
use prism_hub::{Frame, QueueLimits, Stream, Subscription};
use prism_metrics::{HlsMetrics, Metrics};
use prism_relay::{ConnError, Driver, Flow, Output, Relay, StreamOutput};
use prism_rtmp::OutQueue;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tracing::{debug, info};

/// How long a stream's window stays served after the stream ended (players get the
/// `EXT-X-ENDLIST`; a publisher that comes back within it continues it with a
/// discontinuity, its DVR window kept).
const ENDED_GRACE: Duration = Duration::from_secs(30);
/// A viewer counts as watching while it fetched media within this.
const VIEWER_WINDOW: Duration = Duration::from_secs(30);
/// Most distinct viewers tracked per stream for the estimate (beyond: counted as this).
const MAX_TRACKED_VIEWERS: usize = 100_000;

/// The HLS output and the state its HTTP server reads.
#[derive(Debug)]
pub struct HlsOutput {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: HlsConfig,
    pub(crate) metrics: Metrics,
    streams: Mutex<HashMap<String, Arc<HlsStream>>>,
    /// `dvr_dir`, when DVR segments spill to disk.
    dvr: Option<Arc<dvr::Root>>,
}

impl Shared {
    pub(crate) fn stream(&self, app: &str, key: &str) -> Option<Arc<HlsStream>> {
        let name = format!("{app}/{key}");
        lock(&self.streams).get(&name).cloned()
    }
}

/// One stream's window, shared by its packaging task and the HTTP handlers.
pub(crate) struct HlsStream {
    pub(crate) name: String,
    packager: Mutex<Packager>,
    /// The packager's version, for parked requests.
    pub(crate) version: watch::Sender<u64>,
    /// Its version by track (video, audio): a request that waits for one rendition's part
    /// is not woken by every part of the other.
    pub(crate) track_version: [watch::Sender<u64>; 2],
    /// Client fingerprint → last media request.
    viewers: Mutex<HashMap<u64, Instant>>,
    /// Playlists rendered at the packager's current version (locked inside its lock).
    pub(crate) playlists: Mutex<http::PlaylistCache>,
    /// Its series; taken again when a new publisher continues the window (the stream's end
    /// may have removed them).
    metrics: Mutex<HlsMetrics>,
    /// Distinguishes this window from an earlier one of the same name (ETags).
    pub(crate) instance: u64,
    /// Its directory in `dvr_dir`, when it spills.
    pub(crate) dvr: Option<Arc<dvr::Window>>,
    /// Which packaging task feeds it: bumped (under the packager's lock) when a new
    /// publisher of the stream continues the window.
    publisher: AtomicU64,
    /// A publisher resumed the stream within the hub's grace: its first sequence header
    /// starts a new timeline.
    new_session: AtomicBool,
}

impl std::fmt::Debug for HlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HlsStream({})", self.name)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HlsStream {
    pub(crate) fn packager(&self) -> MutexGuard<'_, Packager> {
        lock(&self.packager)
    }

    pub(crate) fn metrics(&self) -> HlsMetrics {
        lock(&self.metrics).clone()
    }

    /// Counts media bytes sent (without cloning the series).
    pub(crate) fn add_bytes_sent(&self, n: u64) {
        lock(&self.metrics).bytes_sent.inc_by(n);
    }

    /// The app part of the name (logs: the key is a secret).
    pub(crate) fn app(&self) -> &str {
        self.name.split('/').next().unwrap_or("")
    }

    /// Notes a media request from `client` for the viewer estimate.
    pub(crate) fn saw_viewer(&self, client: u64, now: Instant) {
        let mut v = lock(&self.viewers);
        if v.len() < MAX_TRACKED_VIEWERS || v.contains_key(&client) {
            v.insert(client, now);
        }
    }

    fn count_viewers(&self, now: Instant) -> usize {
        let mut v = lock(&self.viewers);
        v.retain(|_, seen| now.saturating_duration_since(*seen) < VIEWER_WINDOW);
        v.len()
    }

    fn bump(&self, (version, tracks): Versions) {
        for (tx, v) in self.track_version.iter().zip(tracks) {
            tx.send_if_modified(|old| std::mem::replace(old, v) != v);
        }
        self.version.send_replace(version);
    }

    /// Ends the window (`EXT-X-ENDLIST`) and wakes its parked requests.
    fn end(&self) {
        let version = {
            let mut p = self.packager();
            p.end(Instant::now());
            versions(&p)
        };
        self.bump(version);
    }

    /// Ends the window if packaging task `publisher` still feeds it.
    fn end_for(&self, publisher: u64) {
        let version = {
            let mut p = self.packager();
            if self.publisher.load(Ordering::Relaxed) != publisher {
                return;
            }
            p.end(Instant::now());
            versions(&p)
        };
        self.bump(version);
    }

    /// Continues the window with a new publisher of the stream: the number of its
    /// packaging task, or None if the window cannot go on (never started).
    fn resume(&self, metrics: &Metrics) -> Option<u64> {
        let (version, publisher) = {
            let mut p = self.packager();
            // The last publisher's frames end here (its task may not have noticed yet).
            p.end(Instant::now());
            if !p.resume() {
                return None;
            }
            let publisher = self.publisher.fetch_add(1, Ordering::Relaxed) + 1;
            (versions(&p), publisher)
        };
        *lock(&self.metrics) = metrics.hls(&self.name);
        self.bump(version);
        Some(publisher)
    }
}

/// The packager's version and its versions by track.
type Versions = (u64, [u64; 2]);

fn versions(p: &Packager) -> Versions {
    let by_track = [TrackKind::Video, TrackKind::Audio].map(|k| p.track_version(k));
    (p.version(), by_track)
}

/// A sequence base unique to this window: media sequence numbers and init versions start
/// here, so a URL never names two different segments (CDNs cache them for long) even when
/// a stream of the same name is packaged again after a restart.
fn sequence_base() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    // Strictly increasing within the process, whatever the clock does.
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

impl HlsOutput {
    /// With `dvr_dir`, call [`prepare_dvr_dir`] first (creates it, removes stale files).
    pub fn new(config: HlsConfig, metrics: Metrics) -> Arc<HlsOutput> {
        // Spilling only makes sense with a window longer than the live playlist.
        let dvr = config
            .dvr_dir
            .clone()
            .filter(|_| !config.dvr_window.is_zero())
            .map(|dir| dvr::Root::new(dir, metrics.clone()));
        Arc::new(HlsOutput {
            shared: Arc::new(Shared {
                config,
                metrics,
                streams: Mutex::new(HashMap::new()),
                dvr,
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn packager_config(&self, container: HlsContainer) -> PackagerConfig {
        let c = &self.shared.config;
        PackagerConfig {
            segment: c.segment,
            part: c.part,
            window_segments: c.window_segments,
            dvr_window: c.dvr_window,
            max_bytes: c.dvr_max_bytes,
            // One playlist length: a player that loaded the playlist just before a segment
            // left it still finds it.
            grace: c.segment * c.window_segments as u32,
            container: match container {
                HlsContainer::Fmp4 => Container::Fmp4,
                HlsContainer::Ts => Container::Ts,
                HlsContainer::Both => Container::Both,
            },
            spill: self.shared.dvr.is_some(),
        }
    }
}

impl StreamOutput for HlsOutput {
    fn stream_started(&self, relay: &Arc<Relay>, stream: &Arc<Stream>) {
        if !relay.config().hls_for(stream.app(), stream.key()) {
            return;
        }
        let name = stream.name().to_owned();
        let container = relay.config().hls_container_for(stream.app(), stream.key());
        let cfg = self.packager_config(container);
        let limits = QueueLimits {
            // Packaging never waits on a socket: the queue only absorbs scheduling delays.
            max_bytes: 32 * 1024 * 1024,
            max_ms: 10_000,
            overflow_disconnect: Duration::from_secs(30),
        };
        let Some(sub) = stream.subscribe(limits, Instant::now()) else {
            return;
        };
        let (hs, publisher) = {
            let mut streams = lock(&self.shared.streams);
            // A window of the same name (the stream ended moments ago) goes on, its DVR
            // window kept: players see a discontinuity.
            // (Unless a reload changed how it is packaged.)
            let resumed = streams
                .get(&name)
                .filter(|old| *old.packager().config() == cfg)
                .and_then(|old| Some((old.clone(), old.resume(&self.shared.metrics)?)));
            if let Some(resumed) = resumed {
                resumed
            } else {
                let base = sequence_base();
                let mut packager = Packager::new(cfg);
                packager.start_sequence(base, base as u32);
                // One that cannot go on is replaced; its players see the new one's segments
                // after a jump in sequence numbers.
                let hs = Arc::new(HlsStream {
                    metrics: Mutex::new(self.shared.metrics.hls(&name)),
                    name: name.clone(),
                    packager: Mutex::new(packager),
                    version: watch::channel(0).0,
                    track_version: [watch::channel(0).0, watch::channel(0).0],
                    viewers: Mutex::new(HashMap::new()),
                    playlists: Mutex::default(),
                    instance: base,
                    dvr: self.shared.dvr.as_ref().map(|r| Arc::new(r.window(base))),
                    publisher: AtomicU64::new(0),
                    new_session: AtomicBool::new(false),
                });
                if let Some(old) = streams.insert(name.clone(), hs.clone()) {
                    // Its parked requests answer from the ended window.
                    old.end();
                }
                if hs.dvr.is_some() {
                    tokio::spawn(dvr::run_writer(Arc::downgrade(&hs), hs.version.subscribe()));
                }
                (hs, 0)
            }
        };
        debug!(stream = %name, publisher, "hls packaging started");
        let guard = relay.track(|| format!("hls packager {name}"));
        let shared = self.shared.clone();
        let mem = relay
            .memory()
            .map(|b| b.charge(prism_mem::Pool::Hls, 0))
            .unwrap_or_default();
        // Opus (WebRTC) is packaged as AAC: every HLS player and MPEG-TS take AAC.
        let audio = relay.aac_audio(stream);
        tokio::spawn(async move {
            let mut out = Packaging {
                sub,
                hs: hs.clone(),
                publisher,
                reported_version: 0,
                ts_refused: false,
                next_tick: Instant::now() + TICK,
                mem,
            };
            // The default pacing: nothing is written, only the periodic check (which
            // exports the gauges) matters.
            let mut driver = Driver::new(NullIo, prism_egress::Config::default());
            driver.set_audio(Some(audio));
            let exit = driver.run(&mut out).await;
            hs.end_for(publisher);
            info!(stream = %hs.name, "hls packaging ended: {}", match exit {
                Ok(e) => format!("{e:?}"),
                Err(e) => format!("{e:?}"),
            });
            // Packaging is over: a shutdown need not wait for the window's grace.
            drop(guard);
            tokio::time::sleep(ENDED_GRACE).await;
            let mut streams = lock(&shared.streams);
            let current = hs.publisher.load(Ordering::Relaxed) == publisher;
            if current && streams.get(&hs.name).is_some_and(|s| Arc::ptr_eq(s, &hs)) {
                streams.remove(&hs.name);
                drop(streams);
                shared.metrics.forget_hls(&hs.name);
            }
        });
    }

    /// The next sequence header of the stream starts a new timeline.
    fn stream_resumed(&self, _relay: &Arc<Relay>, stream: &Arc<Stream>) {
        if let Some(hs) = self.shared.stream(stream.app(), stream.key()) {
            hs.new_session.store(true, Ordering::Relaxed);
        }
    }
}

/// The [`Output`] of a packaging task: frames go into the packager.
struct Packaging {
    sub: Subscription,
    hs: Arc<HlsStream>,
    /// Its number (see `HlsStream::publisher`): once another continues the window, this
    /// one's late frames are dropped.
    publisher: u64,
    reported_version: u64,
    /// The stream's codecs cannot go into MPEG-TS (said once in the log).
    ts_refused: bool,
    /// The next [`Output::report`] while no frame comes (the driver reports on frames).
    next_tick: Instant,
    /// The window's bytes in memory, charged to the media-memory budget (pool `hls`).
    mem: prism_mem::MemCharge,
}

/// How often an idle stream's window drops what its grace ended and exports its gauges.
const TICK: Duration = Duration::from_secs(1);

impl Output for Packaging {
    fn subscription(&self) -> Option<&Subscription> {
        Some(&self.sub)
    }

    fn send_frames(&mut self, frames: &mut Vec<Arc<Frame>>, _out: &mut OutQueue) {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let (version, ts_refused) = {
            let mut p = self.hs.packager();
            if self.hs.publisher.load(Ordering::Relaxed) != self.publisher {
                frames.clear();
                return;
            }
            for f in frames.drain(..) {
                // The resumed publisher's frames begin with its sequence headers (the
                // previous one's, still queued, come before).
                if f.sequence_header && self.hs.new_session.swap(false, Ordering::Relaxed) {
                    p.restart();
                }
                p.push(f.kind, f.timestamp, &f.payload, now, wall);
            }
            let refused = p.ts().and_then(|t| t.unsupported()).map(str::to_owned);
            (versions(&p), refused)
        };
        if ts_refused.is_some() != self.ts_refused {
            self.ts_refused = ts_refused.is_some();
            match ts_refused {
                Some(why) => info!(stream = %self.hs.name, "no MPEG-TS segments: {why}"),
                None => info!(stream = %self.hs.name, "MPEG-TS segments resumed"),
            }
        }
        if version.0 != self.reported_version {
            self.reported_version = version.0;
            self.hs.bump(version);
        }
    }

    fn handle_input(
        &mut self,
        input: &mut BytesMut,
        _now: Instant,
        _out: &mut OutQueue,
    ) -> Result<Flow, ConnError> {
        input.clear();
        Ok(Flow::Continue)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_tick)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), ConnError> {
        if now >= self.next_tick {
            self.report();
        }
        Ok(())
    }

    fn report(&mut self) {
        let now = Instant::now();
        self.next_tick = now + TICK;
        let (segments, bytes, disk) = {
            let mut p = self.hs.packager();
            p.handle_timeout(now);
            (p.segment_count(), p.bytes(), p.disk_bytes())
        };
        let viewers = self.hs.count_viewers(now);
        let m = self.hs.metrics();
        m.segments.set(segments as i64);
        m.dvr_bytes.set(bytes as i64);
        m.dvr_disk_bytes.set(disk as i64);
        self.mem.set(bytes.saturating_sub(disk) as usize);
        m.viewers.set(viewers as i64);
    }
}

/// The byte stream of a packaging task: nothing to read, everything written vanishes (the
/// packager's output is its window, not bytes on a socket).
struct NullIo;

impl AsyncRead for NullIo {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Pending
    }
}

impl AsyncWrite for NullIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
