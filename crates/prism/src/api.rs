//! The admin API (`/api/v1/...`, JSON) and the status page (`/`), on the `[http]` listener.
//!
//! Access: with `[http] token` set, every `/api/` request needs `Authorization: Bearer
//! <token>` (compared in constant time). Without a token the API answers only while the
//! listener is bound to a loopback address, and then only to requests whose `Host` is a
//! loopback name (so a web page cannot reach it through DNS rebinding). Requests with a
//! body must be `application/json`, which a browser cannot send cross-origin without a
//! CORS preflight (never granted here): no CSRF through an operator's browser.
//!
//! The OpenAPI description of all this is `openapi.json` next to this file, served at
//! `/api/v1/openapi.json`; the e2e tests check live responses against it.

mod sources;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use prism_config::ResolvedTarget;
use prism_relay::{AddTargetError, Relay, RemoveTargetError, StreamSnapshot, TargetSnapshot};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::state::{Destination, QueueJson, StateError, StateStore};

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Bitrates are measured over at least this long (callers polling faster get the last one).
const RATE_WINDOW: Duration = Duration::from_secs(1);

const OPENAPI: &str = include_str!("openapi.json");
const STATUS_PAGE: &str = include_str!("status.html");

type Resp = Response<Full<Bytes>>;

/// The admin API's state: access rules and the last bitrate samples.
pub struct Api {
    relay: Arc<Relay>,
    /// SHA-256 of the configured token: compared digest to digest, so neither the token's
    /// bytes nor its length show in the comparison time.
    token: Option<[u8; 32]>,
    loopback: bool,
    rates: Mutex<HashMap<RateKey, RateSample>>,
    /// Destinations added through the API (persisted with `[state] path`).
    store: Arc<StateStore>,
    /// Bitrates of the last minutes, for the console's charts.
    history: Mutex<HashMap<String, StreamHistory>>,
    /// ABR ladder workers, for `/api/v1/transcode`.
    transcoder: Arc<prism_transcode::Transcoder>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RateKey {
    /// Identity of the stream (its `Arc`), so a restarted stream starts afresh.
    stream: usize,
    target: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct RateSample {
    at: Instant,
    bytes: u64,
    bps: u64,
}

impl Api {
    pub fn new(
        relay: Arc<Relay>,
        listen: SocketAddr,
        store: Arc<StateStore>,
        transcoder: Arc<prism_transcode::Transcoder>,
    ) -> Api {
        let token = relay
            .config()
            .http
            .token
            .as_ref()
            .map(|t| Sha256::digest(t.expose().as_bytes()).into());
        Api {
            relay,
            token,
            loopback: listen.ip().is_loopback(),
            rates: Mutex::new(HashMap::new()),
            store,
            history: Mutex::new(HashMap::new()),
            transcoder,
        }
    }

    /// `/api/...` requests.
    pub async fn handle(&self, req: Request<Incoming>) -> Resp {
        if let Some(refusal) = self.refusal(&req) {
            return refusal;
        }
        let path = req.uri().path().to_owned();
        let segments: Vec<String> = match path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect::<Option<Vec<_>>>()
        {
            Some(s) => s,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "malformed percent-encoding in path",
                )
            }
        };
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = req.method().clone();
        match segs.as_slice() {
            ["api", "v1", "openapi.json"] => match method {
                Method::GET | Method::HEAD => respond(StatusCode::OK, OPENAPI.into()),
                _ => not_allowed("GET"),
            },
            ["api", "v1", "streams"] => match method {
                Method::GET | Method::HEAD => self.list(),
                _ => not_allowed("GET"),
            },
            ["api", "v1", "streams", app, key] => match method {
                Method::GET | Method::HEAD => self.one(app, key),
                Method::DELETE => self.kick(app, key),
                _ => not_allowed("GET, DELETE"),
            },
            ["api", "v1", "streams", app, key, "targets"] => match method {
                Method::POST => {
                    let (app, key) = (app.to_string(), key.to_string());
                    self.add_target(&app, &key, req).await
                }
                _ => not_allowed("POST"),
            },
            ["api", "v1", "streams", app, key, "targets", name] => match method {
                Method::DELETE => self.remove_target(app, key, name),
                _ => not_allowed("DELETE"),
            },
            // Pulled sources (issue 14).
            ["api", "v1", "sources"] => match method {
                Method::GET | Method::HEAD => sources::list(&self.relay),
                Method::POST => sources::add(&self.relay, req).await,
                _ => not_allowed("GET, POST"),
            },
            ["api", "v1", "sources", app, key] => match method {
                Method::GET | Method::HEAD => sources::one(&self.relay, app, key),
                Method::DELETE => sources::remove(&self.relay, app, key),
                _ => not_allowed("GET, DELETE"),
            },
            ["api", "v1", "history"] => match method {
                Method::GET | Method::HEAD => self.history(),
                _ => not_allowed("GET"),
            },
            ["api", "v1", "destinations"] => match method {
                Method::GET | Method::HEAD => self.destinations(),
                Method::POST => self.add_destination(req).await,
                _ => not_allowed("GET, POST"),
            },
            ["api", "v1", "destinations", name] => match method {
                Method::PATCH => {
                    let name = name.to_string();
                    self.change_destination(&name, req).await
                }
                Method::DELETE => {
                    let name = name.to_string();
                    self.remove_destination(name).await
                }
                _ => not_allowed("PATCH, DELETE"),
            },
            ["api", "v1", "transcode"] => match method {
                Method::GET | Method::HEAD => {
                    json(StatusCode::OK, &transcode_json(&self.transcoder.workers()))
                }
                _ => not_allowed("GET"),
            },
            ["api", "v1", "drain"] => match method {
                Method::POST => {
                    self.relay.drain();
                    let url_set = self.relay.config().rtmp.reconnect_url.is_some();
                    tracing::info!(reconnect_url_set = url_set, "drain requested (admin API)");
                    json(
                        StatusCode::ACCEPTED,
                        &serde_json::json!({ "draining": true, "reconnect_url_set": url_set }),
                    )
                }
                _ => not_allowed("POST"),
            },
            _ => error(StatusCode::NOT_FOUND, &format!("no such endpoint: {path}")),
        }
    }

    /// The answer to a request that may not use the API; None if it may.
    fn refusal(&self, req: &Request<Incoming>) -> Option<Resp> {
        let Some(expected) = &self.token else {
            if !self.loopback {
                return Some(error(
                    StatusCode::FORBIDDEN,
                    "the admin API is disabled: [http] listen is not a loopback address and no \
                     [http] token is set; set `token` in [http] (then send Authorization: Bearer \
                     <token>) or listen on 127.0.0.1",
                ));
            }
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if !is_loopback_host(host) {
                return Some(error(
                    StatusCode::FORBIDDEN,
                    "without an [http] token the admin API answers only requests for a loopback \
                     host (localhost, 127.0.0.1, [::1]); set `token` in [http] to use another name",
                ));
            }
            return None;
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| {
                let (scheme, token) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let (ok, challenge) = match given {
            None => (false, r#"Bearer realm="prism""#),
            Some(token) => {
                let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                (
                    constant_time_eq(&digest, expected),
                    r#"Bearer realm="prism", error="invalid_token""#,
                )
            }
        };
        if ok {
            return None;
        }
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: send Authorization: Bearer <[http] token>",
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        Some(resp)
    }

    fn list(&self) -> Resp {
        let snapshots = self.relay.live_status();
        let streams = self.render(&snapshots);
        json(StatusCode::OK, &StreamList { streams })
    }

    fn one(&self, app: &str, key: &str) -> Resp {
        let name = format!("{app}/{key}");
        let snapshots = self.relay.live_status();
        let rendered = self.render(&snapshots);
        match rendered.into_iter().find(|s| s.name == name) {
            Some(s) => json(StatusCode::OK, &s),
            None => not_live(app, key),
        }
    }

    /// Builds the JSON view, measuring bitrates from the byte counters' growth since the
    /// last sample (at least [`RATE_WINDOW`] old). Samples of streams and targets that are
    /// gone are forgotten.
    fn render(&self, snapshots: &[StreamSnapshot]) -> Vec<StreamJson> {
        let now = Instant::now();
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = Vec::new();
        let config = self.relay.config();
        let out = snapshots
            .iter()
            .map(|s| {
                let id = Arc::as_ptr(&s.stream) as usize;
                let stream_key = RateKey {
                    stream: id,
                    target: None,
                };
                let bytes_in = s.stream.bytes_in();
                let bitrate = rate(&mut rates, &stream_key, bytes_in, s.stream.uptime(now), now);
                seen.push(stream_key);
                let targets = s
                    .targets
                    .iter()
                    .map(|t| {
                        let k = RateKey {
                            stream: id,
                            target: Some(t.name.clone()),
                        };
                        let bps = rate(&mut rates, &k, t.bytes_sent, t.uptime, now);
                        seen.push(k);
                        let mut j = TargetJson::new(t, bps);
                        if j.origin == "config" && self.store.is_applied(&t.name) {
                            j.origin = "state";
                        }
                        j
                    })
                    .collect();
                let (video, audio) = s.stream.codecs();
                let (video_header, audio_header) = s.stream.sequence_headers();
                let tracks = |h: Option<Arc<prism_hub::Frame>>| {
                    h.map_or_else(Vec::new, |h| prism_relay::track_ids(&h))
                };
                let (app, key) = (s.stream.app(), s.stream.key());
                let hls = config
                    .hls
                    .as_ref()
                    .filter(|_| config.hls_for(app, key))
                    .map(|h| HlsJson {
                        port: h.listen.port(),
                        tls: h.tls.is_some(),
                        page: format!("/{app}/{key}/"),
                    });
                let webrtc = config.webrtc.as_ref().map(|w| WebrtcJson {
                    port: w.listen.port(),
                    tls: w.tls.is_some(),
                    whep: format!("/{app}/{key}/whep"),
                });
                StreamJson {
                    name: s.stream.name().to_owned(),
                    app: s.stream.app().to_owned(),
                    key: s.stream.key().to_owned(),
                    state: if s.publisher_connected {
                        "live"
                    } else {
                        "reconnecting"
                    },
                    publisher: PublisherJson {
                        transport: s.publisher.transport,
                        address: s.publisher.peer.to_string(),
                    },
                    codecs: CodecsJson {
                        video: (!video.is_empty()).then_some(video),
                        audio: (!audio.is_empty()).then_some(audio),
                    },
                    video_tracks: tracks(video_header),
                    audio_tracks: tracks(audio_header),
                    uptime_seconds: secs(s.stream.uptime(now)),
                    bytes_in,
                    bitrate_bps: bitrate,
                    subscribers: s.stream.subscriber_count(),
                    targets,
                    hls,
                    webrtc,
                }
            })
            .collect();
        rates.retain(|k, _| seen.contains(k));
        out
    }

    fn kick(&self, app: &str, key: &str) -> Resp {
        if self.relay.kick(app, key) {
            no_content()
        } else {
            not_live(app, key)
        }
    }

    async fn add_target(&self, app: &str, key: &str, req: Request<Incoming>) -> Resp {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON (Content-Type: application/json)",
            );
        }
        let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                )
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("reading the body: {e}")),
        };
        let new: NewTarget = match serde_json::from_slice(&body) {
            Ok(t) => t,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "expected {{\"name\": \"...\", \"url\": \"...\", \"queue\": {{...}}, \"tls\": {{...}}}} (queue and tls optional): {e}"
                    ),
                )
            }
        };
        let mut target = match ResolvedTarget::for_stream(&new.name, &new.url, app, key) {
            Ok(t) => t,
            Err(m) => return error(StatusCode::BAD_REQUEST, &m),
        };
        // The same queue and TLS options a [[route.target]] takes, checked the same way.
        match (new.queue.resolve(), new.tls.resolve(&new.url)) {
            (Ok(queue), Ok(tls)) => (target.queue, target.tls) = (queue, tls),
            (Err(m), _) | (_, Err(m)) => return error(StatusCode::BAD_REQUEST, &m),
        }
        let scheme = target
            .url
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default();
        if self.relay.dialer(&scheme).is_none() && self.relay.sink(&scheme).is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("url: no transport of this build pushes to {scheme}:// targets"),
            );
        }
        match self.relay.add_target(app, key, target) {
            Ok(t) => {
                let mut resp = json(StatusCode::CREATED, &TargetJson::new(&t, 0));
                let location = format!(
                    "/api/v1/streams/{}/{}/targets/{}",
                    percent_encode(app),
                    percent_encode(key),
                    percent_encode(&t.name)
                );
                if let Ok(v) = HeaderValue::from_str(&location) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                resp
            }
            Err(AddTargetError::NotLive(_)) => not_live(app, key),
            Err(
                e @ (AddTargetError::Exists { .. }
                | AddTargetError::Removing { .. }
                | AddTargetError::TooMany { .. }),
            ) => error(StatusCode::CONFLICT, &e.to_string()),
        }
    }

    fn remove_target(&self, app: &str, key: &str, name: &str) -> Resp {
        match self.relay.remove_target(app, key, name) {
            Ok(()) => no_content(),
            Err(RemoveTargetError::NotLive(_)) => not_live(app, key),
            Err(e @ RemoveTargetError::NoSuchTarget { .. }) => {
                error(StatusCode::NOT_FOUND, &e.to_string())
            }
        }
    }
}

/// Destinations: the operator's state (see [`crate::state`]).
impl Api {
    fn destinations(&self) -> Resp {
        json(
            StatusCode::OK,
            &DestinationList {
                persisted: self.store.persisted(),
                destinations: self.store.list(),
                ladders: self
                    .relay
                    .config()
                    .transcode
                    .iter()
                    .map(|l| LadderJson {
                        stream: l.stream.as_str().to_owned(),
                        renditions: l.renditions.iter().map(|r| r.name.clone()).collect(),
                    })
                    .collect(),
            },
        )
    }

    /// A URL's scheme must be one a transport of this build pushes to.
    fn scheme_refusal(&self, url: &str) -> Option<Resp> {
        let scheme = url
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default();
        (self.relay.dialer(&scheme).is_none() && self.relay.sink(&scheme).is_none()).then(|| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("url: no transport of this build pushes to {scheme}:// targets"),
            )
        })
    }

    async fn add_destination(&self, req: Request<Incoming>) -> Resp {
        let d: Destination = match read_json(req, "{\"name\", \"stream\", \"url\", ...}").await {
            Ok(d) => d,
            Err(r) => return *r,
        };
        if let Err(m) = d.check() {
            return error(StatusCode::BAD_REQUEST, &m);
        }
        if let Some(r) = self.scheme_refusal(&d.url) {
            return r;
        }
        let name = d.name.clone();
        let (store, relay) = (self.store.clone(), self.relay.clone());
        let done = tokio::task::spawn_blocking(move || store.add(d, |c| apply(&relay, c))).await;
        match done {
            Ok(Ok(view)) => {
                tracing::info!(destination = %name, "destination added");
                let mut resp = json(StatusCode::CREATED, &view);
                let location = format!("/api/v1/destinations/{}", percent_encode(&name));
                if let Ok(v) = HeaderValue::from_str(&location) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                resp
            }
            Ok(Err(e)) => state_error(e),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    async fn change_destination(&self, name: &str, req: Request<Incoming>) -> Resp {
        let patch: DestinationPatch = match read_json(
            req,
            "{\"enabled\": true|false, \"url\", \"stream\", \"queue\", \"rendition\", \"video_track\", \"audio_track\"}",
        )
        .await
        {
            Ok(p) => p,
            Err(r) => return *r,
        };
        if let Some(url) = &patch.url {
            if let Some(r) = self.scheme_refusal(url) {
                return r;
            }
        }
        // `"rendition": null` goes back to the source; absent leaves it as it is.
        let rendition = match patch.rendition {
            None => None,
            Some(serde_json::Value::Null) => Some(None),
            Some(serde_json::Value::String(r)) => Some(Some(r)),
            Some(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "rendition: a rendition name or null",
                )
            }
        };
        // Tracks likewise: `null` goes back to every track as it came.
        let (video_track, audio_track) = match (
            track_patch(patch.video_track, "video_track"),
            track_patch(patch.audio_track, "audio_track"),
        ) {
            (Ok(v), Ok(a)) => (v, a),
            (Err(m), _) | (_, Err(m)) => return error(StatusCode::BAD_REQUEST, &m),
        };
        let (store, relay, name) = (self.store.clone(), self.relay.clone(), name.to_owned());
        let done = tokio::task::spawn_blocking(move || {
            store.update(
                &name,
                |d| {
                    if let Some(v) = patch.enabled {
                        d.enabled = v;
                    }
                    if let Some(v) = patch.url {
                        d.url = v;
                    }
                    if let Some(v) = patch.stream {
                        d.stream = v;
                    }
                    if let Some(v) = patch.queue {
                        d.queue = v;
                    }
                    if let Some(v) = rendition {
                        d.rendition = v;
                    }
                    if let Some(v) = video_track {
                        d.video_track = v;
                    }
                    if let Some(v) = audio_track {
                        d.audio_track = v;
                    }
                },
                |c| apply(&relay, c),
            )
        })
        .await;
        match done {
            Ok(Ok(view)) => json(StatusCode::OK, &view),
            Ok(Err(e)) => state_error(e),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    async fn remove_destination(&self, name: String) -> Resp {
        let (store, relay) = (self.store.clone(), self.relay.clone());
        let done =
            tokio::task::spawn_blocking(move || store.remove(&name, |c| apply(&relay, c))).await;
        match done {
            Ok(Ok(())) => no_content(),
            Ok(Err(e)) => state_error(e),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }
}

/// How often [`Api::sample`] is to be called, and how many samples are kept: 5 minutes.
pub const HISTORY_INTERVAL: Duration = Duration::from_secs(2);
const HISTORY_LEN: usize = 150;

/// One live stream's bitrate samples, oldest first (bounded: [`HISTORY_LEN`]).
struct StreamHistory {
    /// Identity of the stream (its `Arc`): a new stream of the same name starts afresh.
    stream: usize,
    samples: std::collections::VecDeque<(Instant, HistoryPoint)>,
}

#[derive(Clone, Serialize)]
struct HistoryPoint {
    ingest_bps: u64,
    targets: Vec<TargetRate>,
}

#[derive(Clone, Serialize)]
struct TargetRate {
    name: String,
    bps: u64,
}

/// Bitrate history: sampled every [`HISTORY_INTERVAL`] whether or not anyone watches, so a
/// console opened now shows the last minutes.
impl Api {
    pub fn sample(&self) {
        let snapshots = self.relay.live_status();
        let rendered = self.render(&snapshots);
        let now = Instant::now();
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.retain(|name, _| rendered.iter().any(|s| &s.name == name));
        for (s, snap) in rendered.iter().zip(&snapshots) {
            let id = Arc::as_ptr(&snap.stream) as usize;
            let h = history
                .entry(s.name.clone())
                .or_insert_with(|| StreamHistory {
                    stream: id,
                    samples: Default::default(),
                });
            if h.stream != id {
                h.stream = id;
                h.samples.clear();
            }
            if h.samples.len() >= HISTORY_LEN {
                h.samples.pop_front();
            }
            h.samples.push_back((
                now,
                HistoryPoint {
                    ingest_bps: s.bitrate_bps,
                    targets: s
                        .targets
                        .iter()
                        .map(|t| TargetRate {
                            name: t.name.clone(),
                            bps: t.bitrate_bps,
                        })
                        .collect(),
                },
            ));
        }
    }

    fn history(&self) -> Resp {
        #[derive(Serialize)]
        struct Point {
            age_seconds: f64,
            #[serde(flatten)]
            point: HistoryPoint,
        }
        #[derive(Serialize)]
        struct Stream {
            name: String,
            points: Vec<Point>,
        }
        #[derive(Serialize)]
        struct History {
            interval_seconds: f64,
            streams: Vec<Stream>,
        }
        let now = Instant::now();
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let mut streams: Vec<Stream> = history
            .iter()
            .map(|(name, h)| Stream {
                name: name.clone(),
                points: h
                    .samples
                    .iter()
                    .map(|(at, p)| Point {
                        age_seconds: secs(now.saturating_duration_since(*at)),
                        point: p.clone(),
                    })
                    .collect(),
            })
            .collect();
        drop(history);
        streams.sort_by(|a, b| a.name.cmp(&b.name));
        json(
            StatusCode::OK,
            &History {
                interval_seconds: HISTORY_INTERVAL.as_secs_f64(),
                streams,
            },
        )
    }
}

/// Applies a config with the state merged in to the live streams (a reload: targets
/// start, stop, restart as for SIGHUP).
fn apply(relay: &Arc<Relay>, config: prism_config::Config) {
    let report = relay.reload(config);
    for s in &report.streams {
        tracing::info!(stream = %s.stream, started = ?s.started, stopped = ?s.stopped, restarted = ?s.restarted, "targets updated from the destinations");
        if !s.conflicts.is_empty() {
            tracing::warn!(stream = %s.stream, targets = ?s.conflicts, "destinations not started on this stream: a target of the same name added to the live stream runs");
        }
    }
}

fn state_error(e: StateError) -> Resp {
    match e {
        StateError::Invalid(m) => error(StatusCode::BAD_REQUEST, &m),
        StateError::Conflict(m) => error(StatusCode::CONFLICT, &m),
        StateError::NotFound(m) => error(StatusCode::NOT_FOUND, &m),
        StateError::Save(m) => {
            tracing::error!("{m}");
            error(StatusCode::INTERNAL_SERVER_ERROR, &m)
        }
    }
}

/// The JSON body of a request (`Content-Type: application/json`, at most
/// [`MAX_BODY_BYTES`]); `Err` is the answer to give.
async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    expected: &str,
) -> Result<T, Box<Resp>> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Box::new(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON (Content-Type: application/json)",
        )));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Box::new(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            )))
        }
        Err(e) => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                &format!("reading the body: {e}"),
            )))
        }
    };
    serde_json::from_slice(&body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("expected {expected}: {e}"),
        ))
    })
}

#[derive(Serialize)]
struct DestinationList {
    persisted: bool,
    destinations: Vec<crate::state::DestinationView>,
    /// The `[[transcode]]` ladders: the renditions a destination may push instead of the
    /// source, for the streams each ladder's pattern matches.
    ladders: Vec<LadderJson>,
}

#[derive(Serialize)]
struct LadderJson {
    stream: String,
    renditions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationPatch {
    enabled: Option<bool>,
    url: Option<String>,
    stream: Option<String>,
    queue: Option<QueueJson>,
    /// A rendition name, or null for the source.
    #[serde(default, deserialize_with = "present")]
    rendition: Option<serde_json::Value>,
    /// A track id, or null for every track.
    #[serde(default, deserialize_with = "present")]
    video_track: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    audio_track: Option<serde_json::Value>,
}

/// A PATCH's `video_track` / `audio_track`: absent leaves it, `null` clears it, an integer
/// sets it (its range is checked with the rest of the destination).
fn track_patch(v: Option<serde_json::Value>, what: &str) -> Result<Option<Option<i64>>, String> {
    match v {
        None => Ok(None),
        Some(serde_json::Value::Null) => Ok(Some(None)),
        Some(serde_json::Value::Number(n)) if n.is_i64() => Ok(Some(n.as_i64())),
        Some(other) => Err(format!(
            "{what}: a track id (0 to 255) or null, not {other}"
        )),
    }
}

/// A field that is present, `null` included (plain `Option` reads `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// `GET /`: the self-refreshing status page (static; its data comes from the API).
/// `GET /api/v1/transcode`: every ABR ladder worker.
fn transcode_json(workers: &[prism_transcode::WorkerSnapshot]) -> serde_json::Value {
    let workers: Vec<_> = workers
        .iter()
        .map(|w| {
            serde_json::json!({
                "stream": w.stream,
                "renditions": w.renditions,
                "state": w.state,
                "pid": w.pid,
                "speed": w.speed,
                "fps": w.fps,
                "cpu_seconds": (w.cpu_seconds * 100.0).round() / 100.0,
                "restarts": w.restarts,
                "last_restart_reason": w.last_restart_reason,
                "last_lines": w.last_lines,
            })
        })
        .collect();
    serde_json::json!({ "workers": workers })
}

pub fn status_page() -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from_static(STATUS_PAGE.as_bytes())));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // frame-src: stream previews frame the `[hls]` player page, another origin (port)
    // of a host only the browser knows; connect-src: WebRTC previews POST their WHEP offer
    // to the `[webrtc]` port, likewise.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self' http: https:; img-src data:; frame-src http: https:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// The bitrate of a byte counter in bits/s. The first time a counter is seen its average
/// since `age` is the answer, so a fresh listing already shows a plausible value.
fn rate(
    rates: &mut HashMap<RateKey, RateSample>,
    key: &RateKey,
    bytes: u64,
    age: Duration,
    now: Instant,
) -> u64 {
    match rates.get_mut(key) {
        Some(s) if bytes >= s.bytes => {
            let dt = now.saturating_duration_since(s.at);
            if dt >= RATE_WINDOW {
                s.bps = ((bytes - s.bytes) as f64 * 8.0 / dt.as_secs_f64()) as u64;
                s.at = now;
                s.bytes = bytes;
            }
            s.bps
        }
        _ => {
            let bps = if age >= Duration::from_millis(500) {
                (bytes as f64 * 8.0 / age.as_secs_f64()) as u64
            } else {
                0
            };
            rates.insert(
                key.clone(),
                RateSample {
                    at: now,
                    bytes,
                    bps,
                },
            );
            bps
        }
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

#[derive(Serialize)]
struct StreamList {
    streams: Vec<StreamJson>,
}

#[derive(Serialize)]
struct StreamJson {
    name: String,
    app: String,
    key: String,
    state: &'static str,
    publisher: PublisherJson,
    codecs: CodecsJson,
    /// The Enhanced RTMP v2 track ids its sequence headers carry (`[0]` for a plain
    /// stream): what a destination's `video_track` / `audio_track` can choose.
    video_tracks: Vec<u8>,
    audio_tracks: Vec<u8>,
    uptime_seconds: f64,
    bytes_in: u64,
    bitrate_bps: u64,
    subscribers: usize,
    targets: Vec<TargetJson>,
    /// Where viewers watch it over HLS (absent: not served over HLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    hls: Option<HlsJson>,
    /// Where viewers watch it over WebRTC (WHEP; absent: no `[webrtc]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    webrtc: Option<WebrtcJson>,
}

/// The stream's WHEP endpoint, on the `[webrtc]` port of the host the API was reached at.
#[derive(Serialize)]
struct WebrtcJson {
    port: u16,
    tls: bool,
    whep: String,
}

/// The stream's HLS player page, on the `[hls]` port of the host the API was reached at.
#[derive(Serialize)]
struct HlsJson {
    port: u16,
    tls: bool,
    page: String,
}

#[derive(Serialize)]
struct PublisherJson {
    transport: &'static str,
    address: String,
}

#[derive(Serialize)]
struct CodecsJson {
    video: Option<&'static str>,
    audio: Option<&'static str>,
}

#[derive(Serialize)]
struct TargetJson {
    name: String,
    url: String,
    origin: &'static str,
    state: &'static str,
    uptime_seconds: f64,
    bytes_sent: u64,
    bitrate_bps: u64,
    queue_bytes: u64,
    drops: u64,
    reconnects: u64,
    last_error: Option<String>,
    queue: crate::state::QueueView,
    tls: TlsView,
}

impl TargetJson {
    fn new(t: &TargetSnapshot, bitrate_bps: u64) -> Self {
        TargetJson {
            name: t.name.clone(),
            url: t.url.clone(),
            origin: t.origin.as_str(),
            state: t.state.as_str(),
            uptime_seconds: secs(t.uptime),
            bytes_sent: t.bytes_sent,
            bitrate_bps,
            queue_bytes: t.queue_bytes,
            drops: t.drops,
            reconnects: t.reconnects,
            last_error: t.last_error.clone(),
            queue: crate::state::QueueView {
                max_queue_ms: t.queue.max_queue_ms,
                max_queue_bytes: t.queue.max_queue_bytes,
                overflow_disconnect_ms: t.queue.overflow_disconnect.as_millis() as u64,
                write_merge_ms: t.queue.target_write_merge().as_millis() as u64,
            },
            tls: TlsView {
                ca: t.tls.ca.as_ref().map(|p| p.display().to_string()),
                tls_verify: t.tls.verify,
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTarget {
    name: String,
    url: String,
    /// The `[[route.target]]` queue keys; absent = their defaults.
    #[serde(default)]
    queue: QueueJson,
    /// `ca` and `tls_verify` of an `rtmps://` target.
    #[serde(default)]
    tls: TlsJson,
}

/// The `[[route.target]]` TLS keys.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TlsJson {
    ca: Option<String>,
    tls_verify: Option<bool>,
}

impl TlsJson {
    /// Checked as the config checks them: only for rtmps:// targets. A `ca` must be a
    /// readable PEM file now (the config finds out at start-up, when it loads it).
    fn resolve(&self, url: &str) -> Result<prism_config::TargetTls, String> {
        let mut tls = prism_config::TargetTls::default();
        if self.ca.is_none() && self.tls_verify.is_none() {
            return Ok(tls);
        }
        if !url.to_ascii_lowercase().starts_with("rtmps://") {
            return Err("tls: `ca` and `tls_verify` only apply to rtmps:// targets".into());
        }
        if let Some(ca) = self.ca.as_deref().filter(|c| !c.is_empty()) {
            let pem = std::fs::read_to_string(ca).map_err(|e| format!("tls.ca: {ca}: {e}"))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(format!("tls.ca: {ca}: no PEM certificate in it"));
            }
            tls.ca = Some(ca.into());
        }
        if let Some(v) = self.tls_verify {
            tls.verify = v;
        }
        Ok(tls)
    }
}

/// A target's TLS options as the API shows them.
#[derive(Serialize)]
struct TlsView {
    ca: Option<String>,
    tls_verify: bool,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    error: &'a str,
}

fn respond(status: StatusCode, body: Bytes) -> Resp {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    match serde_json::to_vec(value) {
        Ok(v) => respond(status, v.into()),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding the response: {e}"),
        ),
    }
}

pub fn error(status: StatusCode, message: &str) -> Resp {
    let body = serde_json::to_vec(&ErrorJson { error: message })
        .unwrap_or_else(|_| br#"{"error":"internal error"}"#.to_vec());
    respond(status, body.into())
}

fn not_live(app: &str, key: &str) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        &format!("stream {app}/{key} is not live"),
    )
}

fn not_allowed(allow: &'static str) -> Resp {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed here (allowed: {allow})"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

fn no_content() -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `localhost`, `127.0.0.1`, `[::1]` (any port), as a `Host` header names them.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Decodes `%XX` escapes of a path segment; None if malformed or not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:9935",
            "127.0.0.1:1",
            "[::1]:9935",
            "[::1]",
            "127.9.9.9",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "",
            "example.com",
            "10.0.0.1:9935",
            "localhost.evil.com",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn percent_coding() {
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_encode("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn rates_use_the_average_first_then_deltas() {
        let mut rates = HashMap::new();
        let key = RateKey {
            stream: 1,
            target: None,
        };
        let t0 = Instant::now();
        // 10 s of 1 Mbit/s.
        assert_eq!(
            rate(&mut rates, &key, 1_250_000, Duration::from_secs(10), t0),
            1_000_000
        );
        // Within the window: the last value.
        let t1 = t0 + Duration::from_millis(300);
        assert_eq!(
            rate(&mut rates, &key, 1_300_000, Duration::from_secs(10), t1),
            1_000_000
        );
        // 2 s later, 500 kB more: 2 Mbit/s.
        let t2 = t0 + Duration::from_secs(2);
        assert_eq!(
            rate(&mut rates, &key, 1_750_000, Duration::from_secs(12), t2),
            2_000_000
        );
        // A counter that went backwards (a new target of the same name) starts afresh.
        assert_eq!(rate(&mut rates, &key, 0, Duration::from_millis(100), t2), 0);
    }

    #[test]
    fn token_comparison() {
        let a: [u8; 32] = Sha256::digest(b"0123456789abcdef").into();
        let b: [u8; 32] = Sha256::digest(b"0123456789abcdeg").into();
        assert!(constant_time_eq(&a, &a));
        assert!(!constant_time_eq(&a, &b));
    }

    #[test]
    fn openapi_is_json_and_describes_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let paths = doc["paths"].as_object().expect("paths");
        for p in [
            "/api/v1/streams",
            "/api/v1/streams/{app}/{key}",
            "/api/v1/streams/{app}/{key}/targets",
            "/api/v1/streams/{app}/{key}/targets/{name}",
            "/api/v1/openapi.json",
            "/api/v1/destinations",
            "/api/v1/destinations/{name}",
            "/api/v1/history",
            "/api/v1/transcode",
            "/api/v1/drain",
        ] {
            assert!(paths.contains_key(p), "{p} missing");
        }
    }
}
