//! The `prism_webrtc_*` families (WHIP/WHEP sessions), kept apart from lib.rs so the
//! transport's metrics are one block. `direction` is `whip` (ingest) or `whep` (play).

use crate::{label, names, remove_where};
use prometheus::core::Collector;
use prometheus::proto::LabelPair;
use prometheus::{
    Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

const LABELS: &[&str] = &["stream", "direction"];

#[derive(Clone, Debug)]
pub(crate) struct Families {
    /// `prism_webrtc_sessions{direction}`: open WHIP and WHEP sessions.
    sessions: IntGaugeVec,
    /// `prism_webrtc_rtt_seconds{stream,direction}`: round-trip time of the stream's
    /// latest measured session (from RTCP).
    rtt_seconds: GaugeVec,
    /// `prism_webrtc_nack_total{stream,direction}`: NACKs received from viewers (whep)
    /// or sent to the publisher (whip).
    nack_total: IntCounterVec,
    /// `prism_webrtc_pli_total{stream,direction}`: PLIs received from viewers (whep) or
    /// sent to the publisher (whip).
    pli_total: IntCounterVec,
    /// `prism_webrtc_packets_lost_total{stream,direction}`: RTP packets lost, as the
    /// viewers report them (whep) or as counted on ingest (whip).
    packets_lost_total: IntCounterVec,
}

/// The series of one stream and direction.
#[derive(Clone, Debug)]
pub struct WebrtcMetrics {
    pub sessions: IntGauge,
    pub rtt_seconds: Gauge,
    pub nacks: IntCounter,
    pub plis: IntCounter,
    pub packets_lost: IntCounter,
}

impl Families {
    pub(crate) fn new(registry: &Registry) -> Families {
        let counter = |name: &str, help: &str| {
            let m = IntCounterVec::new(Opts::new(name, help), LABELS).expect("valid counter");
            registry.register(Box::new(m.clone())).expect("unique name");
            m
        };
        let sessions = IntGaugeVec::new(
            Opts::new(names::WEBRTC_SESSIONS, "Open WebRTC sessions (WHIP, WHEP)."),
            &["direction"],
        )
        .expect("valid gauge");
        registry
            .register(Box::new(sessions.clone()))
            .expect("unique name");
        let rtt_seconds = GaugeVec::new(
            Opts::new(
                names::WEBRTC_RTT_SECONDS,
                "Round-trip time of the stream's latest measured WebRTC session (RTCP).",
            ),
            LABELS,
        )
        .expect("valid gauge");
        registry
            .register(Box::new(rtt_seconds.clone()))
            .expect("unique name");
        Families {
            sessions,
            rtt_seconds,
            nack_total: counter(
                names::WEBRTC_NACK_TOTAL,
                "WebRTC NACKs received from viewers (whep) or sent to the publisher (whip).",
            ),
            pli_total: counter(
                names::WEBRTC_PLI_TOTAL,
                "WebRTC PLIs received from viewers (whep) or sent to the publisher (whip).",
            ),
            packets_lost_total: counter(
                names::WEBRTC_PACKETS_LOST_TOTAL,
                "RTP packets lost, as viewers report them (whep) or counted on ingest (whip).",
            ),
        }
    }

    pub(crate) fn collectors(&self) -> [&dyn Collector; 5] {
        [
            &self.sessions,
            &self.rtt_seconds,
            &self.nack_total,
            &self.pli_total,
            &self.packets_lost_total,
        ]
    }

    pub(crate) fn series(&self, stream: &str, direction: &str) -> WebrtcMetrics {
        let labels = [stream, direction];
        WebrtcMetrics {
            sessions: self.sessions.with_label_values(&[direction]),
            rtt_seconds: self.rtt_seconds.with_label_values(&labels),
            nacks: self.nack_total.with_label_values(&labels),
            plis: self.pli_total.with_label_values(&labels),
            packets_lost: self.packets_lost_total.with_label_values(&labels),
        }
    }

    pub(crate) fn forget_stream(&self, stream: &str) {
        let is = |labels: &[LabelPair]| label(labels, "stream") == Some(stream);
        remove_where(&self.rtt_seconds, is);
        remove_where(&self.nack_total, is);
        remove_where(&self.pli_total, is);
        remove_where(&self.packets_lost_total, is);
    }
}
