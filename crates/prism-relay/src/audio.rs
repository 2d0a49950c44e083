//! Audio transcoding for outputs whose codec differs from the source's, once per stream and
//! direction: Opus → AAC for the outputs that need AAC (RTMP and SRT targets and players,
//! HLS), AAC → Opus for WebRTC (WHEP) viewers.
//!
//! WHIP publishers send Opus; RTMP platforms and MPEG-TS take AAC; browsers take Opus.
//! Transcoding per output would cost one decoder and one encoder per target or viewer (at
//! 1000 WHEP viewers, 1000 Opus encoders), and give each its own frames. Instead one
//! [`SharedAudio`] per stream and direction holds the transcoder (prism-audio's bridge:
//! AAC-LC 128 kbit/s or Opus, at 48 kHz, channels kept) and remembers what each recent
//! source frame became; every output of the stream holds an [`AudioView`] on it and swaps
//! the source frames it takes from its queue for those. Whichever output reaches a frame
//! first transcodes it (outputs take a stream's frames in the same order); the others get
//! the same `Arc<Frame>`s, so their RTMP chunks are serialized once too.
//!
//! Frames that need nothing (audio already in the wanted codec, video, metadata) pass
//! untouched, without a lock. An output whose queue dropped frames, or that is more than
//! [`REMEMBERED`] frames behind the front one, gets no audio for the frames the transcoder
//! has moved past (it never goes back: that would tear the timeline of the others).

use prism_audio::{AudioBridge, AudioCodec, BridgeConfig, Want};
use prism_hub::{Frame, FrameKind, Stream};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

/// Source frames whose output is kept for the outputs behind the front one: ~10 s of
/// 20 ms packets, more than a hub queue holds.
const REMEMBERED: usize = 512;

/// What one source frame became (zero or more frames of the wanted codec).
type Converted = Arc<[Arc<Frame>]>;

/// One stream's entry in [`AudioTable`]: its name, the stream, its transcoder.
type AudioEntry = (String, Weak<Stream>, Weak<SharedAudio>);

/// The transcoder of one stream towards one codec, shared by its outputs.
pub struct SharedAudio {
    /// The codec the outputs want; source audio in another one is transcoded.
    want: Want,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for SharedAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedAudio({:?})", self.want)
    }
}

struct Inner {
    bridge: AudioBridge,
    /// Recent source frames (weak: the pointer stays unique while held) and their output.
    done: VecDeque<(Weak<Frame>, Converted)>,
    /// Hub time of the last source frame fed.
    last: Option<u32>,
    /// The latest output sequence header and its number (1, 2, ...).
    header: Option<(u64, Arc<Frame>)>,
    /// The process's media budget: output frames are charged like published ones.
    budget: Option<Arc<prism_mem::Budget>>,
}

impl SharedAudio {
    /// A transcoder towards `want` (AAC or Opus).
    pub fn new(want: Want, budget: Option<Arc<prism_mem::Budget>>) -> Arc<SharedAudio> {
        Arc::new(SharedAudio {
            want,
            inner: Mutex::new(Inner {
                bridge: AudioBridge::new(want, BridgeConfig::default()),
                done: VecDeque::new(),
                last: None,
                header: None,
                budget,
            }),
        })
    }

    /// An output's view.
    pub fn view(self: &Arc<Self>) -> AudioView {
        AudioView {
            shared: self.clone(),
            header_sent: 0,
        }
    }
}

impl Inner {
    /// What `f` (a source frame) becomes.
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

/// One output's use of its stream's [`SharedAudio`].
pub struct AudioView {
    shared: Arc<SharedAudio>,
    /// The number of the output sequence header this output sent last (0: none).
    header_sent: u64,
}

impl std::fmt::Debug for AudioView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioView")
            .field("want", &self.shared.want)
            .field("header_sent", &self.header_sent)
            .finish()
    }
}

/// Whether `f` is audio that an output wanting `want` cannot take as it is (and the bridge
/// can transcode: Opus for AAC outputs, AAC for Opus ones; anything else passes).
fn needs(want: Want, f: &Frame) -> bool {
    if f.kind != FrameKind::Audio {
        return false;
    }
    let source = match want {
        Want::Aac => AudioCodec::Opus,
        Want::Opus => AudioCodec::Aac,
    };
    prism_audio::audio_codec(&f.payload) == Some(source)
}

impl AudioView {
    /// Replaces the source audio frames of `frames` with their transcoded frames, in place;
    /// an output joining late gets the current output sequence header before its first
    /// transcoded frame.
    pub fn convert(&mut self, frames: &mut Vec<Arc<Frame>>) {
        let want = self.shared.want;
        if !frames.iter().any(|f| needs(want, f)) {
            return;
        }
        let input = std::mem::take(frames);
        let mut inner = self.shared.inner.lock().unwrap_or_else(|e| e.into_inner());
        for f in input {
            if !needs(want, &f) {
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

/// Streams' shared transcoders towards one codec, by stream name; entries die with their
/// last output.
#[derive(Debug)]
pub(crate) struct AudioTable {
    want: Want,
    streams: Mutex<Vec<AudioEntry>>,
}

impl AudioTable {
    pub(crate) fn new(want: Want) -> AudioTable {
        AudioTable {
            want,
            streams: Mutex::default(),
        }
    }

    /// The transcoder of `stream`, made by its first output. A new stream under the same
    /// name (not a resumed one: that is the same `Stream`) gets a new one.
    pub(crate) fn get(
        &self,
        stream: &Arc<Stream>,
        budget: Option<&Arc<prism_mem::Budget>>,
    ) -> Arc<SharedAudio> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|(_, s, a)| s.strong_count() > 0 && a.strong_count() > 0);
        let found = streams
            .iter()
            .find(|(n, s, _)| n == stream.name() && s.as_ptr() == Arc::as_ptr(stream))
            .and_then(|(_, _, a)| a.upgrade());
        if let Some(a) = found {
            return a;
        }
        let a = SharedAudio::new(self.want, budget.cloned());
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
        let shared = SharedAudio::new(Want::Aac, Some(budget.clone()));
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
        let shared = SharedAudio::new(Want::Aac, None);
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
        assert!(first.iter().all(|f| !needs(Want::Aac, f)));
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
        let shared = SharedAudio::new(Want::Aac, None);
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

    #[test]
    fn aac_sources_are_transcoded_to_opus_once_for_every_viewer() {
        // AAC as an RTMP encoder sends it: here the output of the other direction.
        let mut aac = opus_frames(150);
        SharedAudio::new(Want::Aac, None).view().convert(&mut aac);
        assert!(aac.iter().all(|f| is_aac(&f.payload)), "AAC input");
        let shared = SharedAudio::new(Want::Opus, None);
        let (mut a, mut b) = (shared.view(), shared.view());
        let mut first = aac.clone();
        a.convert(&mut first);
        let opus: Vec<_> = first.iter().filter(|f| !f.sequence_header).collect();
        assert!(opus.len() > 100, "{} Opus packets", opus.len());
        assert!(first.iter().all(|f| !needs(Want::Opus, f)));
        assert!(first[0].sequence_header, "the Opus header first");
        // A second viewer gets the very same frames: one encoder for both.
        let mut second = aac.clone();
        b.convert(&mut second);
        assert_eq!(first.len(), second.len());
        assert!(first.iter().zip(&second).all(|(x, y)| Arc::ptr_eq(x, y)));
        // Opus sources pass an Opus view untouched.
        let mut passthrough = opus_frames(3);
        let before = passthrough.clone();
        shared.view().convert(&mut passthrough);
        assert!(before
            .iter()
            .zip(&passthrough)
            .all(|(x, y)| Arc::ptr_eq(x, y)));
    }
}
