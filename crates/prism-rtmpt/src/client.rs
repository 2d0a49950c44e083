//! The client side of a tunnel, as Prism pushes to `rtmpt://` targets: which request to make
//! next, and what each reply means.
//!
//! One request at a time, as ffmpeg and librtmp do: `/open/1`, then `/send` whenever bytes
//! wait (every reply may carry server bytes), `/idle` when nothing waits and the poll delay
//! the server asked for has passed, `/close` once the caller closes (after what waits has been
//! sent). The caller does the HTTP; time is an input.

use std::fmt;
use std::time::{Duration, Instant};

/// Limits of a [`TunnelClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Most client→server bytes held before they are sent ([`TunnelClient::room`]).
    pub max_pending_bytes: usize,
    /// Most bytes in one `/send` body.
    pub max_body_bytes: usize,
    /// Most bytes accepted in one reply body; a longer reply is an error.
    pub max_reply_bytes: usize,
    /// A request whose reply has not been handed in this long after it was made fails.
    pub request_timeout: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_pending_bytes: 1024 * 1024,
            max_body_bytes: 256 * 1024,
            // Prism's own server answers with at most 256 KiB; others are not known to send more.
            max_reply_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Open,
    Send,
    Idle,
    Close,
}

/// A request to make: `POST path` with `body` and `Content-Type: application/x-fcs`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientRequest {
    pub kind: RequestKind,
    pub path: String,
    pub body: Vec<u8>,
}

impl fmt::Debug for ClientRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The path holds the session id, the tunnel's only credential.
        f.debug_struct("ClientRequest")
            .field("kind", &self.kind)
            .field("body", &self.body.len())
            .finish()
    }
}

/// Why the tunnel failed. After an error the client is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered a status other than 200 (404: the session is unknown or expired;
    /// 503: too many sessions or its buffer overflowed).
    #[error("RTMPT server answered HTTP {0}")]
    Status(u16),
    /// The reply is not what the request asks for.
    #[error("malformed RTMPT reply: {0}")]
    Malformed(&'static str),
    /// A reply did not come within the request timeout.
    #[error("RTMPT request timed out")]
    Timeout,
    /// A reply came with no request waiting for it.
    #[error("RTMPT reply without a request")]
    Unexpected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `/open` not made yet.
    Start,
    Open,
    Closed,
}

struct InFlight {
    kind: RequestKind,
    deadline: Instant,
}

/// The client of one tunnel session. See the module docs for the request sequence.
pub struct TunnelClient {
    limits: ClientLimits,
    state: State,
    session: String,
    /// The next request's sequence number (the server does not check it; librtmp and ffmpeg
    /// count up from the first send).
    seq: u64,
    pending: Vec<u8>,
    in_flight: Option<InFlight>,
    /// No idle poll before this.
    next_idle: Instant,
    closing: bool,
}

/// How long an interval byte `b` asks the client to wait before its next idle poll: `b`
/// tens of milliseconds, capped. Red5 and Prism send 1 while data flows and up to 0x21 when
/// idle; an idle push then costs at most a few requests a second, and a byte of 0 (closing)
/// ends the session instead.
pub fn poll_delay(b: u8) -> Duration {
    const UNIT: Duration = Duration::from_millis(10);
    UNIT * u32::from(b.min(MAX_POLL_BYTE))
}

/// Interval bytes above this wait as long as this one (0.5 s): the server's session timeout
/// is seconds, and nothing a server sends should make a client fall silent for long.
const MAX_POLL_BYTE: u8 = 50;

/// Longest session id accepted in an `/open` reply (Prism's are 32 characters, Red5's are
/// numbers).
pub const MAX_SESSION_ID: usize = 128;

impl TunnelClient {
    pub fn new(limits: ClientLimits, now: Instant) -> Self {
        TunnelClient {
            limits,
            state: State::Start,
            session: String::new(),
            seq: 1,
            pending: Vec::new(),
            in_flight: None,
            next_idle: now,
            closing: false,
        }
    }

    /// Whether `/open` has been answered with a session id (and the session has not ended).
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Whether the session is over: closed by either side or failed. Nothing more to do.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Bytes waiting to be sent.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// How many more bytes [`write`](Self::write) takes now.
    pub fn room(&self) -> usize {
        if self.closing || self.is_closed() {
            return 0;
        }
        self.limits
            .max_pending_bytes
            .saturating_sub(self.pending.len())
    }

    /// Queues client→server bytes, as many as there is [`room`](Self::room) for; returns how
    /// many were taken.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.room());
        self.pending.extend_from_slice(&data[..n]);
        n
    }

    /// Ends the session: what waits is sent, then `/close`. Before the session is open there
    /// is nothing to close.
    pub fn close(&mut self) {
        self.closing = true;
        if self.state == State::Start && self.in_flight.is_none() {
            self.state = State::Closed;
        }
    }

    /// The next request to make, if one is due at `now` and none is in flight.
    pub fn poll_request(&mut self, now: Instant) -> Option<ClientRequest> {
        if self.in_flight.is_some() {
            return None;
        }
        let (kind, path, body) = match self.state {
            State::Closed => return None,
            State::Start => (RequestKind::Open, "/open/1".to_owned(), Vec::new()),
            State::Open if !self.pending.is_empty() => {
                let n = self.pending.len().min(self.limits.max_body_bytes.max(1));
                let rest = self.pending.split_off(n);
                let body = std::mem::replace(&mut self.pending, rest);
                (RequestKind::Send, self.path("send"), body)
            }
            State::Open if self.closing => (RequestKind::Close, self.path("close"), Vec::new()),
            State::Open if now >= self.next_idle => (RequestKind::Idle, self.path("idle"), vec![0]),
            State::Open => return None,
        };
        self.in_flight = Some(InFlight {
            kind,
            deadline: now + self.limits.request_timeout,
        });
        Some(ClientRequest { kind, path, body })
    }

    fn path(&mut self, command: &str) -> String {
        let path = format!("/{command}/{}/{}", self.session, self.seq);
        self.seq = self.seq.wrapping_add(1);
        path
    }

    /// Hands in the reply (status and whole body) to the request in flight. Returns the
    /// server→client bytes it carries, for the RTMP side. A `/send` whose reply is an error
    /// may have been taken in part: the session cannot go on (the RTMP stream has no way to
    /// resynchronise), so every error closes it.
    pub fn on_reply<'b>(
        &mut self,
        now: Instant,
        status: u16,
        body: &'b [u8],
    ) -> Result<&'b [u8], ClientError> {
        let Some(req) = self.in_flight.take() else {
            self.state = State::Closed;
            return Err(ClientError::Unexpected);
        };
        let result = self.reply(req.kind, now, status, body);
        if result.is_err() {
            self.state = State::Closed;
        }
        result
    }

    fn reply<'b>(
        &mut self,
        kind: RequestKind,
        now: Instant,
        status: u16,
        body: &'b [u8],
    ) -> Result<&'b [u8], ClientError> {
        if kind == RequestKind::Close {
            // The session is gone whatever the server says.
            self.state = State::Closed;
            return Ok(&[]);
        }
        if status != 200 {
            return Err(ClientError::Status(status));
        }
        if body.len() > self.limits.max_reply_bytes {
            return Err(ClientError::Malformed("reply too long"));
        }
        if kind == RequestKind::Open {
            self.session = parse_session_id(body)?.to_owned();
            // Closed before the id came: the next request is the `/close`.
            self.state = State::Open;
            self.next_idle = now;
            return Ok(&[]);
        }
        let (&interval, data) = body
            .split_first()
            .ok_or(ClientError::Malformed("reply without its interval byte"))?;
        if interval == 0 {
            // The server is closing: what came with the byte is the last of the stream.
            self.state = State::Closed;
            return Ok(data);
        }
        self.next_idle = now + poll_delay(interval);
        Ok(data)
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run: the deadline of the request in
    /// flight, or the time of the next idle poll. `None` when closed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (&self.in_flight, self.state) {
            (Some(r), _) => Some(r.deadline),
            (None, State::Closed) => None,
            (None, State::Start) => Some(self.next_idle),
            (None, State::Open) => Some(self.next_idle),
        }
    }

    /// Fails the session if the request in flight is past its deadline at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ClientError> {
        if self.in_flight.as_ref().is_some_and(|r| now >= r.deadline) {
            self.in_flight = None;
            self.state = State::Closed;
            return Err(ClientError::Timeout);
        }
        Ok(())
    }
}

impl fmt::Debug for TunnelClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No session id: it is the tunnel's only credential.
        f.debug_struct("TunnelClient")
            .field("state", &self.state)
            .field("pending", &self.pending.len())
            .field("in_flight", &self.in_flight.as_ref().map(|r| r.kind))
            .field("closing", &self.closing)
            .finish()
    }
}

/// The session id of an `/open` reply: one token of letters, digits, `-` or `_` (what the
/// client puts in every later path), ended by a newline or the end of the body (servers
/// differ; some pad with a NUL).
pub fn parse_session_id(body: &[u8]) -> Result<&str, ClientError> {
    let end = body
        .iter()
        .position(|&b| b == b'\n' || b == b'\r' || b == 0)
        .unwrap_or(body.len());
    let (id, rest) = body.split_at(end);
    if rest
        .iter()
        .any(|b| !matches!(b, b'\n' | b'\r' | 0 | b' ' | b'\t'))
    {
        return Err(ClientError::Malformed("text after the session id"));
    }
    if id.is_empty() {
        return Err(ClientError::Malformed("empty session id"));
    }
    if id.len() > MAX_SESSION_ID {
        return Err(ClientError::Malformed("session id too long"));
    }
    if !id
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    {
        return Err(ClientError::Malformed("session id is not a token"));
    }
    // All ASCII, checked above.
    std::str::from_utf8(id).map_err(|_| ClientError::Malformed("session id is not a token"))
}

#[cfg(test)]
mod tests;
