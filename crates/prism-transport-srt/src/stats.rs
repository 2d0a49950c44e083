//! Per-connection SRT statistics (srt-tokio's, pushed about once a second) as metrics.
//!
//! srt-tokio 0.4.4 fills only some of its statistics: no running RTT, no receive-side
//! loss count, no receive buffer bytes. So the RTT is the handshake's, receive-side loss
//! is what had to be recovered or was dropped, and the receive buffer is its time span.
//!
//! An ingest's receive buffer is also charged to the memory budget's `srt` pool, estimated
//! (srt-tokio does not report its bytes, and leaves the time span 0 here) as the rate
//! received over the last update times the receive latency (a packet is held until its
//! delivery time) or the reported time span if longer, at most the configured buffer size;
//! updated with each push of statistics (about once a second) and released with the guard.

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
    let latency = socket.settings().recv_tsbpd_latency;
    let mem = relay
        .memory()
        .map(|b| b.charge(prism_mem::Pool::Srt, 0))
        .unwrap_or_default();
    let series = relay.srt_metrics(stream, direction, target);
    let task = tokio::spawn(async move {
        let rtt = series.rtt_seconds;
        let lost = series.packets_lost;
        let rexmit = series.packets_retransmitted;
        let dropped = series.packets_dropped;
        let rbuf = series.receive_buffer_seconds;
        rtt.set(handshake_rtt.as_secs_f64());
        let mut last = Totals::default();
        let mut rx = RxEstimate {
            latency,
            last: None,
        };
        while let Some(s) = updates.next().await {
            if direction == Direction::Ingest {
                mem.track(rx.update(&s));
            }
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

/// The receive buffer's bytes, estimated from the latency and the recent receive rate.
struct RxEstimate {
    latency: std::time::Duration,
    /// When the previous update came, with its `rx_bytes` (srt-tokio's `elapsed_time` is
    /// not filled in either).
    last: Option<(std::time::Instant, u64)>,
}

impl RxEstimate {
    fn update(&mut self, s: &SocketStatistics) -> usize {
        let now = std::time::Instant::now();
        let Some((t0, b0)) = self.last.replace((now, s.rx_bytes)) else {
            return 0;
        };
        let dt = now.duration_since(t0).as_secs_f64();
        if dt <= 0.0 {
            return 0;
        }
        let rate = s.rx_bytes.saturating_sub(b0) as f64 / dt;
        let held = s.rx_acknowledged_time.max(self.latency);
        let bytes = rate * held.as_secs_f64();
        (bytes as usize).min(crate::RECV_BUFFER_BYTES as usize)
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
