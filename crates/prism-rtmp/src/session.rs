//! Server and client RTMP session state machines.
//!
//! Both follow one vocabulary: `handle_input` takes bytes read from the peer (and the time
//! they were read), then the caller drains `poll_event` until it returns None and writes out
//! whatever [`OutQueue`] holds (`out()`). Commands (`accept_publish`, `send_media`, ...) only
//! append to the out queue.
//!
//! Time is an input too, so the timers live here and tests can run them on a virtual clock:
//! the driver sleeps until [`ServerSession::poll_timeout`] (or the client's) and then calls
//! `handle_timeout(now)`. A timer that expired is reported once, as the `Err` of
//! `handle_timeout` ([`SessionError::HandshakeTimeout`], [`SessionError::IdleTimeout`]);
//! the session is then closed: no more timers, and `handle_input` answers
//! [`SessionError::Closed`]. Nothing here reads a clock.

use crate::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits, PreChunked};
use crate::control::Control;
use crate::handshake::{ClientHandshake, ServerHandshake};
use crate::message::{csid, MessageType, RawMessage};
use crate::OutQueue;
use bytes::{Bytes, BytesMut};
use prism_amf0::Value;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a session was closed: the one error type of a session, for both kinds.
///
/// Every variant but `Closed` is the peer's doing (a timeout is the peer not doing
/// something in time). [`SessionError::reason`] gives a short, stable label for metrics;
/// `Display` gives the detail for logs.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The handshake bytes were unusable (e.g. an unsupported version).
    #[error("handshake: {0}")]
    Handshake(#[from] crate::handshake::HandshakeError),
    /// The chunk stream or a protocol control message broke the rules or our limits.
    #[error("chunk stream: {0}")]
    Chunk(#[from] crate::chunk::ChunkError),
    /// A command or data message is not valid AMF0.
    #[error("malformed AMF0 command: {0}")]
    Amf(#[from] prism_amf0::Amf0Error),
    /// A command message whose first value is not a string.
    #[error("protocol violation: command without a name")]
    CommandWithoutName,
    /// An aggregate message whose sub-message claims more bytes than are left.
    #[error("protocol violation: aggregate sub-message overruns")]
    AggregateOverrun,
    /// A command other than `connect` came before `connect` (server).
    #[error("protocol violation: command {name:?} before connect")]
    CommandBeforeConnect {
        /// The command's name, cut to 32 characters.
        name: String,
    },
    /// `connect` on a connection that is already connected (server).
    #[error("protocol violation: second connect")]
    SecondConnect,
    /// `connect` without an `app` (server).
    #[error("protocol violation: connect without an app")]
    ConnectWithoutApp,
    /// `createStream` beyond [`SessionConfig::max_streams`] (server).
    #[error("protocol violation: too many streams (at most {max})")]
    TooManyStreams { max: u32 },
    /// `publish` or `play` on a message stream that was not created or is already in use
    /// (server).
    #[error("protocol violation: {command} on a stream that was not created or is busy")]
    StreamNotAvailable {
        /// `"publish"` or `"play"`.
        command: &'static str,
        stream_id: u32,
    },
    /// The server's `createStream` result carries no stream id (client).
    #[error("protocol violation: createStream result without a stream id")]
    NoStreamId,
    /// The server answered `_error` or an error-level onStatus (client).
    #[error("connection refused by peer: {code}: {description}")]
    Refused { code: String, description: String },
    /// The handshake and `connect` (server) or the handshake up to publishing (client) did
    /// not complete within [`SessionConfig::handshake_timeout`].
    #[error("handshake or connect did not complete in {0:?}")]
    HandshakeTimeout(Duration),
    /// Nothing arrived for [`SessionConfig::idle_timeout`] from a connected peer that is not
    /// playing (server).
    #[error("no data from peer for {0:?}")]
    IdleTimeout(Duration),
    /// `handle_input` after the session failed (an error was already returned).
    #[error("session already closed")]
    Closed,
}

impl SessionError {
    /// A short label for metrics (`connection_errors_total{reason=...}`), stable across
    /// releases; the `Display` text carries the details.
    pub fn reason(&self) -> &'static str {
        match self {
            SessionError::Handshake(e) => e.reason(),
            SessionError::Chunk(e) => e.reason(),
            SessionError::Amf(_) => "bad_amf",
            SessionError::CommandWithoutName => "command_without_name",
            SessionError::AggregateOverrun => "aggregate_overrun",
            SessionError::CommandBeforeConnect { .. } => "command_before_connect",
            SessionError::SecondConnect => "second_connect",
            SessionError::ConnectWithoutApp => "connect_without_app",
            SessionError::TooManyStreams { .. } => "too_many_streams",
            SessionError::StreamNotAvailable { .. } => "stream_not_available",
            SessionError::NoStreamId => "no_stream_id",
            SessionError::Refused { .. } => "refused",
            SessionError::HandshakeTimeout(_) => "handshake_timeout",
            SessionError::IdleTimeout(_) => "idle_timeout",
            SessionError::Closed => "closed",
        }
    }
}

/// What kind of media a message carries (Data: onMetaData, sent by publishers as
/// `@setDataFrame`). The kind every Prism crate shares, so the relay hands it to the hub
/// and back unconverted; what it means on the RTMP wire is [`MediaKindExt`].
pub use prism_media::MediaKind;

/// RTMP's view of a [`MediaKind`]: an extension trait because the kind is shared and must
/// not know RTMP.
pub trait MediaKindExt {
    /// The chunk stream Prism sends this kind of media on.
    fn csid(self) -> u32;
}

fn message_type(kind: MediaKind) -> MessageType {
    match kind {
        MediaKind::Audio => MessageType::AUDIO,
        MediaKind::Video => MessageType::VIDEO,
        MediaKind::Data => MessageType::DATA_AMF0,
    }
}

impl MediaKindExt for MediaKind {
    fn csid(self) -> u32 {
        match self {
            MediaKind::Audio => csid::AUDIO,
            MediaKind::Video => csid::VIDEO,
            MediaKind::Data => csid::DATA,
        }
    }
}

/// Settings shared by both session kinds.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Chunk size Prism sends with (announced with Set Chunk Size right after the handshake).
    pub chunk_size: u32,
    pub window_ack_size: u32,
    pub limits: DecoderLimits,
    /// Message streams one connection may create.
    pub max_streams: u32,
    /// Server: the handshake and `connect` must be done within this of the session's
    /// start. Client: the handshake up to publishing. Same default as prism-config's
    /// `rtmp.handshake_timeout_ms`.
    pub handshake_timeout: Duration,
    /// Server: a connected peer that is not playing and sends nothing for this long is
    /// dropped (a player legitimately sends almost nothing, so players are exempt). `None`
    /// disables it. The client ignores it. Same default as `rtmp.idle_timeout_ms`.
    pub idle_timeout: Option<Duration>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            limits: DecoderLimits::default(),
            max_streams: 8,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// The chunk layer plus protocol control handling both session kinds share.
#[derive(Debug)]
struct Link {
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    out: OutQueue,
    /// Window the peer asked us to acknowledge by (0 = none).
    peer_window: u32,
    last_ack: u64,
    /// Hand StreamEOF up as a message instead of swallowing it (a playing client needs to
    /// see it in order with the media around it).
    report_stream_eof: bool,
}

impl Link {
    fn new(config: &SessionConfig) -> Self {
        Link {
            decoder: ChunkDecoder::new(config.limits.clone()),
            encoder: ChunkEncoder::new(),
            out: OutQueue::new(),
            peer_window: 0,
            last_ack: 0,
            report_stream_eof: false,
        }
    }

    /// Next non-control message, handling control messages on the way.
    fn next_message(&mut self, input: &mut BytesMut) -> Result<Option<RawMessage>, SessionError> {
        loop {
            let Some(msg) = self.decoder.decode(input)? else {
                return Ok(None);
            };
            self.maybe_ack();
            match Control::parse(&msg)? {
                None => return Ok(Some(msg)),
                Some(Control::WindowAckSize(n)) => self.peer_window = n,
                Some(Control::PingRequest(t)) => self.send_control(Control::PingResponse(t)),
                Some(Control::StreamEof(_)) if self.report_stream_eof => return Ok(Some(msg)),
                // Set Chunk Size and Abort were applied by the decoder; the rest needs no answer.
                Some(_) => {}
            }
        }
    }

    fn maybe_ack(&mut self) {
        let received = self.decoder.bytes_received();
        if self.peer_window > 0 && received - self.last_ack >= self.peer_window as u64 {
            self.last_ack = received;
            self.send_control(Control::Acknowledgement(received as u32));
        }
    }

    fn send_control(&mut self, c: Control) {
        let msg = c.to_message();
        self.encoder.write(csid::CONTROL, &msg, &mut self.out);
    }

    fn send_command(&mut self, stream_id: u32, values: &[Value]) {
        let mut buf = BytesMut::new();
        prism_amf0::encode_all(values, &mut buf);
        let msg = RawMessage {
            timestamp: 0,
            type_id: MessageType::COMMAND_AMF0,
            stream_id,
            payload: buf.freeze(),
        };
        self.encoder.write(csid::COMMAND, &msg, &mut self.out);
    }

    fn send_data(&mut self, stream_id: u32, values: &[Value]) {
        let mut buf = BytesMut::new();
        prism_amf0::encode_all(values, &mut buf);
        let msg = RawMessage {
            timestamp: 0,
            type_id: MessageType::DATA_AMF0,
            stream_id,
            payload: buf.freeze(),
        };
        self.encoder.write(csid::DATA, &msg, &mut self.out);
    }

    fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        self.send_command(
            stream_id,
            &[
                Value::String("onStatus".into()),
                Value::Number(0.0),
                Value::Null,
                Value::object([
                    ("level", Value::String(level.into())),
                    ("code", Value::String(code.into())),
                    ("description", Value::String(description.into())),
                ]),
            ],
        );
    }

    fn send_media(
        &mut self,
        stream_id: u32,
        kind: MediaKind,
        timestamp: u32,
        payload: &Bytes,
        body: Option<&PreChunked>,
    ) {
        let msg = RawMessage {
            timestamp,
            type_id: message_type(kind),
            stream_id,
            payload: payload.clone(),
        };
        match body {
            Some(b) => self
                .encoder
                .write_prechunked(kind.csid(), &msg, b, &mut self.out),
            None => self.encoder.write(kind.csid(), &msg, &mut self.out),
        }
    }
}

/// A command message split into its parts.
struct Command {
    name: String,
    txn: f64,
    args: Vec<Value>,
}

fn parse_command(msg: &RawMessage) -> Result<Option<Command>, SessionError> {
    let body: &[u8] = match msg.type_id {
        MessageType::COMMAND_AMF0 => &msg.payload,
        MessageType::COMMAND_AMF3 => prism_amf0::strip_amf3_prefix(&msg.payload),
        _ => return Ok(None),
    };
    let mut values = prism_amf0::decode_all(body)?.into_iter();
    let name = match values.next() {
        Some(Value::String(s)) => s,
        _ => return Err(SessionError::CommandWithoutName),
    };
    let txn = values.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
    Ok(Some(Command {
        name,
        txn,
        args: values.collect(),
    }))
}

/// Splits `name?query` into its two parts.
fn split_query(name: &str) -> (String, String) {
    match name.split_once('?') {
        Some((k, q)) => (k.to_owned(), q.to_owned()),
        None => (name.to_owned(), String::new()),
    }
}

/// Decodes a data message; `@setDataFrame` wrappers are removed so what is stored and
/// forwarded is the plain `onMetaData` a player expects.
fn parse_metadata(msg: &RawMessage) -> Option<Bytes> {
    let body: &[u8] = if msg.type_id == MessageType::DATA_AMF3 {
        prism_amf0::strip_amf3_prefix(&msg.payload)
    } else {
        &msg.payload
    };
    let mut input = body;
    let first = prism_amf0::decode(&mut input).ok()?;
    match first.as_str()? {
        "@setDataFrame" => {
            let mut rest = input;
            let second = prism_amf0::decode(&mut rest).ok()?;
            if second.as_str()? != "onMetaData" {
                return None;
            }
            let offset = body.len() - input.len();
            if msg.type_id == MessageType::DATA_AMF0 {
                Some(msg.payload.slice(offset..))
            } else {
                Some(Bytes::copy_from_slice(input))
            }
        }
        "onMetaData" => Some(Bytes::copy_from_slice(body)),
        _ => None,
    }
}

/// Splits an aggregate message (type 22: a run of FLV tags) into messages.
fn split_aggregate(msg: &RawMessage, out: &mut Vec<RawMessage>) -> Result<(), SessionError> {
    let p = &msg.payload;
    let mut pos = 0usize;
    let mut base: Option<u32> = None;
    while pos + 11 <= p.len() {
        let tag_type = p[pos];
        let size = u32::from_be_bytes([0, p[pos + 1], p[pos + 2], p[pos + 3]]) as usize;
        let ts = u32::from_be_bytes([p[pos + 7], p[pos + 4], p[pos + 5], p[pos + 6]]);
        let start = pos + 11;
        let end = start
            .checked_add(size)
            .filter(|e| *e <= p.len())
            .ok_or(SessionError::AggregateOverrun)?;
        let first = *base.get_or_insert(ts);
        out.push(RawMessage {
            timestamp: msg.timestamp.wrapping_add(ts.wrapping_sub(first)),
            type_id: MessageType(tag_type),
            stream_id: msg.stream_id,
            payload: p.slice(start..end),
        });
        // Skip the 4-byte previous-tag-size trailer.
        pos = end + 4;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Server

/// What a client asked of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// `connect` was accepted (the session answers it itself).
    Connected { app: String, tc_url: String },
    /// The client wants to publish `key` on `stream_id`; answer with
    /// [`ServerSession::accept_publish`] or [`ServerSession::reject_publish`].
    PublishRequested {
        stream_id: u32,
        app: String,
        key: String,
        query: String,
    },
    /// The client wants to play `key`; answer with [`ServerSession::accept_play`] or
    /// [`ServerSession::reject_play`].
    PlayRequested {
        stream_id: u32,
        app: String,
        key: String,
        query: String,
    },
    /// A media message on a stream being published.
    Media {
        stream_id: u32,
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
    },
    /// The client unpublished, stopped playing or deleted the stream.
    StreamClosed { stream_id: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamRole {
    Created,
    PublishPending,
    Publishing,
    Playing,
}

#[derive(Debug)]
enum ServerPhase {
    Handshake(Box<ServerHandshake>),
    AwaitConnect,
    Connected { app: String },
}

/// The server side of one RTMP connection.
#[derive(Debug)]
pub struct ServerSession {
    config: SessionConfig,
    phase: ServerPhase,
    link: Link,
    events: VecDeque<ServerEvent>,
    streams: Vec<(u32, StreamRole)>,
    next_stream_id: u32,
    scratch: Vec<RawMessage>,
    /// When the handshake and `connect` must be done by; None once connected.
    handshake_deadline: Option<Instant>,
    /// When input last arrived, for the idle timer.
    last_input: Instant,
    /// Set once an error was returned: no more timers or input.
    failed: bool,
    /// Whether `connect` is answered with Set Chunk Size.
    announce_chunk_size: bool,
    /// Enhanced RTMP v2 `capsEx` the client announced in `connect` (see [`caps_ex`]).
    peer_caps_ex: Option<u32>,
}

/// Enhanced RTMP v2 `capsEx` bits (connect command object, both ways).
pub mod caps_ex {
    /// The client handles `NetConnection.Connect.ReconnectRequest`.
    pub const RECONNECT: u32 = 0x01;
    pub const MULTITRACK: u32 = 0x02;
    pub const MODEX: u32 = 0x04;
    pub const TIMESTAMP_NANO_OFFSET: u32 = 0x08;
    /// What Prism announces: it relays multitrack and ModEx (nano offset kept) and sends
    /// reconnect requests.
    pub const PRISM: u32 = RECONNECT | MULTITRACK | MODEX | TIMESTAMP_NANO_OFFSET;
}

/// The FourCCs Prism relays, announced as `fourCcList` to v2 clients.
pub const FORWARDED_FOURCCS: &[&str] = &[
    "avc1", "hvc1", "av01", "vp09", "vp08", "mp4a", "Opus", "fLaC", "ac-3", "ec-3", ".mp3",
];

/// `FourCcInfoMask` "can forward" of the v2 `*FourCcInfoMap`s (0x01 decode, 0x02 encode).
pub const FOURCC_CAN_FORWARD: u32 = 0x04;

fn is_video_fourcc(c: &str) -> bool {
    matches!(c, "avc1" | "hvc1" | "av01" | "vp09" | "vp08")
}

/// `fourCcList`, `videoFourCcInfoMap` and `audioFourCcInfoMap` of what Prism forwards: the
/// properties a v2 peer is told, in a push's `connect` and in a publisher's `_result`.
fn forwarded_fourcc_props() -> [(&'static str, Value); 3] {
    let list = FORWARDED_FOURCCS
        .iter()
        .map(|c| Value::String((*c).into()))
        .collect();
    let map = |video: bool| {
        Value::Object(
            FORWARDED_FOURCCS
                .iter()
                .filter(|c| is_video_fourcc(c) == video)
                .map(|c| {
                    (
                        (*c).to_owned(),
                        Value::Number(f64::from(FOURCC_CAN_FORWARD)),
                    )
                })
                .collect(),
        )
    };
    [
        ("fourCcList", Value::StrictArray(list)),
        ("videoFourCcInfoMap", map(true)),
        ("audioFourCcInfoMap", map(false)),
    ]
}

impl ServerSession {
    /// A session for a connection accepted at `now`; the handshake timer starts then.
    pub fn new(config: SessionConfig, random: [u8; 32], epoch_ms: u32, now: Instant) -> Self {
        let link = Link::new(&config);
        ServerSession {
            phase: ServerPhase::Handshake(Box::new(ServerHandshake::new(random, epoch_ms))),
            handshake_deadline: Some(now + config.handshake_timeout),
            last_input: now,
            failed: false,
            announce_chunk_size: true,
            peer_caps_ex: None,
            config,
            link,
            events: VecDeque::new(),
            streams: Vec::new(),
            next_stream_id: 1,
            scratch: Vec::new(),
        }
    }

    /// A session whose handshake another layer already did (RTMPE, [`crate::rtmpe`]): it
    /// starts by awaiting `connect`; the handshake timer (which covers `connect`) starts at
    /// `now`. It sends at RTMP's initial chunk size of 128 and never announces another:
    /// FFmpeg's RTMPE publisher echoes a Set Chunk Size after RC4-encrypting the packet in
    /// place, then reads the new size from the encrypted bytes (garbage: it disconnects).
    pub fn after_handshake(config: SessionConfig, now: Instant) -> Self {
        let mut session = ServerSession::new(config, [0; 32], 0, now);
        session.phase = ServerPhase::AwaitConnect;
        session.announce_chunk_size = false;
        session
    }

    /// Bytes to send to the peer.
    pub fn out(&mut self) -> &mut OutQueue {
        &mut self.link.out
    }

    /// Bytes held in partially received messages.
    pub fn buffered_bytes(&self) -> usize {
        self.link.decoder.buffered()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.phase, ServerPhase::Connected { .. })
    }

    /// Whether some stream of this connection plays (see [`ServerSession::accept_play`]).
    pub fn is_playing(&self) -> bool {
        self.streams.iter().any(|(_, r)| *r == StreamRole::Playing)
    }

    /// When [`ServerSession::handle_timeout`] must be called next, if ever: the handshake
    /// deadline until connected, then (unless playing) `idle_timeout` after the last input.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed {
            return None;
        }
        self.handshake_deadline.or_else(|| self.idle_deadline())
    }

    fn idle_deadline(&self) -> Option<Instant> {
        // Only a connected peer is idle-checked: before that the handshake timer runs.
        // A player may send nothing but an acknowledgement per window, so it is exempt.
        if !self.is_connected() || self.is_playing() {
            return None;
        }
        self.config.idle_timeout.map(|t| self.last_input + t)
    }

    /// Runs the timers at `now`. A timer that expired closes the session and is returned
    /// once as [`SessionError::HandshakeTimeout`] or [`SessionError::IdleTimeout`]; a
    /// deadline is expired from its instant on (`now >= deadline`).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        if self.failed {
            return Ok(());
        }
        let error = if self.handshake_deadline.is_some_and(|d| now >= d) {
            SessionError::HandshakeTimeout(self.config.handshake_timeout)
        } else if self.idle_deadline().is_some_and(|d| now >= d) {
            SessionError::IdleTimeout(self.config.idle_timeout.unwrap_or_default())
        } else {
            return Ok(());
        };
        self.failed = true;
        Err(error)
    }

    /// Consumes as much of `input` as forms complete handshake parts or messages. Input
    /// that is not empty counts as activity at `now` for the idle timer. After an error
    /// the session is closed and answers [`SessionError::Closed`].
    pub fn handle_input(&mut self, input: &mut BytesMut, now: Instant) -> Result<(), SessionError> {
        if self.failed {
            return Err(SessionError::Closed);
        }
        if !input.is_empty() {
            self.last_input = now;
        }
        let result = self.consume(input);
        self.failed = result.is_err();
        result
    }

    fn consume(&mut self, input: &mut BytesMut) -> Result<(), SessionError> {
        if let ServerPhase::Handshake(hs) = &mut self.phase {
            if !hs.handle_input(input, &mut self.link.out)? {
                return Ok(());
            }
            self.phase = ServerPhase::AwaitConnect;
        }
        while let Some(msg) = self.link.next_message(input)? {
            self.handle_message(msg)?;
        }
        Ok(())
    }

    fn handle_message(&mut self, msg: RawMessage) -> Result<(), SessionError> {
        match msg.type_id {
            MessageType::AUDIO | MessageType::VIDEO => self.handle_media(msg),
            MessageType::DATA_AMF0 | MessageType::DATA_AMF3 => {
                if let Some(payload) = parse_metadata(&msg) {
                    self.emit_media(msg.stream_id, MediaKind::Data, msg.timestamp, payload);
                }
                Ok(())
            }
            MessageType::AGGREGATE => {
                let mut parts = std::mem::take(&mut self.scratch);
                let result = split_aggregate(&msg, &mut parts);
                for m in parts.drain(..) {
                    if m.type_id == MessageType::AUDIO || m.type_id == MessageType::VIDEO {
                        self.handle_media(m)?;
                    } else if m.type_id == MessageType::DATA_AMF0 {
                        if let Some(payload) = parse_metadata(&m) {
                            self.emit_media(m.stream_id, MediaKind::Data, m.timestamp, payload);
                        }
                    }
                }
                self.scratch = parts;
                result
            }
            MessageType::COMMAND_AMF0 | MessageType::COMMAND_AMF3 => match parse_command(&msg)? {
                Some(cmd) => self.handle_command(msg.stream_id, cmd),
                None => Ok(()),
            },
            // Shared objects and unknown types are ignored, as Flash Media Server did.
            _ => Ok(()),
        }
    }

    fn handle_media(&mut self, msg: RawMessage) -> Result<(), SessionError> {
        let kind = if msg.type_id == MessageType::AUDIO {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        self.emit_media(msg.stream_id, kind, msg.timestamp, msg.payload);
        Ok(())
    }

    fn emit_media(&mut self, stream_id: u32, kind: MediaKind, timestamp: u32, payload: Bytes) {
        // Media on a stream that is not publishing is ignored (clients send it before the
        // Publish.Start arrives, and after a rejection).
        // Node-Media-Server's relay push sends its media on message stream 0; like
        // nginx-rtmp, take it as the connection's only publishing stream.
        let stream_id = if stream_id == 0 {
            let mut publishing = self
                .streams
                .iter()
                .filter(|(_, r)| *r == StreamRole::Publishing);
            match (publishing.next(), publishing.next()) {
                (Some((id, _)), None) => *id,
                _ => 0,
            }
        } else {
            stream_id
        };
        if self.role(stream_id) == Some(StreamRole::Publishing) {
            self.events.push_back(ServerEvent::Media {
                stream_id,
                kind,
                timestamp,
                payload,
            });
        }
    }

    fn role(&self, stream_id: u32) -> Option<StreamRole> {
        self.streams
            .iter()
            .find(|(id, _)| *id == stream_id)
            .map(|(_, r)| *r)
    }

    fn set_role(&mut self, stream_id: u32, role: StreamRole) {
        if let Some(s) = self.streams.iter_mut().find(|(id, _)| *id == stream_id) {
            s.1 = role;
        }
    }

    fn handle_command(&mut self, msg_stream: u32, cmd: Command) -> Result<(), SessionError> {
        let app = match &self.phase {
            ServerPhase::Connected { app } => app.clone(),
            _ if cmd.name == "connect" => return self.handle_connect(cmd),
            _ => {
                return Err(SessionError::CommandBeforeConnect {
                    name: truncate(&cmd.name).to_owned(),
                })
            }
        };
        match cmd.name.as_str() {
            "connect" => Err(SessionError::SecondConnect),
            "createStream" => {
                if self.streams.len() as u32 >= self.config.max_streams {
                    return Err(SessionError::TooManyStreams {
                        max: self.config.max_streams,
                    });
                }
                let id = self.next_stream_id;
                self.next_stream_id += 1;
                self.streams.push((id, StreamRole::Created));
                self.link.send_command(
                    0,
                    &[
                        Value::String("_result".into()),
                        Value::Number(cmd.txn),
                        Value::Null,
                        Value::Number(id as f64),
                    ],
                );
                Ok(())
            }
            "publish" => {
                let name = cmd.args.get(1).and_then(Value::as_str).unwrap_or_default();
                let (key, query) = split_query(name);
                match self.role(msg_stream) {
                    Some(StreamRole::Created) => {}
                    _ => {
                        return Err(SessionError::StreamNotAvailable {
                            command: "publish",
                            stream_id: msg_stream,
                        })
                    }
                }
                if key.is_empty() {
                    self.link.send_status(
                        msg_stream,
                        "error",
                        "NetStream.Publish.BadName",
                        "Empty stream name",
                    );
                    return Ok(());
                }
                self.set_role(msg_stream, StreamRole::PublishPending);
                self.events.push_back(ServerEvent::PublishRequested {
                    stream_id: msg_stream,
                    app,
                    key,
                    query,
                });
                Ok(())
            }
            "play" => {
                let name = cmd.args.get(1).and_then(Value::as_str).unwrap_or_default();
                let (key, query) = split_query(name);
                if self.role(msg_stream) != Some(StreamRole::Created) {
                    return Err(SessionError::StreamNotAvailable {
                        command: "play",
                        stream_id: msg_stream,
                    });
                }
                self.set_role(msg_stream, StreamRole::PublishPending);
                self.events.push_back(ServerEvent::PlayRequested {
                    stream_id: msg_stream,
                    app,
                    key,
                    query,
                });
                Ok(())
            }
            "FCUnpublish" | "closeStream" | "deleteStream" => {
                let sid = if cmd.name == "deleteStream" {
                    cmd.args.get(1).and_then(Value::as_f64).unwrap_or(0.0) as u32
                } else if cmd.name == "closeStream" {
                    msg_stream
                } else {
                    // FCUnpublish names the stream key: close whatever this connection publishes.
                    self.streams
                        .iter()
                        .find(|(_, r)| *r == StreamRole::Publishing)
                        .map(|(id, _)| *id)
                        .unwrap_or(0)
                };
                self.close_stream(sid, cmd.name == "deleteStream");
                Ok(())
            }
            "getStreamLength" => {
                self.reply_result(cmd.txn, Value::Number(0.0));
                Ok(())
            }
            "releaseStream" | "FCPublish" => {
                if cmd.name == "FCPublish" {
                    let name = cmd.args.get(1).and_then(Value::as_str).unwrap_or_default();
                    self.link.send_command(
                        0,
                        &[
                            Value::String("onFCPublish".into()),
                            Value::Number(0.0),
                            Value::Null,
                            Value::object([
                                ("code", Value::String("NetStream.Publish.Start".into())),
                                ("description", Value::String(split_query(name).0)),
                            ]),
                        ],
                    );
                }
                self.reply_result(cmd.txn, Value::Undefined);
                Ok(())
            }
            // Unknown commands are tolerated; answer only when the client waits for a reply.
            _ => {
                if cmd.txn != 0.0 {
                    self.reply_result(cmd.txn, Value::Undefined);
                }
                Ok(())
            }
        }
    }

    fn reply_result(&mut self, txn: f64, value: Value) {
        if txn == 0.0 {
            return;
        }
        self.link.send_command(
            0,
            &[
                Value::String("_result".into()),
                Value::Number(txn),
                Value::Null,
                value,
            ],
        );
    }

    fn close_stream(&mut self, stream_id: u32, delete: bool) {
        match self.role(stream_id) {
            Some(StreamRole::Publishing) => {
                self.link.send_status(
                    stream_id,
                    "status",
                    "NetStream.Unpublish.Success",
                    "Stop publishing",
                );
                self.events
                    .push_back(ServerEvent::StreamClosed { stream_id });
            }
            Some(StreamRole::Playing) | Some(StreamRole::PublishPending) => {
                self.events
                    .push_back(ServerEvent::StreamClosed { stream_id });
            }
            _ => {}
        }
        if delete {
            self.streams.retain(|(id, _)| *id != stream_id);
        } else {
            self.set_role(stream_id, StreamRole::Created);
        }
    }

    fn handle_connect(&mut self, cmd: Command) -> Result<(), SessionError> {
        let obj = cmd.args.first();
        let raw_app = obj
            .and_then(|o| o.get("app"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        // Some encoders append the query string to the app ("live?token=x").
        let app = split_query(raw_app).0.trim_end_matches('/').to_owned();
        if app.is_empty() {
            return Err(SessionError::ConnectWithoutApp);
        }
        let tc_url = obj
            .and_then(|o| o.get("tcUrl"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let encoding = obj
            .and_then(|o| o.get("objectEncoding"))
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        // Enhanced RTMP v2 negotiation: a client that announces capsEx, a fourCcList or
        // FourCC info maps (the spec lets a client send the maps alone) gets Prism's in the
        // _result, so it enables only what will get through.
        let caps = obj
            .and_then(|o| o.get("capsEx"))
            .and_then(Value::as_f64)
            .filter(|c| c.is_finite() && *c >= 0.0)
            .map(|c| c.min(f64::from(u32::MAX)) as u32);
        let v2 = caps.is_some()
            || ["fourCcList", "videoFourCcInfoMap", "audioFourCcInfoMap"]
                .iter()
                .any(|k| obj.and_then(|o| o.get(k)).is_some());
        self.peer_caps_ex = caps;
        self.link
            .send_control(Control::WindowAckSize(self.config.window_ack_size));
        self.link.send_control(Control::SetPeerBandwidth {
            size: self.config.window_ack_size,
            limit_type: 2,
        });
        // Sessions after an RTMPE handshake stay at 128 without saying so (see
        // `after_handshake`).
        if self.announce_chunk_size {
            self.link
                .encoder
                .set_chunk_size(self.config.chunk_size, &mut self.link.out);
        }
        self.link.send_command(
            0,
            &[
                Value::String("_result".into()),
                Value::Number(cmd.txn),
                {
                    let mut props = vec![
                        ("fmsVer", Value::String("FMS/3,0,1,123".into())),
                        ("capabilities", Value::Number(31.0)),
                    ];
                    if v2 {
                        props.push(("capsEx", Value::Number(f64::from(caps_ex::PRISM))));
                        props.extend(forwarded_fourcc_props());
                    }
                    Value::object(props)
                },
                Value::object([
                    ("level", Value::String("status".into())),
                    (
                        "code",
                        Value::String("NetConnection.Connect.Success".into()),
                    ),
                    ("description", Value::String("Connection succeeded.".into())),
                    ("objectEncoding", Value::Number(encoding)),
                ]),
            ],
        );
        self.phase = ServerPhase::Connected { app: app.clone() };
        self.handshake_deadline = None;
        self.events
            .push_back(ServerEvent::Connected { app, tc_url });
        Ok(())
    }

    /// Accepts a pending publish: the client gets NetStream.Publish.Start.
    pub fn accept_publish(&mut self, stream_id: u32) {
        self.set_role(stream_id, StreamRole::Publishing);
        self.link.send_control(Control::StreamBegin(stream_id));
        self.link.send_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            "Start publishing",
        );
    }

    /// Refuses a pending publish with `code` (e.g. NetStream.Publish.BadName).
    pub fn reject_publish(&mut self, stream_id: u32, code: &str, description: &str) {
        self.set_role(stream_id, StreamRole::Created);
        self.link.send_status(stream_id, "error", code, description);
    }

    /// Accepts a pending play; media then follows with [`ServerSession::send_media`]. While
    /// a stream plays the idle timer is off.
    pub fn accept_play(&mut self, stream_id: u32) {
        self.set_role(stream_id, StreamRole::Playing);
        self.link.send_control(Control::StreamIsRecorded(stream_id));
        self.link.send_control(Control::StreamBegin(stream_id));
        self.link.send_status(
            stream_id,
            "status",
            "NetStream.Play.Reset",
            "Playing and resetting",
        );
        self.link
            .send_status(stream_id, "status", "NetStream.Play.Start", "Start live");
        self.link.send_data(
            stream_id,
            &[
                Value::String("|RtmpSampleAccess".into()),
                Value::Boolean(true),
                Value::Boolean(true),
            ],
        );
    }

    pub fn reject_play(&mut self, stream_id: u32, code: &str, description: &str) {
        self.set_role(stream_id, StreamRole::Created);
        self.link.send_status(stream_id, "error", code, description);
    }

    /// Queues one media message to a playing stream; the payload is shared, not copied.
    pub fn send_media(&mut self, stream_id: u32, kind: MediaKind, timestamp: u32, payload: &Bytes) {
        self.link
            .send_media(stream_id, kind, timestamp, payload, None);
    }

    /// [`ServerSession::send_media`] with the body already chunked (for [`MediaKindExt::csid`]
    /// and [`ServerSession::chunk_size`]) and shared with other connections.
    pub fn send_media_shared(
        &mut self,
        stream_id: u32,
        kind: MediaKind,
        timestamp: u32,
        payload: &Bytes,
        body: &PreChunked,
    ) {
        self.link
            .send_media(stream_id, kind, timestamp, payload, Some(body));
    }

    /// The chunk size this session sends with.
    pub fn chunk_size(&self) -> u32 {
        self.link.encoder.chunk_size()
    }

    /// Tells a publisher its publish is over because the server ends it (shutting down, or
    /// an operator kicked the stream): NetStream.Unpublish.Success, as after its own
    /// FCUnpublish, so the client knows the close that follows is not a network failure.
    /// Media it still sends for `stream_id` is then no longer reported.
    pub fn end_publish(&mut self, stream_id: u32) {
        if self.role(stream_id) != Some(StreamRole::Publishing) {
            return;
        }
        self.link.send_status(
            stream_id,
            "status",
            "NetStream.Unpublish.Success",
            "Stop publishing: the server ends the stream",
        );
        self.set_role(stream_id, StreamRole::Created);
    }

    /// The `capsEx` the client announced in `connect` (Enhanced RTMP v2), if any.
    pub fn peer_caps_ex(&self) -> Option<u32> {
        self.peer_caps_ex
    }

    /// Whether the client said it handles a reconnect request (`capsEx` bit 0x01).
    pub fn supports_reconnect(&self) -> bool {
        self.peer_caps_ex
            .is_some_and(|c| c & caps_ex::RECONNECT != 0)
    }

    /// Asks an Enhanced RTMP v2 client to reconnect (`NetConnection.Connect.ReconnectRequest`
    /// on the NetConnection), to `tc_url` if given, else to the URL it used. Sent only to
    /// clients that announced it ([`ServerSession::supports_reconnect`]); false otherwise.
    pub fn request_reconnect(&mut self, tc_url: Option<&str>, description: &str) -> bool {
        if !self.supports_reconnect() {
            return false;
        }
        let mut info = vec![
            ("level", Value::String("status".into())),
            (
                "code",
                Value::String("NetConnection.Connect.ReconnectRequest".into()),
            ),
            ("description", Value::String(description.into())),
        ];
        if let Some(url) = tc_url {
            info.push(("tcUrl", Value::String(url.into())));
        }
        self.link.send_command(
            0,
            &[
                Value::String("onStatus".into()),
                Value::Number(0.0),
                Value::Null,
                Value::object(info),
            ],
        );
        true
    }

    /// Tells a player the stream it plays has ended. The idle timer, if it comes back on,
    /// counts from the last input (a silent player is then due at once).
    pub fn end_play(&mut self, stream_id: u32) {
        self.link.send_control(Control::StreamEof(stream_id));
        self.link.send_status(
            stream_id,
            "status",
            "NetStream.Play.UnpublishNotify",
            "Stream unpublished",
        );
        self.link
            .send_status(stream_id, "status", "NetStream.Play.Stop", "Stopped");
        self.set_role(stream_id, StreamRole::Created);
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(32) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

// ---------------------------------------------------------------------------------------
// Client (push or play)

/// Where a push connection publishes, or what a player plays.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub app: String,
    pub tc_url: String,
    /// Stream key with any query string (published, or played with
    /// [`ClientSession::play`]).
    pub key: String,
    pub session: SessionConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server accepted the publish: media may flow.
    Publishing,
    /// Play mode: NetStream.Play.Start arrived; [`ClientEvent::Media`] follows.
    Playing,
    /// Play mode: one audio, video or onMetaData message of the played stream, in the
    /// order the server sent them (aggregates are split).
    Media {
        kind: MediaKind,
        timestamp: u32,
        payload: Bytes,
    },
    /// Play mode: the server ended the stream (StreamEOF, Play.UnpublishNotify or
    /// Play.Stop, whichever comes first; reported once per Play.Start).
    PlayEnded,
}

/// Whether a [`ClientSession`] publishes or plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMode {
    Publish,
    Play,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientPhase {
    Handshake,
    Connecting,
    CreatingStream,
    /// publish or play sent, awaiting Publish.Start / Play.Start.
    Publishing,
    Live,
    Closed,
}

const TXN_CONNECT: f64 = 1.0;
const TXN_CREATE_STREAM: f64 = 4.0;
const TXN_PUBLISH: f64 = 5.0;
/// The buffer length a player announces after `play` (ffmpeg's default).
const PLAY_BUFFER_MS: u32 = 3000;

/// The client side of a push connection (connect, releaseStream, FCPublish, createStream,
/// publish, then media) or, made with [`ClientSession::play`], of a player (connect,
/// createStream, play + Set Buffer Length, then media events).
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    mode: ClientMode,
    handshake: ClientHandshake,
    phase: ClientPhase,
    link: Link,
    stream_id: u32,
    events: VecDeque<ClientEvent>,
    /// When publishing must have started by; None once it has.
    setup_deadline: Option<Instant>,
    /// Set once an error was returned: no more timers or input.
    failed: bool,
    /// The code of the last onStatus the server sent (see [`ClientSession::last_status`]).
    last_status: Option<String>,
    /// `capsEx` to announce in `connect` ([`ClientSession::announce_caps_ex`]).
    caps_ex: Option<u32>,
    /// A `NetConnection.Connect.ReconnectRequest` arrived: its `tcUrl`, if any.
    reconnect_request: Option<Option<String>>,
    /// The `capsEx` of the server's connect `_result` (Enhanced RTMP v2), if it sent one.
    peer_caps_ex: Option<u32>,
}

impl ClientSession {
    /// Starts the handshake (C0+C1 are queued at once) for a connection made at `now`;
    /// the set-up timer ([`SessionConfig::handshake_timeout`]) starts then.
    pub fn new(config: ClientConfig, random: [u8; 32], epoch_ms: u32, now: Instant) -> Self {
        Self::with_mode(ClientMode::Publish, config, random, epoch_ms, now)
    }

    /// A player of `config.key`: as [`ClientSession::new`], but it plays instead of
    /// publishing. Events: [`ClientEvent::Playing`], then [`ClientEvent::Media`] until
    /// [`ClientEvent::PlayEnded`]; a refused play (any error-level status, such as
    /// NetStream.Play.Failed or StreamNotFound) is [`SessionError::Refused`]. The set-up
    /// timer runs until Play.Start.
    pub fn play(config: ClientConfig, random: [u8; 32], epoch_ms: u32, now: Instant) -> Self {
        Self::with_mode(ClientMode::Play, config, random, epoch_ms, now)
    }

    fn with_mode(
        mode: ClientMode,
        config: ClientConfig,
        random: [u8; 32],
        epoch_ms: u32,
        now: Instant,
    ) -> Self {
        let mut link = Link::new(&config.session);
        link.report_stream_eof = mode == ClientMode::Play;
        let handshake = ClientHandshake::new(random, epoch_ms, &mut link.out);
        ClientSession {
            setup_deadline: Some(now + config.session.handshake_timeout),
            failed: false,
            mode,
            config,
            handshake,
            phase: ClientPhase::Handshake,
            link,
            stream_id: 0,
            events: VecDeque::new(),
            last_status: None,
            caps_ex: None,
            reconnect_request: None,
            peer_caps_ex: None,
        }
    }

    /// The code of the last onStatus the server sent (at most 200 characters), error or
    /// not: what a publisher was last told, such as `NetStream.Unpublish.Success` before a
    /// server closes the connection.
    pub fn last_status(&self) -> Option<&str> {
        self.last_status.as_deref()
    }

    /// A publishing client whose handshake another layer already did (RTMPE): `connect`
    /// is queued at once; the set-up timer starts at `now`.
    pub fn after_handshake(config: ClientConfig, now: Instant) -> Self {
        Self::after_handshake_announcing(config, None, now)
    }

    /// [`after_handshake`](Self::after_handshake) with a `capsEx` to announce (see
    /// [`announce_caps_ex`](Self::announce_caps_ex)): the `connect` is queued at once, so
    /// it cannot be announced later.
    pub fn after_handshake_announcing(
        config: ClientConfig,
        caps_ex: Option<u32>,
        now: Instant,
    ) -> Self {
        let mut session = Self::with_mode(ClientMode::Publish, config, [0; 32], 0, now);
        session.caps_ex = caps_ex;
        // Drop the C0+C1 the plain handshake queued.
        let _ = session.link.out.take_all();
        session.start_connect();
        session
    }

    pub fn out(&mut self) -> &mut OutQueue {
        &mut self.link.out
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    pub fn is_publishing(&self) -> bool {
        self.mode == ClientMode::Publish && self.phase == ClientPhase::Live
    }

    /// Play mode: between [`ClientEvent::Playing`] and [`ClientEvent::PlayEnded`].
    pub fn is_playing(&self) -> bool {
        self.mode == ClientMode::Play && self.phase == ClientPhase::Live
    }

    pub fn mode(&self) -> ClientMode {
        self.mode
    }

    /// When [`ClientSession::handle_timeout`] must be called next, if ever: the set-up
    /// deadline until publishing. The client has no idle timer (a server acknowledging a
    /// publish sends little).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed {
            return None;
        }
        self.setup_deadline
    }

    /// Runs the timers at `now`: from the set-up deadline on, the session is closed and
    /// [`SessionError::HandshakeTimeout`] is returned (once).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        if self.failed || !self.setup_deadline.is_some_and(|d| now >= d) {
            return Ok(());
        }
        self.failed = true;
        Err(SessionError::HandshakeTimeout(
            self.config.session.handshake_timeout,
        ))
    }

    /// Consumes what `input` holds of the server's handshake and messages. `now` is when it
    /// was read (the client has no idle timer yet, so it is only the driver's promise).
    /// After an error the session is closed and answers [`SessionError::Closed`].
    pub fn handle_input(&mut self, input: &mut BytesMut, now: Instant) -> Result<(), SessionError> {
        let _ = now;
        if self.failed {
            return Err(SessionError::Closed);
        }
        let result = self.consume(input);
        self.failed = result.is_err();
        result
    }

    fn consume(&mut self, input: &mut BytesMut) -> Result<(), SessionError> {
        if self.phase == ClientPhase::Handshake {
            if !self.handshake.handle_input(input, &mut self.link.out)? {
                return Ok(());
            }
            self.start_connect();
        }
        while let Some(msg) = self.link.next_message(input)? {
            if let Some(cmd) = parse_command(&msg)? {
                self.handle_command(cmd)?;
            } else if self.mode == ClientMode::Play {
                self.handle_play_message(msg)?;
            }
            // Media or data sent to a publisher is ignored.
        }
        Ok(())
    }

    /// Play mode: media, metadata and StreamEOF (commands were handled already).
    fn handle_play_message(&mut self, msg: RawMessage) -> Result<(), SessionError> {
        match msg.type_id {
            MessageType::USER_CONTROL => {
                if let Some(Control::StreamEof(id)) = Control::parse(&msg)? {
                    if id == self.stream_id {
                        self.end_play();
                    }
                }
            }
            MessageType::AGGREGATE => {
                let mut parts = Vec::new();
                split_aggregate(&msg, &mut parts)?;
                for m in parts {
                    self.emit_play_media(m);
                }
            }
            _ => self.emit_play_media(msg),
        }
        Ok(())
    }

    fn emit_play_media(&mut self, msg: RawMessage) {
        // Media outside Play.Start .. end (e.g. after PlayEnded) is not the played stream's.
        if self.phase != ClientPhase::Live {
            return;
        }
        let (kind, payload) = match msg.type_id {
            MessageType::AUDIO => (MediaKind::Audio, msg.payload),
            MessageType::VIDEO => (MediaKind::Video, msg.payload),
            // Only onMetaData is media; |RtmpSampleAccess and the like are not.
            MessageType::DATA_AMF0 | MessageType::DATA_AMF3 => match parse_metadata(&msg) {
                Some(p) => (MediaKind::Data, p),
                None => return,
            },
            _ => return,
        };
        self.events.push_back(ClientEvent::Media {
            kind,
            timestamp: msg.timestamp,
            payload,
        });
    }

    fn end_play(&mut self) {
        if self.phase == ClientPhase::Live {
            self.phase = ClientPhase::Closed;
            self.events.push_back(ClientEvent::PlayEnded);
        }
    }

    /// Announces Enhanced RTMP v2 `capsEx` (see [`caps_ex`]) in the `connect` this session
    /// sends, with the `fourCcList` and `videoFourCcInfoMap` / `audioFourCcInfoMap` of
    /// [`FORWARDED_FOURCCS`] (each "can forward": Prism relays, it does not decode); call
    /// before the handshake completes.
    pub fn announce_caps_ex(&mut self, caps: u32) {
        self.caps_ex = Some(caps);
    }

    /// The `capsEx` the server answered in its connect `_result` (Enhanced RTMP v2): `None`
    /// from a legacy server, or before the `_result`.
    pub fn peer_caps_ex(&self) -> Option<u32> {
        self.peer_caps_ex
    }

    /// Whether the server confirmed multitrack (`capsEx` bit 0x02) in its connect `_result`:
    /// without it, multitrack messages are not for it.
    pub fn peer_multitrack(&self) -> bool {
        self.peer_caps_ex
            .is_some_and(|c| c & caps_ex::MULTITRACK != 0)
    }

    /// `Some(tc_url)` once the server sent `NetConnection.Connect.ReconnectRequest`
    /// (`tc_url`: where it asks the client to go; `None`: reconnect to the same URL).
    pub fn reconnect_request(&self) -> Option<Option<&str>> {
        self.reconnect_request.as_ref().map(|u| u.as_deref())
    }

    fn start_connect(&mut self) {
        self.phase = ClientPhase::Connecting;
        self.link
            .encoder
            .set_chunk_size(self.config.session.chunk_size, &mut self.link.out);
        let app = Value::String(self.config.app.clone());
        let tc_url = Value::String(self.config.tc_url.clone());
        let properties = match self.mode {
            ClientMode::Publish => Value::object([
                ("app", app),
                ("type", Value::String("nonprivate".into())),
                (
                    "flashVer",
                    Value::String("FMLE/3.0 (compatible; Prism)".into()),
                ),
                ("tcUrl", tc_url),
            ]),
            // What ffmpeg sends when it plays: servers may look at the codec masks.
            ClientMode::Play => Value::object([
                ("app", app),
                ("flashVer", Value::String("LNX 9,0,124,2".into())),
                ("tcUrl", tc_url),
                ("fpad", Value::Boolean(false)),
                ("capabilities", Value::Number(15.0)),
                ("audioCodecs", Value::Number(4071.0)),
                ("videoCodecs", Value::Number(252.0)),
                ("videoFunction", Value::Number(1.0)),
            ]),
        };
        let properties = match (self.caps_ex, properties) {
            (Some(caps), Value::Object(mut props)) => {
                props.push(("capsEx".into(), Value::Number(f64::from(caps))));
                props.extend(
                    forwarded_fourcc_props()
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v)),
                );
                Value::Object(props)
            }
            (_, p) => p,
        };
        self.link.send_command(
            0,
            &[
                Value::String("connect".into()),
                Value::Number(TXN_CONNECT),
                properties,
            ],
        );
    }

    fn handle_command(&mut self, cmd: Command) -> Result<(), SessionError> {
        match cmd.name.as_str() {
            "_result" if cmd.txn == TXN_CONNECT && self.phase == ClientPhase::Connecting => {
                // A v2 server says what it takes in the properties (first argument).
                self.peer_caps_ex = cmd
                    .args
                    .first()
                    .and_then(|p| p.get("capsEx"))
                    .and_then(Value::as_f64)
                    .filter(|c| c.is_finite() && *c >= 0.0)
                    .map(|c| c.min(f64::from(u32::MAX)) as u32);
                self.link
                    .send_control(Control::WindowAckSize(self.config.session.window_ack_size));
                if self.mode == ClientMode::Publish {
                    let key = Value::String(self.config.key.clone());
                    self.link.send_command(
                        0,
                        &[
                            Value::String("releaseStream".into()),
                            Value::Number(2.0),
                            Value::Null,
                            key.clone(),
                        ],
                    );
                    self.link.send_command(
                        0,
                        &[
                            Value::String("FCPublish".into()),
                            Value::Number(3.0),
                            Value::Null,
                            key,
                        ],
                    );
                }
                self.link.send_command(
                    0,
                    &[
                        Value::String("createStream".into()),
                        Value::Number(TXN_CREATE_STREAM),
                        Value::Null,
                    ],
                );
                self.phase = ClientPhase::CreatingStream;
            }
            "_result"
                if cmd.txn == TXN_CREATE_STREAM && self.phase == ClientPhase::CreatingStream =>
            {
                let id = cmd
                    .args
                    .get(1)
                    .and_then(Value::as_f64)
                    .ok_or(SessionError::NoStreamId)?;
                self.stream_id = id as u32;
                let key = Value::String(self.config.key.clone());
                match self.mode {
                    ClientMode::Publish => self.link.send_command(
                        self.stream_id,
                        &[
                            Value::String("publish".into()),
                            Value::Number(TXN_PUBLISH),
                            Value::Null,
                            key,
                            Value::String("live".into()),
                        ],
                    ),
                    ClientMode::Play => {
                        // Start -1000: live only, as ffmpeg asks for a live stream.
                        self.link.send_command(
                            self.stream_id,
                            &[
                                Value::String("play".into()),
                                Value::Number(0.0),
                                Value::Null,
                                key,
                                Value::Number(-1000.0),
                            ],
                        );
                        self.link.send_control(Control::SetBufferLength {
                            stream_id: self.stream_id,
                            ms: PLAY_BUFFER_MS,
                        });
                    }
                }
                self.phase = ClientPhase::Publishing;
            }
            "_error" => {
                let info = cmd.args.get(1);
                return Err(refused(info));
            }
            "onStatus" => {
                let info = cmd.args.get(1);
                let code = info
                    .and_then(|i| i.get("code"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let level = info
                    .and_then(|i| i.get("level"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                self.last_status = Some(code.chars().take(200).collect());
                if code == "NetConnection.Connect.ReconnectRequest" {
                    let url = info
                        .and_then(|i| i.get("tcUrl"))
                        .and_then(Value::as_str)
                        .map(|u| u.chars().take(2048).collect());
                    self.reconnect_request = Some(url);
                }
                if level == "error" {
                    return Err(refused(info));
                }
                match (self.mode, code) {
                    (ClientMode::Publish, "NetStream.Publish.Start")
                        if self.phase == ClientPhase::Publishing =>
                    {
                        self.phase = ClientPhase::Live;
                        self.setup_deadline = None;
                        self.events.push_back(ClientEvent::Publishing);
                    }
                    (ClientMode::Play, "NetStream.Play.Start")
                        if matches!(self.phase, ClientPhase::Publishing | ClientPhase::Closed) =>
                    {
                        // Closed too: a server may restart a play it ended.
                        self.phase = ClientPhase::Live;
                        self.setup_deadline = None;
                        self.events.push_back(ClientEvent::Playing);
                    }
                    (
                        ClientMode::Play,
                        "NetStream.Play.UnpublishNotify" | "NetStream.Play.Stop",
                    ) => self.end_play(),
                    _ => {}
                }
            }
            // onBWDone, onFCPublish, _result for releaseStream/FCPublish: nothing to do.
            _ => {}
        }
        Ok(())
    }

    /// Queues one media message; ignored until [`ClientEvent::Publishing`].
    pub fn send_media(&mut self, kind: MediaKind, timestamp: u32, payload: &Bytes) {
        if self.is_publishing() {
            self.link
                .send_media(self.stream_id, kind, timestamp, payload, None);
        }
    }

    /// [`ClientSession::send_media`] with the body already chunked and shared, as for
    /// [`ServerSession::send_media_shared`].
    pub fn send_media_shared(
        &mut self,
        kind: MediaKind,
        timestamp: u32,
        payload: &Bytes,
        body: &PreChunked,
    ) {
        if self.is_publishing() {
            self.link
                .send_media(self.stream_id, kind, timestamp, payload, Some(body));
        }
    }

    /// The chunk size this session sends with.
    pub fn chunk_size(&self) -> u32 {
        self.link.encoder.chunk_size()
    }

    /// Ends the publish politely: FCUnpublish and deleteStream.
    pub fn unpublish(&mut self) {
        if !self.is_publishing() {
            return;
        }
        self.link.send_command(
            0,
            &[
                Value::String("FCUnpublish".into()),
                Value::Number(6.0),
                Value::Null,
                Value::String(self.config.key.clone()),
            ],
        );
        self.link.send_command(
            0,
            &[
                Value::String("deleteStream".into()),
                Value::Number(7.0),
                Value::Null,
                Value::Number(self.stream_id as f64),
            ],
        );
        self.phase = ClientPhase::Closed;
    }
}

fn refused(info: Option<&Value>) -> SessionError {
    let field = |k: &str| {
        info.and_then(|i| i.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect::<String>()
    };
    SessionError::Refused {
        code: field("code"),
        description: field("description"),
    }
}
