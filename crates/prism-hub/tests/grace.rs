//! The reconnect grace window on virtual time: the hub reads no clock, so these tests give it
//! instants and never sleep.

mod common;

use bytes::Bytes;
use common::CountingWaker;
use prism_hub::{Frame, FrameKind, Hub, HubConfig, QueueLimits, RecvStatus, Subscription};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

const GRACE: Duration = Duration::from_millis(500);
const MS: Duration = Duration::from_millis(1);

fn hub(grace: Duration) -> Arc<Hub> {
    Hub::new(HubConfig {
        reconnect_grace: grace,
        ..HubConfig::default()
    })
}

fn video(ts: u32, key: bool) -> Frame {
    Frame {
        keyframe: key,
        ..Frame::media(FrameKind::Video, ts, Bytes::from(vec![7u8; 100]))
    }
}

fn drain(sub: &Subscription) -> Vec<Arc<Frame>> {
    let mut out = Vec::new();
    while let Some(RecvStatus::Frames) = sub.try_recv(&mut out, usize::MAX) {}
    out
}

#[test]
fn grace_expires_exactly_at_detach_plus_grace() {
    let t0 = Instant::now();
    let hub = hub(GRACE);
    let p = hub.publish("live", "k", t0).unwrap();
    let sub = hub.subscribe("live", "k", QueueLimits::default(), t0);
    p.send(video(0, true), t0);
    assert_eq!(
        hub.poll_timeout(),
        None,
        "no timer while the publisher is there"
    );
    let lost = t0 + Duration::from_secs(10);
    p.detach(lost);
    let stream = hub.get("live", "k").unwrap();
    assert!(stream.is_live() && !stream.has_publisher());
    assert_eq!(hub.poll_timeout(), Some(lost + GRACE));

    hub.handle_timeout(lost + GRACE - MS);
    assert!(stream.is_live(), "ended before the grace window was over");
    assert_eq!(drain(&sub).len(), 1);
    assert_eq!(sub.try_recv(&mut Vec::new(), usize::MAX), None);

    hub.handle_timeout(lost + GRACE);
    assert!(stream.is_ended());
    assert_eq!(
        sub.try_recv(&mut Vec::new(), usize::MAX),
        Some(RecvStatus::Ended)
    );
    assert!(hub.get("live", "k").is_none());
    assert_eq!(hub.poll_timeout(), None);
    assert_eq!(stream.uptime(lost), Duration::from_secs(10));
}

#[test]
fn publisher_back_within_grace_resumes_with_timestamps_rebased_by_the_gap() {
    let t0 = Instant::now();
    let hub = hub(GRACE);
    let p = hub.publish("live", "k", t0).unwrap();
    let sub = hub.subscribe("live", "k", QueueLimits::default(), t0);
    p.send(video(0, true), t0);
    p.send(video(1000, false), t0 + Duration::from_secs(1));
    let lost = t0 + Duration::from_secs(1);
    p.detach(lost);

    let back = lost + Duration::from_millis(300);
    let p2 = hub.publish("live", "k", back).unwrap();
    assert!(p2.resumed());
    assert_eq!(
        hub.poll_timeout(),
        None,
        "the resumed stream's timer is gone"
    );
    // The new publisher starts its timeline at 0; the hub continues after the gap.
    p2.send(video(0, true), back);
    hub.handle_timeout(lost + GRACE);
    let ts: Vec<u32> = drain(&sub).iter().map(|f| f.timestamp).collect();
    assert_eq!(ts[..2], [0, 1000]);
    assert!(
        (1300..=1340).contains(&ts[2]),
        "rebased by the 300 ms gap: {ts:?}"
    );
    assert!(p2.stream().is_live() && !p2.stream().is_ended());
}

#[test]
fn publisher_back_after_grace_starts_afresh_even_before_the_timer_ran() {
    let t0 = Instant::now();
    let hub = hub(GRACE);
    let p = hub.publish("live", "k", t0).unwrap();
    let old = p.stream().clone();
    let sub = hub.subscribe("live", "k", QueueLimits::default(), t0);
    p.detach(t0);
    let p2 = hub.publish("live", "k", t0 + GRACE).unwrap();
    assert!(!p2.resumed());
    assert!(old.is_ended() && !Arc::ptr_eq(&old, p2.stream()));
    assert_eq!(
        sub.try_recv(&mut Vec::new(), usize::MAX),
        Some(RecvStatus::Ended)
    );
    assert_eq!(hub.poll_timeout(), None);
    assert!(Arc::ptr_eq(&hub.get("live", "k").unwrap(), p2.stream()));
}

#[test]
fn poll_timeout_reports_the_earliest_expiry_and_wakes_the_driver_when_it_moves_earlier() {
    let t0 = Instant::now();
    let hub = hub(GRACE);
    let woken = Arc::new(CountingWaker::default());
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(hub.poll_timer_changed(&mut cx).is_pending());

    let a = hub.publish("live", "a", t0).unwrap();
    let b = hub.publish("live", "b", t0).unwrap();
    let c = hub.publish("live", "c", t0).unwrap();
    b.detach(t0 + 200 * MS);
    assert_eq!(woken.count(), 1, "a first timer wakes the driver");
    assert!(hub.poll_timer_changed(&mut cx).is_ready());
    assert!(hub.poll_timer_changed(&mut cx).is_pending());

    c.detach(t0 + 300 * MS);
    assert_eq!(woken.count(), 1, "a later timer needs no wake-up");
    a.detach(t0 + 100 * MS);
    assert_eq!(woken.count(), 2, "an earlier timer does");
    assert_eq!(hub.poll_timeout(), Some(t0 + 100 * MS + GRACE));

    hub.handle_timeout(t0 + 100 * MS + GRACE);
    assert!(hub.get("live", "a").is_none());
    assert_eq!(hub.poll_timeout(), Some(t0 + 200 * MS + GRACE));
    hub.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(hub.poll_timeout(), None);
    assert!(hub.live_streams().is_empty());

    assert_eq!(hub.close(), 0);
    assert!(
        hub.poll_timer_changed(&mut cx).is_ready(),
        "close wakes the driver"
    );
}

#[test]
fn dropped_handle_is_detached_at_the_latest_time_given() {
    let t0 = Instant::now();
    let hub = hub(GRACE);
    let p = hub.publish("live", "k", t0).unwrap();
    let last_frame = t0 + Duration::from_secs(7);
    p.send(video(0, true), last_frame);
    drop(p);
    assert_eq!(hub.poll_timeout(), Some(last_frame + GRACE));

    // With no grace, a drop ends the stream at once.
    let hub = hub_without_grace();
    let p = hub.publish("live", "k", t0).unwrap();
    let stream = p.stream().clone();
    drop(p);
    assert!(stream.is_ended());
    assert_eq!(hub.poll_timeout(), None);
}

fn hub_without_grace() -> Arc<Hub> {
    hub(Duration::ZERO)
}

#[test]
fn kick_in_grace_window_cancels_the_timer() {
    let t0 = Instant::now();
    let hub = hub(GRACE);
    let p = hub.publish("live", "k", t0).unwrap();
    let stream = p.stream().clone();
    p.detach(t0);
    assert!(stream.kick());
    assert_eq!(hub.poll_timeout(), None);
}

#[test]
fn wait_ended_and_poll_ended_wake_on_the_end() {
    let t0 = Instant::now();
    let hub = hub(GRACE);
    let p = hub.publish("live", "k", t0).unwrap();
    let stream = p.stream().clone();

    let woken = Arc::new(CountingWaker::default());
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    let mut waiter = pin!(stream.wait_ended());
    assert!(waiter.as_mut().poll(&mut cx).is_pending());
    assert!(waiter.as_mut().poll(&mut cx).is_pending());
    assert!(stream.poll_ended(&mut cx).is_pending());
    assert!(stream.poll_ended(&mut cx).is_pending());

    // A waiter that gives up leaves nothing behind to wake.
    let other = Arc::new(CountingWaker::default());
    let other_waker = Waker::from(other.clone());
    {
        let mut gone = pin!(stream.wait_ended());
        assert!(gone
            .as_mut()
            .poll(&mut Context::from_waker(&other_waker))
            .is_pending());
    }

    p.detach(t0);
    hub.handle_timeout(t0 + GRACE);
    // One wake for the wait_ended future, one for the poll_ended entry (re-polls of
    // the same task did not add entries).
    assert_eq!(woken.count(), 2);
    assert_eq!(other.count(), 0);
    assert!(waiter.as_mut().poll(&mut cx).is_ready());
    assert!(stream.poll_ended(&mut cx).is_ready());
}

/// Records, when woken, whether the stream was still in the hub's registry.
struct LookupWaker {
    hub: Arc<Hub>,
    found: std::sync::Mutex<Vec<bool>>,
}

impl std::task::Wake for LookupWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let found = self.hub.get("live", "k").is_some();
        self.found.lock().unwrap().push(found);
    }
}

#[test]
fn the_end_leaves_the_registry_before_waking_anyone() {
    for via_grace in [false, true] {
        let t0 = Instant::now();
        let hub = hub(GRACE);
        let p = hub.publish("live", "k", t0).unwrap();
        let stream = p.stream().clone();
        let sub = hub.subscribe("live", "k", QueueLimits::default(), t0);
        let lw = Arc::new(LookupWaker {
            hub: hub.clone(),
            found: std::sync::Mutex::new(Vec::new()),
        });
        let waker = Waker::from(lw.clone());
        let mut cx = Context::from_waker(&waker);
        let mut waiter = pin!(stream.wait_ended());
        assert!(waiter.as_mut().poll(&mut cx).is_pending());
        let mut out = Vec::new();
        assert!(sub.poll_recv(&mut cx, &mut out, usize::MAX).is_pending());

        if via_grace {
            p.detach(t0);
            hub.handle_timeout(t0 + GRACE);
        } else {
            p.unpublish();
        }
        let found = lw.found.lock().unwrap().clone();
        assert!(
            found.len() >= 2,
            "subscriber and end waiter woken: {found:?}"
        );
        assert!(
            found.iter().all(|f| !f),
            "woken while the ended stream was still registered: {found:?}"
        );
        assert!(hub.get("live", "k").is_none());
    }
}
