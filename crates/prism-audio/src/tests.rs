//! Round trips without I/O: a test signal is encoded (FDK AAC / libopus) into FLV-style
//! payloads, bridged, and the bridge's output decoded again with the other library.

use bytes::Bytes;

use crate::codec::{opus_head, AacEncoder, Decoder, Encode, OpusEncoder};
use crate::resample::tests::tone_power;
use crate::*;

const AMP: f64 = 0.5;

/// Interleaved test signal: `tones[c]` Hz on channel c, silent before `onset_s`.
fn signal(rate: u32, tones: &[f64], secs: f64, onset_s: f64) -> Vec<f32> {
    let n = (f64::from(rate) * secs) as usize;
    let onset = (f64::from(rate) * onset_s) as usize;
    let mut v = Vec::with_capacity(n * tones.len());
    for i in 0..n {
        for &hz in tones {
            let s = if i < onset {
                0.0
            } else {
                AMP * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin()
            };
            v.push(s as f32);
        }
    }
    v
}

/// Encodes `pcm` into FLV-style payloads stamped as encoders stamp them (the frame count,
/// no delay compensation), starting at `t0`: sequence header first. Returns the encoder's
/// delay in ms too (where, on the input's timeline, its first input sample plays).
fn encode(enc: &mut dyn Encode, pcm: &[f32], t0: u32) -> Vec<(u32, Bytes)> {
    let mut out = vec![(t0, enc.sequence_header())];
    let frame = enc.frame_len() * enc.channels();
    let rate = u64::from(enc.rate());
    let mut k = 0u64;
    for chunk in pcm.chunks_exact(frame) {
        if let Some(p) = enc.encode(chunk).unwrap() {
            let start = k * enc.frame_len() as u64;
            out.push((t0.wrapping_add((start * 1000 / rate) as u32), p));
            k += 1;
        }
    }
    out
}

fn aac_input(rate: u32, tones: &[f64], secs: f64, onset: f64, t0: u32) -> Vec<(u32, Bytes)> {
    let mut enc = AacEncoder::new(&AacConfig::default(), tones.len(), rate).unwrap();
    encode(&mut enc, &signal(rate, tones, secs, onset), t0)
}

/// Where an AAC input's first sample plays on its own timeline: the encoder's delay, which
/// FLV does not signal.
fn aac_delay_ms(rate: u32) -> f64 {
    let enc = AacEncoder::new(&AacConfig::default(), 2, rate).unwrap();
    enc.delay() as f64 * 1000.0 / f64::from(rate)
}

fn opus_input(tones: &[f64], secs: f64, onset: f64, t0: u32) -> Vec<(u32, Bytes)> {
    let mut enc = OpusEncoder::new(&OpusConfig::default(), tones.len(), 48_000).unwrap();
    encode(&mut enc, &signal(48_000, tones, secs, onset), t0)
}

fn run(t: &mut Transcoder, input: &[(u32, Bytes)]) -> Vec<AudioFrame> {
    let mut out: Vec<AudioFrame> = Vec::new();
    for (ts, p) in input {
        out.extend(t.push(p, *ts));
    }
    out.extend(t.finish());
    out
}

/// Decodes a bridge's output: (channels, interleaved PCM, timestamp of each sample of
/// channel 0 in ms as the payload timestamps place it).
struct Decoded {
    channels: usize,
    pcm: Vec<f32>,
    times: Vec<f64>,
}

fn decode(frames: &[AudioFrame]) -> Decoded {
    let head = &frames[0];
    assert!(head.sequence_header);
    let (mut dec, is_opus) = match crate::audio_codec(&head.payload) {
        Some(AudioCodec::Opus) => (Decoder::opus(&head.payload[5..]).unwrap(), true),
        Some(AudioCodec::Aac) => (Decoder::aac(&head.payload[2..]).unwrap(), false),
        other => panic!("{other:?}"),
    };
    // Undo the decoder's pre-skip handling: the timeline below places every sample.
    let pre_skip = if is_opus {
        f64::from(u16::from_le_bytes([head.payload[15], head.payload[16]]))
    } else {
        0.0
    };
    let mut out = Decoded {
        channels: 0,
        pcm: Vec::new(),
        times: Vec::new(),
    };
    let mut buf = Vec::new();
    let mut skipped = 0.0;
    for f in &frames[1..] {
        assert!(!f.sequence_header);
        let body = if is_opus {
            &f.payload[5..]
        } else {
            &f.payload[2..]
        };
        let pcm = dec.decode(body, &mut buf).unwrap();
        out.channels = pcm.channels;
        let dec_delay = pcm.delay as f64;
        let n = buf.len() / pcm.channels;
        // The Opus decoder dropped the pre-skip from the first packet(s).
        let lead = if is_opus && skipped < pre_skip {
            let s = (pre_skip - skipped).min(960.0);
            skipped += s;
            s
        } else {
            0.0
        };
        for i in 0..n {
            let t = f64::from(f.timestamp_ms)
                + (lead + i as f64 - dec_delay) * 1000.0 / f64::from(pcm.rate)
                - if is_opus {
                    pre_skip * 1000.0 / 48_000.0
                } else {
                    0.0
                };
            out.times.push(t);
        }
        out.pcm.extend_from_slice(&buf);
    }
    out
}

fn channel(d: &Decoded, c: usize) -> Vec<f32> {
    d.pcm.iter().skip(c).step_by(d.channels).copied().collect()
}

/// Time (ms) at which channel 0 first exceeds a fifth of the test amplitude.
fn onset_ms(d: &Decoded) -> f64 {
    let ch0 = channel(d, 0);
    let i = ch0
        .iter()
        .position(|v| f64::from(v.abs()) > AMP / 5.0)
        .unwrap();
    d.times[i]
}

fn assert_monotonic_within(frames: &[AudioFrame], input: &[(u32, Bytes)], slack_ms: u32) {
    let first = input[0].0;
    let last = input.last().unwrap().0;
    let mut prev = 0;
    for f in frames {
        assert!(
            f.timestamp_ms >= prev,
            "timestamps go back: {prev} → {}",
            f.timestamp_ms
        );
        assert!(f.timestamp_ms >= first && f.timestamp_ms <= last + slack_ms);
        prev = f.timestamp_ms;
    }
}

fn db(p: f64) -> f64 {
    10.0 * p.log10()
}

#[test]
fn aac_44k_stereo_to_opus_keeps_tones_channels_and_timing() {
    let input = aac_input(44_100, &[440.0, 1000.0], 2.0, 0.5, 1000);
    let mut t = Transcoder::aac_to_opus(OpusConfig::default());
    let out = run(&mut t, &input);
    assert_eq!(t.stats().garbage, 0);
    assert_eq!(&out[0].payload[..5], b"\x90Opus");
    assert_eq!(out[0].payload[5 + 9], 2, "OpusHead channel count");
    assert_eq!(out[0].timestamp_ms, 1000);
    // 2 s of 20 ms frames (plus the flushed tail).
    assert!(
        (96..=102).contains(&(out.len() - 1)),
        "{} frames",
        out.len() - 1
    );
    assert_monotonic_within(&out, &input, 60);
    for w in out[1..].windows(2) {
        assert_eq!(w[1].timestamp_ms - w[0].timestamp_ms, 20);
    }
    let d = decode(&out);
    assert_eq!(d.channels, 2, "stereo stays stereo");
    // The tone starts at 1500 ms in the input (as a decoder of the input plays it: after
    // the input encoder's delay); the output's timestamps put it there too.
    let expect = 1500.0 + aac_delay_ms(44_100);
    let onset = onset_ms(&d);
    assert!(
        (onset - expect).abs() < 5.0,
        "onset at {onset} ms, want {expect}"
    );
    let (l, r) = (channel(&d, 0), channel(&d, 1));
    let steady = |x: &[f32]| x[48_000..x.len() - 9600].to_vec();
    let (l, r) = (steady(&l), steady(&r));
    let full = AMP * AMP;
    // Energy kept within 1 dB, and each channel its own tone (> 40 dB apart).
    assert!((db(tone_power(&l, 48_000, 440.0) / full)).abs() < 1.0);
    assert!((db(tone_power(&r, 48_000, 1000.0) / full)).abs() < 1.0);
    assert!(db(tone_power(&l, 48_000, 440.0) / tone_power(&l, 48_000, 1000.0)) > 40.0);
    assert!(db(tone_power(&r, 48_000, 1000.0) / tone_power(&r, 48_000, 440.0)) > 40.0);
}

#[test]
fn opus_stereo_to_aac_keeps_tones_channels_and_timing() {
    let input = opus_input(&[440.0, 1000.0], 2.0, 0.5, 5000);
    let mut t = Transcoder::opus_to_aac(AacConfig::default());
    let out = run(&mut t, &input);
    assert_eq!(t.stats().garbage, 0);
    assert_eq!(&out[0].payload[..2], &[0xAF, 0x00]);
    assert_eq!(out[0].timestamp_ms, 5000);
    assert_monotonic_within(&out, &input, 70);
    let d = decode(&out);
    assert_eq!(d.channels, 2, "stereo stays stereo");
    // The Opus input signals its encoder delay (pre-skip): its tone plays at 5500 ms.
    let onset = onset_ms(&d);
    assert!((onset - 5500.0).abs() < 5.0, "onset at {onset} ms");
    let (l, r) = (channel(&d, 0), channel(&d, 1));
    let steady = |x: &[f32]| x[48_000..x.len() - 9600].to_vec();
    let (l, r) = (steady(&l), steady(&r));
    let full = AMP * AMP;
    assert!((db(tone_power(&l, 48_000, 440.0) / full)).abs() < 1.0);
    assert!((db(tone_power(&r, 48_000, 1000.0) / full)).abs() < 1.0);
    assert!(db(tone_power(&l, 48_000, 440.0) / tone_power(&l, 48_000, 1000.0)) > 40.0);
    assert!(db(tone_power(&r, 48_000, 1000.0) / tone_power(&r, 48_000, 440.0)) > 40.0);
}

#[test]
fn mono_stays_mono_both_ways() {
    let input = aac_input(48_000, &[700.0], 1.0, 0.0, 0);
    let mut t = Transcoder::aac_to_opus(OpusConfig::default());
    let out = run(&mut t, &input);
    assert_eq!(out[0].payload[5 + 9], 1);
    let d = decode(&out);
    assert_eq!(d.channels, 1);
    assert!(tone_power(&d.pcm[9600..38_400], 48_000, 700.0) > 0.2);

    let input = opus_input(&[700.0], 1.0, 0.0, 0);
    let mut t = Transcoder::opus_to_aac(AacConfig::default());
    let out = run(&mut t, &input);
    let d = decode(&out);
    assert_eq!(d.channels, 1);
    assert!(tone_power(&d.pcm[9600..38_400], 48_000, 700.0) > 0.2);
}

#[test]
fn layout_change_mid_stream_sends_a_new_sequence_header() {
    let mut input = aac_input(44_100, &[440.0, 880.0], 1.0, 0.0, 0);
    let last = input.last().unwrap().0;
    let mono = aac_input(32_000, &[500.0], 1.0, 0.0, last + 23);
    input.extend(mono);
    let mut t = Transcoder::aac_to_opus(OpusConfig::default());
    let out = run(&mut t, &input);
    let heads: Vec<&AudioFrame> = out.iter().filter(|f| f.sequence_header).collect();
    assert_eq!(heads.len(), 2);
    assert_eq!(heads[0].payload[5 + 9], 2);
    assert_eq!(heads[1].payload[5 + 9], 1);
    assert_eq!(t.stats().config_changes, 1);
    // Frames after the second header decode as mono at 500 Hz.
    let i = out.iter().rposition(|f| f.sequence_header).unwrap();
    let d = decode(&out[i..]);
    assert_eq!(d.channels, 1);
    assert!(tone_power(&d.pcm[4800..38_400], 48_000, 500.0) > 0.2);
    assert_monotonic_within(&out, &input, 60);
}

#[test]
fn gaps_are_filled_and_jumps_resync_without_drift() {
    let input = aac_input(44_100, &[440.0, 440.0], 3.0, 0.0, 0);
    let mut shifted = Vec::new();
    for (i, (ts, p)) in input.iter().enumerate() {
        // Frames 40..45 lost (a ~116 ms hole), then at frame 90 the clock jumps 10 s ahead.
        if (40..45).contains(&i) {
            continue;
        }
        let ts = if i >= 90 { ts + 10_000 } else { *ts };
        shifted.push((ts, p.clone()));
    }
    let mut t = Transcoder::aac_to_opus(OpusConfig::default());
    let out = run(&mut t, &shifted);
    assert_eq!(t.stats().gaps_filled, 1);
    assert_eq!(t.stats().resyncs, 1);
    // Continuous 20 ms steps through the filled hole; one jump of ~10 s.
    let steps: Vec<u32> = out[1..]
        .windows(2)
        .map(|w| w[1].timestamp_ms.wrapping_sub(w[0].timestamp_ms))
        .collect();
    assert_eq!(steps.iter().filter(|&&s| s != 20).count(), 1, "{steps:?}");
    let jump = steps.iter().find(|&&s| s != 20).unwrap();
    assert!((10_000..10_100).contains(jump), "jump {jump}");
    // The last frame sits within a frame of the last input frame.
    let last_in = shifted.last().unwrap().0;
    let last_out = out.last().unwrap().timestamp_ms;
    assert!(last_out.abs_diff(last_in) <= 60, "{last_in} vs {last_out}");
}

#[test]
fn long_streams_do_not_drift() {
    // 60 s of 44.1 kHz AAC stamped in whole ms: the output's 20 ms steps stay locked.
    let input = aac_input(44_100, &[300.0, 300.0], 60.0, 0.0, 0);
    let mut t = Transcoder::aac_to_opus(OpusConfig {
        complexity: 0,
        ..OpusConfig::default()
    });
    let out = run(&mut t, &input);
    assert_eq!(
        t.stats().gaps_filled + t.stats().overlaps_trimmed + t.stats().resyncs,
        0
    );
    let last_in = input.last().unwrap().0;
    let last_out = out.last().unwrap().timestamp_ms;
    assert!(last_out.abs_diff(last_in) <= 60, "{last_in} vs {last_out}");
}

#[test]
fn timestamps_wrap_with_rtmp_clock() {
    let t0 = u32::MAX - 500;
    let input = opus_input(&[440.0, 440.0], 1.0, 0.0, t0);
    let mut t = Transcoder::opus_to_aac(AacConfig::default());
    let out = run(&mut t, &input);
    assert_eq!(t.stats().resyncs, 0);
    for w in out[1..].windows(2) {
        let step = w[1].timestamp_ms.wrapping_sub(w[0].timestamp_ms);
        assert!(step <= 22, "step {step}");
    }
}

#[test]
fn garbage_is_counted_and_skipped() {
    let good = aac_input(44_100, &[440.0, 440.0], 0.5, 0.0, 0);
    let mut t = Transcoder::aac_to_opus(OpusConfig::default());
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Frames before any sequence header; empty and truncated payloads; random bodies
    // behind valid AAC and Opus headers; random sequence headers.
    let mut junk: Vec<Bytes> = vec![
        good[3].1.clone(),
        Bytes::new(),
        Bytes::from_static(&[0xAF]),
        Bytes::from_static(&[0xAF, 0x00]),
        Bytes::from_static(&[0x90, b'O', b'p']),
        Bytes::from_static(&[0x2F, 0x01, 1, 2, 3]),
    ];
    for _ in 0..300 {
        let len = (rnd() % 700) as usize;
        let mut v: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        let prefix: &[u8] = match rnd() % 4 {
            0 => &[0xAF, 0x01],
            1 => &[0xAF, 0x00],
            2 => b"\x91Opus",
            _ => &[],
        };
        v.splice(0..0, prefix.iter().copied());
        junk.push(Bytes::from(v));
    }
    for (i, j) in junk.iter().enumerate() {
        let _ = t.push(j, i as u32 * 23).count();
    }
    let s = *t.stats();
    assert!(s.garbage + s.unsupported > 250, "{s:?}");
    // A good stream afterwards still comes out whole.
    let out: Vec<AudioFrame> = good
        .iter()
        .flat_map(|(ts, p)| t.push(p, ts + 20_000).collect::<Vec<_>>())
        .collect();
    let heads = out.iter().filter(|f| f.sequence_header).count();
    assert!(heads >= 1);
    let frames = out.len() - heads;
    assert!(frames >= 20, "{frames} frames after the junk");

    // The same junk into the other direction.
    let mut t = Transcoder::opus_to_aac(AacConfig::default());
    for (i, j) in junk.iter().enumerate() {
        let _ = t.push(j, i as u32 * 20).count();
    }
    let head = opus_head(2, 0, 48_000);
    let mut bad_head = head.to_vec();
    bad_head[9] = 6; // six channels, family 0: invalid
    let mut p = b"\x90Opus".to_vec();
    p.extend_from_slice(&bad_head);
    let _ = t.push(&Bytes::from(p), 0).count();
    assert!(t.stats().unsupported >= 1);
}

#[test]
fn bridge_passes_through_transcodes_or_drops() {
    let aac = aac_input(48_000, &[440.0, 440.0], 0.3, 0.0, 0);
    let mut b = AudioBridge::new(Want::Aac, BridgeConfig::default());
    for (ts, p) in &aac {
        let out: Vec<AudioFrame> = b.push(p, *ts).collect();
        assert_eq!(out.len(), 1);
        // The very same bytes: no copy, no re-encode.
        assert_eq!(out[0].payload.as_ptr(), p.as_ptr());
        assert_eq!(out[0].timestamp_ms, *ts);
    }
    assert_eq!(b.plan(), Some(Plan::PassThrough));
    assert!(b.stats().is_none());

    let mut b = AudioBridge::new(Want::Opus, BridgeConfig::default());
    let out: Vec<AudioFrame> = aac
        .iter()
        .flat_map(|(ts, p)| b.push(p, *ts).collect::<Vec<_>>())
        .collect();
    assert_eq!(b.plan(), Some(Plan::AacToOpus));
    assert_eq!(audio_codec(&out[0].payload), Some(AudioCodec::Opus));
    assert!(out[0].sequence_header);
    assert!(out.len() > 10);

    // MP3 (sound format 2) cannot be bridged.
    let mut b = AudioBridge::new(Want::Opus, BridgeConfig::default());
    assert_eq!(
        b.push(&Bytes::from_static(&[0x2F, 0xFF, 0xFB]), 0).count(),
        0
    );
    assert_eq!(b.plan(), Some(Plan::Drop));
    assert_eq!(b.dropped(), 1);
    // The publisher comes back with Opus: the bridge follows.
    let opus = opus_input(&[440.0, 440.0], 0.2, 0.0, 100);
    let n: usize = opus.iter().map(|(ts, p)| b.push(p, *ts).count()).sum();
    assert_eq!(n, opus.len());
    assert_eq!(b.plan(), Some(Plan::PassThrough));

    assert_eq!(plan(AudioCodec::Opus, Want::Aac), Plan::OpusToAac);
    assert_eq!(audio_codec(b"\x9fmp4a"), Some(AudioCodec::Aac));
    assert_eq!(audio_codec(b"\x90fLaC"), Some(AudioCodec::Other));
    assert_eq!(audio_codec(b""), None);
}

#[test]
fn bridges_move_between_threads() {
    // Drivers hold a bridge per subscriber inside tokio tasks.
    fn send<T: Send>() {}
    send::<Transcoder>();
    send::<AudioBridge>();
}

#[test]
fn he_aac_input_is_decoded_with_sbr() {
    use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};
    // HE-AAC (AAC-LC core at 22.05 kHz + SBR to 44.1 kHz), as low-bitrate publishers send.
    let enc = Encoder::new(EncoderParams {
        bit_rate: BitRate::Cbr(64_000),
        sample_rate: 44_100,
        transport: Transport::Raw,
        channels: ChannelMode::Stereo,
        audio_object_type: AudioObjectType::Mpeg4HeAac,
    })
    .unwrap();
    let info = enc.info().unwrap();
    // AudioSpecificConfig object type 5 (SBR), or 2 with an explicit SBR extension.
    let aot = info.confBuf[0] >> 3;
    assert!(aot == 5 || (aot == 2 && info.confSize > 2), "aot {aot}");
    let frame = info.frameLength as usize;
    assert_eq!(frame, 2048, "HE-AAC frames are 2048 output samples");
    let mut input = vec![(0u32, {
        let mut h = vec![0xAF, 0];
        h.extend_from_slice(&info.confBuf[..info.confSize as usize]);
        Bytes::from(h)
    })];
    let pcm: Vec<i16> = signal(44_100, &[440.0, 3000.0], 2.0, 0.0)
        .iter()
        .map(|s| (s * 32767.0) as i16)
        .collect();
    let mut buf = vec![0u8; 8192];
    let mut k = 0u64;
    for chunk in pcm.chunks_exact(frame * 2) {
        let r = enc.encode(chunk, &mut buf).unwrap();
        if r.output_size > 0 {
            let mut p = vec![0xAF, 1];
            p.extend_from_slice(&buf[..r.output_size]);
            input.push(((k * frame as u64 * 1000 / 44_100) as u32, Bytes::from(p)));
            k += 1;
        }
    }
    let mut t = Transcoder::aac_to_opus(OpusConfig::default());
    let out = run(&mut t, &input);
    assert_eq!(
        t.stats().garbage + t.stats().unsupported,
        0,
        "{:?}",
        t.stats()
    );
    let d = decode(&out);
    assert_eq!(d.channels, 2);
    // 2 s in, about 2 s out, each channel its own tone.
    let secs = d.pcm.len() as f64 / 2.0 / 48_000.0;
    assert!((secs - 2.0).abs() < 0.15, "{secs} s");
    let (l, r) = (channel(&d, 0), channel(&d, 1));
    let (l, r) = (&l[24_000..72_000], &r[24_000..72_000]);
    assert!(tone_power(l, 48_000, 440.0) > 0.1);
    assert!(tone_power(r, 48_000, 3000.0) > 0.1);
    assert!(tone_power(l, 48_000, 3000.0) < 0.01);
}

#[test]
fn lost_opus_packets_are_concealed_not_silenced() {
    let input = opus_input(&[440.0, 440.0], 3.0, 0.0, 0);
    // Single losses every 10th packet and a burst of three (WebRTC loss).
    let lossy: Vec<(u32, Bytes)> = input
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 2 || (i % 10 != 5 && !(100..103).contains(i)))
        .map(|(_, f)| f.clone())
        .collect();
    let mut t = Transcoder::opus_to_aac(AacConfig::default());
    let out = run(&mut t, &lossy);
    let s = *t.stats();
    assert!(s.concealed >= 14, "{s:?}");
    assert_eq!(s.gaps_filled + s.resyncs, 0, "{s:?}");
    let d = decode(&out);
    let l = channel(&d, 0);
    // Duration kept: 3 s in, 3 s out (within a frame or two).
    assert!(
        (l.len() as f64 / 48_000.0 - 3.0).abs() < 0.05,
        "{} samples",
        l.len()
    );
    // No hole: every 10 ms window of the steady part carries the tone (silence fill would
    // leave 20-60 ms of nothing).
    let quietest = l[4800..l.len() - 4800]
        .chunks(480)
        .map(|w| w.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / w.len() as f64)
        .fold(f64::MAX, f64::min);
    assert!(
        quietest > AMP * AMP / 2.0 * 0.1,
        "quietest window power {quietest}"
    );
}

#[test]
fn junk_packets_behind_valid_headers_are_survived() {
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let aac = aac_input(44_100, &[440.0, 440.0], 0.3, 0.0, 0);
    let opus = opus_input(&[440.0, 440.0], 0.3, 0.0, 0);
    for (mut t, good, prefix) in [
        (
            Transcoder::aac_to_opus(OpusConfig::default()),
            aac,
            &[0xAF, 0x01][..],
        ),
        (
            Transcoder::opus_to_aac(AacConfig::default()),
            opus,
            &b"\x91Opus"[..],
        ),
    ] {
        let _ = t.push(&good[0].1, 0).count();
        let mut ts = 0u32;
        for i in 0..400 {
            let len = (rnd() % 1500) as usize;
            let mut p = prefix.to_vec();
            p.extend((0..len).map(|_| rnd() as u8));
            // Timestamps that step, stall, jump back and leap (loss, concealment, resync).
            ts = ts.wrapping_add(match rnd() % 8 {
                0 => 0,
                1 => (rnd() % 2000) as u32,
                2 => (rnd() % 100) as u32,
                3 => u32::MAX - (rnd() % 1500) as u32,
                _ => 20,
            });
            // Good packets in between keep the decoder's state moving.
            let p = if i % 3 == 0 {
                good[1 + i % (good.len() - 1)].1.clone()
            } else {
                Bytes::from(p)
            };
            let out: Vec<AudioFrame> = t.push(&p, ts).collect();
            assert!(out.len() <= 60, "one push yields at most ~1 s of frames");
        }
        let _ = t.finish().count();
        let s = *t.stats();
        assert!(s.frames_out > 1, "{s:?}");
    }
}
