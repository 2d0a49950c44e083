//! The worker's command line (pure: a ladder in, ffmpeg arguments out), its progress
//! report parser and its CPU time from /proc, all without I/O so they test alone.

use prism_config::{Rendition, TranscodeConfig};
use std::collections::VecDeque;

/// The first fd of the rendition pipes: rendition `i` is written to `pipe:{FIRST_FD + i}`.
pub const FIRST_FD: i32 = 3;

/// ffmpeg's arguments for `ladder`: the source as FLV on stdin, rendition `i` as FLV on fd
/// `3 + i`, progress as `key=value` lines on stderr every second.
pub fn args(ladder: &TranscodeConfig) -> Vec<String> {
    let mut a: Vec<String> = [
        "-hide_banner",
        // stdin carries the media: ffmpeg must not read keys from it.
        "-nostdin",
        "-loglevel",
        "warning",
        "-nostats",
        "-progress",
        "pipe:2",
        "-stats_period",
        "1",
        // Output timestamps = the source's, so renditions line up with it and each other.
        "-copyts",
        // A live pipe: start encoding after a few frames, not after 5 s of probing.
        "-probesize",
        "500000",
        "-analyzeduration",
        "1000000",
        "-f",
        "flv",
        "-i",
        "pipe:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (i, r) in ladder.renditions.iter().enumerate() {
        rendition(r, FIRST_FD + i as i32, &mut a);
    }
    a
}

fn rendition(r: &Rendition, fd: i32, a: &mut Vec<String>) {
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    match (&r.video, r.video_encoder()) {
        (Some(v), Some(enc)) => {
            let kbps = v.bitrate_kbps;
            let mut filter = format!("scale={}:{}", v.width, v.height);
            if let Some(fps) = v.fps {
                filter = format!("fps={fps},{filter}");
            }
            push(&[
                "-map",
                "0:v:0",
                "-c:v",
                enc,
                "-b:v",
                &format!("{kbps}k"),
                "-maxrate",
                &format!("{kbps}k"),
                "-bufsize",
                &format!("{}k", kbps * 2),
                "-vf",
                &filter,
                // Keyframes exactly where the source has them (and nowhere else: no
                // scene cuts, a GOP cap far above any source's), so every variant's
                // segments start at the same time and players switch cleanly.
                "-force_key_frames",
                "source",
                "-g",
                "1000",
                // Millisecond time base (FLV's): source timestamps pass unrounded.
                "-enc_time_base:v",
                "-1",
                // Frames keep their source timestamps: FLV output would otherwise get
                // constant-rate ones (ffmpeg's default for it), drifting from the source's
                // keyframe times.
                "-fps_mode:v",
                "passthrough",
            ]);
            if enc == "libx264" {
                push(&[
                    "-preset",
                    v.preset.as_deref().unwrap_or("veryfast"),
                    "-sc_threshold",
                    "0",
                    // What every player decodes, whatever the source's chroma.
                    "-pix_fmt",
                    "yuv420p",
                ]);
            }
        }
        _ => push(&["-vn"]),
    }
    match &r.audio {
        Some(au) => push(&[
            // Optional: a source without audio still gets its video renditions.
            "-map",
            if r.video.is_some() { "0:a:0?" } else { "0:a:0" },
            "-c:a",
            "aac",
            "-b:a",
            &format!("{}k", au.bitrate_kbps),
        ]),
        None => push(&["-an"]),
    }
    push(&[
        "-flush_packets",
        "1",
        "-flvflags",
        "no_duration_filesize",
        "-f",
        "flv",
        &format!("pipe:{fd}"),
    ]);
}

/// Lines of stderr kept for the API.
pub const STDERR_LINES: usize = 20;
/// Longest line kept (ffmpeg's lines are short; a runaway one is cut).
pub const MAX_LINE: usize = 300;

/// What the worker's stderr said: the last progress report and the last few other lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Encoded frames per second (of the first video output).
    pub fps: Option<f64>,
    /// Speed: 1.0 = real time.
    pub speed: Option<f64>,
    /// Output time reached, microseconds.
    pub out_time_us: Option<i64>,
    /// Complete reports seen (`progress=` lines).
    pub reports: u64,
    /// The last [`STDERR_LINES`] lines that are not progress keys (warnings, errors).
    pub lines: VecDeque<String>,
    pending_fps: Option<f64>,
    pending_speed: Option<f64>,
    pending_time: Option<i64>,
}

impl Progress {
    /// One line of stderr (without its newline).
    pub fn line(&mut self, line: &str) {
        let line = line.trim_end_matches('\r');
        let kv = line.split_once('=').filter(|(k, _)| {
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
        match kv {
            Some(("fps", v)) => self.pending_fps = v.trim().parse().ok(),
            // "1.02x", or "N/A" before the first frame.
            Some(("speed", v)) => self.pending_speed = v.trim().trim_end_matches('x').parse().ok(),
            Some(("out_time_us", v)) => self.pending_time = v.trim().parse().ok(),
            Some(("progress", _)) => {
                self.fps = self.pending_fps.take().or(self.fps);
                self.speed = self.pending_speed.take();
                self.out_time_us = self.pending_time.take().or(self.out_time_us);
                self.reports += 1;
            }
            // The other progress keys (frame, bitrate, stream_0_0_q, ...).
            Some(_) => {}
            None if line.trim().is_empty() => {}
            None => {
                if self.lines.len() == STDERR_LINES {
                    self.lines.pop_front();
                }
                let mut l = line.to_owned();
                if l.len() > MAX_LINE {
                    let mut cut = MAX_LINE;
                    while !l.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    l.truncate(cut);
                }
                self.lines.push_back(l);
            }
        }
    }
}

/// User + system CPU seconds of a process, from the text of `/proc/<pid>/stat`.
pub fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: fields are
    // counted after its closing parenthesis. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    // /proc reports in USER_HZ clock ticks, 100 per second on every Linux ABI.
    Some((utime + stime) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_of_a_ladder() {
        let c = prism_config::Config::from_toml_str(
            "[[transcode]]\nstream = \"live/*\"\n[[transcode.rendition]]\nname = \"180p\"\nvideo = { width = 320, height = 180, bitrate_kbps = 300, fps = 15 }\n[[transcode.rendition]]\nname = \"audio\"\nvideo = \"none\"\naudio = { bitrate_kbps = 64 }\n",
            "t",
        )
        .unwrap();
        let a = args(&c.transcode[0]).join(" ");
        assert!(a.contains("-copyts"), "{a}");
        assert!(a.contains("-f flv -i pipe:0"), "{a}");
        assert!(
            a.contains("-map 0:v:0 -c:v libx264 -b:v 300k -maxrate 300k -bufsize 600k -vf fps=15,scale=320:180 -force_key_frames source"),
            "{a}"
        );
        assert!(a.contains("-map 0:a:0? -c:a aac -b:a 128k -flush_packets 1 -flvflags no_duration_filesize -f flv pipe:3"), "{a}");
        assert!(a.contains("-vn -map 0:a:0 -c:a aac -b:a 64k -flush_packets 1 -flvflags no_duration_filesize -f flv pipe:4"), "{a}");
    }

    #[test]
    fn progress_reports_and_ring() {
        let mut p = Progress::default();
        for l in [
            "frame=10",
            "fps=29.5",
            "speed=N/A",
            "progress=continue",
            "[flv @ 0x1] Failed to update header",
            "fps=30.00",
            "out_time_us=2000000",
            "speed=1.02x",
            "progress=continue",
        ] {
            p.line(l);
        }
        assert_eq!(p.fps, Some(30.0));
        assert_eq!(p.speed, Some(1.02));
        assert_eq!(p.out_time_us, Some(2_000_000));
        assert_eq!(p.reports, 2);
        assert_eq!(p.lines, ["[flv @ 0x1] Failed to update header"]);
        for i in 0..100 {
            p.line(&format!("warning {i} {}", "é".repeat(400)));
        }
        assert_eq!(p.lines.len(), STDERR_LINES);
        assert!(p.lines.iter().all(|l| l.len() <= MAX_LINE));
        assert!(p.lines.back().unwrap().starts_with("warning 99 "));
    }

    #[test]
    fn proc_stat() {
        let s = "1234 (ff mpeg) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0 100 0 0";
        assert_eq!(cpu_seconds(s), Some(3.0));
        assert_eq!(cpu_seconds("garbage"), None);
        assert_eq!(cpu_seconds("1 (x) S 1"), None);
    }
}
