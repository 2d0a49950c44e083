//! RTMP players (scenario `players`): clients that connect to the relay and `play` the
//! stream, built from prism-rtmp's pieces (its `ClientSession` only publishes): the client
//! handshake, the chunk decoder and encoder, and AMF0 commands as ffmpeg sends them
//! (connect, createStream, play + Set Buffer Length).
//!
//! Each player is a [`SinkConn`], so the scenario measures players exactly as it measures
//! push targets. Every player parses every frame (missing, skipped and reordered frames
//! count for each). Latency is recorded by an evenly spread sample of them (every k-th
//! player), which read as soon as data arrives; the others read every [`LAZY_READ`] (the
//! socket buffer holds far more than that much media), so 10,000 players do not cost the
//! tool one read and one task wake-up per message each. Players acknowledge by the relay's
//! window and answer pings.

use crate::media::{Clock, Window};
use crate::sink::{lock, observe, ConnList, SinkConn};
use anyhow::{bail, Context};
use bytes::BytesMut;
use prism_amf0::Value;
use prism_rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits};
use prism_rtmp::control::Control;
use prism_rtmp::handshake::ClientHandshake;
use prism_rtmp::message::{csid, MessageType, RawMessage};
use prism_rtmp::OutQueue;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Initial read buffer of a player (grows for large messages). Small: there are thousands.
const READ_BUF: usize = 16 * 1024;
const TXN_CONNECT: f64 = 1.0;
const TXN_CREATE_STREAM: f64 = 2.0;
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
                let done = batch_conns
                    .iter()
                    .filter(|c| {
                        c.publishing.load(Ordering::Relaxed) || c.closed.load(Ordering::Relaxed)
                    })
                    .count();
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
                    progress(format!(
                        "  players: {} playing, {} failed, {} started of {n} ({:.1} s)",
                        all.iter()
                            .filter(|c| c.publishing.load(Ordering::Relaxed)
                                && !c.closed.load(Ordering::Relaxed))
                            .count(),
                        all.iter()
                            .filter(|c| c.closed.load(Ordering::Relaxed))
                            .count(),
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

/// One player's connection.
struct Conn {
    wr: OwnedWriteHalf,
    encoder: ChunkEncoder,
    out: OutQueue,
}

impl Conn {
    fn command(&mut self, stream_id: u32, vals: &[Value]) {
        let mut payload = BytesMut::new();
        prism_amf0::encode_all(vals, &mut payload);
        let msg = RawMessage {
            timestamp: 0,
            type_id: MessageType::COMMAND_AMF0,
            stream_id,
            payload: payload.freeze(),
        };
        self.encoder.write(csid::COMMAND, &msg, &mut self.out);
    }

    fn control(&mut self, c: Control) {
        self.encoder
            .write(csid::CONTROL, &c.to_message(), &mut self.out);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            let b = self.out.take_all();
            self.wr.write_all(&b).await?;
        }
        Ok(())
    }
}

/// The status `code` of an onStatus / _error command, and whether its level is "error".
fn status(vals: &[Value]) -> (String, bool) {
    let info = vals.get(3);
    let code = info
        .and_then(|i| i.get("code"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let level = info
        .and_then(|i| i.get("level"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    (code, level == "error")
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
    let (mut rd, wr) = tcp.into_split();
    let mut c = Conn {
        wr,
        encoder: ChunkEncoder::new(),
        out: OutQueue::new(),
    };
    let mut input = BytesMut::with_capacity(READ_BUF);

    // Handshake.
    let mut random = [0u8; 32];
    let seed = clock.now_ns() ^ (conn.index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for (i, b) in random.iter_mut().enumerate() {
        *b = (seed >> ((i % 8) * 8)) as u8 ^ i as u8;
    }
    let mut hs = ClientHandshake::new(random, 0, &mut c.out);
    let mut total: u64 = 0;
    loop {
        c.flush().await?;
        if hs.handle_input(&mut input, &mut c.out)? {
            break;
        }
        let n = tokio::time::timeout_at(setup_deadline, rd.read_buf(&mut input))
            .await
            .context("handshake timed out")??;
        if n == 0 {
            bail!("relay closed the connection during the handshake");
        }
        total += n as u64;
        conn.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    let tc_url = format!("rtmp://127.0.0.1:{port}/{app}");
    c.encoder.set_chunk_size(4096, &mut c.out);
    c.command(
        0,
        &[
            Value::String("connect".into()),
            Value::Number(TXN_CONNECT),
            Value::object([
                ("app", Value::String(app.into())),
                ("flashVer", Value::String("LNX 9,0,124,2".into())),
                ("tcUrl", Value::String(tc_url)),
                ("fpad", Value::Boolean(false)),
                ("capabilities", Value::Number(15.0)),
                ("audioCodecs", Value::Number(4071.0)),
                ("videoCodecs", Value::Number(252.0)),
                ("videoFunction", Value::Number(1.0)),
            ]),
        ],
    );
    c.flush().await?;

    let mut decoder = ChunkDecoder::new(DecoderLimits::default());
    // The relay's Window Acknowledgement Size (0 = none announced).
    let mut window_ack: u64 = 0;
    let mut last_ack: u64 = 0;
    // Counting-only mode (non-parsing players), entered at the first video frame of ours.
    let mut counting = false;
    loop {
        // Decode everything buffered.
        let now = clock.now_ns();
        while !counting {
            let Some(msg) = decoder.decode(&mut input)? else {
                break;
            };
            match msg.type_id {
                MessageType::VIDEO | MessageType::AUDIO => {
                    let video = msg.type_id == MessageType::VIDEO;
                    if observe(conn, video, &msg.payload, now, window) && video && !conn.parse {
                        counting = true;
                    }
                }
                MessageType::COMMAND_AMF0 => {
                    let vals = prism_amf0::decode_all(&msg.payload).context("AMF0 command")?;
                    let name = vals.first().and_then(Value::as_str).unwrap_or_default();
                    let txn = vals.get(1).and_then(Value::as_f64).unwrap_or(0.0);
                    match name {
                        "_result" if txn == TXN_CONNECT => {
                            c.control(Control::WindowAckSize(5_000_000));
                            c.command(
                                0,
                                &[
                                    Value::String("createStream".into()),
                                    Value::Number(TXN_CREATE_STREAM),
                                    Value::Null,
                                ],
                            );
                        }
                        "_result" if txn == TXN_CREATE_STREAM => {
                            let sid = vals
                                .get(3)
                                .and_then(Value::as_f64)
                                .context("createStream _result without a stream id")?
                                as u32;
                            c.command(
                                sid,
                                &[
                                    Value::String("play".into()),
                                    Value::Number(0.0),
                                    Value::Null,
                                    Value::String(key.into()),
                                    Value::Number(-1000.0),
                                ],
                            );
                            c.control(Control::SetBufferLength {
                                stream_id: sid,
                                ms: 3000,
                            });
                        }
                        "_error" => {
                            let (code, _) = status(&vals);
                            bail!("relay answered {name} to transaction {txn}: {code}");
                        }
                        "onStatus" => {
                            let (code, error) = status(&vals);
                            if error || code.contains("Failed") || code.contains("NotFound") {
                                bail!("play refused: {code}");
                            }
                            if code == "NetStream.Play.Start" {
                                conn.publishing.store(true, Ordering::SeqCst);
                            }
                        }
                        _ => {}
                    }
                }
                _ => match Control::parse(&msg)? {
                    Some(Control::WindowAckSize(w)) => window_ack = w as u64,
                    Some(Control::PingRequest(t)) => c.control(Control::PingResponse(t)),
                    _ => {}
                },
            }
        }
        if counting {
            input.clear();
        }
        if window_ack > 0 && total - last_ack >= window_ack / 2 {
            last_ack = total;
            c.control(Control::Acknowledgement(total as u32));
        }
        c.flush().await?;
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
        total += n as u64;
        conn.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}
