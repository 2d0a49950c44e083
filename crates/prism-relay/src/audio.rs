//! Opus → AAC for outputs that need AAC (RTMP and SRT targets and players, HLS), once per
//! stream.
//!
//! WHIP publishers send Opus; RTMP platforms and MPEG-TS take AAC. Transcoding per output
//! would cost one decoder and one encoder per target, and give each target its own AAC
//! frames. Instead one [`SharedAac`] per stream holds the transcoder (prism-audio's
//! bridge, AAC-LC 128 kbit/s at 48 kHz, channels kept) and remembers what each recent
//! Opus frame became; every output of the stream holds an [`AacView`] on it and swaps
//! the Opus frames it takes from its queue for those AAC frames. Whichever output reaches
//! a frame first transcodes it (outputs take a stream's frames in the same order); the
//! others get the same `Arc<Frame>`s, so their RTMP chunks are serialized once too.
//!
//! Frames that are not Opus (AAC from RTMP/SRT encoders, video, metadata) pass untouched,
//! without a lock. An output whose queue dropped frames, or that is more than
//! [`REMEMBERED`] frames behind the front one, gets no audio for the frames the transcoder
//! has moved past (it never goes back: that would tear the timeline of the others).

use prism_audio::{AudioBridge, AudioCodec, BridgeConfig, Want};
use prism_hub::{Frame, FrameKind, Stream};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

/// Opus frames whose AAC output is kept for the outputs behind the front one: ~10 s of
/// 20 ms packets, more than a hub queue holds.
const REMEMBERED: usize = 512;

/// What one Opus frame became (zero or more AAC frames).
type Converted = Arc<[Arc<Frame>]>;

/// One stream's entry in [`AacTable`]: its name, the stream, its transcoder.
type AacEntry = (String, Weak<Stream>, Weak<SharedAac>);

/// The transcoder of one stream, shared by its outputs.
pub struct SharedAac {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for SharedAac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedAac")
    }
}

struct Inner {
    bridge: AudioBridge,
    /// Recent Opus frames (weak: the pointer stays unique while held) and their output.
    done: VecDeque<(Weak<Frame>, Converted)>,
    /// Hub time of the last Opus frame fed.
    last: Option<u32>,
    /// The latest AAC sequence header and its number (1, 2, ...).
    header: Option<(u64, Arc<Frame>)>,
    /// The process's media budget: AAC frames are charged like published ones.
    budget: Option<Arc<prism_mem::Budget>>,
}

impl SharedAac {
    pub fn new(budget: Option<Arc<prism_mem::Budget>>) -> Arc<SharedAac> {
        Arc::new(SharedAac {
            inner: Mutex::new(Inner {
                bridge: AudioBridge::new(Want::Aac, BridgeConfig::default()),
                done: VecDeque::new(),
                last: None,
                header: None,
                budget,
            }),
        })
    }

    /// An output's view.
    pub fn view(self: &Arc<Self>) -> AacView {
        AacView {
            shared: self.clone(),
            header_sent: 0,
        }
    }
}

impl Inner {
    /// What `f` (an Opus frame) becomes.
    fn convert(&mut self, f: &Arc<Frame>) -> Converted {
        let p = Arc::as_ptr(f);
        if let Some((_, out)) = self.done.iter().rev().find(|(w, _)| w.as_ptr() == p) {
            return out.clone();
        }
        if self
            .last
            .is_some_and(|l| (f.timestamp.wrapping_sub(l) as i32) < 0)
        {
            // Behind the transcoder: the front output took this span already.
            return Arc::from([]);
        }
        self.last = Some(f.timestamp);
        let mut out = Vec::new();
        for a in self.bridge.push(&f.payload, f.timestamp) {
            let mut frame = Frame::media(FrameKind::Audio, a.timestamp_ms, a.payload);
            frame.sequence_header = a.sequence_header;
            if let Some(b) = &self.budget {
                frame.mem = b.charge(prism_mem::Pool::Frames, frame.payload.len());
            }
            out.push(Arc::new(frame));
        }
        for h in out.iter().filter(|o| o.sequence_header) {
            let n = self.header.as_ref().map_or(0, |(n, _)| *n) + 1;
            self.header = Some((n, h.clone()));
        }
        let out: Converted = out.into();
        if self.done.len() == REMEMBERED {
            self.done.pop_front();
        }
        self.done.push_back((Arc::downgrade(f), out.clone()));
        out
    }
}

/// One output's use of its stream's [`SharedAac`].
pub struct AacView {
    shared: Arc<SharedAac>,
    /// The number of the AAC sequence header this output sent last (0: none).
    header_sent: u64,
}

impl std::fmt::Debug for AacView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AacView")
            .field("header_sent", &self.header_sent)
            .finish()
    }
}

fn is_opus(f: &Frame) -> bool {
    f.kind == FrameKind::Audio && prism_audio::audio_codec(&f.payload) == Some(AudioCodec::Opus)
}

impl AacView {
    /// Replaces the Opus frames of `frames` with their AAC, in place; an output joining
    /// late gets the current AAC sequence header before its first AAC frame.
    pub fn convert(&mut self, frames: &mut Vec<Arc<Frame>>) {
        if !frames.iter().any(|f| is_opus(f)) {
            return;
        }
        let input = std::mem::take(frames);
        let mut inner = self.shared.inner.lock().unwrap_or_else(|e| e.into_inner());
        for f in input {
            if !is_opus(&f) {
                frames.push(f);
                continue;
            }
            let out = inner.convert(&f);
            for o in out.iter() {
                if o.sequence_header {
                    if let Some((n, h)) = &inner.header {
                        if Arc::ptr_eq(h, o) {
                            self.header_sent = *n;
                        }
                    }
                } else if let Some((n, h)) = &inner.header {
                    if *n != self.header_sent {
                        frames.push(h.clone());
                        self.header_sent = *n;
                    }
                } else {
                    // No configuration yet: a decoder could not use the frame.
                    continue;
                }
                frames.push(o.clone());
            }
        }
    }
}

/// Streams' shared transcoders, by stream name; entries die with their last output.
#[derive(Debug, Default)]
pub(crate) struct AacTable {
    streams: Mutex<Vec<AacEntry>>,
}

impl AacTable {
    /// The transcoder of `stream`, made by its first output. A new stream under the same
    /// name (not a resumed one: that is the same `Stream`) gets a new one.
    pub(crate) fn get(
        &self,
        stream: &Arc<Stream>,
        budget: Option<&Arc<prism_mem::Budget>>,
    ) -> Arc<SharedAac> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|(_, s, a)| s.strong_count() > 0 && a.strong_count() > 0);
        let found = streams
            .iter()
            .find(|(n, s, _)| n == stream.name() && s.as_ptr() == Arc::as_ptr(stream))
            .and_then(|(_, _, a)| a.upgrade());
        if let Some(a) = found {
            return a;
        }
        let a = SharedAac::new(budget.cloned());
        streams.push((
            stream.name().to_owned(),
            Arc::downgrade(stream),
            Arc::downgrade(&a),
        ));
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn is_aac(p: &Bytes) -> bool {
        prism_audio::audio_codec(p) == Some(AudioCodec::Aac)
    }

    /// OpusHead for an E-RTMP Opus sequence header, and 20 ms of stereo silence as
    /// libopus codes it (a CELT frame), as E-RTMP coded frames.
    fn opus_frames(n: usize) -> Vec<Arc<Frame>> {
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio).unwrap();
        let mut head = vec![0x90u8];
        head.extend_from_slice(b"Opus");
        head.extend_from_slice(b"OpusHead");
        head.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0]);
        let mut out = vec![Arc::new(Frame {
            sequence_header: true,
            ..Frame::media(FrameKind::Audio, 0, Bytes::from(head))
        })];
        let pcm = vec![0i16; 960 * 2];
        for i in 0..n {
            let mut buf = vec![0u8; 1500];
            let len = enc.encode(&pcm, &mut buf).unwrap();
            let mut p = vec![0x91u8];
            p.extend_from_slice(b"Opus");
            p.extend_from_slice(&buf[..len]);
            out.push(Arc::new(Frame::media(
                FrameKind::Audio,
                (i * 20) as u32,
                Bytes::from(p),
            )));
        }
        out
    }

    #[test]
    fn aac_frames_are_charged_to_the_memory_budget_until_dropped() {
        let budget = prism_mem::Budget::new(64 << 20);
        let shared = SharedAac::new(Some(budget.clone()));
        let mut frames = opus_frames(50);
        shared.view().convert(&mut frames);
        let aac: usize = frames.iter().map(|f| f.payload.len()).sum();
        assert!(aac > 0);
        // The transcoder remembers recent output too; what it holds is charged, no more.
        assert!(budget.pool(prism_mem::Pool::Frames) >= aac);
        drop(frames);
        drop(shared);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn outputs_share_one_transcode_and_late_ones_get_the_header() {
        let shared = SharedAac::new(None);
        let input = opus_frames(100);
        let video = Arc::new(Frame::media(
            FrameKind::Video,
            0,
            Bytes::from_static(&[0x17, 1]),
        ));
        let mut a = shared.view();
        let mut first = input.clone();
        first.push(video.clone());
        a.convert(&mut first);
        assert!(first.iter().all(|f| !is_opus(f)));
        assert!(
            Arc::ptr_eq(first.last().unwrap(), &video),
            "video untouched"
        );
        let aac: Vec<_> = first
            .iter()
            .filter(|f| f.kind == FrameKind::Audio)
            .collect();
        assert!(aac[0].sequence_header && is_aac(&aac[0].payload));
        assert!(aac.len() > 80, "{} AAC frames for 2 s", aac.len());
        let transcoded = shared
            .inner
            .lock()
            .unwrap()
            .bridge
            .stats()
            .unwrap()
            .packets_in;

        // A second output taking the same frames gets the same AAC, not a second transcode.
        let mut b = shared.view();
        let mut second = input.clone();
        b.convert(&mut second);
        let aac_b: Vec<_> = second.iter().collect();
        assert_eq!(aac_b.len(), aac.len());
        assert!(aac_b.iter().zip(&aac).all(|(x, y)| Arc::ptr_eq(x, y)));
        let after = shared
            .inner
            .lock()
            .unwrap()
            .bridge
            .stats()
            .unwrap()
            .packets_in;
        assert_eq!(after, transcoded);

        // One joining late (from a GOP cache without the Opus header) still starts with the
        // AAC configuration.
        let mut c = shared.view();
        let mut late = input[50..].to_vec();
        c.convert(&mut late);
        assert!(late[0].sequence_header && Arc::ptr_eq(&late[0], aac[0]));
        assert!(late.len() > 1);
    }

    #[test]
    fn aac_passes_untouched_and_old_frames_are_not_transcoded_again() {
        let shared = SharedAac::new(None);
        let aac = Arc::new(Frame::media(
            FrameKind::Audio,
            0,
            Bytes::from_static(&[0xAF, 0x01, 0x21, 0x10]),
        ));
        let mut v = shared.view();
        let mut frames = vec![aac.clone()];
        v.convert(&mut frames);
        assert!(Arc::ptr_eq(&frames[0], &aac));

        let input = opus_frames(10);
        let mut front = input.clone();
        v.convert(&mut front);
        // A frame it has moved past that it never saw (a copy, as a dropped-and-requeued
        // frame would be): nothing, rather than a step back.
        let copy = Arc::new(Frame::media(FrameKind::Audio, 20, input[2].payload.clone()));
        let mut behind = vec![copy];
        shared.view().convert(&mut behind);
        assert!(behind.is_empty());
    }
}
