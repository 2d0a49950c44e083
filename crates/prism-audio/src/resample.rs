//! A small polyphase windowed-sinc resampler for rational rate ratios (44.1 kHz → 48 kHz and
//! the other AAC rates), in house rather than a dependency: the crates that do this well pull
//! in FFT and proc-macro stacks for a job of ~100 lines here.
//!
//! Output sample `n` sits at input position `n · in / out`; the table holds one 32-tap
//! filter per distinct fractional position (`out / gcd(in, out)` of them), each a
//! Blackman-windowed sinc low-passed below the lower Nyquist frequency and normalised to unity
//! DC gain. Latency: half the filter, 16 input samples (0.36 ms at 44.1 kHz).

/// Filter length in input samples.
const TAPS: usize = 32;
/// Most phases (table rows) accepted: 4096 × 32 taps = 512 KiB of f32. Every AAC table rate
/// needs at most 640 (11.025 kHz → 48 kHz); odd explicit rates beyond this are refused.
const MAX_PHASES: u64 = 4096;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

pub(crate) struct Resampler {
    channels: usize,
    phases: u64,
    step: u64,
    table: Vec<f32>,
    /// Per channel: unconsumed input, at most `TAPS` + one input block long.
    buf: Vec<Vec<f32>>,
    frac: u64,
}

impl Resampler {
    /// `None` if the ratio would need more than [`MAX_PHASES`] filters, or a rate is 0.
    pub(crate) fn new(in_rate: u32, out_rate: u32, channels: usize) -> Option<Self> {
        let (i, o) = (u64::from(in_rate), u64::from(out_rate));
        if i == 0 || o == 0 || channels == 0 {
            return None;
        }
        let g = gcd(i, o);
        let (step, phases) = (i / g, o / g);
        if phases > MAX_PHASES {
            return None;
        }
        // Cut off a little below the lower Nyquist so the transition band is mostly above it.
        let cutoff = (o as f64 / i as f64).min(1.0) * 0.92;
        let centre = (TAPS / 2 - 1) as f64;
        let half = TAPS as f64 / 2.0;
        let mut table = Vec::with_capacity(phases as usize * TAPS);
        for p in 0..phases {
            let f = p as f64 / phases as f64;
            let row: Vec<f64> = (0..TAPS)
                .map(|k| {
                    let x = k as f64 - centre - f;
                    let sinc = if x.abs() < 1e-9 {
                        1.0
                    } else {
                        let a = std::f64::consts::PI * cutoff * x;
                        a.sin() / a
                    };
                    // Blackman window over [-half, half].
                    let w = (x + half) / (2.0 * half);
                    let win = 0.42 - 0.5 * (2.0 * std::f64::consts::PI * w).cos()
                        + 0.08 * (4.0 * std::f64::consts::PI * w).cos();
                    sinc * win.max(0.0)
                })
                .collect();
            let sum: f64 = row.iter().sum();
            table.extend(row.iter().map(|v| (v / sum) as f32));
        }
        Some(Resampler {
            channels,
            phases,
            step,
            table,
            buf: vec![vec![0.0; TAPS / 2 - 1]; channels],
            frac: 0,
        })
    }

    /// Resamples interleaved `input`, appending interleaved output to `out`.
    pub(crate) fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let ch = self.channels;
        for (c, buf) in self.buf.iter_mut().enumerate() {
            buf.extend(input.iter().skip(c).step_by(ch));
        }
        let len = self.buf[0].len();
        let mut ipos = 0usize;
        let start = out.len();
        while ipos + TAPS <= len {
            let row = &self.table[self.frac as usize * TAPS..][..TAPS];
            for buf in &self.buf {
                let s: f32 = buf[ipos..ipos + TAPS]
                    .iter()
                    .zip(row)
                    .map(|(a, b)| a * b)
                    .sum();
                out.push(s);
            }
            self.frac += self.step;
            ipos += (self.frac / self.phases) as usize;
            self.frac %= self.phases;
        }
        debug_assert_eq!((out.len() - start) % ch, 0);
        let consumed = ipos.min(len);
        for buf in &mut self.buf {
            buf.drain(..consumed);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn sine(rate: u32, hz: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin()) as f32
            })
            .collect()
    }

    /// Goertzel power of `hz` in `x`, normalised to the power of a full-scale sine.
    pub(crate) fn tone_power(x: &[f32], rate: u32, hz: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * hz / rate as f64;
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s = f64::from(v) + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let p = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        p / (x.len() as f64 * x.len() as f64 / 4.0)
    }

    #[test]
    fn rate_and_tone_kept_in_blocks() {
        let input = sine(44_100, 1000.0, 44_100);
        let mut r = Resampler::new(44_100, 48_000, 1).unwrap();
        let mut out = Vec::new();
        // Odd block sizes: state carries across calls.
        for block in input.chunks(1021) {
            r.process(block, &mut out);
        }
        // One second in, one second out (less the filter's half length).
        assert!((out.len() as i64 - 48_000).abs() < 40, "{}", out.len());
        let steady = &out[1000..out.len() - 1000];
        let p = tone_power(steady, 48_000, 1000.0);
        assert!((p - 0.25).abs() < 0.01, "1 kHz power {p}");
        // Nothing leaks to a frequency not in the input.
        assert!(tone_power(steady, 48_000, 3000.0) < 1e-5);
    }

    #[test]
    fn stereo_channels_stay_apart() {
        let l = sine(22_050, 440.0, 22_050);
        let r = sine(22_050, 1500.0, 22_050);
        let inter: Vec<f32> = l.iter().zip(&r).flat_map(|(a, b)| [*a, *b]).collect();
        let mut rs = Resampler::new(22_050, 48_000, 2).unwrap();
        let mut out = Vec::new();
        rs.process(&inter, &mut out);
        let left: Vec<f32> = out.iter().step_by(2).copied().collect();
        let right: Vec<f32> = out.iter().skip(1).step_by(2).copied().collect();
        assert!(tone_power(&left[500..], 48_000, 440.0) > 0.2);
        assert!(tone_power(&left[500..], 48_000, 1500.0) < 1e-4);
        assert!(tone_power(&right[500..], 48_000, 1500.0) > 0.2);
        assert!(tone_power(&right[500..], 48_000, 440.0) < 1e-4);
    }

    #[test]
    fn refuses_absurd_ratios() {
        assert!(Resampler::new(0, 48_000, 2).is_none());
        assert!(Resampler::new(44_101, 48_000, 2).is_none());
        assert!(Resampler::new(96_000, 48_000, 2).is_some());
        assert!(Resampler::new(7_350, 48_000, 2).is_some());
    }
}
