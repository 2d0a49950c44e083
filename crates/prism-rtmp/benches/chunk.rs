//! Chunk stream micro-benchmarks: what one media message costs to chunk for a peer, what
//! fanning it out to many peers costs with and without the shared pre-chunked body, and
//! what reassembling a publisher's byte stream costs, bare and through `ServerSession` as
//! the relay's ingest does.
//!
//! Run: `cargo bench -p prism-rtmp --bench chunk` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prism_rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits, PreChunked};
use prism_rtmp::message::{MessageType, RawMessage};
use prism_rtmp::session::{
    ClientConfig, ClientSession, MediaKind, MediaKindExt, ServerEvent, ServerSession, SessionConfig,
};
use prism_rtmp::OutQueue;

/// What Prism and the load tool's publisher send with (`SessionConfig::default()`).
const CHUNK_SIZE: u32 = 4096;
/// An average 4.7 Mbit/s video frame at 25 fps is ~23 KB; 20 KB spans five chunks.
const VIDEO_LEN: usize = 20 * 1024;
/// An AAC frame at 128 kbit/s, 43 frames/s: one chunk.
const AUDIO_LEN: usize = 400;
/// The relay's socket read size (prism-relay `READ_CHUNK`).
const READ_CHUNK: usize = 64 * 1024;
/// The message stream a publisher's media goes on (the first `createStream`).
const STREAM_ID: u32 = 1;

/// An FLV video tag body (AVC NALU, CTS 0, one length-prefixed NAL) of `len` bytes.
fn video_payload(len: usize, keyframe: bool) -> Bytes {
    let mut p = vec![if keyframe { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
    p.extend_from_slice(&((len - 9) as u32).to_be_bytes());
    p.extend((0..len - p.len()).map(|i| (i * 31 + 7) as u8));
    Bytes::from(p)
}

/// An FLV audio tag body (AAC raw frame) of `len` bytes.
fn audio_payload(len: usize) -> Bytes {
    let mut p = vec![0xAF, 0x01];
    p.extend((0..len - 2).map(|i| (i * 17 + 3) as u8));
    Bytes::from(p)
}

fn media(kind: MessageType, timestamp: u32, payload: &Bytes) -> RawMessage {
    RawMessage {
        timestamp,
        type_id: kind,
        stream_id: STREAM_ID,
        payload: payload.clone(),
    }
}

/// An encoder already switched to `CHUNK_SIZE`, as every session is after connect.
fn encoder() -> ChunkEncoder {
    let mut enc = ChunkEncoder::new();
    enc.set_chunk_size(CHUNK_SIZE, &mut OutQueue::new());
    enc
}

/// One message to one peer: header copy + zero-copy payload slices into the out queue, then
/// the queue released as a completed write would (so it does not grow across iterations).
fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtmp_chunk_encode");
    for (name, kind, csid, payload, step) in [
        (
            "video_20KiB",
            MessageType::VIDEO,
            MediaKind::Video.csid(),
            video_payload(VIDEO_LEN, false),
            40,
        ),
        (
            "audio_400B",
            MessageType::AUDIO,
            MediaKind::Audio.csid(),
            audio_payload(AUDIO_LEN),
            23,
        ),
    ] {
        g.throughput(Throughput::Bytes(payload.len() as u64));
        g.bench_function(format!("{name}/write"), |b| {
            let mut enc = encoder();
            let mut out = OutQueue::new();
            let mut ts = 0u32;
            b.iter(|| {
                // Advancing timestamps: steady-state headers (type 1-3), not a type 0 each time.
                ts = ts.wrapping_add(step);
                enc.write(csid, &media(kind, ts, &payload), &mut out);
                out.advance(out.len());
            })
        });
    }

    // The shared-body path for a multi-chunk message: built once per frame, then each
    // target writes only its own first header and shares the body.
    let payload = video_payload(VIDEO_LEN, false);
    let csid = MediaKind::Video.csid();
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("video_20KiB/prechunk_once", |b| {
        b.iter(|| PreChunked::new(csid, CHUNK_SIZE, black_box(&payload)))
    });
    let body = PreChunked::new(csid, CHUNK_SIZE, &payload);
    g.bench_function("video_20KiB/write_prechunked", |b| {
        let mut enc = encoder();
        let mut out = OutQueue::new();
        let mut ts = 0u32;
        b.iter(|| {
            ts = ts.wrapping_add(40);
            enc.write_prechunked(
                csid,
                &media(MessageType::VIDEO, ts, &payload),
                &body,
                &mut out,
            );
            out.advance(out.len());
        })
    });
    g.finish();
}

/// One video frame to 100 push targets, each with its own encoder and out queue: chunked
/// per target, versus chunked once (`PreChunked`) and shared, as prism-relay's egress does.
fn fanout(c: &mut Criterion) {
    const TARGETS: usize = 100;
    let payload = video_payload(VIDEO_LEN, false);
    let csid = MediaKind::Video.csid();
    let mut g = c.benchmark_group("rtmp_chunk_fanout_100_targets");
    // Bytes handed to the targets' queues per frame.
    g.throughput(Throughput::Bytes((payload.len() * TARGETS) as u64));
    let mut targets: Vec<(ChunkEncoder, OutQueue)> =
        (0..TARGETS).map(|_| (encoder(), OutQueue::new())).collect();
    let mut ts = 0u32;
    g.bench_function("video_20KiB/write_each", |b| {
        b.iter(|| {
            ts = ts.wrapping_add(40);
            let msg = media(MessageType::VIDEO, ts, &payload);
            for (enc, out) in &mut targets {
                enc.write(csid, &msg, out);
                out.advance(out.len());
            }
        })
    });
    g.bench_function("video_20KiB/prechunk_shared", |b| {
        b.iter(|| {
            ts = ts.wrapping_add(40);
            let msg = media(MessageType::VIDEO, ts, &payload);
            let body = PreChunked::new(csid, CHUNK_SIZE, &msg.payload);
            for (enc, out) in &mut targets {
                enc.write_prechunked(csid, &msg, &body, out);
                out.advance(out.len());
            }
        })
    });
    g.finish();
}

/// One second of a 4.7 Mbit/s publish as it arrives on the wire after connect: 25 video
/// frames (a keyframe 4x the size of an inter frame) interleaved with 43 AAC frames, chunked
/// at `CHUNK_SIZE`. The first message on each chunk stream has a type 0 header, so the same
/// bytes can be fed again and again to one decoder.
fn publish_stream() -> Bytes {
    let mut enc = encoder();
    let mut out = OutQueue::new();
    // 25 frames of 4.7 Mbit/s minus 128 kbit/s audio, the keyframe counting as 4 inter frames.
    let inter = (4_700_000 - 128_000) / 8 / (24 + 4);
    let mut video_ts = (0..25u32).map(|i| i * 40).peekable();
    let mut audio_ts = (0..43u32).map(|i| i * 1000 / 43).peekable();
    loop {
        let next_video = match (video_ts.peek(), audio_ts.peek()) {
            (Some(v), Some(a)) => v <= a,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if next_video {
            let Some(ts) = video_ts.next() else { break };
            let key = ts == 0;
            let payload = video_payload(if key { 4 * inter } else { inter }, key);
            let msg = media(MessageType::VIDEO, ts, &payload);
            enc.write(MediaKind::Video.csid(), &msg, &mut out);
        } else {
            let Some(ts) = audio_ts.next() else { break };
            let msg = media(MessageType::AUDIO, ts, &audio_payload(372));
            enc.write(MediaKind::Audio.csid(), &msg, &mut out);
        }
    }
    out.take_all()
}

/// A `ServerSession` past the handshake, connect and an accepted publish (stream 1),
/// reached by wiring a `ClientSession` to it in memory.
fn publishing_server() -> ServerSession {
    let config = SessionConfig {
        chunk_size: CHUNK_SIZE,
        ..SessionConfig::default()
    };
    let now = Instant::now();
    let mut server = ServerSession::new(config.clone(), [1; 32], 1000, now);
    let mut client = ClientSession::new(
        ClientConfig {
            app: "live".into(),
            tc_url: "rtmp://127.0.0.1/live".into(),
            key: "bench".into(),
            session: config,
        },
        [2; 32],
        2000,
        now,
    );
    let (mut to_server, mut to_client) = (BytesMut::new(), BytesMut::new());
    for _ in 0..32 {
        to_server.extend_from_slice(&client.out().take_all());
        server
            .handle_input(&mut to_server, now)
            .expect("server input");
        while let Some(ev) = server.poll_event() {
            if let ServerEvent::PublishRequested { stream_id, .. } = ev {
                assert_eq!(stream_id, STREAM_ID);
                server.accept_publish(stream_id);
            }
        }
        to_client.extend_from_slice(&server.out().take_all());
        client
            .handle_input(&mut to_client, now)
            .expect("client input");
        while client.poll_event().is_some() {}
        if client.is_publishing() {
            server.out().take_all();
            return server;
        }
    }
    panic!("the in-memory publish did not complete");
}

/// Reassembly of `publish_stream()`, delivered in socket-read-sized pieces.
fn decode(c: &mut Criterion) {
    let stream = publish_stream();
    let messages = 25 + 43;
    let mut g = c.benchmark_group("rtmp_chunk_decode");
    g.throughput(Throughput::Bytes(stream.len() as u64));

    // Set up outside the routines: Criterion calls them once per sample.
    let mut dec = ChunkDecoder::new(DecoderLimits::default());
    let mut set_size = OutQueue::new();
    ChunkEncoder::new().set_chunk_size(CHUNK_SIZE, &mut set_size);
    let mut input = BytesMut::from(&set_size.take_all()[..]);
    while dec.decode(&mut input).expect("decode").is_some() {}
    g.bench_function("1s_4.7Mbps/chunk_decoder", |b| {
        b.iter(|| {
            let mut n = 0;
            for piece in stream.chunks(READ_CHUNK) {
                // The copy stands in for the socket read into the connection's buffer.
                input.extend_from_slice(piece);
                while let Some(msg) = dec.decode(&mut input).expect("decode") {
                    black_box(&msg);
                    n += 1;
                }
            }
            assert_eq!(n, messages);
        })
    });

    // The whole ingest step: chunk decoding, control handling and one Media event each.
    let mut server = publishing_server();
    let now = Instant::now();
    g.bench_function("1s_4.7Mbps/server_session", |b| {
        b.iter(|| {
            let mut n = 0;
            for piece in stream.chunks(READ_CHUNK) {
                input.extend_from_slice(piece);
                server.handle_input(&mut input, now).expect("handle_input");
                while let Some(ev) = server.poll_event() {
                    black_box(&ev);
                    n += 1;
                }
            }
            assert_eq!(n, messages);
            // Acknowledgements the session queued, as if written to the socket.
            let out = server.out();
            out.advance(out.len());
        })
    });
    g.finish();
}

criterion_group!(benches, encode, fanout, decode);
criterion_main!(benches);
