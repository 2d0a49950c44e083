//! A blocking RTMP player on prism-rtmp's `ClientSession::play`, for tests that need to
//! see (or deliberately not read) what Prism sends a player, frame by frame.

use bytes::BytesMut;
use prism_rtmp::session::{ClientConfig, ClientEvent, ClientSession, MediaKind, SessionConfig};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Media the player received.
#[derive(Debug, Clone)]
pub struct Media {
    pub kind: MediaKind,
    pub timestamp: u32,
    pub payload: bytes::Bytes,
}

/// One blocking player connection.
pub struct RtmpPlayer {
    sock: TcpStream,
    session: ClientSession,
    input: BytesMut,
    events: VecDeque<ClientEvent>,
}

/// Connects to `addr` and plays `app/key`; returns once NetStream.Play.Start arrived.
/// Panics if Prism refuses the play or closes the connection first.
pub fn rtmp_player(addr: SocketAddr, app: &str, key: &str) -> RtmpPlayer {
    RtmpPlayer::play(addr, app, key)
}

impl RtmpPlayer {
    /// See [`rtmp_player`].
    pub fn play(addr: SocketAddr, app: &str, key: &str) -> RtmpPlayer {
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        sock.set_write_timeout(Some(Duration::from_secs(10)))
            .expect("write timeout");
        sock.set_nodelay(true).expect("nodelay");
        let config = ClientConfig {
            app: app.into(),
            tc_url: format!("rtmp://{addr}/{app}"),
            key: key.into(),
            session: SessionConfig::default(),
        };
        let session = ClientSession::play(config, [7; 32], 0, Instant::now());
        let mut p = RtmpPlayer {
            sock,
            session,
            input: BytesMut::new(),
            events: VecDeque::new(),
        };
        p.flush();
        match p.next_event() {
            ClientEvent::Playing => p,
            other => panic!("{other:?} before NetStream.Play.Start"),
        }
    }

    /// The next event (reading as needed); panics on a session error, a read error or
    /// timeout (10 s), or EOF.
    pub fn next_event(&mut self) -> ClientEvent {
        loop {
            if let Some(ev) = self.events.pop_front() {
                return ev;
            }
            self.fill();
        }
    }

    /// The next media message; panics if the play ends first.
    pub fn next_media(&mut self) -> Media {
        match self.next_event() {
            ClientEvent::Media {
                kind,
                timestamp,
                payload,
            } => Media {
                kind,
                timestamp,
                payload,
            },
            other => panic!("expected media, got {other:?}"),
        }
    }

    /// Reads media until the first message of `kind`, which it returns.
    pub fn wait_media(&mut self, kind: MediaKind) -> Media {
        loop {
            let m = self.next_media();
            if m.kind == kind {
                return m;
            }
        }
    }

    fn fill(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        let n = match self.sock.read(&mut buf) {
            Ok(0) => panic!("prism closed the player connection"),
            Ok(n) => n,
            Err(e) => panic!("reading from prism: {e}"),
        };
        self.input.extend_from_slice(&buf[..n]);
        self.session
            .handle_input(&mut self.input, Instant::now())
            .unwrap_or_else(|e| panic!("player session: {e}"));
        while let Some(ev) = self.session.poll_event() {
            self.events.push_back(ev);
        }
        // Acknowledgements and ping responses.
        self.flush();
    }

    fn flush(&mut self) {
        let bytes = self.session.out().take_all();
        if !bytes.is_empty() {
            self.sock.write_all(&bytes).expect("write to prism");
        }
    }

    /// Reads (and discards) everything left until the peer closes, bypassing the session.
    /// `Ok(bytes)` on EOF or reset; `Err` if the connection is still open after `timeout`.
    pub fn drain_to_close(&mut self, timeout: Duration) -> Result<u64, String> {
        let deadline = Instant::now() + timeout;
        self.sock
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("read timeout");
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(total),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(format!("reading the player's socket: {e}")),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "still open {timeout:?} later ({total} bytes drained)"
                ));
            }
        }
    }
}

/// One blocking RTMP publisher on prism-rtmp's `ClientSession`, for tests that watch what
/// Prism tells a publisher (refusals, the status before a close) or open many at once.
pub struct RtmpPublisher {
    sock: TcpStream,
    session: ClientSession,
    input: BytesMut,
}

impl RtmpPublisher {
    /// Connects to `addr` and publishes `app/key`; returns once NetStream.Publish.Start
    /// arrived. `Err` says why not: the refusal's code and description, or the close.
    pub fn publish(addr: SocketAddr, app: &str, key: &str) -> Result<RtmpPublisher, String> {
        RtmpPublisher::publish_with_caps(addr, app, key, None)
    }

    /// [`RtmpPublisher::publish`] announcing Enhanced RTMP v2 `capsEx` in connect.
    pub fn publish_with_caps(
        addr: SocketAddr,
        app: &str,
        key: &str,
        caps_ex: Option<u32>,
    ) -> Result<RtmpPublisher, String> {
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("read timeout");
        sock.set_write_timeout(Some(Duration::from_secs(10)))
            .expect("write timeout");
        sock.set_nodelay(true).expect("nodelay");
        let config = ClientConfig {
            app: app.into(),
            tc_url: format!("rtmp://{addr}/{app}"),
            key: key.into(),
            session: SessionConfig::default(),
        };
        let mut p = RtmpPublisher {
            sock,
            session: ClientSession::new(config, [7; 32], 0, Instant::now()),
            input: BytesMut::new(),
        };
        if let Some(caps) = caps_ex {
            p.session.announce_caps_ex(caps);
        }
        while !p.session.is_publishing() {
            p.flush()?;
            p.fill()?;
        }
        Ok(p)
    }

    /// The code of the last onStatus Prism sent this publisher.
    pub fn last_status(&self) -> Option<&str> {
        self.session.last_status()
    }

    /// The `tcUrl` of a `NetConnection.Connect.ReconnectRequest` Prism sent (`Some(None)`:
    /// one without a tcUrl); `None` if none came.
    pub fn reconnect_request(&self) -> Option<Option<String>> {
        self.session
            .reconnect_request()
            .map(|u| u.map(str::to_owned))
    }

    /// Sends one media message.
    pub fn send(&mut self, kind: MediaKind, timestamp: u32, payload: &bytes::Bytes) {
        self.session.send_media(kind, timestamp, payload);
        self.flush().expect("write to prism");
    }

    /// Reads until Prism closes the connection (EOF or reset), handling what arrives, so
    /// [`RtmpPublisher::last_status`] is what was said last. `Err` if still open after
    /// `timeout`.
    pub fn wait_close(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        self.sock
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        loop {
            match self.fill() {
                Ok(()) => {}
                Err(e) if e.starts_with("closed") => return Ok(()),
                Err(e) if e.contains("timed out") || e.contains("would block") => {}
                Err(e) if e.contains("reset") => return Ok(()),
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(format!("still open {timeout:?} later"));
            }
        }
    }

    fn fill(&mut self) -> Result<(), String> {
        let mut buf = [0u8; 16 * 1024];
        let n = match self.sock.read(&mut buf) {
            Ok(0) => return Err("closed by prism".into()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return Err("connection reset".into())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!("read timed out: {e}"))
            }
            Err(e) => return Err(format!("read: {e}")),
        };
        self.input.extend_from_slice(&buf[..n]);
        self.session
            .handle_input(&mut self.input, Instant::now())
            .map_err(|e| format!("{e}"))?;
        while self.session.poll_event().is_some() {}
        self.flush()
    }

    fn flush(&mut self) -> Result<(), String> {
        let bytes = self.session.out().take_all();
        if bytes.is_empty() {
            return Ok(());
        }
        self.sock
            .write_all(&bytes)
            .map_err(|e| format!("write: {e}"))
    }
}
