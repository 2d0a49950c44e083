//! One WebRTC session: a tokio task that owns its `str0m::Rtc`, feeds it the datagrams the
//! front routed here and its timeouts, sends what it outputs on the shared UDP socket, and
//! moves media between it and the hub.
//!
//! WHEP (play): frames from the subscription (which starts with the cached GOP, so the
//! viewer starts on a keyframe at once) go out as H.264 or AV1 RTP payloads (str0m's RTP
//! mode: packetized once per frame by the first viewer to send it, kept with the frame and
//! shared by every viewer, so a viewer's own work is SRTP and its send history), RTP
//! timestamp = PTS
//! (DTS + composition offset; frames stay in decode order, which is what browsers' H.264
//! receivers expect with B-frames), and Opus packets (the source's, or its AAC transcoded).
//! A PLI/FIR from the viewer is counted and answered by the next keyframe of the source:
//! resending the cached keyframe out of order would break the reference chain of the
//! frames in flight, and the hub's GOP cache already bounds the wait to one GOP.
//!
//! WHIP (publish): depacketized H.264 access units become AVCC frames (a sequence header
//! from SPS/PPS first), Opus packets E-RTMP Opus, timestamped by prism-webrtc's track
//! clocks, lined up by the publisher's RTCP sender reports once they come. Until the first keyframe, the publisher is asked for one (PLI) every
//! [`KEYFRAME_REQUEST_EVERY`].
//!
//! The session ends on `DELETE`, when the peer closes DTLS, when a WHEP viewer's ICE
//! consent expires (RFC 7675: `[webrtc] consent_timeout_ms`, 30 s by default, without a
//! STUN binding request from the peer naming the session, whatever else it sends:
//! Chromium checks every 2.5 s), when no datagram at all came for [`PUBLISHER_IDLE_TIMEOUT`] from a publisher
//! (whose media flows all the time), when ICE does not complete within
//! [`CONNECT_TIMEOUT`], or when its stream ends.
//!
//! Consent is what Prism needs to send media: WHIP publishers, to which Prism sends only
//! RTCP, are not held to it (FFmpeg 8's whip muxer sends binding requests during ICE and
//! never again: measured), their media is their liveness.
//! Consent is taken from binding requests carrying the session's ufrag (which only the
//! peer learnt, from the answer) that str0m took without error; str0m checks their
//! MESSAGE-INTEGRITY itself and answers only good ones.

use crate::table::{Datagram, Entry, Slot, Table};
use crate::udp::SendBatch;
use prism_hub::{FrameKind, RecvStatus};
use prism_relay::{Player, Publisher, Relay};
use prism_webrtc::av1::{self, Av1Egress};
use prism_webrtc::clock::{to_rtp, SyncOrigin, TrackClock, Unwrap32};
use prism_webrtc::h264::{AvcEgress, AvcIngest};
use prism_webrtc::opus;
use prism_webrtc::rtp::RtpFrame;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::format::{Codec, CodecSpec};
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::mpsc;
use tracing::{debug, info};

/// A WHIP publisher sends media continuously: this long without a datagram, it is gone.
/// Shorter than the consent bound so that its stream's reconnect grace starts soon and a
/// publisher coming back is not refused as a duplicate for long.
pub(crate) const PUBLISHER_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// ICE and DTLS must complete within this after the answer.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a WHIP publisher is asked for a keyframe while none has arrived.
const KEYFRAME_REQUEST_EVERY: Duration = Duration::from_millis(500);
/// Browsers send a keyframe only at start and on request: a WHIP publisher is asked for
/// one this often, so HLS can cut segments and RTMP players joining get a short GOP.
const KEYFRAME_INTERVAL: Duration = Duration::from_secs(2);
/// Hub frames taken per wake-up (bytes).
const BATCH_BYTES: usize = 256 * 1024;
/// str0m's buffers, in packets: RTP kept per video / audio stream for retransmission on a
/// NACK (WHEP), and held per video / audio stream to put received packets back in order
/// (WHIP). The video send history is sized per viewer by [`send_buffer_video`]; 1000
/// (str0m's default) is its ceiling.
pub(crate) const SEND_BUFFER_VIDEO: usize = 1000;
pub(crate) const SEND_BUFFER_AUDIO: usize = 50;
/// The least video send history, in packets: a keyframe of a low-rate stream fits.
pub(crate) const SEND_BUFFER_VIDEO_MIN: usize = 128;
/// How much of the stream a WHEP viewer's video send history keeps. A retransmission
/// older than this is of no use to a low-latency player (libwebrtc's sender keeps
/// max(1 s, 3 × RTT) of history for the same reason).
const SEND_HISTORY: Duration = Duration::from_secs(1);
pub(crate) const REORDER_VIDEO: usize = 30;
pub(crate) const REORDER_AUDIO: usize = 15;
/// A full video packet's payload, rounded up from [`RTP_PAYLOAD_MAX`], for sizing the send
/// history.
const RTP_PAYLOAD: usize = 1200;
/// The largest video RTP payload Prism packetizes: what str0m's own packetizer uses with
/// its default MTU (1150 less the 16-byte SRTP tag, rounded down to the AES block), so
/// datagrams stay the size they were.
const RTP_PAYLOAD_MAX: usize = (str0m::DATAGRAM_MTU_TARGET - 16) / 16 * 16;
/// What str0m keeps per packet in a viewer's send history besides the payload, which is
/// shared by all viewers and charged once, with its frame.
const RTP_PACKET_OVERHEAD: usize = 256;

/// The video send history for a viewer of a stream that has carried `bytes_in` over
/// `uptime`: [`SEND_HISTORY`] of it at that mean rate, in [`RTP_PAYLOAD`]-sized packets,
/// within [`SEND_BUFFER_VIDEO_MIN`]..=[`SEND_BUFFER_VIDEO`]. str0m's default keeps the packets
/// sent in the last 3 s, up to 1000 (3 s is 625 packets at 2 Mbit/s): with it a viewer
/// held about 1.4 MB, with this about 1.0 MB (300 viewers of a 2 Mbit/s stream). This is
/// str0m's retransmission cache only; packets waiting to be sent are queued apart, so a
/// keyframe larger than the history is still sent whole.
pub(crate) fn send_buffer_video(bytes_in: u64, uptime: Duration) -> usize {
    let secs = uptime.as_secs_f64();
    if secs < 1.0 {
        // Too early to know the rate: the ceiling.
        return SEND_BUFFER_VIDEO;
    }
    let packets = bytes_in as f64 / secs * SEND_HISTORY.as_secs_f64() / RTP_PAYLOAD as f64;
    (packets.ceil() as usize).clamp(SEND_BUFFER_VIDEO_MIN, SEND_BUFFER_VIDEO)
}

/// What a session holds in media, charged to the memory budget's `webrtc` pool: the
/// datagrams queued for the task (at most [`crate::table::QUEUE`]) and an estimate of
/// str0m's buffers, which it does not report. The estimate counts what str0m was given
/// and keeps at most its configured packet counts of it: for WHEP the send buffers
/// (the last [`SEND_BUFFER_VIDEO`] video packets, [`RTP_PACKET_OVERHEAD`] each — their
/// payloads are shared by the stream's viewers and charged with their frames — or all
/// video packets written if fewer, plus the last [`SEND_BUFFER_AUDIO`] Opus packets at
/// their mean size), for WHIP the reorder buffers ([`REORDER_VIDEO`] +
/// [`REORDER_AUDIO`] packets at the mean size of the datagrams received, or all received
/// if fewer). An upper bound in steady state (str0m frees a packet once it is
/// acknowledged or pushed out), re-measured once per wake-up.
#[derive(Default)]
struct MemEstimate {
    /// The session's video send history, in packets (0: [`SEND_BUFFER_VIDEO`]).
    send_video_packets: usize,
    rx_packets: u64,
    rx_bytes: u64,
    video_bytes: u64,
    audio_packets: u64,
    audio_bytes: u64,
}

impl MemEstimate {
    /// A datagram taken off the session's queue.
    fn received(&mut self, entry: &Entry, len: usize) {
        entry
            .queued
            .fetch_sub(len, std::sync::atomic::Ordering::Relaxed);
        self.rx_packets += 1;
        self.rx_bytes += len as u64;
    }

    fn str0m_bytes(&self) -> usize {
        let mean = |bytes: u64, packets: u64| bytes.checked_div(packets).unwrap_or(0);
        let history = match self.send_video_packets {
            0 => SEND_BUFFER_VIDEO,
            n => n,
        };
        let video = self.video_bytes.min((history * RTP_PACKET_OVERHEAD) as u64);
        let audio = self.audio_packets.min(SEND_BUFFER_AUDIO as u64)
            * mean(self.audio_bytes, self.audio_packets);
        let rx = self.rx_packets.min((REORDER_VIDEO + REORDER_AUDIO) as u64)
            * mean(self.rx_bytes, self.rx_packets);
        usize::try_from(video + audio + rx).unwrap_or(usize::MAX)
    }
}

pub(crate) enum Role {
    Play(Player),
    Publish(Publisher),
}

pub(crate) struct Session {
    pub rtc: Rtc,
    pub socket: Arc<crate::udp::MediaSocket>,
    /// The candidate address datagrams are taken to have arrived at.
    pub local: SocketAddr,
    pub rx: mpsc::Receiver<Datagram>,
    pub entry: Arc<Entry>,
    pub slot: Slot,
    pub role: Role,
    pub relay: Arc<Relay>,
    pub table: Arc<Table>,
    pub label: String,
    pub direction: prism_webrtc::signal::Direction,
    /// ICE consent lifetime (`consent_timeout_ms`).
    pub consent_timeout: Duration,
    /// The `webrtc` pool's charge for this session (see [`MemEstimate`]).
    pub mem: prism_mem::MemCharge,
    /// str0m's video send history, in packets (WHEP; see [`send_buffer_video`]).
    pub send_video_packets: usize,
}

/// Cumulative RTCP counters of one media as last seen, to export deltas.
#[derive(Default)]
struct Seen {
    plis: u64,
    nacks: u64,
    lost: u64,
    packets: u64,
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    Deleted,
    PeerClosed,
    ConsentExpired,
    ConnectTimeout,
    StreamEnded,
    TooSlow,
    Kicked,
    ShuttingDown,
    // Read through `Debug`, in the session's end log line.
    #[allow(dead_code)]
    Rtc(String),
}

struct Media {
    video: Option<(Mid, Pt)>,
    /// The video media's AV1 payload type, when the viewer offered AV1 (WHEP of an AV1
    /// source; H.264 sources go on `video`'s type).
    video_av1: Option<Pt>,
    audio: Option<(Mid, Pt)>,
    connected: bool,
}

struct PlayState {
    avc: AvcEgress,
    av1: Av1Egress,
    /// Logged once: the source is AV1 and this viewer cannot take it.
    av1_refused_logged: bool,
    /// The next RTP sequence numbers.
    video_seq: SeqNo,
    audio_seq: SeqNo,
    ts: Unwrap32,
    /// Session start: hub time `base.1` ms was sent at wall-clock `base.0`.
    base: Option<(Instant, u64)>,
    waiting_keyframe: bool,
    non_opus_audio: u64,
    b_frames_logged: bool,
    asked_keyframe: bool,
    /// AAC (what RTMP and SRT encoders send) → Opus: the relay's transcoder for this
    /// stream, one for all its viewers (prism-audio, about 56 ms added, mostly the AAC
    /// decoder's delay; output clocked by sample counts and shifted back by the codecs'
    /// delay, so it stays in sync with the video). `None` for a publishing session.
    audio: Option<prism_relay::audio::AudioView>,
    frames: Vec<Arc<prism_hub::Frame>>,
}

struct PublishState {
    avc: AvcIngest,
    video_clock: TrackClock,
    audio_clock: TrackClock,
    /// Sender wall clock ↔ session time, from the publisher's first RTCP sender report.
    sync: SyncOrigin,
    audio_header_sent: bool,
    last_keyframe_request: Option<Instant>,
    /// A viewer asked for a keyframe since the last request.
    force_keyframe: bool,
}

impl Session {
    pub async fn run(mut self) {
        let start = Instant::now();
        let _in_flight = self
            .relay
            .track(|| format!("webrtc session {}", self.label));
        let conn = self.relay.connection_metrics(crate::TRANSPORT);
        conn.accepted.inc();
        conn.active.inc();
        let mut media = Media {
            video: None,
            video_av1: None,
            audio: None,
            connected: false,
        };
        let mut play = PlayState {
            avc: AvcEgress::new(),
            av1: Av1Egress::new(),
            av1_refused_logged: false,
            video_seq: random_seq(),
            audio_seq: random_seq(),
            ts: Unwrap32::new(),
            base: None,
            waiting_keyframe: true,
            non_opus_audio: 0,
            b_frames_logged: false,
            asked_keyframe: false,
            audio: match &self.role {
                Role::Play(p) => Some(self.relay.opus_audio(p.sub.stream())),
                Role::Publish(_) => None,
            },
            frames: Vec::new(),
        };
        let mut publish = PublishState {
            avc: AvcIngest::new(),
            video_clock: TrackClock::new(90_000),
            audio_clock: TrackClock::new(opus::RTP_RATE),
            sync: None,
            audio_header_sent: false,
            last_keyframe_request: None,
            force_keyframe: false,
        };
        let mut last_rx = start;
        let metrics = self
            .relay
            .webrtc_metrics(&self.label, self.direction.as_str());
        metrics.sessions.inc();
        let mut seen: std::collections::HashMap<Mid, Seen> = Default::default();
        let wanted = match &self.role {
            Role::Publish(_) => Some(self.table.register_publisher(&self.label)),
            Role::Play(_) => None,
        };
        let idle_timeout = match self.role {
            Role::Publish(_) => PUBLISHER_IDLE_TIMEOUT.min(self.consent_timeout),
            Role::Play(_) => self.consent_timeout,
        };
        let mut last_consent = start;
        let needs_consent = matches!(self.role, Role::Play(_));
        let mut estimate = MemEstimate {
            send_video_packets: self.send_video_packets,
            ..MemEstimate::default()
        };
        let end = loop {
            self.mem.track(
                self.entry.queued.load(std::sync::atomic::Ordering::Relaxed)
                    + estimate.str0m_bytes(),
            );
            let deadline = match self.drain(&mut media, &mut publish, start, &mut seen, &metrics) {
                Ok(d) => d,
                Err(e) => break e,
            };
            let now = Instant::now();
            if !media.connected && now.duration_since(start) > CONNECT_TIMEOUT {
                break End::ConnectTimeout;
            }
            if now.duration_since(last_rx) > idle_timeout {
                break End::ConsentExpired;
            }
            if needs_consent
                && media.connected
                && now.duration_since(last_consent) > self.consent_timeout
            {
                break End::ConsentExpired;
            }
            if let Role::Publish(_) = &self.role {
                self.request_keyframe(&media, &mut publish, now);
            }
            let wake = deadline
                .min(last_rx + idle_timeout)
                .min(last_consent + self.consent_timeout)
                .min(now + KEYFRAME_REQUEST_EVERY);
            let pull = media.connected && media.video.is_some();
            tokio::select! {
                _ = self.entry.close.notified() => break End::Deleted,
                _ = self.relay.closing() => break End::ShuttingDown,
                d = self.rx.recv() => {
                    let Some(d) = d else { break End::Deleted };
                    last_rx = d.at;
                    estimate.received(&self.entry, d.data.len());
                    if self.input(d) {
                        last_consent = last_rx;
                    }
                    // Take whatever else is queued before polling output again.
                    while let Ok(d) = self.rx.try_recv() {
                        last_rx = d.at;
                        estimate.received(&self.entry, d.data.len());
                        if self.input(d) {
                            last_consent = last_rx;
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
                        break End::Rtc(e.to_string());
                    }
                }
                status = recv_frames(&self.role, &mut play.frames), if pull => {
                    match status {
                        RecvStatus::Frames => self.send_frames(&media, &mut play, &mut estimate),
                        RecvStatus::Ended => break End::StreamEnded,
                        RecvStatus::TooSlow => break End::TooSlow,
                    }
                }
                _ = kicked(&self.role) => break End::Kicked,
                _ = keyframe_wanted(wanted.as_deref()) => {
                    // A viewer is waiting: ask now, whatever the interval.
                    publish.last_keyframe_request = None;
                    publish.force_keyframe = true;
                }
            }
        };
        if let Some(n) = &wanted {
            self.table.forget_publisher(&self.label, n);
        }
        conn.active.dec();
        metrics.sessions.dec();
        let Session {
            mut rtc,
            socket,
            role,
            label,
            relay,
            entry,
            slot,
            ..
        } = self;
        // Tell the peer (DTLS close_notify, RTCP BYE) when it may still listen.
        if !matches!(end, End::PeerClosed | End::ConsentExpired | End::Rtc(_)) {
            rtc.disconnect();
            let mut batch = SendBatch::default();
            while let Ok(Output::Transmit(t)) = rtc.poll_output() {
                batch.push(&socket, t.destination, &t.contents);
            }
            batch.flush(&socket);
        }
        match &end {
            End::ConsentExpired | End::ConnectTimeout => relay
                .connection_error(crate::TRANSPORT, prism_metrics::ErrorReason::SessionTimeout)
                .inc(),
            End::TooSlow => relay
                .connection_error(crate::TRANSPORT, prism_metrics::ErrorReason::TooSlow)
                .inc(),
            _ => {}
        }
        match role {
            Role::Play(mut player) => {
                player.report_drops();
                info!(transport = crate::TRANSPORT, stream = %label, ?end, skipped_audio = play.non_opus_audio, "WHEP session ended");
            }
            Role::Publish(publisher) => {
                info!(transport = crate::TRANSPORT, stream = %label, ?end, "WHIP session ended");
                match end {
                    // The publisher said it is done: end the stream now. Otherwise the
                    // stream's reconnect grace window starts (dropping the publisher).
                    End::Deleted | End::PeerClosed | End::ShuttingDown => publisher.unpublish(),
                    _ => drop(publisher),
                }
            }
        }
        drop(entry);
        drop(slot);
    }

    /// Feeds a datagram to the Rtc; true if it renews ICE consent.
    fn input(&mut self, d: Datagram) -> bool {
        // A binding request (type 0x0001) naming this session's ufrag.
        let consent = d.data.get(..2) == Some(&[0, 1])
            && prism_webrtc::demux::stun_local_ufrag(&d.data) == Some(self.entry.ufrag.as_str());
        let Ok(contents) = d.data.as_slice().try_into() else {
            return false;
        };
        let input = Input::Receive(
            d.at,
            Receive {
                proto: Protocol::Udp,
                source: d.from,
                destination: self.local,
                contents,
            },
        );
        // Garbage from a known address is the peer's problem, not a reason to end.
        match self.rtc.handle_input(input) {
            Ok(()) => consent,
            Err(e) => {
                debug!(stream = %self.label, "webrtc input refused: {e}");
                false
            }
        }
    }

    /// Sends what the Rtc wants sent and handles its events, until it asks to be woken.
    fn drain(
        &mut self,
        media: &mut Media,
        publish: &mut PublishState,
        start: Instant,
        seen: &mut std::collections::HashMap<Mid, Seen>,
        metrics: &prism_metrics::WebrtcMetrics,
    ) -> Result<Instant, End> {
        // Flushed before returning: its bytes live in this worker thread's buffer.
        let mut batch = SendBatch::default();
        loop {
            let out = self
                .rtc
                .poll_output()
                .map_err(|e| End::Rtc(e.to_string()))?;
            match out {
                Output::Timeout(t) => {
                    batch.flush(&self.socket);
                    return Ok(t);
                }
                Output::Transmit(t) => batch.push(&self.socket, t.destination, &t.contents),
                Output::Event(Event::MediaEgressStats(st)) => {
                    // Viewers' reports of what Prism sent (WHEP).
                    let s = seen.entry(st.mid).or_default();
                    metrics.plis.inc_by(st.plis.saturating_sub(s.plis));
                    metrics.nacks.inc_by(st.nacks.saturating_sub(s.nacks));
                    if let Some(r) = &st.remote {
                        metrics
                            .packets_lost
                            .inc_by(r.packets_lost.saturating_sub(s.lost));
                        s.lost = s.lost.max(r.packets_lost);
                    }
                    (s.plis, s.nacks) = (s.plis.max(st.plis), s.nacks.max(st.nacks));
                    if let Some(rtt) = st.rtt {
                        metrics.rtt_seconds.set(rtt.as_secs_f64());
                    }
                }
                Output::Event(Event::MediaIngressStats(st)) => {
                    // What Prism asked of the publisher (WHIP); losses are estimated from
                    // the loss fraction of its receiver reports.
                    let s = seen.entry(st.mid).or_default();
                    metrics.plis.inc_by(st.plis.saturating_sub(s.plis));
                    metrics.nacks.inc_by(st.nacks.saturating_sub(s.nacks));
                    let fresh = st.packets.saturating_sub(s.packets);
                    if let Some(loss) = st.loss {
                        metrics
                            .packets_lost
                            .inc_by((f64::from(loss.clamp(0.0, 1.0)) * fresh as f64).round() as u64);
                    }
                    (s.plis, s.nacks) = (s.plis.max(st.plis), s.nacks.max(st.nacks));
                    s.packets = s.packets.max(st.packets);
                    if let Some(rtt) = st.rtt {
                        metrics.rtt_seconds.set(rtt.as_secs_f64());
                    }
                }
                Output::Event(Event::PeerStats(st)) => {
                    if let Some(rtt) = st.rtt {
                        metrics.rtt_seconds.set(rtt.as_secs_f64());
                    }
                }
                Output::Event(e) => self.event(e, media, publish, start)?,
            }
        }
    }

    fn event(
        &mut self,
        e: Event,
        media: &mut Media,
        publish: &mut PublishState,
        start: Instant,
    ) -> Result<(), End> {
        match e {
            Event::Connected => {
                media.connected = true;
                debug!(stream = %self.label, "webrtc connected");
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                return Err(End::ConsentExpired)
            }
            Event::Closed => return Err(End::PeerClosed),
            Event::MediaAdded(m) => {
                let pt = match m.kind {
                    MediaKind::Video => self.find_pt(m.mid, |s| {
                        s.codec == Codec::H264 && s.format.packetization_mode == Some(1)
                    }),
                    MediaKind::Audio => self.find_pt(m.mid, |s| s.codec == Codec::Opus),
                };
                match (m.kind, pt) {
                    (MediaKind::Video, Some(pt)) if media.video.is_none() => {
                        media.video = Some((m.mid, pt));
                        media.video_av1 = self.find_pt(m.mid, |s| s.codec == Codec::Av1);
                    }
                    (MediaKind::Audio, Some(pt)) if media.audio.is_none() => {
                        media.audio = Some((m.mid, pt))
                    }
                    _ => {}
                }
            }
            Event::KeyframeRequest(_) => {
                // Answered by the source's next keyframe (sooner if it is a WHIP publisher,
                // which is asked for one).
                self.table.want_keyframe(&self.label);
            }
            Event::MediaData(d) => {
                let Role::Publish(publisher) = &self.role else {
                    return Ok(());
                };
                let arrival = d.network_time.saturating_duration_since(start).as_millis() as u64;
                let rtp = d.time.numer() as u32;
                // RTCP sender reports place both tracks on the publisher's wall clock.
                let report = d.last_sender_info.map(|sr| {
                    let wall = sr
                        .ntp_time
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |t| t.as_millis() as u64);
                    (sr.rtp_time.numer() as u32, wall)
                });
                if media.video.is_some_and(|(mid, _)| mid == d.mid) {
                    if let Some((r, wall)) = report {
                        publish.video_clock.sender_report(r, wall);
                    }
                    let ts = publish
                        .video_clock
                        .map_synced(rtp, arrival, &mut publish.sync)
                        as u32;
                    let out = publish.avc.push(&d.data);
                    if let Some(h) = out.header {
                        publisher.send(FrameKind::Video, ts, h.into());
                    }
                    if let Some((f, _)) = out.frame {
                        publisher.send(FrameKind::Video, ts, f.into());
                    }
                } else if media.audio.is_some_and(|(mid, _)| mid == d.mid) {
                    if let Some((r, wall)) = report {
                        publish.audio_clock.sender_report(r, wall);
                    }
                    let ts = publish
                        .audio_clock
                        .map_synced(rtp, arrival, &mut publish.sync)
                        as u32;
                    if !publish.audio_header_sent {
                        publisher.send(FrameKind::Audio, ts, opus::sequence_header(2).into());
                        publish.audio_header_sent = true;
                    }
                    if let Some(f) = opus::frame(&d.data) {
                        publisher.send(FrameKind::Audio, ts, f.into());
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The first payload type of a media whose codec `wanted` accepts: what is sent (or
    /// expected) there.
    fn find_pt(&mut self, mid: Mid, wanted: impl Fn(&CodecSpec) -> bool) -> Option<Pt> {
        // What `Writer::payload_params` gives, which RTP mode has no writer for.
        let remote = self.rtc.media(mid)?.remote_pts();
        self.rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| remote.contains(&p.pt()) && wanted(&p.spec()))
            .map(|p| p.pt())
    }

    fn request_keyframe(&mut self, media: &Media, publish: &mut PublishState, now: Instant) {
        if !media.connected {
            return;
        }
        let every = if publish.avc.needs_keyframe() || publish.force_keyframe {
            KEYFRAME_REQUEST_EVERY
        } else {
            KEYFRAME_INTERVAL
        };
        if publish
            .last_keyframe_request
            .is_some_and(|t| now.duration_since(t) < every)
        {
            return;
        }
        publish.force_keyframe = false;
        let Some((mid, _)) = media.video else { return };
        if let Some(mut w) = self.rtc.writer(mid) {
            if w.is_request_keyframe_possible(KeyframeRequestKind::Pli) {
                let _ = w.request_keyframe(None, KeyframeRequestKind::Pli);
                publish.last_keyframe_request = Some(now);
            }
        }
    }

    /// A viewer starts on a keyframe: until one comes, frames are skipped and the source is
    /// asked for one (once).
    fn video_may_start(&self, play: &mut PlayState, keyframe: bool) -> bool {
        if play.waiting_keyframe && !keyframe {
            if !play.asked_keyframe {
                self.table.want_keyframe(&self.label);
                play.asked_keyframe = true;
            }
            return false;
        }
        play.waiting_keyframe = false;
        true
    }

    fn log_b_frames(&self, play: &mut PlayState, cts_ms: i32) {
        if cts_ms != 0 && !play.b_frames_logged {
            // Measured with Chromium 1xx: its H.264 receiver decodes only the keyframes of
            // a stream with B-frames (and sends PLIs), whether RTP time is PTS or DTS.
            // Nothing here can fix that short of transcoding.
            info!(stream = %self.label, "source video has B-frames: browsers decode only its keyframes over WebRTC; publish without B-frames (x264 bframes=0) for WHEP");
            play.b_frames_logged = true;
        }
    }

    /// Hands str0m the RTP payloads of one access unit presented at hub time `pts` ms,
    /// the marker bit on the last.
    fn write_rtp_video(
        &mut self,
        play: &mut PlayState,
        (mid, pt): (Mid, Pt),
        pts: u64,
        au: &RtpFrame,
        estimate: &mut MemEstimate,
    ) {
        let wall = wallclock(&mut play.base, pts);
        let time = to_rtp(pts, 90_000) as u32;
        estimate.video_bytes += (au.payloads.len() * RTP_PACKET_OVERHEAD) as u64;
        if let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(mid, None) {
            write_payloads(tx, pt, &mut play.video_seq, (time, wall), &au.payloads);
        }
    }

    fn send_frames(&mut self, media: &Media, play: &mut PlayState, estimate: &mut MemEstimate) {
        let mut frames = std::mem::take(&mut play.frames);
        if let Some(audio) = &mut play.audio {
            let aac = frames
                .iter()
                .filter(|f| f.kind == FrameKind::Audio && !f.sequence_header)
                .filter(|f| {
                    prism_audio::audio_codec(&f.payload) == Some(prism_audio::AudioCodec::Aac)
                })
                .count();
            audio.convert(&mut frames);
            if aac > 0 && play.non_opus_audio == 0 {
                info!(stream = %self.label, "source audio is AAC: transcoded to Opus for WHEP (once per stream)");
            }
            play.non_opus_audio += aac as u64;
        }
        for f in &frames {
            let dts = play.ts.unwrap(f.timestamp);
            match f.kind {
                FrameKind::Video => {
                    let is_av1 = av1::is_av1(&f.payload);
                    let shared = if is_av1 {
                        let (ready, e) = (play.av1.ready(), &mut play.av1);
                        shared_rtp(f, ready, || e.push_rtp(&f.payload, RTP_PAYLOAD_MAX))
                    } else {
                        let (ready, e) = (play.avc.ready(), &mut play.avc);
                        shared_rtp(f, ready, || e.push_rtp(&f.payload, RTP_PAYLOAD_MAX))
                    };
                    let Some(frame) = shared else {
                        continue;
                    };
                    let pt = if is_av1 {
                        media.video_av1
                    } else {
                        media.video.map(|v| v.1)
                    };
                    let (Some((mid, _)), Some(pt)) = (media.video, pt) else {
                        if is_av1 && !play.av1_refused_logged {
                            info!(stream = %self.label, "source video is AV1 and this viewer did not offer AV1: audio only");
                            play.av1_refused_logged = true;
                        }
                        continue;
                    };
                    if !self.video_may_start(play, frame.keyframe) {
                        continue;
                    }
                    // AV1 has no B-frame reordering in E-RTMP (its offset is 0).
                    self.log_b_frames(play, frame.cts_ms);
                    let pts = dts.saturating_add_signed(i64::from(frame.cts_ms));
                    self.write_rtp_video(play, (mid, pt), pts, &frame, estimate);
                }
                FrameKind::Audio => {
                    let Some((mid, pt)) = media.audio else {
                        continue;
                    };
                    if play.waiting_keyframe {
                        continue;
                    }
                    // AAC came through the stream's transcoder above (each Opus packet at
                    // its own time, shifted by the codecs' delay); other codecs are dropped.
                    let opus::Audio::OpusPacket(p) = opus::classify(&f.payload) else {
                        continue;
                    };
                    let wall = wallclock(&mut play.base, dts);
                    let ticks = to_rtp(dts, opus::RTP_RATE);
                    estimate.audio_packets += 1;
                    estimate.audio_bytes += p.len() as u64;
                    let write = RtpWrite::new(pt, play.audio_seq.inc(), ticks as u32, wall, p);
                    if let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(mid, None) {
                        tx.write_rtp(write);
                    }
                }
                FrameKind::Data => {}
            }
        }
        play.frames = frames;
        play.frames.clear();
        if let Role::Play(p) = &mut self.role {
            p.report_drops();
        }
    }
}

/// One access unit's payloads into a send stream: consecutive sequence numbers from `seq`,
/// one RTP time, the marker bit on the last, all kept for retransmission on a NACK.
fn write_payloads(
    tx: &mut str0m::rtp::StreamTx,
    pt: Pt,
    seq: &mut SeqNo,
    (time, wall): (u32, Instant),
    payloads: &[Arc<[u8]>],
) {
    let last = payloads.len().saturating_sub(1);
    for (i, p) in payloads.iter().enumerate() {
        let write = RtpWrite::new(pt, seq.inc(), time, wall, p.clone())
            .marker(i == last)
            .nackable(true);
        tx.write_rtp(write);
    }
}

/// A coded frame's RTP payloads, packetized by the first viewer that sends it.
struct SharedRtp(Option<RtpFrame>);

/// The RTP payloads of video frame `f` for a viewer whose packetizer state (the codec's
/// sequence header) is `ready` and which `packetize` runs: the stream's shared
/// packetization (one per frame for all viewers, kept with the frame and charged to it),
/// computed here if this viewer is the first. The payloads depend only on the frame and
/// the sequence header before it, which every viewer of the stream has seen (its
/// subscription starts with it). None for a sequence header (taken into the viewer's
/// packetizer state) and for what has nothing to send; owned only if the frame's egress
/// slots were all taken by other kinds.
fn shared_rtp(
    f: &prism_hub::Frame,
    ready: bool,
    mut packetize: impl FnMut() -> Option<RtpFrame>,
) -> Option<Cow<'_, RtpFrame>> {
    if f.sequence_header || !ready {
        // Updates the sequence header (a viewer without one sends nothing yet).
        let _ = packetize();
        return None;
    }
    let cached = f.wire.get_or_init(|| {
        let frame = packetize();
        let bytes = frame
            .as_ref()
            .map_or(0, |fr| fr.payloads.iter().map(|p| p.len()).sum());
        f.mem.grow(bytes);
        SharedRtp(frame)
    });
    match cached {
        Some(SharedRtp(frame)) => frame.as_ref().map(Cow::Borrowed),
        None => packetize().map(Cow::Owned),
    }
}

/// A random first RTP sequence number (RFC 3550 5.1), with a rollover count of 0 (the
/// peer assumes that of a stream's first packet).
fn random_seq() -> SeqNo {
    use std::hash::BuildHasher;
    let n = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    SeqNo::from(n & 0xFFFF)
}

/// The wall-clock instant of hub time `ms` (for RTCP sender reports): the first frame sent
/// anchors hub time to now.
fn wallclock(base: &mut Option<(Instant, u64)>, ms: u64) -> Instant {
    let (at, t0) = *base.get_or_insert((Instant::now(), ms));
    if ms >= t0 {
        at + Duration::from_millis(ms - t0)
    } else {
        at.checked_sub(Duration::from_millis(t0 - ms)).unwrap_or(at)
    }
}

async fn recv_frames(role: &Role, out: &mut Vec<Arc<prism_hub::Frame>>) -> RecvStatus {
    match role {
        Role::Play(p) => p.sub.recv(out, BATCH_BYTES).await,
        Role::Publish(_) => std::future::pending().await,
    }
}

async fn keyframe_wanted(n: Option<&tokio::sync::Notify>) {
    match n {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

async fn kicked(role: &Role) {
    match role {
        Role::Publish(p) => p.kicked().await,
        Role::Play(_) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_viewers_send_history_is_about_a_second_of_its_stream() {
        let s = Duration::from_secs;
        // 2 Mbit/s for a minute: 250 kB/s, 209 packets of 1200 bytes.
        assert_eq!(send_buffer_video(250_000 * 60, s(60)), 209);
        // A fast stream hits the ceiling, a slow one the floor.
        assert_eq!(send_buffer_video(2_000_000 * 60, s(60)), SEND_BUFFER_VIDEO);
        assert_eq!(send_buffer_video(10_000 * 60, s(60)), SEND_BUFFER_VIDEO_MIN);
        // Too early to tell: the ceiling.
        assert_eq!(
            send_buffer_video(0, Duration::from_millis(200)),
            SEND_BUFFER_VIDEO
        );
    }

    #[test]
    fn str0m_estimate_is_capped_by_its_packet_counts() {
        let mut e = MemEstimate::default();
        assert_eq!(e.str0m_bytes(), 0);
        // WHEP: 50 video packets (their payloads are the frames', charged with them) and 10
        // Opus packets of 120 bytes so far: all of it.
        e.video_bytes = (50 * RTP_PACKET_OVERHEAD) as u64;
        (e.audio_packets, e.audio_bytes) = (10, 1200);
        assert_eq!(e.str0m_bytes(), 50 * RTP_PACKET_OVERHEAD + 1200);
        // An hour later: only what the send buffers keep.
        e.video_bytes = 10_000_000_000;
        (e.audio_packets, e.audio_bytes) = (180_000, 180_000 * 120);
        assert_eq!(
            e.str0m_bytes(),
            SEND_BUFFER_VIDEO * RTP_PACKET_OVERHEAD + SEND_BUFFER_AUDIO * 120
        );
        // A viewer with a shorter send history: that much video.
        e.send_video_packets = 200;
        assert_eq!(
            e.str0m_bytes(),
            200 * RTP_PACKET_OVERHEAD + SEND_BUFFER_AUDIO * 120
        );
        // WHIP: the reorder buffers, at the mean datagram size.
        let mut w = MemEstimate::default();
        (w.rx_packets, w.rx_bytes) = (10_000, 10_000 * 1000);
        assert_eq!(w.str0m_bytes(), (REORDER_VIDEO + REORDER_AUDIO) * 1000);
    }

    /// A WHEP-like exchange between two str0m instances in memory, on virtual time: Prism's
    /// side in RTP mode writes one keyframe's shared payloads (their sequence numbers
    /// wrapping), the first IDR fragment is lost on the way, and the viewer (str0m in frame
    /// mode, as a browser's stack) gets the whole access unit once its NACK brings the
    /// retransmission.
    #[test]
    fn a_lost_packet_of_shared_payloads_is_resent_on_nack() {
        use str0m::change::SdpOffer;
        use str0m::media::Direction;
        use str0m::{Candidate, RtcConfig};

        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        let t0 = Instant::now();
        let mut viewer = RtcConfig::new()
            .set_crypto_provider(crypto.clone())
            .clear_codecs()
            .enable_h264(true)
            .build(t0);
        let mut prism = RtcConfig::new()
            .set_crypto_provider(crypto)
            .set_ice_lite(true)
            .clear_codecs()
            .enable_h264(true)
            .set_rtp_mode(true)
            .build(t0);
        let va: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let pa: SocketAddr = "10.0.0.2:6000".parse().unwrap();
        viewer.add_local_candidate(Candidate::host(va, "udp").unwrap());
        prism.add_local_candidate(Candidate::host(pa, "udp").unwrap());
        let mut api = viewer.sdp_api();
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).unwrap();
        let answer = prism.sdp_api().accept_offer(offer).unwrap();
        viewer.sdp_api().accept_answer(pending, answer).unwrap();

        // The keyframe: SPS, PPS, then an IDR in five fragments.
        let mut egress = AvcEgress::new();
        let mut header = vec![0x17, 0, 0, 0, 0, 1, 0x42, 0xc0, 0x0d, 0xff, 0xe1, 0, 4];
        header.extend_from_slice(&[0x67, 0x42, 0xc0, 0x0d, 1, 0, 2, 0x68, 0xce]);
        assert!(egress.push_rtp(&header, RTP_PAYLOAD_MAX).is_none());
        let idr: Vec<u8> = [0x65]
            .into_iter()
            .chain((0..5000).map(|i| (i % 251) as u8 + 1))
            .collect();
        let mut frame = vec![0x17, 1, 0, 0, 0];
        frame.extend_from_slice(&(idr.len() as u32).to_be_bytes());
        frame.extend_from_slice(&idr);
        let au = egress.push_rtp(&frame, RTP_PAYLOAD_MAX).unwrap();
        assert_eq!(au.payloads.len(), 7);
        // 65531 (SPS), 65532 (PPS), 65533 (lost), 65534, 65535, then 0 and 1 after the wrap.
        const FIRST: u64 = 65_531;
        const LOST: u16 = 65_533;

        let mut now = t0;
        let (mut to_viewer, mut to_prism) = (Vec::<Vec<u8>>::new(), Vec::<Vec<u8>>::new());
        let (mut connected, mut mid, mut written, mut lost) = (false, None, false, false);
        let mut viewer_connected = false;
        let received = loop {
            assert!(
                now < t0 + Duration::from_secs(30),
                "no frame by virtual 30 s: connected {connected}, written {written}, lost {lost}"
            );
            let mut got = None;
            let tv = loop {
                match viewer.poll_output().unwrap() {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => to_prism.push(t.contents.to_vec()),
                    Output::Event(Event::MediaData(d)) => got = Some(d.data),
                    Output::Event(Event::Connected) => viewer_connected = true,
                    Output::Event(_) => {}
                }
            };
            let tp = loop {
                match prism.poll_output().unwrap() {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        let d = t.contents.to_vec();
                        // An RTP packet's header (sequence number included) is in clear.
                        let rtp = d.len() > 12 && d[0] >> 6 == 2 && !(200..=206).contains(&d[1]);
                        if rtp && !lost && u16::from_be_bytes([d[2], d[3]]) == LOST {
                            lost = true;
                            continue;
                        }
                        to_viewer.push(d);
                    }
                    Output::Event(Event::Connected) => connected = true,
                    Output::Event(Event::MediaAdded(m)) => mid = Some(m.mid),
                    Output::Event(_) => {}
                }
            };
            if let Some(data) = got {
                break data;
            }
            if let (true, true, Some(mid), false) = (connected, viewer_connected, mid, written) {
                let remote = prism.media(mid).unwrap().remote_pts().to_vec();
                let pt = prism
                    .codec_config()
                    .params()
                    .iter()
                    .find(|p| remote.contains(&p.pt()) && p.spec().codec == Codec::H264)
                    .map(|p| p.pt())
                    .unwrap();
                let mut api = prism.direct_api();
                let tx = api.stream_tx_by_mid(mid, None).unwrap();
                let mut seq = SeqNo::from(FIRST);
                write_payloads(tx, pt, &mut seq, (90_000, now), &au.payloads);
                written = true;
                // str0m takes written packets on its next timeout.
                prism.handle_input(Input::Timeout(now)).unwrap();
                continue;
            }
            if to_viewer.is_empty() && to_prism.is_empty() {
                now = now.max(tv.min(tp));
                viewer.handle_input(Input::Timeout(now)).unwrap();
                prism.handle_input(Input::Timeout(now)).unwrap();
                continue;
            }
            for (rtc, queue, from, to) in [
                (&mut viewer, &mut to_viewer, pa, va),
                (&mut prism, &mut to_prism, va, pa),
            ] {
                for d in queue.drain(..) {
                    let contents = d.as_slice().try_into().unwrap();
                    let r = Receive {
                        proto: Protocol::Udp,
                        source: from,
                        destination: to,
                        contents,
                    };
                    rtc.handle_input(Input::Receive(now, r)).unwrap();
                }
            }
        };
        assert!(lost, "the fragment was not sent");
        // Annex B out of the viewer's depacketizer: SPS, PPS, then the IDR whole.
        assert!(received.ends_with(&idr), "{} bytes", received.len());
        assert!(received.windows(4).any(|w| w == [0x67, 0x42, 0xc0, 0x0d]));
    }
}
