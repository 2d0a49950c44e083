//! The RTSP server: players DESCRIBE/SETUP/PLAY `rtsp://HOST:PORT/{app}/{key}[?token=..]`
//! and get RTP over TCP (interleaved) or UDP (unicast).
//!
//! A connection has two phases. Set-up (OPTIONS, DESCRIBE, SETUP) is a plain request
//! loop: DESCRIBE subscribes as a player (route rules, play tokens, `on_play`), takes the
//! sequence headers the subscription starts with to write the SDP, and keeps the frames
//! taken so far (the GOP cache's keyframe) for PLAY. After PLAY the connection runs on the
//! relay's [`Driver`] like every player: frames → RTP (this module's [`Output`]), the same
//! egress pacing, queue budget and write timeout, so a stalled TCP player is shed like an
//! RTMP one. Requests keep being answered (GET_PARAMETER keep-alives, TEARDOWN).

use bytes::{Bytes, BytesMut};
use prism_cmaf::{parse_audio, parse_video, Codec as CmafCodec, Payload, TrackConfig};
use prism_config::RtspConfig;
use prism_hub::{Frame, Subscription};
use prism_metrics::ErrorReason;
use prism_mpegts::nal;
use prism_relay::{
    ConnError, ConnInfo, Driver, Exit, Flow, Output, Player, Refusal, Relay, StreamRequest,
};
use prism_rtmp::OutQueue;
use prism_rtsp::message::{
    self, interleaved_prefix, Limits, Message, Request, Response, Transport,
};
use prism_rtsp::rtp::{self, RtpHeader, HEADER_LEN};
use prism_rtsp::sdp::{self, Codec, TrackDesc};
use prism_rtsp::video::{self, VideoCodec};
use prism_rtsp::{audio, auth, url};
use prism_transport_tls::{LenientClose, ReloadableTls};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, info, warn};

use crate::{TRANSPORT, TRANSPORT_TLS};

/// RTP payload size: fits an Ethernet MTU with IP/UDP/RTP headers (and TCP players
/// reassemble the same packets).
const MTU: usize = 1400;
/// How long DESCRIBE waits for a stream this node pulls on demand to go live.
const PULL_WAIT: Duration = Duration::from_secs(10);
/// How long DESCRIBE waits for the stream's sequence headers and first frame.
const DESCRIBE_WAIT: Duration = Duration::from_secs(5);
/// How long DESCRIBE waits, after the first media frame, for a track's missing sequence
/// header.
const DESCRIBE_SETTLE: Duration = Duration::from_secs(2);
/// Most frames DESCRIBE keeps for PLAY (the GOP cache's head; the rest stays queued).
const MAX_HELD_FRAMES: usize = 256;
/// Largest audio frame sent (AAC-hbr sizes are 13-bit).
const MAX_AUDIO_FRAME: usize = 0x1FFF;
/// Sender reports per track at most this often.
const SR_INTERVAL: Duration = Duration::from_secs(5);
/// Most bytes of input kept while a message is incomplete (headers + body + slack).
const MAX_INPUT: usize = 128 * 1024;
const METHODS: &str = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// Accepts players until the task is dropped.
pub async fn run(listener: TcpListener, relay: Arc<Relay>, config: RtspConfig) {
    accept(listener, relay, config, None).await
}

/// `[rtsps]`: accepts players over TLS (certificates reloadable) until the task is
/// dropped. A handshake must finish within [`TLS_HANDSHAKE_TIMEOUT`]; failures are counted
/// in `prism_connection_errors_total{transport="rtsps"}`.
pub async fn run_tls(
    listener: TcpListener,
    relay: Arc<Relay>,
    config: RtspConfig,
    tls: Arc<ReloadableTls>,
) {
    accept(listener, relay, config, Some(tls)).await
}

/// The TLS handshake of an `rtsps` player must finish within this.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn accept(
    listener: TcpListener,
    relay: Arc<Relay>,
    config: RtspConfig,
    tls: Option<Arc<ReloadableTls>>,
) {
    let config = Arc::new(config);
    let transport = if tls.is_some() {
        TRANSPORT_TLS
    } else {
        TRANSPORT
    };
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let Ok(permit) = relay.admit(peer, transport) else {
                    continue;
                };
                prism_transport_rtmp::prepare_accepted(&tcp);
                let (relay, config, tls) = (relay.clone(), config.clone(), tls.clone());
                tokio::spawn(async move {
                    let local = tcp.local_addr().ok();
                    match tls {
                        None => serve(tcp, peer, local, relay, config, transport).await,
                        Some(tls) => match tls.accept(tcp, TLS_HANDSHAKE_TIMEOUT).await {
                            Ok(stream) => {
                                let io = LenientClose(stream);
                                serve(io, peer, local, relay, config, transport).await
                            }
                            Err(e) => {
                                relay.connection_error(transport, e.reason).inc();
                                info!(%peer, transport, reason = e.reason.as_str(), "TLS handshake failed: {}", e.detail);
                            }
                        },
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                warn!(transport, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one RTSP connection (a TCP or TLS byte stream) to its end; errors are counted
/// in `prism_connection_errors_total{transport,reason}`.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    relay: Arc<Relay>,
    config: Arc<RtspConfig>,
    transport: &'static str,
) {
    let _in_flight = relay.track(|| format!("{transport} session from {peer}"));
    let conn = relay.connection_metrics(transport);
    conn.accepted.inc();
    conn.active.inc();
    let mut s = Session::new(relay.clone(), peer, local, config, transport);
    let end = s.run(io).await;
    conn.active.dec();
    match end {
        Ok(()) => debug!(%peer, transport, "RTSP session ended"),
        Err(e) => {
            info!(%peer, transport, reason = e.reason.as_str(), "RTSP session closed: {}", e.detail);
            relay.connection_error(transport, e.reason).inc();
        }
    }
}

/// Where one track's packets go.
enum Dest {
    Interleaved {
        rtp: u8,
        rtcp: u8,
    },
    Udp {
        rtp: Arc<UdpSocket>,
        rtcp: Arc<UdpSocket>,
        peer_rtp: SocketAddr,
        peer_rtcp: SocketAddr,
        /// Reads the player's RTCP (receiver reports are its keep-alive).
        reader: tokio::task::JoinHandle<()>,
    },
}

impl Drop for Dest {
    fn drop(&mut self) {
        if let Dest::Udp { reader, .. } = self {
            reader.abort();
        }
    }
}

struct Track {
    config: TrackConfig,
    codec: Codec,
    payload_type: u8,
    clock_rate: u32,
    ssrc: u32,
    seq: u16,
    ts_offset: u32,
    dest: Option<Dest>,
    packets: u32,
    octets: u32,
    last_ts: u32,
    next_sr: Instant,
    /// H.264/H.265 parameter sets from the record, sent before every keyframe (players
    /// that ignore the SDP's sprop still start).
    params: Vec<Bytes>,
}

impl Track {
    fn new(config: TrackConfig, payload_type: u8) -> Option<Track> {
        let (codec, clock_rate, params) = match config.codec {
            CmafCodec::H264 => (
                Codec::H264,
                90_000,
                nal::avc_record_parameter_sets(&config.record)?
                    .into_iter()
                    .map(Bytes::copy_from_slice)
                    .collect(),
            ),
            CmafCodec::Hevc => (
                Codec::H265,
                90_000,
                nal::hevc_record_parameter_sets(&config.record)?
                    .into_iter()
                    .map(Bytes::copy_from_slice)
                    .collect(),
            ),
            CmafCodec::Aac => (Codec::Aac, config.sample_rate.max(1), Vec::new()),
            CmafCodec::Opus => (Codec::Opus, 48_000, Vec::new()),
            CmafCodec::Av1 => return None,
        };
        Some(Track {
            config,
            codec,
            payload_type,
            clock_rate,
            ssrc: crate::udp::random_u32(),
            seq: crate::udp::random_u32() as u16,
            ts_offset: crate::udp::random_u32(),
            dest: None,
            packets: 0,
            octets: 0,
            last_ts: 0,
            next_sr: Instant::now(),
            params,
        })
    }

    fn desc(&self, idx: usize) -> TrackDesc {
        let b64 = |n: &Bytes| auth::base64_encode(n);
        let of_type = |t: u8| -> Vec<String> {
            self.params
                .iter()
                .filter(|n| VideoCodec::H265.nal_type(n) == Some(t))
                .map(b64)
                .collect()
        };
        let fmtp = match self.codec {
            Codec::H264 => {
                let sprop: Vec<String> = self.params.iter().map(b64).collect();
                let pli = self
                    .config
                    .record
                    .get(1..4)
                    .map(|p| format!("{:02X}{:02X}{:02X}", p[0], p[1], p[2]))
                    .unwrap_or_default();
                format!(
                    "packetization-mode=1;profile-level-id={pli};sprop-parameter-sets={}",
                    sprop.join(",")
                )
            }
            Codec::H265 => format!(
                "sprop-vps={};sprop-sps={};sprop-pps={}",
                of_type(32).join(","),
                of_type(33).join(","),
                of_type(34).join(",")
            ),
            Codec::Aac => audio::aac_fmtp(&self.config.record),
            Codec::Opus => "sprop-stereo=1".into(),
            _ => String::new(),
        };
        TrackDesc {
            codec: self.codec,
            payload_type: self.payload_type,
            clock_rate: self.clock_rate,
            channels: match self.codec {
                Codec::Opus => 2,
                Codec::Aac => self.config.channels.max(1),
                _ => 1,
            },
            fmtp,
            control: format!("trackID={idx}"),
        }
    }
}

/// One connection's state, through both phases.
struct Session {
    relay: Arc<Relay>,
    info: ConnInfo,
    local: Option<SocketAddr>,
    config: Arc<RtspConfig>,
    id: String,
    player: Option<Player>,
    stream: Option<(String, String)>,
    held: Vec<Arc<Frame>>,
    tracks: Vec<Track>,
    playing: bool,
    torn_down: bool,
    /// Milliseconds since `started` of the last sign of life (requests, RTCP).
    activity: Arc<AtomicU64>,
    started: Instant,
    scratch: Vec<u8>,
}

fn err(reason: ErrorReason, detail: impl ToString) -> ConnError {
    ConnError::new(reason, detail)
}

fn parse_error(e: message::ParseError) -> ConnError {
    let reason = match e {
        message::ParseError::HeaderTooLarge | message::ParseError::TooManyHeaders => {
            ErrorReason::HeaderTooLarge
        }
        message::ParseError::BodyTooLarge => ErrorReason::BodyTooLarge,
        message::ParseError::Malformed(_) => ErrorReason::Protocol,
    };
    err(reason, e)
}

impl Session {
    fn new(
        relay: Arc<Relay>,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        config: Arc<RtspConfig>,
        transport: &'static str,
    ) -> Session {
        Session {
            relay,
            info: ConnInfo { peer, transport },
            local,
            config,
            id: format!(
                "{:08X}{:08X}",
                crate::udp::random_u32(),
                crate::udp::random_u32()
            ),
            player: None,
            stream: None,
            held: Vec::new(),
            tracks: Vec::new(),
            playing: false,
            torn_down: false,
            activity: Arc::new(AtomicU64::new(0)),
            started: Instant::now(),
            scratch: Vec::new(),
        }
    }

    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.activity.store(ms, Ordering::Relaxed);
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        mut tcp: S,
    ) -> Result<(), ConnError> {
        let mut input = BytesMut::with_capacity(4096);
        let limits = Limits::default();
        let timeout = self.config.session_timeout;
        // Set-up: request by request until PLAY.
        while !self.playing {
            let msg = loop {
                match message::decode(&mut input, &limits).map_err(parse_error)? {
                    Some(m) => break m,
                    None if input.len() > MAX_INPUT => {
                        return Err(err(ErrorReason::BufferFull, "input over the limit"))
                    }
                    None => {}
                }
                let read = tokio::select! {
                    r = tokio::time::timeout(timeout, tcp.read_buf(&mut input)) => r,
                    _ = self.relay.closing() => return Ok(()),
                };
                match read {
                    Err(_) => return Err(err(ErrorReason::SessionTimeout, "no request in time")),
                    Ok(Ok(0)) => return Ok(()),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(err(ErrorReason::Io, e)),
                }
            };
            let Message::Request(req) = msg else {
                // Interleaved data or responses before PLAY: nothing to do with them.
                continue;
            };
            let resp = self.handle_setup(&req).await;
            let mut out = BytesMut::new();
            resp.encode(&mut out);
            let write = tokio::time::timeout(timeout, tcp.write_all(&out)).await;
            if !matches!(write, Ok(Ok(()))) {
                return Err(err(ErrorReason::WriteTimeout, "reply not taken"));
            }
            if self.torn_down {
                return Ok(());
            }
        }
        // Playing.
        self.touch();
        let mut driver = Driver::new(tcp, prism_egress::Config::default());
        let mut first = OutQueue::new();
        let held = std::mem::take(&mut self.held);
        self.send(held, &mut first);
        driver.queue(&mut first);
        let mut output = PlayOutput {
            session: self,
            input_pending: input,
        };
        let end = driver.run(&mut output).await;
        if let Some(p) = &mut output.session.player {
            p.report_drops();
        }
        match end {
            Ok(Exit::Stopped) | Ok(Exit::Ended) => {
                // The TEARDOWN answer, or what was queued before the stream ended.
                driver.flush(Duration::from_secs(2)).await;
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn session_header(&self) -> String {
        format!(
            "{};timeout={}",
            self.id,
            self.config.session_timeout.as_secs()
        )
    }

    fn check_session(&self, req: &Request) -> bool {
        match req.headers.get("Session") {
            Some(h) => message::parse_session(h).0 == self.id,
            None => true,
        }
    }

    async fn handle_setup(&mut self, req: &Request) -> Response {
        self.touch();
        let cseq = req.headers.cseq();
        match req.method.as_str() {
            "OPTIONS" => Response::new(200, cseq).header("Public", METHODS),
            "DESCRIBE" => self.describe(req, cseq).await,
            "SETUP" => self.setup(req, cseq).await,
            "PLAY" => self.play(req, cseq),
            "TEARDOWN" => {
                self.torn_down = true;
                Response::new(200, cseq)
            }
            "GET_PARAMETER" | "SET_PARAMETER" => Response::new(200, cseq),
            // Publishing over RTSP (ANNOUNCE/RECORD) is not offered.
            _ => Response::new(501, cseq),
        }
    }

    async fn describe(&mut self, req: &Request, cseq: Option<u32>) -> Response {
        let Some((app, key, _, query)) = url::split_request_path(&req.uri) else {
            return Response::new(404, cseq);
        };
        if let Some(s) = &self.stream {
            if (s.0.as_str(), s.1.as_str()) != (app.as_str(), key.as_str()) {
                return Response::new(455, cseq);
            }
        }
        if self.player.is_none() {
            // Not live: an RTSP player expects a 404 now, not an open wait; unless this node
            // pulls the stream on demand (an edge, an on-demand source): then the player's
            // want below starts the pull, and DESCRIBE waits for it within a bound.
            let pulled = self.relay.stream(&app, &key).is_none();
            if pulled && !self.relay.can_pull(&app, &key) {
                return Response::new(404, cseq);
            }
            let want = StreamRequest {
                app: &app,
                key: &key,
                query: &query,
            };
            let mut player = match self.relay.play(want, &self.info).await {
                Ok(p) => p,
                Err(r) => {
                    self.relay
                        .connection_error(self.info.transport, ErrorReason::PlayRefused)
                        .inc();
                    let status = match r {
                        Refusal::Unauthorized | Refusal::WebhookRefused | Refusal::WebhookError => {
                            401
                        }
                        Refusal::ForbiddenAddress | Refusal::PlayDisabled => 403,
                        Refusal::BadName => 400,
                        _ => 503,
                    };
                    return Response::new(status, cseq);
                }
            };
            if pulled && !wait_pulled(&self.relay, &app, &key).await {
                // The origin does not have it (or it did not come in time).
                return Response::new(404, cseq);
            }
            let (video, audio) = collect_configs(&mut player.sub, &mut self.held).await;
            self.tracks.clear();
            for c in [video, audio].into_iter().flatten() {
                let pt = 96 + self.tracks.len() as u8;
                if let Some(t) = Track::new(c, pt) {
                    self.tracks.push(t);
                }
            }
            if self.tracks.is_empty() {
                // A stream with no codec RTSP can carry (or no sequence header in time).
                return Response::new(415, cseq);
            }
            self.player = Some(player);
            self.stream = Some((app.clone(), key.clone()));
        }
        let origin = self
            .local
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| "0.0.0.0".into());
        let descs: Vec<TrackDesc> = self
            .tracks
            .iter()
            .enumerate()
            .map(|(i, t)| t.desc(i))
            .collect();
        let body = sdp::write(&origin, &format!("{app}/{key}"), &descs);
        // Controls resolve against the URL without its query: the token was checked here.
        let base = req
            .uri
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_end_matches('/');
        Response::new(200, cseq)
            .header("Content-Base", format!("{base}/"))
            .body("application/sdp", body)
    }

    async fn setup(&mut self, req: &Request, cseq: Option<u32>) -> Response {
        if self.player.is_none() {
            return Response::new(455, cseq);
        }
        if !self.check_session(req) {
            return Response::new(454, cseq);
        }
        let Some((app, key, track, _)) = url::split_request_path(&req.uri) else {
            return Response::new(404, cseq);
        };
        if self.stream.as_ref() != Some(&(app, key)) {
            return Response::new(404, cseq);
        }
        let idx = match track.as_deref() {
            Some(t) => match t
                .strip_prefix("trackID=")
                .and_then(|n| n.parse::<usize>().ok())
            {
                Some(i) if i < self.tracks.len() => i,
                _ => return Response::new(404, cseq),
            },
            None if self.tracks.len() == 1 => 0,
            None => return Response::new(459, cseq),
        };
        let Some(t) = req.headers.get("Transport").and_then(Transport::parse) else {
            return Response::new(461, cseq);
        };
        if t.mode_record {
            return Response::new(461, cseq);
        }
        let mut reply = Transport {
            tcp: t.tcp,
            unicast: true,
            ssrc: Some(self.tracks[idx].ssrc),
            ..Default::default()
        };
        let dest = if t.tcp {
            let even = (idx as u8).wrapping_mul(2);
            let (a, b) = t.interleaved.unwrap_or((even, even.wrapping_add(1)));
            reply.interleaved = Some((a, b));
            Dest::Interleaved { rtp: a, rtcp: b }
        } else {
            let Some((cp_rtp, cp_rtcp)) = t.client_port else {
                return Response::new(461, cseq);
            };
            let ip = self.info.peer.ip();
            let Some((rtp_sock, rtcp_sock)) =
                crate::udp::bind_pair(self.local.map(|a| a.ip())).await
            else {
                return Response::new(500, cseq);
            };
            let (Ok(a), Ok(b)) = (rtp_sock.local_addr(), rtcp_sock.local_addr()) else {
                return Response::new(500, cseq);
            };
            reply.client_port = Some((cp_rtp, cp_rtcp));
            reply.server_port = Some((a.port(), b.port()));
            let (rtp_sock, rtcp_sock) = (Arc::new(rtp_sock), Arc::new(rtcp_sock));
            let reader = tokio::spawn(read_rtcp(
                rtcp_sock.clone(),
                ip,
                self.activity.clone(),
                self.started,
            ));
            Dest::Udp {
                rtp: rtp_sock,
                rtcp: rtcp_sock,
                peer_rtp: SocketAddr::new(ip, cp_rtp),
                peer_rtcp: SocketAddr::new(ip, cp_rtcp),
                reader,
            }
        };
        self.tracks[idx].dest = Some(dest);
        Response::new(200, cseq)
            .header("Transport", reply.to_header())
            .header("Session", self.session_header())
    }

    fn play(&mut self, req: &Request, cseq: Option<u32>) -> Response {
        if !self.check_session(req) {
            return Response::new(454, cseq);
        }
        if self.tracks.iter().all(|t| t.dest.is_none()) {
            return Response::new(455, cseq);
        }
        let base = req
            .uri
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_end_matches('/');
        let info: Vec<String> = self
            .tracks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.dest.is_some())
            .map(|(i, t)| format!("url={base}/trackID={i};seq={}", t.seq))
            .collect();
        self.playing = true;
        Response::new(200, cseq)
            .header("Session", self.session_header())
            .header("Range", "npt=0.000-")
            .header("RTP-Info", info.join(","))
    }

    /// Answers a request made while playing.
    fn handle_playing(&mut self, req: &Request) -> Response {
        self.touch();
        let cseq = req.headers.cseq();
        if !self.check_session(req) {
            return Response::new(454, cseq);
        }
        match req.method.as_str() {
            "OPTIONS" => Response::new(200, cseq).header("Public", METHODS),
            "GET_PARAMETER" | "SET_PARAMETER" => {
                Response::new(200, cseq).header("Session", self.session_header())
            }
            "PLAY" => Response::new(200, cseq).header("Session", self.session_header()),
            "TEARDOWN" => {
                self.torn_down = true;
                Response::new(200, cseq)
            }
            _ => Response::new(455, cseq),
        }
    }

    /// Frames → RTP packets (queued for TCP, sent at once for UDP).
    fn send(&mut self, frames: Vec<Arc<Frame>>, out: &mut OutQueue) {
        let now = Instant::now();
        for f in frames {
            let parsed = match f.kind {
                prism_media::MediaKind::Video => parse_video(&f.payload),
                prism_media::MediaKind::Audio => parse_audio(&f.payload),
                prism_media::MediaKind::Data => continue,
            };
            let (keyframe, cts_ms, data) = match parsed {
                Ok(Payload::Frame {
                    keyframe,
                    cts_ms,
                    data,
                }) => (keyframe, cts_ms, data),
                // A new encoder session (a publisher that came back): its parameter sets
                // go before the next keyframes.
                Ok(Payload::Config(c)) => {
                    let kind = |t: &&mut Track| t.config.codec.is_video() == c.codec.is_video();
                    if let Some(t) = self.tracks.iter_mut().find(kind) {
                        match Track::new(c, t.payload_type) {
                            Some(new) if new.config.codec == t.config.codec => {
                                t.params = new.params;
                                t.config = new.config;
                            }
                            // The SDP said another codec: this track stops.
                            _ => t.dest = None,
                        }
                    }
                    continue;
                }
                _ => continue,
            };
            let is_video = f.kind == prism_media::MediaKind::Video;
            let Some(idx) = self
                .tracks
                .iter()
                .position(|t| t.config.codec.is_video() == is_video && t.dest.is_some())
            else {
                continue;
            };
            let ms = i64::from(f.timestamp) + i64::from(cts_ms);
            self.emit_frame(idx, ms, keyframe, &data, out);
        }
        for i in 0..self.tracks.len() {
            let t = &mut self.tracks[i];
            if t.packets > 0 && now >= t.next_sr {
                t.next_sr = now + SR_INTERVAL;
                let sr = rtp::sender_report(
                    t.ssrc,
                    rtp::ntp_timestamp(SystemTime::now()),
                    t.last_ts,
                    t.packets,
                    t.octets,
                );
                match &t.dest {
                    Some(Dest::Interleaved { rtcp, .. }) => {
                        out.put_slice(&interleaved_prefix(*rtcp, sr.len()));
                        out.put_bytes(sr);
                    }
                    Some(Dest::Udp {
                        rtcp, peer_rtcp, ..
                    }) => {
                        let _ = rtcp.try_send_to(&sr, *peer_rtcp);
                    }
                    None => {}
                }
            }
        }
    }

    fn emit_frame(
        &mut self,
        idx: usize,
        ms: i64,
        keyframe: bool,
        data: &Bytes,
        out: &mut OutQueue,
    ) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let t = &mut self.tracks[idx];
        let ticks = ms.max(0) as u64 * u64::from(t.clock_rate) / 1000;
        let ts = t.ts_offset.wrapping_add(ticks as u32);
        t.last_ts = ts;
        let mut emit = |t: &mut Track, parts: &[&[u8]], marker: bool| {
            let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + HEADER_LEN;
            let mut hdr = [0u8; HEADER_LEN];
            RtpHeader {
                marker,
                payload_type: t.payload_type,
                sequence: t.seq,
                timestamp: ts,
                ssrc: t.ssrc,
            }
            .write(&mut hdr);
            t.seq = t.seq.wrapping_add(1);
            t.packets = t.packets.wrapping_add(1);
            t.octets = t.octets.wrapping_add((len - HEADER_LEN) as u32);
            match &t.dest {
                Some(Dest::Interleaved { rtp, .. }) => {
                    out.put_slice(&interleaved_prefix(*rtp, len));
                    out.put_slice(&hdr);
                    for p in parts {
                        out.put_slice(p);
                    }
                }
                Some(Dest::Udp { rtp, peer_rtp, .. }) => {
                    scratch.clear();
                    scratch.extend_from_slice(&hdr);
                    for p in parts {
                        scratch.extend_from_slice(p);
                    }
                    // A full socket buffer drops the packet: UDP players live with loss.
                    let _ = rtp.try_send_to(&scratch, *peer_rtp);
                }
                None => {}
            }
        };
        match t.codec {
            Codec::H264 | Codec::H265 => {
                let vc = if t.codec == Codec::H264 {
                    VideoCodec::H264
                } else {
                    VideoCodec::H265
                };
                let size = usize::from(t.config.nal_length_size().unwrap_or(4));
                let mut nals: Vec<&[u8]> = Vec::new();
                let params = std::mem::take(&mut t.params);
                if keyframe {
                    nals.extend(params.iter().map(|p| &p[..]));
                }
                nals.extend(
                    split_nals(data, size).filter(|n| !(keyframe && vc.is_parameter_set(n))),
                );
                video::packetize(vc, nals, MTU, |parts, marker| emit(t, parts, marker));
                t.params = params;
            }
            // An audio frame goes in one packet (a 13-bit AAC-hbr size; a 16-bit
            // interleaved length): a publisher's absurd frame is skipped, not mangled.
            Codec::Aac if data.len() <= MAX_AUDIO_FRAME => {
                let h = audio::aac_au_header(data.len());
                emit(t, &[&h, data], true);
            }
            Codec::Opus if data.len() <= MAX_AUDIO_FRAME => emit(t, &[data], true),
            _ => {}
        }
        self.scratch = scratch;
    }
}

/// NAL units with `size`-byte big-endian length prefixes.
fn split_nals(data: &[u8], size: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let len = rest
            .get(..size)?
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        let nal = rest.get(size..size + len)?;
        rest = &rest[size + len..];
        Some(nal)
    })
    .filter(|n| !n.is_empty())
}

/// Takes the subscription's head (metadata, sequence headers, the GOP cache), within
/// Waits, for at most [`PULL_WAIT`], until a pulled stream is live; false when the pull
/// failed on every origin or the wait ran out.
async fn wait_pulled(relay: &Relay, app: &str, key: &str) -> bool {
    let deadline = tokio::time::Instant::now() + PULL_WAIT;
    loop {
        if relay.stream(app, key).is_some_and(|s| s.is_live()) {
            return true;
        }
        if relay.pull_failed(app, key) || tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`DESCRIBE_WAIT`]: the track configurations, and the frames taken (kept for PLAY; the
/// rest stays in the subscription's queue). It stops at the first media frame once both
/// configurations are known; with one missing it waits up to [`DESCRIBE_SETTLE`] more, as
/// a stream that just started (a camera pull) may send audio before its first keyframe.
async fn collect_configs(
    sub: &mut Subscription,
    held: &mut Vec<Arc<Frame>>,
) -> (Option<TrackConfig>, Option<TrackConfig>) {
    let (mut video, mut audio) = (None, None);
    let deadline = tokio::time::Instant::now() + DESCRIBE_WAIT;
    let mut settle: Option<tokio::time::Instant> = None;
    let mut batch = Vec::new();
    while held.len() < MAX_HELD_FRAMES {
        if settle.is_some() && video.is_some() && audio.is_some() {
            break;
        }
        batch.clear();
        let until = settle.map_or(deadline, |s| s.min(deadline));
        let got = tokio::time::timeout_at(until, sub.recv(&mut batch, 256 * 1024)).await;
        if !matches!(got, Ok(prism_hub::RecvStatus::Frames)) {
            break;
        }
        // The whole batch is kept: frames after the first are the GOP's.
        for f in batch.drain(..) {
            let media = match f.kind {
                prism_media::MediaKind::Video => Some(parse_video(&f.payload)),
                prism_media::MediaKind::Audio => Some(parse_audio(&f.payload)),
                prism_media::MediaKind::Data => None,
            };
            match media {
                Some(Ok(Payload::Config(c))) if c.codec.is_video() => video = Some(c),
                Some(Ok(Payload::Config(c))) => audio = Some(c),
                Some(Ok(Payload::Frame { .. })) => {
                    settle.get_or_insert_with(|| tokio::time::Instant::now() + DESCRIBE_SETTLE);
                }
                _ => {}
            }
            held.push(f);
        }
    }
    (video, audio)
}

/// Reads a UDP player's RTCP: each packet from its address is a sign of life.
async fn read_rtcp(sock: Arc<UdpSocket>, peer: IpAddr, activity: Arc<AtomicU64>, started: Instant) {
    let mut buf = vec![0u8; 2048];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) if from.ip() == peer && rtp::rtcp_type(&buf[..n]).is_some() => {
                activity.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The playing phase's [`Output`].
struct PlayOutput<'a> {
    session: &'a mut Session,
    /// Input read before PLAY's answer and not consumed yet.
    input_pending: BytesMut,
}

impl PlayOutput<'_> {
    fn udp(&self) -> bool {
        self.session
            .tracks
            .iter()
            .any(|t| matches!(t.dest, Some(Dest::Udp { .. })))
    }

    fn deadline(&self) -> Instant {
        let s = &self.session;
        s.started
            + Duration::from_millis(s.activity.load(Ordering::Relaxed))
            + s.config.session_timeout
    }
}

impl Output for PlayOutput<'_> {
    fn subscription(&self) -> Option<&Subscription> {
        self.session.player.as_ref().map(|p| &p.sub)
    }

    fn send_frames(&mut self, frames: &mut Vec<Arc<Frame>>, out: &mut OutQueue) {
        let taken = std::mem::take(frames);
        self.session.send(taken, out);
    }

    fn handle_input(
        &mut self,
        input: &mut BytesMut,
        _now: Instant,
        out: &mut OutQueue,
    ) -> Result<Flow, ConnError> {
        if !self.input_pending.is_empty() {
            let mut pending = std::mem::take(&mut self.input_pending);
            pending.extend_from_slice(input);
            *input = pending;
        }
        let limits = Limits::default();
        while let Some(m) = message::decode(input, &limits).map_err(parse_error)? {
            match m {
                Message::Request(req) => {
                    let resp = self.session.handle_playing(&req);
                    let mut b = BytesMut::new();
                    resp.encode(&mut b);
                    out.put_bytes(b.freeze());
                }
                // RTCP receiver reports over TCP: a sign of life.
                Message::Data { .. } => self.session.touch(),
                Message::Response(_) => {}
            }
        }
        if input.len() > MAX_INPUT {
            return Err(err(ErrorReason::BufferFull, "input over the limit"));
        }
        Ok(Flow::Continue)
    }

    fn report(&mut self) {
        if let Some(p) = &mut self.session.player {
            p.report_drops();
        }
    }

    fn poll_stop(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.session.torn_down {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        // TCP players are judged by their socket (egress write timeout, queue budget); a
        // UDP player is only seen through its RTCP and requests.
        self.udp().then(|| self.deadline())
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), ConnError> {
        if self.udp() && now >= self.deadline() {
            return Err(err(
                ErrorReason::SessionTimeout,
                "no RTCP or request in time",
            ));
        }
        Ok(())
    }
}
