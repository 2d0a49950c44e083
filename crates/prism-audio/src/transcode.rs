//! The frame-in/frame-out transcoder: parse → decode → (resample) → frame → encode, with the
//! output timeline kept on the input's timestamps.

use std::collections::VecDeque;

use bytes::Bytes;
use prism_cmaf::{parse_audio, Codec, Payload};

use crate::codec::{AacEncoder, CodecError, Decoder, Encode, OpusEncoder, Pcm, OPUS_RATE};
use crate::resample::Resampler;
use crate::{AacConfig, AudioFrame, OpusConfig, Stats};

/// Input timestamps may wander this far (ms) from the sample count before the bridge acts:
/// RTMP encoders stamp in whole milliseconds and some from a jittery wall clock.
const TOLERANCE_MS: i64 = 40;
/// A forward gap up to this long (ms) is filled with silence, keeping one continuous
/// timeline (packet loss, a dropped frame); a longer one, or a jump back beyond it, starts
/// a new timeline at the new timestamp.
const MAX_FILL_MS: i64 = 1000;

enum Target {
    Opus(OpusConfig),
    Aac(AacConfig),
}

/// Transcodes one stream's FLV-style audio payloads between AAC and Opus.
///
/// Feed every audio payload of the stream, in order, with its timestamp; each call yields
/// what is ready: the sequence header first (again after a layout change), then coded
/// frames. Garbage is counted in [`Stats`] and skipped; nothing here panics on input.
pub struct Transcoder {
    input: Codec,
    target: Target,
    dec: Option<Decoder>,
    /// The sequence header record the decoder was built from (repeats are ignored).
    record: Bytes,
    enc: Option<Box<dyn Encode>>,
    /// (input rate, channels, resampler) when the input is not at the encoder's rate.
    resampler: Option<(u32, usize, Resampler)>,
    pcm: Vec<f32>,
    resampled: Vec<f32>,
    /// Interleaved PCM at the encoder's rate waiting for a full frame: less than one frame
    /// between calls.
    fifo: Vec<f32>,
    /// Timestamp (ms) of sample 0 of the current timeline.
    anchor: Option<u32>,
    /// Samples per channel put on the timeline since `anchor`.
    written: u64,
    /// Packets emitted since `anchor`.
    packets: u64,
    out: VecDeque<AudioFrame>,
    /// The last timestamp sent: a new timeline starting a little before it (a flushed tail
    /// overlapping the next stream) is clamped so output never steps back by a little.
    last_ts: Option<u32>,
    stats: Stats,
}

impl Transcoder {
    /// AAC in (legacy `0xAF` or Enhanced RTMP `mp4a`), Opus out.
    pub fn aac_to_opus(cfg: OpusConfig) -> Self {
        Self::new(Codec::Aac, Target::Opus(cfg))
    }

    /// Opus in (Enhanced RTMP `Opus`), AAC-LC out (legacy `0xAF`, what every RTMP platform
    /// takes).
    pub fn opus_to_aac(cfg: AacConfig) -> Self {
        Self::new(Codec::Opus, Target::Aac(cfg))
    }

    fn new(input: Codec, target: Target) -> Self {
        Transcoder {
            input,
            target,
            dec: None,
            record: Bytes::new(),
            enc: None,
            resampler: None,
            pcm: Vec::new(),
            resampled: Vec::new(),
            fifo: Vec::new(),
            anchor: None,
            written: 0,
            packets: 0,
            out: VecDeque::new(),
            last_ts: None,
            stats: Stats::default(),
        }
    }

    /// Counters since creation.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Feeds one FLV-style audio payload; yields the payloads ready to send.
    pub fn push(
        &mut self,
        payload: &Bytes,
        timestamp_ms: u32,
    ) -> impl Iterator<Item = AudioFrame> + '_ {
        self.feed(payload, timestamp_ms);
        self.drain()
    }

    pub(crate) fn drain(&mut self) -> std::collections::vec_deque::Drain<'_, AudioFrame> {
        self.out.drain(..)
    }

    pub(crate) fn feed(&mut self, payload: &Bytes, timestamp_ms: u32) {
        self.stats.packets_in += 1;
        match parse_audio(payload) {
            Err(_) => self.stats.garbage += 1,
            Ok(Payload::Skip) => self.stats.unsupported += 1,
            Ok(Payload::Config(cfg)) if cfg.codec != self.input => self.stats.unsupported += 1,
            Ok(Payload::Config(cfg)) => self.configure(cfg.record),
            Ok(Payload::Frame { data, .. }) => self.frame(&data, timestamp_ms),
        }
    }

    /// Ends the stream: pushes the last partial frame and the encoder's delay out (padded
    /// with silence) and yields them.
    pub fn finish(&mut self) -> impl Iterator<Item = AudioFrame> + '_ {
        self.flush();
        self.out.drain(..)
    }

    fn configure(&mut self, record: Bytes) {
        if self.dec.is_some() && record == self.record {
            return;
        }
        if self.dec.is_some() {
            self.stats.config_changes += 1;
        }
        let dec = match self.input {
            Codec::Opus => Decoder::opus(&record),
            _ => Decoder::aac(&record),
        };
        match dec {
            Ok(d) => {
                self.dec = Some(d);
                self.record = record;
            }
            Err(CodecError) => {
                self.dec = None;
                self.record = Bytes::new();
                self.stats.unsupported += 1;
            }
        }
    }

    fn frame(&mut self, data: &[u8], ts: u32) {
        let Some(dec) = self.dec.as_mut() else {
            // A frame before (or after a bad) sequence header: nothing can decode it.
            self.stats.garbage += 1;
            return;
        };
        if dec.conceals() {
            self.conceal_gap(data, ts);
        }
        let Some(dec) = self.dec.as_mut() else { return };
        let pcm = match dec.decode(data, &mut self.pcm) {
            Ok(p) => p,
            Err(CodecError) => {
                self.stats.garbage += 1;
                return;
            }
        };
        self.stats.frames_in += 1;
        self.consume(ts, pcm);
    }

    /// Opus input (WebRTC) loses packets: a gap before `packet` up to [`MAX_FILL_MS`] is
    /// filled by the decoder's loss concealment, its last frame recovered from `packet`'s
    /// in-band FEC when the sender put it there, instead of silence.
    fn conceal_gap(&mut self, packet: &[u8], ts: u32) {
        let (Some(anchor), Some(enc), Some(dec)) =
            (self.anchor, self.enc.as_ref(), self.dec.as_mut())
        else {
            return;
        };
        let rate = u64::from(enc.rate());
        let expected = anchor.wrapping_add((self.written * 1000 / rate) as u32);
        let gap = i64::from(ts.wrapping_sub(expected) as i32);
        // Below half a 20 ms frame: timestamp rounding, not loss.
        if !(10..=MAX_FILL_MS).contains(&gap) {
            return;
        }
        match dec.conceal(packet, gap as usize * 48, &mut self.pcm) {
            Ok(pcm) => {
                self.stats.concealed += 1;
                self.consume(expected, pcm);
            }
            Err(CodecError) => self.stats.garbage += 1,
        }
    }

    /// Puts decoded PCM (in `self.pcm`) that starts at `ts` on the output timeline.
    fn consume(&mut self, ts: u32, pcm: Pcm) {
        if pcm.channels == 0 || self.pcm.is_empty() {
            return;
        }
        // The decoded samples start the decoder's delay before the packet's time.
        let ts = ts.wrapping_sub((pcm.delay as u64 * 1000 / u64::from(pcm.rate)) as u32);
        if self.enc.as_ref().map(|e| e.channels()) != Some(pcm.channels) {
            // First frame, or the layout changed (mono ↔ stereo): a new encoder and a new
            // sequence header; the layout is kept, never folded (mediamtx #2499).
            self.flush();
            if !self.open_encoder(pcm.channels, pcm.rate, ts) {
                return;
            }
        }
        let Some(enc) = self.enc.as_ref() else { return };
        let (rate, channels) = (enc.rate(), enc.channels());
        self.resampled.clear();
        if pcm.rate == rate {
            self.resampled.extend_from_slice(&self.pcm);
        } else {
            if !matches!(self.resampler, Some((r, c, _)) if r == pcm.rate && c == channels) {
                match Resampler::new(pcm.rate, rate, channels) {
                    Some(r) => self.resampler = Some((pcm.rate, channels, r)),
                    None => {
                        self.resampler = None;
                        self.stats.unsupported += 1;
                        return;
                    }
                }
            }
            if let Some((_, _, r)) = self.resampler.as_mut() {
                r.process(&self.pcm, &mut self.resampled);
            }
        }
        self.place(ts, rate, channels);
        self.encode_ready();
    }

    fn open_encoder(&mut self, channels: usize, input_rate: u32, ts: u32) -> bool {
        let enc: Result<Box<dyn Encode>, CodecError> =
            match &self.target {
                Target::Opus(cfg) => OpusEncoder::new(cfg, channels, input_rate)
                    .map(|e| Box::new(e) as Box<dyn Encode>),
                Target::Aac(cfg) => AacEncoder::new(cfg, channels, OPUS_RATE)
                    .map(|e| Box::new(e) as Box<dyn Encode>),
            };
        match enc {
            Ok(e) => {
                self.emit(ts, e.sequence_header(), true);
                self.enc = Some(e);
                self.anchor = None;
                self.resampler = None;
                true
            }
            Err(CodecError) => {
                self.enc = None;
                self.stats.unsupported += 1;
                false
            }
        }
    }

    /// Puts `self.resampled` on the timeline at `ts`: silence into short gaps, overlap
    /// trimmed, a new timeline after a jump. The sample count, not the input timestamps,
    /// clocks the output, so it cannot drift; the input only re-aligns it when they part.
    fn place(&mut self, ts: u32, rate: u32, channels: usize) {
        let rate64 = u64::from(rate);
        let Some(anchor) = self.anchor else {
            self.anchor = Some(ts);
            self.written = 0;
            self.packets = 0;
            self.append(channels);
            return;
        };
        let expected = anchor.wrapping_add((self.written * 1000 / rate64) as u32);
        let diff = i64::from(ts.wrapping_sub(expected) as i32);
        if diff.abs() <= TOLERANCE_MS {
            self.append(channels);
        } else if diff > 0 && diff <= MAX_FILL_MS {
            let n = (diff as u64 * rate64 / 1000) as usize;
            self.fifo.resize(self.fifo.len() + n * channels, 0.0);
            self.written += n as u64;
            self.stats.gaps_filled += 1;
            self.append(channels);
        } else if diff < 0 && -diff <= MAX_FILL_MS {
            // Time already played: drop what overlaps.
            let n = ((-diff) as u64 * rate64 / 1000) as usize * channels;
            let n = n.min(self.resampled.len());
            self.resampled.drain(..n);
            self.stats.overlaps_trimmed += 1;
            self.append(channels);
        } else {
            self.flush();
            self.anchor = Some(ts);
            self.written = 0;
            self.packets = 0;
            self.stats.resyncs += 1;
            self.append(channels);
        }
    }

    fn append(&mut self, channels: usize) {
        self.fifo.extend_from_slice(&self.resampled);
        self.written += (self.resampled.len() / channels) as u64;
    }

    fn emit(&mut self, ts: u32, payload: Bytes, sequence_header: bool) {
        emit(
            &mut self.out,
            &mut self.stats,
            &mut self.last_ts,
            ts,
            payload,
            sequence_header,
        );
    }

    fn encode_ready(&mut self) {
        let Some(enc) = self.enc.as_mut() else { return };
        let Some(anchor) = self.anchor else { return };
        let frame = enc.frame_len() * enc.channels();
        let rate = u64::from(enc.rate());
        let mut done = 0;
        while self.fifo.len() - done >= frame {
            match enc.encode(&self.fifo[done..done + frame]) {
                Ok(Some(payload)) => {
                    let start = (self.packets * enc.frame_len() as u64)
                        .saturating_sub(enc.timestamp_delay() as u64);
                    let ts = anchor.wrapping_add((start * 1000 / rate) as u32);
                    self.packets += 1;
                    emit(
                        &mut self.out,
                        &mut self.stats,
                        &mut self.last_ts,
                        ts,
                        payload,
                        false,
                    );
                }
                Ok(None) => {}
                Err(CodecError) => self.stats.garbage += 1,
            }
            done += frame;
        }
        self.fifo.drain(..done);
    }

    /// Pads the partial frame and the encoder's delay with silence and encodes them, so
    /// everything put on the current timeline comes out before a new one starts.
    fn flush(&mut self) {
        let Some(enc) = self.enc.as_ref() else {
            self.fifo.clear();
            return;
        };
        if self.anchor.is_none() {
            self.fifo.clear();
            return;
        }
        let (frame, ch) = (enc.frame_len(), enc.channels());
        let pending = self.fifo.len() / ch + enc.delay();
        let padded = pending.div_ceil(frame) * frame;
        self.fifo.resize(padded * ch, 0.0);
        self.encode_ready();
        self.fifo.clear();
        // The next samples start a new timeline (and nothing is flushed twice).
        self.anchor = None;
    }
}

fn emit(
    out: &mut VecDeque<AudioFrame>,
    stats: &mut Stats,
    last_ts: &mut Option<u32>,
    ts: u32,
    payload: Bytes,
    sequence_header: bool,
) {
    let ts = match *last_ts {
        // Behind by less than a fill span: an overlap, not a jump back.
        Some(last)
            if (ts.wrapping_sub(last) as i32) < 0
                && last.wrapping_sub(ts) as i64 <= MAX_FILL_MS =>
        {
            last
        }
        _ => ts,
    };
    *last_ts = Some(ts);
    stats.frames_out += 1;
    out.push_back(AudioFrame {
        timestamp_ms: ts,
        payload,
        sequence_header,
    });
}
