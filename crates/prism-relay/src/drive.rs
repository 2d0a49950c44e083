//! The one tokio driver of every connection: a hand-driven poll loop over a byte stream, an
//! [`Output`] (the protocol session: frames → bytes, peer bytes → events) and, while it
//! plays or pushes, a hub subscription paced by the egress engine ([`prism_egress`]).
//!
//! Players, push targets and the SRT sink run this loop; a new output protocol implements
//! [`Output`] and adds no loop of its own. Hand-driven rather than `select!`: this is the
//! per-subscriber hot path of the fan-out, and one poll function that owns the stream (no
//! split lock), keeps its futures and writes in the same wake-up that took frames costs a
//! fraction of the select machinery.

use crate::dial::ConnError;
use bytes::BytesMut;
use prism_egress::{Config, Egress, Event, Take};
use prism_hub::{Frame, RecvStatus, Subscription};
use prism_metrics::ErrorReason;
use prism_rtmp::OutQueue;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Most bytes read per call, and so the most one read can add to the input buffer.
const READ_CHUNK: usize = 64 * 1024;
/// Segments handed to one vectored write.
const MAX_IOVECS: usize = 32;
/// Wake-ups with frames after which the socket is read anyway (a subscriber's peer sends
/// almost nothing: acknowledgements, and errors on close; the read registration made on
/// the last Pending stays armed, so skipping the poll on busy wake-ups loses nothing).
const MAX_READS_SKIPPED: u32 = 16;

/// What an output protocol supplies to the driver. Output goes into the driver's queue.
pub trait Output {
    /// The hub subscription this connection plays or pushes now, if any.
    fn subscription(&self) -> Option<&Subscription>;
    /// Encodes frames taken from the subscription (draining `frames`).
    fn send_frames(&mut self, frames: &mut Vec<Arc<Frame>>, out: &mut OutQueue);
    /// Handles what the peer sent; replies go into `out`.
    fn handle_input(
        &mut self,
        input: &mut BytesMut,
        now: Instant,
        out: &mut OutQueue,
    ) -> Result<Flow, ConnError>;
    /// Exports the subscription's drops and queue depth (about 4 times a second).
    fn report(&mut self) {}
    /// The socket took `n` bytes (byte counters).
    fn wrote(&mut self, _n: usize) {}
    /// Ready when the connection must stop for a reason outside it (a kicked publisher, a
    /// shutdown); polled every round.
    fn poll_stop(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
    /// The protocol's own next deadline (handshake, idle).
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    /// Expires the protocol's timers.
    fn handle_timeout(&mut self, _now: Instant) -> Result<(), ConnError> {
        Ok(())
    }
}

/// What [`Output::handle_input`] asks of the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Leave the loop: the output has something to do that the loop cannot (an awaited
    /// access check); the caller runs the loop again after.
    Yield,
}

/// Why [`Driver::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The subscription ended (stream over or subscriber removed): say goodbye.
    Ended,
    /// The output yielded ([`Flow::Yield`]).
    Yield,
    /// [`Output::poll_stop`] fired.
    Stopped,
    /// The peer closed the connection.
    Closed,
}

/// The merge grid's origin, one for the whole process (see [`prism_egress::Egress::new`]).
fn grid_epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// One connection: its byte stream, input buffer, pending output and pacing state.
pub struct Driver<S> {
    io: S,
    input: BytesMut,
    out: OutQueue,
    engine: Egress,
    frames: Vec<Arc<Frame>>,
    timer: Pin<Box<tokio::time::Sleep>>,
    reads_skipped: u32,
    /// Opus → AAC for an output that needs AAC ([`Driver::set_audio`]).
    audio: Option<crate::audio::AudioView>,
    /// One track of multitrack streams ([`Driver::set_tracks`]).
    tracks: prism_config::TargetTracks,
    /// The chosen video track waits for its own keyframe (at the start, after a drop).
    track_wait_key: bool,
    /// The subscription's video drops last seen (a new one sets `track_wait_key`).
    track_drops: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    pub fn new(io: S, config: Config) -> Self {
        let now = Instant::now();
        Driver {
            io,
            input: BytesMut::with_capacity(READ_CHUNK),
            out: OutQueue::new(),
            engine: Egress::new(config, grid_epoch(), now),
            frames: Vec::new(),
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            reads_skipped: 0,
            audio: None,
            tracks: Default::default(),
            track_wait_key: true,
            track_drops: 0,
        }
    }

    /// Sets `write_merge_ms` for what follows (a player's or target's setting).
    pub fn set_merge(&mut self, merge: Duration) {
        let cfg = Config {
            merge,
            ..*self.engine.config()
        };
        let mut engine = Egress::new(cfg, grid_epoch(), Instant::now());
        engine.handle_queued(self.out.len(), Instant::now());
        self.engine = engine;
    }

    /// Hands the output AAC instead of Opus audio (see [`crate::audio`]).
    pub fn set_audio(&mut self, audio: Option<crate::audio::AudioView>) {
        self.audio = audio;
    }

    /// Hands the output one track of Enhanced RTMP multitrack streams (see [`crate::tracks`]).
    pub fn set_tracks(&mut self, tracks: prism_config::TargetTracks) {
        self.tracks = tracks;
    }

    /// Queues protocol output produced outside the loop (handshakes, replies, goodbyes).
    pub fn queue(&mut self, q: &mut OutQueue) {
        let n = q.len();
        self.out.append(q);
        self.engine.handle_queued(n, Instant::now());
    }

    /// Bytes the socket took so far.
    pub fn bytes_written(&self) -> u64 {
        self.engine.bytes_written()
    }

    /// Runs until the subscription ends, the peer closes, the output yields or stops, or
    /// the connection fails.
    pub async fn run<O: Output>(&mut self, output: &mut O) -> Result<Exit, ConnError> {
        std::future::poll_fn(|cx| self.poll(cx, output)).await
    }

    /// Writes everything pending within `bound` (handshakes, goodbyes); false if the bound
    /// hit or the write failed.
    pub async fn flush(&mut self, bound: Duration) -> bool {
        let flush = async {
            while !self.out.is_empty() {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let n = self.out.chunks_vectored(&mut slices);
                let written = self.io.write_vectored(&slices[..n]).await?;
                if written == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                self.out.advance(written);
                self.engine.handle_written(written, Instant::now());
            }
            self.io.flush().await
        };
        matches!(tokio::time::timeout(bound, flush).await, Ok(Ok(())))
    }

    /// The byte stream, once the connection is done with the loop.
    pub fn into_io(self) -> S {
        self.io
    }

    fn poll<O: Output>(
        &mut self,
        cx: &mut Context<'_>,
        output: &mut O,
    ) -> Poll<Result<Exit, ConnError>> {
        loop {
            let now = Instant::now();
            let mut progress = false;
            self.engine.handle_timeout(now);
            output.handle_timeout(now)?;
            while let Some(ev) = self.engine.poll_event() {
                match ev {
                    Event::Check => {
                        output.report();
                        let (slow, finished) = output
                            .subscription()
                            .map_or((false, false), |s| (s.is_too_slow(), s.is_finished()));
                        self.engine.handle_verdict(slow, finished);
                    }
                    Event::Finished => return Poll::Ready(Ok(Exit::Ended)),
                    Event::Failed(f) => return Poll::Ready(Err(ConnError::failed(f))),
                }
            }
            if output.poll_stop(cx).is_ready() {
                return Poll::Ready(Ok(Exit::Stopped));
            }

            // Frames: taken only while the engine allows (not blocked, not holding).
            let mut got_frames = false;
            let batch_max = self.engine.config().batch_bytes;
            let taken = match (output.subscription(), self.engine.poll_take(now)) {
                (Some(sub), Some(take)) => {
                    let polled = match take {
                        Take::Peek => match sub.try_recv(&mut self.frames, batch_max) {
                            Some(status) => Poll::Ready(status),
                            None => {
                                self.engine.handle_took(false, now);
                                sub.poll_recv(cx, &mut self.frames, batch_max)
                            }
                        },
                        Take::Wait => sub.poll_recv(cx, &mut self.frames, batch_max),
                    };
                    // The subscription stays armed; only a full batch (more may be queued
                    // already) or the end (its wake-up may be this one) needs another look.
                    Some((polled, sub.is_finished()))
                }
                _ => None,
            };
            match taken {
                Some((Poll::Ready(RecvStatus::Frames), finished)) => {
                    let batch: usize = self.frames.iter().map(|f| f.payload.len()).sum();
                    let before = self.out.len();
                    // The chosen track first: an Opus track then becomes AAC too. After a
                    // video drop the hub resumes at a keyframe of any track: wait for one of
                    // the chosen track's own (see `tracks::select`).
                    if self.tracks.video.is_some() {
                        if let Some(sub) = output.subscription() {
                            let st = sub.stats();
                            let drops = st.dropped_queue_full + st.dropped_waiting_keyframe;
                            if drops != self.track_drops {
                                self.track_drops = drops;
                                self.track_wait_key = true;
                            }
                        }
                    }
                    crate::tracks::select(&mut self.frames, self.tracks, &mut self.track_wait_key);
                    if let Some(a) = &mut self.audio {
                        a.convert(&mut self.frames);
                    }
                    output.send_frames(&mut self.frames, &mut self.out);
                    self.frames.clear();
                    self.engine.handle_queued(self.out.len() - before, now);
                    self.engine.handle_took(true, now);
                    progress = batch >= batch_max || finished;
                    got_frames = true;
                }
                Some((Poll::Ready(RecvStatus::Ended), _)) => return Poll::Ready(Ok(Exit::Ended)),
                Some((Poll::Ready(RecvStatus::TooSlow), _)) => {
                    let f = prism_egress::Failure::TooSlow;
                    return Poll::Ready(Err(ConnError::failed(f)));
                }
                Some((Poll::Pending, _)) => self.engine.handle_took(false, now),
                None => {}
            }

            // Writes: everything the engine releases, as long as the socket takes it.
            while self.engine.poll_transmit(now) {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let n = self.out.chunks_vectored(&mut slices);
                match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(ConnError::new(
                            ErrorReason::Io,
                            "write returned zero",
                        )))
                    }
                    Poll::Ready(Ok(written)) => {
                        let was_blocked = self.engine.is_blocked();
                        self.out.advance(written);
                        self.engine.handle_written(written, now);
                        output.wrote(written);
                        // Room again for frames that were held back.
                        progress |= was_blocked && !self.engine.is_blocked();
                    }
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(Err(ConnError::new(ErrorReason::Io, e)))
                    }
                    Poll::Pending => break,
                }
            }
            if self.out.is_empty() {
                // TLS streams may keep encrypted bytes back after accepting a write; push
                // them out now rather than with the next frame (a no-op for TCP).
                if let Poll::Ready(Err(e)) = Pin::new(&mut self.io).poll_flush(cx) {
                    return Poll::Ready(Err(ConnError::new(ErrorReason::Io, e)));
                }
            }

            // Reads.
            self.reads_skipped += 1;
            if (!got_frames || self.reads_skipped >= MAX_READS_SKIPPED) && self.engine.wants_input()
            {
                self.reads_skipped = 0;
                if self.input.capacity() - self.input.len() < READ_CHUNK / 4 {
                    self.input.reserve(READ_CHUNK);
                }
                let read = pin!(self.io.read_buf(&mut self.input)).poll(cx);
                match read {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Ok(Exit::Closed)),
                    Poll::Ready(Ok(_)) => {
                        let before = self.out.len();
                        let flow = output.handle_input(&mut self.input, now, &mut self.out)?;
                        self.engine.handle_queued(self.out.len() - before, now);
                        if flow == Flow::Yield {
                            return Poll::Ready(Ok(Exit::Yield));
                        }
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(Err(ConnError::new(ErrorReason::Io, e)))
                    }
                    Poll::Pending => {}
                }
            }

            // Timers.
            let deadline = match (self.engine.poll_timeout(now), output.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(deadline) = deadline {
                let deadline = tokio::time::Instant::from_std(deadline);
                if self.timer.deadline() != deadline {
                    self.timer.as_mut().reset(deadline);
                }
                if self.timer.as_mut().poll(cx).is_ready() {
                    progress = true;
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}
