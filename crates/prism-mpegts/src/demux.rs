//! MPEG-TS demuxer: 188-byte transport packets in, FLV-style frames out.
//!
//! Sans-I/O: feed bytes with [`Demuxer::push`] (any slicing; packets may straddle calls),
//! then drain [`Demuxer::poll_frame`] until it returns `None`. Call [`Demuxer::flush`] at
//! end of stream to emit the last, still open, PES (video PES usually have no length and
//! end only when the next one starts).
//!
//! ```
//! use prism_mpegts::demux::Demuxer;
//! let mut demux = Demuxer::default();
//! # let datagrams: Vec<Vec<u8>> = Vec::new();
//! for datagram in &datagrams {
//!     demux.push(datagram);
//!     while let Some(frame) = demux.poll_frame() {
//!         // hand `frame` to the hub
//!         # let _ = frame;
//!     }
//! }
//! demux.flush();
//! while let Some(_frame) = demux.poll_frame() {}
//! ```
//!
//! The first H.264/HEVC and the first AAC (ADTS) elementary stream of the first program are
//! demuxed; FLV carries one of each. Malformed input never fails the demuxer: it is counted
//! in [`DemuxStats`] and skipped, and the demuxer resynchronises (sync byte, continuity
//! counter, PUSI, ADTS sync word) on its own.
//!
//! Timestamps: 90 kHz PTS/DTS are unwrapped across the 33-bit wrap, mapped to milliseconds
//! on one timeline shared by audio and video (so A/V sync is kept) whose zero is the first
//! DTS seen, and re-based on a discontinuity (indicator set, or a jump back of more than 1 s
//! or forward of more than 10 s) so each stream's output stays monotonic.
//!
//! Memory is bounded: the input carry-over is at most two packets and a byte (a straddling
//! packet plus resync lookahead), a PES at most [`DemuxLimits::max_pes_bytes`] (checked before growing), PSI
//! sections at most 1024 bytes, and at most four PIDs are tracked (PAT, PMT, one video, one
//! audio), so a PMT listing thousands of streams costs nothing.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use crate::nal::{self, avc_type, hevc_type};
use crate::{FlvFrame, FrameKind};

const PACKET_LEN: usize = 188;
const SYNC: u8 = 0x47;
/// 33-bit PTS/DTS modulus.
const PTS_WRAP: i64 = 1 << 33;
const MAX_SECTION_LEN: usize = 1024;
/// ADTS frame_length is 13 bits.
const MAX_ADTS_FRAME: usize = (1 << 13) - 1;
const AAC_SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];
/// Largest and smallest signed 24-bit composition time offsets.
const CTS_MAX: i64 = (1 << 23) - 1;
const CTS_MIN: i64 = -(1 << 23);

/// Resource limits, checked by [`Demuxer::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemuxLimits {
    /// Largest PES (header included) reassembled; a longer one is dropped and counted.
    pub max_pes_bytes: usize,
    /// Frames held for [`Demuxer::poll_frame`]; beyond it new frames are dropped and
    /// counted. Only reached if the caller stops draining after each push.
    pub max_queued_frames: usize,
}

impl Default for DemuxLimits {
    fn default() -> Self {
        DemuxLimits {
            max_pes_bytes: 8 << 20,
            max_queued_frames: 4096,
        }
    }
}

/// API misuse; malformed input is never an error (see [`DemuxStats`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DemuxError {
    #[error("invalid demuxer limits: {0}")]
    InvalidLimits(&'static str),
}

/// Counters of what was received and what was dropped, and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemuxStats {
    /// Transport packets processed.
    pub packets: u64,
    /// Times sync was lost after having been acquired.
    pub resyncs: u64,
    /// Bytes skipped while looking for sync.
    pub skipped_bytes: u64,
    /// Continuity-counter gaps on tracked PIDs.
    pub cc_errors: u64,
    /// Packets with the transport_error_indicator set (skipped).
    pub transport_errors: u64,
    /// PAT/PMT sections with a bad CRC or layout.
    pub psi_errors: u64,
    /// PES dropped: partial after a loss, oversize, or a malformed PES header.
    pub dropped_pes: u64,
    /// Of `dropped_pes`, those larger than `max_pes_bytes`.
    pub oversize_pes: u64,
    /// Elementary-stream data that could not be parsed (no NAL units, bad ADTS header).
    pub malformed_frames: u64,
    /// Video frames dropped before the first decoder configuration and keyframe.
    pub frames_before_keyframe: u64,
    /// Frames dropped because the output queue was full.
    pub dropped_frames: u64,
    /// Timeline re-bases (discontinuity indicator or timestamp jump).
    pub discontinuities: u64,
    /// Frames produced (sequence headers included).
    pub frames: u64,
}

/// The MPEG-TS demuxer. See the module docs for the run loop.
#[derive(Debug)]
pub struct Demuxer {
    limits: DemuxLimits,
    /// Bytes not yet consumed: at most one packet plus lookahead, see `push`.
    input: Vec<u8>,
    synced: bool,
    ever_synced: bool,
    pids: Vec<PidState>,
    timeline: Timeline,
    out: Output,
}

impl Default for Demuxer {
    fn default() -> Self {
        Demuxer::with_limits(DemuxLimits::default())
    }
}

impl Demuxer {
    /// A demuxer with the given limits.
    pub fn new(limits: DemuxLimits) -> Result<Self, DemuxError> {
        if limits.max_pes_bytes < PACKET_LEN {
            return Err(DemuxError::InvalidLimits("max_pes_bytes below one packet"));
        }
        if limits.max_queued_frames == 0 {
            return Err(DemuxError::InvalidLimits("max_queued_frames is 0"));
        }
        Ok(Self::with_limits(limits))
    }

    fn with_limits(limits: DemuxLimits) -> Self {
        Demuxer {
            limits,
            input: Vec::with_capacity(2 * PACKET_LEN),
            synced: false,
            ever_synced: false,
            pids: vec![PidState::new(0, PidKind::Pat(Section::default()))],
            timeline: Timeline::default(),
            out: Output {
                queue: VecDeque::new(),
                max: limits.max_queued_frames,
                stats: DemuxStats::default(),
            },
        }
    }

    /// Feeds transport-stream bytes, sliced any way. Drain [`Demuxer::poll_frame`] after.
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            // Copy through a small buffer so packets straddling calls and resync lookahead
            // are handled in one place; it never holds more than two packets.
            let room = 2 * PACKET_LEN + 1 - self.input.len();
            let n = room.min(data.len());
            self.input.extend_from_slice(&data[..n]);
            data = &data[n..];
            let consumed = self.consume_packets();
            self.input.drain(..consumed);
        }
    }

    /// Processes whole packets in `self.input`; returns the bytes consumed.
    fn consume_packets(&mut self) -> usize {
        let mut pos = 0;
        let len = self.input.len();
        loop {
            if self.synced {
                if len - pos < PACKET_LEN {
                    return pos;
                }
                // A packet cut short shows as a missing sync byte after it: when that byte is
                // already here, check it, so the cut packet is not parsed with the next
                // one's bytes. (Not waited for: that would delay the last packet of every
                // datagram; a cut at a push boundary is caught one packet later.)
                let next_ok = self
                    .input
                    .get(pos + PACKET_LEN)
                    .map_or(true, |&b| b == SYNC);
                if self.input[pos] == SYNC && next_ok {
                    let mut packet = [0u8; PACKET_LEN];
                    packet.copy_from_slice(&self.input[pos..pos + PACKET_LEN]);
                    self.handle_packet(&packet);
                    pos += PACKET_LEN;
                    continue;
                }
                self.synced = false;
                self.out.stats.resyncs += 1;
            }
            // Hunting: a sync byte counts only if another one follows a packet later.
            match self.input[pos..].iter().position(|&b| b == SYNC) {
                None => {
                    self.out.stats.skipped_bytes += (len - pos) as u64;
                    return len;
                }
                Some(i) => {
                    self.out.stats.skipped_bytes += i as u64;
                    pos += i;
                    if pos + PACKET_LEN >= len {
                        return pos; // need the lookahead byte
                    }
                    if self.input[pos + PACKET_LEN] == SYNC {
                        self.synced = true;
                        self.ever_synced = true;
                    } else {
                        self.out.stats.skipped_bytes += 1;
                        pos += 1;
                    }
                }
            }
        }
    }

    /// Frames ready for the caller, oldest first; call until `None` after every push.
    #[must_use]
    pub fn poll_frame(&mut self) -> Option<FlvFrame> {
        self.out.queue.pop_front()
    }

    /// End of stream: emits every PES still open (and a last packet held for resync
    /// lookahead). The demuxer stays usable; data pushed afterwards starts new PES.
    pub fn flush(&mut self) {
        if self.input.len() >= PACKET_LEN && self.input[0] == SYNC {
            let mut packet = [0u8; PACKET_LEN];
            packet.copy_from_slice(&self.input[..PACKET_LEN]);
            self.handle_packet(&packet);
        }
        self.input.clear();
        self.synced = false;
        for p in &mut self.pids {
            if let PidKind::Es(es) = &mut p.kind {
                es.finish_pes(&mut self.timeline, &mut self.out);
            }
        }
    }

    /// Bytes allocated for reassembly now: the input buffer, PSI sections, and each
    /// elementary stream's PES buffer (its capacity: a PES buffer is reused, so it keeps the
    /// size of the largest PES so far, at most `max_pes_bytes`) and ADTS carry. Frames
    /// waiting in [`Demuxer::poll_frame`]'s queue are not counted: the caller takes them
    /// after every push. Linear in the PIDs tracked (a few); for a memory budget.
    pub fn buffered_bytes(&self) -> usize {
        let pids: usize = self
            .pids
            .iter()
            .map(|p| match &p.kind {
                PidKind::Pat(s) | PidKind::Pmt(s) => s.buf.capacity(),
                PidKind::Es(es) => es.pes.capacity() + es.audio.carry.capacity(),
            })
            .sum();
        self.input.capacity() + pids
    }

    /// All counters.
    pub fn stats(&self) -> &DemuxStats {
        &self.out.stats
    }

    /// Continuity-counter gaps seen on tracked PIDs.
    pub fn cc_errors(&self) -> u64 {
        self.out.stats.cc_errors
    }

    /// Times sync was lost and re-acquired.
    pub fn resyncs(&self) -> u64 {
        self.out.stats.resyncs
    }

    /// PES dropped (loss, oversize, malformed header).
    pub fn dropped_pes(&self) -> u64 {
        self.out.stats.dropped_pes
    }

    /// The limits in force.
    pub fn limits(&self) -> DemuxLimits {
        self.limits
    }

    fn handle_packet(&mut self, p: &[u8; PACKET_LEN]) {
        self.out.stats.packets += 1;
        if p[1] & 0x80 != 0 {
            // transport_error_indicator: the continuity check on the next packet notices
            // the gap and drops the PES it belonged to.
            self.out.stats.transport_errors += 1;
            return;
        }
        let pusi = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
        let scrambled = p[3] & 0xC0 != 0;
        let afc = (p[3] >> 4) & 0x3;
        let cc = p[3] & 0x0F;
        let Some(idx) = self.pids.iter().position(|s| s.pid == pid) else {
            return;
        };
        let mut payload_start = 4;
        let mut discontinuity = false;
        if afc & 0x2 != 0 {
            let af_len = usize::from(p[4]);
            if af_len > 183 {
                return; // malformed; the next packet's CC check will flag anything lost
            }
            if af_len > 0 {
                discontinuity = p[5] & 0x80 != 0;
            }
            payload_start = 5 + af_len;
        }
        let has_payload = afc & 0x1 != 0 && payload_start < PACKET_LEN;
        let state = &mut self.pids[idx];
        if afc & 0x1 != 0 {
            match state.last_cc {
                Some(last) if !discontinuity => {
                    if cc == last {
                        return; // duplicate packet, allowed once
                    }
                    if cc != (last + 1) & 0x0F {
                        self.out.stats.cc_errors += 1;
                        state.on_loss(&mut self.out.stats);
                    }
                }
                _ => {}
            }
            state.last_cc = Some(cc);
        }
        if discontinuity {
            if let PidKind::Es(es) = &mut state.kind {
                es.discontinuity = true;
            }
        }
        if !has_payload || scrambled {
            return;
        }
        let payload = &p[payload_start..];
        match &mut state.kind {
            PidKind::Pat(section) | PidKind::Pmt(section) => {
                let mut tables = Vec::new();
                section.push(pusi, payload, &mut tables, &mut self.out.stats);
                let is_pat = pid == 0;
                for t in tables {
                    if is_pat {
                        self.handle_pat(&t);
                    } else {
                        self.handle_pmt(&t);
                    }
                }
            }
            PidKind::Es(es) => {
                es.push(
                    pusi,
                    payload,
                    self.limits.max_pes_bytes,
                    &mut self.timeline,
                    &mut self.out,
                );
            }
        }
    }

    fn handle_pat(&mut self, section: &[u8]) {
        if section[0] != 0x00 {
            return;
        }
        // Programs start after the 8-byte header and end before the CRC.
        let body = &section[8..section.len() - 4];
        let pmt_pid = body
            .chunks_exact(4)
            .find(|e| u16::from_be_bytes([e[0], e[1]]) != 0) // 0 = network PID
            .map(|e| (u16::from(e[2] & 0x1F) << 8) | u16::from(e[3]));
        let Some(pmt_pid) = pmt_pid else {
            return;
        };
        let current = self
            .pids
            .iter()
            .find(|s| matches!(s.kind, PidKind::Pmt(_)))
            .map(|s| s.pid);
        if current == Some(pmt_pid) {
            return;
        }
        // A new program map: forget the old one and its streams.
        self.flush_es();
        self.pids.retain(|s| matches!(s.kind, PidKind::Pat(_)));
        if pmt_pid != 0 {
            self.pids
                .push(PidState::new(pmt_pid, PidKind::Pmt(Section::default())));
        }
    }

    fn handle_pmt(&mut self, section: &[u8]) {
        if section[0] != 0x02 || section.len() < 16 {
            self.out.stats.psi_errors += 1;
            return;
        }
        let end = section.len() - 4;
        let program_info_len = usize::from(u16::from_be_bytes([section[10], section[11]]) & 0x0FFF);
        let mut pos = 12 + program_info_len;
        let mut video = None;
        let mut audio = None;
        while pos + 5 <= end {
            let stream_type = section[pos];
            let pid = (u16::from(section[pos + 1] & 0x1F) << 8) | u16::from(section[pos + 2]);
            let es_info_len =
                usize::from(u16::from_be_bytes([section[pos + 3], section[pos + 4]]) & 0x0FFF);
            pos += 5 + es_info_len;
            if pos > end {
                self.out.stats.psi_errors += 1;
                return;
            }
            match stream_type {
                0x1B if video.is_none() => video = Some((pid, Codec::H264)),
                0x24 if video.is_none() => video = Some((pid, Codec::Hevc)),
                0x0F if audio.is_none() => audio = Some((pid, Codec::Aac)),
                _ => {}
            }
        }
        let wanted: Vec<(u16, Codec)> = video.into_iter().chain(audio).collect();
        let unchanged = |s: &PidState| match &s.kind {
            PidKind::Es(es) => wanted.contains(&(s.pid, es.codec)),
            _ => true,
        };
        let stale = self.pids.iter().any(|s| !unchanged(s));
        if stale {
            for s in self.pids.iter_mut().filter(|s| !unchanged(s)) {
                if let PidKind::Es(es) = &mut s.kind {
                    es.finish_pes(&mut self.timeline, &mut self.out);
                }
            }
            self.pids.retain(unchanged);
        }
        for (pid, codec) in wanted {
            if pid == 0 || self.pids.iter().any(|s| s.pid == pid) {
                continue;
            }
            self.pids
                .push(PidState::new(pid, PidKind::Es(Box::new(Es::new(codec)))));
        }
    }

    fn flush_es(&mut self) {
        for p in &mut self.pids {
            if let PidKind::Es(es) = &mut p.kind {
                es.finish_pes(&mut self.timeline, &mut self.out);
            }
        }
    }
}

/// Where frames go: the bounded output queue and the counters.
#[derive(Debug)]
struct Output {
    queue: VecDeque<FlvFrame>,
    max: usize,
    stats: DemuxStats,
}

impl Output {
    /// Queues a frame; false if the queue was full and it was dropped.
    fn push(&mut self, frame: FlvFrame) -> bool {
        if self.queue.len() >= self.max {
            self.stats.dropped_frames += 1;
            return false;
        }
        self.stats.frames += 1;
        self.queue.push_back(frame);
        true
    }
}

#[derive(Debug)]
struct PidState {
    pid: u16,
    last_cc: Option<u8>,
    kind: PidKind,
}

#[derive(Debug)]
enum PidKind {
    Pat(Section),
    Pmt(Section),
    Es(Box<Es>),
}

impl PidState {
    fn new(pid: u16, kind: PidKind) -> Self {
        PidState {
            pid,
            last_cc: None,
            kind,
        }
    }

    fn on_loss(&mut self, stats: &mut DemuxStats) {
        match &mut self.kind {
            PidKind::Pat(s) | PidKind::Pmt(s) => s.reset(),
            PidKind::Es(es) => es.drop_pes(stats),
        }
    }
}

/// Reassembles PSI sections (possibly spanning packets) for one PID.
#[derive(Debug, Default)]
struct Section {
    buf: Vec<u8>,
    active: bool,
}

impl Section {
    fn reset(&mut self) {
        self.buf.clear();
        self.active = false;
    }

    /// Adds a packet payload; complete, CRC-checked sections go to `out`.
    fn push(&mut self, pusi: bool, payload: &[u8], out: &mut Vec<Vec<u8>>, stats: &mut DemuxStats) {
        let mut data = payload;
        if pusi {
            let Some((&pointer, rest)) = data.split_first() else {
                return;
            };
            let pointer = usize::from(pointer);
            if pointer > rest.len() {
                self.reset();
                stats.psi_errors += 1;
                return;
            }
            if self.active {
                self.append(&rest[..pointer], out, stats);
            }
            self.reset();
            self.active = true;
            data = &rest[pointer..];
        } else if !self.active {
            return;
        }
        self.append(data, out, stats);
    }

    fn append(&mut self, mut data: &[u8], out: &mut Vec<Vec<u8>>, stats: &mut DemuxStats) {
        while self.active && !data.is_empty() {
            if self.buf.is_empty() && data[0] == 0xFF {
                self.active = false; // stuffing: no more sections in this packet
                return;
            }
            // Take at most what the current section still needs.
            let need = if self.buf.len() < 3 {
                3 - self.buf.len()
            } else {
                section_total(&self.buf) - self.buf.len()
            };
            let n = need.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() < 3 {
                return;
            }
            let total = section_total(&self.buf);
            if !(12..=MAX_SECTION_LEN).contains(&total) {
                stats.psi_errors += 1;
                self.reset();
                return;
            }
            if self.buf.len() == total {
                if crc32_mpeg2(&self.buf) == 0 {
                    out.push(std::mem::take(&mut self.buf));
                } else {
                    stats.psi_errors += 1;
                }
                self.buf.clear();
            }
        }
    }
}

fn section_total(buf: &[u8]) -> usize {
    3 + usize::from(u16::from_be_bytes([buf[1], buf[2]]) & 0x0FFF)
}

/// CRC-32/MPEG-2; over a whole section including its CRC the result is 0.
fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    H264,
    Hevc,
    Aac,
}

/// One elementary stream: PES reassembly, its clock, and its codec state.
#[derive(Debug)]
struct Es {
    codec: Codec,
    pes: Vec<u8>,
    /// Inside a PES (a PUSI was seen since the last loss).
    in_pes: bool,
    /// Total PES length from PES_packet_length, if bounded.
    pes_len: Option<usize>,
    /// Discontinuity indicator seen; applies to the next timestamp.
    discontinuity: bool,
    clock: StreamClock,
    video: VideoState,
    audio: AudioState,
}

impl Es {
    fn new(codec: Codec) -> Self {
        Es {
            codec,
            pes: Vec::new(),
            in_pes: false,
            pes_len: None,
            discontinuity: false,
            clock: StreamClock::default(),
            video: VideoState::default(),
            audio: AudioState::default(),
        }
    }

    fn drop_pes(&mut self, stats: &mut DemuxStats) {
        if self.in_pes {
            stats.dropped_pes += 1;
        }
        self.pes.clear();
        self.in_pes = false;
        self.pes_len = None;
        // A straddling ADTS frame lost its other half.
        self.audio.carry.clear();
    }

    fn push(
        &mut self,
        pusi: bool,
        payload: &[u8],
        max_pes: usize,
        timeline: &mut Timeline,
        out: &mut Output,
    ) {
        if pusi {
            self.finish_pes(timeline, out);
            self.in_pes = true;
        } else if !self.in_pes {
            return;
        }
        if self.pes.len() + payload.len() > max_pes {
            out.stats.oversize_pes += 1;
            self.drop_pes(&mut out.stats);
            return;
        }
        self.pes.extend_from_slice(payload);
        if pusi {
            // Anchor the timeline at the first PES to *start*, not the first to finish:
            // video PES finish a frame late, and audio would otherwise set the zero.
            if timeline.base.is_none() {
                if let Some(h) = parse_pes_header(&self.pes) {
                    if let Some(dts) = h.dts.or(h.pts) {
                        timeline.anchor(dts);
                    }
                }
            }
        }
        if self.pes_len.is_none() && self.pes.len() >= 6 {
            let len = usize::from(u16::from_be_bytes([self.pes[4], self.pes[5]]));
            if len != 0 {
                self.pes_len = Some(6 + len);
            }
        }
        if let Some(len) = self.pes_len {
            if self.pes.len() >= len {
                self.pes.truncate(len);
                self.finish_pes(timeline, out);
            }
        }
    }

    /// Completes the current PES, if any, and emits its frames.
    fn finish_pes(&mut self, timeline: &mut Timeline, out: &mut Output) {
        let in_pes = std::mem::replace(&mut self.in_pes, false);
        self.pes_len = None;
        if !in_pes || self.pes.is_empty() {
            self.pes.clear();
            return;
        }
        let pes = std::mem::take(&mut self.pes);
        match parse_pes_header(&pes) {
            Some(h) if h.payload_offset <= pes.len() => {
                let payload = &pes[h.payload_offset..];
                match self.codec {
                    Codec::H264 | Codec::Hevc => self.handle_video(payload, h, timeline, out),
                    Codec::Aac => self.handle_aac(payload, h, timeline, out),
                }
            }
            _ => {
                out.stats.dropped_pes += 1;
            }
        }
        // Reuse the allocation for the next PES.
        self.pes = pes;
        self.pes.clear();
    }

    fn handle_video(
        &mut self,
        payload: &[u8],
        h: PesHeader,
        timeline: &mut Timeline,
        out: &mut Output,
    ) {
        let hevc = self.codec == Codec::Hevc;
        let mut nals: Vec<&[u8]> = Vec::new();
        let mut keyframe = false;
        // Intra-refresh encoders may send IDR only once; a recovery point SEI is where a
        // decoder can start instead, so it also ends the wait for a first keyframe.
        let mut recovery_point = false;
        let mut params = 0;
        let v = &mut self.video;
        for n in nal::split_annex_b(payload) {
            let changed = if hevc {
                match nal::hevc_nal_type(n).unwrap_or(0) {
                    _ if n.len() < 2 => false,
                    hevc_type::AUD | hevc_type::FILLER => false,
                    hevc_type::VPS => store_param(&mut v.vps, nal::hevc_vps_id(n), n, 16),
                    hevc_type::SPS => {
                        store_param(&mut v.sps, nal::parse_hevc_sps(n).map(|s| s.id), n, 16)
                    }
                    hevc_type::PPS => store_param(&mut v.pps, nal::hevc_pps_id(n), n, 64),
                    t => {
                        keyframe |= (hevc_type::IRAP_FIRST..=hevc_type::IRAP_LAST).contains(&t);
                        nals.push(n);
                        continue;
                    }
                }
            } else {
                match nal::avc_nal_type(n).unwrap_or(0) {
                    avc_type::AUD | avc_type::FILLER => false,
                    avc_type::SPS => {
                        store_param(&mut v.sps, nal::parse_avc_sps(n).map(|s| s.id), n, 32)
                    }
                    avc_type::PPS => store_param(&mut v.pps, nal::avc_pps_id(n), n, 256),
                    t => {
                        keyframe |= t == avc_type::IDR;
                        recovery_point |= t == avc_type::SEI && sei_payload_type(n) == Some(6);
                        nals.push(n);
                        continue;
                    }
                }
            };
            params += 1;
            v.params_dirty |= changed;
        }
        if nals.is_empty() {
            // Parameter sets alone are kept for the next frame; anything else is junk.
            if params == 0 {
                out.stats.malformed_frames += 1;
            }
            return;
        }
        let Some(stamp) = self.stamp_video(h, timeline, &mut out.stats) else {
            return;
        };
        if self.video.params_dirty {
            self.video.params_dirty = false;
            let record = if hevc {
                nal::hevc_decoder_configuration_record(
                    &list(&self.video.vps),
                    &list(&self.video.sps),
                    &list(&self.video.pps),
                )
            } else {
                nal::avc_decoder_configuration_record(
                    &list(&self.video.sps),
                    &list(&self.video.pps),
                )
            };
            if record.is_some() {
                self.video.record = record;
            }
        }
        let Some(record) = &self.video.record else {
            out.stats.frames_before_keyframe += 1;
            return;
        };
        if !self.video.seen_keyframe && !keyframe && !recovery_point {
            out.stats.frames_before_keyframe += 1;
            return;
        }
        self.video.seen_keyframe = true;
        if self.video.sent_record.as_ref() != Some(record) {
            let mut p = BytesMut::with_capacity(5 + record.len());
            if hevc {
                p.put_u8(0x80 | (1 << 4)); // key frame, PacketTypeSequenceStart
                p.put_slice(b"hvc1");
            } else {
                p.put_slice(&[0x17, 0x00, 0, 0, 0]);
            }
            p.put_slice(record);
            let frame = FlvFrame {
                kind: FrameKind::Video,
                timestamp: stamp.dts_ms as u32,
                payload: p.freeze(),
                keyframe: false,
                sequence_header: true,
            };
            // Not marked as sent if dropped, so it goes out before the next frame.
            if out.push(frame) {
                self.video.sent_record = Some(record.clone());
            }
        }
        let body: usize = nals.iter().map(|n| 4 + n.len()).sum();
        let mut p = BytesMut::with_capacity(8 + body);
        if hevc {
            // Enhanced RTMP: [IsExHeader | FrameType | PacketTypeCodedFrames] "hvc1" SI24 CTS
            p.put_u8(0x80 | (if keyframe { 1 } else { 2 } << 4) | 1);
            p.put_slice(b"hvc1");
        } else {
            p.put_u8(if keyframe { 0x17 } else { 0x27 });
            p.put_u8(0x01);
        }
        let cts = stamp.cts_ms.clamp(CTS_MIN, CTS_MAX) as i32;
        p.put_slice(&cts.to_be_bytes()[1..]);
        for n in &nals {
            p.put_u32(n.len() as u32);
            p.put_slice(n);
        }
        out.push(FlvFrame {
            kind: FrameKind::Video,
            timestamp: stamp.dts_ms as u32,
            payload: p.freeze(),
            keyframe,
            sequence_header: false,
        });
    }

    fn stamp_video(
        &mut self,
        h: PesHeader,
        timeline: &mut Timeline,
        stats: &mut DemuxStats,
    ) -> Option<Stamp> {
        let disc = std::mem::take(&mut self.discontinuity);
        let (pts, dts) = match (h.pts, h.dts) {
            (Some(p), Some(d)) => (p, d),
            (Some(p), None) => (p, p),
            // No timestamp: reuse the last one (rare; keeps the frame rather than dropping it).
            _ => {
                let raw = self.clock.last_ticks?.rem_euclid(PTS_WRAP) as u64;
                (raw, raw)
            }
        };
        let (dts_ms, dts_ticks) = timeline.stamp(&mut self.clock, dts, disc, stats);
        let pts_ticks = unwrap_pts(pts, dts_ticks);
        let cts_ms = timeline.to_ms(pts_ticks) - timeline.to_ms(dts_ticks);
        Some(Stamp { dts_ms, cts_ms })
    }

    fn handle_aac(
        &mut self,
        payload: &[u8],
        h: PesHeader,
        timeline: &mut Timeline,
        out: &mut Output,
    ) {
        let mut data = payload;
        // Complete an ADTS frame that straddled the previous PES: it started before this
        // PES's PTS, so it keeps the timestamp predicted from the previous frame.
        if !self.audio.carry.is_empty() {
            let mut carry = std::mem::take(&mut self.audio.carry);
            let need = match adts_header(&carry) {
                Some(a) => a.frame_len.saturating_sub(carry.len()),
                None if carry.len() < 7 => (7 - carry.len()).min(data.len()),
                None => 0,
            };
            let n = need.min(data.len());
            carry.extend_from_slice(&data[..n]);
            data = &data[n..];
            match adts_header(&carry) {
                Some(a) if carry.len() >= a.frame_len => {
                    if let Some(next) = self.audio.next_ticks {
                        let raw = next.rem_euclid(PTS_WRAP) as u64;
                        self.emit_aac(&carry[..a.frame_len], a, raw, false, timeline, out);
                    }
                }
                Some(a) if carry.len() < a.frame_len && data.is_empty() => {
                    self.audio.carry = carry; // still incomplete (tiny PES)
                    return;
                }
                _ => out.stats.malformed_frames += 1,
            }
        }
        let Some(pts) = h
            .pts
            .or_else(|| self.audio.next_ticks.map(|t| t.rem_euclid(PTS_WRAP) as u64))
        else {
            return;
        };
        let mut disc = std::mem::take(&mut self.discontinuity);
        let mut index = 0u64;
        let mut pos = 0;
        let mut in_sync = true;
        while pos < data.len() {
            let rest = &data[pos..];
            let Some(a) = adts_header(rest) else {
                if rest.len() < 9 && rest.first() == Some(&0xFF) && rest.len() < MAX_ADTS_FRAME {
                    self.audio.carry.extend_from_slice(rest); // header split across PES
                    return;
                }
                if in_sync {
                    out.stats.malformed_frames += 1;
                    in_sync = false;
                }
                pos += 1;
                continue;
            };
            if a.frame_len > rest.len() {
                self.audio.carry.extend_from_slice(rest);
                // Next PES completes it; its timestamp follows this PES's frames.
                self.audio.next_ticks = Some(pts as i64 + frame_offset_ticks(index, a.sample_rate));
                return;
            }
            in_sync = true;
            if a.raw_blocks > 0 {
                // Several raw data blocks per ADTS frame can't be split without decoding.
                out.stats.malformed_frames += 1;
            } else {
                let ticks =
                    (pts as i64 + frame_offset_ticks(index, a.sample_rate)).rem_euclid(PTS_WRAP);
                self.emit_aac(&rest[..a.frame_len], a, ticks as u64, disc, timeline, out);
                disc = false;
            }
            index += u64::from(a.raw_blocks) + 1;
            pos += a.frame_len;
        }
    }

    /// Emits one ADTS frame (header included in `frame`) as FLV AAC, after the
    /// AudioSpecificConfig if it is new.
    fn emit_aac(
        &mut self,
        frame: &[u8],
        a: Adts,
        raw_pts: u64,
        disc: bool,
        timeline: &mut Timeline,
        out: &mut Output,
    ) {
        let (ms, ticks) = timeline.stamp(&mut self.clock, raw_pts, disc, &mut out.stats);
        self.audio.next_ticks = Some(ticks + frame_offset_ticks(1, a.sample_rate));
        if self.audio.sent_asc != Some(a.asc) {
            let frame = FlvFrame {
                kind: FrameKind::Audio,
                timestamp: ms as u32,
                payload: Bytes::copy_from_slice(&[0xAF, 0x00, a.asc[0], a.asc[1]]),
                keyframe: false,
                sequence_header: true,
            };
            if out.push(frame) {
                self.audio.sent_asc = Some(a.asc);
            }
        }
        let raw = &frame[a.header_len..];
        let mut p = BytesMut::with_capacity(2 + raw.len());
        p.put_slice(&[0xAF, 0x01]);
        p.put_slice(raw);
        out.push(FlvFrame {
            kind: FrameKind::Audio,
            timestamp: ms as u32,
            payload: p.freeze(),
            keyframe: false,
            sequence_header: false,
        });
    }
}

/// 90 kHz offset of the `index`-th 1024-sample AAC frame.
fn frame_offset_ticks(index: u64, sample_rate: u32) -> i64 {
    (index * 1024 * 90_000 / u64::from(sample_rate.max(1))) as i64
}

/// The type of the first SEI message in an H.264 SEI NAL unit.
fn sei_payload_type(nal: &[u8]) -> Option<u32> {
    let mut t = 0u32;
    for &b in nal.get(1..)?.iter().take(16) {
        t += u32::from(b);
        if b != 0xFF {
            return Some(t);
        }
    }
    None
}

fn list(v: &[(u32, Vec<u8>)]) -> Vec<&[u8]> {
    v.iter().map(|(_, n)| n.as_slice()).collect()
}

/// Stores a parameter set by id; true if it is new or changed.
fn store_param(list: &mut Vec<(u32, Vec<u8>)>, id: Option<u32>, nal: &[u8], max_ids: u32) -> bool {
    let Some(id) = id.filter(|&id| id < max_ids) else {
        return false;
    };
    match list.binary_search_by_key(&id, |(i, _)| *i) {
        Ok(i) if list[i].1 == nal => false,
        Ok(i) => {
            list[i].1 = nal.to_vec();
            true
        }
        Err(i) => {
            list.insert(i, (id, nal.to_vec()));
            true
        }
    }
}

#[derive(Debug, Default)]
struct VideoState {
    vps: Vec<(u32, Vec<u8>)>,
    sps: Vec<(u32, Vec<u8>)>,
    pps: Vec<(u32, Vec<u8>)>,
    params_dirty: bool,
    record: Option<Vec<u8>>,
    sent_record: Option<Vec<u8>>,
    seen_keyframe: bool,
}

#[derive(Debug, Default)]
struct AudioState {
    sent_asc: Option<[u8; 2]>,
    /// The start of an ADTS frame cut by the end of a PES (at most one frame).
    carry: Vec<u8>,
    /// Unwrapped 90 kHz time of the next frame, for frames without their own PTS.
    next_ticks: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct Adts {
    header_len: usize,
    frame_len: usize,
    raw_blocks: u8,
    sample_rate: u32,
    asc: [u8; 2],
}

/// Parses an ADTS header at the start of `b`.
fn adts_header(b: &[u8]) -> Option<Adts> {
    if b.len() < 7 || b[0] != 0xFF || b[1] & 0xF6 != 0xF0 {
        return None; // sync word, layer 0
    }
    let protection_absent = b[1] & 0x01 != 0;
    let profile = b[2] >> 6; // audio object type - 1
    let sfi = (b[2] >> 2) & 0x0F;
    let channels = ((b[2] & 0x01) << 2) | (b[3] >> 6);
    let frame_len =
        (usize::from(b[3] & 0x03) << 11) | (usize::from(b[4]) << 3) | usize::from(b[5] >> 5);
    let raw_blocks = b[6] & 0x03;
    let header_len = if protection_absent { 7 } else { 9 };
    let sample_rate = *AAC_SAMPLE_RATES.get(usize::from(sfi))?;
    if frame_len <= header_len {
        return None;
    }
    let aot = profile + 1;
    let asc = [(aot << 3) | (sfi >> 1), ((sfi & 1) << 7) | (channels << 3)];
    Some(Adts {
        header_len,
        frame_len,
        raw_blocks,
        sample_rate,
        asc,
    })
}

#[derive(Debug, Clone, Copy)]
struct PesHeader {
    pts: Option<u64>,
    dts: Option<u64>,
    payload_offset: usize,
}

/// Parses a PES header; `None` if malformed or truncated.
fn parse_pes_header(b: &[u8]) -> Option<PesHeader> {
    if b.len() < 6 || b[..3] != [0, 0, 1] {
        return None;
    }
    let stream_id = b[3];
    // Streams without the optional PES header (H.222.0 table 2-21).
    if matches!(
        stream_id,
        0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF
    ) {
        return Some(PesHeader {
            pts: None,
            dts: None,
            payload_offset: 6,
        });
    }
    if b.len() < 9 || b[6] & 0xC0 != 0x80 {
        return None;
    }
    let flags = b[7] >> 6;
    let payload_offset = 9 + usize::from(b[8]);
    let ts = |at: usize| -> Option<u64> {
        let t = b.get(at..at + 5)?;
        Some(
            (u64::from(t[0] >> 1) & 0x07) << 30
                | u64::from(t[1]) << 22
                | u64::from(t[2] >> 1) << 15
                | u64::from(t[3]) << 7
                | u64::from(t[4] >> 1),
        )
    };
    let (pts, dts) = match flags {
        2 => (Some(ts(9)?), None),
        3 => (Some(ts(9)?), Some(ts(14)?)),
        _ => (None, None),
    };
    let needed = match flags {
        2 => 14,
        3 => 19,
        _ => 9,
    };
    if payload_offset < needed {
        return None;
    }
    Some(PesHeader {
        pts,
        dts,
        payload_offset,
    })
}

#[derive(Debug, Clone, Copy)]
struct Stamp {
    dts_ms: i64,
    cts_ms: i64,
}

/// The nearest unwrapped value of a 33-bit timestamp to `reference`.
fn unwrap_pts(raw: u64, reference: i64) -> i64 {
    let raw = (raw as i64) & (PTS_WRAP - 1);
    let k = (reference - raw + PTS_WRAP / 2).div_euclid(PTS_WRAP);
    raw + k * PTS_WRAP
}

/// Per-stream clock state.
#[derive(Debug, Default)]
struct StreamClock {
    last_ticks: Option<i64>,
    last_ms: Option<i64>,
    last_step_ms: i64,
    epoch: u64,
}

/// The mapping from unwrapped 90 kHz ticks to output milliseconds, shared by all streams.
#[derive(Debug, Default)]
struct Timeline {
    /// `(ticks, ms)`: `ticks` maps to `ms`.
    base: Option<(i64, i64)>,
    /// Last unwrapped time seen on any stream, to unwrap a stream's first timestamp.
    last_ticks: Option<i64>,
    /// Largest output so far on any stream, where a re-based timeline resumes.
    max_ms: i64,
    /// Bumped at every re-base.
    epoch: u64,
}

impl Timeline {
    fn anchor(&mut self, raw: u64) {
        let t = raw as i64;
        self.base = Some((t, 0));
        self.last_ticks = Some(t);
    }

    fn to_ms(&self, ticks: i64) -> i64 {
        let (bt, bms) = self.base.unwrap_or((ticks, 0));
        bms + (ticks - bt).div_euclid(90)
    }

    /// Maps a raw 33-bit DTS to output ms for one stream; returns `(ms, unwrapped ticks)`.
    fn stamp(
        &mut self,
        clock: &mut StreamClock,
        raw: u64,
        disc: bool,
        stats: &mut DemuxStats,
    ) -> (i64, i64) {
        let t = match clock.last_ticks.or(self.last_ticks) {
            Some(r) => unwrap_pts(raw, r),
            None => raw as i64,
        };
        if self.base.is_none() {
            self.anchor(raw);
        }
        let mut ms = self.to_ms(t);
        if let (Some(last_t), Some(last_ms)) = (clock.last_ticks, clock.last_ms) {
            let delta = t - last_t;
            // With the indicator set, any backward step or one over a second is a break.
            let jump = if disc {
                !(0..=90_000).contains(&delta)
            } else {
                !(-90_000..=900_000).contains(&delta)
            };
            if jump {
                // Another stream may already have re-based the shared timeline for this
                // break; then this stream's time maps sensibly and is kept as is.
                let rebased =
                    clock.epoch != self.epoch && (last_ms - 1000..=last_ms + 10_000).contains(&ms);
                if !rebased {
                    let resume = self.max_ms.max(last_ms + clock.last_step_ms.clamp(0, 1000));
                    self.base = Some((t, resume));
                    self.epoch += 1;
                    stats.discontinuities += 1;
                    ms = resume;
                }
            }
            ms = ms.max(last_ms);
            clock.last_step_ms = ms - last_ms;
        }
        let ms = ms.max(0);
        clock.last_ticks = Some(t);
        clock.last_ms = Some(ms);
        clock.epoch = self.epoch;
        self.last_ticks = Some(t);
        self.max_ms = self.max_ms.max(ms);
        (ms, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_mpeg2_check_value() {
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
    }

    #[test]
    fn unwrap_picks_the_nearest_lap() {
        let near_end = PTS_WRAP - 100;
        assert_eq!(unwrap_pts(50, near_end), PTS_WRAP + 50);
        assert_eq!(
            unwrap_pts(PTS_WRAP as u64 - 10, PTS_WRAP + 50),
            PTS_WRAP - 10
        );
        assert_eq!(unwrap_pts(1000, 0), 1000);
        assert_eq!(unwrap_pts(1000, 5 * PTS_WRAP), 5 * PTS_WRAP + 1000);
    }

    #[test]
    fn adts_header_and_asc() {
        // AAC-LC, 44.1 kHz (index 4), stereo, 7-byte header, 100-byte frame.
        let len = 100usize;
        let h = [
            0xFF,
            0xF1,
            (1 << 6) | (4 << 2),
            (2 << 6) | ((len >> 11) as u8 & 3),
            (len >> 3) as u8,
            ((len as u8 & 7) << 5) | 0x1F,
            0xFC,
        ];
        let a = adts_header(&h).unwrap();
        assert_eq!(a.asc, [0x12, 0x10]);
        assert_eq!((a.header_len, a.frame_len, a.sample_rate), (7, 100, 44100));
        let mut crc = h;
        crc[1] = 0xF0; // protection_absent = 0: 2-byte CRC follows the header
        assert_eq!(adts_header(&crc).unwrap().header_len, 9);
        let mut bad_rate = h;
        bad_rate[2] = (1 << 6) | (13 << 2);
        assert!(adts_header(&bad_rate).is_none());
        assert!(adts_header(&h[..6]).is_none());
    }

    #[test]
    fn pes_header_timestamps_and_truncation() {
        // PTS 188000, DTS 180000, one payload byte.
        let pes = [
            0, 0, 1, 0xE0, 0, 0, 0x80, 0xC0, 10, 0x31, 0x00, 0x0B, 0xBC, 0xC1, 0x11, 0x00, 0x0B,
            0x7E, 0x41, 0xAA,
        ];
        let h = parse_pes_header(&pes).unwrap();
        assert_eq!((h.pts, h.dts), (Some(188_000), Some(180_000)));
        assert_eq!(h.payload_offset, 19);
        for n in 0..pes.len() - 1 {
            let _ = parse_pes_header(&pes[..n]);
        }
        assert!(parse_pes_header(&pes[..15]).is_none());
    }

    #[test]
    fn invalid_limits_are_misuse() {
        let bad = DemuxLimits {
            max_queued_frames: 0,
            ..DemuxLimits::default()
        };
        assert!(matches!(
            Demuxer::new(bad),
            Err(DemuxError::InvalidLimits(_))
        ));
        assert!(Demuxer::new(DemuxLimits::default()).is_ok());
    }
}
