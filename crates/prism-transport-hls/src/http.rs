//! The viewers' HTTP server: hyper, HTTP/1.1 and HTTP/2 (h2c by prior knowledge in the
//! clear, h2 by ALPN over TLS), bounded connections, header timeouts, and the LL-HLS
//! blocking requests parked on each stream's version watch.

use crate::pull::{self, Leases, Pulled};
use crate::{lock, HlsOutput, HlsStream, Shared};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prism_hls::playlist::{self, MediaOptions};
use prism_hls::request::{self, BadUrl, Readiness, Resource};
use prism_hls::{Located, TrackKind};
use prism_relay::{ConnInfo, Relay, StreamRequest};
use prism_transport_tls::ReloadableTls;
use prometheus::IntCounter;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::warn;

/// Every answer's body: its chunks, sent as they are (no boxing: one less allocation per
/// request).
type Body = StreamedChunks;

/// The `transport` of viewers in logs, refusals and webhooks.
const TRANSPORT: &str = "hls";
/// A client's request headers must arrive within this (slowloris), and a connection's first
/// request too, whatever the protocol.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A successful play authorization (route rules and webhook) is reused this long for the
/// same client, stream and token, so that a viewer's many requests cost one webhook call.
const AUTH_TTL: Duration = Duration::from_secs(30);
const MAX_AUTH_CACHE: usize = 100_000;
/// The index waits this long for a stream's first segment to open.
const START_WAIT: Duration = Duration::from_secs(10);
/// An HTTP/2 connection is pinged after this long without frames, and closed when the
/// ping is not answered within `H2_PING_TIMEOUT`.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes must finish within this.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const PAGE: &str = include_str!("page.html");
const HLS_JS: &str = include_str!("../assets/hls.min.js");

struct Server {
    relay: Arc<Relay>,
    shared: Arc<Shared>,
    /// (client ip, hash of stream and token) → authorized until.
    auth: Mutex<HashMap<(std::net::IpAddr, u64), Instant>>,
    /// Requests parked now (see [`Parked`]).
    parked: AtomicUsize,
    /// `Access-Control-Allow-Origin` (built once: the config does not change).
    allow_origin: Option<HeaderValue>,
    /// `prism_hls_requests_total` series by (kind, status), looked up once: the registry's
    /// lookup (label hashing, a formatted status) on every request is measurable.
    request_counters: Mutex<Vec<(&'static str, u16, IntCounter)>>,
    /// Viewers of pulled streams (edge, on-demand sources) keep their pull alive.
    leases: Arc<Leases>,
}

/// Serves viewers on `listener` until the process ends. `tls`: HTTPS with HTTP/2 by ALPN.
pub async fn serve(
    listener: TcpListener,
    relay: Arc<Relay>,
    output: Arc<HlsOutput>,
    tls: Option<Arc<ReloadableTls>>,
) {
    let shared = output.shared().clone();
    let slots = Arc::new(Semaphore::new(shared.config.max_connections));
    let server = Arc::new(Server {
        relay,
        auth: Mutex::new(HashMap::new()),
        parked: AtomicUsize::new(0),
        allow_origin: HeaderValue::from_str(&shared.config.allow_origin).ok(),
        request_counters: Mutex::new(Vec::new()),
        shared,
        leases: Arc::default(),
    });
    tokio::spawn(pull::run_sweeper(server.leases.clone()));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!("hls accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Over the limit: closed at once, nothing read.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (server, tls) = (server.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let asked = Arc::new(AtomicBool::new(false));
            let service = {
                let asked = asked.clone();
                service_fn(move |req| {
                    asked.store(true, Ordering::Relaxed);
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req, peer).await) }
                })
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(64 * 1024);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(256)
                .max_header_list_size(16 * 1024)
                // A peer that stops answering pings is gone (or a slowloris on h2).
                .keep_alive_interval(H2_PING_INTERVAL)
                .keep_alive_timeout(H2_PING_TIMEOUT);
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(tcp), service);
                    first_request_within(HEADER_TIMEOUT, conn, &asked).await;
                }
                Some(tls) => {
                    let Ok(stream) = tls.accept(tcp, TLS_HANDSHAKE_TIMEOUT).await else {
                        return;
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    first_request_within(HEADER_TIMEOUT, conn, &asked).await;
                }
            }
        });
    }
}

/// Runs connection `conn` to its end, but drops it (closing it) if no request came within
/// `timeout` (`asked` is set by the first one). hyper's header timeout starts only once
/// HTTP/1 is chosen: a client that sends nothing, or the HTTP/2 preface a byte at a time,
/// or the preface and nothing more, would otherwise hold its connection slot for ever.
async fn first_request_within<F: std::future::Future>(
    timeout: Duration,
    conn: F,
    asked: &AtomicBool,
) {
    let mut conn = std::pin::pin!(conn);
    if tokio::time::timeout(timeout, &mut conn).await.is_err() && asked.load(Ordering::Relaxed) {
        conn.await;
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Chunks::one(b).boxed()
}

fn empty() -> Body {
    Chunks::default().boxed()
}

/// Counts a parked request in `prism_hls_blocking_requests` for as long as it lives, within
/// the bound `max_blocking_requests`.
struct Parked<'a>(&'a Server);

impl<'a> Parked<'a> {
    fn enter(server: &'a Server) -> Option<Parked<'a>> {
        let max = server.shared.config.max_blocking_requests;
        // Admitted on the counter, then shown in the gauge (and hidden before the counter
        // drops): the gauge never reads above the bound, not even for an instant.
        server
            .parked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        server.shared.metrics.hls_blocking_requests().inc();
        Some(Parked(server))
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.shared.metrics.hls_blocking_requests().dec();
        self.0.parked.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a handler produced, before the common headers.
struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: Chunks,
    cache: &'static str,
    etag: Option<String>,
    /// Media bytes of the stream (counted in `prism_hls_bytes_sent_total`).
    media: bool,
}

impl Answer {
    fn status(status: StatusCode) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Chunks::one(format!("{}\n", status.canonical_reason().unwrap_or(""))),
            cache: "no-store",
            etag: None,
            media: false,
        }
    }
}

/// `Cache-Control` of segments, parts and init segments: their URLs never name other bytes
/// (sequence numbers start from a per-window base), so caches may keep them.
const IMMUTABLE: &str = "public, max-age=86400, immutable";
/// Playlists and manifests change with every part; a CDN may coalesce requests within
/// about a part duration (blocking reloads carry their own query, so they are distinct).
const PLAYLIST_CACHE: &str = "public, max-age=1";

impl Server {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let mut resp = match *req.method() {
            Method::GET | Method::HEAD => self.get(&req, peer).await,
            Method::OPTIONS => {
                let mut r = Response::new(empty());
                *r.status_mut() = StatusCode::NO_CONTENT;
                let h = r.headers_mut();
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("Range, If-None-Match"),
                );
                h.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("86400"),
                );
                r
            }
            _ => {
                let mut r = Response::new(full("method not allowed\n"));
                *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                r.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
                r
            }
        };
        let h = resp.headers_mut();
        if let Some(v) = &self.allow_origin {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v.clone());
        }
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Content-Length, Content-Range, ETag"),
        );
        resp
    }

    async fn get(&self, req: &Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let uri = req.uri();
        let head = req.method() == Method::HEAD;
        if uri.path() == "/favicon.ico" {
            let mut a = Answer::status(StatusCode::NO_CONTENT);
            a.body = Chunks::default();
            a.cache = "public, max-age=86400";
            return self.respond(req, a, None, "other", head);
        }
        if uri.path() == "/hls.min.js" {
            let a = Answer {
                status: StatusCode::OK,
                content_type: "text/javascript; charset=utf-8",
                body: Chunks::one(Bytes::from_static(HLS_JS.as_bytes())),
                cache: "public, max-age=86400",
                etag: Some(format!("\"hlsjs-{}\"", env!("CARGO_PKG_VERSION"))),
                media: false,
            };
            return self.respond(req, a, None, "page", head);
        }
        let parsed = match request::parse(uri.path(), uri.query()) {
            Ok(r) => r,
            Err(e) => {
                let status = match e {
                    BadUrl::NotFound => StatusCode::NOT_FOUND,
                    BadUrl::Malformed => StatusCode::BAD_REQUEST,
                };
                return self.respond(req, Answer::status(status), None, "other", head);
            }
        };
        let kind = parsed.resource.kind();
        let (app, key) = (parsed.app, parsed.key);
        let mut hs = self.shared.stream(app, key);
        // Not live here (no window, or an ended one) but pulled on demand (an edge, an
        // on-demand source): this request starts the pull and waits for it.
        let pull = (hs.is_none() || !self.relay.stream(app, key).is_some_and(|s| s.is_live()))
            && self.relay.can_pull(app, key);
        if hs.is_none() && !pull {
            return self.respond(req, Answer::status(StatusCode::NOT_FOUND), None, kind, head);
        }
        // Access: the route's play rules and the on_play webhook, cached per client.
        let token = parsed.token.unwrap_or("");
        if !self.authorized(peer, app, key, token).await {
            return self.respond(req, Answer::status(StatusCode::FORBIDDEN), None, kind, head);
        }
        // Every request for a pulled stream renews its viewers' lease (a no-op otherwise).
        let leased = self.leases.renew(&self.relay, app, key);
        if pull {
            let Some(_parked) = leased.then(|| Parked::enter(self)).flatten() else {
                return self.respond(req, Answer::status(StatusCode::NOT_FOUND), None, kind, head);
            };
            hs = match pull::wait_live(&self.relay, app, key).await {
                Pulled::Live => self.shared.stream(app, key),
                Pulled::NotFound => None,
            };
        }
        let Some(hs) = hs else {
            return self.respond(req, Answer::status(StatusCode::NOT_FOUND), None, kind, head);
        };
        let answer = self.answer(&hs, &parsed, req, peer).await;
        self.respond(req, answer, Some(&hs), kind, head)
    }

    /// Whether `peer` may play `app/key` with `token`; successes are cached for
    /// [`AUTH_TTL`].
    async fn authorized(&self, peer: SocketAddr, app: &str, key: &str, token: &str) -> bool {
        // One hash of stream and token: no allocation for the (usual) cached case.
        let mut hasher = DefaultHasher::new();
        (app, key, token).hash(&mut hasher);
        let entry = (peer.ip(), hasher.finish());
        let now = Instant::now();
        if lock(&self.auth)
            .get(&entry)
            .is_some_and(|until| *until > now)
        {
            return true;
        }
        let query = if token.is_empty() {
            String::new()
        } else {
            format!("token={token}")
        };
        let req = StreamRequest {
            app,
            key,
            query: &query,
        };
        let info = ConnInfo {
            peer,
            transport: TRANSPORT,
        };
        if self.relay.authorize_play(req, &info).await.is_err() {
            return false;
        }
        let mut cache = lock(&self.auth);
        if cache.len() >= MAX_AUTH_CACHE {
            cache.retain(|_, until| *until > now);
            if cache.len() >= MAX_AUTH_CACHE {
                cache.clear();
            }
        }
        cache.insert(entry, now + AUTH_TTL);
        true
    }

    /// The answer for `r`, parking the request while the window cannot answer it yet.
    async fn answer(
        &self,
        hs: &Arc<HlsStream>,
        r: &request::Request<'_>,
        req: &Request<Incoming>,
        peer: SocketAddr,
    ) -> Answer {
        // A rendition's playlist and parts change with its own version: its parked requests
        // sleep through the other rendition's parts.
        let mut rx = match r.resource {
            Resource::Media(kind) | Resource::Part(kind, ..) | Resource::Segment(kind, _) => {
                hs.track_version[kind as usize].subscribe()
            }
            _ => hs.version.subscribe(),
        };
        let mut parked = None;
        let mut deadline = None;
        loop {
            let disk = 'ready: {
                let p = hs.packager();
                match request::readiness(&p, r) {
                    Readiness::Ready => match on_disk(&p, r) {
                        Some(at) => break 'ready Some(at),
                        None => return self.render(hs, &p, r, req, peer),
                    },
                    Readiness::NotFound => return Answer::status(StatusCode::NOT_FOUND),
                    Readiness::TooFarAhead => return Answer::status(StatusCode::BAD_REQUEST),
                    Readiness::Wait => {}
                }
                if deadline.is_none() {
                    // RFC 8216bis 6.2.5.2: a blocking request waits up to three target
                    // durations; the index waits for the stream's first keyframe.
                    let wait = match r.resource {
                        Resource::Multivariant
                        | Resource::Dash
                        | Resource::Media(_)
                        | Resource::TsPlaylist
                            if !p.is_started() =>
                        {
                            START_WAIT
                        }
                        _ => Duration::from_secs(3 * playlist::target_duration(&p)),
                    };
                    deadline = Some(tokio::time::Instant::now() + wait);
                }
                None
            };
            // Read without the packager's lock.
            if let Some(at) = disk {
                return self.read_disk(hs, at, req, peer).await;
            }
            if parked.is_none() {
                match Parked::enter(self) {
                    Some(p) => parked = Some(p),
                    None => return Answer::status(StatusCode::SERVICE_UNAVAILABLE),
                }
            }
            let until = deadline.unwrap_or_else(tokio::time::Instant::now);
            match tokio::time::timeout_at(until, rx.changed()).await {
                Ok(Ok(())) => {}
                // Timed out or the window is gone.
                _ => return Answer::status(StatusCode::SERVICE_UNAVAILABLE),
            }
        }
    }

    /// A segment or part spilled to `dvr_dir`: read from its file (404 if it left the
    /// window meanwhile).
    async fn read_disk(
        &self,
        hs: &HlsStream,
        at: OnDisk,
        req: &Request<Incoming>,
        peer: SocketAddr,
    ) -> Answer {
        let Some(window) = &hs.dvr else {
            return Answer::status(StatusCode::NOT_FOUND);
        };
        let Some(data) = window.read(at.kind, at.msn, at.offset, at.len).await else {
            return Answer::status(StatusCode::NOT_FOUND);
        };
        hs.saw_viewer(client_fingerprint(req, peer), Instant::now());
        let name = match at.part {
            Some(i) => format!("{}.{i}", at.msn),
            None => at.msn.to_string(),
        };
        Answer {
            status: StatusCode::OK,
            content_type: "video/mp4",
            body: Chunks::one(data),
            cache: IMMUTABLE,
            etag: Some(format!("\"{}-{}-{name}\"", hs.instance, at.kind.as_str())),
            media: true,
        }
    }

    /// The stream's ABR renditions (`[[transcode]]`) that are packaged, as variants. Their
    /// packagers are locked while the source's is held: only ever in that order (a
    /// rendition's name is longer than its source's), so there is no cycle.
    fn variants(&self, app: &str, key: &str) -> Vec<playlist::Variant> {
        let config = self.relay.config();
        let Some(ladder) = config.transcode_for(app, key) else {
            return Vec::new();
        };
        ladder
            .renditions
            .iter()
            .filter_map(|r| {
                let name = format!("{key}_{}", r.name);
                let hs = self.shared.stream(app, &name)?;
                let p = hs.packager();
                let fps = r.video.as_ref().and_then(|v| v.fps).map(f64::from);
                playlist::variant(&p, format!("../{name}/"), fps)
            })
            .collect()
    }

    /// The stream's packaged ABR renditions with their path relative to it, for DASH.
    fn rendition_streams(&self, app: &str, key: &str) -> Vec<(String, Arc<HlsStream>)> {
        let config = self.relay.config();
        let Some(ladder) = config.transcode_for(app, key) else {
            return Vec::new();
        };
        ladder
            .renditions
            .iter()
            .filter_map(|r| {
                let name = format!("{key}_{}", r.name);
                Some((format!("../{name}/"), self.shared.stream(app, &name)?))
            })
            .collect()
    }

    fn render(
        &self,
        hs: &HlsStream,
        p: &prism_hls::Packager,
        r: &request::Request<'_>,
        req: &Request<Incoming>,
        peer: SocketAddr,
    ) -> Answer {
        let query = r.token.map(|t| format!("token={t}")).unwrap_or_default();
        let playlist = |text: Option<Bytes>, ct: &'static str| match text {
            Some(t) => Answer {
                status: StatusCode::OK,
                content_type: ct,
                body: Chunks::one(t),
                cache: PLAYLIST_CACHE,
                etag: None,
                media: false,
            },
            None => Answer::status(StatusCode::NOT_FOUND),
        };
        // Every parked reload of a rendition wakes at the same version and wants the same
        // text: rendered once, shared.
        let cached = |render: &dyn Fn() -> Option<String>| {
            let key = (r.resource, r.skip, query.as_str());
            lock(&hs.playlists).get_or_render(p.version(), key, render)
        };
        let media_as = |data: Option<Chunks>, etag: String, ct: &'static str| match data {
            Some(body) => {
                hs.saw_viewer(client_fingerprint(req, peer), Instant::now());
                Answer {
                    status: StatusCode::OK,
                    content_type: ct,
                    body,
                    cache: IMMUTABLE,
                    etag: Some(etag),
                    media: true,
                }
            }
            None => Answer::status(StatusCode::NOT_FOUND),
        };
        let media = |data, etag| media_as(data, etag, "video/mp4");
        const M3U8: &str = "application/vnd.apple.mpegurl";
        // The stream's codecs cannot go into MPEG-TS: say so (counted as a 415) rather
        // than a bare 404, so an operator sees why a set-top box gets nothing.
        let ts_refused = p.ts().and_then(|t| t.unsupported()).map(|why| Answer {
            body: Chunks::one(format!("{why}; the fMP4 playlists are unaffected\n")),
            ..Answer::status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        });
        match r.resource {
            Resource::Page => Answer {
                status: StatusCode::OK,
                content_type: "text/html; charset=utf-8",
                body: Chunks::one(
                    page(r.app, r.key, p.config().dvr_window.as_secs())
                        .replace("{{WHEP}}", &whep_json(self.relay.config().webrtc.as_ref())),
                ),
                cache: "no-cache",
                etag: None,
                media: false,
            },
            Resource::Multivariant => match ts_refused {
                Some(refused) if !p.config().container.fmp4() => refused,
                _ => {
                    let variants = self.variants(r.app, r.key);
                    playlist(
                        cached(&|| playlist::multivariant_with(p, &query, &variants)),
                        M3U8,
                    )
                }
            },
            Resource::TsPlaylist => match ts_refused {
                Some(refused) => refused,
                None => playlist(cached(&|| playlist::ts_media(p, &query)), M3U8),
            },
            Resource::TsSegment(msn) => media_as(
                p.ts()
                    .and_then(|t| t.segment(msn))
                    .map(|s| Chunks::one(s.data.clone())),
                format!("\"{}-ts-{msn}\"", hs.instance),
                "video/mp2t",
            ),
            Resource::Media(kind) => playlist(
                cached(&|| playlist::media(p, kind, MediaOptions { skip: r.skip }, &query)),
                M3U8,
            ),
            // Not cached: it depends on the time of the request.
            Resource::Dash => {
                // The renditions' packagers, locked after the source's (see `variants`).
                let streams = self.rendition_streams(r.app, r.key);
                let guards: Vec<_> = streams
                    .iter()
                    .map(|(path, hs)| (path, hs.packager()))
                    .collect();
                let variants: Vec<(&str, &prism_hls::Packager)> = guards
                    .iter()
                    .map(|(path, g)| (path.as_str(), &**g))
                    .collect();
                playlist(
                    playlist::dash_with(p, SystemTime::now(), &query, &variants).map(Bytes::from),
                    "application/dash+xml",
                )
            }
            Resource::Init(kind, v) => media(
                p.track(kind)
                    .and_then(|t| t.init(v))
                    .cloned()
                    .map(Chunks::one),
                format!("\"{}-{}-i{v}\"", hs.instance, kind.as_str()),
            ),
            // A segment is its parts back to back: sent as they are, never copied into one.
            Resource::Segment(kind, msn) => media(
                p.track(kind)
                    .and_then(|t| t.segment(msn))
                    .map(|s| Chunks(s.parts.iter().map(|p| p.data.clone()).collect())),
                format!("\"{}-{}-{msn}\"", hs.instance, kind.as_str()),
            ),
            Resource::Part(kind, msn, i) => media(
                p.track(kind)
                    .and_then(|t| t.part(msn, i))
                    .map(|part| Chunks::one(part.data.clone())),
                format!("\"{}-{}-{msn}.{i}\"", hs.instance, kind.as_str()),
            ),
        }
    }

    fn count_request(&self, kind: &'static str, status: u16) {
        let mut counters = lock(&self.request_counters);
        if let Some((.., c)) = counters
            .iter()
            .find(|(k, s, _)| *s == status && std::ptr::eq(*k, kind))
        {
            c.inc();
            return;
        }
        let c = self.shared.metrics.hls_request(kind, status);
        c.inc();
        // Kinds and statuses are a small fixed set; the bound is a guard.
        if counters.len() < 256 {
            counters.push((kind, status, c));
        }
    }

    /// Headers common to every answer, conditional and range requests, metrics.
    fn respond(
        &self,
        req: &Request<Incoming>,
        a: Answer,
        hs: Option<&Arc<HlsStream>>,
        kind: &'static str,
        head: bool,
    ) -> Response<Body> {
        let mut status = a.status;
        let mut body = a.body;
        let mut content_range = None;
        let not_modified = a.etag.as_ref().is_some_and(|etag| {
            req.headers()
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
        });
        if status == StatusCode::OK && not_modified {
            status = StatusCode::NOT_MODIFIED;
            body = Chunks::default();
        } else if status == StatusCode::OK && a.media {
            if let Some(range) = req.headers().get(header::RANGE) {
                let total = body.len();
                match byte_range(range.to_str().unwrap_or(""), total) {
                    Some((start, end)) => {
                        content_range = Some(format!("bytes {start}-{end}/{total}"));
                        body = body.slice(start, end);
                        status = StatusCode::PARTIAL_CONTENT;
                    }
                    None => {
                        content_range = Some(format!("bytes */{total}"));
                        body = Chunks::default();
                        status = StatusCode::RANGE_NOT_SATISFIABLE;
                    }
                }
            }
        }
        self.count_request(kind, status.as_u16());
        if let Some(hs) = hs {
            if !head && body.len() > 0 && (a.media || status.is_success()) {
                hs.add_bytes_sent(body.len() as u64);
            }
        }
        let len = body.len();
        let mut resp = Response::new(if head { empty() } else { body.boxed() });
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        // Sized for every header an answer gets (no regrowth).
        h.reserve(8);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(a.content_type),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(a.cache));
        // hyper writes it from the body's exact size otherwise (without a header value
        // to allocate); a HEAD answer has no body to tell it.
        if head || len == 0 {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        if a.media {
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        }
        // The formatted tag's buffer becomes the header value, not copied.
        if let Some(etag) = a
            .etag
            .and_then(|e| HeaderValue::from_maybe_shared(Bytes::from(e)).ok())
        {
            h.insert(header::ETAG, etag);
        }
        if let Some(cr) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
            h.insert(header::CONTENT_RANGE, cr);
        }
        resp
    }
}

/// Playlists rendered at one packager version. A playlist is a function of the version,
/// the resource, the delta option and the query carried into its URIs (a viewer's token:
/// part of the key, so no viewer gets another's). A few entries, the current version only.
#[derive(Default)]
pub(crate) struct PlaylistCache {
    version: u64,
    entries: Vec<(Resource, bool, String, Bytes)>,
}

/// Entries kept per stream: the renditions, their delta updates, the multivariant
/// playlist; distinct tokens beyond that take turns.
const MAX_CACHED_PLAYLISTS: usize = 8;

impl PlaylistCache {
    /// The text for `key` at `version`, rendered by `render` unless cached; `None` (not
    /// renderable) is not cached.
    fn get_or_render(
        &mut self,
        version: u64,
        (resource, skip, query): (Resource, bool, &str),
        render: &dyn Fn() -> Option<String>,
    ) -> Option<Bytes> {
        if self.version != version {
            self.version = version;
            self.entries.clear();
        }
        let hit = self
            .entries
            .iter()
            .find(|(r, s, q, _)| *r == resource && *s == skip && q == query);
        if let Some((.., text)) = hit {
            return Some(text.clone());
        }
        let text = Bytes::from(render()?);
        if self.entries.len() >= MAX_CACHED_PLAYLISTS {
            self.entries.remove(0);
        }
        self.entries
            .push((resource, skip, query.to_owned(), text.clone()));
        Some(text)
    }
}

/// Where a spilled segment's or part's bytes are.
struct OnDisk {
    kind: TrackKind,
    msn: u64,
    part: Option<usize>,
    offset: u64,
    len: u64,
}

/// The file range of a segment or part request whose bytes are on disk (not in memory).
fn on_disk(p: &prism_hls::Packager, r: &request::Request<'_>) -> Option<OnDisk> {
    let (kind, msn, part) = match r.resource {
        Resource::Segment(kind, msn) => (kind, msn, None),
        Resource::Part(kind, msn, i) => (kind, msn, Some(i)),
        _ => return None,
    };
    let t = p.track(kind)?;
    let at = match part {
        Some(i) => t.part_data(msn, i)?,
        None => t.segment_data(msn)?,
    };
    match at {
        Located::Disk { msn, offset, len } => Some(OnDisk {
            kind,
            msn,
            part,
            offset,
            len,
        }),
        Located::Memory(_) => None,
    }
}

/// A body as the chunks it is stored in (a segment's parts), sent without joining them.
#[derive(Default)]
struct Chunks(Vec<Bytes>);

impl Chunks {
    fn one(b: impl Into<Bytes>) -> Chunks {
        Chunks(vec![b.into()])
    }

    fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    /// Bytes `start..=end`, as slices of the chunks they fall in.
    fn slice(self, start: usize, end: usize) -> Chunks {
        let mut out = Vec::new();
        let mut at = 0;
        for c in self.0 {
            let (from, to) = (at, at + c.len());
            at = to;
            if to <= start || from > end {
                continue;
            }
            out.push(c.slice(start.saturating_sub(from)..(end + 1).min(to) - from));
        }
        Chunks(out)
    }

    fn boxed(self) -> Body {
        StreamedChunks(self.0.into_iter())
    }
}

/// [`Chunks`] as a hyper body: one data frame per chunk.
pub(crate) struct StreamedChunks(std::vec::IntoIter<Bytes>);

impl hyper::body::Body for StreamedChunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.next().map(|b| Ok(hyper::body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_slice().is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.0.as_slice().iter().map(|b| b.len() as u64).sum())
    }
}

/// A viewer's identity for the estimate: address and user agent.
fn client_fingerprint(req: &Request<Incoming>, peer: SocketAddr) -> u64 {
    let mut h = DefaultHasher::new();
    peer.ip().hash(&mut h);
    req.headers().get(header::USER_AGENT).hash(&mut h);
    h.finish()
}

/// One `bytes=a-b`, `bytes=a-` or `bytes=-n` range of a body of `len` bytes, inclusive.
fn byte_range(v: &str, len: usize) -> Option<(usize, usize)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: usize = n.parse().ok()?;
            (len.saturating_sub(n), len - 1)
        }
        (a, "") => (a.parse().ok()?, len - 1),
        (a, b) => (a.parse().ok()?, b.parse::<usize>().ok()?.min(len - 1)),
    };
    (start <= end && start < len).then_some((start, end))
}

/// The page's `{{WHEP}}`: the `[webrtc]` signalling port (on the host the page was loaded
/// from; the WHEP path is the page's own plus `whep`), or `null`. With it the page offers a
/// sub-second WebRTC button.
fn whep_json(webrtc: Option<&prism_config::WebrtcConfig>) -> String {
    match webrtc {
        Some(w) => format!(
            "{{\"port\":{},\"tls\":{}}}",
            w.listen.port(),
            w.tls.is_some()
        ),
        None => "null".into(),
    }
}

/// The player page of `app/key`.
fn page(app: &str, key: &str, dvr_s: u64) -> String {
    PAGE.replace("{{STREAM}}", &format!("{app}/{key}"))
        .replace("{{DVR}}", &dvr_s.to_string())
}

#[cfg(test)]
mod tests {
    use super::{byte_range, Chunks, PlaylistCache};
    use bytes::Bytes;
    use prism_hls::request::Resource;
    use prism_hls::TrackKind;
    use std::cell::Cell;

    #[test]
    fn playlists_are_rendered_once_per_version_and_query() {
        let mut cache = PlaylistCache::default();
        let renders = Cell::new(0);
        let mut get = |version, key: (Resource, bool, &str)| {
            let text = cache.get_or_render(version, key, &|| {
                renders.set(renders.get() + 1);
                Some(format!("{version} {key:?}"))
            });
            String::from_utf8(text.unwrap().to_vec()).unwrap()
        };
        let video = Resource::Media(TrackKind::Video);
        assert_eq!(get(1, (video, false, "")), "1 (Media(Video), false, \"\")");
        assert_eq!(get(1, (video, false, "")), "1 (Media(Video), false, \"\")");
        assert_eq!(
            renders.get(),
            1,
            "the same playlist at the same version: shared"
        );
        // Another viewer's token, the delta update, the other rendition: their own text.
        assert!(get(1, (video, false, "token=b")).contains("token=b"));
        assert!(get(1, (video, false, "token=a")).contains("token=a"));
        assert!(get(1, (video, true, "")).contains("true"));
        assert!(get(1, (Resource::Media(TrackKind::Audio), false, "")).contains("Audio"));
        assert_eq!(renders.get(), 5);
        // A new version renders again; the old text is gone.
        assert!(get(2, (video, false, "")).starts_with("2 "));
        assert_eq!(renders.get(), 6);
        // Bounded: many tokens take turns.
        for i in 0..100 {
            get(2, (video, false, &format!("token={i}")));
        }
        assert!(cache.entries.len() <= super::MAX_CACHED_PLAYLISTS);
    }

    #[test]
    fn ranges_over_chunks() {
        let body = || {
            Chunks(vec![
                Bytes::from_static(b"012"),
                Bytes::from_static(b"3456"),
                Bytes::from_static(b"789"),
            ])
        };
        let joined = |c: Chunks| c.0.concat();
        assert_eq!(body().len(), 10);
        assert_eq!(joined(body().slice(2, 7)), b"234567");
        assert_eq!(joined(body().slice(0, 9)), b"0123456789");
        assert_eq!(joined(body().slice(3, 6)), b"3456");
        assert_eq!(joined(body().slice(9, 9)), b"9");
        assert_eq!(
            body().slice(4, 5).0.len(),
            1,
            "one chunk when the range is in one"
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(byte_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(byte_range("bytes=100-", 100), None);
        assert_eq!(byte_range("bytes=5-1", 100), None);
        assert_eq!(byte_range("bytes=0-1,3-4", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
    }
}
