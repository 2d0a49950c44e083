//! The MPEG-TS demuxer fed arbitrary bytes in arbitrary slicing (the last input byte
//! picks the slicing, see crate::pieces), twice: with default limits, draining
//! frames after every push as the SRT ingest does, and with tight limits and no draining
//! until the end, so the PES cap and the frame-queue cap are reached.
//!
//! Checks: no panic or overflow; the queue never exceeds `max_queued_frames`; every
//! frame has a payload; `stats().frames` counts exactly the frames handed out.

use crate::{pieces, split_seed};
use prism_mpegts::demux::{DemuxLimits, Demuxer};
use prism_mpegts::FlvFrame;

fn check(frame: &FlvFrame) {
    assert!(!frame.payload.is_empty());
}

pub fn run(data: &[u8]) {
    let (stream, seed) = split_seed(data);
    let parts = pieces(stream, seed);

    let mut demux = Demuxer::default();
    let mut frames = 0u64;
    for part in &parts {
        demux.push(part);
        while let Some(f) = demux.poll_frame() {
            check(&f);
            frames += 1;
        }
    }
    demux.flush();
    while let Some(f) = demux.poll_frame() {
        check(&f);
        frames += 1;
    }
    assert_eq!(demux.stats().frames, frames);

    let limits = DemuxLimits {
        max_pes_bytes: 188 * 4,
        max_queued_frames: 3,
    };
    let mut demux = Demuxer::new(limits).unwrap();
    for part in &parts {
        demux.push(part);
    }
    demux.flush();
    let mut queued = 0;
    while let Some(f) = demux.poll_frame() {
        check(&f);
        queued += 1;
    }
    assert!(queued <= limits.max_queued_frames);
    assert_eq!(demux.stats().frames, queued as u64);
}
