//! A tiny HTTP/1.1 keep-alive GET client for the `hls` scenario: thousands of them run in
//! the tool next to the relay, so each request is one write and a few reads with no
//! per-request allocation beyond the body (hyper's client would do, at a higher cost per
//! request and with more to configure for the same plain GETs).

use anyhow::{bail, Context};
use bytes::{Buf, Bytes, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head or body accepted: a 2 s segment at 10 Mbit/s is 2.5 MB; a 2 h
/// DVR playlist ~300 KB.
const MAX_BODY: usize = 64 * 1024 * 1024;
const MAX_HEAD: usize = 16 * 1024;

pub struct Response {
    pub status: u16,
    pub body: Bytes,
    /// Head + body as read from the socket.
    pub wire_bytes: u64,
}

/// One keep-alive connection to 127.0.0.1:port; reconnects when the server closed it.
pub struct Client {
    port: u16,
    conn: Option<TcpStream>,
    buf: BytesMut,
    /// Connections opened (1 = keep-alive held all along).
    pub connects: u64,
}

impl Client {
    pub fn new(port: u16) -> Self {
        Client {
            port,
            conn: None,
            buf: BytesMut::with_capacity(64 * 1024),
            connects: 0,
        }
    }

    /// `GET path`, the whole response within `timeout`.
    pub async fn get(&mut self, path: &str, timeout: Duration) -> anyhow::Result<Response> {
        match tokio::time::timeout(timeout, self.get_inner(path)).await {
            Ok(r) => {
                if r.is_err() {
                    self.conn = None;
                }
                r
            }
            Err(_) => {
                self.conn = None;
                bail!("GET {path}: no answer within {timeout:?}")
            }
        }
    }

    async fn get_inner(&mut self, path: &str) -> anyhow::Result<Response> {
        // A kept-alive connection the server closed meanwhile fails on first use: retry once
        // on a fresh one.
        loop {
            let reused = self.conn.is_some();
            if !reused {
                let s = TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .context("connect")?;
                let _ = s.set_nodelay(true);
                self.conn = Some(s);
                self.buf.clear();
                self.connects += 1;
            }
            match self.exchange(path).await {
                Ok(r) => return Ok(r),
                Err(e) if reused && e.is::<Reused>() => self.conn = None,
                Err(e) => return Err(e),
            }
        }
    }

    async fn exchange(&mut self, path: &str) -> anyhow::Result<Response> {
        let s = self.conn.as_mut().context("no connection")?;
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: prism-load\r\n\r\n");
        if s.write_all(req.as_bytes()).await.is_err() {
            return Err(Reused.into());
        }
        let mut wire = 0u64;
        // Head.
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                bail!("response head over {MAX_HEAD} bytes");
            }
            let n = s.read_buf(&mut self.buf).await.unwrap_or(0);
            if n == 0 {
                if wire == 0 && self.buf.is_empty() {
                    return Err(Reused.into());
                }
                bail!("connection closed in a response head");
            }
            wire += n as u64;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("non-UTF-8 head")?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("no status code")?;
        let mut len = None;
        let mut close = false;
        for line in head.lines().skip(1) {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                len = v.parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                close = true;
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                bail!("chunked answers are not supported (both relays send Content-Length)");
            }
        }
        let len = match (len, status) {
            (Some(l), _) => l,
            (None, 204 | 304) => 0,
            (None, _) => bail!("answer {status} without Content-Length"),
        };
        if len > MAX_BODY {
            bail!("body of {len} bytes");
        }
        self.buf.advance(head_end);
        // Reads go straight into the buffer; a body larger than it reserves once.
        self.buf.reserve(len.saturating_sub(self.buf.len()));
        while self.buf.len() < len {
            let n = s.read_buf(&mut self.buf).await?;
            if n == 0 {
                bail!("connection closed in a body");
            }
            wire += n as u64;
        }
        let body = self.buf.split_to(len).freeze();
        if close {
            self.conn = None;
        }
        Ok(Response {
            status,
            body,
            wire_bytes: wire,
        })
    }
}

/// The kept-alive connection turned out closed before any answer: worth one retry.
#[derive(Debug)]
struct Reused;
impl std::fmt::Display for Reused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed before the answer")
    }
}
impl std::error::Error for Reused {}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    memchr::memmem::find(h, n)
}
