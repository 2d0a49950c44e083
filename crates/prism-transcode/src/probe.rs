//! The start-up check: every `[[transcode]]` ffmpeg runs and has the encoders its ladder
//! names, so a missing binary or a hardware encoder the machine lacks is an error at start
//! and in `prism check`, not a worker that dies on every restart.

use prism_config::TranscodeConfig;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Encoders that need no hardware: listed = usable.
const SOFTWARE: [&str; 2] = ["libx264", "aac"];
/// How long `ffmpeg -encoders` may take (it prints a list and exits at once).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on what is read of its output (the list is ~30 KB).
const PROBE_MAX_BYTES: u64 = 1 << 20;

/// Checks every ladder: `Err` is a complete message for the operator, naming the ladder.
/// Runs each distinct ffmpeg once. Blocking (a few tens of ms per ffmpeg).
pub fn check(ladders: &[TranscodeConfig]) -> Result<(), String> {
    let mut probed: Vec<(std::path::PathBuf, String)> = Vec::new();
    let mut tried: Vec<(std::path::PathBuf, &str)> = Vec::new();
    for (i, t) in ladders.iter().enumerate() {
        let ffmpeg = t.ffmpeg_path();
        let listing = match probed.iter().find(|(p, _)| *p == ffmpeg) {
            Some((_, l)) => l.clone(),
            None => {
                let l =
                    list_encoders(&ffmpeg).map_err(|e| format!("transcode[{i}].ffmpeg: {e}"))?;
                probed.push((ffmpeg.clone(), l.clone()));
                l
            }
        };
        let have = encoders(&listing);
        for (j, r) in t.renditions.iter().enumerate() {
            let needed = r
                .video_encoder()
                .into_iter()
                .chain(r.audio.as_ref().map(|_| "aac"));
            for enc in needed {
                let place = format!("transcode[{i}].rendition[{j}] ({})", r.name);
                if !have.iter().any(|h| h == enc) {
                    return Err(format!(
                        "{place}: encoder `{enc}` is not available in {} (see `{} -hide_banner -encoders`)",
                        ffmpeg.display(),
                        ffmpeg.display()
                    ));
                }
                if !SOFTWARE.contains(&enc) && !tried.contains(&(ffmpeg.clone(), enc)) {
                    try_encoder(&ffmpeg, enc).map_err(|e| {
                        format!(
                            "{place}: encoder `{enc}` is listed by {} but cannot encode here: {e}",
                            ffmpeg.display()
                        )
                    })?;
                    tried.push((ffmpeg.clone(), enc));
                }
            }
        }
    }
    Ok(())
}

/// The output of `ffmpeg -hide_banner -encoders`, within [`PROBE_TIMEOUT`].
fn list_encoders(ffmpeg: &Path) -> Result<String, String> {
    let (ok, out, err) = run(ffmpeg, &["-hide_banner", "-nostdin", "-encoders"])?;
    if !ok {
        return Err(format!(
            "`{} -encoders` failed: {}",
            ffmpeg.display(),
            last_line(&err)
        ));
    }
    Ok(out)
}

/// Encoders ffmpeg lists even where they cannot run (Debian's ffmpeg lists NVENC on a
/// machine without an NVIDIA GPU): one frame is encoded to find out.
fn try_encoder(ffmpeg: &Path, encoder: &str) -> Result<(), String> {
    let (ok, _, err) = run(
        ffmpeg,
        &[
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=size=256x144:rate=25:duration=0.2",
            "-frames:v",
            "1",
            "-c:v",
            encoder,
            "-f",
            "null",
            "-",
        ],
    )?;
    if ok {
        return Ok(());
    }
    // The encoder's own complaint ("Cannot load libcuda.so.1") comes first; ffmpeg's
    // generic "Error while opening encoder" after it.
    Err(err
        .lines()
        .find(|l| !l.trim().is_empty())
        .map_or_else(|| "no message".to_owned(), |l| l.trim().to_owned()))
}

/// The last non-empty line of ffmpeg's stderr, the one that says what went wrong.
fn last_line(err: &str) -> String {
    err.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message")
        .trim()
        .to_owned()
}

/// Runs `ffmpeg args`: (success, stdout, stderr), within [`PROBE_TIMEOUT`].
fn run(ffmpeg: &Path, args: &[&str]) -> Result<(bool, String, String), String> {
    let mut child = Command::new(ffmpeg)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot run `{}`: {e} (install ffmpeg, or set `ffmpeg = \"/path/to/ffmpeg\"`)",
                ffmpeg.display()
            )
        })?;
    // Read on threads so that the wait below can time out even if ffmpeg hangs.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = String::new();
            if let Some(r) = r {
                let _ = r.take(PROBE_MAX_BYTES).read_to_string(&mut out);
            }
            out
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{}` did not finish within {PROBE_TIMEOUT:?}",
                    ffmpeg.display()
                ));
            }
        }
    };
    Ok((
        status.success(),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    ))
}

/// Encoder names of an `-encoders` listing: lines ` V....D libx264  description`.
fn encoders(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let flags = w.next()?;
            let name = w.next()?;
            let is_row = flags.len() == 6
                && flags.starts_with(['V', 'A', 'S'])
                && flags[1..]
                    .chars()
                    .all(|c| c == '.' || c.is_ascii_uppercase());
            (is_row && name != "=").then(|| name.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listing() {
        let l = "Encoders:\n V..... = Video\n A..... = Audio\n ------\n V....D libx264              libx264 H.264 (codec h264)\n A....D aac                  AAC (Advanced Audio Coding)\n";
        assert_eq!(encoders(l), ["libx264", "aac"]);
    }

    fn ladder(text: &str) -> Vec<TranscodeConfig> {
        prism_config::Config::from_toml_str(text, "t.toml")
            .unwrap()
            .transcode
    }

    // Real ffmpeg: the one on PATH has libx264 and aac (Debian's), not NVENC.
    #[test]
    fn real_ffmpeg() {
        let base = "[[transcode]]\nstream = \"live/*\"\n";
        let ok = format!("{base}[[transcode.rendition]]\nname = \"a\"\nvideo = {{ width = 320, height = 180, bitrate_kbps = 300 }}\n");
        check(&ladder(&ok)).unwrap();
        // Listed by Debian's ffmpeg, but there is no NVIDIA GPU here.
        let nvenc = format!("{ok}encoder = \"h264_nvenc\"\n");
        if !Path::new("/dev/nvidia0").exists() {
            let e = check(&ladder(&nvenc)).unwrap_err();
            assert!(
            e.contains("transcode[0].rendition[0] (a): encoder `h264_nvenc` is listed by ffmpeg but cannot encode here"),
            "{e}"
        );
        }
        let nvenc = format!("{ok}encoder = \"h264_nonexistent\"\n");
        let e = check(&ladder(&nvenc)).unwrap_err();
        assert!(
            e.contains("transcode[0].rendition[0] (a): encoder `h264_nonexistent` is not available in ffmpeg"),
            "{e}"
        );
        let missing = format!("{base}ffmpeg = \"/nonexistent/ffmpeg\"\n[[transcode.rendition]]\nname = \"a\"\nvideo = \"none\"\n");
        let e = check(&ladder(&missing)).unwrap_err();
        assert!(
            e.starts_with("transcode[0].ffmpeg: cannot run `/nonexistent/ffmpeg`"),
            "{e}"
        );
    }
}
