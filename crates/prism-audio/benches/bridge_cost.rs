//! CPU cost and added latency of the audio bridge, each direction, on 60 s of a stereo
//! music-like signal (chords with vibrato plus a little noise, different on L and R).
//!
//!     cargo bench -p prism-audio --bench bridge_cost
//!
//! CPU: thread CPU time (from /proc/thread-self/stat, 10 ms ticks) and wall time per
//! second of audio, i.e. the share of one core one bridged stream takes.
//!
//! Added latency, per output packet: when it becomes available (the end of the input
//! packet whose push released it) minus when its last sample is due (its timestamp plus
//! its duration), plus the decoder's pre-skip for Opus. Pass-through would be 0. It
//! includes re-framing, resampler, encoder delay (FDK's ~43 ms, compensated in the AAC
//! timestamps so it shows up here) and FDK's decoder output delay.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use prism_audio::{AacConfig, AudioFrame, OpusConfig, Transcoder};

const SECS: usize = 60;

fn signal(rate: u32) -> Vec<f32> {
    let n = rate as usize * SECS;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(n * 2);
    let chords = [
        [261.6, 329.6, 392.0],
        [220.0, 277.2, 329.6],
        [196.0, 246.9, 293.7],
    ];
    for i in 0..n {
        let t = i as f64 / f64::from(rate);
        let chord = chords[(t / 2.0) as usize % chords.len()];
        let vib = 1.0 + 0.003 * (2.0 * std::f64::consts::PI * 5.0 * t).sin();
        for (c, mul) in [(0, 1.0), (1, 1.5)] {
            let mut s = 0.0;
            for &f in &chord {
                s += (2.0 * std::f64::consts::PI * f * mul * vib * t).sin() * 0.15;
            }
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s += ((seed >> 40) as f64 / (1u64 << 24) as f64 - 0.5) * 0.02;
            let _ = c;
            out.push(s as f32);
        }
    }
    out
}

/// AAC-LC 128 kbit/s at `rate`, FLV-style, stamped by frame count: (ts, payload, duration).
fn aac_input(rate: u32) -> Vec<(u32, Bytes, f64)> {
    use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};
    let enc = Encoder::new(EncoderParams {
        bit_rate: BitRate::Cbr(128_000),
        sample_rate: rate,
        transport: Transport::Raw,
        channels: ChannelMode::Stereo,
        audio_object_type: AudioObjectType::Mpeg4LowComplexity,
    })
    .unwrap();
    let info = enc.info().unwrap();
    let mut out = vec![];
    let mut h = BytesMut::new();
    h.put_slice(&[0xAF, 0]);
    h.put_slice(&info.confBuf[..info.confSize as usize]);
    out.push((0, h.freeze(), 0.0));
    let pcm: Vec<i16> = signal(rate).iter().map(|s| (s * 32767.0) as i16).collect();
    let mut buf = vec![0u8; 8192];
    let frame_ms = 1024.0 * 1000.0 / f64::from(rate);
    for (k, chunk) in pcm.chunks_exact(2048).enumerate() {
        let r = enc.encode(chunk, &mut buf).unwrap();
        if r.output_size > 0 {
            let mut p = BytesMut::new();
            p.put_slice(&[0xAF, 1]);
            p.put_slice(&buf[..r.output_size]);
            out.push(((k as f64 * frame_ms) as u32, p.freeze(), frame_ms));
        }
    }
    out
}

/// Opus 128 kbit/s, 20 ms, FLV-style (Enhanced RTMP), as a WHIP publisher's would be.
fn opus_input() -> Vec<(u32, Bytes, f64)> {
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio).unwrap();
    enc.set_bitrate(opus::Bitrate::Bits(128_000)).unwrap();
    let pre_skip = enc.get_lookahead().unwrap() as u16;
    let mut head = BytesMut::new();
    head.put_slice(b"\x90OpusOpusHead\x01\x02");
    head.put_u16_le(pre_skip);
    head.put_u32_le(48_000);
    head.put_slice(&[0, 0, 0]);
    let mut out = vec![(0, head.freeze(), 0.0)];
    let mut buf = vec![0u8; 4000];
    for (k, chunk) in signal(48_000).chunks_exact(1920).enumerate() {
        let n = enc.encode_float(chunk, &mut buf).unwrap();
        let mut p = BytesMut::new();
        p.put_slice(b"\x91Opus");
        p.put_slice(&buf[..n]);
        out.push(((k * 20) as u32, p.freeze(), 20.0));
    }
    out
}

fn thread_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the ")" of the command name: utime is the 12th, stime the 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    (f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)) as f64 / 100.0
}

fn measure(
    name: &str,
    mut t: Transcoder,
    input: &[(u32, Bytes, f64)],
    out_ms: f64,
    pre_skip_ms: f64,
) {
    let mut late = Vec::new();
    let mut frames = 0;
    let cpu0 = thread_cpu_s();
    let wall0 = Instant::now();
    for (ts, p, dur) in input {
        let released = f64::from(*ts) + dur;
        for f in t.push(p, *ts) {
            let f: AudioFrame = f;
            if !f.sequence_header {
                late.push(released - (f64::from(f.timestamp_ms) + out_ms) + pre_skip_ms);
                frames += 1;
            }
        }
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = thread_cpu_s() - cpu0;
    // Skip the first second: the start-up (decoder warm-up dropped) is not steady state.
    let steady = &late[late.len().min(50)..];
    let mean = steady.iter().sum::<f64>() / steady.len() as f64;
    let max = steady.iter().cloned().fold(f64::MIN, f64::max);
    let min = steady.iter().cloned().fold(f64::MAX, f64::min);
    println!(
        "{name}: {frames} frames; CPU {:.2} ms per audio second ({:.2}% of a core; wall {:.2} ms/s); \
         added latency mean {mean:.1} ms, min {min:.1}, max {max:.1}",
        cpu * 1000.0 / SECS as f64,
        cpu * 100.0 / SECS as f64,
        wall * 1000.0 / SECS as f64,
    );
    println!("  {:?}", t.stats());
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would too: nothing else to parse.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let aac44 = aac_input(44_100);
    let aac48 = aac_input(48_000);
    let opus = opus_input();
    let opus_pre_skip = 312.0 / 48.0;
    measure(
        "AAC 44.1 kHz -> Opus (complexity 10)",
        Transcoder::aac_to_opus(OpusConfig::default()),
        &aac44,
        20.0,
        opus_pre_skip,
    );
    measure(
        "AAC 48 kHz -> Opus (complexity 10)",
        Transcoder::aac_to_opus(OpusConfig::default()),
        &aac48,
        20.0,
        opus_pre_skip,
    );
    measure(
        "AAC 44.1 kHz -> Opus (complexity 5)",
        Transcoder::aac_to_opus(OpusConfig {
            complexity: 5,
            ..OpusConfig::default()
        }),
        &aac44,
        20.0,
        opus_pre_skip,
    );
    measure(
        "Opus -> AAC-LC 48 kHz",
        Transcoder::opus_to_aac(AacConfig::default()),
        &opus,
        1024.0 / 48.0,
        0.0,
    );
}
