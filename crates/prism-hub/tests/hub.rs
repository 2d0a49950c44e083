//! Hub behaviour: late joiners, duplicate publishers, grace-window resume, isolation.

use bytes::Bytes;
use prism_hub::{Frame, FrameKind, Hub, HubConfig, PublishError, QueueLimits, RecvStatus};
use std::time::Duration;

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

fn drain(sub: &prism_hub::Subscription) -> Vec<std::sync::Arc<Frame>> {
    let mut out = Vec::new();
    while let Some(RecvStatus::Frames) = sub.try_recv(&mut out, usize::MAX) {}
    out
}

#[tokio::test]
async fn late_joiner_starts_with_header_and_gop() {
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("live", "k").unwrap();
    p.send(Frame::media(
        FrameKind::Data,
        0,
        Bytes::from_static(b"meta"),
    ));
    p.send(header());
    p.send(video(0, true));
    p.send(video(40, false));
    p.send(video(80, true));
    p.send(video(120, false));
    let sub = hub.subscribe("live", "k", QueueLimits::default());
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
    p.send(video(160, false));
    assert_eq!(drain(&sub).len(), 1);
}

#[tokio::test]
async fn second_publisher_is_refused_and_first_continues() {
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("live", "k").unwrap();
    let sub = hub.subscribe("live", "k", QueueLimits::default());
    assert_eq!(
        hub.publish("live", "k").unwrap_err(),
        PublishError::AlreadyLive("live/k".into())
    );
    p.send(video(0, true));
    assert_eq!(drain(&sub).len(), 1);
}

#[tokio::test]
async fn unpublish_ends_stream_for_subscribers() {
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("live", "k").unwrap();
    let sub = hub.subscribe("live", "k", QueueLimits::default());
    p.send(video(0, true));
    let stream = p.stream().clone();
    let waiter = tokio::spawn(async move { stream.wait_ended().await });
    p.unpublish();
    tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    assert_eq!(sub.recv(&mut out, usize::MAX).await, RecvStatus::Frames);
    assert_eq!(sub.recv(&mut out, usize::MAX).await, RecvStatus::Ended);
    assert!(hub.get("live", "k").is_none());
    // The key is free again.
    assert!(!hub.publish("live", "k").unwrap().resumed());
}

#[tokio::test]
async fn republish_within_grace_resumes_with_monotonic_timestamps() {
    let hub = Hub::new(HubConfig {
        reconnect_grace: Duration::from_millis(500),
        ..HubConfig::default()
    });
    let p = hub.publish("live", "k").unwrap();
    let sub = hub.subscribe("live", "k", QueueLimits::default());
    p.send(video(0, true));
    p.send(video(1000, false));
    drop(p); // connection lost, no unpublish
    tokio::time::sleep(Duration::from_millis(50)).await;
    let p2 = hub.publish("live", "k").unwrap();
    assert!(p2.resumed());
    p2.send(video(0, true));
    let got = drain(&sub);
    let ts: Vec<u32> = got.iter().map(|f| f.timestamp).collect();
    assert_eq!(ts.len(), 3);
    assert!(ts[2] > ts[1], "timestamps went backwards: {ts:?}");
    drop(p2);
    // Past the grace window the stream ends.
    let mut out = Vec::new();
    let status = tokio::time::timeout(Duration::from_secs(3), sub.recv(&mut out, usize::MAX))
        .await
        .unwrap();
    assert_eq!(status, RecvStatus::Ended);
}

#[tokio::test]
async fn slow_subscriber_does_not_affect_fast_one() {
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("live", "k").unwrap();
    let slow = hub.subscribe(
        "live",
        "k",
        QueueLimits {
            max_bytes: 5_000,
            max_ms: 60_000,
            overflow_disconnect: Duration::from_secs(60),
        },
    );
    let fast = hub.subscribe("live", "k", QueueLimits::default());
    let mut fast_got = 0;
    for i in 0..100u32 {
        p.send(video(i * 40, i % 25 == 0));
        fast_got += drain(&fast).len();
    }
    assert_eq!(fast_got, 100);
    let stats = slow.stats();
    assert!(stats.queue_bytes <= 5_000);
    assert!(stats.dropped_queue_full > 0);
    // What the slow one gets next starts on a keyframe.
    drain(&slow);
    p.send(video(4000, false));
    p.send(video(4040, true));
    let got = drain(&slow);
    assert!(got.first().is_some_and(|f| f.keyframe), "{:?}", got.first());
}

#[tokio::test]
async fn subscribers_share_one_frame_and_its_egress_cache() {
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("live", "k").unwrap();
    let a = hub.subscribe("live", "k", QueueLimits::default());
    let b = hub.subscribe("live", "k", QueueLimits::default());
    p.send(video(0, true));
    let (fa, fb) = (drain(&a), drain(&b));
    assert!(std::sync::Arc::ptr_eq(&fa[0], &fb[0]));
    let mut computed = 0;
    for f in [&fa[0], &fb[0]] {
        let v = f.wire.get_or_init(|| {
            computed += 1;
            42u32
        });
        assert_eq!(v, Some(&42));
    }
    assert_eq!(computed, 1);
}

#[tokio::test]
async fn kick_ends_the_stream_without_grace_and_wakes_the_publisher() {
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("live", "kick").unwrap();
    let stream = p.stream().clone();
    let sub = stream.subscribe(QueueLimits::default()).unwrap();
    let watcher = {
        let stream = stream.clone();
        tokio::spawn(async move { std::future::poll_fn(|cx| stream.poll_kicked(cx)).await })
    };
    tokio::task::yield_now().await;
    assert!(stream.kick());
    assert!(!stream.kick(), "a second kick finds it ended");
    tokio::time::timeout(Duration::from_secs(1), watcher)
        .await
        .expect("publisher woken")
        .unwrap();
    assert!(stream.is_ended() && stream.is_kicked());
    assert!(hub.get("live", "kick").is_none());
    assert_eq!(drain(&sub).len(), 0);
    assert_eq!(sub.try_recv(&mut Vec::new(), 1), Some(RecvStatus::Ended));
    // The kicked publisher's handle neither resumes nor ends anything any more.
    drop(p);
    let again = hub.publish("live", "kick").unwrap();
    assert!(!again.resumed());
}

#[tokio::test]
async fn a_closed_subscription_ends_alone() {
    let hub = Hub::new(HubConfig::default());
    let p = hub.publish("live", "close").unwrap();
    let a = p.stream().subscribe(QueueLimits::default()).unwrap();
    let b = p.stream().subscribe(QueueLimits::default()).unwrap();
    p.send(header());
    a.closer().close();
    p.send(video(0, true));
    assert_eq!(p.stream().subscriber_count(), 1);
    // What was queued before the close still comes, then the end.
    assert_eq!(drain(&a).len(), 1);
    assert_eq!(a.try_recv(&mut Vec::new(), 1), Some(RecvStatus::Ended));
    assert_eq!(drain(&b).len(), 2);
    assert!(!p.stream().is_ended());
}
