//! Every Prometheus metric Prism exports, declared in one place so names,
//! labels and help texts form one reviewable contract.
//!
//! This crate only declares, registers and renders metrics on its own
//! [`Registry`] (not the process-global one, so tests and embedders get
//! isolated instances). It must not know about RTMP, the hub, the relay or
//! HTTP: callers take typed handles ([`Metrics::target`], [`Metrics::publish_rejected`],
//! ...) and serve [`Metrics::render`]. The metric families are private, so no other crate
//! spells a label name or puts a label value in the wrong position.
//!
//! Label values, by convention:
//! - `transport`: `rtmp`, `rtmps`, `rtmpt`, `rtmpts`, `srt`, `webrtc`.
//! - `direction` (SRT): `ingest`, `play` or `push`; (WebRTC): `whip` or `whep`.
//! - `stream`: the stream's display name chosen by the caller. Never put a
//!   secret stream key here: /metrics output is scraped and stored.
//! - `target`: the configured target name (already `[A-Za-z0-9_.-]+`).
//! - `kind`: `audio`, `video` or `data`.
//! - `reason`: a short fixed snake_case word, never free text, to bound cardinality:
//!   always an enum of this crate ([`RejectReason`], [`DropReason`], [`ErrorReason`]);
//!   error types elsewhere map their own variants to one of these.

use std::collections::HashMap;

mod webrtc;
pub use webrtc::WebrtcMetrics;

use prometheus::core::Desc;
use prometheus::{Counter, CounterVec, Gauge, IntCounter};

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::proto::LabelPair;
use prometheus::{
    Encoder, GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Labels of the per-connection SRT metrics.
const SRT_LABELS: &[&str] = &["stream", "direction", "target"];

/// Metric names, for code that looks metrics up by name (tests, dashboards).
pub mod names {
    pub const CONNECTIONS_ACTIVE: &str = "prism_connections_active";
    pub const CONNECTIONS_TOTAL: &str = "prism_connections_total";
    pub const CONNECTION_ERRORS_TOTAL: &str = "prism_connection_errors_total";
    pub const STREAMS_ACTIVE: &str = "prism_streams_active";
    pub const PUBLISH_REJECTED_TOTAL: &str = "prism_publish_rejected_total";
    pub const PLAY_REJECTED_TOTAL: &str = "prism_play_rejected_total";
    pub const INGEST_BYTES_TOTAL: &str = "prism_ingest_bytes_total";
    pub const INGEST_FRAMES_TOTAL: &str = "prism_ingest_frames_total";
    pub const TARGET_UP: &str = "prism_target_up";
    pub const TARGET_BYTES_SENT_TOTAL: &str = "prism_target_bytes_sent_total";
    pub const TARGET_QUEUE_BYTES: &str = "prism_target_queue_bytes";
    pub const TARGET_DROPPED_FRAMES_TOTAL: &str = "prism_target_dropped_frames_total";
    pub const TARGET_RECONNECTS_TOTAL: &str = "prism_target_reconnects_total";
    pub const TARGET_DISCONNECTS_TOTAL: &str = "prism_target_disconnects_total";
    pub const PLAYERS_ACTIVE: &str = "prism_players_active";
    pub const PLAYER_DROPPED_FRAMES_TOTAL: &str = "prism_player_dropped_frames_total";
    pub const BUILD_INFO: &str = "prism_build_info";
    pub const SRT_RTT_SECONDS: &str = "prism_srt_rtt_seconds";
    pub const SRT_PACKETS_LOST_TOTAL: &str = "prism_srt_packets_lost_total";
    pub const SRT_PACKETS_RETRANSMITTED_TOTAL: &str = "prism_srt_packets_retransmitted_total";
    pub const SRT_PACKETS_DROPPED_TOTAL: &str = "prism_srt_packets_dropped_total";
    pub const SRT_RECEIVE_BUFFER_SECONDS: &str = "prism_srt_receive_buffer_seconds";
    pub const HLS_REQUESTS_TOTAL: &str = "prism_hls_requests_total";
    pub const HLS_BYTES_SENT_TOTAL: &str = "prism_hls_bytes_sent_total";
    pub const HLS_SEGMENTS: &str = "prism_hls_segments";
    pub const HLS_DVR_BYTES: &str = "prism_hls_dvr_bytes";
    pub const HLS_VIEWERS: &str = "prism_hls_viewers";
    pub const HLS_BLOCKING_REQUESTS: &str = "prism_hls_blocking_requests";
    pub const HLS_DVR_DISK_BYTES: &str = "prism_hls_dvr_disk_bytes";
    pub const HLS_DVR_ERRORS_TOTAL: &str = "prism_hls_dvr_errors_total";
    pub const SOURCE_UP: &str = "prism_source_up";
    pub const SOURCE_RECONNECTS_TOTAL: &str = "prism_source_reconnects_total";
    pub const SOURCE_BYTES_RECEIVED_TOTAL: &str = "prism_source_bytes_received_total";
    pub const SOURCE_ERRORS_TOTAL: &str = "prism_source_errors_total";
    pub const RTSP_DROPPED_TOTAL: &str = "prism_rtsp_dropped_total";
    pub const WEBRTC_SESSIONS: &str = "prism_webrtc_sessions";
    pub const WEBRTC_RTT_SECONDS: &str = "prism_webrtc_rtt_seconds";
    pub const WEBRTC_NACK_TOTAL: &str = "prism_webrtc_nack_total";
    pub const WEBRTC_PLI_TOTAL: &str = "prism_webrtc_pli_total";
    pub const WEBRTC_PACKETS_LOST_TOTAL: &str = "prism_webrtc_packets_lost_total";
    pub const TRANSCODE_WORKERS: &str = "prism_transcode_workers";
    pub const TRANSCODE_RESTARTS_TOTAL: &str = "prism_transcode_restarts_total";
    pub const TRANSCODE_SPEED: &str = "prism_transcode_speed";
    pub const TRANSCODE_CPU_SECONDS_TOTAL: &str = "prism_transcode_cpu_seconds_total";
    pub const TRANSCODE_REFUSED_TOTAL: &str = "prism_transcode_refused_total";
    pub const MEMORY_BYTES: &str = "prism_memory_bytes";
    pub const MEMORY_BUDGET_BYTES: &str = "prism_memory_budget_bytes";
    pub const RUNTIME_ALIVE_TASKS: &str = "prism_runtime_alive_tasks";

    /// Every name above, in declaration order.
    pub const ALL: &[&str] = &[
        CONNECTIONS_ACTIVE,
        CONNECTIONS_TOTAL,
        CONNECTION_ERRORS_TOTAL,
        STREAMS_ACTIVE,
        PUBLISH_REJECTED_TOTAL,
        PLAY_REJECTED_TOTAL,
        INGEST_BYTES_TOTAL,
        INGEST_FRAMES_TOTAL,
        TARGET_UP,
        TARGET_BYTES_SENT_TOTAL,
        TARGET_QUEUE_BYTES,
        TARGET_DROPPED_FRAMES_TOTAL,
        TARGET_RECONNECTS_TOTAL,
        TARGET_DISCONNECTS_TOTAL,
        PLAYERS_ACTIVE,
        PLAYER_DROPPED_FRAMES_TOTAL,
        BUILD_INFO,
        SRT_RTT_SECONDS,
        SRT_PACKETS_LOST_TOTAL,
        SRT_PACKETS_RETRANSMITTED_TOTAL,
        SRT_PACKETS_DROPPED_TOTAL,
        SRT_RECEIVE_BUFFER_SECONDS,
        HLS_REQUESTS_TOTAL,
        HLS_BYTES_SENT_TOTAL,
        HLS_SEGMENTS,
        HLS_DVR_BYTES,
        HLS_VIEWERS,
        HLS_BLOCKING_REQUESTS,
        HLS_DVR_DISK_BYTES,
        HLS_DVR_ERRORS_TOTAL,
        SOURCE_UP,
        SOURCE_RECONNECTS_TOTAL,
        SOURCE_BYTES_RECEIVED_TOTAL,
        SOURCE_ERRORS_TOTAL,
        RTSP_DROPPED_TOTAL,
        TRANSCODE_WORKERS,
        TRANSCODE_RESTARTS_TOTAL,
        TRANSCODE_SPEED,
        TRANSCODE_CPU_SECONDS_TOTAL,
        TRANSCODE_REFUSED_TOTAL,
        WEBRTC_SESSIONS,
        WEBRTC_RTT_SECONDS,
        WEBRTC_NACK_TOTAL,
        WEBRTC_PLI_TOTAL,
        WEBRTC_PACKETS_LOST_TOTAL,
        MEMORY_BYTES,
        MEMORY_BUDGET_BYTES,
        RUNTIME_ALIVE_TASKS,
    ];
}

/// All of Prism's metrics. Cloning is cheap and shares the underlying values.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// `prism_connections_active{transport}`: open client connections.
    connections_active: IntGaugeVec,
    /// `prism_connections_total{transport}`: accepted client connections.
    connections_total: IntCounterVec,
    /// `prism_connection_errors_total{transport,reason}`.
    connection_errors_total: IntCounterVec,
    /// `prism_streams_active`: streams with a publisher (or in reconnect grace).
    streams_active: IntGauge,
    /// `prism_publish_rejected_total{reason}`: `already_live`, `unauthorized`,
    /// `forbidden_address`, `webhook_refused`, `webhook_error`, `too_many_streams`, ...
    publish_rejected_total: IntCounterVec,
    /// `prism_play_rejected_total{reason}`: `play_disabled`, `unauthorized`,
    /// `forbidden_address`, `webhook_refused`, `webhook_error`.
    play_rejected_total: IntCounterVec,
    /// `prism_ingest_bytes_total{stream}`: media payload bytes received.
    ingest_bytes_total: IntCounterVec,
    /// `prism_ingest_frames_total{stream,kind}`.
    ingest_frames_total: IntCounterVec,
    /// `prism_target_up{stream,target}`: 1 while publishing to the target.
    target_up: IntGaugeVec,
    /// `prism_target_bytes_sent_total{stream,target}`.
    target_bytes_sent_total: IntCounterVec,
    /// `prism_target_queue_bytes{stream,target}`.
    target_queue_bytes: IntGaugeVec,
    /// `prism_target_dropped_frames_total{stream,target,reason}`.
    target_dropped_frames_total: IntCounterVec,
    /// `prism_target_reconnects_total{stream,target}`.
    target_reconnects_total: IntCounterVec,
    /// `prism_target_disconnects_total{stream,target,reason}`.
    target_disconnects_total: IntCounterVec,
    /// `prism_players_active{stream}`.
    players_active: IntGaugeVec,
    /// `prism_player_dropped_frames_total{stream,reason}`.
    player_dropped_frames_total: IntCounterVec,
    /// `prism_build_info{version}`: always 1; carries the version as a label.
    build_info: IntGaugeVec,
    /// `prism_srt_rtt_seconds{stream,direction,target}`: round-trip time of an SRT
    /// connection as measured by its handshake (srt-tokio 0.4.4 keeps its running estimate
    /// to itself). `direction` is `ingest`, `play` or `push`; `target` is the target
    /// name for `push`, else empty.
    srt_rtt_seconds: GaugeVec,
    /// `prism_srt_packets_lost_total{stream,direction,target}`: data packets that did not
    /// arrive the first time (receiving: recovered by retransmission or dropped; sending:
    /// reported lost by the peer).
    srt_packets_lost_total: IntCounterVec,
    /// `prism_srt_packets_retransmitted_total{stream,direction,target}`.
    srt_packets_retransmitted_total: IntCounterVec,
    /// `prism_srt_packets_dropped_total{stream,direction,target}`: too late to deliver.
    srt_packets_dropped_total: IntCounterVec,
    /// `prism_srt_receive_buffer_seconds{stream,direction,target}`: span of acknowledged
    /// data waiting in the receive buffer for its release time (ingest).
    srt_receive_buffer_seconds: GaugeVec,
    /// `prism_hls_requests_total{kind,status}`: viewers' HTTP requests by resource
    /// (`playlist`, `part`, `segment`, `init`, `dash_manifest`, `page`, `other`) and status.
    hls_requests_total: IntCounterVec,
    /// `prism_hls_bytes_sent_total{stream}`: body bytes served to viewers.
    hls_bytes_sent_total: IntCounterVec,
    /// `prism_hls_segments{stream}`: complete segments in the playlist (DVR included).
    hls_segments: IntGaugeVec,
    /// `prism_hls_dvr_bytes{stream}`: bytes the stream's window holds.
    hls_dvr_bytes: IntGaugeVec,
    /// `prism_hls_viewers{stream}`: estimate: distinct clients that fetched media lately.
    hls_viewers: IntGaugeVec,
    /// `prism_hls_blocking_requests`: blocking reloads and part requests parked now.
    hls_blocking_requests: IntGauge,
    /// `prism_hls_dvr_disk_bytes{stream}`: of `prism_hls_dvr_bytes`, the bytes in `dvr_dir`.
    hls_dvr_disk_bytes: IntGaugeVec,
    /// `prism_hls_dvr_errors_total{op}`: failed DVR file operations (write, read, delete).
    hls_dvr_errors_total: IntCounterVec,
    /// `prism_source_up{stream}`: 1 while a pulled source publishes its stream.
    source_up: IntGaugeVec,
    /// `prism_source_reconnects_total{stream}`: pull attempts after the first.
    source_reconnects_total: IntCounterVec,
    /// `prism_source_bytes_received_total{stream}`: bytes read from the source.
    source_bytes_received_total: IntCounterVec,
    /// `prism_source_errors_total{stream,reason}`: failed or refused pull attempts.
    source_errors_total: IntCounterVec,
    /// `prism_rtsp_dropped_total{reason}`: media the RTSP client (cameras in) dropped.
    rtsp_dropped_total: IntCounterVec,
    /// The `prism_webrtc_*` families.
    webrtc: webrtc::Families,
    /// `prism_transcode_workers`: ABR ladder workers (ffmpeg processes) running now.
    transcode_workers: IntGauge,
    /// `prism_transcode_restarts_total{stream,reason}`: worker restarts (`exited`,
    /// `stalled`, `slow`, `spawn_failed`).
    transcode_restarts_total: IntCounterVec,
    /// `prism_transcode_speed{stream}`: the worker's speed (1.0 = real time).
    transcode_speed: GaugeVec,
    /// `prism_transcode_cpu_seconds_total{stream}`: CPU time of the stream's workers.
    transcode_cpu_seconds_total: CounterVec,
    /// `prism_transcode_refused_total`: streams relayed without their ladder (max_transcodes).
    transcode_refused_total: IntCounter,
    /// `prism_memory_bytes{pool}`: media bytes held now, by pool (`[limits] max_memory_mb`).
    memory_bytes: IntGaugeVec,
    /// `prism_memory_budget_bytes`: the media-memory budget (`[limits] max_memory_mb`).
    memory_budget_bytes: IntGauge,
    /// `prism_runtime_alive_tasks`: tokio tasks alive now (a leak shows as a steady climb).
    runtime_alive_tasks: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        use names::*;
        let registry = Registry::new();
        // Names and labels are constants, so a failure here is a bug in this
        // file (caught by the tests), not a runtime condition.
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let m = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            registry.register(Box::new(m.clone())).expect("unique name");
            m
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
            registry.register(Box::new(m.clone())).expect("unique name");
            m
        };
        let streams_active = IntGauge::new(
            STREAMS_ACTIVE,
            "Streams currently live (publishing, or within the publisher reconnect grace).",
        )
        .expect("valid gauge");
        registry
            .register(Box::new(streams_active.clone()))
            .expect("unique name");

        let m = Metrics {
            connections_active: gauge(
                CONNECTIONS_ACTIVE,
                "Client connections currently open.",
                &["transport"],
            ),
            connections_total: counter(
                CONNECTIONS_TOTAL,
                "Client connections accepted.",
                &["transport"],
            ),
            connection_errors_total: counter(
                CONNECTION_ERRORS_TOTAL,
                "Client connections that ended in an error, by reason.",
                &["transport", "reason"],
            ),
            streams_active,
            publish_rejected_total: counter(
                PUBLISH_REJECTED_TOTAL,
                "Publish attempts refused, by reason.",
                &["reason"],
            ),
            play_rejected_total: counter(
                PLAY_REJECTED_TOTAL,
                "Play attempts refused, by reason.",
                &["reason"],
            ),
            ingest_bytes_total: counter(
                INGEST_BYTES_TOTAL,
                "Media payload bytes received from the publisher.",
                &["stream"],
            ),
            ingest_frames_total: counter(
                INGEST_FRAMES_TOTAL,
                "Frames received from the publisher, by kind (audio, video, data).",
                &["stream", "kind"],
            ),
            target_up: gauge(
                TARGET_UP,
                "1 while the stream is being published to the target, else 0.",
                &["stream", "target"],
            ),
            target_bytes_sent_total: counter(
                TARGET_BYTES_SENT_TOTAL,
                "Bytes written to the target connection.",
                &["stream", "target"],
            ),
            target_queue_bytes: gauge(
                TARGET_QUEUE_BYTES,
                "Bytes queued for the target, not yet sent.",
                &["stream", "target"],
            ),
            target_dropped_frames_total: counter(
                TARGET_DROPPED_FRAMES_TOTAL,
                "Frames dropped for the target instead of being sent, by reason.",
                &["stream", "target", "reason"],
            ),
            target_reconnects_total: counter(
                TARGET_RECONNECTS_TOTAL,
                "Reconnection attempts to the target.",
                &["stream", "target"],
            ),
            target_disconnects_total: counter(
                TARGET_DISCONNECTS_TOTAL,
                "Target connections lost or dropped, by reason.",
                &["stream", "target", "reason"],
            ),
            players_active: gauge(
                PLAYERS_ACTIVE,
                "Players currently watching the stream.",
                &["stream"],
            ),
            player_dropped_frames_total: counter(
                PLAYER_DROPPED_FRAMES_TOTAL,
                "Frames dropped for players of the stream, by reason.",
                &["stream", "reason"],
            ),
            build_info: gauge(
                BUILD_INFO,
                "Always 1; the version label tells which Prism build is running.",
                &["version"],
            ),
            srt_rtt_seconds: {
                let m = GaugeVec::new(
                    Opts::new(
                        SRT_RTT_SECONDS,
                        "Round-trip time of the SRT connection, from its handshake.",
                    ),
                    SRT_LABELS,
                )
                .expect("valid gauge");
                registry.register(Box::new(m.clone())).expect("unique name");
                m
            },
            srt_packets_lost_total: counter(
                SRT_PACKETS_LOST_TOTAL,
                "SRT data packets that did not arrive the first time.",
                SRT_LABELS,
            ),
            srt_packets_retransmitted_total: counter(
                SRT_PACKETS_RETRANSMITTED_TOTAL,
                "SRT data packets retransmitted (sent or received).",
                SRT_LABELS,
            ),
            srt_packets_dropped_total: counter(
                SRT_PACKETS_DROPPED_TOTAL,
                "SRT data packets dropped as too late to deliver.",
                SRT_LABELS,
            ),
            srt_receive_buffer_seconds: {
                let m = GaugeVec::new(
                    Opts::new(
                        SRT_RECEIVE_BUFFER_SECONDS,
                        "Span of data in the SRT receive buffer, waiting for its release time.",
                    ),
                    SRT_LABELS,
                )
                .expect("valid gauge");
                registry.register(Box::new(m.clone())).expect("unique name");
                m
            },
            hls_requests_total: counter(
                HLS_REQUESTS_TOTAL,
                "Viewers' HLS/DASH HTTP requests, by resource kind and status.",
                &["kind", "status"],
            ),
            hls_bytes_sent_total: counter(
                HLS_BYTES_SENT_TOTAL,
                "Body bytes served to HLS/DASH viewers of the stream.",
                &["stream"],
            ),
            hls_segments: gauge(
                HLS_SEGMENTS,
                "Complete segments in the stream's HLS playlist (DVR window included).",
                &["stream"],
            ),
            hls_dvr_bytes: gauge(
                HLS_DVR_BYTES,
                "Bytes held for the stream's HLS live and DVR window.",
                &["stream"],
            ),
            hls_viewers: gauge(
                HLS_VIEWERS,
                "Estimated HLS/DASH viewers: distinct clients that fetched media in the last 30 s.",
                &["stream"],
            ),
            hls_blocking_requests: {
                let g = IntGauge::new(
                    HLS_BLOCKING_REQUESTS,
                    "Blocking playlist reloads and part requests parked now.",
                )
                .expect("valid gauge");
                registry.register(Box::new(g.clone())).expect("unique name");
                g
            },
            hls_dvr_disk_bytes: gauge(
                HLS_DVR_DISK_BYTES,
                "Of prism_hls_dvr_bytes, the bytes spilled to files in dvr_dir.",
                &["stream"],
            ),
            hls_dvr_errors_total: counter(
                HLS_DVR_ERRORS_TOTAL,
                "Failed DVR file operations in dvr_dir (op: write, read, delete); a failed write keeps that stream's window in memory.",
                &["op"],
            ),
            source_up: gauge(
                SOURCE_UP,
                "1 while the pulled source publishes its stream, else 0.",
                &["stream"],
            ),
            source_reconnects_total: counter(
                SOURCE_RECONNECTS_TOTAL,
                "Pull attempts of the source after its first.",
                &["stream"],
            ),
            source_bytes_received_total: counter(
                SOURCE_BYTES_RECEIVED_TOTAL,
                "Bytes read from the pulled source's connection.",
                &["stream"],
            ),
            source_errors_total: counter(
                SOURCE_ERRORS_TOTAL,
                "Pull attempts of the source that failed or were refused, by reason.",
                &["stream", "reason"],
            ),
            rtsp_dropped_total: counter(
                RTSP_DROPPED_TOTAL,
                "Media pulled from RTSP cameras and dropped (reason: g711 and unsupported_codec count tracks not taken, once per session; malformed, lost, before_keyframe, too_large, unexpected count packets or frames).",
                &["reason"],
            ),
            webrtc: webrtc::Families::new(&registry),
            transcode_workers: {
                let g = IntGauge::new(
                    TRANSCODE_WORKERS,
                    "ABR ladder workers (ffmpeg processes) running now.",
                )
                .expect("valid gauge");
                registry.register(Box::new(g.clone())).expect("unique name");
                g
            },
            transcode_restarts_total: counter(
                TRANSCODE_RESTARTS_TOTAL,
                "ABR ladder worker restarts, by reason (exited, stalled, slow, spawn_failed).",
                &["stream", "reason"],
            ),
            transcode_speed: {
                let m = GaugeVec::new(
                    Opts::new(
                        TRANSCODE_SPEED,
                        "Speed of the stream's ABR ladder worker (1.0 = real time), as ffmpeg reports it.",
                    ),
                    &["stream"],
                )
                .expect("valid gauge");
                registry.register(Box::new(m.clone())).expect("unique name");
                m
            },
            transcode_cpu_seconds_total: {
                let m = CounterVec::new(
                    Opts::new(
                        TRANSCODE_CPU_SECONDS_TOTAL,
                        "CPU time (user + system) used by the stream's ABR ladder workers.",
                    ),
                    &["stream"],
                )
                .expect("valid counter");
                registry.register(Box::new(m.clone())).expect("unique name");
                m
            },
            transcode_refused_total: {
                let c = IntCounter::new(
                    TRANSCODE_REFUSED_TOTAL,
                    "Streams relayed without their ABR ladder because [limits] max_transcodes workers were running.",
                )
                .expect("valid counter");
                registry.register(Box::new(c.clone())).expect("unique name");
                c
            },
            memory_bytes: gauge(
                MEMORY_BYTES,
                "Media bytes held now against [limits] max_memory_mb, by pool (frames: GOP caches and player/target queues; reassembly; rtmpt; hls; srt; rtsp; webrtc; transcode; other).",
                &["pool"],
            ),
            memory_budget_bytes: {
                let g = IntGauge::new(
                    MEMORY_BUDGET_BYTES,
                    "The media-memory budget ([limits] max_memory_mb) in bytes; new publishes are refused above 90 % of it.",
                )
                .expect("valid gauge");
                registry.register(Box::new(g.clone())).expect("unique name");
                g
            },
            runtime_alive_tasks: {
                let g = IntGauge::new(
                    RUNTIME_ALIVE_TASKS,
                    "Tokio tasks alive now (spawned and not yet finished) in Prism's runtime.",
                )
                .expect("valid gauge");
                registry.register(Box::new(g.clone())).expect("unique name");
                g
            },
            registry,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m
    }

    /// Text exposition format (what `/metrics` serves).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("text exposition is UTF-8")
    }

    // --- Typed handles: the only way other crates touch a series. Each takes its labels
    // --- as typed arguments in a fixed order, so call sites cannot swap or misspell them.

    /// `prism_connections_{active,total}{transport}` of one transport (`rtmp`, `srt`, ...:
    /// the transport crate's own constant, `&'static` so it cannot be runtime text).
    pub fn connection(&self, transport: &'static str) -> ConnectionMetrics {
        ConnectionMetrics {
            active: self.connections_active.with_label_values(&[transport]),
            accepted: self.connections_total.with_label_values(&[transport]),
        }
    }

    /// `prism_connection_errors_total{transport,reason}`: `reason` is what ended or refused
    /// the connection (a relay `ConnError`'s, a transport's refusal code...).
    pub fn connection_error(&self, transport: &'static str, reason: ErrorReason) -> IntCounter {
        self.connection_errors_total
            .with_label_values(&[transport, reason.as_str()])
    }

    /// `prism_streams_active` (no labels).
    pub fn streams_active(&self) -> &IntGauge {
        &self.streams_active
    }

    /// `prism_publish_rejected_total{reason}`.
    pub fn publish_rejected(&self, reason: RejectReason) -> IntCounter {
        self.publish_rejected_total
            .with_label_values(&[reason.as_str()])
    }

    /// `prism_play_rejected_total{reason}`.
    pub fn play_rejected(&self, reason: RejectReason) -> IntCounter {
        self.play_rejected_total
            .with_label_values(&[reason.as_str()])
    }

    /// `prism_ingest_{bytes,frames}_total` of one stream; removed by [`Metrics::forget_stream`].
    pub fn ingest(&self, stream: &str) -> IngestMetrics {
        let frames = |kind: &str| self.ingest_frames_total.with_label_values(&[stream, kind]);
        IngestMetrics {
            bytes: self.ingest_bytes_total.with_label_values(&[stream]),
            audio_frames: frames("audio"),
            video_frames: frames("video"),
            data_frames: frames("data"),
        }
    }

    /// `prism_players_active{stream}`; removed by [`Metrics::forget_stream`].
    pub fn players_active(&self, stream: &str) -> IntGauge {
        self.players_active.with_label_values(&[stream])
    }

    /// `prism_player_dropped_frames_total{stream,reason}`; removed by [`Metrics::forget_stream`].
    pub fn player_dropped(&self, stream: &str, reason: DropReason) -> IntCounter {
        self.player_dropped_frames_total
            .with_label_values(&[stream, reason.as_str()])
    }

    /// The `prism_target_*` series of one target of a stream; removed by
    /// [`Metrics::forget_target`] / [`Metrics::forget_stream`].
    pub fn target(&self, stream: &str, target: &str) -> TargetMetrics {
        let labels = [stream, target];
        TargetMetrics {
            up: self.target_up.with_label_values(&labels),
            bytes_sent: self.target_bytes_sent_total.with_label_values(&labels),
            queue_bytes: self.target_queue_bytes.with_label_values(&labels),
            reconnects: self.target_reconnects_total.with_label_values(&labels),
            dropped: self.target_dropped_frames_total.clone(),
            disconnects: self.target_disconnects_total.clone(),
            stream: stream.to_owned(),
            target: target.to_owned(),
        }
    }

    /// The `prism_srt_*` series of one SRT connection (`target` is the push target's name,
    /// empty unless `direction` is [`SrtDirection::Push`]); removed by [`Metrics::forget_srt`].
    pub fn srt(&self, stream: &str, direction: SrtDirection, target: &str) -> SrtMetrics {
        let labels = [stream, direction.as_str(), target];
        SrtMetrics {
            rtt_seconds: self.srt_rtt_seconds.with_label_values(&labels),
            packets_lost: self.srt_packets_lost_total.with_label_values(&labels),
            packets_retransmitted: self
                .srt_packets_retransmitted_total
                .with_label_values(&labels),
            packets_dropped: self.srt_packets_dropped_total.with_label_values(&labels),
            receive_buffer_seconds: self.srt_receive_buffer_seconds.with_label_values(&labels),
        }
    }

    /// Descriptions (name, help, label names) of every family, for checks of dashboards
    /// and alerts against what is exported.
    pub fn descs(&self) -> Vec<&Desc> {
        self.collectors()
            .into_iter()
            .chain(self.webrtc.collectors())
            .chain([
                &self.memory_bytes as &dyn Collector,
                &self.memory_budget_bytes,
                &self.runtime_alive_tasks,
            ])
            .flat_map(|c| c.desc())
            .collect()
    }

    fn collectors(&self) -> [&dyn Collector; 40] {
        [
            &self.connections_active,
            &self.connections_total,
            &self.connection_errors_total,
            &self.streams_active,
            &self.publish_rejected_total,
            &self.play_rejected_total,
            &self.ingest_bytes_total,
            &self.ingest_frames_total,
            &self.target_up,
            &self.target_bytes_sent_total,
            &self.target_queue_bytes,
            &self.target_dropped_frames_total,
            &self.target_reconnects_total,
            &self.target_disconnects_total,
            &self.players_active,
            &self.player_dropped_frames_total,
            &self.build_info,
            &self.srt_rtt_seconds,
            &self.srt_packets_lost_total,
            &self.srt_packets_retransmitted_total,
            &self.srt_packets_dropped_total,
            &self.srt_receive_buffer_seconds,
            &self.hls_requests_total,
            &self.hls_bytes_sent_total,
            &self.hls_segments,
            &self.hls_dvr_bytes,
            &self.hls_viewers,
            &self.hls_blocking_requests,
            &self.hls_dvr_disk_bytes,
            &self.hls_dvr_errors_total,
            &self.source_up,
            &self.source_reconnects_total,
            &self.source_bytes_received_total,
            &self.source_errors_total,
            &self.rtsp_dropped_total,
            &self.transcode_workers,
            &self.transcode_restarts_total,
            &self.transcode_speed,
            &self.transcode_cpu_seconds_total,
            &self.transcode_refused_total,
        ]
    }

    /// `prism_transcode_workers`.
    pub fn transcode_workers(&self) -> &IntGauge {
        &self.transcode_workers
    }

    /// `prism_transcode_restarts_total{stream,reason}`; `reason` a fixed snake_case word.
    pub fn transcode_restarts(&self, stream: &str, reason: &'static str) -> IntCounter {
        self.transcode_restarts_total
            .with_label_values(&[stream, reason])
    }

    /// `prism_transcode_speed{stream}`.
    pub fn transcode_speed(&self, stream: &str) -> Gauge {
        self.transcode_speed.with_label_values(&[stream])
    }

    /// `prism_transcode_cpu_seconds_total{stream}`.
    pub fn transcode_cpu_seconds(&self, stream: &str) -> Counter {
        self.transcode_cpu_seconds_total
            .with_label_values(&[stream])
    }

    /// `prism_transcode_refused_total`.
    pub fn transcode_refused(&self) -> &IntCounter {
        &self.transcode_refused_total
    }

    /// `prism_memory_bytes{pool}`; `pool` a fixed snake_case word.
    pub fn memory_bytes(&self, pool: &'static str) -> IntGauge {
        self.memory_bytes.with_label_values(&[pool])
    }

    /// `prism_memory_budget_bytes`.
    pub fn memory_budget_bytes(&self) -> &IntGauge {
        &self.memory_budget_bytes
    }

    /// `prism_runtime_alive_tasks`.
    pub fn runtime_alive_tasks(&self) -> &IntGauge {
        &self.runtime_alive_tasks
    }

    /// `prism_hls_requests_total{kind,status}`.
    pub fn hls_request(&self, kind: &'static str, status: u16) -> IntCounter {
        self.hls_requests_total
            .with_label_values(&[kind, &status.to_string()])
    }

    /// The HLS series of one stream.
    pub fn hls(&self, stream: &str) -> HlsMetrics {
        HlsMetrics {
            bytes_sent: self.hls_bytes_sent_total.with_label_values(&[stream]),
            segments: self.hls_segments.with_label_values(&[stream]),
            dvr_bytes: self.hls_dvr_bytes.with_label_values(&[stream]),
            viewers: self.hls_viewers.with_label_values(&[stream]),
            dvr_disk_bytes: self.hls_dvr_disk_bytes.with_label_values(&[stream]),
        }
    }

    /// `prism_hls_dvr_errors_total{op}`; `op`: write, read or delete.
    pub fn hls_dvr_error(&self, op: &'static str) -> IntCounter {
        self.hls_dvr_errors_total.with_label_values(&[op])
    }

    /// `prism_rtsp_dropped_total{reason}`.
    pub fn rtsp_dropped(&self, reason: &'static str) -> IntCounter {
        self.rtsp_dropped_total.with_label_values(&[reason])
    }

    /// `prism_hls_blocking_requests`.
    pub fn hls_blocking_requests(&self) -> &IntGauge {
        &self.hls_blocking_requests
    }

    /// Removes the HLS series of a stream (its window is gone).
    pub fn forget_hls(&self, stream: &str) {
        let is = |labels: &[LabelPair]| label(labels, "stream") == Some(stream);
        remove_where(&self.hls_bytes_sent_total, is);
        remove_where(&self.hls_segments, is);
        remove_where(&self.hls_dvr_bytes, is);
        remove_where(&self.hls_viewers, is);
        remove_where(&self.hls_dvr_disk_bytes, is);
    }

    /// Removes all label sets of a stream (when a stream ends) so labels
    /// don't grow without bound.
    pub fn forget_stream(&self, stream: &str) {
        let is = |labels: &[LabelPair]| label(labels, "stream") == Some(stream);
        remove_where(&self.ingest_bytes_total, is);
        remove_where(&self.ingest_frames_total, is);
        remove_where(&self.target_up, is);
        remove_where(&self.target_bytes_sent_total, is);
        remove_where(&self.target_queue_bytes, is);
        remove_where(&self.target_dropped_frames_total, is);
        remove_where(&self.target_reconnects_total, is);
        remove_where(&self.target_disconnects_total, is);
        remove_where(&self.players_active, is);
        remove_where(&self.player_dropped_frames_total, is);
        remove_where(&self.srt_rtt_seconds, is);
        remove_where(&self.srt_packets_lost_total, is);
        remove_where(&self.srt_packets_retransmitted_total, is);
        remove_where(&self.srt_packets_dropped_total, is);
        remove_where(&self.srt_receive_buffer_seconds, is);
        remove_where(&self.transcode_restarts_total, is);
        remove_where(&self.transcode_speed, is);
        remove_where(&self.transcode_cpu_seconds_total, is);
        self.forget_hls(stream);
        self.webrtc.forget_stream(stream);
    }

    /// The `prism_webrtc_*` series of one stream and direction (`whip` or `whep`).
    pub fn webrtc(&self, stream: &str, direction: &'static str) -> WebrtcMetrics {
        self.webrtc.series(stream, direction)
    }

    /// Removes the SRT label sets of one connection's `(stream, direction, target)`.
    pub fn forget_srt(&self, stream: &str, direction: SrtDirection, target: &str) {
        let labels = [stream, direction.as_str(), target];
        let _ = self.srt_rtt_seconds.remove_label_values(&labels);
        let _ = self.srt_packets_lost_total.remove_label_values(&labels);
        let _ = self
            .srt_packets_retransmitted_total
            .remove_label_values(&labels);
        let _ = self.srt_packets_dropped_total.remove_label_values(&labels);
        let _ = self.srt_receive_buffer_seconds.remove_label_values(&labels);
    }

    /// The `prism_source_*` series of the source of `stream`; removed by
    /// [`Metrics::forget_source`].
    pub fn source(&self, stream: &str) -> SourceMetrics {
        SourceMetrics {
            up: self.source_up.with_label_values(&[stream]),
            reconnects: self.source_reconnects_total.with_label_values(&[stream]),
            bytes_received: self
                .source_bytes_received_total
                .with_label_values(&[stream]),
            errors: self.source_errors_total.clone(),
            stream: stream.to_owned(),
        }
    }

    /// Removes the `prism_source_*` series of the source of `stream` (it was removed).
    pub fn forget_source(&self, stream: &str) {
        let is = |labels: &[LabelPair]| label(labels, "stream") == Some(stream);
        remove_where(&self.source_up, is);
        remove_where(&self.source_reconnects_total, is);
        remove_where(&self.source_bytes_received_total, is);
        remove_where(&self.source_errors_total, is);
    }

    /// Removes all label sets of one target of a stream.
    pub fn forget_target(&self, stream: &str, target: &str) {
        let is = |labels: &[LabelPair]| {
            label(labels, "stream") == Some(stream) && label(labels, "target") == Some(target)
        };
        remove_where(&self.target_up, is);
        remove_where(&self.target_bytes_sent_total, is);
        remove_where(&self.target_queue_bytes, is);
        remove_where(&self.target_dropped_frames_total, is);
        remove_where(&self.target_reconnects_total, is);
        remove_where(&self.target_disconnects_total, is);
    }
}

/// `prism_hls_*{stream}` of one stream.
#[derive(Debug, Clone)]
pub struct HlsMetrics {
    pub bytes_sent: IntCounter,
    pub segments: IntGauge,
    pub dvr_bytes: IntGauge,
    pub viewers: IntGauge,
    /// Of `dvr_bytes`, those in `dvr_dir`.
    pub dvr_disk_bytes: IntGauge,
}

/// `prism_connections_active` / `prism_connections_total` of one transport.
#[derive(Debug, Clone)]
pub struct ConnectionMetrics {
    /// Open connections: inc on accept, dec when closed.
    pub active: IntGauge,
    /// Accepted connections.
    pub accepted: IntCounter,
}

/// `prism_ingest_*` of one stream.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    /// `prism_ingest_bytes_total`: media payload bytes.
    pub bytes: IntCounter,
    /// `prism_ingest_frames_total{kind="audio"}`.
    pub audio_frames: IntCounter,
    /// `prism_ingest_frames_total{kind="video"}`.
    pub video_frames: IntCounter,
    /// `prism_ingest_frames_total{kind="data"}`.
    pub data_frames: IntCounter,
}

/// The `prism_target_*` series of one target of one stream.
#[derive(Debug, Clone)]
pub struct TargetMetrics {
    /// `prism_target_up`: 1 while publishing to the target.
    pub up: IntGauge,
    /// `prism_target_bytes_sent_total`.
    pub bytes_sent: IntCounter,
    /// `prism_target_queue_bytes`.
    pub queue_bytes: IntGauge,
    /// `prism_target_reconnects_total`.
    pub reconnects: IntCounter,
    // The reason-labelled families, resolved per reason on use.
    dropped: IntCounterVec,
    disconnects: IntCounterVec,
    stream: String,
    target: String,
}

impl TargetMetrics {
    /// `prism_target_dropped_frames_total{reason}` of this target.
    pub fn dropped(&self, reason: DropReason) -> IntCounter {
        self.dropped
            .with_label_values(&[&self.stream, &self.target, reason.as_str()])
    }

    /// `prism_target_disconnects_total{reason}` of this target; `reason` is the
    /// connection error's (`ConnError::reason`).
    pub fn disconnected(&self, reason: ErrorReason) -> IntCounter {
        self.disconnects
            .with_label_values(&[&self.stream, &self.target, reason.as_str()])
    }
}

/// The `prism_source_*` series of one pulled source.
#[derive(Debug, Clone)]
pub struct SourceMetrics {
    /// `prism_source_up`.
    pub up: IntGauge,
    /// `prism_source_reconnects_total`.
    pub reconnects: IntCounter,
    /// `prism_source_bytes_received_total`.
    pub bytes_received: IntCounter,
    errors: IntCounterVec,
    stream: String,
}

impl SourceMetrics {
    /// `prism_source_errors_total{reason}` of this source.
    pub fn error(&self, reason: ErrorReason) -> IntCounter {
        self.errors
            .with_label_values(&[&self.stream, reason.as_str()])
    }
}

/// The `prism_srt_*` series of one SRT connection.
#[derive(Debug, Clone)]
pub struct SrtMetrics {
    pub rtt_seconds: Gauge,
    pub packets_lost: IntCounter,
    pub packets_retransmitted: IntCounter,
    pub packets_dropped: IntCounter,
    pub receive_buffer_seconds: Gauge,
}

/// Which way an SRT connection carries the stream (the `direction` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtDirection {
    Ingest,
    Play,
    /// A push target (its name is the `target` label).
    Push,
}

impl SrtDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            SrtDirection::Ingest => "ingest",
            SrtDirection::Play => "play",
            SrtDirection::Push => "push",
        }
    }
}

/// Why a publish or play was refused: the `reason` of `prism_publish_rejected_total` and
/// `prism_play_rejected_total` (dashboards and alerts match these words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    Unauthorized,
    ForbiddenAddress,
    PlayDisabled,
    WebhookRefused,
    WebhookError,
    TooManyStreams,
    BadName,
    /// The stream key is already being published.
    AlreadyLive,
    /// The server is shutting down.
    ShuttingDown,
    /// The connection already publishes a stream.
    BusyConnection,
    Other,
    /// The media-memory budget is above its high-water mark.
    Memory,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Unauthorized => "unauthorized",
            RejectReason::ForbiddenAddress => "forbidden_address",
            RejectReason::PlayDisabled => "play_disabled",
            RejectReason::WebhookRefused => "webhook_refused",
            RejectReason::WebhookError => "webhook_error",
            RejectReason::TooManyStreams => "too_many_streams",
            RejectReason::BadName => "bad_name",
            RejectReason::AlreadyLive => "already_live",
            RejectReason::ShuttingDown => "shutting_down",
            RejectReason::BusyConnection => "busy_connection",
            RejectReason::Other => "other",
            RejectReason::Memory => "memory",
        }
    }
}

/// Why frames were dropped for a player or target: the `reason` of
/// `prism_player_dropped_frames_total` and `prism_target_dropped_frames_total`. Mirrors the
/// hub's drop reasons (this crate does not depend on the hub; the relay maps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    QueueFull,
    WaitingKeyframe,
    AudioOverflow,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::WaitingKeyframe => "waiting_keyframe",
            DropReason::AudioOverflow => "audio_overflow",
        }
    }
}

/// Why a connection, a dial or a push ended in error: the `reason` of
/// `prism_connection_errors_total` and `prism_target_disconnects_total` (dashboards, alerts
/// and tests match these words; [`ErrorReason::as_str`] is the exported label). Each
/// transport and error type maps its own errors to one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    // Connections and protocol (any transport).
    /// `protocol`: The peer broke the protocol (a malformed or unexpected message).
    Protocol,
    /// `handshake_timeout`: The handshake and connect did not complete in time.
    HandshakeTimeout,
    /// `idle_timeout`: Nothing arrived from a connected peer for too long.
    IdleTimeout,
    /// `io`: Reading or writing the socket failed.
    Io,
    /// `too_slow`: The player or target stayed over its queue budget.
    TooSlow,
    /// `write_timeout`: The peer stopped reading: pending output made no progress.
    WriteTimeout,
    /// `closed`: The peer or destination closed the connection.
    Closed,
    // Push targets: dialing and set-up.
    /// `bad_url`: The target URL does not parse.
    BadUrl,
    /// `unsupported_scheme`: No transport serves the target URL's scheme.
    UnsupportedScheme,
    /// `connect`: Connecting to the destination failed.
    Connect,
    /// `connect_timeout`: Connecting to the destination timed out.
    ConnectTimeout,
    /// `refused`: The destination refused or broke the set-up (connect, createStream, publish).
    Refused,
    /// `setup_timeout`: Handshake and publish with the destination did not complete in time.
    SetupTimeout,
    // TLS (rtmps, rtmpts).
    /// `tls_config`: The target's TLS settings are unusable (CA file, server name).
    TlsConfig,
    /// `tls_verify`: The destination's certificate was refused.
    TlsVerify,
    /// `tls_handshake`: A TLS handshake failed.
    TlsHandshake,
    /// `tls_handshake_timeout`: A client did not finish its TLS handshake in time.
    TlsHandshakeTimeout,
    // `[limits]` on connections.
    /// `too_many_connections`: `max_connections` reached.
    TooManyConnections,
    /// `too_many_per_ip`: `max_connections_per_ip` reached.
    TooManyPerIp,
    // HTTP tunnel (rtmpt, rtmpts).
    /// `too_many_sessions`: The tunnel's session table is full.
    TooManySessions,
    /// `unknown_session`: A request names a session that does not exist (or expired).
    UnknownSession,
    /// `body_too_large`: A request body is over the limit.
    BodyTooLarge,
    /// `buffer_full`: A session's unread input is over the limit.
    BufferFull,
    /// `session_timeout`: A tunnel session saw no request for too long.
    SessionTimeout,
    /// `bad_request`: Not a tunnel request (or not HTTP).
    BadRequest,
    /// `header_too_large`: Request headers over hyper's limit.
    HeaderTooLarge,
    /// `header_timeout`: Request headers did not arrive in time.
    HeaderTimeout,
    /// `body_timeout`: A request body did not arrive in time.
    BodyTimeout,
    /// `body_error`: Reading a request body failed.
    BodyError,
    // SRT.
    /// `bad_handshake`: A malformed or contradictory handshake.
    BadHandshake,
    /// `key_length_mismatch`: The caller's key length is not the listener's.
    KeyLengthMismatch,
    /// `encryption_mismatch`: Encryption on one side only.
    EncryptionMismatch,
    /// `congestion_ext`: The caller asked for a congestion control Prism does not offer.
    CongestionExt,
    /// `filter_ext`: The caller asked for a packet filter Prism does not offer.
    FilterExt,
    /// `group_ext`: The caller asked for connection bonding (groups).
    GroupExt,
    /// `too_many_handshakes`: Too many handshakes in progress.
    TooManyHandshakes,
    /// `shutting_down`: The server is shutting down.
    ShuttingDown,
    /// `rejected`: Refused with another SRT rejection code.
    Rejected,
    /// `bad_stream_id`: The caller's stream id does not parse.
    BadStreamId,
    /// `publish_refused`: The publish was refused (access, limits, already live).
    PublishRefused,
    /// `play_refused`: The play was refused (access, play disabled).
    PlayRefused,
    /// `lost`: A publisher's connection was lost (not closed).
    Lost,
    // Pulled sources.
    /// `already_live`: The stream is already live from another publisher.
    AlreadyLive,
    /// `not_found`: The origin does not have the stream.
    NotFound,
    /// `rtmpe_disabled`: An RTMPE (encrypted RTMP) client while `[rtmp] rtmpe` is off.
    RtmpeDisabled,
}

impl ErrorReason {
    /// Every reason, in declaration order.
    pub const ALL: &'static [ErrorReason] = &[
        ErrorReason::Protocol,
        ErrorReason::HandshakeTimeout,
        ErrorReason::IdleTimeout,
        ErrorReason::Io,
        ErrorReason::TooSlow,
        ErrorReason::WriteTimeout,
        ErrorReason::Closed,
        ErrorReason::BadUrl,
        ErrorReason::UnsupportedScheme,
        ErrorReason::Connect,
        ErrorReason::ConnectTimeout,
        ErrorReason::Refused,
        ErrorReason::SetupTimeout,
        ErrorReason::TlsConfig,
        ErrorReason::TlsVerify,
        ErrorReason::TlsHandshake,
        ErrorReason::TlsHandshakeTimeout,
        ErrorReason::TooManyConnections,
        ErrorReason::TooManyPerIp,
        ErrorReason::TooManySessions,
        ErrorReason::UnknownSession,
        ErrorReason::BodyTooLarge,
        ErrorReason::BufferFull,
        ErrorReason::SessionTimeout,
        ErrorReason::BadRequest,
        ErrorReason::HeaderTooLarge,
        ErrorReason::HeaderTimeout,
        ErrorReason::BodyTimeout,
        ErrorReason::BodyError,
        ErrorReason::BadHandshake,
        ErrorReason::KeyLengthMismatch,
        ErrorReason::EncryptionMismatch,
        ErrorReason::CongestionExt,
        ErrorReason::FilterExt,
        ErrorReason::GroupExt,
        ErrorReason::TooManyHandshakes,
        ErrorReason::ShuttingDown,
        ErrorReason::Rejected,
        ErrorReason::BadStreamId,
        ErrorReason::PublishRefused,
        ErrorReason::PlayRefused,
        ErrorReason::Lost,
        ErrorReason::AlreadyLive,
        ErrorReason::NotFound,
        ErrorReason::RtmpeDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Protocol => "protocol",
            ErrorReason::HandshakeTimeout => "handshake_timeout",
            ErrorReason::IdleTimeout => "idle_timeout",
            ErrorReason::Io => "io",
            ErrorReason::TooSlow => "too_slow",
            ErrorReason::WriteTimeout => "write_timeout",
            ErrorReason::Closed => "closed",
            ErrorReason::BadUrl => "bad_url",
            ErrorReason::UnsupportedScheme => "unsupported_scheme",
            ErrorReason::Connect => "connect",
            ErrorReason::ConnectTimeout => "connect_timeout",
            ErrorReason::Refused => "refused",
            ErrorReason::SetupTimeout => "setup_timeout",
            ErrorReason::TlsConfig => "tls_config",
            ErrorReason::TlsVerify => "tls_verify",
            ErrorReason::TlsHandshake => "tls_handshake",
            ErrorReason::TlsHandshakeTimeout => "tls_handshake_timeout",
            ErrorReason::TooManyConnections => "too_many_connections",
            ErrorReason::TooManyPerIp => "too_many_per_ip",
            ErrorReason::TooManySessions => "too_many_sessions",
            ErrorReason::UnknownSession => "unknown_session",
            ErrorReason::BodyTooLarge => "body_too_large",
            ErrorReason::BufferFull => "buffer_full",
            ErrorReason::SessionTimeout => "session_timeout",
            ErrorReason::BadRequest => "bad_request",
            ErrorReason::HeaderTooLarge => "header_too_large",
            ErrorReason::HeaderTimeout => "header_timeout",
            ErrorReason::BodyTimeout => "body_timeout",
            ErrorReason::BodyError => "body_error",
            ErrorReason::BadHandshake => "bad_handshake",
            ErrorReason::KeyLengthMismatch => "key_length_mismatch",
            ErrorReason::EncryptionMismatch => "encryption_mismatch",
            ErrorReason::CongestionExt => "congestion_ext",
            ErrorReason::FilterExt => "filter_ext",
            ErrorReason::GroupExt => "group_ext",
            ErrorReason::TooManyHandshakes => "too_many_handshakes",
            ErrorReason::ShuttingDown => "shutting_down",
            ErrorReason::Rejected => "rejected",
            ErrorReason::BadStreamId => "bad_stream_id",
            ErrorReason::PublishRefused => "publish_refused",
            ErrorReason::PlayRefused => "play_refused",
            ErrorReason::Lost => "lost",
            ErrorReason::AlreadyLive => "already_live",
            ErrorReason::NotFound => "not_found",
            ErrorReason::RtmpeDisabled => "rtmpe_disabled",
        }
    }
}

impl std::fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn label<'a>(labels: &'a [LabelPair], name: &str) -> Option<&'a str> {
    labels.iter().find(|l| l.name() == name).map(|l| l.value())
}

/// The prometheus crate can only remove a fully specified label set, so
/// collect the current ones and remove each that matches.
fn remove_where<T: MetricVecBuilder>(vec: &MetricVec<T>, pred: impl Fn(&[LabelPair]) -> bool) {
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels = metric.get_label();
            if pred(labels) {
                let set: HashMap<&str, &str> =
                    labels.iter().map(|l| (l.name(), l.value())).collect();
                // Err only if it was removed concurrently: fine either way.
                let _ = vec.remove(&set);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn populate(m: &Metrics, stream: &str) {
        let i = m.ingest(stream);
        i.bytes.inc_by(10);
        for c in [i.audio_frames, i.video_frames, i.data_frames] {
            c.inc();
        }
        for target in ["youtube", "twitch"] {
            let t = m.target(stream, target);
            t.up.set(1);
            t.bytes_sent.inc_by(5);
            t.queue_bytes.set(100);
            t.reconnects.inc();
            t.dropped(DropReason::QueueFull).inc();
            t.disconnected(ErrorReason::TooSlow).inc();
        }
        m.players_active(stream).set(2);
        m.player_dropped(stream, DropReason::QueueFull).inc();
        let srt = m.srt(stream, SrtDirection::Ingest, "");
        srt.rtt_seconds.set(0.02);
        srt.packets_lost.inc();
        srt.packets_retransmitted.inc();
        srt.packets_dropped.inc();
        srt.receive_buffer_seconds.set(0.12);
        let hls = m.hls(stream);
        hls.bytes_sent.inc_by(1000);
        hls.segments.set(6);
        hls.dvr_bytes.set(100_000);
        hls.viewers.set(3);
        hls.dvr_disk_bytes.set(90_000);
        let w = m.webrtc(stream, "whep");
        w.sessions.inc();
        w.rtt_seconds.set(0.01);
        w.nacks.inc();
        w.plis.inc();
        w.packets_lost.inc();
        m.transcode_restarts(stream, "exited").inc();
        m.transcode_speed(stream).set(1.0);
        m.transcode_cpu_seconds(stream).inc_by(0.5);
    }

    fn full() -> Metrics {
        let m = Metrics::new();
        let c = m.connection("rtmp");
        c.active.set(3);
        c.accepted.inc_by(7);
        m.connection_error("rtmp", ErrorReason::HandshakeTimeout)
            .inc();
        m.streams_active().set(2);
        m.publish_rejected(RejectReason::AlreadyLive).inc();
        m.play_rejected(RejectReason::PlayDisabled).inc();
        m.hls_request("part", 200).inc();
        m.hls_blocking_requests().set(1);
        m.hls_dvr_error("write").inc();
        let s = m.source("cams/door");
        s.up.set(1);
        s.reconnects.inc();
        s.bytes_received.inc_by(100);
        s.error(ErrorReason::AlreadyLive).inc();
        m.rtsp_dropped("g711").inc();
        m.transcode_workers().set(1);
        m.transcode_refused().inc();
        m.memory_bytes("frames").set(1000);
        m.memory_budget_bytes().set(1 << 20);
        m.runtime_alive_tasks().set(12);
        populate(&m, "live/a");
        populate(&m, "live/b");
        m
    }

    #[test]
    fn render_contains_every_name() {
        let text = full().render();
        for name in names::ALL {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing from:\n{text}"
            );
        }
        assert!(text.contains(&format!(
            "prism_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        // Every registered family is in names::ALL, so the list stays complete.
        assert_eq!(full().registry.gather().len(), names::ALL.len());
        // ... and every family has its desc listed (what deploy checks read).
        let m = Metrics::new();
        let descs: Vec<_> = m.descs().iter().map(|d| d.fq_name.clone()).collect();
        assert_eq!(descs, names::ALL);
    }

    #[test]
    fn registries_are_independent() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.streams_active().set(5);
        assert_eq!(b.streams_active().get(), 0);
        // Clones share values.
        a.clone().streams_active().inc();
        assert_eq!(a.streams_active().get(), 6);
    }

    #[test]
    fn forget_stream_removes_its_labels_only() {
        let m = full();
        m.forget_stream("live/a");
        let text = m.render();
        assert!(!text.contains("stream=\"live/a\""), "{text}");
        assert!(
            text.contains("prism_target_up{stream=\"live/b\",target=\"youtube\"} 1"),
            "{text}"
        );
        assert!(text.contains("prism_players_active{stream=\"live/b\"} 2"));
        assert!(text.contains("prism_connections_total{transport=\"rtmp\"} 7"));
        // A stream that comes back starts from zero.
        m.ingest("live/a").bytes.inc();
        assert_eq!(m.ingest("live/a").bytes.get(), 1);
    }

    #[test]
    fn forget_target_removes_that_target_only() {
        let m = full();
        m.forget_target("live/a", "youtube");
        let text = m.render();
        assert!(
            !text.contains("stream=\"live/a\",target=\"youtube\""),
            "{text}"
        );
        assert!(text.contains("stream=\"live/a\",target=\"twitch\""));
        assert!(text.contains("stream=\"live/b\",target=\"youtube\""));
        assert!(text.contains("prism_ingest_bytes_total{stream=\"live/a\"} 10"));
    }

    #[test]
    fn typed_handles_keep_the_exported_labels() {
        let text = full().render();
        for line in [
            "prism_connections_active{transport=\"rtmp\"} 3",
            "prism_connection_errors_total{reason=\"handshake_timeout\",transport=\"rtmp\"} 1",
            "prism_publish_rejected_total{reason=\"already_live\"} 1",
            "prism_play_rejected_total{reason=\"play_disabled\"} 1",
            "prism_ingest_frames_total{kind=\"video\",stream=\"live/a\"} 1",
            "prism_target_dropped_frames_total{reason=\"queue_full\",stream=\"live/a\",target=\"twitch\"} 1",
            "prism_target_disconnects_total{reason=\"too_slow\",stream=\"live/a\",target=\"twitch\"} 1",
            "prism_player_dropped_frames_total{reason=\"queue_full\",stream=\"live/a\"} 1",
            "prism_srt_packets_lost_total{direction=\"ingest\",stream=\"live/a\",target=\"\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn forget_srt_removes_that_connection_only() {
        let m = full();
        m.srt("live/a", SrtDirection::Push, "t").packets_lost.inc();
        m.forget_srt("live/a", SrtDirection::Ingest, "");
        let text = m.render();
        assert!(
            !text.contains("direction=\"ingest\",stream=\"live/a\""),
            "{text}"
        );
        assert!(text.contains("direction=\"push\",stream=\"live/a\",target=\"t\""));
        assert!(text.contains("direction=\"ingest\",stream=\"live/b\""));
    }

    #[test]
    fn error_reasons_are_distinct_snake_case_words() {
        let words: std::collections::HashSet<_> =
            ErrorReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(words.len(), ErrorReason::ALL.len());
        for w in words {
            assert!(
                !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{w}"
            );
        }
    }

    #[test]
    fn promtool_accepts_render() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let Ok(mut child) = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            eprintln!("note: promtool not installed (Debian package `prometheus`); skipping");
            return;
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(full().render().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
