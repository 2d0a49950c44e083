//! Frames in, CMAF parts and segments out: the live window of one stream.
//!
//! One [`Packager`] per stream. It is fed the hub's frames (FLV-style payloads, timestamps in
//! milliseconds) with the time they arrived, and keeps, per track (video, audio), the segments
//! of the playlist window (plus the DVR window), the open segment's parts, and the init
//! segments. It never reads a clock and does no I/O: the HTTP side reads it under a lock.
//!
//! Cutting rules:
//! - Segments start on a video keyframe (audio-only: any frame), once the open segment is at
//!   least `segment` long, so every segment decodes on its own.
//! - Parts end before a frame that would make the part longer than `part`, and at every
//!   segment end. Both tracks cut at the same moments: the audio part takes the audio samples
//!   complete by then.
//! - A sample's duration is known when the next sample of its track arrives, so each track
//!   holds one sample back.
//!
//! DVR spill (`PackagerConfig::spill`): complete segments older than the live playlist's
//! last `window_segments` are handed to the driver to write to disk ([`Packager::take_disk_jobs`]);
//! once it reports them written ([`Packager::spilled`]) they keep their part durations and
//! byte ranges but not the bytes, so memory holds only the live end of the window. A segment
//! on disk that leaves the window (after its grace) yields a delete job. A failed write
//! stops spilling for the stream: its window stays in memory, bounded by `max_bytes`.

use crate::ts::{Container, Cut, TsWindow};
use bytes::Bytes;
use prism_cmaf::{Payload, Sample, TrackConfig, TrackRun};
use prism_media::MediaKind;
use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

/// How the packager cuts and how much it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackagerConfig {
    /// Segment duration target.
    pub segment: Duration,
    /// LL-HLS part duration target.
    pub part: Duration,
    /// Segments in the live playlist.
    pub window_segments: usize,
    /// Rewind window (zero: only the live window).
    pub dvr_window: Duration,
    /// Most bytes the window of one track may hold (DVR included).
    pub max_bytes: u64,
    /// How long a segment stays fetchable after it left the playlist (players that loaded
    /// the playlist just before still ask for it).
    pub grace: Duration,
    /// CMAF, MPEG-TS or both (over the same cuts).
    pub container: Container,
    /// Segments older than the live playlist go to disk (the driver writes them).
    pub spill: bool,
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            segment: Duration::from_secs(2),
            part: Duration::from_millis(200),
            window_segments: 6,
            dvr_window: Duration::ZERO,
            max_bytes: 1 << 30,
            grace: Duration::from_secs(12),
            container: Container::Fmp4,
            spill: false,
        }
    }
}

/// Which track of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    Video,
    Audio,
}

impl TrackKind {
    /// The name in URLs (`video.m3u8`, `video/12.m4s`) and the DASH representation id.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackKind::Video => "video",
            TrackKind::Audio => "audio",
        }
    }

    pub fn from_name(s: &str) -> Option<TrackKind> {
        match s {
            "video" => Some(TrackKind::Video),
            "audio" => Some(TrackKind::Audio),
            _ => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn media_kind(self) -> MediaKind {
        match self {
            TrackKind::Video => MediaKind::Video,
            TrackKind::Audio => MediaKind::Audio,
        }
    }
}

/// One LL-HLS part: a CMAF fragment (moof + mdat).
#[derive(Debug, Clone)]
pub struct Part {
    pub data: Bytes,
    /// Seconds.
    pub duration: f64,
    /// Starts with a keyframe.
    pub independent: bool,
}

/// One segment of a track: its parts (the segment is their concatenation).
#[derive(Debug, Clone)]
pub struct Segment {
    /// Media sequence number, the same for every track of the stream.
    pub msn: u64,
    /// Its fragments; the segment is their concatenation (served as such, never copied
    /// into one buffer).
    pub parts: Vec<Part>,
    /// Decode time of its first sample, in the track's timescale.
    pub start: u64,
    /// Seconds (the sum of its parts).
    pub duration: f64,
    /// Wall-clock time of its first sample (`EXT-X-PROGRAM-DATA-TIME`).
    pub wall: SystemTime,
    /// Follows a discontinuity (new timeline or new codec configuration).
    pub discontinuity: bool,
    /// The init segment version it needs.
    pub init: u32,
    /// Discontinuity sequence number of this segment.
    pub disc_seq: u64,
    /// Where its parts' bytes are.
    pub storage: Storage,
}

/// Where a complete segment's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// In its parts' `data`.
    Memory,
    /// In memory, and due to be (or being) written to disk.
    Spilling,
    /// Only in the segment's file on disk (see [`DiskJob`]): part `i` is bytes
    /// `offsets[i]..offsets[i + 1]`; the parts' `data` is empty.
    Disk { offsets: Vec<u64> },
}

/// Where the bytes of a segment or a part are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// In memory: these chunks back to back.
    Memory(Vec<Bytes>),
    /// `len` bytes at `offset` of the file of segment `msn` (of the track asked).
    Disk { msn: u64, offset: u64, len: u64 },
}

/// Work for the driver's disk writer, in order (a delete follows the write of its file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskJob {
    /// Write segment `msn` of `track` to a file of its own: `parts` back to back. Report
    /// the outcome with [`Packager::spilled`].
    Write {
        track: TrackKind,
        msn: u64,
        parts: Vec<Bytes>,
    },
    /// The file of segment `msn` of `track` is no longer needed.
    Delete { track: TrackKind, msn: u64 },
}

impl Segment {
    /// Its size, wherever its bytes are.
    pub fn bytes(&self) -> usize {
        match &self.storage {
            Storage::Disk { offsets } => offsets.last().map_or(0, |&n| n as usize),
            _ => self.parts.iter().map(|p| p.data.len()).sum(),
        }
    }

    /// Whether its bytes are only on disk.
    pub fn on_disk(&self) -> bool {
        matches!(self.storage, Storage::Disk { .. })
    }

    /// Bytes `start..` of length `len` of this segment.
    fn locate(&self, start: u64, len: u64, range: std::ops::Range<usize>) -> Located {
        match &self.storage {
            Storage::Disk { .. } => Located::Disk {
                msn: self.msn,
                offset: start,
                len,
            },
            _ => Located::Memory(self.parts[range].iter().map(|p| p.data.clone()).collect()),
        }
    }

    /// No sample of this track fell in the segment's time (`EXT-X-GAP`; not fetchable).
    pub fn is_gap(&self) -> bool {
        self.parts.is_empty()
    }
}

/// A sample waiting for its successor (which gives its duration).
#[derive(Debug)]
struct Pending {
    dts: u64,
    cts_offset: i32,
    keyframe: bool,
    data: Bytes,
}

/// One track's window and its open part.
pub struct Track {
    pub kind: TrackKind,
    pub config: TrackConfig,
    /// Init segments by version, the newest last (older ones kept while segments need them).
    inits: Vec<(u32, Bytes)>,
    /// Complete segments in the playlist (oldest first).
    pub segments: VecDeque<Segment>,
    /// Left the playlist, fetchable until the instant.
    retired: VecDeque<(Instant, Segment)>,
    /// The open segment (its parts so far).
    pub open: Segment,
    /// The open part's complete samples, and their decode times.
    samples: Vec<Sample>,
    sample_dts: Vec<u64>,
    part_start: Option<u64>,
    /// Sequence number of the last fragment.
    seq: u32,
    /// The part target in ticks.
    part_limit: u64,
    pending: Option<Pending>,
    /// The last sample's duration, in the timescale (for the last sample of a stream).
    last_duration: u32,
    /// Bytes in `segments` and `open` (in memory or on disk).
    bytes: u64,
    /// Of those, bytes on disk.
    disk_bytes: u64,
    /// Disk jobs due, oldest first.
    jobs: VecDeque<DiskJob>,
    /// Longest complete segment so far, seconds.
    pub max_segment: f64,
    /// Longest part so far, seconds.
    pub max_part: f64,
    /// Peak bits per second of a complete segment.
    pub peak_bitrate: u64,
}

impl Track {
    fn new(kind: TrackKind, config: TrackConfig, init: (u32, Bytes), open: Segment) -> Track {
        Track {
            kind,
            config,
            inits: vec![init],
            segments: VecDeque::new(),
            retired: VecDeque::new(),
            open,
            samples: Vec::new(),
            sample_dts: Vec::new(),
            part_start: None,
            seq: 0,
            part_limit: u64::MAX,
            pending: None,
            last_duration: 0,
            bytes: 0,
            disk_bytes: 0,
            jobs: VecDeque::new(),
            max_segment: 0.0,
            max_part: 0.0,
            peak_bitrate: 0,
        }
    }

    /// The init segment of `version`.
    pub fn init(&self, version: u32) -> Option<&Bytes> {
        self.inits
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, b)| b)
    }

    /// The newest init segment version.
    pub fn init_version(&self) -> u32 {
        self.inits.last().map_or(0, |(v, _)| *v)
    }

    /// A segment by number: in the playlist, retired, or (None) unknown or still open.
    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        // Both lists hold consecutive numbers: index, don't search (a DVR window holds
        // thousands of segments and every part request of a lagging viewer looks here).
        let at = |first: Option<u64>| first.and_then(|f| msn.checked_sub(f)).map(|i| i as usize);
        let live = at(self.segments.front().map(|s| s.msn)).and_then(|i| self.segments.get(i));
        let retired = || {
            at(self.retired.front().map(|(_, s)| s.msn))
                .and_then(|i| self.retired.get(i))
                .map(|(_, s)| s)
        };
        live.or_else(retired).filter(|s| s.msn == msn)
    }

    fn segment_mut(&mut self, msn: u64) -> Option<&mut Segment> {
        let at = |first: Option<u64>| first.and_then(|f| msn.checked_sub(f)).map(|i| i as usize);
        if let Some(i) = at(self.segments.front().map(|s| s.msn)) {
            return self.segments.get_mut(i).filter(|s| s.msn == msn);
        }
        let i = at(self.retired.front().map(|(_, s)| s.msn))?;
        self.retired
            .get_mut(i)
            .map(|(_, s)| s)
            .filter(|s| s.msn == msn)
    }

    /// A part by segment number and index, in the open segment or a complete one. The
    /// `data` of a part on disk is empty: see [`Track::part_data`].
    pub fn part(&self, msn: u64, index: usize) -> Option<&Part> {
        if self.open.msn == msn {
            return self.open.parts.get(index);
        }
        self.segment(msn)?.parts.get(index)
    }

    /// Where the bytes of complete segment `msn` are.
    pub fn segment_data(&self, msn: u64) -> Option<Located> {
        let seg = self.segment(msn)?;
        Some(seg.locate(0, seg.bytes() as u64, 0..seg.parts.len()))
    }

    /// Where the bytes of part `index` of segment `msn` (open or complete) are.
    pub fn part_data(&self, msn: u64, index: usize) -> Option<Located> {
        let seg = if self.open.msn == msn {
            &self.open
        } else {
            self.segment(msn)?
        };
        let part = seg.parts.get(index)?;
        let (start, len) = match &seg.storage {
            Storage::Disk { offsets } => {
                let start = *offsets.get(index)?;
                (start, offsets.get(index + 1)?.checked_sub(start)?)
            }
            _ => (0, part.data.len() as u64),
        };
        Some(seg.locate(start, len, index..index + 1))
    }

    /// Bytes held for the playlist and DVR windows (the open segment included), in memory
    /// or on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Of [`Track::bytes`], those on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    fn timescale(&self) -> u64 {
        u64::from(self.config.timescale.max(1))
    }

    fn to_ticks(&self, ms: u32) -> u64 {
        u64::from(ms) * self.timescale() / 1000
    }

    /// Takes a sample; the one held back before it is complete now. True when that closed
    /// a part.
    fn push(&mut self, dts: u64, cts_offset: i32, keyframe: bool, data: Bytes) -> bool {
        let mut closed = false;
        if let Some(p) = self.pending.take() {
            // Timestamps are monotonic once the hub normalized them; a zero duration (two
            // frames on the same millisecond) is kept as is.
            let mut duration = dts.saturating_sub(p.dts).min(u64::from(u32::MAX)) as u32;
            // Audio frames last tens of milliseconds: a longer wait for the next one is a
            // dropout (a gap in the timeline), not a long sample.
            if self.kind == TrackKind::Audio
                && u64::from(duration) > self.part_limit
                && self.last_duration > 0
            {
                duration = self.last_duration;
            }
            closed = self.complete(p, duration);
        }
        self.pending = Some(Pending {
            dts,
            cts_offset,
            keyframe,
            data,
        });
        closed
    }

    /// True when the open part closed before this sample.
    fn complete(&mut self, p: Pending, duration: u32) -> bool {
        self.last_duration = duration;
        // Parts are cut ahead of time, guessing the next duration from the last one; when
        // a longer one proves the guess wrong, the part ends before this sample, so no part
        // outlasts the target (unless one sample alone does).
        let ticks: u64 = self.samples.iter().map(|s| u64::from(s.duration)).sum();
        let closed = !self.samples.is_empty()
            && ticks + u64::from(duration) > self.part_limit
            && self.close_part();
        if self.part_start.is_none() {
            self.part_start = Some(p.dts);
        }
        self.sample_dts.push(p.dts);
        self.samples.push(Sample {
            duration,
            cts_offset: p.cts_offset,
            keyframe: p.keyframe,
            data: p.data,
        });
        closed
    }

    /// Ends the stream: the held-back sample gets the last duration seen.
    fn flush_pending(&mut self) {
        if let Some(p) = self.pending.take() {
            let d = self.last_duration;
            self.complete(p, d);
        }
    }

    /// Ticks of `d`.
    fn ticks(&self, d: Duration) -> u64 {
        (d.as_micros() as u64).saturating_mul(self.timescale()) / 1_000_000
    }

    /// Closes the open part and segment at decode time `at` (a following track's samples
    /// from `at` on, which arrived early, start the next segment) and opens `next`.
    fn cut_segment_at(&mut self, at: u64, next: Segment, span: f64, following: bool) {
        // A following track's held-back sample from before the cut belongs to this segment:
        // it ends with the duration of the one before (audio frames are all alike), rather
        // than when its successor arrives, which a dropout may delay past later cuts.
        if following && self.last_duration > 0 && self.pending.as_ref().is_some_and(|p| p.dts < at)
        {
            self.flush_pending();
        }
        let split = self.sample_dts.partition_point(|&d| d < at);
        let tail_samples = self.samples.split_off(split);
        let tail_dts = self.sample_dts.split_off(split);
        self.close_part();
        self.close_segment(next, span);
        self.part_start = tail_dts.first().copied();
        self.samples = tail_samples;
        self.sample_dts = tail_dts;
    }

    /// Closes the open part (if it has samples) as the next fragment.
    fn close_part(&mut self) -> bool {
        let Some(base) = self.part_start.take() else {
            return false;
        };
        self.sample_dts.clear();
        if self.samples.is_empty() {
            return false;
        }
        self.seq = self.seq.wrapping_add(1);
        let ticks: u64 = self.samples.iter().map(|s| u64::from(s.duration)).sum();
        let data = prism_cmaf::fragment(
            self.seq,
            &[TrackRun {
                track_id: 1,
                base_decode_time: base,
                samples: &self.samples,
            }],
        );
        let duration = ticks as f64 / self.timescale() as f64;
        if self.open.parts.is_empty() {
            self.open.start = base;
        }
        self.max_part = self.max_part.max(duration);
        self.bytes += data.len() as u64;
        self.open.parts.push(Part {
            data,
            duration,
            independent: self.samples[0].keyframe,
        });
        self.open.duration += duration;
        self.samples.clear();
        true
    }

    /// Closes the open segment and opens `next`. A segment without a sample of this track
    /// (an audio dropout) is listed as a gap of `span` seconds.
    fn close_segment(&mut self, next: Segment, span: f64) {
        let mut seg = std::mem::replace(&mut self.open, next);
        if seg.is_gap() {
            if span <= 0.0 {
                // Nothing happened in any track (the stream ended on a cut).
                self.open.discontinuity |= seg.discontinuity;
                return;
            }
            seg.duration = span;
        }
        if seg.duration > 0.0 {
            self.peak_bitrate = self
                .peak_bitrate
                .max((seg.bytes() as f64 * 8.0 / seg.duration) as u64);
        }
        self.max_segment = self.max_segment.max(seg.duration);
        self.segments.push_back(seg);
    }

    /// Drops what fell out of the windows; retired segments go after `grace`.
    fn evict(&mut self, cfg: &PackagerConfig, now: Instant) {
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
            let Some(mut seg) = self.segments.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(seg.bytes() as u64);
            self.leave_window(&mut seg);
            self.retired.push_back((now + cfg.grace, seg));
        }
        while self.retired.front().is_some_and(|(until, _)| *until <= now) {
            if let Some((_, seg)) = self.retired.pop_front() {
                self.dropped(&seg);
            }
        }
        // Init versions no segment needs any more.
        let oldest = self
            .retired
            .front()
            .map(|(_, s)| s.init)
            .or(self.segments.front().map(|s| s.init))
            .unwrap_or(self.open.init);
        self.inits.retain(|(v, _)| *v >= oldest);
    }
}

impl Track {
    /// `seg` left the window for its grace: no longer counted, not worth writing now.
    fn leave_window(&mut self, seg: &mut Segment) {
        match seg.storage {
            Storage::Disk { .. } => {
                self.disk_bytes = self.disk_bytes.saturating_sub(seg.bytes() as u64);
            }
            Storage::Spilling if self.cancel_write(seg.msn) => seg.storage = Storage::Memory,
            _ => {}
        }
    }

    /// `seg` is gone: its file too.
    fn dropped(&mut self, seg: &Segment) {
        // A write not yet taken was cancelled when it left the window; one in flight is
        // followed by this delete.
        if seg.storage != Storage::Memory {
            self.jobs.push_back(DiskJob::Delete {
                track: self.kind,
                msn: seg.msn,
            });
        }
    }

    /// Removes the queued write of `msn`; false when the writer took it already.
    fn cancel_write(&mut self, msn: u64) -> bool {
        let before = self.jobs.len();
        self.jobs
            .retain(|j| !matches!(j, DiskJob::Write { msn: m, .. } if *m == msn));
        self.jobs.len() != before
    }

    /// Queues the writes of the complete segments older than the live playlist that are
    /// still only in memory.
    fn queue_spills(&mut self, window_segments: usize) {
        let kind = self.kind;
        let mut due = Vec::new();
        // Newest first, down to the first one queued before (older ones were, or failed).
        for seg in self.segments.iter_mut().rev().skip(window_segments) {
            if seg.storage != Storage::Memory {
                break;
            }
            if seg.is_gap() {
                continue;
            }
            seg.storage = Storage::Spilling;
            due.push(DiskJob::Write {
                track: kind,
                msn: seg.msn,
                parts: seg.parts.iter().map(|p| p.data.clone()).collect(),
            });
        }
        self.jobs.extend(due.into_iter().rev());
    }

    /// The writer's outcome for segment `msn`.
    fn spilled(&mut self, msn: u64, ok: bool) {
        let in_window = self
            .segments
            .front()
            .is_some_and(|f| msn >= f.msn && msn - f.msn < self.segments.len() as u64);
        let Some(seg) = self.segment_mut(msn) else {
            return;
        };
        if seg.storage != Storage::Spilling {
            return;
        }
        if !ok {
            seg.storage = Storage::Memory;
            return;
        }
        let mut offsets = Vec::with_capacity(seg.parts.len() + 1);
        let mut at = 0u64;
        offsets.push(0);
        for part in &mut seg.parts {
            at += part.data.len() as u64;
            offsets.push(at);
            // Its bytes are on disk now.
            part.data = Bytes::new();
        }
        // Kept for the window's length: no spare capacity (hours of segments add up).
        seg.parts.shrink_to_fit();
        seg.storage = Storage::Disk { offsets };
        if in_window {
            self.disk_bytes += at;
        }
    }

    /// Gives up spilling: queued writes are dropped, their segments stay in memory.
    fn stop_spilling(&mut self) {
        let mut cancelled = Vec::new();
        self.jobs.retain(|j| match j {
            DiskJob::Write { msn, .. } => {
                cancelled.push(*msn);
                false
            }
            DiskJob::Delete { .. } => true,
        });
        for msn in cancelled {
            if let Some(seg) = self.segment_mut(msn) {
                seg.storage = Storage::Memory;
            }
        }
    }
}

/// What the packager did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Taken into a part (or a config noted).
    Taken,
    /// Before the first keyframe, of a track not packaged, or not media.
    Skipped,
    /// A payload that could not be parsed or a codec HLS/CMAF cannot carry.
    Unsupported,
}

/// The live window of one stream, per track.
pub struct Packager {
    cfg: PackagerConfig,
    /// The newest configuration seen per kind (video, audio).
    configs: [Option<TrackConfig>; 2],
    /// The packaged tracks (empty before the first keyframe).
    tracks: Vec<Track>,
    /// The track whose frames decide cuts (video when there is one).
    main: TrackKind,
    /// Milliseconds (hub time) of the open segment's and part's first main frame.
    seg_start: u32,
    part_start: u32,
    last_main: Option<u32>,
    /// A new init segment is due at the next keyframe (a track appeared or changed).
    restart: bool,
    /// First audio frame without any video configuration, for audio-only streams.
    audio_since: Option<u32>,
    next_msn: u64,
    disc_seq: u64,
    init_version: u32,
    /// Wall clock at hub time `anchor.1`.
    anchor: Option<(SystemTime, u32)>,
    ended: bool,
    /// Bumped whenever a part or segment is added (and at the end): blocking requests wait
    /// for it.
    version: u64,
    /// By track: `version` when that track last had something new (a part of its own, or a
    /// change to every track), so that a track's requests need not wake for the other's.
    track_versions: [u64; 2],
    unsupported: u64,
    /// The MPEG-TS twin of the segments (`container` "ts" or "both").
    ts: Option<TsWindow>,
    /// A disk write failed: no more spilling for this stream.
    spill_failed: bool,
    /// Resumed after `end`, waiting for the keyframe that starts the new timeline.
    resuming: bool,
    /// Added to incoming timestamps (a resumed stream's start over); computed at the first
    /// frame after a resume (`shift_from`: the last timestamp before it).
    shift: u32,
    shift_from: Option<u32>,
}

/// A resumed stream's timeline starts at least this long after the last frame before it.
const RESUME_GAP_MS: u32 = 100;

/// How long an audio-only stream waits for a video configuration before it is packaged as
/// audio only (encoders send both configurations before any frame).
const AUDIO_ONLY_AFTER_MS: u32 = 1000;

impl Packager {
    pub fn new(cfg: PackagerConfig) -> Packager {
        Packager {
            cfg,
            configs: [None, None],
            tracks: Vec::new(),
            main: TrackKind::Video,
            seg_start: 0,
            part_start: 0,
            last_main: None,
            restart: false,
            audio_since: None,
            next_msn: 0,
            disc_seq: 0,
            init_version: 0,
            anchor: None,
            ended: false,
            version: 0,
            track_versions: [0; 2],
            unsupported: 0,
            ts: cfg.container.ts().then(TsWindow::new),
            spill_failed: false,
            resuming: false,
            shift: 0,
            shift_from: None,
        }
    }

    pub fn config(&self) -> &PackagerConfig {
        &self.cfg
    }

    /// Numbers the first segment `msn` and the first init segment `init` (call before the
    /// first frame). A base unique to each window keeps URLs from naming two different
    /// segments across restarts, which caches would mix up.
    pub fn start_sequence(&mut self, msn: u64, init: u32) {
        if !self.is_started() {
            self.next_msn = msn;
            self.init_version = init;
        }
    }

    /// Packaged tracks, video first.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    pub fn track(&self, kind: TrackKind) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind == kind)
    }

    /// Changes whenever there is something new to fetch.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Changes whenever `kind`'s playlist or parts change (a subset of [`Packager::version`]
    /// changes).
    pub fn track_version(&self, kind: TrackKind) -> u64 {
        self.track_versions[kind.index()]
    }

    /// Something new for `track`'s playlist, or for every track's (`None`).
    fn bump(&mut self, track: Option<TrackKind>) {
        self.version += 1;
        match track {
            Some(t) => self.track_versions[t.index()] = self.version,
            None => self.track_versions = [self.version; 2],
        }
    }

    /// True once the stream ended (`EXT-X-ENDLIST`).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// True once the first segment is open (tracks known).
    pub fn is_started(&self) -> bool {
        !self.tracks.is_empty()
    }

    /// The main track (whose cuts every track follows).
    pub fn main(&self) -> TrackKind {
        self.main
    }

    /// Wall-clock time at hub time 0 (the DASH `availabilityStartTime`): the first frame's
    /// arrival minus its timestamp.
    pub fn epoch(&self) -> Option<SystemTime> {
        let (wall, ms) = self.anchor?;
        wall.checked_sub(Duration::from_millis(u64::from(ms)))
    }

    /// Frames whose payload could not be packaged.
    pub fn unsupported(&self) -> u64 {
        self.unsupported
    }

    /// Bytes held for every track's windows (MPEG-TS included).
    pub fn bytes(&self) -> u64 {
        let ts = self.ts.as_ref().map_or(0, TsWindow::bytes);
        self.tracks.iter().map(|t| t.bytes).sum::<u64>() + ts
    }

    /// The MPEG-TS segments, when the container includes TS.
    pub fn ts(&self) -> Option<&TsWindow> {
        self.ts.as_ref()
    }

    /// Of [`Packager::bytes`], those on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.tracks.iter().map(|t| t.disk_bytes).sum()
    }

    /// Disk writes and deletes due, in the order they must be done. A write's segment stays
    /// in memory until [`Packager::spilled`] reports it done.
    pub fn take_disk_jobs(&mut self) -> Vec<DiskJob> {
        self.tracks
            .iter_mut()
            .flat_map(|t| t.jobs.drain(..))
            .collect()
    }

    /// The outcome of a [`DiskJob::Write`]. A failure stops spilling for this stream (its
    /// segments stay in memory, the window bounded by `max_bytes`).
    pub fn spilled(&mut self, track: TrackKind, msn: u64, ok: bool) {
        if let Some(t) = self.tracks.iter_mut().find(|t| t.kind == track) {
            t.spilled(msn, ok);
        }
        if !ok && !self.spill_failed {
            self.spill_failed = true;
            for t in &mut self.tracks {
                t.stop_spilling();
            }
        }
    }

    /// Whether a disk write failed (the window stays in memory from then on).
    pub fn spill_failed(&self) -> bool {
        self.spill_failed
    }

    /// Segments in the playlist (of the main track).
    pub fn segment_count(&self) -> usize {
        self.track(self.main).map_or(0, |t| t.segments.len())
    }

    /// Takes one frame: `timestamp` in milliseconds (the hub's), `wall` the wall-clock time
    /// it arrived.
    pub fn push(
        &mut self,
        kind: MediaKind,
        timestamp: u32,
        payload: &Bytes,
        now: Instant,
        wall: SystemTime,
    ) -> Pushed {
        if self.ended {
            return Pushed::Skipped;
        }
        let (track, parsed) = match kind {
            MediaKind::Video => (TrackKind::Video, prism_cmaf::parse_video(payload)),
            MediaKind::Audio => (TrackKind::Audio, prism_cmaf::parse_audio(payload)),
            MediaKind::Data => return Pushed::Skipped,
        };
        let timestamp = self.shifted(timestamp, wall);
        let (keyframe, cts_ms, data) = match parsed {
            Err(_) => {
                self.unsupported += 1;
                return Pushed::Unsupported;
            }
            Ok(Payload::Skip) => return Pushed::Skipped,
            Ok(Payload::Config(c)) => {
                if c.codec.is_video() != (track == TrackKind::Video) {
                    self.unsupported += 1;
                    return Pushed::Unsupported;
                }
                let changed = self.configs[track.index()].as_ref() != Some(&c);
                if changed && self.is_started() {
                    // A new track or a changed configuration: new init at the next keyframe.
                    let same = self.track(track).map(|t| &t.config) == Some(&c);
                    self.restart |= !same;
                }
                if let Some(ts) = &mut self.ts {
                    ts.push_config(kind, timestamp, payload, c.codec, &self.cfg);
                }
                self.configs[track.index()] = Some(c);
                return Pushed::Taken;
            }
            Ok(Payload::Frame {
                keyframe,
                cts_ms,
                data,
            }) => (keyframe || track == TrackKind::Audio, cts_ms, data),
        };
        if self.anchor.is_none() {
            self.anchor = Some((wall, timestamp));
        }
        // A hole in the main track's timeline longer than a segment (a subscriber queue that
        // overflowed resumes at a later keyframe, an encoder that stalled): the sample before
        // it ends with the usual duration and a new timeline starts (`EXT-X-DISCONTINUITY`),
        // rather than one sample spanning the hole past the target duration.
        if track == self.main && self.is_started() && !self.resuming {
            let jump = self
                .last_main
                .map_or(0, |last| timestamp.wrapping_sub(last));
            if jump > self.cfg.segment.as_millis() as u32 && jump < u32::MAX / 2 {
                if let Some(t) = self.tracks.iter_mut().find(|t| t.kind == track) {
                    t.flush_pending();
                }
                self.restart = true;
            }
        }

        // Start (or restart with a new set of tracks) on a keyframe of the track that will
        // lead.
        let leads = match (self.configs[0].is_some(), track) {
            (true, TrackKind::Video) => keyframe,
            (false, TrackKind::Audio) => {
                let since = *self.audio_since.get_or_insert(timestamp);
                timestamp.wrapping_sub(since) >= AUDIO_ONLY_AFTER_MS || self.is_started()
            }
            _ => false,
        };
        if (!self.is_started() || self.restart) && leads {
            self.start_tracks(timestamp, wall, now);
        }
        if self.resuming {
            // The new timeline starts with a keyframe of the leading track.
            return Pushed::Skipped;
        }
        // Not started yet, or a track that is not packaged (until the next restart).
        let Some(ti) = self.tracks.iter().position(|t| t.kind == track) else {
            return Pushed::Skipped;
        };

        let dts = self.tracks[ti].to_ticks(timestamp);
        let cts = (i64::from(cts_ms) * self.tracks[ti].timescale() as i64 / 1000)
            .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        // The sample held back before this one is complete now. A following track's parts
        // end when the next sample would not fit (`Track::complete`), its segments with the
        // main track's; the main track decides whether a part and a segment end here.
        // With TS only, the CMAF tracks keep their cuts but no samples (no CMAF work).
        if self.cfg.container.fmp4() && self.tracks[ti].push(dts, cts, keyframe, data) {
            // A track cut its own part (a following track's run full, or a sample longer
            // than guessed): parked blocking reloads of its playlist wait for the version,
            // not for the main track's next cut.
            self.bump(Some(track));
        }
        if track == self.main {
            self.cut_before(timestamp, keyframe, wall, now);
            self.last_main = Some(timestamp);
        }
        if let Some(ts) = &mut self.ts {
            ts.push_frame(kind, timestamp, payload, self.main.media_kind(), &self.cfg);
        }
        Pushed::Taken
    }

    /// The main track's frame at `t` (ms) arrived and completed the sample before it: cut a
    /// part, and a segment, before it when due.
    fn cut_before(&mut self, t: u32, keyframe: bool, wall: SystemTime, now: Instant) {
        let Some(last) = self.last_main else {
            return;
        };
        let seg_len = t.wrapping_sub(self.seg_start);
        let part_len = t.wrapping_sub(self.part_start);
        let interval = t.wrapping_sub(last);
        let segment_ms = self.cfg.segment.as_millis() as u32;
        let part_ms = self.cfg.part.as_millis() as u32;
        let segment_due = keyframe && seg_len >= segment_ms;
        // End the part here if the next frame would make it longer than the target.
        let part_due = part_len >= part_ms || part_len.saturating_add(interval) > part_ms;
        if !(segment_due || part_due) {
            return;
        }
        // The frame at `t` was pushed already: it goes to the next part (it is the main
        // track's held-back sample, not in the part being closed).
        self.close_main_part();
        self.part_start = t;
        if segment_due {
            self.close_segments(t, false, wall);
            self.evict(now);
        }
        self.bump((!segment_due).then_some(self.main));
    }

    fn close_parts(&mut self) {
        for track in &mut self.tracks {
            track.close_part();
        }
    }

    /// Closes the main track's part (the others cut their own parts).
    fn close_main_part(&mut self) {
        let main = self.main;
        if let Some(t) = self.tracks.iter_mut().find(|t| t.kind == main) {
            t.close_part();
        }
    }

    fn new_segment(&self, t: u32, discontinuity: bool, wall: SystemTime) -> Segment {
        Segment {
            msn: self.next_msn,
            parts: Vec::new(),
            start: 0,
            duration: 0.0,
            wall: self.wall_at(t).unwrap_or(wall),
            discontinuity,
            init: self.init_version,
            disc_seq: self.disc_seq,
            storage: Storage::Memory,
        }
    }

    fn wall_at(&self, t: u32) -> Option<SystemTime> {
        let (wall, at) = self.anchor?;
        Some(wall + Duration::from_millis(u64::from(t.wrapping_sub(at))))
    }

    /// Closes every track's open segment; the next one starts at `t` (ms).
    fn close_segments(&mut self, t: u32, discontinuity: bool, wall: SystemTime) {
        // Seconds since the segment started: what a track without a sample in that time
        // lists as a gap, so that every playlist numbers the same segment alike.
        let span = f64::from(t.wrapping_sub(self.seg_start)) / 1000.0;
        self.next_msn += 1;
        self.seg_start = t;
        let next = self.new_segment(t, discontinuity, wall);
        if let Some(ts) = &mut self.ts {
            ts.cut(Cut {
                at: t,
                main: self.main.media_kind(),
                next_msn: next.msn,
                next_wall: next.wall,
                discontinuity,
                disc_seq: next.disc_seq,
                ended: self.ended,
            });
        }
        let main = self.main;
        for track in &mut self.tracks {
            let at = track.to_ticks(t);
            track.cut_segment_at(at, next.clone(), span, track.kind != main);
        }
    }

    fn evict(&mut self, now: Instant) {
        let cfg = self.cfg;
        let spill = cfg.spill && !self.spill_failed;
        for track in &mut self.tracks {
            track.evict(&cfg, now);
            if spill {
                track.queue_spills(cfg.window_segments);
            }
        }
        if let Some(ts) = &mut self.ts {
            ts.evict(&cfg, now);
        }
    }

    /// Opens the first segment, or restarts with new tracks or configurations (a
    /// discontinuity with a new init segment).
    fn start_tracks(&mut self, t: u32, wall: SystemTime, now: Instant) {
        let restarting = self.is_started();
        if restarting {
            for track in &mut self.tracks {
                track.flush_pending();
            }
            self.close_parts();
            self.disc_seq += 1;
            self.init_version += 1;
            if std::mem::take(&mut self.resuming) {
                // After `end` the open segments are empty: they start the new timeline.
                let open = self.new_segment(t, true, wall);
                for track in &mut self.tracks {
                    track.open = open.clone();
                }
            } else {
                self.close_segments(t, true, wall);
                self.evict(now);
            }
        }
        self.restart = false;
        self.main = if self.configs[0].is_some() {
            TrackKind::Video
        } else {
            TrackKind::Audio
        };
        let kinds = [TrackKind::Video, TrackKind::Audio];
        let open = self.new_segment(t, restarting, wall);
        for kind in kinds {
            let Some(config) = self.configs[kind.index()].clone() else {
                continue;
            };
            let init = (self.init_version, prism_cmaf::init_segment(&[&config]));
            match self.tracks.iter_mut().find(|tr| tr.kind == kind) {
                Some(track) => {
                    track.config = config;
                    track.inits.push(init);
                }
                None => {
                    let mut track = Track::new(kind, config, init, open.clone());
                    track.part_limit = track.ticks(self.cfg.part);
                    track.open.msn = self.next_msn;
                    self.tracks.push(track);
                }
            }
        }
        self.tracks.sort_by_key(|t| t.kind.index());
        if let Some(ts) = &mut self.ts {
            let codecs: Vec<_> = self
                .tracks
                .iter()
                .map(|t| (t.kind.media_kind(), t.config.codec))
                .collect();
            ts.start(
                &codecs,
                Cut {
                    at: t,
                    main: self.main.media_kind(),
                    next_msn: self.next_msn,
                    next_wall: open.wall,
                    discontinuity: restarting,
                    disc_seq: self.disc_seq,
                    ended: false,
                },
            );
        }
        self.seg_start = t;
        self.part_start = t;
        self.last_main = None;
        self.bump(None);
    }

    /// The stream ended: the open part and segment close, the playlists get
    /// `EXT-X-ENDLIST`.
    pub fn end(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        self.ended = true;
        if self.is_started() {
            for track in &mut self.tracks {
                track.flush_pending();
            }
            self.close_parts();
            // The end of the last main frame (it lasts as long as the one before), so that
            // a track with nothing since the last cut still lists that time, as a gap.
            let last = self.track(self.main).map_or(0, |m| {
                (u64::from(m.last_duration) * 1000 / m.timescale()).min(u64::from(u32::MAX)) as u32
            });
            let t = self
                .last_main
                .map_or(self.seg_start, |t| t.wrapping_add(last));
            let wall = self.wall_at(t).unwrap_or(SystemTime::UNIX_EPOCH);
            self.close_segments(t, false, wall);
            self.evict(now);
        }
        self.bump(None);
    }

    /// A new encoder session of the live stream (a publisher that reconnected within the
    /// hub's grace, its timestamps continued): the next keyframe starts a new timeline
    /// (`EXT-X-DISCONTINUITY`, a new init segment). Identical sequence headers alone do not
    /// restart (a looping encoder sends them again).
    pub fn restart(&mut self) {
        if self.is_started() && !self.ended {
            self.restart = true;
        }
    }

    /// The stream comes back after [`Packager::end`] (a new publisher of the same name):
    /// the window goes on, and the next keyframe starts a new timeline
    /// (`EXT-X-DISCONTINUITY`, a new init segment). The new publisher's timestamps, which
    /// start over, are moved to follow the wall clock since the window began (never before
    /// the last frame). False (nothing done) unless it ended after it started, with every
    /// track's segments numbered alike up to the end.
    pub fn resume(&mut self) -> bool {
        let next = self.next_msn;
        let aligned = self
            .tracks
            .iter()
            .all(|t| t.segments.back().map_or(true, |s| s.msn + 1 == next));
        if !self.ended || !self.is_started() || !aligned {
            return false;
        }
        self.ended = false;
        self.restart = true;
        self.resuming = true;
        // `end` left the last timestamp in `seg_start`.
        self.shift_from = Some(self.seg_start);
        self.bump(None);
        true
    }

    /// `ts` on the window's timeline.
    fn shifted(&mut self, ts: u32, wall: SystemTime) -> u32 {
        if let Some(last) = self.shift_from.take() {
            let min = last.wrapping_add(RESUME_GAP_MS);
            let by_wall = self.anchor.and_then(|(w, at)| {
                let ms = wall.duration_since(w).ok()?.as_millis();
                Some(at.wrapping_add(u32::try_from(ms).ok()?))
            });
            // Wall-clock time, unless the last publisher ran ahead of it (timestamps are
            // compared on the wrapping 32-bit timeline).
            let start = match by_wall {
                Some(t) if t.wrapping_sub(min) as i32 > 0 => t,
                _ => min,
            };
            self.shift = start.wrapping_sub(ts);
        }
        ts.wrapping_add(self.shift)
    }

    /// Drops retired segments whose grace ended (call now and then while the stream is idle).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.evict(now);
    }

    /// The open segment's number (the next one to complete).
    pub fn open_msn(&self) -> u64 {
        self.next_msn
    }
}
