//! The HLS DVR window with `dvr_dir` ([hls] dvr_window_s, dvr_dir): ffmpeg publishes over
//! RTMP faster than real time (the media's own timestamps drive the packager's cuts and
//! window, so minutes of stream take seconds), ffmpeg and ffprobe seek back into the window
//! and decode what was spilled to disk; the directory stays bounded as the window slides; a
//! directory that turns unwritable costs that stream its disk spill, not its live playback;
//! a publisher that reconnects yields EXT-X-DISCONTINUITY and playback goes on.

mod common;

use common::*;
use prism_hls::check::{check_media, parse_media, MediaPlaylist};
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

const KEY: &str = "dvrcam";

fn dvr_config(hls_port: u16, dvr_dir: &Path) -> String {
    format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
         [hls]\nlisten = \"127.0.0.1:{hls_port}\"\nsegment_ms = 2000\npart_ms = 500\n\
         window_segments = 6\ndvr_window_s = 120\ndvr_dir = \"{}\"\n",
        free_port(),
        free_port(),
        dvr_dir.display()
    )
}

/// A 300 s FLV (the 10 s test clip looped, H.264 320x240 with a keyframe every second, and
/// AAC), split into tags so a test can publish up to any media time.
struct Flv {
    header: Vec<u8>,
    /// (timestamp ms, the tag with its trailing PreviousTagSize)
    tags: Vec<(u32, Vec<u8>)>,
}

fn long_flv() -> &'static Flv {
    static FLV: OnceLock<Flv> = OnceLock::new();
    FLV.get_or_init(|| {
        let clip = make_clip(10);
        let path = target_dir()
            .join("test-assets")
            .join(format!("clip-300s-looped.{}.flv", std::process::id()));
        let out = run_with_timeout(
            Command::new("ffmpeg")
                .args(["-nostdin", "-v", "error", "-y", "-stream_loop", "29", "-i"])
                .arg(&clip)
                .args(["-c", "copy", "-f", "flv"])
                .arg(&path),
            Duration::from_secs(60),
        )
        .expect("ffmpeg");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = fs::read(&path).expect("read looped clip");
        let _ = fs::remove_file(&path);
        parse_flv(&bytes)
    })
}

fn parse_flv(b: &[u8]) -> Flv {
    assert_eq!(&b[..3], b"FLV");
    let start = u32::from_be_bytes([b[5], b[6], b[7], b[8]]) as usize + 4;
    let mut tags = Vec::new();
    let mut at = start;
    while at + 11 <= b.len() {
        let size = u32::from_be_bytes([0, b[at + 1], b[at + 2], b[at + 3]]) as usize;
        let ts = u32::from_be_bytes([b[at + 7], b[at + 4], b[at + 5], b[at + 6]]);
        let end = at + 11 + size + 4;
        if end > b.len() {
            break;
        }
        tags.push((ts, b[at..end].to_vec()));
        at = end;
    }
    assert!(tags.last().unwrap().0 > 290_000, "a 300 s clip");
    Flv {
        header: b[..start].to_vec(),
        tags,
    }
}

/// `ffmpeg -f flv -i pipe:0 -c copy -f flv URL`: publishes what the test writes to its
/// stdin, as fast as it comes (no -re). Killed and reaped on drop.
struct PipePublisher {
    child: Child,
    stdin: Option<ChildStdin>,
    next: usize,
    log: TempDir,
    hls: SocketAddr,
    /// Media time published so far (ms).
    fed: u32,
    /// The first segment number of this publisher's media.
    base: Option<u64>,
}

/// Media published ahead of what the packager has cut: the hub queue of HLS packaging holds
/// 10 s of media, a publisher far faster than real time would overflow it (frames dropped).
const STEP_MS: u32 = 4_000;

/// The open segment's number (the next to complete), if the playlist is there.
fn open_msn(hls: SocketAddr) -> Option<(u64, u64)> {
    let (status, text) = http_get(hls, &format!("/live/{KEY}/video.m3u8")).ok()?;
    let p = parse_media(&text).ok().filter(|_| status == 200)?;
    Some((
        p.media_sequence,
        p.media_sequence + p.skipped + p.segments.len() as u64,
    ))
}

impl PipePublisher {
    fn start(url: &str, hls: SocketAddr) -> PipePublisher {
        let log = TempDir::new("dvr-publisher");
        let mut child = Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-v", "warning"])
            .args(["-f", "flv", "-i", "pipe:0", "-c", "copy", "-f", "flv", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log.join("stderr")).expect("create file"))
            .spawn()
            .expect("spawn ffmpeg");
        let mut stdin = child.stdin.take();
        if let Some(s) = stdin.as_mut() {
            s.write_all(&long_flv().header).expect("write FLV header");
        }
        PipePublisher {
            child,
            stdin,
            next: 0,
            log,
            hls,
            fed: 0,
            base: open_msn(hls).map(|(_, open)| open),
        }
    }

    /// Publishes up to media time `ms` as fast as the packager takes it: at most
    /// [`STEP_MS`] ahead of its complete segments (2 s each).
    #[track_caller]
    fn publish(&mut self, ms: u32) {
        while self.fed < ms {
            let next = (self.fed + STEP_MS).min(ms);
            self.feed_until(next);
            let want = u64::from(next.saturating_sub(STEP_MS) / 2000);
            let hls = self.hls;
            let base = &mut self.base;
            wait_until(
                Duration::from_secs(30),
                "the packager to take the media",
                || {
                    let Some((first, open)) = open_msn(hls) else {
                        return want == 0;
                    };
                    open - *base.get_or_insert(first) >= want
                },
            );
        }
    }

    /// Publishes the clip's tags up to media time `ms`.
    #[track_caller]
    fn feed_until(&mut self, ms: u32) {
        let flv = long_flv();
        let stdin = self.stdin.as_mut().expect("publisher closed");
        while let Some((ts, tag)) = flv.tags.get(self.next) {
            if *ts > ms {
                break;
            }
            if let Err(e) = stdin.write_all(tag) {
                panic!(
                    "publisher ffmpeg: {e}\n{}",
                    tail_file(&self.log.join("stderr"), 30)
                );
            }
            self.next += 1;
        }
        let _ = stdin.flush();
        self.fed = self.fed.max(ms);
    }

    /// The input ends: ffmpeg unpublishes and exits (an encoder stopped by its user).
    fn finish(&mut self) {
        self.stdin = None;
        assert!(
            wait_child(&mut self.child, Duration::from_secs(20)).is_some(),
            "the publisher did not finish"
        );
    }

    /// SIGKILL: the connection drops without an RTMP goodbye (a network failure).
    fn kill(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A publisher going on in real time on a thread (as an encoder does). Stopped, and its
/// ffmpeg killed, on drop.
struct LiveFeed {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PipePublisher {
    /// Publishes on in real time from the media time published so far.
    fn live(mut self) -> LiveFeed {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (from, t0) = (self.fed, std::time::Instant::now());
            while !flag.load(Ordering::Relaxed) {
                self.feed_until(from + t0.elapsed().as_millis() as u32);
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        LiveFeed {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for LiveFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PipePublisher {
    fn drop(&mut self) {
        self.kill();
    }
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn get_bytes(addr: SocketAddr, path: &str) -> Vec<u8> {
    match http_get_bytes(addr, path) {
        Ok((200, body)) => body,
        other => panic!("GET {path}: {other:?}"),
    }
}

fn video_playlist(hls: SocketAddr) -> (String, MediaPlaylist) {
    track_playlist(hls, "video")
}

/// The media playlist of `track` (`video`, `audio`).
fn track_playlist(hls: SocketAddr, track: &str) -> (String, MediaPlaylist) {
    let (status, text) = get(hls, &format!("/live/{KEY}/{track}.m3u8"));
    assert_eq!(status, 200, "{text}");
    let p = parse_media(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (text, p)
}

/// Waits until the playlist spans at least `secs` seconds of complete segments.
fn wait_span(hls: SocketAddr, secs: f64) -> (String, MediaPlaylist) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        if let Ok((status, text)) = http_get(hls, &format!("/live/{KEY}/video.m3u8")) {
            if let Some(p) = parse_media(&text).ok().filter(|_| status == 200) {
                let span: f64 = p.segments.iter().map(|s| s.duration).sum();
                if span >= secs {
                    return (text, p);
                }
            }
            last = format!("{status}\n{text}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no video playlist spanning {secs} s within 60 s; the last one:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The window's directory in `dvr_dir` (one per stream window, an opaque name).
fn window_dir(dvr: &Path) -> PathBuf {
    wait_for(Duration::from_secs(20), "the window's directory", || {
        fs::read_dir(dvr)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_dir())
    })
}

/// (file name, size) of every file in `dir`.
fn files(dir: &Path) -> Vec<(String, u64)> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let m = e.metadata().ok()?;
                    Some((e.file_name().to_string_lossy().into_owned(), m.len()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn msn_of(name: &str) -> Option<u64> {
    name.strip_prefix("video-")?
        .strip_suffix(".m4s")?
        .parse()
        .ok()
}

/// ffprobe's video frames of `path`: (key_frame, pts_time), and what it reported.
fn probe_frames(path: &Path) -> (Vec<(bool, f64)>, String) {
    let out = run_with_timeout(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_frames"])
            .args([
                "-show_entries",
                "frame=key_frame,pts_time",
                "-of",
                "csv=p=0",
            ])
            .arg(path),
        Duration::from_secs(30),
    )
    .expect("ffprobe");
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split(',');
            Some((it.next()? == "1", it.next()?.parse().ok()?))
        })
        .collect();
    (frames, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The URI of the `EXT-X-MAP` that applies to segment `uri` of the playlist `text`.
fn map_of(text: &str, uri: &str) -> String {
    let mut map = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            map = rest.split('"').next().map(str::to_owned);
        } else if line == uri {
            return map.expect("a map before the segment");
        }
    }
    panic!("{uri} not in the playlist:\n{text}");
}

/// Fetches init + segment `index` of `p` and checks it decodes from a keyframe: its
/// duration of 25 fps video. Returns the segment's bytes.
#[track_caller]
fn assert_segment_decodes(
    hls: SocketAddr,
    (text, p): (&str, &MediaPlaylist),
    index: usize,
    tmp: &Path,
) -> Vec<u8> {
    let seg = &p.segments[index];
    let map = map_of(text, &seg.uri);
    let mut file = get_bytes(hls, &format!("/live/{KEY}/{map}"));
    let body = get_bytes(hls, &format!("/live/{KEY}/{}", seg.uri));
    file.extend_from_slice(&body);
    let path = tmp.join(format!("{}.mp4", seg.msn));
    fs::write(&path, &file).unwrap();
    let (frames, errors) = probe_frames(&path);
    assert!(
        errors.trim().is_empty(),
        "segment {} decode errors: {errors}",
        seg.msn
    );
    let want = (seg.duration * 25.0).round() as usize;
    assert!(
        frames.len() + 1 >= want,
        "segment {} of {} s: {} frames",
        seg.msn,
        seg.duration,
        frames.len()
    );
    assert!(frames[0].0, "segment {} starts on a keyframe", seg.msn);
    body
}

#[test]
fn dvr_window_spills_to_disk_seeks_back_and_stays_bounded() {
    let hls_port = free_port();
    let tmp = TempDir::new("hls-dvr");
    let dvr = tmp.join("dvr");
    let prism = Prism::start(&dvr_config(hls_port, &dvr));
    let hls: SocketAddr = ([127, 0, 0, 1], hls_port).into();
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&dvr), 0o700, "dvr_dir created private");

    // 130 s of media, published in a few seconds.
    let mut publisher = PipePublisher::start(&prism.rtmp_url("live", KEY), hls);
    let t0 = std::time::Instant::now();
    publisher.publish(130_000);
    let (text, p) = wait_span(hls, 118.0);
    eprintln!("[hls_dvr] 130 s of media packaged in {:?}", t0.elapsed());
    assert!(
        check_media(&text).is_empty(),
        "{:?}\n{text}",
        check_media(&text)
    );
    let span: f64 = p.segments.iter().map(|s| s.duration).sum();
    assert!(span <= 124.0, "the playlist is the 120 s window: {span}");
    assert!(p.segments.iter().all(|s| s.duration <= 2.5), "2 s segments");

    // The older segments are files in the window's directory, private, with no key in any
    // path; the live end stays in memory.
    let window = window_dir(&dvr);
    assert!(!window.to_string_lossy().contains(KEY));
    assert_eq!(mode(&window), 0o700);
    let newest = p.segments.last().unwrap().msn;
    wait_until(
        Duration::from_secs(20),
        "the older segments spilled",
        || {
            let on_disk: Vec<u64> = files(&window)
                .iter()
                .filter_map(|(n, _)| msn_of(n))
                .collect();
            p.segments[..p.segments.len() - 8]
                .iter()
                .all(|s| on_disk.contains(&s.msn))
        },
    );
    for (name, _) in files(&window) {
        assert_eq!(mode(&window.join(&name)), 0o600, "{name}");
        assert!(
            msn_of(&name).is_none_or(|m| m + 6 <= newest),
            "live {name} on disk"
        );
    }

    // Seek back 60 s: the segment there is served from its file and decodes.
    let mut back = 0.0;
    let mut index = p.segments.len();
    while back < 60.0 {
        index -= 1;
        back += p.segments[index].duration;
    }
    let body = assert_segment_decodes(hls, (&text, &p), index, tmp.path());
    let msn = p.segments[index].msn;
    let on_disk = fs::read(window.join(format!("video-{msn}.m4s"))).expect("its file");
    assert_eq!(body, on_disk, "segment {msn} is served from its file");
    // A byte range of a spilled segment.
    let (status, range) = {
        let mut s = std::net::TcpStream::connect(hls).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /live/{KEY}/video/{msn}.m4s HTTP/1.0\r\nRange: bytes=100-199\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut s, &mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        (head, raw[split + 4..].to_vec())
    };
    assert!(status.starts_with("HTTP/1.0 206"), "{status}");
    assert_eq!(range, on_disk[100..200]);

    // ffmpeg's own HLS demuxer, starting 30 segments (60 s) back, reads the window from
    // disk: both tracks decode; its first video timestamp is 60 s before the live end.
    let out = run_with_timeout(
        Command::new("ffprobe")
            .args(["-v", "error", "-live_start_index", "-30"])
            .args(["-select_streams", "v:0", "-show_entries", "packet=pts_time"])
            .args(["-read_intervals", "%+#10", "-of", "csv=p=0"])
            .arg(format!("http://{hls}/live/{KEY}/video.m3u8")),
        Duration::from_secs(60),
    )
    .expect("ffprobe");
    let first_pts: f64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no packets: {}", String::from_utf8_lossy(&out.stderr)));
    let out = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-live_start_index", "-30", "-i"])
            .arg(format!("http://{hls}/live/{KEY}/index.m3u8"))
            .args([
                "-t", "8", "-map", "0:v:0", "-map", "0:a:0", "-f", "null", "-",
            ]),
        Duration::from_secs(60),
    )
    .expect("ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.trim().is_empty(),
        "ffmpeg 60 s back: {errors}"
    );
    eprintln!("[hls_dvr] ffprobe 60 s back starts at pts {first_pts:.1} s");
    assert!(
        (first_pts - 70.0).abs() < 6.0,
        "60 s before the end of 130 s: {first_pts}"
    );

    // Memory holds only the live end; the gauges say how much is where.
    let stream = format!("stream=\"live/{KEY}\"");
    // Writes finish and files of segments past their grace go while this reads: the gauges
    // and the listing are read again until the spill has caught up, or 20 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (total, disk, files_bytes) = loop {
        let m = prism.metrics();
        let gauge = |name: &str| metric_value_in(&m, &format!("{name}{{{stream}}}")).unwrap_or(0.0);
        let (total, disk) = (
            gauge("prism_hls_dvr_bytes"),
            gauge("prism_hls_dvr_disk_bytes"),
        );
        let files_bytes: u64 = files(&window).iter().map(|(_, n)| n).sum();
        let settled = disk > 0.0 && disk <= files_bytes as f64 && total - disk < 0.25 * total;
        if settled || Instant::now() > deadline {
            break (total, disk, files_bytes);
        }
        thread::sleep(Duration::from_millis(200));
    };
    eprintln!(
        "[hls_dvr] 120 s window: {total} bytes, {disk} on disk ({files_bytes} in files), {} in memory",
        total - disk
    );
    assert!(
        disk > 0.0 && disk <= files_bytes as f64,
        "the gauge counts the files"
    );
    assert!(
        (total - disk) < 0.25 * total,
        "memory holds the live end only"
    );

    // Slide the window by another 150 s: the directory stays bounded, old files go.
    let first_before = p.segments[0].msn;
    let mut peak_files = 0;
    for ms in (140_000..=280_000).step_by(10_000) {
        publisher.publish(ms);
        peak_files = peak_files.max(files(&window).len());
    }
    wait_until(
        Duration::from_secs(60),
        "the window slid past the first publish",
        || {
            let (_, p) = video_playlist(hls);
            p.segments[0].msn > first_before + 60
        },
    );
    // Segments that left the window go after their grace (one playlist length, 12 s), each
    // track's by its own playlist (audio segments end at other instants than video's, so
    // the audio window may start one segment earlier).
    let first = |track: &str| track_playlist(hls, track).1.segments[0].msn;
    let (first_video, first_audio) = (first("video"), first("audio"));
    let track_files = |track: &str| -> Vec<u64> {
        files(&window)
            .iter()
            .filter_map(|(n, _)| n.strip_prefix(track)?.strip_prefix('-'))
            .filter_map(|n| n.strip_suffix(".m4s")?.parse().ok())
            .collect()
    };
    wait_until(
        Duration::from_secs(40),
        "files that left the window deleted",
        || {
            track_files("video").iter().all(|&m| m >= first_video)
                && track_files("audio").iter().all(|&m| m >= first_audio)
        },
    );
    let now = files(&window);
    let bytes: u64 = now.iter().map(|(_, n)| n).sum();
    // The window is 120 s of media: about 60 segments of 2 s per track (segments end on
    // keyframes); what each track's playlist lists is its bound on disk.
    let listed = |track: &str| track_playlist(hls, track).1.segments.len();
    let (video_listed, audio_listed) = (listed("video"), listed("audio"));
    let (video_files, audio_files) = (track_files("video").len(), track_files("audio").len());
    eprintln!(
        "[hls_dvr] after 280 s: {} files ({video_files} video, {audio_files} audio), {bytes} bytes on disk (peak {peak_files} files); listed {video_listed} video, {audio_listed} audio",
        now.len()
    );
    assert!(
        (58..=66).contains(&video_listed),
        "about 60 segments in a 120 s window: {video_listed}"
    );
    // Per track at most the window, less the live end in memory; nothing else on disk.
    assert!(video_files <= video_listed, "{video_files} video files");
    assert!(audio_files <= audio_listed, "{audio_files} audio files");
    assert_eq!(now.len(), video_files + audio_files, "only segment files");
    assert!(files(&window)
        .iter()
        .filter_map(|(n, _)| msn_of(n))
        .all(|m| m >= first_before + 60));

    // The publisher leaves: once the ended window is dropped, its directory goes.
    publisher.kill();
    wait_until(
        Duration::from_secs(60),
        "the window's directory removed",
        || !window.exists(),
    );
    assert!(dvr.is_dir(), "dvr_dir itself stays");
    drop(prism);
}

#[test]
fn unwritable_dvr_dir_keeps_live_playback() {
    let hls_port = free_port();
    let tmp = TempDir::new("hls-dvr-broken");
    let dvr = tmp.join("dvr");
    let prism = Prism::start(&dvr_config(hls_port, &dvr));
    let hls: SocketAddr = ([127, 0, 0, 1], hls_port).into();
    let mut publisher = PipePublisher::start(&prism.rtmp_url("live", KEY), hls);
    publisher.publish(30_000);
    wait_span(hls, 26.0);
    let window = window_dir(&dvr);
    wait_until(Duration::from_secs(20), "spilled files", || {
        !files(&window).is_empty()
    });
    // The window's directory becomes a file: every write fails (whoever runs the test,
    // root included).
    let moved = tmp.join("moved-away");
    fs::rename(&window, &moved).unwrap();
    fs::write(&window, b"not a directory").unwrap();
    fs::remove_dir_all(&moved).unwrap();
    publisher.publish(100_000);
    wait_until(Duration::from_secs(30), "the write error counted", || {
        prism
            .metric_value("prism_hls_dvr_errors_total{op=\"write\"}")
            .unwrap_or(0.0)
            >= 1.0
    });
    // Live playback goes on: the playlist keeps growing, its newest segments decode.
    publisher.publish(140_000);
    let (text, p) = wait_span(hls, 118.0);
    assert!(
        check_media(&text).is_empty(),
        "{:?}\n{text}",
        check_media(&text)
    );
    let last = p.segments.len() - 1;
    assert_segment_decodes(hls, (&text, &p), last, tmp.path());
    // Segments spilled after the failure stay in memory: 30 s back decodes too.
    assert_segment_decodes(hls, (&text, &p), last - 15, tmp.path());
    let log = prism.stderr();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("DVR spill to dvr_dir failed"))
        .collect();
    assert_eq!(warnings.len(), 1, "logged once:\n{log}");
    assert!(!warnings[0].contains(KEY), "no stream key: {}", warnings[0]);
    let mut prism = prism;
    assert!(prism.try_wait().is_none(), "prism still runs");
}

#[test]
fn reconnecting_publisher_yields_a_discontinuity_and_playback_goes_on() {
    let hls_port = free_port();
    let tmp = TempDir::new("hls-dvr-reconnect");
    let dvr = tmp.join("dvr");
    let prism = Prism::start(&dvr_config(hls_port, &dvr));
    let hls: SocketAddr = ([127, 0, 0, 1], hls_port).into();
    let mut publisher = PipePublisher::start(&prism.rtmp_url("live", KEY), hls);
    publisher.publish(40_000);
    let (_, before) = wait_span(hls, 36.0);
    // The connection drops and the encoder comes back within the hub's reconnect grace.
    publisher.kill();
    let mut publisher = PipePublisher::start(&prism.rtmp_url("live", KEY), hls);
    publisher.publish(30_000);
    let (text, p) = wait_for(
        Duration::from_secs(60),
        "segments after the discontinuity",
        || {
            let (text, p) = video_playlist(hls);
            let at = p.segments.iter().position(|s| s.discontinuity)?;
            (p.segments.len() - at >= 10).then_some((text, p))
        },
    );
    assert!(
        check_media(&text).is_empty(),
        "{:?}\n{text}",
        check_media(&text)
    );
    assert_eq!(
        text.matches("#EXT-X-DISCONTINUITY\n").count(),
        1,
        "one discontinuity:\n{text}"
    );
    // The window before the reconnect is still there, numbering continued.
    assert_eq!(p.segments[0].msn, before.segments[0].msn, "{text}");
    let at = p.segments.iter().position(|s| s.discontinuity).unwrap();
    assert!(
        at >= 15,
        "the first publish's segments stay in the window: {text}"
    );
    // A new init segment follows the discontinuity; segments on both sides decode.
    assert!(p.maps.len() >= 2, "{text}");
    for i in [at - 1, at, at + 5] {
        assert_segment_decodes(hls, (&text, &p), i, tmp.path());
    }
    // A player reading across the discontinuity (from 10 segments before it) decodes on.
    let start = -((p.segments.len() - at + 10) as i64);
    let out = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-live_start_index"])
            .arg(start.to_string())
            .arg("-i")
            .arg(format!("http://{hls}/live/{KEY}/index.m3u8"))
            .args(["-t", "30", "-map", "0:v:0", "-f", "null", "-"]),
        Duration::from_secs(90),
    )
    .expect("ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.trim().is_empty(),
        "ffmpeg across the discontinuity: {errors}"
    );
}

#[test]
fn prism_check_refuses_a_dvr_dir_it_cannot_create() {
    let tmp = TempDir::new("hls-dvr-check");
    let file = tmp.join("a-file");
    fs::write(&file, b"").unwrap();
    let config = |dir: &Path| dvr_config(free_port(), dir);
    let out = prism_check(&config(&file.join("dvr")));
    assert!(!out.status.success(), "a dvr_dir under a file is refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hls.dvr_dir"), "{err}");
    let out = prism_check(&config(&tmp.join("new/dvr")));
    assert!(
        out.status.success(),
        "a creatable dvr_dir passes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!tmp.join("new").exists(), "check creates nothing");
    // At start, the same refusal, before anything listens.
    let mut prism = Prism::spawn(&config(&file.join("dvr")));
    assert!(prism
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| !s.success()));
    assert!(prism.stderr().contains("dvr_dir"), "{}", prism.stderr());
    // At start, window directories a crash left behind go; nothing else in dvr_dir does.
    let dvr = tmp.join("dvr");
    let stale = dvr.join("w0000000065e1c0de");
    fs::create_dir_all(&stale).unwrap();
    fs::write(stale.join("video-7.m4s"), b"old").unwrap();
    fs::write(dvr.join("README"), b"the operator's").unwrap();
    let _prism = Prism::start(&config(&dvr));
    assert!(!stale.exists(), "the stale window directory is removed");
    assert!(dvr.join("README").exists(), "other files are kept");
}

#[test]
fn republishing_after_the_end_continues_the_window() {
    let hls_port = free_port();
    let tmp = TempDir::new("hls-dvr-republish");
    let dvr = tmp.join("dvr");
    let prism = Prism::start(&dvr_config(hls_port, &dvr));
    let hls: SocketAddr = ([127, 0, 0, 1], hls_port).into();
    let mut publisher = PipePublisher::start(&prism.rtmp_url("live", KEY), hls);
    publisher.publish(40_000);
    // The encoder stops: the playlist ends...
    publisher.finish();
    let (_, before) = wait_for(Duration::from_secs(30), "the playlist to end", || {
        let (text, p) = video_playlist(hls);
        p.ended.then_some((text, p))
    });
    let window = window_dir(&dvr);
    // ... and it starts again: the same window goes on, its rewind kept.
    let mut publisher = PipePublisher::start(&prism.rtmp_url("live", KEY), hls);
    publisher.publish(30_000);
    let (text, p) = wait_for(
        Duration::from_secs(60),
        "segments after the discontinuity",
        || {
            let (text, p) = video_playlist(hls);
            let at = p.segments.iter().position(|s| s.discontinuity)?;
            (p.segments.len() - at >= 10 && !p.ended).then_some((text, p))
        },
    );
    assert!(
        check_media(&text).is_empty(),
        "{:?}\n{text}",
        check_media(&text)
    );
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
    assert_eq!(p.media_sequence, before.media_sequence, "{text}");
    let at = p.segments.iter().position(|s| s.discontinuity).unwrap();
    assert_eq!(
        at,
        before.segments.len(),
        "the old segments, then the new: {text}"
    );
    for i in [1, at - 1, at, at + 5] {
        assert_segment_decodes(hls, (&text, &p), i, tmp.path());
    }
    assert_eq!(window_dir(&dvr), window, "the same window directory");
    // Its series are exported again (the first stream's end removed them).
    let series = format!("prism_hls_segments{{stream=\"live/{KEY}\"}}");
    wait_until(Duration::from_secs(10), "the window's gauges", || {
        prism.metric_value(&series).unwrap_or(0.0) >= p.segments.len() as f64
    });
    // The DASH manifest lists the new timeline (its init segment's segments).
    let (status, mpd) = get(hls, &format!("/live/{KEY}/manifest.mpd"));
    assert_eq!(status, 200, "{mpd}");
    let first_new = p.segments[at].msn;
    assert!(
        mpd.contains(&format!("startNumber=\"{first_new}\"")),
        "{mpd}"
    );
    let out = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-live_start_index", "0", "-i"])
            .arg(format!("http://{hls}/live/{KEY}/index.m3u8"))
            .args([
                "-t", "50", "-map", "0:v:0", "-map", "0:a:0", "-f", "null", "-",
            ]),
        Duration::from_secs(90),
    )
    .expect("ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && errors.trim().is_empty(),
        "ffmpeg from the start of the window across the republish: {errors}"
    );
}

#[test]
fn the_page_scrub_bar_seeks_back_in_the_window() {
    let hls_port = free_port();
    let tmp = TempDir::new("hls-dvr-page");
    let prism = Prism::start(&dvr_config(hls_port, &tmp.join("dvr")));
    let hls: SocketAddr = ([127, 0, 0, 1], hls_port).into();
    let mut publisher = PipePublisher::start(&prism.rtmp_url("live", KEY), hls);
    publisher.publish(100_000);
    wait_span(hls, 94.0);
    let _feed = publisher.live();
    // tests/js/dvr.mjs: headless Chromium plays the page, drags its DVR bar 60 s back.
    let v = node_json(
        "dvr.mjs",
        &[format!("http://{hls}/live/{KEY}/"), "60".into()],
        Duration::from_secs(90),
    );
    let num = |at: &str, key: &str| v[at][key].as_f64().unwrap_or(f64::NAN);
    eprintln!("[hls_dvr] hls.js DVR seek: {v}");
    let window = num("before", "seekableEnd") - num("before", "seekableStart");
    assert!(
        window > 90.0,
        "the rewind window is seekable: {window} s: {v}"
    );
    let behind = num("seeked", "seekableEnd") - num("seeked", "currentTime");
    assert!(
        (54.0..=66.0).contains(&behind),
        "60 s behind live: {behind}: {v}"
    );
    let played = num("after", "currentTime") - num("seeked", "currentTime");
    assert!(played > 3.0, "it plays on from there: {played} s: {v}");
    let still_behind = num("after", "seekableEnd") - num("after", "currentTime");
    assert!(
        still_behind > 45.0,
        "and stays in the past: {still_behind}: {v}"
    );
    let fatal: Vec<_> = v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e.as_str().is_some_and(|e| e.ends_with(":fatal")))
        .collect();
    assert!(fatal.is_empty(), "hls.js fatal errors: {v}");
}
