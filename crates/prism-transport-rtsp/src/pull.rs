//! The `rtsp://` pull client (cameras in): DESCRIBE/SETUP/PLAY with Basic or Digest
//! auth, RTP over TCP (interleaved) or UDP (through a small reorder buffer), RTCP receiver
//! reports, keep-alives within the camera's session timeout; the media is published into
//! the hub as any publisher's (see [`pull`]). Depacketizing and frame building are
//! prism-rtsp's [`Ingest`]; this is the I/O around it.

use crate::TRANSPORT;
use bytes::{Bytes, BytesMut};
use prism_hub::Frame;
use prism_metrics::ErrorReason;
use prism_relay::{ConnError, ConnInfo, Publisher, Relay, StreamRequest};
use prism_rtsp::auth::{self, Challenge};
use prism_rtsp::ingest::{Drop as Dropped, Ingest};
use prism_rtsp::message::{
    self, interleaved_prefix, Limits, Message, Request, Response, Transport,
};
use prism_rtsp::rtp::Reorder;
use prism_rtsp::sdp;
use prism_rtsp::url::RtspUrl;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// How RTP comes from the camera (`rtsp_transport` of a source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtspTransport {
    /// Interleaved in the RTSP connection (the default: no NAT or firewall trouble).
    #[default]
    Tcp,
    /// UDP unicast, one port pair per track.
    Udp,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Each set-up request's answer must come within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A camera that sends no RTP for this long is gone.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(10);
const RR_INTERVAL: Duration = Duration::from_secs(5);
/// RTSP's default session timeout (RFC 2326 §12.37) when the camera names none.
const DEFAULT_SESSION_TIMEOUT: u64 = 60;
/// UDP packets held to put a track back in order (about 50 ms of a 4 Mbit/s stream).
const REORDER_PACKETS: usize = 32;
/// UDP packets queued between the socket readers and the session.
const UDP_QUEUE: usize = 2048;
const MAX_INPUT: usize = 256 * 1024;
const USER_AGENT: &str = concat!("Prism/", env!("CARGO_PKG_VERSION"));

/// Pulls `url` (an IP camera, an NVR, another RTSP server) and publishes it as
/// `app/key` until the camera goes away, the stream is kicked, or `cancel` resolves.
///
/// Publishing goes through [`Relay::publish`] (route rules apply; the source has no
/// token, so `publish_tokens` of a matching route refuse it) once PLAY succeeded, so a
/// camera that cannot be reached never creates a stream. Credentials in the URL are used
/// for Basic or Digest auth and never logged.
///
/// Returns `Ok(())` when cancelled (the stream is unpublished: it ends at once) or kicked;
/// an error when the camera could not be set up or went away (the stream is dropped
/// without unpublishing: it waits out the reconnect grace for the caller's next attempt).
/// Connection errors are counted in `prism_connection_errors_total{transport="rtsp"}`,
/// dropped media in `prism_rtsp_dropped_total{reason}`. No retry here: reconnecting with
/// backoff is the caller's.
pub async fn pull(
    relay: Arc<Relay>,
    url: &str,
    transport: RtspTransport,
    app: &str,
    key: &str,
    cancel: impl Future<Output = ()>,
) -> Result<(), ConnError> {
    let r = run(&relay, url, transport, app, key, cancel).await;
    if let Err(e) = &r {
        relay.connection_error(TRANSPORT, e.reason).inc();
    }
    r
}

fn err(reason: ErrorReason, detail: impl ToString) -> ConnError {
    ConnError::new(reason, detail)
}

async fn run(
    relay: &Arc<Relay>,
    url: &str,
    transport: RtspTransport,
    app: &str,
    key: &str,
    cancel: impl Future<Output = ()>,
) -> Result<(), ConnError> {
    let url = RtspUrl::parse(url).map_err(|e| err(ErrorReason::BadUrl, e))?;
    let shown = url.redacted();
    let tcp = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        prism_transport_rtmp::connect(&url.host, url.port),
    )
    .await
    {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(err(ErrorReason::Connect, format!("{shown}: {e}"))),
        Err(_) => return Err(err(ErrorReason::ConnectTimeout, &shown)),
    };
    let peer = tcp.peer_addr().map_err(|e| err(ErrorReason::Connect, e))?;
    let mut c = Client {
        tcp,
        input: BytesMut::with_capacity(16 * 1024),
        cseq: 0,
        user: url.user.clone(),
        pass: url.pass.clone(),
        challenge: None,
        nc: 0,
        session: None,
        session_timeout: DEFAULT_SESSION_TIMEOUT,
        early: Vec::new(),
    };
    let base_url = url.request_url();
    // Some cameras want an OPTIONS first; its answer does not matter.
    let options = c.request("OPTIONS", &base_url, &[]).await?;
    let get_parameter = options
        .headers
        .get("Public")
        .is_some_and(|p| p.to_ascii_uppercase().contains("GET_PARAMETER"));
    let describe = c
        .request("DESCRIBE", &base_url, &[("Accept", "application/sdp")])
        .await?;
    expect_ok(&describe, "DESCRIBE", &shown)?;
    let session = sdp::parse(&describe.body)
        .map_err(|e| err(ErrorReason::Protocol, format!("{shown}: {e}")))?;
    let base = describe
        .headers
        .get("Content-Base")
        .or_else(|| describe.headers.get("Content-Location"))
        .map(str::to_owned)
        .unwrap_or_else(|| base_url.clone());
    let aggregate = sdp::resolve_control(&base, session.control.as_deref());
    let mut ingest = Ingest::from_sdp(&session, rand_u32());
    let mut reporter = DropReporter::default();
    reporter.report(relay, &ingest);
    if ingest.tracks.is_empty() {
        return Err(err(
            ErrorReason::Refused,
            format!("{shown}: no H.264/H.265/AAC track"),
        ));
    }

    // SETUP each track.
    let (udp_tx, mut udp_rx) = mpsc::channel::<(usize, bool, Bytes)>(UDP_QUEUE);
    let mut paths: Vec<Path> = Vec::new();
    let mut readers = Readers(Vec::new());
    for (i, t) in ingest.tracks.iter().enumerate() {
        let media = &session.media[t.media_index];
        let control = sdp::resolve_control(&base, media.control.as_deref());
        let (spec, udp) = match transport {
            RtspTransport::Tcp => (
                Transport {
                    tcp: true,
                    unicast: true,
                    interleaved: Some((2 * i as u8, 2 * i as u8 + 1)),
                    ..Default::default()
                },
                None,
            ),
            RtspTransport::Udp => {
                let (a, b) = crate::udp::bind_pair(None)
                    .await
                    .ok_or_else(|| err(ErrorReason::Io, "cannot bind a UDP port pair"))?;
                let ports = (
                    a.local_addr().map_err(|e| err(ErrorReason::Io, e))?.port(),
                    b.local_addr().map_err(|e| err(ErrorReason::Io, e))?.port(),
                );
                (
                    Transport {
                        tcp: false,
                        unicast: true,
                        client_port: Some(ports),
                        ..Default::default()
                    },
                    Some((Arc::new(a), Arc::new(b))),
                )
            }
        };
        let resp = c
            .request("SETUP", &control, &[("Transport", &spec.to_header())])
            .await?;
        expect_ok(&resp, "SETUP", &shown)?;
        let got = resp
            .headers
            .get("Transport")
            .and_then(Transport::parse)
            .unwrap_or_default();
        if let Some(s) = resp.headers.get("Session") {
            let (id, timeout) = message::parse_session(s);
            c.session = Some(id);
            if let Some(t) = timeout.filter(|t| (5..=3600).contains(t)) {
                c.session_timeout = t;
            }
        }
        let path = match udp {
            None => {
                let (rtp_ch, rtcp_ch) = got.interleaved.or(spec.interleaved).unwrap_or_default();
                Path::Interleaved {
                    rtp: rtp_ch,
                    rtcp: rtcp_ch,
                }
            }
            Some((rtp_sock, rtcp_sock)) => {
                let (srv_rtp, srv_rtcp) = got.server_port.ok_or_else(|| {
                    err(
                        ErrorReason::Protocol,
                        format!("{shown}: SETUP answer without server_port"),
                    )
                })?;
                let ip = peer.ip();
                readers.0.push(tokio::spawn(read_udp(
                    rtp_sock.clone(),
                    ip,
                    i,
                    false,
                    udp_tx.clone(),
                )));
                readers.0.push(tokio::spawn(read_udp(
                    rtcp_sock.clone(),
                    ip,
                    i,
                    true,
                    udp_tx.clone(),
                )));
                // Open the NAT/firewall path towards the camera's ports.
                let _ = rtp_sock.send_to(&[0x80, 0, 0, 0], (ip, srv_rtp)).await;
                Path::Udp {
                    rtcp: rtcp_sock,
                    server_rtcp: SocketAddr::new(ip, srv_rtcp),
                    reorder: Reorder::new(REORDER_PACKETS),
                }
            }
        };
        paths.push(path);
    }
    drop(udp_tx);
    let play = c
        .request("PLAY", &aggregate, &[("Range", "npt=0.000-")])
        .await?;
    expect_ok(&play, "PLAY", &shown)?;

    let info = ConnInfo {
        peer,
        transport: TRANSPORT,
    };
    let want = StreamRequest {
        app,
        key,
        query: "",
    };
    let publisher = relay
        .publish(want, &info)
        .await
        .map_err(|r| err(ErrorReason::PublishRefused, r))?;
    info!(camera = %shown, stream = %publisher.stream().name(), ?transport, tracks = ingest.tracks.len(), "RTSP pull started");
    let _in_flight = relay.track(|| format!("rtsp pull of {}", publisher.stream().name()));

    // Playing.
    let started = Instant::now();
    let now_ms = || started.elapsed().as_millis() as i64;
    let keepalive_every = Duration::from_secs(c.session_timeout.max(2) / 2);
    let mut keepalive = tokio::time::interval_at(
        tokio::time::Instant::now() + keepalive_every,
        keepalive_every,
    );
    let mut rr = tokio::time::interval_at(tokio::time::Instant::now() + RR_INTERVAL, RR_INTERVAL);
    let mut last_media = tokio::time::Instant::now();
    let mut frames = Vec::new();
    let limits = Limits::default();
    let mut cancel = std::pin::pin!(cancel);
    // Media that came with the set-up answers.
    for (ch, payload) in std::mem::take(&mut c.early) {
        on_interleaved(&mut ingest, &paths, ch, &payload, now_ms(), &mut frames);
    }
    let end: Result<(), ConnError> = loop {
        publish(&publisher, &mut frames);
        reporter.report(relay, &ingest);
        tokio::select! {
            read = c.tcp.read_buf(&mut c.input) => {
                match read {
                    Ok(0) => break Err(err(ErrorReason::Closed, format!("{shown}: connection closed"))),
                    Ok(_) => {}
                    Err(e) => break Err(err(ErrorReason::Io, format!("{shown}: {e}"))),
                }
                let mut failed = None;
                loop {
                    match message::decode(&mut c.input, &limits) {
                        Ok(Some(Message::Data { channel, payload })) => {
                            if on_interleaved(&mut ingest, &paths, channel, &payload, now_ms(), &mut frames) {
                                last_media = tokio::time::Instant::now();
                            }
                        }
                        // Keep-alive answers; requests from the camera are not expected.
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            failed = Some(err(ErrorReason::Protocol, format!("{shown}: {e}")));
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    break Err(e);
                }
                if c.input.len() > MAX_INPUT {
                    break Err(err(ErrorReason::BufferFull, &shown));
                }
            }
            Some((t, is_rtcp, payload)) = udp_rx.recv() => {
                let Some(Path::Udp { reorder, .. }) = paths.get_mut(t) else { continue };
                if is_rtcp {
                    ingest.push_rtcp(t, &payload, now_ms());
                    continue;
                }
                last_media = tokio::time::Instant::now();
                let Some(seq) = payload.get(2..4).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
                    continue;
                };
                reorder.push(seq, payload);
                while let Some(p) = reorder.pop() {
                    ingest.push_rtp(t, &p, now_ms(), &mut frames);
                }
            }
            _ = keepalive.tick() => {
                let method = if get_parameter { "GET_PARAMETER" } else { "OPTIONS" };
                if let Err(e) = c.send(method, &aggregate, &[]).await {
                    break Err(e);
                }
            }
            _ = rr.tick() => {
                if last_media.elapsed() > MEDIA_TIMEOUT {
                    break Err(err(ErrorReason::IdleTimeout, format!("{shown}: no media for {MEDIA_TIMEOUT:?}")));
                }
                if let Err(e) = send_reports(&mut c, &mut ingest, &paths, now_ms()).await {
                    break Err(e);
                }
            }
            _ = publisher.kicked() => break Ok(()),
            _ = &mut cancel => {
                let _ = tokio::time::timeout(Duration::from_secs(1), c.send("TEARDOWN", &aggregate, &[])).await;
                break Ok(());
            }
        }
    };
    publish(&publisher, &mut frames);
    reporter.report(relay, &ingest);
    drop(readers);
    match &end {
        Ok(()) => {
            info!(camera = %shown, "RTSP pull stopped");
            publisher.unpublish();
        }
        Err(e) => {
            warn!(camera = %shown, reason = e.reason.as_str(), "RTSP pull lost: {}", e.detail);
            // Dropped, not unpublished: the reconnect grace window starts.
            drop(publisher);
        }
    }
    end
}

fn expect_ok(resp: &Response, what: &str, shown: &str) -> Result<(), ConnError> {
    if resp.status == 200 {
        return Ok(());
    }
    let reason = if resp.status == 401 {
        "unauthorized (credentials missing or refused)"
    } else {
        resp.reason.as_str()
    };
    Err(err(
        ErrorReason::Refused,
        format!("{shown}: {what} answered {} {reason}", resp.status),
    ))
}

/// Where a track's packets come from.
enum Path {
    Interleaved {
        rtp: u8,
        rtcp: u8,
    },
    Udp {
        rtcp: Arc<UdpSocket>,
        server_rtcp: SocketAddr,
        reorder: Reorder<Bytes>,
    },
}

/// The UDP readers, stopped with the session.
struct Readers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Readers {
    fn drop(&mut self) {
        for r in &self.0 {
            r.abort();
        }
    }
}

/// One interleaved packet: true if it was RTP of a track.
fn on_interleaved(
    ingest: &mut Ingest,
    paths: &[Path],
    channel: u8,
    payload: &Bytes,
    now_ms: i64,
    frames: &mut Vec<prism_rtsp::flv::FlvFrame>,
) -> bool {
    for (t, p) in paths.iter().enumerate() {
        if let Path::Interleaved { rtp, rtcp } = p {
            if *rtp == channel {
                ingest.push_rtp(t, payload, now_ms, frames);
                return true;
            }
            if *rtcp == channel {
                ingest.push_rtcp(t, payload, now_ms);
                return false;
            }
        }
    }
    false
}

fn publish(publisher: &Publisher, frames: &mut Vec<prism_rtsp::flv::FlvFrame>) {
    for f in frames.drain(..) {
        publisher.send_frame(Frame {
            kind: f.kind,
            timestamp: f.timestamp,
            payload: f.payload,
            keyframe: f.keyframe,
            sequence_header: f.sequence_header,
            disposable: false,
            wire: Default::default(),
        });
    }
}

async fn send_reports(
    c: &mut Client,
    ingest: &mut Ingest,
    paths: &[Path],
    now_ms: i64,
) -> Result<(), ConnError> {
    for (t, p) in paths.iter().enumerate() {
        let Some(rr) = ingest.receiver_report(t, now_ms) else {
            continue;
        };
        match p {
            Path::Interleaved { rtcp, .. } => {
                let mut b = BytesMut::with_capacity(4 + rr.len());
                b.extend_from_slice(&interleaved_prefix(*rtcp, rr.len()));
                b.extend_from_slice(&rr);
                c.write(&b).await?;
            }
            Path::Udp {
                rtcp, server_rtcp, ..
            } => {
                let _ = rtcp.try_send_to(&rr, *server_rtcp);
            }
        }
    }
    Ok(())
}

/// Exports the ingest's drop counts as they grow.
#[derive(Default)]
struct DropReporter {
    reported: [u64; 7],
}

impl DropReporter {
    fn report(&mut self, relay: &Relay, ingest: &Ingest) {
        let now = ingest.drops();
        for (i, d) in Dropped::ALL.iter().enumerate() {
            if now[i] > self.reported[i] {
                relay
                    .rtsp_dropped(d.as_str())
                    .inc_by(now[i] - self.reported[i]);
                self.reported[i] = now[i];
            }
        }
    }
}

/// Reads one UDP socket of a track into the session's queue (from the camera's address
/// only; a full queue drops, as the network would).
async fn read_udp(
    sock: Arc<UdpSocket>,
    camera: std::net::IpAddr,
    track: usize,
    is_rtcp: bool,
    tx: mpsc::Sender<(usize, bool, Bytes)>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) if from.ip() == camera => {
                let pkt = Bytes::copy_from_slice(&buf[..n]);
                if tx.try_send((track, is_rtcp, pkt)).is_err() && tx.is_closed() {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn rand_u32() -> u32 {
    crate::udp::random_u32()
}

/// The RTSP connection to the camera during set-up (and keep-alives after).
struct Client {
    tcp: TcpStream,
    input: BytesMut,
    cseq: u32,
    user: Option<String>,
    pass: Option<String>,
    challenge: Option<Challenge>,
    nc: u32,
    session: Option<String>,
    session_timeout: u64,
    /// Interleaved packets that arrived while waiting for an answer.
    early: Vec<(u8, Bytes)>,
}

impl Client {
    fn build(&mut self, method: &str, uri: &str, headers: &[(&str, &str)]) -> Request {
        self.cseq += 1;
        let mut req = Request::new(method, uri)
            .header("CSeq", self.cseq.to_string())
            .header("User-Agent", USER_AGENT);
        for (n, v) in headers {
            req = req.header(n, *v);
        }
        if let (Some(ch), Some(user)) = (&self.challenge, &self.user) {
            self.nc += 1;
            let cnonce = format!("{:08x}", rand_u32());
            let pass = self.pass.as_deref().unwrap_or_default();
            req = req.header(
                "Authorization",
                auth::authorization(ch, user, pass, method, uri, self.nc, &cnonce),
            );
        }
        if let Some(s) = &self.session {
            req = req.header("Session", s.clone());
        }
        req
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.tcp.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(err(ErrorReason::Io, e)),
            Err(_) => Err(err(ErrorReason::WriteTimeout, "camera not reading")),
        }
    }

    /// Sends a request without waiting for its answer (keep-alives, TEARDOWN).
    async fn send(
        &mut self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Result<(), ConnError> {
        let req = self.build(method, uri, headers);
        let mut b = BytesMut::new();
        req.encode(&mut b);
        self.write(&b).await
    }

    /// Sends a request and waits for its answer, answering one auth challenge.
    async fn request(
        &mut self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response, ConnError> {
        let mut retried = false;
        loop {
            let req = self.build(method, uri, headers);
            let cseq = self.cseq;
            let mut b = BytesMut::new();
            req.encode(&mut b);
            self.write(&b).await?;
            let resp = match tokio::time::timeout(REQUEST_TIMEOUT, self.answer(cseq)).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(err(
                        ErrorReason::SetupTimeout,
                        format!("no answer to {method}"),
                    ))
                }
            };
            if resp.status == 401 && !retried && self.user.is_some() {
                if let Some(ch) = auth::pick_challenge(resp.headers.get_all("WWW-Authenticate")) {
                    self.challenge = Some(ch);
                    self.nc = 0;
                    retried = true;
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    async fn answer(&mut self, cseq: u32) -> Result<Response, ConnError> {
        let limits = Limits::default();
        loop {
            while let Some(m) = message::decode(&mut self.input, &limits)
                .map_err(|e| err(ErrorReason::Protocol, e))?
            {
                match m {
                    Message::Response(r) if !matches!(r.headers.cseq(), Some(c) if c != cseq) => {
                        return Ok(r)
                    }
                    Message::Data { channel, payload } if self.early.len() < 256 => {
                        self.early.push((channel, payload))
                    }
                    _ => {}
                }
            }
            if self.input.len() > MAX_INPUT {
                return Err(err(ErrorReason::BufferFull, "answer too large"));
            }
            match self.tcp.read_buf(&mut self.input).await {
                Ok(0) => return Err(err(ErrorReason::Closed, "camera closed the connection")),
                Ok(_) => {}
                Err(e) => return Err(err(ErrorReason::Io, e)),
            }
        }
    }
}
