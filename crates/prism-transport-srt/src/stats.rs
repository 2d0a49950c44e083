//! Per-connection SRT statistics (srt-tokio's, pushed about once a second) as metrics.
//!
//! srt-tokio 0.4.4 fills only some of its statistics: no running RTT, no receive-side
//! loss count, no receive buffer bytes. So the RTT is the handshake's, receive-side loss
//! is what had to be recovered or was dropped, and the receive buffer is its time span.

use futures::StreamExt;
use prism_relay::Relay;
use srt_tokio::{SocketStatistics, SrtSocket};
use std::sync::Arc;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Ingest,
    Play,
    /// A push target (its name is the `target` label).
    Push,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Ingest => "ingest",
            Direction::Play => "play",
            Direction::Push => "push",
        }
    }
}

/// Exports the socket's statistics until dropped; then removes its series.
pub(crate) struct StatsGuard {
    task: JoinHandle<()>,
    relay: Arc<Relay>,
    labels: [String; 3],
}

impl Drop for StatsGuard {
    fn drop(&mut self) {
        self.task.abort();
        let [s, d, t] = &self.labels;
        self.relay.metrics().forget_srt(s, d, t);
    }
}

/// Starts exporting `socket`'s statistics under `stream` (and `target` for pushes).
pub(crate) fn watch(
    relay: &Arc<Relay>,
    socket: &mut SrtSocket,
    stream: &str,
    direction: Direction,
) -> StatsGuard {
    watch_target(relay, socket, stream, direction, "")
}

pub(crate) fn watch_target(
    relay: &Arc<Relay>,
    socket: &mut SrtSocket,
    stream: &str,
    direction: Direction,
    target: &str,
) -> StatsGuard {
    let labels = [
        stream.to_owned(),
        direction.as_str().to_owned(),
        target.to_owned(),
    ];
    let mut updates = socket.statistics().clone();
    let handshake_rtt = socket.settings().rtt;
    let m = relay.metrics().clone();
    let l = labels.clone();
    let task = tokio::spawn(async move {
        let l = [l[0].as_str(), l[1].as_str(), l[2].as_str()];
        let rtt = m.srt_rtt_seconds.with_label_values(&l);
        let lost = m.srt_packets_lost_total.with_label_values(&l);
        let rexmit = m.srt_packets_retransmitted_total.with_label_values(&l);
        let dropped = m.srt_packets_dropped_total.with_label_values(&l);
        let rbuf = m.srt_receive_buffer_seconds.with_label_values(&l);
        rtt.set(handshake_rtt.as_secs_f64());
        let mut last = Totals::default();
        while let Some(s) = updates.next().await {
            let now = Totals::of(&s, direction);
            lost.inc_by(now.lost.saturating_sub(last.lost));
            rexmit.inc_by(now.rexmit.saturating_sub(last.rexmit));
            dropped.inc_by(now.dropped.saturating_sub(last.dropped));
            rbuf.set(s.rx_acknowledged_time.as_secs_f64());
            last = now;
        }
    });
    StatsGuard {
        task,
        relay: relay.clone(),
        labels,
    }
}

/// The cumulative counters of one direction.
#[derive(Default)]
struct Totals {
    lost: u64,
    rexmit: u64,
    dropped: u64,
}

impl Totals {
    fn of(s: &SocketStatistics, direction: Direction) -> Totals {
        match direction {
            Direction::Ingest => Totals {
                lost: s.rx_retransmit_data + s.rx_dropped_data,
                rexmit: s.rx_retransmit_data,
                dropped: s.rx_dropped_data,
            },
            _ => Totals {
                lost: s.tx_loss_data,
                rexmit: s.tx_retransmit_data,
                dropped: s.tx_dropped_data,
            },
        }
    }
}
