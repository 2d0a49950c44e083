//! RTSP 1.0 messages (RFC 2326 §4–§7) and interleaved binary data (§10.12) on one byte
//! stream, with hard bounds: a peer can make the decoder hold at most
//! [`Limits::max_header_bytes`] + [`Limits::max_body`] bytes of one message.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::fmt::Write as _;

/// Bounds on what one message may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Start line plus headers, up to and including the blank line.
    pub max_header_bytes: usize,
    /// Header lines.
    pub max_headers: usize,
    /// `Content-Length`.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 8 * 1024,
            max_headers: 32,
            // SDP answers of cameras are a few KiB; nothing else carries a body.
            max_body: 64 * 1024,
        }
    }
}

/// Why the byte stream cannot be read as RTSP: the connection must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The header block is over [`Limits::max_header_bytes`] (or never ends).
    HeaderTooLarge,
    /// More header lines than [`Limits::max_headers`].
    TooManyHeaders,
    /// `Content-Length` over [`Limits::max_body`].
    BodyTooLarge,
    /// Not RTSP: the reason, for the log.
    Malformed(&'static str),
}

impl ParseError {
    pub fn as_str(self) -> &'static str {
        match self {
            ParseError::HeaderTooLarge => "header too large",
            ParseError::TooManyHeaders => "too many headers",
            ParseError::BodyTooLarge => "body too large",
            ParseError::Malformed(what) => what,
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ParseError {}

/// Header lines in arrival order; names compare case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// `CSeq`, if present and numeric.
    pub fn cseq(&self) -> Option<u32> {
        self.get("CSeq")?.trim().parse().ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub uri: String,
    pub headers: Headers,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Bytes,
}

/// One item of an RTSP byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
    /// `$` + channel + 16-bit length + that many bytes (RTP or RTCP over TCP).
    Data {
        channel: u8,
        payload: Bytes,
    },
}

/// Takes the next complete message off the front of `buf`: `Ok(None)` until one is
/// complete. An error means the stream is unusable (no resynchronization is attempted:
/// a peer that sends garbage is closed).
pub fn decode(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Message>, ParseError> {
    // Some clients send stray CRLFs between messages (keep-alives of a sort).
    while buf.first().is_some_and(|b| *b == b'\r' || *b == b'\n') {
        buf.advance(1);
    }
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first == b'$' {
        if buf.len() < 4 {
            return Ok(None);
        }
        let channel = buf[1];
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if buf.len() < 4 + len {
            return Ok(None);
        }
        buf.advance(4);
        let payload = buf.split_to(len).freeze();
        return Ok(Some(Message::Data { channel, payload }));
    }
    if !first.is_ascii_alphabetic() {
        return Err(ParseError::Malformed("not an RTSP message"));
    }
    let Some(head_len) = find_head_end(buf, limits.max_header_bytes)? else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_len])
        .map_err(|_| ParseError::Malformed("header is not UTF-8"))?;
    let mut lines = head.split("\r\n").map(|l| l.trim_end_matches('\n'));
    let start = lines.next().unwrap_or_default();
    let mut headers = Headers::default();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if headers.0.len() >= limits.max_headers {
            return Err(ParseError::TooManyHeaders);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(ParseError::Malformed("header line without a colon"))?;
        if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(ParseError::Malformed("bad header name"));
        }
        headers.push(name, value.trim());
    }
    let body_len = match headers.get("Content-Length") {
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|_| ParseError::Malformed("bad Content-Length"))?,
        None => 0,
    };
    if body_len > limits.max_body {
        return Err(ParseError::BodyTooLarge);
    }
    if buf.len() < head_len + body_len {
        return Ok(None);
    }
    let mut parts = start.splitn(3, ' ');
    let (a, b, c) = (parts.next(), parts.next(), parts.next());
    let msg = if let Some(version) = a.filter(|a| a.starts_with("RTSP/")) {
        if version != "RTSP/1.0" {
            return Err(ParseError::Malformed("unsupported RTSP version"));
        }
        let status = b
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (100..1000).contains(s))
            .ok_or(ParseError::Malformed("bad status line"))?;
        let reason = c.unwrap_or_default().to_owned();
        buf.advance(head_len);
        let body = buf.split_to(body_len).freeze();
        Message::Response(Response {
            status,
            reason,
            headers,
            body,
        })
    } else {
        let (Some(method), Some(uri), Some(version)) = (a, b, c) else {
            return Err(ParseError::Malformed("bad request line"));
        };
        if version != "RTSP/1.0" {
            return Err(ParseError::Malformed("unsupported RTSP version"));
        }
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_') {
            return Err(ParseError::Malformed("bad method"));
        }
        let (method, uri) = (method.to_owned(), uri.to_owned());
        buf.advance(head_len);
        let body = buf.split_to(body_len).freeze();
        Message::Request(Request {
            method,
            uri,
            headers,
            body,
        })
    };
    Ok(Some(msg))
}

/// The length of the header block including its blank line, once it is all there.
fn find_head_end(buf: &[u8], max: usize) -> Result<Option<usize>, ParseError> {
    let window = &buf[..buf.len().min(max)];
    // CRLFCRLF, or bare LFLF from sloppy peers.
    let mut i = 0;
    while i < window.len() {
        if window[i] == b'\n' {
            if window[i + 1..].starts_with(b"\r\n") {
                return Ok(Some(i + 3));
            }
            if window[i + 1..].starts_with(b"\n") {
                return Ok(Some(i + 2));
            }
        }
        i += 1;
    }
    if buf.len() >= max {
        return Err(ParseError::HeaderTooLarge);
    }
    Ok(None)
}

impl Request {
    pub fn new(method: &str, uri: &str) -> Request {
        Request {
            method: method.into(),
            uri: uri.into(),
            headers: Headers::default(),
            body: Bytes::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push(name, value);
        self
    }

    pub fn encode(&self, out: &mut BytesMut) {
        let mut s = format!("{} {} RTSP/1.0\r\n", self.method, self.uri);
        write_headers(&mut s, &self.headers, self.body.len());
        out.put_slice(s.as_bytes());
        out.put_slice(&self.body);
    }
}

impl Response {
    /// A response echoing `cseq` (if the request had one).
    pub fn new(status: u16, cseq: Option<u32>) -> Response {
        let mut headers = Headers::default();
        if let Some(c) = cseq {
            headers.push("CSeq", c.to_string());
        }
        Response {
            status,
            reason: reason_phrase(status).into(),
            headers,
            body: Bytes::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push(name, value);
        self
    }

    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.headers.push("Content-Type", content_type);
        self.body = body.into();
        self
    }

    pub fn encode(&self, out: &mut BytesMut) {
        let mut s = format!("RTSP/1.0 {} {}\r\n", self.status, self.reason);
        write_headers(&mut s, &self.headers, self.body.len());
        out.put_slice(s.as_bytes());
        out.put_slice(&self.body);
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

fn write_headers(s: &mut String, headers: &Headers, body_len: usize) {
    for (n, v) in headers.iter() {
        let _ = write!(s, "{n}: {v}\r\n");
    }
    if body_len > 0 {
        let _ = write!(s, "Content-Length: {body_len}\r\n");
    }
    s.push_str("\r\n");
}

/// Writes the 4-byte interleaved prefix for a `len`-byte packet on `channel`.
pub fn interleaved_prefix(channel: u8, len: usize) -> [u8; 4] {
    let len = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    [b'$', channel, len[0], len[1]]
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        415 => "Unsupported Media Type",
        454 => "Session Not Found",
        455 => "Method Not Valid in This State",
        459 => "Aggregate Operation Not Allowed",
        461 => "Unsupported Transport",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "RTSP Version Not Supported",
        _ => "Unknown",
    }
}

/// One `Transport` header spec (RFC 2326 §12.39), the parts Prism uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transport {
    /// `RTP/AVP/TCP` (interleaved) rather than `RTP/AVP[/UDP]`.
    pub tcp: bool,
    pub unicast: bool,
    pub interleaved: Option<(u8, u8)>,
    pub client_port: Option<(u16, u16)>,
    pub server_port: Option<(u16, u16)>,
    pub ssrc: Option<u32>,
    pub mode_record: bool,
}

impl Transport {
    /// The first spec of a `Transport` header that is RTP/AVP (others, e.g. RTP/SAVP, are
    /// skipped).
    pub fn parse(header: &str) -> Option<Transport> {
        header.split(',').find_map(Self::parse_one)
    }

    fn parse_one(spec: &str) -> Option<Transport> {
        let mut parts = spec.trim().split(';');
        let proto = parts.next()?.trim();
        let tcp = match proto.to_ascii_uppercase().as_str() {
            "RTP/AVP" | "RTP/AVP/UDP" => false,
            "RTP/AVP/TCP" => true,
            _ => return None,
        };
        let mut t = Transport {
            tcp,
            ..Default::default()
        };
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.trim().to_ascii_lowercase().as_str() {
                "unicast" => t.unicast = true,
                "interleaved" => {
                    t.interleaved =
                        pair(v).and_then(|(a, b)| Some((a.try_into().ok()?, b.try_into().ok()?)))
                }
                "client_port" => t.client_port = pair(v),
                "server_port" => t.server_port = pair(v),
                "ssrc" => t.ssrc = u32::from_str_radix(v.trim(), 16).ok(),
                "mode" => t.mode_record = v.trim_matches('"').eq_ignore_ascii_case("record"),
                _ => {}
            }
        }
        Some(t)
    }

    pub fn to_header(&self) -> String {
        let mut s = String::from(if self.tcp { "RTP/AVP/TCP" } else { "RTP/AVP" });
        s.push_str(";unicast");
        if let Some((a, b)) = self.interleaved {
            let _ = write!(s, ";interleaved={a}-{b}");
        }
        if let Some((a, b)) = self.client_port {
            let _ = write!(s, ";client_port={a}-{b}");
        }
        if let Some((a, b)) = self.server_port {
            let _ = write!(s, ";server_port={a}-{b}");
        }
        if let Some(ssrc) = self.ssrc {
            let _ = write!(s, ";ssrc={ssrc:08X}");
        }
        s
    }
}

/// `a-b` (or a lone `a`, meaning `a-(a+1)`).
fn pair(v: &str) -> Option<(u16, u16)> {
    let v = v.trim();
    match v.split_once('-') {
        Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
        None => {
            let a: u16 = v.parse().ok()?;
            Some((a, a.checked_add(1)?))
        }
    }
}

/// The session id of a `Session` header (before any `;timeout=`), and the timeout in
/// seconds if given.
pub fn parse_session(header: &str) -> (String, Option<u64>) {
    let mut parts = header.split(';');
    let id = parts.next().unwrap_or_default().trim().to_owned();
    let timeout = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("timeout")
            .then(|| v.trim().parse().ok())?
    });
    (id, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &[u8]) -> Result<Option<Message>, ParseError> {
        decode(&mut BytesMut::from(s), &Limits::default())
    }

    #[test]
    fn request_and_response() {
        let mut buf = BytesMut::from(
            &b"OPTIONS rtsp://h/a/b RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: x\r\n\r\n$\x00\x00\x02ab"[..],
        );
        let Some(Message::Request(r)) = decode(&mut buf, &Limits::default()).unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.method.as_str(), r.uri.as_str()),
            ("OPTIONS", "rtsp://h/a/b")
        );
        assert_eq!(r.headers.cseq(), Some(1));
        let m = decode(&mut buf, &Limits::default()).unwrap();
        assert_eq!(
            m,
            Some(Message::Data {
                channel: 0,
                payload: Bytes::from_static(b"ab")
            })
        );
        assert!(buf.is_empty());
        let mut resp = Response::new(200, Some(3)).body("application/sdp", "v=0\r\n");
        resp.headers.push("Session", "abc;timeout=60");
        let mut buf = BytesMut::from(&resp.to_bytes()[..]);
        let Some(Message::Response(back)) = decode(&mut buf, &Limits::default()).unwrap() else {
            panic!()
        };
        assert_eq!(back.status, 200);
        assert_eq!(&back.body[..], b"v=0\r\n");
        assert_eq!(
            parse_session(back.headers.get("session").unwrap()),
            ("abc".into(), Some(60))
        );
    }

    #[test]
    fn partial_input_waits() {
        let full = b"DESCRIBE rtsp://h/a RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 3\r\n\r\nabc";
        for n in 0..full.len() {
            assert_eq!(dec(&full[..n]), Ok(None), "{n}");
        }
        assert!(matches!(dec(full), Ok(Some(Message::Request(_)))));
        assert_eq!(dec(b"$\x01\x00\x10abc"), Ok(None));
    }

    #[test]
    fn bounds() {
        let big = vec![b'A'; 9000];
        assert_eq!(dec(&big), Err(ParseError::HeaderTooLarge));
        let mut many = b"OPTIONS * RTSP/1.0\r\n".to_vec();
        for i in 0..40 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(dec(&many), Err(ParseError::TooManyHeaders));
        assert_eq!(
            dec(b"ANNOUNCE * RTSP/1.0\r\nContent-Length: 99999999\r\n\r\n"),
            Err(ParseError::BodyTooLarge)
        );
        assert!(dec(b"\x16\x03\x01garbage").is_err());
        assert!(dec(b"GET / HTTP/1.1\r\n\r\n").is_err());
        assert!(dec(b"OPTIONS * RTSP/1.0\r\nbad\r\n\r\n").is_err());
        assert!(dec(b"OPTIONS * RTSP/1.0\r\nContent-Length: -1\r\n\r\n").is_err());
    }

    #[test]
    fn garbage_never_panics() {
        // A deterministic pseudo-random walk over byte strings seeded with RTSP fragments.
        let seeds: [&[u8]; 4] = [
            b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n",
            b"RTSP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nabcd",
            b"$\x00\xff\xff",
            b"\r\n\n\n$",
        ];
        let mut x: u32 = 0x1234_5678;
        for round in 0..20_000 {
            let mut v = seeds[round % seeds.len()].to_vec();
            for _ in 0..(round % 7) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let pos = x as usize % (v.len() + 1);
                if pos < v.len() {
                    v[pos] = (x >> 8) as u8;
                } else {
                    v.push((x >> 16) as u8);
                }
            }
            let mut buf = BytesMut::from(&v[..]);
            for _ in 0..4 {
                match decode(&mut buf, &Limits::default()) {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
    }

    #[test]
    fn transport_header() {
        let t = Transport::parse("RTP/AVP/TCP;unicast;interleaved=2-3").unwrap();
        assert!(t.tcp && t.unicast);
        assert_eq!(t.interleaved, Some((2, 3)));
        let t = Transport::parse("RTP/SAVP;unicast, RTP/AVP;unicast;client_port=5000-5001;server_port=6000-6001;ssrc=0000BEEF").unwrap();
        assert!(!t.tcp);
        assert_eq!(t.client_port, Some((5000, 5001)));
        assert_eq!(t.server_port, Some((6000, 6001)));
        assert_eq!(t.ssrc, Some(0xBEEF));
        assert!(Transport::parse("RTP/AVP;interleaved=999-1000")
            .unwrap()
            .interleaved
            .is_none());
        assert_eq!(
            Transport::parse(&t.to_header()).unwrap().client_port,
            t.client_port
        );
        assert!(Transport::parse("garbage").is_none());
    }
}
