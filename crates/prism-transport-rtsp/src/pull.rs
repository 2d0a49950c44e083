//! The `rtsp://` pull client (cameras in): DESCRIBE/SETUP/PLAY with Basic or Digest
//! auth, RTP over TCP (interleaved) or UDP (through a small reorder buffer), RTCP receiver
//! reports, keep-alives within the camera's session timeout; the media is published into
//! the hub as any publisher's (see [`pull`]). Depacketizing and frame building are
//! prism-rtsp's [`Ingest`]; this is the I/O around it.

use crate::TRANSPORT;
use bytes::{Bytes, BytesMut};
use prism_config::SourceConfig;
use prism_config::TargetTls;
use prism_hub::Frame;
use prism_metrics::ErrorReason;
use prism_relay::{
    BoxedStream, ConnError, ConnInfo, Publisher, PullFuture, Relay, SourcePuller, SourceSession,
    StreamRequest,
};
use prism_rtsp::client::{Lower, Setup, SetupError, Step};
use prism_rtsp::ingest::{Drop as Dropped, Ingest};
use prism_rtsp::message::{self, interleaved_prefix, Limits, Message, Request, Response};
use prism_rtsp::rtp::Reorder;
use prism_rtsp::url::RtspUrl;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// How RTP comes from the camera: `rtsp_transport` of a `[[source]]` (TCP interleaved by
/// default: no NAT or firewall trouble; or UDP unicast, one port pair per track).
pub use prism_config::RtspTransport;

/// The [`SourcePuller`] of `rtsp://` and `rtsps://` sources: one attempt is one [`pull`]
/// whose stream the `[[source]]` framework publishes (it also reconnects, ends the attempt
/// on removal or a kick, and keeps the status).
#[derive(Debug, Default)]
pub struct RtspPuller;

impl SourcePuller for RtspPuller {
    fn schemes(&self) -> &'static [&'static str] {
        &["rtsp", "rtsps"]
    }

    fn pull<'a>(
        &'a self,
        source: &'a SourceConfig,
        session: &'a mut SourceSession,
    ) -> PullFuture<'a> {
        Box::pin(async move {
            let relay = session.relay().clone();
            let options = PullOptions {
                transport: source.options.rtsp_transport,
                tls: source.options.tls(),
            };
            let (app, key) = source.app_key();
            let sink = Sink::Source(session);
            let r = run(
                &relay,
                &source.url,
                &options,
                app,
                key,
                std::future::pending(),
                sink,
            )
            .await;
            if let Err(e) = &r {
                relay.connection_error(TRANSPORT, e.reason).inc();
            }
            r
        })
    }
}

/// Where the pulled frames go.
enum Sink<'s> {
    /// [`pull`]: a publisher of its own, once PLAY succeeded.
    Own(Option<Publisher>),
    /// A `[[source]]` attempt: the framework's session publishes and counts.
    Source(&'s mut SourceSession),
}

impl Sink<'_> {
    fn send(&self, frames: &mut Vec<prism_rtsp::flv::FlvFrame>) {
        for f in frames.drain(..) {
            let frame = Frame {
                kind: f.kind,
                timestamp: f.timestamp,
                payload: f.payload,
                keyframe: f.keyframe,
                sequence_header: f.sequence_header,
                disposable: false,
                wire: Default::default(),
                mem: Default::default(),
            };
            match self {
                Sink::Own(Some(p)) => p.send_frame(frame),
                Sink::Own(None) => {}
                Sink::Source(s) => s.send_frame(frame),
            }
        }
    }

    fn received(&self, n: usize) {
        if let Sink::Source(s) = self {
            s.received(n);
        }
    }

    /// Resolves when an operator kicked our own publisher (the framework watches its own).
    async fn kicked(&self) {
        match self {
            Sink::Own(Some(p)) => p.kicked().await,
            _ => std::future::pending().await,
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Each set-up request's answer must come within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A camera that sends no RTP for this long is gone.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(10);
const RR_INTERVAL: Duration = Duration::from_secs(5);
/// UDP packets held to put a track back in order (about 50 ms of a 4 Mbit/s stream).
const REORDER_PACKETS: usize = 32;
/// UDP packets queued between the socket readers and the session.
const UDP_QUEUE: usize = 2048;
const MAX_INPUT: usize = 256 * 1024;
/// Each UDP reader's receive buffer (one datagram of any size).
const UDP_RECV_BUF: usize = 65_536;

/// What a pull holds, charged to the memory budget's `rtsp` pool: the interleaved-TCP
/// input (refused beyond [`MAX_INPUT`]), each UDP track's reorder buffer
/// ([`REORDER_PACKETS`]), the packets queued from the UDP readers ([`UDP_QUEUE`]) and
/// their receive buffers, and the depacketizers' partial frames (bounded by
/// prism-rtsp's `DepackLimits`). Re-measured once per read or UDP packet, charged in
/// 4 KiB steps; released when the pull ends (dropped with it).
struct PullMem {
    charge: prism_mem::MemCharge,
    /// Bytes in the UDP queue: added by the readers, taken by the session.
    queued: Arc<AtomicUsize>,
}

impl PullMem {
    fn new(relay: &Relay) -> PullMem {
        PullMem {
            charge: relay
                .memory()
                .map(|b| b.charge(prism_mem::Pool::Rtsp, 0))
                .unwrap_or_default(),
            queued: Default::default(),
        }
    }

    fn update(&self, c: &Conn, paths: &[Path], readers: &Readers, ingest: &Ingest) {
        if self.charge.budget().is_none() {
            return;
        }
        let reorder: usize = paths
            .iter()
            .map(|p| match p {
                Path::Udp { reorder, .. } => reorder.held().map(Bytes::len).sum(),
                Path::Interleaved { .. } => 0,
            })
            .sum();
        self.charge.track(
            c.input.capacity()
                + reorder
                + self.queued.load(Ordering::Relaxed)
                + readers.0.len() * UDP_RECV_BUF
                + ingest.buffered_bytes(),
        );
    }
}

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
    let options = PullOptions {
        transport,
        ..Default::default()
    };
    pull_with(relay, url, &options, app, key, cancel).await
}

/// How a source is pulled, beyond its URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullOptions {
    /// `rtsp_transport`: TCP (interleaved, the default) or UDP.
    pub transport: RtspTransport,
    /// `rtsps://` only: the CA file to trust instead of the webpki roots, and whether to
    /// verify at all (cameras often have self-signed certificates), as `rtmps://` targets.
    pub tls: TargetTls,
}

/// [`pull`] with every option; `rtsps://` URLs connect over TLS as `options.tls` says
/// (failures counted as `tls_verify`, `tls_handshake` or `tls_config`).
pub async fn pull_with(
    relay: Arc<Relay>,
    url: &str,
    options: &PullOptions,
    app: &str,
    key: &str,
    cancel: impl Future<Output = ()>,
) -> Result<(), ConnError> {
    let r = run(&relay, url, options, app, key, cancel, Sink::Own(None)).await;
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
    options: &PullOptions,
    app: &str,
    key: &str,
    cancel: impl Future<Output = ()>,
    mut sink: Sink<'_>,
) -> Result<(), ConnError> {
    let url = RtspUrl::parse(url).map_err(|e| err(ErrorReason::BadUrl, e))?;
    let shown = url.redacted();
    let transport = options.transport;
    let connect = async {
        let tcp = prism_transport_rtmp::connect(&url.host, url.port)
            .await
            .map_err(|e| err(ErrorReason::Connect, format!("{shown}: {e}")))?;
        let peer = tcp.peer_addr().map_err(|e| err(ErrorReason::Connect, e))?;
        let io: BoxedStream = if url.tls {
            prism_transport_tls::connect_client(tcp, &url.host, &options.tls)
                .await
                .map_err(|e| err(e.reason, format!("{shown}: {}", e.detail)))?
        } else {
            Box::new(tcp)
        };
        Ok::<_, ConnError>((io, peer))
    };
    let (tcp, peer) = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(r) => r?,
        Err(_) => return Err(err(ErrorReason::ConnectTimeout, &shown)),
    };
    let mut c = Conn {
        tcp,
        input: BytesMut::with_capacity(16 * 1024),
        early: Vec::new(),
    };
    let lower = match transport {
        RtspTransport::Tcp => Lower::Tcp,
        RtspTransport::Udp => Lower::Udp,
    };
    let cnonce = format!("{:08x}{:08x}", rand_u32(), rand_u32());
    let mut setup = Setup::new(url, lower, rand_u32(), cnonce);
    let mut sockets: Vec<Option<(UdpSocket, UdpSocket)>> = Vec::new();
    let mut step = setup.start();
    let mut reporter = DropReporter::default();
    // The set-up exchange: the core says what to send; answers go back to it.
    loop {
        let next = match step {
            Step::Send(req) => {
                c.send(&req).await?;
                let resp = match tokio::time::timeout(REQUEST_TIMEOUT, c.answer(setup.cseq())).await
                {
                    Ok(r) => r?,
                    Err(_) => {
                        let what = format!("{shown}: no answer to {}", req.method);
                        return Err(err(ErrorReason::SetupTimeout, what));
                    }
                };
                setup.handle_response(&resp)
            }
            Step::BindPorts(i) => {
                let (a, b) = crate::udp::bind_pair(None)
                    .await
                    .ok_or_else(|| err(ErrorReason::Io, "cannot bind a UDP port pair"))?;
                let port = |s: &UdpSocket| s.local_addr().map(|a| a.port());
                let ports = (
                    port(&a).map_err(|e| err(ErrorReason::Io, e))?,
                    port(&b).map_err(|e| err(ErrorReason::Io, e))?,
                );
                sockets.resize_with(sockets.len().max(i + 1), || None);
                sockets[i] = Some((a, b));
                Ok(setup.set_client_ports(i, ports))
            }
            Step::Playing => break,
        };
        step = match next {
            Ok(s) => s,
            Err(e) => {
                // Tracks not taken (G.711...) are counted even when none is left.
                if let Some(ingest) = setup.take_ingest() {
                    reporter.report(relay, &ingest);
                }
                let reason = match e {
                    SetupError::Refused { .. } | SetupError::NoTracks => ErrorReason::Refused,
                    SetupError::Sdp(_) | SetupError::NoServerPort => ErrorReason::Protocol,
                };
                return Err(err(reason, format!("{shown}: {e}")));
            }
        };
    }
    let mut ingest = setup
        .take_ingest()
        .ok_or_else(|| err(ErrorReason::Protocol, "no session description"))?;
    reporter.report(relay, &ingest);

    // Where each track's packets come from.
    let mem = PullMem::new(relay);
    let (udp_tx, mut udp_rx) = mpsc::channel::<(usize, bool, Bytes)>(UDP_QUEUE);
    let mut paths: Vec<Path> = Vec::new();
    let mut readers = Readers(Vec::new());
    for (i, p) in setup.paths().iter().enumerate() {
        let udp = sockets.get_mut(i).and_then(Option::take);
        let path = match (udp, p.server_ports) {
            (Some((rtp_sock, rtcp_sock)), Some((srv_rtp, srv_rtcp))) => {
                let (rtp_sock, rtcp_sock) = (Arc::new(rtp_sock), Arc::new(rtcp_sock));
                let ip = peer.ip();
                let tx = udp_tx.clone();
                let q = mem.queued.clone();
                readers.0.push(tokio::spawn(read_udp(
                    rtp_sock.clone(),
                    ip,
                    i,
                    false,
                    tx,
                    q,
                )));
                let (tx, q) = (udp_tx.clone(), mem.queued.clone());
                readers.0.push(tokio::spawn(read_udp(
                    rtcp_sock.clone(),
                    ip,
                    i,
                    true,
                    tx,
                    q,
                )));
                // Open the NAT/firewall path towards the camera's ports.
                let _ = rtp_sock.send_to(&[0x80, 0, 0, 0], (ip, srv_rtp)).await;
                Path::Udp {
                    rtcp: rtcp_sock,
                    server_rtcp: SocketAddr::new(ip, srv_rtcp),
                    reorder: Reorder::new(REORDER_PACKETS),
                }
            }
            _ => Path::Interleaved {
                rtp: p.interleaved.0,
                rtcp: p.interleaved.1,
            },
        };
        paths.push(path);
    }
    drop(udp_tx);

    let info = ConnInfo {
        peer,
        transport: TRANSPORT,
    };
    let want = StreamRequest {
        app,
        key,
        query: "",
    };
    match &mut sink {
        Sink::Own(publisher) => {
            let p = relay
                .publish(want, &info)
                .await
                .map_err(|r| err(ErrorReason::PublishRefused, r))?;
            *publisher = Some(p);
        }
        Sink::Source(session) => session.start(Some(peer))?,
    }
    info!(camera = %shown, stream = %format_args!("{app}/{key}"), ?transport, tracks = ingest.tracks.len(), "RTSP pull started");
    let _in_flight = relay.track(|| format!("rtsp pull of {app}/{key}"));

    // Playing.
    let started = Instant::now();
    let now_ms = || started.elapsed().as_millis() as i64;
    let keepalive_every = (setup.session_timeout() / 2).max(Duration::from_secs(1));
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
        sink.send(&mut frames);
        reporter.report(relay, &ingest);
        mem.update(&c, &paths, &readers, &ingest);
        tokio::select! {
            read = c.tcp.read_buf(&mut c.input) => {
                match read {
                    Ok(0) => break Err(err(ErrorReason::Closed, format!("{shown}: connection closed"))),
                    Ok(n) => sink.received(n),
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
                mem.queued.fetch_sub(payload.len(), Ordering::Relaxed);
                let Some(Path::Udp { reorder, .. }) = paths.get_mut(t) else { continue };
                if is_rtcp {
                    ingest.push_rtcp(t, &payload, now_ms());
                    continue;
                }
                last_media = tokio::time::Instant::now();
                sink.received(payload.len());
                let Some(seq) = payload.get(2..4).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
                    continue;
                };
                reorder.push(seq, payload);
                while let Some(p) = reorder.pop() {
                    ingest.push_rtp(t, &p, now_ms(), &mut frames);
                }
            }
            _ = keepalive.tick() => {
                if let Err(e) = c.send(&setup.keepalive()).await {
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
            _ = sink.kicked() => break Ok(()),
            _ = &mut cancel => {
                let bye = setup.teardown();
                let _ = tokio::time::timeout(Duration::from_secs(1), c.send(&bye)).await;
                break Ok(());
            }
        }
    };
    sink.send(&mut frames);
    reporter.report(relay, &ingest);
    drop(readers);
    match &end {
        Ok(()) => info!(camera = %shown, "RTSP pull stopped"),
        Err(e) => {
            warn!(camera = %shown, reason = e.reason.as_str(), "RTSP pull lost: {}", e.detail)
        }
    }
    if let Sink::Own(Some(publisher)) = sink {
        match end {
            Ok(()) => publisher.unpublish(),
            // Dropped, not unpublished: the reconnect grace window starts.
            Err(_) => drop(publisher),
        }
    }
    end
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

async fn send_reports(
    c: &mut Conn,
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
    queued: Arc<AtomicUsize>,
) {
    let mut buf = vec![0u8; UDP_RECV_BUF];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) if from.ip() == camera => {
                let pkt = Bytes::copy_from_slice(&buf[..n]);
                // Counted before it is queued, so the session never takes more than this.
                queued.fetch_add(n, Ordering::Relaxed);
                match tx.try_send((track, is_rtcp, pkt)) {
                    Ok(()) => {}
                    Err(e) => {
                        queued.fetch_sub(n, Ordering::Relaxed);
                        if matches!(e, mpsc::error::TrySendError::Closed(_)) {
                            return;
                        }
                    }
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

/// The RTSP connection to the camera.
struct Conn {
    tcp: BoxedStream,
    input: BytesMut,
    /// Interleaved packets that arrived while waiting for an answer.
    early: Vec<(u8, Bytes)>,
}

impl Conn {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.tcp.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(err(ErrorReason::Io, e)),
            Err(_) => Err(err(ErrorReason::WriteTimeout, "camera not reading")),
        }
    }

    async fn send(&mut self, req: &Request) -> Result<(), ConnError> {
        let mut b = BytesMut::new();
        req.encode(&mut b);
        self.write(&b).await
    }

    /// Reads until the answer with CSeq `cseq` (or none) arrives.
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
