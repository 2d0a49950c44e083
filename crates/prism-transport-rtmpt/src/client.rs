//! The dialing side: `rtmpt://`, `rtmpte://` and `rtmpts://` push targets.
//!
//! [`RtmptDialer::dial`] opens a tunnel session (the `/open` is made before the dial
//! returns, so an unreachable or refusing server is a dial error) and hands the push driver
//! one end of an in-memory byte stream; a task ([`pump`]) moves its bytes through
//! prism-rtmpt's [`TunnelClient`] as HTTP POSTs over one keep-alive connection (re-dialled
//! if the server closes it between requests). Dropping the push's end sends `/close` and ends
//! the task; the tunnel ending ends the push's stream. What the task holds (the bytes waiting
//! for a `/send` and the last reply) is charged to the memory budget's `rtmpt` pool once
//! [`RtmptDialer::attach_memory`] gave it the budget.

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use prism_config::ResolvedTarget;
use prism_relay::{BoxedStream, DialError, DialFuture, Dialer, ErrorReason};
use prism_rtmp::url::RtmpUrl;
use prism_rtmpt::{ClientLimits, ClientRequest, TunnelClient};
use prism_transport_tls::TlsDialer;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::{read_available, CONTENT_TYPE_FCS};

/// Bytes buffered each way between the push driver and the tunnel task (the push's own
/// queue, with its drop policy, is before it).
const PIPE_BYTES: usize = 256 * 1024;
/// How long an `rtmpte://` target's RTMPE handshake may take once the tunnel is open.
const RTMPE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting (TCP, TLS, HTTP) may take, for the first connection and any
/// re-dial between requests.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Rtmpe,
    Tls,
}

/// Dials tunnelled push targets; one per scheme (see the constructors).
#[derive(Debug)]
pub struct RtmptDialer {
    kind: Kind,
    tls: Option<Arc<TlsDialer>>,
    limits: ClientLimits,
    /// The budget tunnels charge their buffers to; set once the relay (which owns it)
    /// exists, after the dialers were handed to it.
    memory: OnceLock<Arc<prism_mem::Budget>>,
}

impl RtmptDialer {
    /// `rtmpt://`: RTMP in HTTP.
    pub fn rtmpt() -> Self {
        Self::new(Kind::Plain, None)
    }

    /// `rtmpte://`: the RTMPE handshake, then RC4-encrypted RTMP, in HTTP.
    pub fn rtmpte() -> Self {
        Self::new(Kind::Rtmpe, None)
    }

    /// `rtmpts://`: RTMP in HTTPS, verified as `rtmps://` targets are (`ca`, `tls_verify`).
    pub fn rtmpts(tls: Arc<TlsDialer>) -> Self {
        Self::new(Kind::Tls, Some(tls))
    }

    fn new(kind: Kind, tls: Option<Arc<TlsDialer>>) -> Self {
        RtmptDialer {
            kind,
            tls,
            limits: ClientLimits::default(),
            memory: OnceLock::new(),
        }
    }

    /// Charges what this dialer's tunnels buffer to `budget`'s `rtmpt` pool (no budget: not
    /// charged). Only the first call counts.
    pub fn attach_memory(&self, budget: Option<&Arc<prism_mem::Budget>>) {
        if let Some(b) = budget {
            let _ = self.memory.set(b.clone());
        }
    }
}

impl Dialer for RtmptDialer {
    fn scheme(&self) -> &'static str {
        match self.kind {
            Kind::Plain => "rtmpt",
            Kind::Rtmpe => "rtmpte",
            Kind::Tls => "rtmpts",
        }
    }

    fn dial<'a>(&'a self, url: &'a RtmpUrl, target: &'a ResolvedTarget) -> DialFuture<'a> {
        Box::pin(async move {
            let mut http = Http {
                url: url.clone(),
                target: target.clone(),
                tls: self.tls.clone(),
                sender: None,
                conn: None,
            };
            let mut client = TunnelClient::new(self.limits, Instant::now());
            // The /open, before the dial returns.
            let open = client
                .poll_request(Instant::now())
                .ok_or_else(|| DialError::new(ErrorReason::Connect, "tunnel not openable"))?;
            let (status, body) = http.request(open, self.limits).await?;
            client
                .on_reply(Instant::now(), status, &body)
                .map_err(|e| DialError::new(ErrorReason::Connect, e))?;
            let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
            let scheme = self.scheme();
            let limits = self.limits;
            let charge = self
                .memory
                .get()
                .map(|b| b.charge(prism_mem::Pool::Rtmpt, 0))
                .unwrap_or_default();
            tokio::spawn(async move {
                if let Err(e) = pump(client, http, ours, limits, charge).await {
                    debug!(scheme, "RTMPT tunnel ended: {}", e.detail);
                }
            });
            if self.kind == Kind::Rtmpe {
                let stream = prism_relay::rtmpe::connect(theirs, RTMPE_HANDSHAKE_TIMEOUT).await?;
                return Ok(Box::new(stream) as BoxedStream);
            }
            Ok(Box::new(theirs) as BoxedStream)
        })
    }

    fn handshakes(&self) -> bool {
        self.kind == Kind::Rtmpe
    }
}

/// The HTTP side: one keep-alive connection at a time to the URL's host and port, dialled
/// when a request finds none.
struct Http {
    url: RtmpUrl,
    target: ResolvedTarget,
    tls: Option<Arc<TlsDialer>>,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// The task driving the connection's I/O; aborted when a new connection replaces it and
    /// when the tunnel ends.
    conn: Option<JoinHandle<()>>,
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            c.abort();
        }
    }
}

impl Http {
    async fn connect(&mut self) -> Result<(), DialError> {
        let io: BoxedStream = match &self.tls {
            Some(tls) => tls.dial(&self.url, &self.target).await?,
            None => {
                let tcp = prism_transport_rtmp::connect(&self.url.host, self.url.port)
                    .await
                    .map_err(|e| DialError::new(ErrorReason::Connect, e))?;
                Box::new(tcp)
            }
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| DialError::new(ErrorReason::Connect, e))?;
        if let Some(old) = self.conn.replace(tokio::spawn(async move {
            // Ends when the server closes the connection or the sender is dropped.
            let _ = conn.await;
        })) {
            old.abort();
        }
        self.sender = Some(sender);
        Ok(())
    }

    /// Makes one request and reads its whole reply, within `limits.request_timeout` (and
    /// [`CONNECT_TIMEOUT`] for a connection it has to make first).
    async fn request(
        &mut self,
        req: ClientRequest,
        limits: ClientLimits,
    ) -> Result<(u16, Bytes), DialError> {
        let connected = matches!(&self.sender, Some(s) if !s.is_closed());
        if !connected {
            tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
                .await
                .map_err(|_| DialError::new(ErrorReason::ConnectTimeout, "connect timed out"))??;
        }
        let host = match (self.url.host.contains(':'), self.url.port) {
            (true, port) => format!("[{}]:{port}", self.url.host),
            (false, port) => format!("{}:{port}", self.url.host),
        };
        let request = Request::post(req.path)
            .header(HOST, host)
            .header(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_FCS))
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("prism/", env!("CARGO_PKG_VERSION"))),
            )
            .body(Full::new(Bytes::from(req.body)))
            // Never show the request: its path holds the session id.
            .map_err(|_| DialError::new(ErrorReason::Connect, "bad RTMPT request (host?)"))?;
        let Some(sender) = self.sender.as_mut() else {
            return Err(DialError::new(ErrorReason::Connect, "no HTTP connection"));
        };
        let exchange = async {
            sender
                .ready()
                .await
                .map_err(|e| DialError::new(ErrorReason::Io, e))?;
            let resp = sender
                .send_request(request)
                .await
                .map_err(|e| DialError::new(ErrorReason::Io, e))?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), limits.max_reply_bytes)
                .collect()
                .await
                .map_err(|e| DialError::new(ErrorReason::Io, format!("RTMPT reply: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        let result = tokio::time::timeout(limits.request_timeout, exchange)
            .await
            .map_err(|_| DialError::new(ErrorReason::WriteTimeout, "RTMPT request timed out"))?;
        if result.is_err() {
            // The connection is in an unknown state: the next request dials anew.
            self.sender = None;
        }
        result
    }
}

/// Moves bytes between the push driver's stream (`local`) and the tunnel until either ends.
async fn pump(
    mut client: TunnelClient,
    mut http: Http,
    mut local: DuplexStream,
    limits: ClientLimits,
    charge: prism_mem::MemCharge,
) -> Result<(), DialError> {
    let mut staged = BytesMut::new();
    let mut local_open = true;
    let mut scratch = vec![0u8; 16 * 1024];
    loop {
        // Take what the push has written, without waiting, so one /send carries it all.
        if local_open && client.room() > 0 {
            let ended = read_available(&mut local, &mut staged, client.room()).await;
            client.write(&staged);
            charge.track(client.pending());
            staged.clear();
            if ended {
                local_open = false;
                client.close();
            }
        }
        if let Some(req) = client.poll_request(Instant::now()) {
            // The body in flight is still held until the reply comes.
            charge.track(client.pending() + req.body.len());
            let (status, body) = match http.request(req, limits).await {
                Ok(r) => r,
                Err(e) => {
                    client.close();
                    return Err(e);
                }
            };
            // Waiting bytes plus the reply being handed on (dropped with the task).
            charge.track(client.pending() + body.len());
            let data = client
                .on_reply(Instant::now(), status, &body)
                .map_err(|e| DialError::new(ErrorReason::Io, e))?;
            if !data.is_empty() && local_open {
                // The push reads all the time; a stalled reader is a dead session.
                tokio::time::timeout(limits.request_timeout, local.write_all(data))
                    .await
                    .map_err(|_| DialError::new(ErrorReason::WriteTimeout, "push not reading"))?
                    .map_err(|e| DialError::new(ErrorReason::Io, e))?;
            }
            continue;
        }
        if client.is_closed() {
            return Ok(());
        }
        let wake = client.poll_timeout();
        tokio::select! {
            r = local.read(&mut scratch[..client.room().clamp(1, 16 * 1024)]),
                if local_open && client.room() > 0 =>
            {
                match r {
                    Ok(0) | Err(_) => {
                        local_open = false;
                        client.close();
                    }
                    Ok(n) => {
                        client.write(&scratch[..n]);
                        charge.track(client.pending());
                    }
                }
            }
            () = sleep_until(wake) => {
                client
                    .handle_timeout(Instant::now())
                    .map_err(|e| DialError::new(ErrorReason::WriteTimeout, e))?;
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
