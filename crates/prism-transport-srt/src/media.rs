//! Moving media between an SRT socket and the hub: TS datagrams → demuxer → publisher, and
//! subscription → muxer → 1316-byte datagrams.

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use prism_hub::{Frame, FrameKind, RecvStatus, Subscription};
use prism_mpegts::demux::Demuxer;
use prism_mpegts::mux::{next_datagram, Muxer, MuxerConfig};
use prism_mpegts::FlvFrame;
use prism_relay::Publisher;
use srt_tokio::SrtSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Demuxes the socket's TS datagrams into `publisher` until the connection ends; then
/// unpublishes (clean close) or drops the publisher (lost: grace window).
pub(crate) async fn ingest(socket: &mut SrtSocket, publisher: Publisher) -> IngestEnd {
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

fn drain(demux: &mut Demuxer, publisher: &Publisher) {
    while let Some(f) = demux.poll_frame() {
        let kind = match f.kind {
            prism_mpegts::FrameKind::Audio => FrameKind::Audio,
            prism_mpegts::FrameKind::Video => FrameKind::Video,
        };
        publisher.send(kind, f.timestamp, f.payload);
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
/// stream ends or the peer goes; `sent` is told each datagram's size.
pub(crate) async fn send_stream(
    socket: &mut SrtSocket,
    sub: &Subscription,
    mut sent: impl FnMut(usize),
) -> SendEnd {
    let mut muxer = Muxer::new(MuxerConfig::default());
    let mut out = BytesMut::new();
    let mut frames: Vec<Arc<Frame>> = Vec::new();
    let (mut rx, mut tx) = socket.split_mut();
    loop {
        tokio::select! {
            status = sub.recv(&mut frames, 256 * 1024) => match status {
                RecvStatus::Frames => {
                    for f in frames.drain(..) {
                        if let Some(flv) = to_flv(&f) {
                            let _ = muxer.push_frame(&flv, &mut out);
                        }
                    }
                    // Datagrams of one batch share a source time: the receiver releases
                    // them together, one latency later.
                    let now = Instant::now();
                    while let Some(d) = next_datagram(&mut out, true) {
                        let n = d.len();
                        if tx.feed((now, d)).await.is_err() {
                            return SendEnd::PeerGone;
                        }
                        sent(n);
                    }
                    if tx.flush().await.is_err() {
                        return SendEnd::PeerGone;
                    }
                }
                RecvStatus::Ended => return SendEnd::StreamEnded,
                RecvStatus::TooSlow => return SendEnd::TooSlow,
            },
            // Whatever a player sends is ignored; the end of its stream means it is gone.
            item = rx.next() => if item.is_none() {
                return SendEnd::PeerGone;
            },
        }
    }
}

fn to_flv(f: &Frame) -> Option<FlvFrame> {
    let kind = match f.kind {
        FrameKind::Audio => prism_mpegts::FrameKind::Audio,
        FrameKind::Video => prism_mpegts::FrameKind::Video,
        // Script data (onMetaData) has no place in this TS mapping.
        FrameKind::Data => return None,
    };
    Some(FlvFrame {
        kind,
        timestamp: f.timestamp,
        payload: f.payload.clone(),
        keyframe: f.keyframe,
        sequence_header: f.sequence_header,
    })
}
