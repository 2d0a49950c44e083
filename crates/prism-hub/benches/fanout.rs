//! Hub fan-out micro-benchmarks: one publisher, 1 / 100 / 1000 subscriptions.
//!
//! - `publish`: `PublishHandle::send` of one frame: timestamp normalization, GOP cache, and
//!   per subscription a queue push and a wake of its (registered) waker.
//! - `drain`: each subscription taking that frame out again with `poll_recv` (waker
//!   registration + `try_recv`), the way a push target's task does when woken.
//! - `publish_and_drain`: both, per frame.
//!
//! Throughput is in deliveries (frames × subscriptions) per second. Payloads are shared
//! `Bytes`, never copied, so bytes per second would only restate the frame sizes.
//!
//! Run: `cargo bench -p prism-hub --bench fanout` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prism_hub::{Frame, FrameKind, Hub, HubConfig, PublishHandle, QueueLimits, Subscription};

/// Stands in for a task waker: counts wake-ups (a tokio wake also schedules the task,
/// which costs more and is not measured here).
#[derive(Default)]
struct CountingWaker(AtomicU64);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A 2-second GOP of a 4.7 Mbit/s stream as the relay receives it: 50 video frames at 25 fps
/// (the keyframe first, 4x an inter frame) and 86 AAC frames, in timestamp order; offsets in
/// ms from the GOP start.
fn gop() -> Vec<Frame> {
    let inter = (4_700_000 - 128_000) / 8 / (24 + 4);
    let mut frames: Vec<Frame> = (0..50u32)
        .map(|i| {
            let key = i == 0;
            let len = if key { 4 * inter } else { inter };
            Frame {
                keyframe: key,
                ..Frame::media(FrameKind::Video, i * 40, Bytes::from(vec![0x27; len]))
            }
        })
        .chain((0..86u32).map(|i| {
            Frame::media(
                FrameKind::Audio,
                i * 1000 / 43,
                Bytes::from(vec![0xAF; 372]),
            )
        }))
        .collect();
    frames.sort_by_key(|f| f.timestamp);
    frames
}

/// A live stream with `subs` subscriptions, its config frames already sent.
struct Setup {
    publisher: PublishHandle,
    subs: Vec<Subscription>,
    waker: Waker,
    gop: Vec<Frame>,
    next: usize,
    /// Timestamp of the current GOP's start; advances so the timeline stays monotonic.
    base: u32,
    out: Vec<Arc<Frame>>,
}

impl Setup {
    fn new(subs: usize) -> Setup {
        let now = Instant::now();
        let hub = Hub::new(HubConfig::default());
        let publisher = hub.publish("live", "bench", now).expect("publish");
        let subs = (0..subs)
            .map(|_| hub.subscribe("live", "bench", QueueLimits::default(), now))
            .collect();
        let mut s = Setup {
            publisher,
            subs,
            waker: Waker::from(Arc::new(CountingWaker::default())),
            gop: gop(),
            next: 0,
            base: 0,
            out: Vec::new(),
        };
        let config = |kind, payload: &'static [u8], seq| Frame {
            sequence_header: seq,
            ..Frame::media(kind, 0, Bytes::from_static(payload))
        };
        s.publisher
            .send(config(FrameKind::Data, b"onMetaData", false), now);
        s.publisher
            .send(config(FrameKind::Video, b"\x17\x00avcC", true), now);
        s.publisher
            .send(config(FrameKind::Audio, b"\xAF\x00\x11\x90", true), now);
        s.drain(usize::MAX);
        s
    }

    /// The next media frame, as the ingest builds it (payload shared, not copied).
    fn next_frame(&mut self) -> Frame {
        let mut f = self.gop[self.next].clone();
        f.timestamp += self.base;
        self.next += 1;
        if self.next == self.gop.len() {
            self.next = 0;
            self.base += 2000;
        }
        f
    }

    /// Every subscription polls once, taking up to `max_bytes` (at least one frame).
    fn drain(&mut self, max_bytes: usize) {
        let mut cx = Context::from_waker(&self.waker);
        for sub in &self.subs {
            match sub.poll_recv(&mut cx, &mut self.out, max_bytes) {
                Poll::Ready(status) => {
                    black_box(status);
                }
                Poll::Pending => panic!("a subscription had nothing queued"),
            }
            self.out.clear();
        }
    }
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("hub_fanout");
    for subs in [1usize, 100, 1000] {
        g.throughput(Throughput::Elements(subs as u64));
        // Set up outside the routines: Criterion calls them once per sample.
        let mut s = Setup::new(subs);

        // In the relay every subscriber keeps up: it is woken for each frame and polls it
        // (re-arming its waker) before the next arrives. So each frame is timed on its own,
        // with the other half done untimed in between; the two `Instant::now` calls add
        // some 20 ns per frame here, which only shows in the 1-subscriber rows.
        g.bench_function(format!("publish/{subs}_subs"), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let f = s.next_frame();
                    let start = Instant::now();
                    // The ingest reads the clock per frame too; the timing read doubles as it.
                    s.publisher.send(f, start);
                    timed += start.elapsed();
                    s.drain(usize::MAX);
                }
                timed
            })
        });
        g.bench_function(format!("drain/{subs}_subs"), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let f = s.next_frame();
                    s.publisher.send(f, Instant::now());
                    let start = Instant::now();
                    s.drain(usize::MAX);
                    timed += start.elapsed();
                }
                timed
            })
        });
        // Both halves in one loop, without per-frame timer reads: a cross-check.
        g.bench_function(format!("publish_and_drain/{subs}_subs"), |b| {
            b.iter(|| {
                let f = s.next_frame();
                // The clock read the ingest makes per frame (the hub no longer makes it).
                s.publisher.send(f, Instant::now());
                s.drain(usize::MAX);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
