//! The publisher: one [`ClientSession`] pushing the synthetic stream to the relay in real
//! time, paced by the wall clock.

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
}

pub async fn run(
    target: PublishTarget,
    kbps: u64,
    clock: Clock,
    window: Arc<Window>,
    stats: Arc<PubStats>,
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
            session.handle_input(&mut input)?;
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

    let start = Instant::now();
    let (mut vi, mut ai) = (0u64, 0u64);
    loop {
        // Queue every frame that is due.
        let elapsed = start.elapsed().as_nanos() as u64;
        loop {
            let (vd, ad) = (media::video_due_ns(vi), media::audio_due_ns(ai));
            if vd.min(ad) > elapsed {
                break;
            }
            let now = clock.now_ns();
            let in_window = window.contains(now);
            if vd <= ad {
                session.send_media(
                    MediaKind::Video,
                    media::video_ts(vi),
                    &media::video_frame(vi, sizes, now),
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
                    &media::audio_frame(ai, sizes, now),
                );
                if in_window {
                    stats.window_audio.fetch_add(1, Ordering::Relaxed);
                }
                ai += 1;
            }
        }
        pending.append(session.out());
        let next_due =
            start + Duration::from_nanos(media::video_due_ns(vi).min(media::audio_due_ns(ai)));
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
                session.handle_input(&mut input)?;
                while session.poll_event().is_some() {}
            }
            _ = stop.changed() => {
                session.unpublish();
                pending.append(session.out());
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while !pending.is_empty() {
                        let Ok(n) = write_some(&mut wr, &pending).await else { break };
                        pending.advance(n);
                    }
                })
                .await;
                return Ok(());
            }
        }
    }
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
