//! SRT peers for the end-to-end tests: ffmpeg (libsrt) publishing MPEG-TS, and the
//! stream-id and config helpers the SRT tests share.

use super::*;

/// A config with RTMP, admin HTTP and `[srt]` (plus `srt_extra` lines in that table), and one
/// `live/*` route to `targets` (none without targets).
pub fn srt_config(srt_port: u16, srt_extra: &str, targets: &[(&str, &str)]) -> String {
    let mut s = if targets.is_empty() {
        format!(
            "[rtmp]\nlisten = \"127.0.0.1:{}\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\n",
            free_port(),
            free_port()
        )
    } else {
        simple_config(free_port(), free_port(), targets)
    };
    let _ = write!(
        s,
        "\n[srt]\nlisten = \"127.0.0.1:{srt_port}\"\nlatency_ms = 120\n{srt_extra}\n"
    );
    s
}

/// Percent-encodes everything but unreserved characters (for `streamid=` in srt:// URLs).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `srt://127.0.0.1:PORT?streamid=...&latency=...` for ffmpeg (latency in microseconds);
/// `extra` is appended as more query parameters (`passphrase=...&pbkeylen=...`).
pub fn srt_url(port: u16, stream_id: &str, extra: &str) -> String {
    let mut url = format!("srt://127.0.0.1:{port}?latency=120000");
    if !stream_id.is_empty() {
        let _ = write!(url, "&streamid={}", percent_encode(stream_id));
    }
    if !extra.is_empty() {
        let _ = write!(url, "&{extra}");
    }
    url
}

/// ffmpeg publishing `clip` as MPEG-TS over SRT, in real time. Killed on drop.
pub struct SrtPublisher {
    child: Option<Child>,
    pub url: String,
    log: TempDir,
}

impl SrtPublisher {
    pub fn start(url: &str, clip: &Path, loop_forever: bool) -> SrtPublisher {
        let log = TempDir::new("srt-publisher");
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-hide_banner", "-v", "warning", "-re"]);
        if loop_forever {
            cmd.args(["-stream_loop", "-1"]);
        }
        cmd.arg("-i")
            .arg(clip)
            .args(["-c", "copy", "-f", "mpegts", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log.join("ffmpeg.stderr")).expect("create file"));
        SrtPublisher {
            child: Some(cmd.spawn().expect("spawn ffmpeg SRT publisher")),
            url: url.to_string(),
            log,
        }
    }

    pub fn stderr(&self) -> String {
        tail_file(&self.log.join("ffmpeg.stderr"), 100)
    }

    /// Exit status if ffmpeg has already exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `timeout` for ffmpeg to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(self.child.as_mut()?, timeout)
    }

    /// SIGINT: ffmpeg finishes the stream and closes the SRT connection properly.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c, "INT", Duration::from_secs(5));
        }
    }
}

impl Drop for SrtPublisher {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if thread::panicking() {
            eprintln!("--- SRT publisher {} ---\n{}", self.url, self.stderr());
        }
    }
}

/// Checks a recording: h264 + aac decode, duration between `min_s` and `max_s` seconds.
#[track_caller]
pub fn assert_recording(path: &Path, min_s: f64, max_s: f64) -> ProbeResult {
    let p = probe(path, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("probing {}: {e}", path.display()));
    assert_eq!(
        p.video_codec.as_deref(),
        Some("h264"),
        "{}: {p:?}",
        path.display()
    );
    assert_eq!(
        p.audio_codec.as_deref(),
        Some("aac"),
        "{}: {p:?}",
        path.display()
    );
    assert!(
        p.video_frames_decoded > 0 && p.audio_ok,
        "{}: {p:?}",
        path.display()
    );
    let d = p.duration.unwrap_or(0.0);
    assert!(
        (min_s..=max_s).contains(&d),
        "{}: duration {d} s not in {min_s}..={max_s}: {p:?}",
        path.display()
    );
    p
}

// ---------------------------------------------------------------------------
// Misbehaving callers (tests/srt_robustness_*.rs)
// ---------------------------------------------------------------------------

/// Runs a misbehaving ffmpeg caller (2 s of `clip`) to `url` and asserts it is refused;
/// returns what it printed.
#[track_caller]
pub fn bad_ffmpeg_caller(clip: &Path, url: &str) -> String {
    let out = run_with_timeout(
        Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-hide_banner",
                "-v",
                "error",
                "-re",
                "-t",
                "2",
                "-i",
            ])
            .arg(clip)
            .args(["-c", "copy", "-f", "mpegts", url]),
        Duration::from_secs(15),
    )
    .unwrap_or_else(|e| panic!("bad caller: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "a bad caller was accepted: {url}\n{stderr}"
    );
    stderr
}

/// `prism_ingest_bytes_total` of a stream.
pub fn ingest_bytes(prism: &Prism, stream: &str) -> f64 {
    prism
        .metric_value(&format!("prism_ingest_bytes_total{{stream=\"{stream}\"}}"))
        .unwrap_or(0.0)
}

/// Waits for `stream`'s ingest byte count to rise by 20 kB (`what` happened just before).
#[track_caller]
pub fn assert_still_flowing(prism: &Prism, stream: &str, what: &str) {
    let before = ingest_bytes(prism, stream);
    wait_until(
        Duration::from_secs(5),
        &format!("{stream} ingest to keep rising after {what}"),
        || ingest_bytes(prism, stream) > before + 20_000.0,
    );
}

/// Waits for an SRT connection error with `reason` to be counted.
#[track_caller]
pub fn assert_refused(prism: &Prism, reason: &str) {
    let key = format!("prism_connection_errors_total{{reason=\"{reason}\",transport=\"srt\"}}");
    wait_until(Duration::from_secs(5), &format!("{key} to count"), || {
        prism.metric_value(&key).unwrap_or(0.0) >= 1.0
    });
}

/// Waits until nginx has had stream `key` published for at least `at_least` (its `<time>`).
/// Publishers run with `-re`, so that is about how much media its recording will hold.
#[track_caller]
pub fn wait_published_for(nginx: &Nginx, key: &str, at_least: Duration) {
    let min_ms = at_least.as_millis();
    wait_until(
        at_least + Duration::from_secs(10),
        &format!("nginx stream {key:?} published for {at_least:?}"),
        || {
            stat_stream_field(&nginx.stat_xml(), key, "time")
                .and_then(|t| t.parse::<u128>().ok())
                .is_some_and(|t| t >= min_ms)
        },
    );
}
