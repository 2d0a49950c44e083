//! One subscriber's bounded queue and its drop policy.
//!
//! A live relay must never block the publisher on a slow subscriber, so a full queue drops
//! instead: never metadata or sequence headers; queued video before audio; and once any
//! video frame is dropped, no video until the next keyframe, so the receiver never decodes a
//! broken reference chain. A subscriber that stays over budget too long is disconnected.

use crate::{Frame, FrameKind};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Budget of one subscriber's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub max_bytes: usize,
    pub max_ms: u32,
    /// How long the queue may stay over budget (without catching up) before the subscriber
    /// is disconnected.
    pub overflow_disconnect: Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_bytes: 8 * 1024 * 1024,
            max_ms: 3_000,
            overflow_disconnect: Duration::from_secs(10),
        }
    }
}

/// Why a frame was dropped for one subscriber (the `reason` metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Video removed because the queue went over budget.
    QueueFull,
    /// Video skipped until the next keyframe after an earlier drop.
    WaitingKeyframe,
    /// Audio removed because the queue stayed over budget after all video was gone.
    AudioOverflow,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [
        DropReason::QueueFull,
        DropReason::WaitingKeyframe,
        DropReason::AudioOverflow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::WaitingKeyframe => "waiting_keyframe",
            DropReason::AudioOverflow => "audio_overflow",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Queued,
    Dropped,
    /// Over budget for longer than allowed: disconnect this subscriber.
    Disconnect,
}

#[derive(Debug)]
pub struct SubQueue {
    frames: VecDeque<Arc<Frame>>,
    bytes: usize,
    limits: QueueLimits,
    need_keyframe: bool,
    over_since: Option<Instant>,
    dropped: [u64; 3],
    /// How long queued audio may wait, without waking the subscriber, for the next video
    /// frame (zero: every frame wakes it). See [`SubQueue::ride`].
    audio_ride: Duration,
    /// When the oldest audio frame queued without a wake-up arrived.
    riding_since: Option<Instant>,
}

impl SubQueue {
    pub fn new(limits: QueueLimits) -> Self {
        SubQueue {
            frames: VecDeque::new(),
            bytes: 0,
            limits,
            // A subscriber starts on a keyframe.
            need_keyframe: true,
            over_since: None,
            dropped: [0; 3],
            audio_ride: Duration::ZERO,
            riding_since: None,
        }
    }

    pub fn push(&mut self, frame: impl Into<Arc<Frame>>, now: Instant) -> PushOutcome {
        let frame = frame.into();
        if !frame.is_config() && frame.kind == FrameKind::Video {
            if self.need_keyframe && !frame.keyframe {
                self.count(DropReason::WaitingKeyframe, 1);
                return PushOutcome::Dropped;
            }
            if frame.keyframe {
                self.need_keyframe = false;
            }
        }
        self.bytes += frame.payload.len();
        self.frames.push_back(frame);
        if !self.over_budget() {
            return PushOutcome::Queued;
        }
        self.shed();
        let since = *self.over_since.get_or_insert(now);
        if now.saturating_duration_since(since) > self.limits.overflow_disconnect {
            return PushOutcome::Disconnect;
        }
        PushOutcome::Dropped
    }

    /// Sets how long audio may ride (see [`SubQueue::ride`]).
    pub fn set_audio_ride(&mut self, ride: Duration) {
        self.audio_ride = ride;
        if ride.is_zero() {
            self.riding_since = None;
        }
    }

    /// Whether the frame just pushed (with `outcome`) must wake the subscriber: None = wake
    /// it now; Some(deadline) = it rides, the subscriber is woken by the next frame that
    /// does not (video, metadata, a sequence header) or at the deadline. Only audio media
    /// that was queued rides, and only for [`SubQueue::set_audio_ride`] from the first
    /// audio frame held: one write per video frame instead of one per message.
    pub fn ride(&mut self, frame: &Frame, outcome: PushOutcome, now: Instant) -> Option<Instant> {
        let rides = !self.audio_ride.is_zero()
            && frame.kind == FrameKind::Audio
            && !frame.is_config()
            && outcome == PushOutcome::Queued;
        if !rides {
            self.riding_since = None;
            return None;
        }
        let since = *self.riding_since.get_or_insert(now);
        let deadline = since.checked_add(self.audio_ride).unwrap_or(since);
        if now >= deadline {
            self.riding_since = None;
            return None;
        }
        Some(deadline)
    }

    /// When held audio is due (see [`SubQueue::ride`]), if any is held.
    pub fn ride_deadline(&self) -> Option<Instant> {
        let since = self.riding_since?;
        Some(since.checked_add(self.audio_ride).unwrap_or(since))
    }

    /// Ends the ride (the subscriber is being woken).
    pub fn end_ride(&mut self) {
        self.riding_since = None;
    }

    /// Frees space: all queued video first (then wait for a keyframe), then the oldest audio.
    fn shed(&mut self) {
        let before = self.frames.len();
        let mut freed = 0;
        self.frames.retain(|f| {
            let keep = f.is_config() || f.kind != FrameKind::Video;
            if !keep {
                freed += f.payload.len();
            }
            keep
        });
        let video_dropped = (before - self.frames.len()) as u64;
        self.bytes -= freed;
        if video_dropped > 0 {
            self.need_keyframe = true;
            self.count(DropReason::QueueFull, video_dropped);
        }
        while self.over_budget() {
            let Some(pos) = self.frames.iter().position(|f| !f.is_config()) else {
                break;
            };
            if let Some(f) = self.frames.remove(pos) {
                self.bytes -= f.payload.len();
                self.count(DropReason::AudioOverflow, 1);
            }
        }
    }

    /// Sheds, by the same GOP-aware rules as a full queue, until at most `max_bytes` are
    /// queued (the process is short of memory). Nothing happens when already within it.
    pub fn shed_to(&mut self, max_bytes: usize) {
        if self.bytes <= max_bytes {
            return;
        }
        let limits = self.limits;
        self.limits.max_bytes = max_bytes.min(limits.max_bytes);
        self.shed();
        self.limits = limits;
    }

    fn over_budget(&self) -> bool {
        self.bytes > self.limits.max_bytes || self.span_ms() > self.limits.max_ms
    }

    /// Time between the oldest and newest queued media frame.
    fn span_ms(&self) -> u32 {
        let mut media = self.frames.iter().filter(|f| !f.is_config());
        match (
            media.next(),
            self.frames.iter().rev().find(|f| !f.is_config()),
        ) {
            (Some(first), Some(last)) => {
                let d = last.timestamp.wrapping_sub(first.timestamp) as i32;
                d.max(0) as u32
            }
            _ => 0,
        }
    }

    fn count(&mut self, reason: DropReason, n: u64) {
        self.dropped[reason.index()] += n;
    }

    /// Moves queued frames into `out`, up to about `max_bytes` (at least one frame).
    pub fn pop_batch(&mut self, out: &mut Vec<Arc<Frame>>, max_bytes: usize) {
        let mut taken = 0;
        while let Some(f) = self.frames.pop_front() {
            taken += f.payload.len();
            self.bytes -= f.payload.len();
            out.push(f);
            if taken >= max_bytes {
                break;
            }
        }
        if self.frames.is_empty() {
            // Nothing held any more: the subscriber took the riding audio itself.
            self.riding_since = None;
        }
        // Caught up: the overflow clock restarts.
        if self.bytes <= self.limits.max_bytes / 2 && self.span_ms() <= self.limits.max_ms / 2 {
            self.over_since = None;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn video(ts: u32, key: bool, len: usize) -> Frame {
        Frame {
            keyframe: key,
            ..Frame::media(FrameKind::Video, ts, Bytes::from(vec![0u8; len]))
        }
    }
    fn audio(ts: u32) -> Frame {
        Frame::media(FrameKind::Audio, ts, Bytes::from(vec![0u8; 100]))
    }
    fn seq_header() -> Frame {
        Frame {
            sequence_header: true,
            ..Frame::media(FrameKind::Video, 0, Bytes::from_static(b"cfg"))
        }
    }

    fn limits(max_bytes: usize, max_ms: u32) -> QueueLimits {
        QueueLimits {
            max_bytes,
            max_ms,
            overflow_disconnect: Duration::from_secs(5),
        }
    }

    #[test]
    fn starts_on_a_keyframe() {
        let mut q = SubQueue::new(QueueLimits::default());
        let now = Instant::now();
        assert_eq!(q.push(video(0, false, 10), now), PushOutcome::Dropped);
        assert_eq!(q.push(audio(0), now), PushOutcome::Queued);
        assert_eq!(q.push(video(40, true, 10), now), PushOutcome::Queued);
        assert_eq!(q.push(video(80, false, 10), now), PushOutcome::Queued);
        assert_eq!(q.dropped(DropReason::WaitingKeyframe), 1);
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn overflow_drops_video_keeps_config_and_audio_then_waits_for_keyframe() {
        let mut q = SubQueue::new(limits(10_000, 60_000));
        let now = Instant::now();
        q.push(seq_header(), now);
        q.push(video(0, true, 4000), now);
        q.push(audio(10), now);
        q.push(video(40, false, 4000), now);
        assert_eq!(q.push(video(80, false, 4000), now), PushOutcome::Dropped);
        // All queued video went, the config frame and audio stayed.
        assert_eq!(q.len(), 2);
        assert_eq!(q.dropped(DropReason::QueueFull), 3);
        // No video until the next keyframe, even though there is room now.
        assert_eq!(q.push(video(120, false, 10), now), PushOutcome::Dropped);
        assert_eq!(q.push(audio(130), now), PushOutcome::Queued);
        assert_eq!(q.push(video(160, true, 10), now), PushOutcome::Queued);
        assert_eq!(q.push(video(200, false, 10), now), PushOutcome::Queued);
        let mut out = Vec::new();
        q.pop_batch(&mut out, usize::MAX);
        assert!(out[0].sequence_header);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn duration_budget_and_audio_overflow() {
        let mut q = SubQueue::new(limits(usize::MAX, 1000));
        let now = Instant::now();
        for i in 0..100 {
            q.push(audio(i * 23), now);
        }
        // Only ~1 s of audio remains queued.
        assert!(q.len() <= 45, "{}", q.len());
        assert!(q.dropped(DropReason::AudioOverflow) > 50);
    }

    #[test]
    fn stays_over_budget_then_disconnect() {
        let mut q = SubQueue::new(limits(1000, 60_000));
        let t0 = Instant::now();
        q.push(video(0, true, 10), t0);
        let mut last = PushOutcome::Queued;
        for i in 0..20u32 {
            last = q.push(audio(i * 20), t0 + Duration::from_secs(i as u64));
            let _ = q.push(
                Frame::media(FrameKind::Audio, i * 20 + 1, Bytes::from(vec![0; 900])),
                t0 + Duration::from_secs(i as u64),
            );
        }
        assert_eq!(last, PushOutcome::Disconnect);
    }

    #[test]
    fn catching_up_resets_the_overflow_clock() {
        let mut q = SubQueue::new(limits(1000, 60_000));
        let t0 = Instant::now();
        q.push(
            Frame::media(FrameKind::Audio, 0, Bytes::from(vec![0; 1500])),
            t0,
        );
        let mut out = Vec::new();
        q.pop_batch(&mut out, usize::MAX);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(q.push(audio(10), later), PushOutcome::Queued);
        assert_eq!(
            q.push(
                Frame::media(FrameKind::Audio, 20, Bytes::from(vec![0; 1500])),
                later
            ),
            PushOutcome::Dropped
        );
    }
}
