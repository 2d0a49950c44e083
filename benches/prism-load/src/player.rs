//! RTMP players (scenario `players`): clients that connect to the relay and `play` the
//! stream with prism-rtmp's `ClientSession::play` (connect, createStream, play + Set
//! Buffer Length, as ffmpeg does).
//!
//! Each player is a [`SinkConn`], so the scenario measures players exactly as it measures
//! push targets. Every player parses every frame (missing, skipped and reordered frames
//! count for each). Latency is recorded by an evenly spread sample of them (every k-th
//! player), which read as soon as data arrives; the others read every [`LAZY_READ`] (the
//! socket buffer holds far more than that much media), so 10,000 players do not cost the
//! tool one read and one task wake-up per message each. The session acknowledges by the
//! relay's window and answers pings.

use crate::media::{Clock, Window};
use crate::sink::{lock, observe, setup_counts, ConnList, SinkConn};
use anyhow::Context;
use bytes::BytesMut;
use prism_rtmp::session::{ClientConfig, ClientEvent, ClientSession, MediaKind, SessionConfig};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Initial read buffer of a player (grows for large messages). Small: there are thousands.
const READ_BUF: usize = 16 * 1024;
/// Players outside the latency sample read this often.
pub const LAZY_READ: Duration = Duration::from_millis(100);
/// Connect + handshake + play must finish within this.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Players {
    pub conns: ConnList,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Players {
    pub fn new() -> Players {
        Players {
            conns: ConnList::default(),
            tasks: Mutex::new(Vec::new()),
        }
    }

    pub fn snapshot(&self) -> Vec<Arc<SinkConn>> {
        lock(&self.conns).clone()
    }

    /// Starts `n` players of rtmp://127.0.0.1:port/app/key, `batch` at a time: the next batch
    /// starts when every player of this one plays (or failed), or after `batch_timeout`.
    /// About `latency` players, every (n / latency)-th, record latency. `progress` gets a
    /// line every 2 s.
    #[allow(clippy::too_many_arguments)]
    pub async fn connect(
        &self,
        port: u16,
        app: &str,
        key: &str,
        n: usize,
        batch: usize,
        latency: usize,
        batch_timeout: Duration,
        clock: Clock,
        window: Arc<Window>,
        progress: impl Fn(String),
    ) -> anyhow::Result<()> {
        let batch = batch.max(1);
        let stride = n.div_ceil(latency.max(1)).max(1);
        let t0 = Instant::now();
        let mut last_report = Instant::now();
        let mut started = 0;
        while started < n {
            let upto = (started + batch).min(n);
            let mut batch_conns = Vec::with_capacity(upto - started);
            for i in started..upto {
                let conn = Arc::new(SinkConn::new(i, true, i % stride == 0));
                *lock(&conn.name) = format!("p{i}");
                lock(&self.conns).push(conn.clone());
                batch_conns.push(conn.clone());
                let (app, key, window) = (app.to_owned(), key.to_owned(), window.clone());
                let h = tokio::spawn(async move {
                    if let Err(e) = play(&conn, port, &app, &key, clock, &window).await {
                        *lock(&conn.error) = Some(format!("{e:#}"));
                    }
                    conn.closed.store(true, Ordering::SeqCst);
                });
                lock(&self.tasks).push(h);
            }
            let tb = Instant::now();
            loop {
                let (done, _, _) = setup_counts(&batch_conns);
                if done == batch_conns.len() {
                    break;
                }
                if tb.elapsed() > batch_timeout {
                    progress(format!(
                        "  players {started}..{upto}: only {done} set up after {:.0} s; next batch",
                        tb.elapsed().as_secs_f64()
                    ));
                    break;
                }
                if last_report.elapsed() > Duration::from_secs(2) {
                    last_report = Instant::now();
                    let all = self.snapshot();
                    let (_, live, closed) = setup_counts(&all);
                    progress(format!(
                        "  players: {live} playing, {closed} failed, {} started of {n} ({:.1} s)",
                        all.len(),
                        t0.elapsed().as_secs_f64()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            started = upto;
        }
        Ok(())
    }

    pub fn shutdown(&self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

impl Drop for Players {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn play(
    conn: &SinkConn,
    port: u16,
    app: &str,
    key: &str,
    clock: Clock,
    window: &Window,
) -> anyhow::Result<()> {
    let setup_deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    let tcp = tokio::time::timeout_at(setup_deadline, TcpStream::connect(("127.0.0.1", port)))
        .await
        .context("connect timed out")?
        .context("connect")?;
    let _ = tcp.set_nodelay(true);
    let (mut rd, mut wr) = tcp.into_split();
    let mut input = BytesMut::with_capacity(READ_BUF);

    let mut random = [0u8; 32];
    let seed = clock.now_ns() ^ (conn.index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for (i, b) in random.iter_mut().enumerate() {
        *b = (seed >> ((i % 8) * 8)) as u8 ^ i as u8;
    }
    let config = ClientConfig {
        app: app.into(),
        tc_url: format!("rtmp://127.0.0.1:{port}/{app}"),
        key: key.into(),
        session: SessionConfig {
            window_ack_size: 5_000_000,
            // The deadlines below enforce it; the session's timer is never run.
            handshake_timeout: SETUP_TIMEOUT,
            ..SessionConfig::default()
        },
    };
    let mut session = ClientSession::play(config, random, 0, Instant::now());
    loop {
        // The handshake, commands, acknowledgements (by the relay's window) and pings.
        let out = session.out();
        if !out.is_empty() {
            wr.write_all(&out.take_all()).await?;
        }
        if input.capacity() - input.len() < READ_BUF / 4 {
            input.reserve(READ_BUF);
        }
        let playing = conn.publishing.load(Ordering::Relaxed);
        if playing && !conn.latency {
            tokio::time::sleep(LAZY_READ).await;
        }
        let n = if playing {
            let mut n = rd.read_buf(&mut input).await?;
            // A lazy reader takes everything the socket holds (it may be more than the
            // buffer's spare room at high bitrates).
            while !conn.latency && n > 0 {
                if input.capacity() - input.len() < READ_BUF / 4 {
                    input.reserve(READ_BUF);
                }
                match rd.try_read_buf(&mut input) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.into()),
                }
            }
            n
        } else {
            tokio::time::timeout_at(setup_deadline, rd.read_buf(&mut input))
                .await
                .context("play set-up timed out")??
        };
        if n == 0 {
            return Ok(());
        }
        conn.bytes.fetch_add(n as u64, Ordering::Relaxed);
        // A refused play (Play.Failed, StreamNotFound, _error) is SessionError::Refused.
        session.handle_input(&mut input, Instant::now())?;
        let now = clock.now_ns();
        while let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::Playing => conn.publishing.store(true, Ordering::SeqCst),
                ClientEvent::Media { kind, payload, .. } => {
                    if kind != MediaKind::Data {
                        observe(conn, kind == MediaKind::Video, &payload, now, window);
                    }
                }
                ClientEvent::PlayEnded => return Ok(()),
                ClientEvent::Publishing => {}
            }
        }
    }
}
