//! WHIP/WHEP signalling over hyper (RFC 9725 for WHIP; WHEP follows the same shape).

use crate::session::{Role, Session};
use crate::table::{self, Entry, Full, Table};
use bytes::Bytes;
use http_body_util::{BodyExt, Full as FullBody, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prism_config::WebrtcConfig;
use prism_hub::PublishError;
use prism_metrics::ErrorReason;
use prism_relay::{ConnInfo, Refusal, Relay, StreamRequest};
use prism_transport_tls::ReloadableTls;
use prism_webrtc::sdp::{self, MAX_SDP_BYTES};
use prism_webrtc::signal::{self, Direction, Target};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::rtp::{Extension, ExtensionMap};
use str0m::{Candidate, IceCreds, RtcConfig};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify, Semaphore};
use tracing::{info, warn};

/// Signalling connections open at once; more are closed at once.
const MAX_CONNECTIONS: usize = 1024;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Reading the offer, authorizing (webhook) and answering must fit in this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Body = FullBody<Bytes>;

pub(crate) struct Server {
    relay: Arc<Relay>,
    table: Arc<Table>,
    socket: Arc<crate::udp::MediaSocket>,
    candidates: Vec<SocketAddr>,
    crypto: Arc<str0m::config::CryptoProvider>,
    links: Vec<HeaderValue>,
    /// `consent_timeout_ms`.
    consent_timeout: Duration,
}

impl Server {
    pub fn new(
        relay: Arc<Relay>,
        config: &WebrtcConfig,
        table: Arc<Table>,
        socket: Arc<crate::udp::MediaSocket>,
        candidates: Vec<SocketAddr>,
    ) -> Server {
        let links = config
            .ice_servers
            .iter()
            .filter_map(|u| signal::ice_server_link(u))
            .filter_map(|l| HeaderValue::from_str(&l).ok())
            .collect();
        Server {
            relay,
            table,
            socket,
            candidates,
            // Explicit, per instance: nothing process-global.
            crypto: Arc::new(str0m::crypto::from_feature_flags()),
            links,
            consent_timeout: config.consent_timeout,
        }
    }
}

pub(crate) async fn serve(
    listener: TcpListener,
    server: Arc<Server>,
    tls: Option<Arc<ReloadableTls>>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!("webrtc signalling accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (server, tls) = (server.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let server = server.clone();
                async move {
                    let resp = tokio::time::timeout(REQUEST_TIMEOUT, server.handle(req, peer))
                        .await
                        .unwrap_or_else(|_| text(StatusCode::REQUEST_TIMEOUT, "request timed out"));
                    Ok::<_, Infallible>(resp)
                }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(64 * 1024);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(64);
            // A connection that sends nothing is closed (hyper's header timeout starts
            // only with the first request on HTTP/1).
            let idle = Duration::from_secs(120);
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(tcp), service);
                    let _ = tokio::time::timeout(idle, conn).await;
                }
                Some(tls) => {
                    let Ok(stream) = tls.accept(tcp, TLS_HANDSHAKE_TIMEOUT).await else {
                        return;
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(idle, conn).await;
                }
            }
        });
    }
}

/// An answer without a body (204).
fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::from(format!("{msg}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

impl Server {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let mut resp = match (req.method().clone(), signal::parse_path(&path)) {
            (Method::OPTIONS, Some(_)) => {
                let mut r = empty(StatusCode::NO_CONTENT);
                let h = r.headers_mut();
                h.insert(
                    header::ALLOW,
                    HeaderValue::from_static("OPTIONS, POST, PATCH, DELETE"),
                );
                h.insert("accept-post", HeaderValue::from_static("application/sdp"));
                self.add_links(&mut r);
                r
            }
            (
                Method::POST,
                Some(Target::Endpoint {
                    app,
                    key,
                    direction,
                }),
            ) => {
                let (app, key) = (app.to_owned(), key.to_owned());
                self.create(req, peer, &app, &key, direction).await
            }
            (Method::DELETE, Some(Target::Session { id, .. })) => match self.table.get(id) {
                Some(e) => {
                    e.close.notify_one();
                    text(StatusCode::OK, "session ended")
                }
                None => text(StatusCode::NOT_FOUND, "no such session"),
            },
            // ICE-lite with every candidate in the answer: trickled client candidates are
            // not needed (the client's checks reach us), so they are accepted and ignored.
            (Method::PATCH, Some(Target::Session { id, .. })) => match self.table.get(id) {
                Some(_) => empty(StatusCode::NO_CONTENT),
                None => text(StatusCode::NOT_FOUND, "no such session"),
            },
            (_, Some(_)) => {
                let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                r.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("OPTIONS, POST, PATCH, DELETE"),
                );
                r
            }
            (_, None) => text(StatusCode::NOT_FOUND, "not a WHIP/WHEP URL"),
        };
        // Browsers' pages on other origins (players, test pages) call these endpoints.
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("OPTIONS, POST, PATCH, DELETE"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Content-Type, If-Match"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Location, Link, ETag"),
        );
        resp
    }

    fn add_links(&self, r: &mut Response<Body>) {
        for l in &self.links {
            r.headers_mut().append(header::LINK, l.clone());
        }
    }

    fn refused(&self, reason: ErrorReason) {
        self.relay.connection_error(crate::TRANSPORT, reason).inc();
    }

    async fn create(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        app: &str,
        key: &str,
        direction: Direction,
    ) -> Response<Body> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
        {
            self.refused(ErrorReason::BadRequest);
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the offer must be Content-Type: application/sdp",
            );
        }
        let query = signal::auth_query(
            req.headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
            req.uri().query().unwrap_or(""),
        );
        let body = match Limited::new(req.into_body(), MAX_SDP_BYTES).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                self.refused(ErrorReason::BodyTooLarge);
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "SDP offer too large or unreadable",
                );
            }
        };
        let (sdp_text, offer) = match sdp::check_offer(&body) {
            Ok(o) => o,
            Err(e) => {
                self.refused(ErrorReason::BadRequest);
                return text(StatusCode::BAD_REQUEST, &e.to_string());
            }
        };
        let codecs = match direction {
            Direction::Whep => sdp::check_whep(&offer),
            Direction::Whip => sdp::check_whip(&offer),
        };
        if let Err(e) = codecs {
            self.refused(ErrorReason::BadRequest);
            return text(StatusCode::NOT_ACCEPTABLE, &e.to_string());
        }
        // A viewer of a stream that is not live gets told so, rather than an answer
        // whose media never comes.
        if direction == Direction::Whep && self.relay.stream(app, key).is_none() {
            return text(StatusCode::NOT_FOUND, "stream not live");
        }
        let sdp_offer = match SdpOffer::from_sdp_string(sdp_text) {
            Ok(o) => o,
            Err(e) => {
                self.refused(ErrorReason::BadRequest);
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("malformed SDP offer: {e}"),
                );
            }
        };
        let mut slot = match self.table.reserve(peer.ip()) {
            Ok(s) => s,
            Err(Full::Overall) => {
                self.refused(ErrorReason::TooManySessions);
                return text(StatusCode::SERVICE_UNAVAILABLE, "too many WebRTC sessions");
            }
            Err(Full::PerIp) => {
                self.refused(ErrorReason::TooManyPerIp);
                return text(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many WebRTC sessions from this address",
                );
            }
        };
        let info = ConnInfo {
            peer,
            transport: crate::TRANSPORT,
        };
        let request = StreamRequest {
            app,
            key,
            query: &query,
        };
        let role = match direction {
            Direction::Whep => match self.relay.play(request, &info).await {
                Ok(p) => Role::Play(p),
                Err(r) => {
                    self.refused(ErrorReason::PlayRefused);
                    return refusal(&r);
                }
            },
            Direction::Whip => match self.relay.publish(request, &info).await {
                Ok(p) => Role::Publish(p),
                Err(r) => {
                    self.refused(ErrorReason::PublishRefused);
                    return refusal(&r);
                }
            },
        };
        let creds = IceCreds::new();
        let ufrag = creds.ufrag.clone();
        // A viewer's retransmission history covers about a second of its stream.
        let send_video_packets = match &role {
            Role::Play(p) => {
                let stream = p.sub.stream();
                crate::session::send_buffer_video(stream.bytes_in(), stream.uptime(Instant::now()))
            }
            Role::Publish(_) => crate::session::SEND_BUFFER_VIDEO,
        };
        let standard = ExtensionMap::standard();
        let mut exts = standard.clone();
        if matches!(role, Role::Play(_)) {
            // Transport-wide sequence numbers only feed a send-side bandwidth estimate,
            // which Prism does not run: without them str0m keeps no per-packet send record
            // and the viewer sends no transport feedback (5% of a viewer's CPU in a
            // profile). RTT still comes from the receiver reports. A WHIP publisher keeps
            // them: its congestion control runs on the feedback Prism sends.
            exts = ExtensionMap::empty();
            for (id, e) in standard.iter() {
                if *e != Extension::TransportSequenceNumber {
                    exts.set(id, e.clone());
                }
            }
        }
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(self.crypto.clone())
            .set_local_ice_credentials(creds)
            .set_ice_lite(true)
            .clear_codecs()
            .enable_h264(true)
            // A viewer may take AV1 (an Enhanced RTMP AV1 source); publishers send H.264.
            .enable_av1(matches!(role, Role::Play(_)))
            .enable_opus(true, false)
            .set_stats_interval(Some(Duration::from_secs(1)))
            .set_extension_map(exts)
            // Set here because the memory estimate relies on them.
            .set_send_buffer_video(send_video_packets)
            .set_send_buffer_audio(crate::session::SEND_BUFFER_AUDIO)
            .set_reordering_size_video(crate::session::REORDER_VIDEO)
            .set_reordering_size_audio(crate::session::REORDER_AUDIO)
            // A viewer is sent RTP payloads packetized once per frame for all viewers.
            .set_rtp_mode(matches!(role, Role::Play(_)))
            .build(Instant::now());
        for a in &self.candidates {
            if let Ok(c) = Candidate::host(*a, "udp") {
                rtc.add_local_candidate(c);
            }
        }
        let answer = match rtc.sdp_api().accept_offer(sdp_offer) {
            Ok(a) => a,
            Err(e) => {
                self.refused(ErrorReason::BadRequest);
                if let Role::Publish(p) = role {
                    p.unpublish();
                }
                return text(
                    StatusCode::NOT_ACCEPTABLE,
                    &format!("offer not accepted: {e}"),
                );
            }
        };
        // The session id is the resource URL's secret part: 128+ random bits.
        let id = IceCreds::new().pass;
        let (tx, rx) = mpsc::channel(table::QUEUE);
        let entry = Arc::new(Entry {
            id: id.clone(),
            ufrag,
            tx,
            close: Notify::new(),
            queued: Default::default(),
        });
        self.table.insert(&mut slot, entry.clone());
        let label = format!("{app}/{key}");
        info!(%peer, transport = crate::TRANSPORT, stream = %label, direction = direction.as_str(), "WebRTC session started");
        let session = Session {
            rtc,
            socket: self.socket.clone(),
            local: self.candidates[0],
            rx,
            entry,
            slot,
            role,
            relay: self.relay.clone(),
            table: self.table.clone(),
            label,
            direction,
            consent_timeout: self.consent_timeout,
            send_video_packets,
            mem: self
                .relay
                .memory()
                .map(|b| b.charge(prism_mem::Pool::Webrtc, 0))
                .unwrap_or_default(),
        };
        tokio::spawn(session.run());
        let mut r = Response::new(Body::new(Bytes::from(answer.to_sdp_string())));
        *r.status_mut() = StatusCode::CREATED;
        let location = signal::session_path(app, key, direction, &id);
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/sdp"),
        );
        if let Ok(v) = HeaderValue::from_str(&location) {
            h.insert(header::LOCATION, v);
        }
        self.add_links(&mut r);
        r
    }
}

/// The HTTP answer to a refused publish or play.
fn refusal(r: &Refusal) -> Response<Body> {
    let status = match r {
        Refusal::Unauthorized | Refusal::WebhookRefused | Refusal::WebhookError => {
            StatusCode::UNAUTHORIZED
        }
        Refusal::ForbiddenAddress | Refusal::PlayDisabled => StatusCode::FORBIDDEN,
        Refusal::Hub(PublishError::AlreadyLive(_)) => StatusCode::CONFLICT,
        Refusal::TooManyStreams => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::OutOfMemory => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::FORBIDDEN,
    };
    text(status, &r.to_string())
}
