//! MPEG-TS segments for players that read no fMP4 (old set-top boxes): `container = "ts"`
//! or `"both"`. They are the CMAF segments' twins: same media sequence numbers, cut at the
//! same keyframes, same durations, each a transport stream that plays on its own (PAT, PMT
//! and, with video, a keyframe with its parameter sets first), muxed by prism-mpegts.
//!
//! The [`Packager`](crate::Packager) decides the cuts and tells this window. A segment's
//! frames are queued as they come and muxed when it closes, because only then is it known
//! which early frames of the following track (audio stamped at or after the cut that
//! arrived before the keyframe that made it) belong to the next segment, and the next
//! segment must start with that keyframe. One muxer writes every segment, so continuity
//! counters and the PCR run on across segments as in one long stream.

use crate::packager::PackagerConfig;
use bytes::{Bytes, BytesMut};
use prism_cmaf::Codec;
use prism_media::MediaKind;
use prism_mpegts::mux::{DropReason, Muxer, MuxerConfig, Pushed};
use prism_mpegts::FlvFrame;
use std::collections::VecDeque;
use std::time::{Instant, SystemTime};

/// Which containers a stream is packaged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Container {
    /// CMAF only: LL-HLS, HLS and DASH.
    #[default]
    Fmp4,
    /// MPEG-TS only (classic HLS); no CMAF work at all.
    Ts,
    /// Both, over the same cuts.
    Both,
}

impl Container {
    pub fn fmp4(self) -> bool {
        matches!(self, Container::Fmp4 | Container::Both)
    }

    pub fn ts(self) -> bool {
        matches!(self, Container::Ts | Container::Both)
    }
}

/// One MPEG-TS segment.
#[derive(Debug, Clone)]
pub struct TsSegment {
    /// The same number as the CMAF segment of the same time.
    pub msn: u64,
    /// Whole 188-byte packets.
    pub data: Bytes,
    /// Seconds.
    pub duration: f64,
    /// Wall-clock time of its first frame (`EXT-X-PROGRAM-DATE-TIME`).
    pub wall: SystemTime,
    /// Follows a discontinuity (new codec configuration, or TS resumed).
    pub discontinuity: bool,
    pub disc_seq: u64,
}

impl TsSegment {
    /// Nothing could be muxed in its time (`EXT-X-GAP`; not fetchable).
    pub fn is_gap(&self) -> bool {
        self.data.is_empty()
    }
}

/// A frame of the open segment, waiting for the cut.
#[derive(Debug)]
struct Queued {
    kind: MediaKind,
    timestamp: u32,
    payload: Bytes,
    config: bool,
}

/// The open segment: what its playlist entry will say.
#[derive(Debug, Clone, Copy)]
struct Open {
    msn: u64,
    /// Hub time (ms) of its first main frame.
    start: u32,
    wall: SystemTime,
    discontinuity: bool,
    disc_seq: u64,
}

/// Where the next segment starts, from the packager.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cut {
    /// Hub time (ms) of the cut: the main track's frame that starts the next segment.
    pub at: u32,
    pub main: MediaKind,
    pub next_msn: u64,
    pub next_wall: SystemTime,
    pub discontinuity: bool,
    pub disc_seq: u64,
    /// The stream ended: the closing segment lasts to the end of its last frame.
    pub ended: bool,
}

/// The MPEG-TS rendition of one stream: its window of segments and the open one's frames.
pub struct TsWindow {
    muxer: Muxer,
    /// Tries every sequence header, so a codec TS cannot carry is known at once.
    probe: Muxer,
    /// Per kind (video, audio): why the newest sequence header cannot go into TS.
    refused: [Option<String>; 2],
    queue: Vec<Queued>,
    queued_bytes: u64,
    open: Option<Open>,
    /// Complete segments in the playlist (oldest first).
    pub segments: VecDeque<TsSegment>,
    /// Left the playlist, fetchable until the instant.
    retired: VecDeque<(Instant, TsSegment)>,
    /// Bytes in `segments` and the queue.
    bytes: u64,
    /// Longest complete segment so far, seconds.
    pub max_segment: f64,
    /// Peak bits per second of a complete segment.
    pub peak_bitrate: u64,
    /// Why this stream has no TS rendition now (a codec TS cannot carry).
    unsupported: Option<String>,
    /// The main track's last timestamp and frame interval (the last segment's end).
    last_main: Option<u32>,
    last_interval: u32,
    /// Frames left out: the muxer refused them, or the open segment was over the byte
    /// bound.
    dropped: u64,
}

fn kind_index(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Video => 0,
        _ => 1,
    }
}

fn codec_name(codec: Codec) -> &'static str {
    match codec {
        Codec::H264 => "H.264",
        Codec::Hevc => "HEVC",
        Codec::Av1 => "AV1",
        Codec::Aac => "AAC",
        Codec::Opus => "Opus",
    }
}

impl TsWindow {
    pub(crate) fn new() -> TsWindow {
        TsWindow {
            muxer: Muxer::new(MuxerConfig::default()),
            probe: Muxer::new(MuxerConfig::default()),
            refused: [None, None],
            queue: Vec::new(),
            queued_bytes: 0,
            open: None,
            segments: VecDeque::new(),
            retired: VecDeque::new(),
            bytes: 0,
            max_segment: 0.0,
            peak_bitrate: 0,
            unsupported: None,
            last_main: None,
            last_interval: 0,
            dropped: 0,
        }
    }

    /// Why there are no TS segments for this stream (the tracks' codecs), if so.
    pub fn unsupported(&self) -> Option<&str> {
        self.unsupported.as_deref()
    }

    /// Bytes held for the playlist and DVR windows (the open segment's frames included).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Frames left out of the TS segments (refused by the muxer, or over the byte bound).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// A segment by number: in the playlist, retired, or (None) unknown or still open.
    pub fn segment(&self, msn: u64) -> Option<&TsSegment> {
        let at = |first: Option<u64>| first.and_then(|f| msn.checked_sub(f)).map(|i| i as usize);
        let live = at(self.segments.front().map(|s| s.msn)).and_then(|i| self.segments.get(i));
        let retired = || {
            at(self.retired.front().map(|(_, s)| s.msn))
                .and_then(|i| self.retired.get(i))
                .map(|(_, s)| s)
        };
        live.or_else(retired).filter(|s| s.msn == msn)
    }

    /// A sequence header of `kind` (`codec` as CMAF parsed it): tried at once, applied in
    /// its place among the frames.
    pub(crate) fn push_config(
        &mut self,
        kind: MediaKind,
        timestamp: u32,
        payload: &Bytes,
        codec: Codec,
        cfg: &PackagerConfig,
    ) {
        let frame = flv(kind, timestamp, payload);
        let mut scratch = BytesMut::new();
        self.refused[kind_index(kind)] = match self.probe.push_frame(&frame, &mut scratch) {
            Pushed::ConfigStored => None,
            Pushed::Dropped(DropReason::Unsupported) => Some(format!(
                "MPEG-TS cannot carry this {} stream",
                codec_name(codec)
            )),
            _ => Some(format!(
                "this {} configuration cannot be carried in MPEG-TS",
                codec_name(codec)
            )),
        };
        if self.unsupported.is_some() {
            // No segment to keep it in order with: the muxer stores it now.
            self.muxer.push_frame(&frame, &mut scratch);
            return;
        }
        self.enqueue(kind, timestamp, payload, true, cfg);
    }

    /// A frame the packager took, in arrival order (after it cut before it, if it did).
    pub(crate) fn push_frame(
        &mut self,
        kind: MediaKind,
        timestamp: u32,
        payload: &Bytes,
        main: MediaKind,
        cfg: &PackagerConfig,
    ) {
        if self.open.is_none() || self.unsupported.is_some() {
            return;
        }
        if kind == main {
            if let Some(last) = self.last_main {
                self.last_interval = timestamp.wrapping_sub(last);
            }
            self.last_main = Some(timestamp);
        }
        self.enqueue(kind, timestamp, payload, false, cfg);
    }

    fn enqueue(
        &mut self,
        kind: MediaKind,
        timestamp: u32,
        payload: &Bytes,
        config: bool,
        cfg: &PackagerConfig,
    ) {
        if self.open.is_none() {
            // Before the first segment only the newest sequence header of each kind counts.
            self.queue.retain(|q| q.kind != kind);
            self.queued_bytes = self.queue.iter().map(|q| q.payload.len() as u64).sum();
            self.bytes = self.queued_bytes;
        }
        // The open segment is bounded like the window (a stream without keyframes never
        // cuts): past the bound, frames are left out and counted.
        if self.queued_bytes + payload.len() as u64 > cfg.max_bytes {
            self.dropped += 1;
            return;
        }
        self.queued_bytes += payload.len() as u64;
        self.bytes += payload.len() as u64;
        self.queue.push(Queued {
            kind,
            timestamp,
            payload: payload.clone(),
            config,
        });
    }

    /// The packager (re)started its tracks with these codecs; the open segment, if there
    /// is none, starts at `at`.
    pub(crate) fn start(&mut self, tracks: &[(MediaKind, Codec)], at: Cut) {
        let refused = tracks
            .iter()
            .find_map(|(kind, _)| self.refused[kind_index(*kind)].clone());
        match refused {
            Some(reason) => {
                // No TS rendition while these codecs last: the window goes (its playlist
                // answers why), sequence headers still reach the muxer.
                if self.unsupported.is_none() {
                    for q in std::mem::take(&mut self.queue) {
                        if q.config {
                            let mut scratch = BytesMut::new();
                            self.muxer
                                .push_frame(&flv(q.kind, q.timestamp, &q.payload), &mut scratch);
                        }
                    }
                    self.segments.clear();
                    self.retired.clear();
                    self.bytes = 0;
                    self.queued_bytes = 0;
                    self.open = None;
                }
                self.unsupported = Some(reason);
            }
            None => {
                let resumed = self.unsupported.take().is_some();
                // A new timeline (a restart, or a window resumed after its end, whose open
                // segment still has the old end time) opens here, whatever was open.
                if self.open.is_none() || at.discontinuity {
                    self.open = Some(Open {
                        msn: at.next_msn,
                        start: at.at,
                        wall: at.next_wall,
                        discontinuity: at.discontinuity || resumed,
                        disc_seq: at.disc_seq,
                    });
                    self.last_main = None;
                }
            }
        }
    }

    /// Closes the open segment at the packager's cut and opens the next.
    pub(crate) fn cut(&mut self, cut: Cut) {
        let Some(open) = self.open.take() else {
            return;
        };
        self.open = Some(Open {
            msn: cut.next_msn,
            start: cut.at,
            wall: cut.next_wall,
            discontinuity: cut.discontinuity,
            disc_seq: cut.disc_seq,
        });
        // Following-track frames from the first one stamped at or after the cut on belong
        // to the next segment (as in CMAF, where each track splits its samples at the cut).
        let split = self
            .queue
            .iter()
            .position(|q| q.kind != cut.main && !q.config && q.timestamp >= cut.at)
            .unwrap_or(self.queue.len());
        let mut this = Vec::with_capacity(self.queue.len());
        let mut next = Vec::new();
        for (i, q) in std::mem::take(&mut self.queue).into_iter().enumerate() {
            if i >= split && q.kind != cut.main {
                next.push(q);
            } else {
                this.push(q);
            }
        }
        self.bytes = self.bytes.saturating_sub(self.queued_bytes);
        self.queued_bytes = next.iter().map(|q| q.payload.len() as u64).sum();
        self.bytes += self.queued_bytes;
        self.queue = next;

        // At the end, or at a new timeline (which may follow a hole), the segment lasts to
        // the end of its last frame.
        let ms = if cut.ended || cut.discontinuity {
            self.last_main.map_or(0, |l| {
                l.wrapping_sub(open.start)
                    .saturating_add(self.last_interval)
            })
        } else {
            cut.at.wrapping_sub(open.start)
        };
        let duration = f64::from(ms) / 1000.0;
        let data = self.mux(this, cut.main);
        if data.is_empty() && duration <= 0.0 {
            // Nothing happened since the last cut (the stream ended on it).
            if let Some(o) = &mut self.open {
                o.discontinuity |= open.discontinuity;
            }
            return;
        }
        if duration > 0.0 {
            self.peak_bitrate = self
                .peak_bitrate
                .max((data.len() as f64 * 8.0 / duration) as u64);
        }
        self.max_segment = self.max_segment.max(duration);
        self.bytes += data.len() as u64;
        self.segments.push_back(TsSegment {
            msn: open.msn,
            data,
            duration,
            wall: open.wall,
            discontinuity: open.discontinuity,
            disc_seq: open.disc_seq,
        });
    }

    /// One segment's frames as a transport stream: PAT and PMT, the first main-track frame
    /// (the keyframe that cut), then the rest in arrival order. Sequence headers queued
    /// before that frame are applied first (they write nothing).
    fn mux(&mut self, frames: Vec<Queued>, main: MediaKind) -> Bytes {
        let first = frames.iter().position(|q| q.kind == main && !q.config);
        let mut order: Vec<&Queued> = Vec::with_capacity(frames.len());
        if let Some(k) = first {
            order.extend(frames[..k].iter().filter(|q| q.config));
            order.push(&frames[k]);
            order.extend(frames[..k].iter().filter(|q| !q.config));
            order.extend(&frames[k + 1..]);
        } else {
            order.extend(&frames);
        }
        let mut out = BytesMut::new();
        self.muxer.repeat_psi();
        for q in order {
            let pushed = self
                .muxer
                .push_frame(&flv(q.kind, q.timestamp, &q.payload), &mut out);
            if !q.config && matches!(pushed, Pushed::Dropped(_)) {
                self.dropped += 1;
            }
        }
        out.freeze()
    }

    /// Drops what fell out of the windows, by the CMAF tracks' rules (segments, DVR time,
    /// bytes); retired segments go after `grace`.
    pub(crate) fn evict(&mut self, cfg: &PackagerConfig, now: Instant) {
        let keep_time = cfg.dvr_window.as_secs_f64();
        loop {
            let n = self.segments.len();
            if n <= 1 {
                break;
            }
            let total: f64 = self.segments.iter().map(|s| s.duration).sum();
            let over_count = n > cfg.window_segments;
            let over_time = total - self.segments[0].duration >= keep_time;
            let over_bytes = self.bytes > cfg.max_bytes;
            if !(over_bytes || (over_count && over_time)) {
                break;
            }
            let Some(seg) = self.segments.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(seg.data.len() as u64);
            self.retired.push_back((now + cfg.grace, seg));
        }
        while self.retired.front().is_some_and(|(until, _)| *until <= now) {
            self.retired.pop_front();
        }
    }
}

fn flv(kind: MediaKind, timestamp: u32, payload: &Bytes) -> FlvFrame {
    FlvFrame {
        kind,
        timestamp,
        payload: payload.clone(),
        // The muxer reads both from the payload.
        keyframe: false,
        sequence_header: false,
    }
}
