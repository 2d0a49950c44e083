//! Hub behaviour: late joiners, duplicate publishers, grace-window resume, isolation.

mod common;

use bytes::Bytes;
use common::CountingWaker;
use prism_hub::{Frame, FrameKind, Hub, HubConfig, PublishError, QueueLimits, RecvStatus};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Polls a future that must be ready at once.
fn now_or_never<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(CountingWaker::default()));
    match pin!(f).poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("not ready"),
    }
}

fn video(ts: u32, key: bool) -> Frame {
    Frame {
        keyframe: key,
        ..Frame::media(FrameKind::Video, ts, Bytes::from(vec![7u8; 1000]))
    }
}
fn header() -> Frame {
    Frame {
        sequence_header: true,
        ..Frame::media(FrameKind::Video, 0, Bytes::from_static(b"avcC"))
    }
}

fn drain(sub: &prism_hub::Subscription) -> Vec<Arc<Frame>> {
    let mut out = Vec::new();
    while let Some(RecvStatus::Frames) = sub.try_recv(&mut out, usize::MAX) {}
    out
}

#[test]
fn late_joiner_starts_with_header_and_gop() {
    let t0 = Instant::now();
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("live", "k", t0).unwrap();
    p.send(
        Frame::media(FrameKind::Data, 0, Bytes::from_static(b"meta")),
        t0,
    );
    p.send(header(), t0);
    p.send(video(0, true), t0);
    p.send(video(40, false), t0);
    p.send(video(80, true), t0);
    p.send(video(120, false), t0);
    let sub = hub.subscribe("live", "k", QueueLimits::default(), t0);
    let got = drain(&sub);
    let kinds: Vec<_> = got
        .iter()
        .map(|f| (f.kind, f.timestamp, f.keyframe))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (FrameKind::Data, 0, false),
            (FrameKind::Video, 0, false), // sequence header
            (FrameKind::Video, 80, true),
            (FrameKind::Video, 120, false)
        ]
    );
    // Live frames follow.
    p.send(video(160, false), t0);
    assert_eq!(drain(&sub).len(), 1);
}

#[test]
fn second_publisher_is_refused_and_first_continues() {
    let t0 = Instant::now();
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("live", "k", t0).unwrap();
    let sub = hub.subscribe("live", "k", QueueLimits::default(), t0);
    assert_eq!(
        hub.publish("live", "k", t0).unwrap_err(),
        PublishError::AlreadyLive("live/k".into())
    );
    p.send(video(0, true), t0);
    assert_eq!(drain(&sub).len(), 1);
}

#[test]
fn unpublish_ends_stream_for_subscribers() {
    let t0 = Instant::now();
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("live", "k", t0).unwrap();
    let sub = hub.subscribe("live", "k", QueueLimits::default(), t0);
    p.send(video(0, true), t0);
    let stream = p.stream().clone();
    let woken = Arc::new(CountingWaker::default());
    let waker = Waker::from(woken.clone());
    let mut waiter = pin!(stream.wait_ended());
    let mut cx = Context::from_waker(&waker);
    assert!(waiter.as_mut().poll(&mut cx).is_pending());
    p.unpublish();
    assert_eq!(woken.count(), 1, "the waiter is woken by the end");
    assert!(waiter.as_mut().poll(&mut cx).is_ready());
    let mut out = Vec::new();
    assert_eq!(
        now_or_never(sub.recv(&mut out, usize::MAX)),
        RecvStatus::Frames
    );
    assert_eq!(
        now_or_never(sub.recv(&mut out, usize::MAX)),
        RecvStatus::Ended
    );
    assert!(hub.get("live", "k").is_none());
    // The key is free again.
    assert!(!hub.publish("live", "k", t0).unwrap().resumed());
}

#[test]
fn republish_within_grace_resumes_with_monotonic_timestamps() {
    let t0 = Instant::now();
    let hub = Hub::new(HubConfig {
        reconnect_grace: Duration::from_millis(500),
        ..HubConfig::default()
    });
    let p = hub.publish("live", "k", t0).unwrap();
    let sub = hub.subscribe("live", "k", QueueLimits::default(), t0);
    p.send(video(0, true), t0);
    p.send(video(1000, false), t0);
    drop(p); // connection lost, no unpublish: detached at the latest time given, t0
    let t1 = t0 + Duration::from_millis(50);
    let p2 = hub.publish("live", "k", t1).unwrap();
    assert!(p2.resumed());
    p2.send(video(0, true), t1);
    let got = drain(&sub);
    let ts: Vec<u32> = got.iter().map(|f| f.timestamp).collect();
    assert_eq!(ts.len(), 3);
    assert!(ts[2] > ts[1], "timestamps went backwards: {ts:?}");
    p2.detach(t1);
    // Past the grace window the stream ends.
    assert_eq!(hub.poll_timeout(), Some(t1 + Duration::from_millis(500)));
    hub.handle_timeout(t1 + Duration::from_millis(500));
    let mut out = Vec::new();
    assert_eq!(sub.try_recv(&mut out, usize::MAX), Some(RecvStatus::Ended));
}

#[test]
fn slow_subscriber_does_not_affect_fast_one() {
    let t0 = Instant::now();
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("live", "k", t0).unwrap();
    let slow = hub.subscribe(
        "live",
        "k",
        QueueLimits {
            max_bytes: 5_000,
            max_ms: 60_000,
            overflow_disconnect: Duration::from_secs(60),
        },
        t0,
    );
    let fast = hub.subscribe("live", "k", QueueLimits::default(), t0);
    let mut fast_got = 0;
    for i in 0..100u32 {
        p.send(video(i * 40, i % 25 == 0), t0);
        fast_got += drain(&fast).len();
    }
    assert_eq!(fast_got, 100);
    let stats = slow.stats();
    assert!(stats.queue_bytes <= 5_000);
    assert!(stats.dropped_queue_full > 0);
    // What the slow one gets next starts on a keyframe.
    drain(&slow);
    p.send(video(4000, false), t0);
    p.send(video(4040, true), t0);
    let got = drain(&slow);
    assert!(got.first().is_some_and(|f| f.keyframe), "{:?}", got.first());
}

#[test]
fn subscribers_share_one_frame_and_its_egress_cache() {
    let t0 = Instant::now();
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("live", "k", t0).unwrap();
    let a = hub.subscribe("live", "k", QueueLimits::default(), t0);
    let b = hub.subscribe("live", "k", QueueLimits::default(), t0);
    p.send(video(0, true), t0);
    let (fa, fb) = (drain(&a), drain(&b));
    assert!(Arc::ptr_eq(&fa[0], &fb[0]));
    let mut computed = 0;
    for f in [&fa[0], &fb[0]] {
        let v = f.wire.get_or_init(|| {
            computed += 1;
            42u32
        });
        assert_eq!(v, Some(&42));
    }
    assert_eq!(computed, 1);
    // Another egress kind's form sits beside it; each stays computed once.
    assert_eq!(fb[0].wire.get_or_init(|| "rtp"), Some(&"rtp"));
    assert_eq!(fa[0].wire.get_or_init(|| "not again"), Some(&"rtp"));
    assert_eq!(fa[0].wire.get_or_init(|| 0u32), Some(&42));
    // Every slot taken: a further kind gets nothing (and computes it itself).
    assert_eq!(fa[0].wire.get_or_init(|| 1u8), Some(&1));
    assert_eq!(fa[0].wire.get_or_init(|| 2u16), None);
}

#[test]
fn kick_ends_the_stream_without_grace_and_wakes_the_publisher() {
    let t0 = Instant::now();
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("live", "kick", t0).unwrap();
    let stream = p.stream().clone();
    let sub = stream.subscribe(QueueLimits::default(), t0).unwrap();
    let woken = Arc::new(CountingWaker::default());
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(stream.poll_kicked(&mut cx).is_pending());
    assert!(stream.kick());
    assert!(!stream.kick(), "a second kick finds it ended");
    assert_eq!(woken.count(), 1, "publisher woken");
    assert!(stream.poll_kicked(&mut cx).is_ready());
    assert!(stream.is_ended() && stream.is_kicked());
    assert!(hub.get("live", "kick").is_none());
    assert_eq!(drain(&sub).len(), 0);
    assert_eq!(sub.try_recv(&mut Vec::new(), 1), Some(RecvStatus::Ended));
    // The kicked publisher's handle neither resumes nor ends anything any more.
    drop(p);
    let again = hub.publish("live", "kick", t0).unwrap();
    assert!(!again.resumed());
}

#[test]
fn a_closed_subscription_ends_alone() {
    let t0 = Instant::now();
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("live", "close", t0).unwrap();
    let a = p.stream().subscribe(QueueLimits::default(), t0).unwrap();
    let b = p.stream().subscribe(QueueLimits::default(), t0).unwrap();
    p.send(header(), t0);
    a.closer().close();
    p.send(video(0, true), t0);
    assert_eq!(p.stream().subscriber_count(), 1);
    // What was queued before the close still comes, then the end.
    assert_eq!(drain(&a).len(), 1);
    assert_eq!(a.try_recv(&mut Vec::new(), 1), Some(RecvStatus::Ended));
    assert_eq!(drain(&b).len(), 2);
    assert!(!p.stream().is_ended());
}

#[test]
fn publish_within_never_overshoots_under_concurrent_publishes() {
    let hub = Hub::new(HubConfig::default());
    let now = Instant::now();
    let max = 5;
    let handles: Vec<_> = (0..32)
        .map(|i| {
            let hub = hub.clone();
            std::thread::spawn(move || hub.publish_within("live", &format!("k{i}"), now, max))
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, max);
    for r in &results {
        if let Err(e) = r {
            assert_eq!(*e, PublishError::TooManyStreams(max));
        }
    }
    assert_eq!(hub.live_streams().len(), max);

    // A stream in its grace window comes back whatever the count; a duplicate of a live
    // key is refused as a duplicate, not as one stream too many.
    let mut live: Vec<_> = results.into_iter().filter_map(Result::ok).collect();
    let back = live.pop().unwrap();
    let name = back.stream().key().to_owned();
    back.detach(now);
    let back = hub
        .publish_within("live", &name, now, max)
        .expect("resumes");
    assert!(back.resumed());
    let dup = hub.publish_within("live", &name, now, max).err();
    assert!(matches!(dup, Some(PublishError::AlreadyLive(_))), "{dup:?}");
    // Once one ends, a new stream fits again.
    back.unpublish();
    hub.publish_within("live", "new", now, max)
        .expect("room again");
}

fn big_video(ts: u32, key: bool, len: usize) -> Frame {
    Frame {
        keyframe: key,
        ..Frame::media(FrameKind::Video, ts, Bytes::from(vec![7u8; len]))
    }
}

#[test]
fn frames_are_charged_once_while_held_and_credited_when_the_last_holder_drops_them() {
    let t0 = Instant::now();
    let budget = prism_mem::Budget::new(100 << 20);
    let hub = Hub::new(HubConfig {
        memory: Some(budget.clone()),
        ..HubConfig::default()
    });
    let p = hub.publish("live", "k", t0).unwrap();
    let a = hub.subscribe("live", "k", QueueLimits::default(), t0);
    let b = hub.subscribe("live", "k", QueueLimits::default(), t0);
    p.send(big_video(0, true, 10_000), t0);
    p.send(big_video(40, false, 5_000), t0);
    // In the GOP cache and both queues, counted once.
    assert_eq!(budget.pool(prism_mem::Pool::Frames), 15_000);
    let got = drain(&a);
    drop(b);
    // The new keyframe replaces the cached GOP: only the frames `a` still holds remain.
    p.send(big_video(80, true, 1_000), t0);
    assert_eq!(budget.used(), 16_000);
    drop(got);
    drain(&a);
    assert_eq!(budget.used(), 1_000, "only the cached keyframe");
    p.unpublish();
    drop(a);
    assert_eq!(budget.used(), 0);
}

#[test]
fn above_high_water_the_stream_holding_most_sheds_and_the_others_are_untouched() {
    let t0 = Instant::now();
    // High water 900 kB, low 750 kB: two streams share 375 kB each when it is high.
    let budget = prism_mem::Budget::new(1_000_000);
    let hub = Hub::new(HubConfig {
        memory: Some(budget.clone()),
        ..HubConfig::default()
    });
    let small = hub.publish("live", "small", t0).unwrap();
    let huge = hub.publish("live", "huge", t0).unwrap();
    let big_limits = QueueLimits {
        max_bytes: 100 << 20,
        max_ms: 600_000,
        overflow_disconnect: Duration::from_secs(600),
    };
    // A stalled player of each: nothing is read from its queue.
    let stalled_small = hub.subscribe("live", "small", big_limits, t0);
    let stalled_huge = hub.subscribe("live", "huge", big_limits, t0);
    small.send(big_video(0, true, 20_000), t0);
    for i in 0..200u32 {
        huge.send(big_video(i * 40, i == 0, 10_000), t0);
        if i % 10 == 0 {
            small.send(big_video(i * 40, false, 1_000), t0);
        }
        assert!(
            budget.used() <= 900_000 + 10_000,
            "held {} at frame {i}",
            budget.used()
        );
    }
    assert!(budget.is_high() || budget.used() < 750_000);
    // The small stream lost nothing: its player gets every frame it was sent.
    let got = drain(&stalled_small);
    assert_eq!(got.len(), 21, "{:?}", stalled_small.stats());
    // The huge one shed whole GOP tails, by the usual rules (counted as queue_full).
    assert!(stalled_huge.stats().dropped_queue_full > 0);
    // A late joiner of the huge stream finds no over-share GOP cached.
    let late = hub.subscribe("live", "huge", QueueLimits::default(), t0);
    let cached: usize = drain(&late).iter().map(|f| f.payload.len()).sum();
    assert!(cached <= 375_000, "{cached}");
}

#[test]
fn gop_cache_frames_past_the_live_edge_are_cold_copies_without_egress_cache() {
    let t0 = Instant::now();
    let budget = prism_mem::Budget::new(100 << 20);
    let hub = Hub::new(HubConfig {
        memory: Some(budget.clone()),
        ..HubConfig::default()
    });
    let p = hub.publish("live", "cold", t0).unwrap();
    let a = hub.subscribe("live", "cold", QueueLimits::default(), t0);
    p.send(big_video(0, true, 10_000), t0);
    p.send(big_video(100, false, 1_000), t0);
    let frames = drain(&a);
    let mut computed = 0;
    // What egress code does: a serialization as big as the payload, charged to the frame.
    let mut serialize = |f: &Frame| {
        f.wire.get_or_init(|| {
            computed += 1;
            f.mem.grow(f.payload.len());
            7u8
        });
    };
    for f in &frames {
        serialize(f);
    }
    assert_eq!(budget.used(), 22_000);
    // A frame at 300 ms: the keyframe (300 ms old, past the 250 ms live edge) is replaced
    // in the GOP cache by a cold copy; the frame of 100 ms (200 ms old) stays as it is.
    p.send(big_video(300, false, 500), t0);
    // The subscriber's frames keep their serialization, computed once.
    for f in &frames {
        serialize(f);
    }
    assert_eq!(computed, 2);
    assert_eq!(
        budget.used(),
        22_500,
        "the payload charge moved, nothing counted twice"
    );
    // A late joiner replays every frame; the keyframe is the cold copy (same payload, no
    // serialization yet), the 100 ms frame the shared one.
    let b = hub.subscribe("live", "cold", QueueLimits::default(), t0);
    let replay = drain(&b);
    let ts: Vec<u32> = replay.iter().map(|f| f.timestamp).collect();
    assert_eq!(ts, vec![0, 100, 300]);
    assert!(!Arc::ptr_eq(&replay[0], &frames[0]));
    assert!(
        replay[0].payload.as_ptr() == frames[0].payload.as_ptr(),
        "payload not copied"
    );
    assert!(!replay[0].wire.is_set() && replay[1].wire.is_set());
    assert!(Arc::ptr_eq(&replay[1], &frames[1]));
    // The subscribers drop the original keyframe: its serialization is credited back, the
    // cache's copy still holds the payload.
    drop(frames);
    drain(&a);
    assert_eq!(budget.used(), 12_500);
    drop(replay);
    p.unpublish();
    drop((a, b));
    assert_eq!(budget.used(), 0);
}

fn audio(ts: u32) -> Frame {
    Frame::media(FrameKind::Audio, ts, Bytes::from(vec![5u8; 300]))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Registers `w` as the subscription's task (as a driver's poll does); frames queued
/// meanwhile are taken.
fn arm(sub: &prism_hub::Subscription, w: &Arc<CountingWaker>) -> Vec<Arc<Frame>> {
    let waker = Waker::from(w.clone());
    let mut out = Vec::new();
    let _ = sub.poll_recv(&mut Context::from_waker(&waker), &mut out, usize::MAX);
    out
}

#[test]
fn riding_audio_wakes_its_subscriber_with_the_next_video_frame_or_at_the_ride() {
    let t0 = Instant::now();
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("live", "ride", t0).unwrap();
    let rider = hub.subscribe("live", "ride", QueueLimits::default(), t0);
    rider.set_audio_ride(ms(40));
    let plain = hub.subscribe("live", "ride", QueueLimits::default(), t0);
    let (wr, wp) = (
        Arc::new(CountingWaker::default()),
        Arc::new(CountingWaker::default()),
    );
    arm(&rider, &wr);
    arm(&plain, &wp);
    p.send(video(0, true), t0);
    assert_eq!((wr.count(), wp.count()), (1, 1), "video wakes everyone");
    arm(&rider, &wr);
    arm(&plain, &wp);
    // Audio alone does not wake the rider; the hub's timer is armed for the end of its ride.
    let t1 = t0 + ms(5);
    p.send(audio(5), t1);
    assert_eq!(
        (wr.count(), wp.count()),
        (1, 2),
        "audio wakes the plain one"
    );
    assert_eq!(hub.poll_timeout(), Some(t1 + ms(40)));
    // More audio neither wakes it nor extends the ride.
    p.send(audio(28), t0 + ms(28));
    assert_eq!(wr.count(), 1);
    assert_eq!(hub.poll_timeout(), Some(t1 + ms(40)));
    // The next video frame wakes it once; it takes the audio with the video.
    p.send(video(40, false), t0 + ms(40));
    assert_eq!(wr.count(), 2);
    let ts: Vec<u32> = arm(&rider, &wr).iter().map(|f| f.timestamp).collect();
    assert_eq!(ts, vec![5, 28, 40]);
    // The timer entry left behind finds nothing due and wakes nobody.
    hub.handle_timeout(t1 + ms(40));
    assert_eq!((wr.count(), hub.poll_timeout()), (2, None));
    // Audio with no video after it: woken by the hub's timer, at most RIDE_SLACK (10 ms)
    // before the ride is over.
    let t3 = t0 + ms(60);
    p.send(audio(60), t3);
    assert_eq!(hub.poll_timeout(), Some(t3 + ms(40)));
    hub.handle_timeout(t3 + ms(29));
    assert_eq!(wr.count(), 2, "not yet");
    assert!(hub.poll_timeout().is_some(), "still armed");
    hub.handle_timeout(t3 + ms(30));
    assert_eq!(wr.count(), 3);
    assert_eq!(hub.poll_timeout(), None);
    assert_eq!(arm(&rider, &wr).len(), 1);
    // An audio frame arriving after the ride is over wakes it by itself (a late timer).
    p.send(audio(100), t0 + ms(100));
    assert_eq!(wr.count(), 3);
    p.send(audio(141), t0 + ms(141));
    assert_eq!(wr.count(), 4);
    assert_eq!(arm(&rider, &wr).len(), 2);
    // The plain subscriber got every frame.
    assert_eq!(drain(&plain).len(), 6);
}
