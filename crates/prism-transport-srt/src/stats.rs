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

// The `direction` label's values are prism-metrics' (`SrtDirection`).
pub(crate) use prism_metrics::SrtDirection as Direction;

/// Exports the socket's statistics until dropped; then removes its series.
pub(crate) struct StatsGuard {
    task: JoinHandle<()>,
    relay: Arc<Relay>,
    stream: String,
    direction: Direction,
    target: String,
}

impl Drop for StatsGuard {
    fn drop(&mut self) {
        self.task.abort();
        self.relay
            .forget_srt(&self.stream, self.direction, &self.target);
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
    let mut updates = socket.statistics().clone();
    let handshake_rtt = socket.settings().rtt;
    let series = relay.srt_metrics(stream, direction, target);
    let task = tokio::spawn(async move {
        let rtt = series.rtt_seconds;
        let lost = series.packets_lost;
        let rexmit = series.packets_retransmitted;
        let dropped = series.packets_dropped;
        let rbuf = series.receive_buffer_seconds;
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
        stream: stream.to_owned(),
        direction,
        target: target.to_owned(),
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
