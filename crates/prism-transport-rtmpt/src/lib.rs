//! RTMPT and RTMPTS: RTMP tunnelled over HTTP and HTTPS, for encoders and players behind
//! proxies that only let HTTP out. Each tunnel session is bridged to prism-relay's
//! [`serve_rtmp`] by an in-memory byte stream, so publish and play behave exactly as over TCP.
//!
//! This crate knows HTTP (hyper) and the byte plumbing between requests and the RTMP
//! session; the tunnel's rules (request vocabulary, session ids, limits, expiry, the
//! polling-interval byte) are prism-rtmpt's, RTMP and the hub are prism-relay's. It does not
//! know TLS beyond accepting it: RTMPTS ([`Tunnel::run_tls`]) uses prism-transport-tls's
//! reloadable certificate and serves the decrypted stream like a plain one.
//!
//! Bounds, per session: `max_buffer_bytes` client→server, and the smaller of it and
//! [`OUT_BUFFER_BYTES`] server→client (the in-memory pipes between the requests and the RTMP
//! session), plus the RTMP session's own output queue and, for a player, its hub queue with
//! its drop policy; at most `max_sessions` sessions (an `/open`
//! beyond is answered 503); request bodies above `max_body_bytes` are answered 413.
//!
//! What the two pipes hold is charged to the memory budget's `rtmpt` pool (`[limits]
//! max_memory_mb`), per request and per read of the RTMP session, not per byte; the RTMP
//! session's own reassembly is charged by prism-relay like any RTMP connection's. Bytes
//! taken into a reply (at most [`MAX_REPLY_BYTES`]) stay charged until the session's next
//! reply, by which time the client has had them (a client polls after each answer).
//!
//! A full inbound buffer (the RTMP session has not taken the client's earlier bytes) closes
//! the session: a `/send` that finds no room within [`SEND_WAIT`] is answered 503 and the
//! session ends. Refusing only the request would not do, since part of its body may already
//! be in the RTMP byte stream, which has no way to resynchronise after a gap.

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prism_config::TunnelConfig;
use prism_relay::{serve_rtmp, ConnInfo, ErrorReason, Relay};
use prism_rtmpt::{Command, PollInterval, SessionId, SessionTable, TableFull, TableLimits, Target};
use prism_transport_tls::ReloadableTls;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

/// The `transport` metrics label of tunnel sessions over plain HTTP.
pub const RTMPT: &str = "rtmpt";
/// The `transport` metrics label of tunnel sessions over HTTPS.
pub const RTMPTS: &str = "rtmpts";

/// How long a `/send` may wait for room in the session's inbound buffer before the session
/// is closed (see the crate docs).
pub const SEND_WAIT: Duration = Duration::from_secs(2);
/// Most server→client bytes buffered per session (less if `max_buffer_bytes` is less): one
/// full reply. Bytes here are past the hub's drop policy, like a TCP socket's kernel buffer,
/// so the buffer stays small: a player that polls too slowly for its stream then backs up
/// into its hub queue, which drops GOP-aware and bounds latency by duration.
pub const OUT_BUFFER_BYTES: usize = MAX_REPLY_BYTES;
/// Most server→client bytes in one reply. Large enough that a player of a high-bitrate
/// stream needs few polls; the rest waits in the session's buffer for the next poll.
const MAX_REPLY_BYTES: usize = 256 * 1024;
/// When an `/idle` finds nothing to send, it waits this long for the first bytes before
/// answering empty: a player then gets its next frame in the reply instead of an empty
/// reply and another round trip. Short, so a request never holds a connection for long.
const IDLE_LINGER: Duration = Duration::from_millis(50);
/// The same for `/send`, kept tiny: a publisher (ffmpeg) sends one request per RTMP message
/// and waits for each reply, so every millisecond here caps its message rate. It gives the
/// RTMP session time to answer handshakes and commands within the same reply.
const SEND_LINGER: Duration = Duration::from_millis(2);
/// A request body that stalls this long between two pieces is given up.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// An RTMPTS connection must finish its TLS handshake within this.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Headers of a request must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes reserved at once while draining a session's output.
const READ_CHUNK: usize = 64 * 1024;
const CONTENT_TYPE_FCS: &str = "application/x-fcs";

/// An RTMPT service: the session table and what each session needs. Cheap to clone; every
/// clone serves the same sessions.
#[derive(Clone)]
pub struct Tunnel {
    shared: Arc<Shared>,
}

struct Shared {
    relay: Arc<Relay>,
    transport: &'static str,
    max_body_bytes: usize,
    max_buffer_bytes: usize,
    session_timeout: Duration,
    table: Mutex<SessionTable<Arc<Session>>>,
}

/// The request side of one tunnel session. Dropping the last reference closes the byte
/// stream, and with it the RTMP session.
struct Session {
    /// Client→server: what /send bodies go into.
    writer: tokio::sync::Mutex<DuplexStream>,
    reader: tokio::sync::Mutex<Reader>,
    mem: Arc<PipeMem>,
}

/// Bytes in a session's two pipes, charged to the `rtmpt` pool; shared by both ends of
/// the pipes, so the charge goes with whichever end is dropped last. Signed under a lock:
/// the RTMP side may take bytes out before the request side has counted them in.
struct PipeMem {
    held: Mutex<i64>,
    charge: prism_mem::MemCharge,
}

impl PipeMem {
    fn add(&self, bytes: i64) {
        if self.charge.budget().is_none() || bytes == 0 {
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        *held += bytes;
        self.charge.set((*held).max(0) as usize);
    }
}

struct Reader {
    /// Server→client: what replies carry.
    io: DuplexStream,
    interval: PollInterval,
    /// The RTMP session has closed its end and everything it wrote has been sent.
    ended: bool,
    /// Bytes of the last reply, still charged (see the crate docs).
    in_reply: usize,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("transport", &self.shared.transport)
            .field("sessions", &self.table().len())
            .finish()
    }
}

/// Why a request body could not be taken.
enum BodyError {
    TooLarge,
    Timeout,
    Broken,
}

impl BodyError {
    fn reason(&self) -> ErrorReason {
        match self {
            BodyError::TooLarge => ErrorReason::BodyTooLarge,
            BodyError::Timeout => ErrorReason::BodyTimeout,
            BodyError::Broken => ErrorReason::BodyError,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken => StatusCode::BAD_REQUEST,
        }
    }
}

impl Tunnel {
    /// A tunnel serving `config`'s limits; `transport` ([`RTMPT`] or [`RTMPTS`]) labels its
    /// sessions in metrics.
    pub fn new(config: &TunnelConfig, transport: &'static str, relay: Arc<Relay>) -> Tunnel {
        Tunnel {
            shared: Arc::new(Shared {
                relay,
                transport,
                max_body_bytes: config.max_body_bytes,
                max_buffer_bytes: config.max_buffer_bytes,
                session_timeout: config.session_timeout,
                table: Mutex::new(SessionTable::new(TableLimits {
                    max_sessions: config.max_sessions,
                    session_timeout: config.session_timeout,
                })),
            }),
        }
    }

    /// Sessions open now (expired ones not yet swept included).
    pub fn sessions(&self) -> usize {
        self.table().len()
    }

    /// Serves plain-HTTP connections from `listener` and expires idle sessions, until the
    /// task is dropped.
    pub async fn run(self, listener: TcpListener) {
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        tokio::spawn(self.clone().serve_connection(tcp, peer));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!(transport = self.shared.transport, "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        };
        tokio::select! {
            () = accept => {}
            () = self.clone().expire_sessions() => {}
        }
    }

    /// Serves HTTPS connections from `listener` (RTMPTS) and expires idle sessions, until the
    /// task is dropped. Each connection must finish its TLS handshake within
    /// [`TLS_HANDSHAKE_TIMEOUT`]; `tls` may be reloaded meanwhile (new connections get the new
    /// certificate). Failed handshakes are counted like the tunnel's other refusals.
    pub async fn run_tls(self, listener: TcpListener, tls: Arc<ReloadableTls>) {
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        tokio::spawn(self.clone().serve_tls(tcp, peer, tls.clone()));
                    }
                    Err(e) => {
                        warn!(transport = self.shared.transport, "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        };
        tokio::select! {
            () = accept => {}
            () = self.clone().expire_sessions() => {}
        }
    }

    async fn serve_tls(self, tcp: TcpStream, peer: SocketAddr, tls: Arc<ReloadableTls>) {
        match tls.accept(tcp, TLS_HANDSHAKE_TIMEOUT).await {
            Ok(stream) => self.serve_connection(stream, peer).await,
            Err(e) => {
                self.count(e.reason);
                // Scanners are routine on a public port: not worth more than debug.
                debug!(
                    transport = self.shared.transport,
                    %peer,
                    reason = e.reason.as_str(),
                    "TLS handshake failed: {}",
                    e.detail
                );
            }
        }
    }

    /// Expires sessions nobody polls, closing their RTMP side; runs until dropped. [`run`]
    /// and [`run_tls`] run it beside their accept loop.
    ///
    /// [`run`]: Tunnel::run
    /// [`run_tls`]: Tunnel::run_tls
    pub async fn expire_sessions(self) {
        loop {
            let now = Instant::now();
            // Only an /open can add an earlier deadline, and never one before
            // now + session_timeout, so sleeping until the earliest known one misses nothing.
            let wake = self
                .table()
                .poll_timeout()
                .unwrap_or(now + self.shared.session_timeout);
            tokio::time::sleep_until(wake.into()).await;
            let mut expired = Vec::new();
            self.table().drain_expired(Instant::now(), &mut expired);
            self.count_expired(&expired);
        }
    }

    /// Serves one HTTP/1.1 connection (keep-alive) from `peer` over `io`, plain or decrypted.
    pub async fn serve_connection<I>(self, io: I, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let tunnel = self.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let tunnel = tunnel.clone();
            async move { Ok::<_, Infallible>(tunnel.handle(req, peer).await) }
        });
        let served = hyper::server::conn::http1::Builder::new()
            // Without a timer hyper ignores the header timeout.
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .keep_alive(true)
            // librtmp finds the reply's length by a case-sensitive search for "Content-".
            .title_case_headers(true)
            .serve_connection(TokioIo::new(io), service)
            .await;
        if let Err(e) = served {
            // Requests hyper refused before they reached the tunnel are peer errors too.
            let reason = if e.is_parse_too_large() {
                Some(ErrorReason::HeaderTooLarge)
            } else if e.is_parse() || e.is_parse_status() {
                Some(ErrorReason::BadRequest)
            } else if e.is_timeout() {
                Some(ErrorReason::HeaderTimeout)
            } else {
                None
            };
            if let Some(reason) = reason {
                self.count(reason);
            }
            debug!(transport = self.shared.transport, %peer, "HTTP connection ended: {e}");
        }
    }

    /// Answers one RTMPT request from `peer`.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let command = match prism_rtmpt::parse(parts.method.as_str(), parts.uri.path()) {
            Ok(c) => c,
            Err(e) => {
                self.count(ErrorReason::BadRequest);
                let status = match e {
                    prism_rtmpt::RequestError::Method => StatusCode::METHOD_NOT_ALLOWED,
                    _ => StatusCode::NOT_FOUND,
                };
                return text(status, e.to_string());
            }
        };
        match command {
            // As Red5 does by default; librtmp goes on to /open/1.
            Command::Ident2 => fcs(StatusCode::NOT_FOUND, Bytes::new()),
            Command::Ident => fcs(
                StatusCode::OK,
                Bytes::from_static(b"<fcs><Company>Prism</Company><Team>Prism</Team></fcs>"),
            ),
            Command::Open => match self.discard_body(body).await {
                Err(e) => self.refuse_body(e),
                Ok(()) => self.open(peer),
            },
            Command::Send(t) => self.send(t, body).await,
            Command::Idle(t) => {
                let Some(session) = self.lookup(t.session) else {
                    return self.unknown_session();
                };
                if let Err(e) = self.discard_body(body).await {
                    return self.refuse_body(e);
                }
                self.reply(t.session, &session, IDLE_LINGER).await
            }
            Command::Close(t) => {
                let Some(session) = self.table().remove(t.session) else {
                    return self.unknown_session();
                };
                drop(session);
                // The session is gone whatever the body holds; the reply is all that is left.
                let _ = self.discard_body(body).await;
                debug!(transport = self.shared.transport, %peer, "session closed by client");
                fcs(StatusCode::OK, Bytes::from_static(&[PollInterval::CLOSING]))
            }
        }
    }

    fn open(&self, peer: SocketAddr) -> Response<Full<Bytes>> {
        // A tunnel session is a client connection under `[limits]` (the relay counts and
        // logs a refusal).
        let Ok(permit) = self.shared.relay.admit(peer, self.shared.transport) else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
        };
        // Two pipes, each used one way, so that each direction has its own bound.
        let (writer, inbound) = tokio::io::duplex(self.shared.max_buffer_bytes);
        let (reader, outbound) =
            tokio::io::duplex(self.shared.max_buffer_bytes.min(OUT_BUFFER_BYTES));
        let mem = Arc::new(PipeMem {
            held: Mutex::new(0),
            charge: self
                .shared
                .relay
                .memory()
                .map(|b| b.charge(prism_mem::Pool::Rtmpt, 0))
                .unwrap_or_default(),
        });
        let theirs = Pipes {
            inbound,
            outbound,
            mem: mem.clone(),
        };
        let session = Arc::new(Session {
            writer: tokio::sync::Mutex::new(writer),
            reader: tokio::sync::Mutex::new(Reader {
                io: reader,
                interval: PollInterval::new(),
                ended: false,
                in_reply: 0,
            }),
            mem,
        });
        let mut expired = Vec::new();
        let opened = self.table().open(Instant::now(), session, &mut expired);
        self.count_expired(&expired);
        drop(expired);
        match opened {
            Ok(id) => {
                debug!(transport = self.shared.transport, %peer, "session opened");
                let info = ConnInfo {
                    peer,
                    transport: self.shared.transport,
                };
                let serving = serve_rtmp(theirs, info, self.shared.relay.clone());
                tokio::spawn(async move {
                    serving.await;
                    drop(permit);
                });
                fcs(StatusCode::OK, Bytes::from(format!("{id}\n")))
            }
            Err(TableFull(_)) => {
                self.count(ErrorReason::TooManySessions);
                text(StatusCode::SERVICE_UNAVAILABLE, "too many RTMPT sessions")
            }
        }
    }

    async fn send<B>(&self, t: Target<'_>, body: B) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(session) = self.lookup(t.session) else {
            return self.unknown_session();
        };
        // Nothing has reached the RTMP stream yet: refusing the request leaves it intact.
        if body.size_hint().lower() > self.shared.max_body_bytes as u64 {
            return self.refuse_body(BodyError::TooLarge);
        }
        let mut body = Limited::new(body, self.shared.max_body_bytes);
        let mut writer = session.writer.lock().await;
        // Once the RTMP session has ended the rest of the body is read and dropped, still
        // within the limit: the reply then tells the client the session is over.
        let mut rtmp_ended = false;
        loop {
            let chunk = match next_chunk(&mut body).await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    // Part of the body may be in the RTMP stream already: it cannot go on.
                    self.table().remove(t.session);
                    return self.refuse_body(e);
                }
            };
            if rtmp_ended {
                continue;
            }
            match tokio::time::timeout(SEND_WAIT, writer.write_all(&chunk)).await {
                Ok(Ok(())) => session.mem.add(chunk.len() as i64),
                Ok(Err(_)) => rtmp_ended = true,
                Err(_) => {
                    self.table().remove(t.session);
                    self.count(ErrorReason::BufferFull);
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "session buffer full: session closed",
                    );
                }
            }
        }
        drop(writer);
        self.reply(t.session, &session, SEND_LINGER).await
    }

    /// The reply to a send or idle: the polling-interval byte, then what the RTMP session
    /// has written, up to [`MAX_REPLY_BYTES`].
    async fn reply(&self, id: &str, session: &Session, linger: Duration) -> Response<Full<Bytes>> {
        let mut reader = session.reader.lock().await;
        if reader.ended {
            self.table().remove(id);
            return fcs(StatusCode::OK, Bytes::from_static(&[PollInterval::CLOSING]));
        }
        let mut out = BytesMut::with_capacity(1024);
        out.put_u8(PollInterval::CLOSING);
        let ended = drain(&mut reader.io, &mut out, 1 + MAX_REPLY_BYTES, linger).await;
        let data = out.len() - 1;
        // The new reply's bytes move from the pipe into the reply: still charged. The last
        // reply's go.
        session.mem.add(-(reader.in_reply as i64));
        reader.in_reply = data;
        if ended {
            reader.ended = true;
        }
        if ended && data == 0 {
            self.table().remove(id);
        } else {
            out[0] = reader.interval.on_reply(data);
        }
        fcs(StatusCode::OK, out.freeze())
    }

    /// Reads and drops a body (of open, idle, close), within the same limits as a send's.
    async fn discard_body<B>(&self, body: B) -> Result<(), BodyError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if body.size_hint().lower() > self.shared.max_body_bytes as u64 {
            return Err(BodyError::TooLarge);
        }
        let mut body = Limited::new(body, self.shared.max_body_bytes);
        while next_chunk(&mut body).await?.is_some() {}
        Ok(())
    }

    fn lookup(&self, id: &str) -> Option<Arc<Session>> {
        self.table().get(id, Instant::now()).cloned()
    }

    fn table(&self) -> MutexGuard<'_, SessionTable<Arc<Session>>> {
        self.shared.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unknown_session(&self) -> Response<Full<Bytes>> {
        self.count(ErrorReason::UnknownSession);
        text(StatusCode::NOT_FOUND, "unknown RTMPT session")
    }

    fn refuse_body(&self, e: BodyError) -> Response<Full<Bytes>> {
        self.count(e.reason());
        text(e.status(), e.reason().as_str())
    }

    fn count(&self, reason: ErrorReason) {
        self.shared
            .relay
            .connection_error(self.shared.transport, reason)
            .inc();
    }

    fn count_expired(&self, expired: &[(SessionId, Arc<Session>)]) {
        if !expired.is_empty() {
            debug!(
                transport = self.shared.transport,
                sessions = expired.len(),
                "sessions expired"
            );
            self.shared
                .relay
                .connection_error(self.shared.transport, ErrorReason::SessionTimeout)
                .inc_by(expired.len() as u64);
        }
    }
}

/// The next piece of a body; `None` at its end.
async fn next_chunk<B>(body: &mut Limited<B>) -> Result<Option<Bytes>, BodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        match tokio::time::timeout(BODY_TIMEOUT, body.frame()).await {
            Err(_) => return Err(BodyError::Timeout),
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) if e.is::<LengthLimitError>() => return Err(BodyError::TooLarge),
            Ok(Some(Err(_))) => return Err(BodyError::Broken),
            Ok(Some(Ok(frame))) => {
                // Trailers carry nothing for RTMPT.
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// The RTMP session's side of a tunnel session: reads what /send bodies brought, writes what
/// replies will carry. Dropping it (the session ended) ends both directions.
struct Pipes {
    inbound: DuplexStream,
    outbound: DuplexStream,
    mem: Arc<PipeMem>,
}

impl AsyncRead for Pipes {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inbound).poll_read(cx, buf);
        this.mem.add(-((buf.filled().len() - before) as i64));
        r
    }
}

impl AsyncWrite for Pipes {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.outbound).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.mem.add(n as i64);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.outbound).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            this.mem.add(n as i64);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.outbound.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().outbound).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().outbound).poll_shutdown(cx)
    }
}

/// Appends what `r` holds to `buf`, until `buf` holds `cap` bytes. If nothing is available,
/// waits up to `linger` for the first bytes. Returns true at the end of the stream.
async fn drain<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    cap: usize,
    linger: Duration,
) -> bool {
    let start = buf.len();
    if read_available(r, buf, cap).await {
        return true;
    }
    if buf.len() > start || linger.is_zero() || buf.len() >= cap {
        return false;
    }
    let room = cap - buf.len();
    buf.reserve(room.min(READ_CHUNK));
    let first = tokio::time::timeout(linger, r.read_buf(&mut (&mut *buf).limit(room))).await;
    match first {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => read_available(r, buf, cap).await,
    }
}

/// Appends to `buf` what `r` can give without waiting, until `buf` holds `cap` bytes.
/// Returns true at the end of the stream.
fn read_available<'a, R: AsyncRead + Unpin>(
    r: &'a mut R,
    buf: &'a mut BytesMut,
    cap: usize,
) -> impl Future<Output = bool> + 'a {
    std::future::poll_fn(move |cx| loop {
        let room = cap.saturating_sub(buf.len());
        if room == 0 {
            return Poll::Ready(false);
        }
        buf.reserve(room.min(READ_CHUNK));
        let mut limited = (&mut *buf).limit(room);
        // Reads on a duplex stream are cancel-safe: a read polled once and dropped loses
        // nothing.
        let read = std::pin::pin!(r.read_buf(&mut limited));
        match read.poll(cx) {
            Poll::Pending => return Poll::Ready(false),
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(true),
            Poll::Ready(Ok(_)) => {}
        }
    })
}

/// A reply with the tunnel's headers.
fn fcs(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    respond(status, CONTENT_TYPE_FCS, body)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut body = body.into();
    body.push('\n');
    respond(status, "text/plain", Bytes::from(body))
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(CONNECTION, HeaderValue::from_static("Keep-Alive"));
    resp
}

#[cfg(test)]
mod tests;
