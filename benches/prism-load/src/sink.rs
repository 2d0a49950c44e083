//! The sink: one in-process RTMP server that accepts any number of publish connections
//! (the relay's push targets) and counts what arrives on each.
//!
//! The first `parse_sinks` connections run a full [`ServerSession`] for their whole life and
//! match every media message against the publisher (latency, missing and reordered frames).
//! The others run the session only until the first video frame of ours arrives (which also
//! tells which publisher feeds them), then just count bytes with a large read buffer (and
//! send RTMP acknowledgements by hand), which keeps the tool cheap at hundreds of targets.
//!
//! [`SinkConn`] and [`observe`] are shared with the RTMP players (`player.rs`).

use crate::media::{parse_mark, Clock, Kind, Mark, Window};
use bytes::BytesMut;
use prism_rtmp::session::{MediaKind, ServerEvent, ServerSession, SessionConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

const READ_BUF: usize = 256 * 1024;
/// Counting-only sinks acknowledge at least this often (the window relays announce is
/// 2.5 MB for Prism; acknowledging more often is harmless).
const ACK_EVERY: u64 = 1_000_000;
/// Listen backlog of the sink: a relay connecting thousands of targets at once must not
/// overflow it (SYN retries would delay targets by seconds).
const BACKLOG: u32 = 4096;

/// Every connection of a sink or of the players, in accept / connect order.
pub type ConnList = Arc<Mutex<Vec<Arc<SinkConn>>>>;

/// What one sink (or player) connection saw.
#[derive(Debug)]
pub struct SinkConn {
    /// Accept (or connect) order, from 0.
    pub index: usize,
    /// Matches every media message (missing and reordered frames).
    pub parse: bool,
    /// Also records each message's latency (every parsing sink; a sample of the players).
    pub latency: bool,
    /// Raw bytes read (chunk headers included), since accept.
    pub bytes: AtomicU64,
    /// Sink: the relay's publish was accepted. Player: NetStream.Play.Start arrived.
    pub publishing: AtomicBool,
    /// Media is flowing (a video frame of ours arrived).
    pub receiving: AtomicBool,
    pub closed: AtomicBool,
    /// Index of the publisher whose frames arrive here (from the frame markers);
    /// `usize::MAX` until the first one.
    pub stream: AtomicUsize,
    /// "app/key" of the publish (sinks), "p<index>" (players).
    pub name: Mutex<String>,
    pub error: Mutex<Option<String>>,
    pub stats: Mutex<ParseStats>,
}

/// Of `conns`: how many are set up or gone (a batch waits for all), and how many of those
/// are live and how many closed (for progress lines).
pub fn setup_counts(conns: &[Arc<SinkConn>]) -> (usize, usize, usize) {
    let (mut live, mut closed) = (0, 0);
    for c in conns {
        if c.closed.load(Ordering::Relaxed) {
            closed += 1;
        } else if c.publishing.load(Ordering::Relaxed) {
            live += 1;
        }
    }
    (live + closed, live, closed)
}

impl SinkConn {
    pub fn new(index: usize, parse: bool, latency: bool) -> SinkConn {
        SinkConn {
            index,
            parse,
            latency,
            bytes: AtomicU64::new(0),
            publishing: AtomicBool::new(false),
            receiving: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stream: AtomicUsize::new(usize::MAX),
            name: Mutex::new(String::new()),
            error: Mutex::new(None),
            stats: Mutex::new(ParseStats::default()),
        }
    }

    /// The publisher feeding this connection, if a frame of ours arrived.
    pub fn stream(&self) -> Option<usize> {
        match self.stream.load(Ordering::Relaxed) {
            usize::MAX => None,
            s => Some(s),
        }
    }
}

/// One audio or video message received at `now` (tool clock): latency, sequence gaps and
/// reorders for frames sent inside the window. Returns whether the payload carried our
/// marker.
pub fn observe(conn: &SinkConn, is_video: bool, payload: &[u8], now: u64, window: &Window) -> bool {
    if is_video {
        conn.receiving.store(true, Ordering::Relaxed);
    }
    observe_mark(conn, parse_mark(is_video, payload), now, window)
}

/// [`observe`] of a marker already found (WHEP viewers find it in Annex B access units).
pub fn observe_mark(conn: &SinkConn, mark: Option<Mark>, now: u64, window: &Window) -> bool {
    let Some(m) = mark else {
        return false;
    };
    conn.stream.store(m.stream as usize, Ordering::Relaxed);
    let (k, seq, sent) = (m.kind, m.seq, m.send_ns);
    if conn.index == 0 && std::env::var_os("PRISM_LOAD_TRACE").is_some() {
        eprintln!(
            "[trace] {k:?} {seq} sent {} lat {} us in_window {}",
            sent / 1_000_000,
            now.saturating_sub(sent) / 1000,
            window.contains(sent)
        );
    }
    if !window.contains(sent) {
        return true;
    }
    let mut st = lock(&conn.stats);
    let lat = now.saturating_sub(sent) / 1000;
    if conn.latency {
        st.latency_us.push(lat.min(u32::MAX as u64) as u32);
    }
    let slot = match k {
        Kind::Video => {
            st.video_msgs += 1;
            0
        }
        Kind::Audio => {
            st.audio_msgs += 1;
            1
        }
    };
    if let Some(last) = st.last_seq[slot] {
        if seq > last + 1 {
            st.gaps += seq - last - 1;
            if std::env::var_os("PRISM_LOAD_DEBUG").is_some() {
                eprintln!(
                    "[conn {}] {k:?} gap: {last} -> {seq} ({} ms after send)",
                    conn.index,
                    lat / 1000
                );
            }
        } else if seq <= last {
            st.reorders += 1;
        }
    }
    st.last_seq[slot] = Some(seq);
    true
}

/// Per-message observations of a parsing sink, for messages sent inside the window.
#[derive(Debug, Default, Clone)]
pub struct ParseStats {
    /// Relay-added latency of each message, in microseconds.
    pub latency_us: Vec<u32>,
    pub video_msgs: u64,
    pub audio_msgs: u64,
    /// Frames skipped (sequence number jumped forward), per kind summed.
    pub gaps: u64,
    /// Frames that came with a sequence number not above the previous one.
    pub reorders: u64,
    pub last_seq: [Option<u64>; 2],
    /// WHEP viewers: tool-clock time of the last video frame, and the longest stretch inside
    /// the window without one (see [`ParseStats::frame_at`]).
    pub last_frame_ns: Option<u64>,
    pub max_frame_gap_ns: u64,
}

impl ParseStats {
    /// A video frame arrived at `now`; `(start, end)` is the window. Stretches without a
    /// frame count from the window's start (or the last frame, if later).
    pub fn frame_at(&mut self, now: u64, (start, end): (u64, u64)) {
        if now >= start {
            let from = self.last_frame_ns.map_or(start, |l| l.max(start));
            if from < end {
                // A frame after the window closes the stretch at the window's end.
                let to = now.min(end);
                self.max_frame_gap_ns = self.max_frame_gap_ns.max(to.saturating_sub(from));
            }
        }
        self.last_frame_ns = Some(now);
    }

    /// The longest stretch without a video frame over the closed window `(start, end)`,
    /// the tail after the last frame included (the whole window if none came).
    pub fn longest_gap_ns(&self, (start, end): (u64, u64)) -> u64 {
        let from = self.last_frame_ns.map_or(start, |l| l.max(start));
        self.max_frame_gap_ns.max(end.saturating_sub(from))
    }
}

pub struct Sink {
    pub port: u16,
    pub conns: ConnList,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Sink {
    /// `parse_sinks` of the `expected` connections parse every message: every k-th accepted,
    /// so the sample spans the relay's fan-out order (the first connected are also the first
    /// served, and would look faster than the rest).
    pub async fn start(
        parse_sinks: usize,
        expected: usize,
        clock: Clock,
        window: Arc<Window>,
    ) -> anyhow::Result<Sink> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let listener = socket.listen(BACKLOG)?;
        let port = listener.local_addr()?.port();
        let conns: ConnList = Arc::default();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (c2, t2) = (conns.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let conn = {
                    let mut v = lock(&c2);
                    let stride = expected.div_ceil(parse_sinks.max(1)).max(1);
                    let parse = v.len() % stride == 0 && v.len() / stride < parse_sinks;
                    let conn = Arc::new(SinkConn::new(v.len(), parse, parse));
                    v.push(conn.clone());
                    conn
                };
                let window = window.clone();
                let h = tokio::spawn(async move {
                    let r = serve(&conn, sock, clock, &window).await;
                    if let Err(e) = r {
                        *lock(&conn.error) = Some(e.to_string());
                    }
                    conn.closed.store(true, Ordering::SeqCst);
                });
                lock(&t2).push(h);
            }
        });
        Ok(Sink {
            port,
            conns,
            tasks,
            accept,
        })
    }

    pub fn snapshot(&self) -> Vec<Arc<SinkConn>> {
        lock(&self.conns).clone()
    }

    pub fn shutdown(&self) {
        self.accept.abort();
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn serve(
    conn: &SinkConn,
    sock: TcpStream,
    clock: Clock,
    window: &Window,
) -> anyhow::Result<()> {
    let _ = sock.set_nodelay(true);
    let (mut rd, mut wr) = sock.into_split();
    let mut random = [0u8; 32];
    let seed = clock.now_ns() ^ (conn.index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for (i, b) in random.iter_mut().enumerate() {
        *b = (seed >> ((i % 8) * 8)) as u8 ^ i as u8;
    }
    let mut session = ServerSession::new(
        SessionConfig::default(),
        random,
        0,
        std::time::Instant::now(),
    );
    let mut input = BytesMut::with_capacity(READ_BUF);
    let mut total: u64 = 0;
    // Counting-only mode (non-parsing sinks), entered at the first video frame of ours.
    let mut counting = false;
    let mut last_ack: u64 = 0;
    loop {
        if input.capacity() - input.len() < READ_BUF / 4 {
            input.reserve(READ_BUF);
        }
        let n = rd.read_buf(&mut input).await?;
        if n == 0 {
            return Ok(());
        }
        total += n as u64;
        conn.bytes.fetch_add(n as u64, Ordering::Relaxed);
        if counting {
            input.clear();
            if total - last_ack >= ACK_EVERY {
                last_ack = total;
                wr.write_all(&ack_chunk(total as u32)).await?;
            }
            continue;
        }
        let now = clock.now_ns();
        session.handle_input(&mut input, std::time::Instant::now())?;
        while let Some(ev) = session.poll_event() {
            match ev {
                ServerEvent::PublishRequested {
                    stream_id,
                    app,
                    key,
                    ..
                } => {
                    session.accept_publish(stream_id);
                    *lock(&conn.name) = format!("{app}/{key}");
                    conn.publishing.store(true, Ordering::SeqCst);
                }
                ServerEvent::Media {
                    kind: kind @ (MediaKind::Video | MediaKind::Audio),
                    payload,
                    ..
                } => {
                    let video = kind == MediaKind::Video;
                    if observe(conn, video, &payload, now, window) && video && !conn.parse {
                        counting = true;
                        last_ack = total;
                    }
                }
                _ => {}
            }
        }
        let out = session.out();
        if !out.is_empty() {
            let bytes = out.take_all();
            wr.write_all(&bytes).await?;
        }
        if counting {
            input.clear();
        }
    }
}

/// An RTMP Acknowledgement (type 3) on chunk stream 2.
fn ack_chunk(seq: u32) -> [u8; 16] {
    let s = seq.to_be_bytes();
    [
        0x02, 0, 0, 0, 0, 0, 4, 0x03, 0, 0, 0, 0, s[0], s[1], s[2], s[3],
    ]
}
