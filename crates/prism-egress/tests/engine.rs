//! The egress engine under virtual time: holds on the merge grid, the slow verdict, write
//! timeouts, blocking and drop deltas, without sockets or sleeping.

use prism_egress::{Config, Deltas, Egress, Event, Failure, Take};
use std::time::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn merging(merge_ms: u64) -> Config {
    Config {
        merge: ms(merge_ms),
        ..Config::default()
    }
}

/// Drains the events of one round.
fn events(e: &mut Egress, now: Instant) -> Vec<Event> {
    e.handle_timeout(now);
    std::iter::from_fn(|| e.poll_event()).collect()
}

#[test]
fn without_merge_every_take_is_written_at_once() {
    let t0 = Instant::now();
    let mut e = Egress::new(Config::default(), t0, t0);
    assert_eq!(e.poll_take(t0), Some(Take::Wait));
    e.handle_queued(1000, t0);
    e.handle_took(true, t0);
    assert!(e.poll_transmit(t0));
    e.handle_written(1000, t0);
    assert!(!e.poll_transmit(t0));
    assert_eq!(e.poll_take(t0), Some(Take::Wait));
    // Nothing pending: no timer at all (an idle player costs no wake-ups).
    assert_eq!(e.poll_timeout(t0), None);
}

#[test]
fn held_output_goes_out_on_the_grid_tick() {
    let epoch = Instant::now();
    let t = |n| epoch + ms(n);
    let mut e = Egress::new(merging(40), epoch, t(3));
    // A frame at 5 ms is held until the grid's next tick, 40 ms.
    e.handle_queued(500, t(5));
    e.handle_took(true, t(5));
    assert!(!e.poll_transmit(t(5)));
    assert_eq!(
        e.poll_take(t(5)),
        None,
        "frames wait in the hub queue while holding"
    );
    assert_eq!(e.poll_timeout(t(5)), Some(t(40)));
    assert!(!e.poll_transmit(t(39)));
    // The tick: look without registering, write everything, hold again until 80 ms.
    assert_eq!(e.poll_take(t(40)), Some(Take::Peek));
    e.handle_queued(700, t(40));
    e.handle_took(true, t(40));
    assert!(e.poll_transmit(t(40)));
    e.handle_written(1200, t(40));
    assert!(!e.poll_transmit(t(40)));
    assert_eq!(e.poll_timeout(t(40)), Some(t(80)));
    // Quiet at the 80 ms tick: back to waiting for the hub's wake-up, no timer.
    assert_eq!(e.poll_take(t(80)), Some(Take::Peek));
    e.handle_took(false, t(80));
    assert_eq!(e.poll_take(t(80)), Some(Take::Wait));
    assert_eq!(e.poll_timeout(t(80)), None);
    // The next frame starts a hold on the same grid: 117 ms → 120 ms.
    e.handle_queued(10, t(117));
    e.handle_took(true, t(117));
    assert_eq!(e.poll_timeout(t(117)), Some(t(120)));
}

#[test]
fn two_connections_share_the_grid() {
    let epoch = Instant::now();
    let mut a = Egress::new(merging(20), epoch, epoch + ms(1));
    let mut b = Egress::new(merging(20), epoch, epoch + ms(9));
    a.handle_queued(1, epoch + ms(2));
    a.handle_took(true, epoch + ms(2));
    b.handle_queued(1, epoch + ms(13));
    b.handle_took(true, epoch + ms(13));
    assert_eq!(a.poll_timeout(epoch + ms(13)), Some(epoch + ms(20)));
    assert_eq!(b.poll_timeout(epoch + ms(13)), Some(epoch + ms(20)));
}

#[test]
fn a_large_hold_is_written_early() {
    let epoch = Instant::now();
    let mut e = Egress::new(merging(1000), epoch, epoch);
    e.handle_queued(60 * 1024, epoch + ms(1));
    e.handle_took(true, epoch + ms(1));
    assert!(!e.poll_transmit(epoch + ms(1)));
    e.handle_queued(8 * 1024, epoch + ms(1));
    assert!(
        e.poll_transmit(epoch + ms(1)),
        "64 KiB held: the merge paid off"
    );
}

#[test]
fn blocked_output_takes_no_frames_and_checks_on_a_timer() {
    let t0 = Instant::now();
    let mut e = Egress::new(Config::default(), t0, t0);
    e.handle_queued(300 * 1024, t0);
    assert!(e.is_blocked());
    assert_eq!(e.poll_take(t0), None);
    // The queue check (250 ms) comes before the write timeout (20 s).
    assert_eq!(e.poll_timeout(t0), Some(t0 + ms(250)));
    assert_eq!(events(&mut e, t0 + ms(250)), vec![Event::Check]);
    e.handle_verdict(false, false);
    assert_eq!(e.poll_timeout(t0 + ms(250)), Some(t0 + ms(500)));
    // Draining below the mark allows taking again.
    e.handle_written(100 * 1024, t0 + ms(260));
    assert_eq!(e.poll_take(t0 + ms(260)), Some(Take::Wait));
}

#[test]
fn a_peer_over_budget_is_judged_too_slow() {
    let t0 = Instant::now();
    let mut e = Egress::new(Config::default(), t0, t0);
    e.handle_queued(300 * 1024, t0);
    let mut now = t0;
    for _ in 0..40 {
        now += ms(250);
        // Some progress: not a write timeout.
        e.handle_written(1, now);
        assert_eq!(events(&mut e, now), vec![Event::Check]);
        e.handle_verdict(false, false);
    }
    now += ms(250);
    assert_eq!(events(&mut e, now), vec![Event::Check]);
    e.handle_verdict(true, false);
    assert_eq!(e.poll_event(), Some(Event::Failed(Failure::TooSlow)));
    assert_eq!(Failure::TooSlow.as_str(), "too_slow");
}

#[test]
fn the_end_is_seen_while_blocked() {
    let t0 = Instant::now();
    let mut e = Egress::new(Config::default(), t0, t0);
    // Not blocked: the end comes through the hub queue, not the check.
    e.handle_verdict(false, true);
    assert_eq!(e.poll_event(), None);
    e.handle_queued(300 * 1024, t0);
    e.handle_verdict(false, true);
    assert_eq!(e.poll_event(), Some(Event::Finished));
}

#[test]
fn write_timeout_counts_from_the_stall_not_from_an_idle_spell() {
    let t0 = Instant::now();
    let mut e = Egress::new(Config::default(), t0, t0);
    e.handle_queued(100, t0);
    e.handle_written(100, t0);
    // A minute with nothing to send is not a stall.
    let t1 = t0 + Duration::from_secs(60);
    assert!(!events(&mut e, t1).contains(&Event::Failed(Failure::WriteTimeout)));
    e.handle_queued(100, t1);
    assert_eq!(e.poll_timeout(t1), Some(t1 + Duration::from_secs(20)));
    let almost = t1 + Duration::from_secs(20) - ms(1);
    assert!(!events(&mut e, almost).contains(&Event::Failed(Failure::WriteTimeout)));
    // Progress resets the clock.
    e.handle_written(50, almost);
    let later = almost + Duration::from_secs(20) - ms(1);
    assert!(!events(&mut e, later).contains(&Event::Failed(Failure::WriteTimeout)));
    let dead = almost + Duration::from_secs(20);
    assert!(events(&mut e, dead).contains(&Event::Failed(Failure::WriteTimeout)));
}

#[test]
fn input_is_not_read_while_output_piles_up() {
    let t0 = Instant::now();
    let mut e = Egress::new(Config::default(), t0, t0);
    assert!(e.wants_input());
    e.handle_queued(1024 * 1024, t0);
    assert!(!e.wants_input());
}

#[test]
fn drops_are_exported_once() {
    let mut d = Deltas::<3>::default();
    assert_eq!(d.delta(0, 5), 5);
    assert_eq!(d.delta(0, 5), 0);
    assert_eq!(d.delta(0, 7), 2);
    assert_eq!(d.delta(2, 1), 1);
    assert_eq!(d.delta(3, 9), 0);
}
