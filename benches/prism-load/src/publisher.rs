//! The publisher: one [`ClientSession`] pushing the synthetic stream to the relay in real
//! time, paced by the wall clock.
//!
//! Media can be paused (`media` = false): the publisher then sends no frames, only an RTMP
//! Acknowledgement every few seconds so the relay does not drop it as idle (nginx-rtmp's
//! `timeout`, Prism's `idle_timeout_ms`). It starts paused after the sequence headers, so
//! targets and players can connect to an idle stream first; when resumed, the media clock
//! continues where it stopped (no burst of "late" frames).

use crate::media::{self, Clock, Sizes, Window};
use anyhow::{bail, Context};
use bytes::BytesMut;
use prism_rtmp::session::{ClientConfig, ClientEvent, ClientSession, MediaKind, SessionConfig};
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Default)]
pub struct PubStats {
    /// Bytes written to the relay socket (chunk headers included).
    pub wire_bytes: AtomicU64,
    pub publishing: AtomicBool,
    /// Media messages whose send time fell inside the window.
    pub window_video: AtomicU64,
    pub window_audio: AtomicU64,
    /// Largest lag behind the schedule seen when a frame was sent, in µs.
    pub max_lag_us: AtomicU64,
}

pub struct PublishTarget {
    pub port: u16,
    pub app: String,
    pub key: String,
    /// Written into every frame's marker, so sinks know which publisher a frame came from.
    pub stream: u16,
    /// Media time runs this many times faster than the wall clock (1 = real time): fills a
    /// long HLS DVR window (media time) in seconds.
    pub speed: u32,
}

/// Chunk stream for the keep-alive acknowledgements: one the session never uses, with a
/// full (type 0) header every time, so it cannot disturb the session's own header
/// compression. Below 32 (nginx-rtmp's default `max_streams`).
const KEEPALIVE_CSID: u8 = 7;
const KEEPALIVE_EVERY: Duration = Duration::from_secs(3);

#[allow(clippy::too_many_arguments)]
pub async fn run(
    target: PublishTarget,
    kbps: u64,
    clock: Clock,
    window: Arc<Window>,
    stats: Arc<PubStats>,
    mut media_on: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(("127.0.0.1", target.port))
        .await
        .context("publisher: connect to the relay")?;
    let _ = tcp.set_nodelay(true);
    let (mut rd, mut wr) = tcp.into_split();
    let mut session = ClientSession::new(
        ClientConfig {
            app: target.app.clone(),
            tc_url: format!("rtmp://127.0.0.1:{}/{}", target.port, target.app),
            key: target.key.clone(),
            session: SessionConfig::default(),
        },
        [7u8; 32],
        0,
        Instant::now().into_std(),
    );
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut pending = prism_rtmp::OutQueue::new();

    // Set-up: handshake, connect, createStream, publish.
    let setup = async {
        loop {
            pending.append(session.out());
            while !pending.is_empty() {
                let n = write_some(&mut wr, &pending).await?;
                pending.advance(n);
                stats.wire_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            if session.is_publishing() {
                return anyhow::Ok(());
            }
            if rd.read_buf(&mut input).await? == 0 {
                bail!("relay closed the publisher connection during set-up");
            }
            session.handle_input(&mut input, Instant::now().into_std())?;
            while let Some(ClientEvent::Publishing) = session.poll_event() {}
        }
    };
    tokio::time::timeout(Duration::from_secs(15), setup)
        .await
        .context("publisher: publish set-up timed out")??;
    stats.publishing.store(true, Ordering::SeqCst);

    let sizes = Sizes::for_bitrate(kbps);
    session.send_media(MediaKind::Data, 0, &media::metadata(kbps));
    session.send_media(MediaKind::Video, 0, &media::avc_sequence_header());
    session.send_media(MediaKind::Audio, 0, &media::aac_sequence_header());

    let mut start = Instant::now();
    let (mut vi, mut ai) = (0u64, 0u64);
    // Some(at) while paused: when the pause began.
    let mut paused_at: Option<Instant> = (!*media_on.borrow()).then(Instant::now);
    let mut last_keepalive = Instant::now();
    loop {
        let on = *media_on.borrow_and_update();
        match (on, paused_at) {
            (true, Some(at)) => {
                // Resume: the media clock skips the pause.
                start += at.elapsed();
                paused_at = None;
            }
            (false, None) => paused_at = Some(Instant::now()),
            _ => {}
        }
        if paused_at.is_some() {
            if last_keepalive.elapsed() >= KEEPALIVE_EVERY {
                last_keepalive = Instant::now();
                let seq = stats.wire_bytes.load(Ordering::Relaxed) as u32;
                let s = seq.to_be_bytes();
                session.out().put_slice(&[
                    KEEPALIVE_CSID,
                    0,
                    0,
                    0,
                    0,
                    0,
                    4,
                    0x03,
                    0,
                    0,
                    0,
                    0,
                    s[0],
                    s[1],
                    s[2],
                    s[3],
                ]);
            }
            pending.append(session.out());
            tokio::select! {
                _ = tokio::time::sleep(KEEPALIVE_EVERY) => {}
                r = media_on.changed() => if r.is_err() {
                    return finish(&mut session, &mut wr, &mut pending).await;
                },
                w = write_some(&mut wr, &pending), if !pending.is_empty() => {
                    let n = w.context("publisher: write")?;
                    pending.advance(n);
                    stats.wire_bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                r = rd.read_buf(&mut input) => {
                    if r.context("publisher: read")? == 0 {
                        bail!("relay closed the publisher connection");
                    }
                    session.handle_input(&mut input, Instant::now().into_std())?;
                    while session.poll_event().is_some() {}
                }
                _ = stop.changed() => return finish(&mut session, &mut wr, &mut pending).await,
            }
            continue;
        }
        // Queue every frame that is due.
        let elapsed = start.elapsed().as_nanos() as u64;
        let speed = u64::from(target.speed.max(1));
        let mut backlogged = false;
        loop {
            let (vd, ad) = (
                media::video_due_ns(vi) / speed,
                media::audio_due_ns(ai) / speed,
            );
            // Faster than real time, the relay may not keep up: stop queueing while 4 MiB
            // are unsent (the frames wait their turn; memory stays bounded).
            if vd.min(ad) > elapsed {
                break;
            }
            if pending.len() + session.out().len() > 4 << 20 {
                backlogged = true;
                break;
            }
            let now = clock.now_ns();
            let in_window = window.contains(now);
            if vd <= ad {
                session.send_media(
                    MediaKind::Video,
                    media::video_ts(vi),
                    &media::video_frame(target.stream, vi, sizes, now),
                );
                if in_window {
                    stats.window_video.fetch_add(1, Ordering::Relaxed);
                }
                stats
                    .max_lag_us
                    .fetch_max((elapsed - vd) / 1000, Ordering::Relaxed);
                vi += 1;
            } else {
                session.send_media(
                    MediaKind::Audio,
                    media::audio_ts(ai),
                    &media::audio_frame(target.stream, ai, sizes, now),
                );
                if in_window {
                    stats.window_audio.fetch_add(1, Ordering::Relaxed);
                }
                ai += 1;
            }
        }
        pending.append(session.out());
        let next_due = if backlogged {
            // Due already: look again once some of the backlog is written.
            Instant::now() + Duration::from_millis(2)
        } else {
            start
                + Duration::from_nanos(media::video_due_ns(vi).min(media::audio_due_ns(ai)) / speed)
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next_due) => {}
            w = write_some(&mut wr, &pending), if !pending.is_empty() => {
                let n = w.context("publisher: write")?;
                pending.advance(n);
                stats.wire_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            r = rd.read_buf(&mut input) => {
                if r.context("publisher: read")? == 0 {
                    bail!("relay closed the publisher connection");
                }
                session.handle_input(&mut input, Instant::now().into_std())?;
                while session.poll_event().is_some() {}
            }
            r = media_on.changed() => if r.is_err() {
                return finish(&mut session, &mut wr, &mut pending).await;
            },
            _ = stop.changed() => return finish(&mut session, &mut wr, &mut pending).await,
        }
    }
}

/// Unpublishes politely and flushes what is pending (for at most a second).
async fn finish(
    session: &mut ClientSession,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    pending: &mut prism_rtmp::OutQueue,
) -> anyhow::Result<()> {
    session.unpublish();
    pending.append(session.out());
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while !pending.is_empty() {
            let Ok(n) = write_some(wr, pending).await else {
                break;
            };
            pending.advance(n);
        }
    })
    .await;
    Ok(())
}

async fn write_some(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    pending: &prism_rtmp::OutQueue,
) -> std::io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); 64];
    let n = pending.chunks_vectored(&mut slices);
    let written = w.write_vectored(&slices[..n]).await?;
    if written == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    Ok(written)
}
