//! WHEP viewers (scenario `whep`): str0m clients that POST an SDP offer to Prism's WHEP
//! endpoint (`/<app>/<key>/whep`), do ICE and DTLS over loopback and receive the stream
//! as SRTP (H.264 video; the RTMP source's AAC as Opus).
//!
//! Each viewer is one tokio task with its own UDP socket, all on the tool's runtime threads
//! (no thread per viewer). Each is a [`SinkConn`], so the scenario measures them as it
//! measures RTMP players: `bytes` counts the UDP payloads received (what Prism sent), video
//! frames go through [`observe_mark`] (missing / reordered frames, latency from the
//! publisher's marker for every k-th viewer), and [`ParseStats::frame_at`] keeps the
//! longest stretch without a video frame inside the window (a viewer is frozen when it
//! exceeds [`FROZEN_AFTER`]).

use crate::media::{mark_at, Clock, Window, MAGIC};
use crate::sink::{lock, observe_mark, setup_counts, ConnList, SinkConn};
use anyhow::{bail, Context};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, RtcConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// Signalling + ICE + DTLS must finish within this.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// A viewer that went this long without a video frame inside the window froze.
pub const FROZEN_AFTER: Duration = Duration::from_secs(1);
/// Largest UDP datagram read (loopback MTU is larger than what str0m sends, 1200-ish).
const DATAGRAM: usize = 2048;

pub struct WhepViewers {
    pub conns: ConnList,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    crypto: Arc<str0m::config::CryptoProvider>,
}

impl WhepViewers {
    pub fn new() -> WhepViewers {
        WhepViewers {
            conns: ConnList::default(),
            tasks: Mutex::new(Vec::new()),
            crypto: Arc::new(str0m::crypto::from_feature_flags()),
        }
    }

    pub fn snapshot(&self) -> Vec<Arc<SinkConn>> {
        lock(&self.conns).clone()
    }

    /// Starts `n` viewers of http://127.0.0.1:`sig_port`/app/key/whep, `batch` at a time
    /// (the next batch once these are connected or failed, or after `batch_timeout`). About
    /// `latency` of them, every (n / latency)-th, record latency.
    #[allow(clippy::too_many_arguments)]
    pub async fn connect(
        &self,
        sig_port: u16,
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
        let path = format!("/{app}/{key}/whep");
        let mut started = 0;
        while started < n {
            let upto = (started + batch).min(n);
            let mut batch_conns = Vec::with_capacity(upto - started);
            for i in started..upto {
                let conn = Arc::new(SinkConn::new(i, true, i % stride == 0));
                *lock(&conn.name) = format!("w{i}");
                lock(&self.conns).push(conn.clone());
                batch_conns.push(conn.clone());
                let (path, window, crypto) = (path.clone(), window.clone(), self.crypto.clone());
                let h = tokio::spawn(async move {
                    if let Err(e) = view(&conn, sig_port, &path, crypto, clock, &window).await {
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
                        "  viewers {started}..{upto}: only {done} connected after {:.0} s; next batch",
                        tb.elapsed().as_secs_f64()
                    ));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            started = upto;
            let (_, live, closed) = setup_counts(&self.snapshot());
            progress(format!(
                "  whep: {live} connected, {closed} failed, {started} started of {n}"
            ));
        }
        Ok(())
    }

    pub fn shutdown(&self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

impl Drop for WhepViewers {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One WHEP POST (Connection: close): the answer SDP.
async fn post_offer(port: u16, path: &str, offer: &str) -> anyhow::Result<String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .context("signalling connect")?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{offer}",
        offer.len()
    );
    tcp.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    // The answer is a few KB; bound it anyway.
    (&mut tcp).take(1 << 20).read_to_end(&mut resp).await?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP head")?;
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "201" {
        bail!(
            "WHEP POST: {}: {}",
            head.lines().next().unwrap_or(""),
            body.trim()
        );
    }
    Ok(body.to_owned())
}

async fn view(
    conn: &SinkConn,
    sig_port: u16,
    path: &str,
    crypto: Arc<str0m::config::CryptoProvider>,
    clock: Clock,
    window: &Window,
) -> anyhow::Result<()> {
    let setup_deadline = Instant::now() + SETUP_TIMEOUT;
    let socket = UdpSocket::bind(("127.0.0.1", 0)).await?;
    let local = socket.local_addr()?;
    let mut rtc = RtcConfig::new()
        .set_crypto_provider(crypto)
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().context("no offer")?;
    let answer = tokio::time::timeout_at(
        setup_deadline.into(),
        post_offer(sig_port, path, &offer.to_sdp_string()),
    )
    .await
    .context("WHEP POST timed out")??;
    let answer = SdpAnswer::from_sdp_string(&answer).context("answer SDP")?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .context("accept answer")?;

    let mut buf = vec![0u8; DATAGRAM];
    loop {
        // Drain str0m to its next timeout (its contract: after every input).
        let timeout = loop {
            match rtc.poll_output()? {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(ev) => match ev {
                    Event::Connected => conn.publishing.store(true, Ordering::SeqCst),
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        bail!("ICE disconnected")
                    }
                    Event::MediaData(md) => {
                        let video = rtc
                            .media(md.mid)
                            .is_some_and(|m| m.kind() == MediaKind::Video);
                        if video {
                            frame(conn, &md.data, clock.now_ns(), window);
                        } else if conn.index == 0 && std::env::var_os("PRISM_LOAD_TRACE").is_some()
                        {
                            eprintln!("[trace] whep audio {} bytes", md.data.len());
                        }
                    }
                    _ => {}
                },
            }
        };
        if !conn.publishing.load(Ordering::Relaxed) && Instant::now() > setup_deadline {
            bail!("ICE/DTLS not connected within {SETUP_TIMEOUT:?}");
        }
        let input = tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, source) = r?;
                conn.bytes.fetch_add(n as u64, Ordering::Relaxed);
                match Receive::new(Protocol::Udp, source, local, &buf[..n]) {
                    Ok(r) => Input::Receive(Instant::now(), r),
                    // Not STUN/DTLS/RTP: ignore.
                    Err(_) => continue,
                }
            }
            _ = tokio::time::sleep_until(timeout.into()) => Input::Timeout(Instant::now()),
        };
        rtc.handle_input(input)?;
    }
}

/// One depacketized video access unit (Annex B) received at `now`.
fn frame(conn: &SinkConn, au: &[u8], now: u64, window: &Window) {
    conn.receiving.store(true, Ordering::Relaxed);
    let mark = memchr::memmem::find(au, MAGIC).and_then(|i| mark_at(&au[i..]));
    lock(&conn.stats).frame_at(now, window.bounds());
    observe_mark(conn, mark, now, window);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{video_frame, Sizes};
    use crate::sink::ParseStats;

    const S: u64 = 1_000_000_000;

    /// An RTMP video payload as the viewer gets it: Annex B, start code instead of the
    /// FLV header and AVCC length.
    fn annex_b(seq: u64, send_ns: u64) -> Vec<u8> {
        let flv = video_frame(0, seq, Sizes::for_bitrate(2000), send_ns);
        let mut au = vec![0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1];
        au.extend_from_slice(&flv[9..]);
        au
    }

    #[test]
    fn marker_found_in_annex_b_counts_frames_latency_and_gaps() {
        let conn = SinkConn::new(0, true, true);
        let w = Window::new();
        w.open(10 * S);
        frame(&conn, &annex_b(1, 10 * S), 10 * S + 5_000_000, &w);
        frame(
            &conn,
            &annex_b(2, 10 * S + S / 25),
            10 * S + S / 25 + 7_000_000,
            &w,
        );
        // Frame 3 lost.
        frame(
            &conn,
            &annex_b(4, 10 * S + 3 * S / 25),
            10 * S + 4 * S / 25,
            &w,
        );
        // No marker at all: still a frame (receiving), nothing else.
        frame(&conn, &[0, 0, 0, 1, 0x41, 1, 2, 3], 10 * S + 5 * S / 25, &w);
        let st = lock(&conn.stats);
        assert!(conn.receiving.load(Ordering::Relaxed));
        assert_eq!(st.video_msgs, 3);
        assert_eq!(st.gaps, 1);
        assert_eq!(st.latency_us[..2], [5000, 7000]);
        assert_eq!(st.latency_us[2], 40_000);
    }

    #[test]
    fn freeze_is_the_longest_stretch_inside_the_window() {
        let win = (10 * S, 20 * S);
        // Steady 25 fps across the window: no stretch above 40 ms.
        let mut st = ParseStats::default();
        for i in 0..=(12 * 25) {
            st.frame_at(9 * S + i * S / 25, win);
        }
        assert_eq!(st.longest_gap_ns(win), S / 25);

        // Frames before the window only: the whole window is one stretch.
        let mut st = ParseStats::default();
        st.frame_at(9 * S, win);
        assert_eq!(st.longest_gap_ns(win), 10 * S);
        assert_eq!(ParseStats::default().longest_gap_ns(win), 10 * S);

        // A 1.6 s hole in the middle.
        let mut st = ParseStats::default();
        for i in 0..=(10 * 25) {
            let t = 10 * S + i * S / 25;
            if !(12 * S + 1..13 * S + 3 * S / 5).contains(&t) {
                st.frame_at(t, win);
            }
        }
        assert_eq!(st.longest_gap_ns(win), 8 * S / 5);

        // Stopped at 17 s, resumed after the window: the tail counts up to the end only.
        let mut st = ParseStats::default();
        st.frame_at(10 * S, win);
        st.frame_at(17 * S, win);
        st.frame_at(25 * S, win);
        assert_eq!(st.longest_gap_ns(win), 7 * S);

        // Window still open (end = MAX) while frames arrive: no overflow.
        let mut st = ParseStats::default();
        st.frame_at(10 * S, (10 * S, u64::MAX));
        st.frame_at(11 * S, (10 * S, u64::MAX));
        assert_eq!(st.max_frame_gap_ns, S);
    }
}
