//! The codec libraries behind two small traits: a decoder turns one packet into interleaved
//! f32 PCM, an encoder turns fixed-size PCM frames into ready-to-send FLV-style payloads.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{AacConfig, OpusConfig};

/// PCM decoded from one input packet.
pub(crate) struct Pcm {
    pub rate: u32,
    pub channels: usize,
    /// Samples per channel the decoder's output lags its input by (FDK's `outputDelay`:
    /// its limiter and QMF stages); the PCM starts this long before the packet's timestamp.
    pub delay: usize,
}

/// Largest decoded AAC frame: 2048 samples (HE-AAC) × 8 channels, what FDK may write before
/// its downmix to [`MAX_CHANNELS`] is applied.
const AAC_PCM_MAX: usize = 2048 * 8;
/// Largest Opus packet: 120 ms at 48 kHz, per channel.
const OPUS_MAX_SAMPLES: usize = 5760;
/// Outputs are mono or stereo: more channels are downmixed to stereo by the decoders
/// (WebRTC Opus is at most stereo; RTMP platforms take stereo AAC).
pub(crate) const MAX_CHANNELS: usize = 2;
pub(crate) const OPUS_RATE: u32 = 48_000;

/// A failure the bridge counts and skips past: the next good packet decodes again.
#[derive(Debug)]
pub(crate) struct CodecError;

impl From<opus::Error> for CodecError {
    fn from(_: opus::Error) -> Self {
        CodecError
    }
}

pub(crate) enum Decoder {
    Aac {
        dec: fdk_aac::dec::Decoder,
        pcm: Vec<i16>,
        /// Warm-up samples still to drop: the decoder's output delay, read on the first
        /// frame (they play before the first packet's time).
        skip: Option<usize>,
    },
    Opus {
        dec: opus::Decoder,
        channels: usize,
        pcm: Vec<f32>,
        /// Samples still to drop after an OpusHead (its pre-skip).
        skip: usize,
    },
}

impl Decoder {
    /// An AAC decoder for a raw AudioSpecificConfig.
    pub(crate) fn aac(asc: &[u8]) -> Result<Self, CodecError> {
        let mut dec = fdk_aac::dec::Decoder::new(fdk_aac::dec::Transport::Raw);
        dec.config_raw(asc).map_err(|_| CodecError)?;
        // 5.1 and 7.1 AAC is downmixed to stereo; mono stays mono (mediamtx #2499).
        dec.set_max_output_channels(MAX_CHANNELS)
            .map_err(|_| CodecError)?;
        Ok(Decoder::Aac {
            dec,
            pcm: vec![0; AAC_PCM_MAX],
            skip: None,
        })
    }

    /// An Opus decoder from an OpusHead (RFC 7845 §5.1): channel mapping family 0 (mono or
    /// stereo), or family 1 with at most two channels in one stream.
    pub(crate) fn opus(head: &[u8]) -> Result<Self, CodecError> {
        if head.get(..8) != Some(b"OpusHead") || head.len() < 19 || head[8] >> 4 != 0 {
            return Err(CodecError);
        }
        let channels = usize::from(head[9]);
        let pre_skip = usize::from(u16::from_le_bytes([head[10], head[11]]));
        let family = head[18];
        let simple = match family {
            0 => (1..=2).contains(&channels),
            // Stream count 1: a plain Opus stream with an explicit mapping.
            1 => (1..=2).contains(&channels) && head.get(19) == Some(&1),
            _ => false,
        };
        if !simple {
            return Err(CodecError);
        }
        let ch = if channels == 1 {
            opus::Channels::Mono
        } else {
            opus::Channels::Stereo
        };
        Ok(Decoder::Opus {
            dec: opus::Decoder::new(OPUS_RATE, ch)?,
            channels,
            pcm: vec![0.0; OPUS_MAX_SAMPLES * MAX_CHANNELS],
            skip: pre_skip,
        })
    }

    /// Whether [`Decoder::conceal`] works (Opus).
    pub(crate) fn conceals(&self) -> bool {
        matches!(self, Decoder::Opus { .. })
    }

    /// Fills `samples` per channel of lost audio before `next` into `out` (cleared first):
    /// libopus loss concealment, the last frame from `next`'s in-band FEC if it has any.
    pub(crate) fn conceal(
        &mut self,
        next: &[u8],
        samples: usize,
        out: &mut Vec<f32>,
    ) -> Result<Pcm, CodecError> {
        out.clear();
        let Decoder::Opus {
            dec, channels, pcm, ..
        } = self
        else {
            return Err(CodecError);
        };
        let ch = *channels;
        // libopus conceals in multiples of 2.5 ms (120 samples at 48 kHz).
        let mut left = samples / 120 * 120;
        let fec_len = opus::packet::get_nb_samples(next, OPUS_RATE).unwrap_or(0);
        let fec = fec_len > 0
            && fec_len <= left
            && fec_len <= OPUS_MAX_SAMPLES
            && opus::packet::parse(next).is_ok_and(|p| p.frames.len() == 1);
        let plc = if fec { left - fec_len } else { left };
        let mut done = 0;
        while done < plc {
            let n = (plc - done).min(OPUS_MAX_SAMPLES);
            let got = dec.decode_float(&[], &mut pcm[..n * ch], false)?;
            out.extend_from_slice(&pcm[..(got * ch).min(n * ch)]);
            done += n;
        }
        left -= plc;
        if fec && left > 0 {
            let got = match dec.decode_float(next, &mut pcm[..left * ch], true) {
                Ok(n) => n,
                // No usable FEC data: conceal that frame too.
                Err(_) => dec.decode_float(&[], &mut pcm[..left * ch], false)?,
            };
            out.extend_from_slice(&pcm[..(got * ch).min(left * ch)]);
        }
        Ok(Pcm {
            rate: OPUS_RATE,
            channels: ch,
            delay: 0,
        })
    }

    /// Decodes one packet into `out` (interleaved, cleared first).
    pub(crate) fn decode(&mut self, packet: &[u8], out: &mut Vec<f32>) -> Result<Pcm, CodecError> {
        out.clear();
        match self {
            Decoder::Aac { dec, pcm, skip } => {
                let used = dec.fill(packet).map_err(|_| CodecError)?;
                if used != packet.len() {
                    return Err(CodecError);
                }
                dec.decode_frame(pcm).map_err(|_| CodecError)?;
                let info = dec.stream_info();
                let channels = usize::try_from(info.numChannels).unwrap_or(0);
                let rate = u32::try_from(info.sampleRate).unwrap_or(0);
                let n = dec.decoded_frame_size();
                let delay = usize::try_from(info.outputDelay).unwrap_or(0);
                if !(1..=MAX_CHANNELS).contains(&channels) || rate == 0 || n > pcm.len() {
                    return Err(CodecError);
                }
                let left = skip.get_or_insert(delay);
                let drop = (*left).min(n / channels);
                *left -= drop;
                out.extend(
                    pcm[drop * channels..n]
                        .iter()
                        .map(|&s| f32::from(s) / 32768.0),
                );
                Ok(Pcm {
                    rate,
                    channels,
                    delay: delay.saturating_sub(drop),
                })
            }
            Decoder::Opus {
                dec,
                channels,
                pcm,
                skip,
            } => {
                let n = dec.decode_float(packet, pcm, false)?;
                let total = (n * *channels).min(pcm.len());
                let drop = (*skip * *channels).min(total);
                *skip -= drop / *channels;
                out.extend_from_slice(&pcm[drop..total]);
                Ok(Pcm {
                    rate: OPUS_RATE,
                    channels: *channels,
                    delay: 0,
                })
            }
        }
    }
}

pub(crate) trait Encode: Send {
    /// Samples per channel in one frame.
    fn frame_len(&self) -> usize;
    fn rate(&self) -> u32;
    fn channels(&self) -> usize;
    /// Samples per channel a decoder's output lags the encoder's input by, when the output
    /// format has no field for it (AAC in FLV); 0 when the format carries it (OpusHead's
    /// pre-skip).
    fn timestamp_delay(&self) -> usize;
    /// The samples per channel the encoder holds back (what a flush must push through).
    fn delay(&self) -> usize;
    /// The FLV-style sequence header to send before the first frame.
    fn sequence_header(&self) -> Bytes;
    /// Encodes one frame (`frame_len × channels` interleaved samples); `None` if the encoder
    /// buffered it without output yet.
    fn encode(&mut self, pcm: &[f32]) -> Result<Option<Bytes>, CodecError>;
}

/// Enhanced RTMP audio: [SoundFormat=9:4][AudioPacketType:4] + FourCC.
const EX_AUDIO: u8 = 0x90;
const PACKET_SEQUENCE_START: u8 = 0;
const PACKET_CODED_FRAMES: u8 = 1;

pub(crate) struct OpusEncoder {
    enc: opus::Encoder,
    channels: usize,
    pre_skip: u16,
    input_rate: u32,
    buf: Vec<u8>,
}

/// One 20 ms frame at 48 kHz.
pub(crate) const OPUS_FRAME: usize = 960;
/// Largest packet libopus produces for one frame (its recommended buffer size).
const OPUS_MAX_PACKET: usize = 4000;

impl OpusEncoder {
    pub(crate) fn new(
        cfg: &OpusConfig,
        channels: usize,
        input_rate: u32,
    ) -> Result<Self, CodecError> {
        let (ch, bitrate) = if channels == 1 {
            (opus::Channels::Mono, cfg.bitrate_mono)
        } else {
            (opus::Channels::Stereo, cfg.bitrate_stereo)
        };
        let mut enc = opus::Encoder::new(OPUS_RATE, ch, opus::Application::Audio)?;
        enc.set_bitrate(opus::Bitrate::Bits(
            i32::try_from(bitrate).unwrap_or(128_000),
        ))?;
        enc.set_complexity(i32::from(cfg.complexity.min(10)))?;
        let lookahead = enc.get_lookahead()?;
        Ok(OpusEncoder {
            enc,
            channels: if channels == 1 { 1 } else { 2 },
            pre_skip: u16::try_from(lookahead).unwrap_or(0),
            input_rate,
            buf: vec![0; OPUS_MAX_PACKET],
        })
    }
}

/// An OpusHead (RFC 7845 §5.1) for channel mapping family 0.
pub(crate) fn opus_head(channels: u8, pre_skip: u16, input_rate: u32) -> Bytes {
    let mut h = BytesMut::with_capacity(19);
    h.put_slice(b"OpusHead");
    h.put_u8(1);
    h.put_u8(channels);
    h.put_u16_le(pre_skip);
    h.put_u32_le(input_rate);
    h.put_i16_le(0);
    h.put_u8(0);
    h.freeze()
}

impl Encode for OpusEncoder {
    fn frame_len(&self) -> usize {
        OPUS_FRAME
    }
    fn rate(&self) -> u32 {
        OPUS_RATE
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn timestamp_delay(&self) -> usize {
        0
    }
    fn delay(&self) -> usize {
        usize::from(self.pre_skip)
    }
    fn sequence_header(&self) -> Bytes {
        let head = opus_head(self.channels as u8, self.pre_skip, self.input_rate);
        let mut p = BytesMut::with_capacity(5 + head.len());
        p.put_u8(EX_AUDIO | PACKET_SEQUENCE_START);
        p.put_slice(b"Opus");
        p.put_slice(&head);
        p.freeze()
    }
    fn encode(&mut self, pcm: &[f32]) -> Result<Option<Bytes>, CodecError> {
        let n = self.enc.encode_float(pcm, &mut self.buf)?;
        let mut p = BytesMut::with_capacity(5 + n);
        p.put_u8(EX_AUDIO | PACKET_CODED_FRAMES);
        p.put_slice(b"Opus");
        p.put_slice(&self.buf[..n]);
        Ok(Some(p.freeze()))
    }
}

pub(crate) struct AacEncoder {
    enc: fdk_aac::enc::Encoder,
    rate: u32,
    channels: usize,
    frame: usize,
    delay: usize,
    asc: Bytes,
    pcm: Vec<i16>,
    buf: Vec<u8>,
}

/// Legacy FLV AAC: SoundFormat 10, 44 kHz, 16-bit, stereo flags (fixed values for AAC).
const FLV_AAC: u8 = 0xAF;

impl AacEncoder {
    pub(crate) fn new(cfg: &AacConfig, channels: usize, rate: u32) -> Result<Self, CodecError> {
        use fdk_aac::enc::{
            AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport,
        };
        let (mode, bitrate) = if channels == 1 {
            (ChannelMode::Mono, cfg.bitrate_mono)
        } else {
            (ChannelMode::Stereo, cfg.bitrate_stereo)
        };
        let enc = Encoder::new(EncoderParams {
            bit_rate: BitRate::Cbr(bitrate),
            sample_rate: rate,
            transport: Transport::Raw,
            channels: mode,
            audio_object_type: AudioObjectType::Mpeg4LowComplexity,
        })
        .map_err(|_| CodecError)?;
        let info = enc.info().map_err(|_| CodecError)?;
        let conf = usize::try_from(info.confSize)
            .unwrap_or(0)
            .min(info.confBuf.len());
        let frame = usize::try_from(info.frameLength).unwrap_or(0);
        if conf == 0 || frame == 0 {
            return Err(CodecError);
        }
        Ok(AacEncoder {
            rate,
            channels: if channels == 1 { 1 } else { 2 },
            frame,
            delay: usize::try_from(info.nDelay).unwrap_or(0),
            asc: Bytes::copy_from_slice(&info.confBuf[..conf]),
            pcm: Vec::with_capacity(frame * MAX_CHANNELS),
            buf: vec![0; usize::try_from(info.maxOutBufBytes).unwrap_or(0).max(8192)],
            enc,
        })
    }
}

impl Encode for AacEncoder {
    fn frame_len(&self) -> usize {
        self.frame
    }
    fn rate(&self) -> u32 {
        self.rate
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn timestamp_delay(&self) -> usize {
        self.delay
    }
    fn delay(&self) -> usize {
        self.delay
    }
    fn sequence_header(&self) -> Bytes {
        let mut p = BytesMut::with_capacity(2 + self.asc.len());
        p.put_u8(FLV_AAC);
        p.put_u8(0);
        p.put_slice(&self.asc);
        p.freeze()
    }
    fn encode(&mut self, pcm: &[f32]) -> Result<Option<Bytes>, CodecError> {
        self.pcm.clear();
        self.pcm.extend(
            pcm.iter()
                .map(|&s| (s * 32768.0).clamp(-32768.0, 32767.0) as i16),
        );
        let info = self
            .enc
            .encode(&self.pcm, &mut self.buf)
            .map_err(|_| CodecError)?;
        if info.input_consumed != self.pcm.len() {
            return Err(CodecError);
        }
        let n = info.output_size.min(self.buf.len());
        if n == 0 {
            return Ok(None);
        }
        let mut p = BytesMut::with_capacity(2 + n);
        p.put_u8(FLV_AAC);
        p.put_u8(1);
        p.put_slice(&self.buf[..n]);
        Ok(Some(p.freeze()))
    }
}
