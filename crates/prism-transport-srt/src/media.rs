//! Moving media between an SRT socket and the hub: TS datagrams → demuxer → publisher, and
//! subscription → muxer → 1316-byte datagrams.

use bytes::{Bytes, BytesMut};
use futures::{Sink, Stream, StreamExt};
use prism_hub::{Frame, Subscription};
use prism_mpegts::demux::Demuxer;
use prism_mpegts::mux::{next_datagram, Muxer, MuxerConfig, DATAGRAM_SIZE};
use prism_mpegts::FlvFrame;
use prism_relay::{ConnError, Driver, Exit, Flow, Output, Publisher};
use prism_rtmp::OutQueue;
use srt_tokio::SrtSocket;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A receive stream that ended this long after the last datagram was a peer timeout (srt
/// closes a silent connection after its 5 s idle timeout), not the publisher's goodbye.
const CLEAN_CLOSE_WITHIN: Duration = Duration::from_secs(2);

/// How an ingest ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IngestEnd {
    /// The publisher closed the connection: the stream ends now.
    Closed,
    /// The connection was lost: the stream waits out its reconnect grace.
    Lost,
}

/// The demuxer's reassembly buffers charged to the memory budget's `srt` pool: bounded by
/// [`prism_mpegts::demux::DemuxLimits`] (8 MiB per PES, one per elementary stream) and
/// released with the connection (dropped with it).
pub(crate) fn demux_charge(relay: &prism_relay::Relay) -> prism_mem::MemCharge {
    relay
        .memory()
        .map(|b| b.charge(prism_mem::Pool::Srt, 0))
        .unwrap_or_default()
}

/// Brings `charge` to what `demux` holds; the buffers are reused, so this touches the
/// budget only when one grows (or a flush frees it), not per datagram.
pub(crate) fn update_charge(charge: &prism_mem::MemCharge, demux: &Demuxer) {
    if charge.budget().is_some() {
        charge.track(demux.buffered_bytes());
    }
}

/// Demuxes the socket's TS datagrams into `publisher` until the connection ends; then
/// unpublishes (clean close) or drops the publisher (lost: grace window). `mem`: the
/// charge for the demuxer's buffers ([`demux_charge`]).
pub(crate) async fn ingest(
    socket: &mut SrtSocket,
    publisher: Publisher,
    mem: prism_mem::MemCharge,
) -> IngestEnd {
    let mut demux = Demuxer::default();
    let mut last = Instant::now();
    let end = loop {
        let next = tokio::select! {
            next = socket.next() => next,
            // An operator kicked the stream (admin API): it has ended; close the socket.
            _ = publisher.kicked() => break IngestEnd::Closed,
        };
        match next {
            Some(Ok((_, datagram))) => {
                last = Instant::now();
                demux.push(&datagram);
                drain(&mut demux, &publisher);
                update_charge(&mem, &demux);
            }
            Some(Err(_)) => break IngestEnd::Lost,
            None if last.elapsed() < CLEAN_CLOSE_WITHIN => break IngestEnd::Closed,
            None => break IngestEnd::Lost,
        }
    };
    match end {
        IngestEnd::Closed => {
            demux.flush();
            drain(&mut demux, &publisher);
            publisher.unpublish();
        }
        IngestEnd::Lost => drop(publisher),
    }
    end
}

/// Hands the demuxer's frames to the hub with the demuxer's own keyframe and sequence
/// header flags: it built each payload, so there is nothing to re-derive.
fn drain(demux: &mut Demuxer, publisher: &Publisher) {
    while let Some(f) = demux.poll_frame() {
        publisher.send_frame(Frame {
            kind: f.kind,
            timestamp: f.timestamp,
            payload: f.payload,
            keyframe: f.keyframe,
            sequence_header: f.sequence_header,
            // The demuxer only builds AVC, HEVC and AAC payloads: none is disposable.
            disposable: false,
            wire: Default::default(),
            mem: Default::default(),
        });
    }
}

/// How sending a stream to an SRT peer ended.
#[derive(Debug)]
pub(crate) enum SendEnd {
    /// The hub stream ended.
    StreamEnded,
    /// The hub dropped this subscriber (over its queue budget too long).
    TooSlow,
    /// The peer closed or the connection broke.
    PeerGone,
}

/// Muxes the subscription to MPEG-TS and sends it, 7 packets per datagram, until the
/// stream ends or the peer goes, on the relay's egress driver (the same pacing, slow
/// verdict and write timeout as RTMP players and targets); `sent` is told each datagram's
/// size, `report` runs on every queue check.
pub(crate) async fn send_stream(
    socket: &mut SrtSocket,
    sub: &Subscription,
    audio: Option<prism_relay::audio::AudioView>,
    sent: impl FnMut(usize),
    report: impl FnMut(),
) -> SendEnd {
    let mut out = TsOutput {
        sub,
        muxer: Muxer::new(MuxerConfig::default()),
        buf: BytesMut::new(),
        sent,
        report,
    };
    let mut driver = Driver::new(SrtIo(socket), prism_egress::Config::default());
    // MPEG-TS has no Opus mapping players take: Opus (WebRTC) goes out as AAC.
    driver.set_audio(audio);
    match driver.run(&mut out).await {
        Ok(Exit::Ended) => SendEnd::StreamEnded,
        Ok(_) => SendEnd::PeerGone,
        Err(e) if e.reason == prism_metrics::ErrorReason::TooSlow => SendEnd::TooSlow,
        Err(_) => SendEnd::PeerGone,
    }
}

/// The SRT output: hub frames → MPEG-TS → datagram-sized segments.
struct TsOutput<'a, F, R> {
    sub: &'a Subscription,
    muxer: Muxer,
    buf: BytesMut,
    sent: F,
    report: R,
}

impl<F: FnMut(usize), R: FnMut()> Output for TsOutput<'_, F, R> {
    fn subscription(&self) -> Option<&Subscription> {
        Some(self.sub)
    }

    fn send_frames(&mut self, frames: &mut Vec<Arc<Frame>>, out: &mut OutQueue) {
        for f in frames.drain(..) {
            // Script data is the muxer's to skip: TS carries none in this mapping.
            let flv = FlvFrame {
                kind: f.kind,
                timestamp: f.timestamp,
                payload: f.payload.clone(),
                keyframe: f.keyframe,
                sequence_header: f.sequence_header,
            };
            let _ = self.muxer.push_frame(&flv, &mut self.buf);
        }
        // One segment per datagram: the socket adapter sends each write as one datagram.
        while let Some(d) = next_datagram(&mut self.buf, true) {
            out.put_bytes(d);
        }
    }

    fn handle_input(
        &mut self,
        input: &mut BytesMut,
        _now: std::time::Instant,
        _out: &mut OutQueue,
    ) -> Result<Flow, ConnError> {
        // Whatever a player or listener sends is ignored.
        input.clear();
        Ok(Flow::Continue)
    }

    fn report(&mut self) {
        (self.report)();
    }

    fn wrote(&mut self, n: usize) {
        (self.sent)(n);
    }
}

/// An SRT socket as a byte stream for the driver: each write is one datagram (the output
/// queues whole datagrams as segments), reads yield what the peer sends.
struct SrtIo<'a>(&'a mut SrtSocket);

impl AsyncWrite for SrtIo<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let socket = Pin::new(&mut *self.0);
        match socket.poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let n = buf.len().min(DATAGRAM_SIZE);
        // Datagrams share the send time as their source time: the receiver releases them
        // one latency later.
        let datagram = (Instant::now(), Bytes::copy_from_slice(&buf[..n]));
        Pin::new(&mut *self.0).start_send(datagram)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl AsyncRead for SrtIo<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            match Pin::new(&mut *self.0).poll_next(cx) {
                Poll::Ready(Some(Ok((_, data)))) if data.is_empty() => continue,
                Poll::Ready(Some(Ok((_, data)))) => {
                    let n = data.len().min(buf.remaining());
                    buf.put_slice(&data[..n]);
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                // End of stream: nothing filled reads as EOF.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
