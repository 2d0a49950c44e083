//! ABR ladders: one supervised ffmpeg worker per (live stream, `[[transcode]]` ladder),
//! turning the source into renditions published back into the hub as `{app}/{key}_{name}`.
//!
//! This crate runs processes and moves FLV bytes over pipes; it knows the hub only through
//! prism-relay (a rendition is published like any other stream, a source is subscribed
//! like any output) and the config only as plain structs. No protocol parsing beyond FLV
//! framing; no policy beyond `[limits] max_transcodes`.
//!
//! Media over pipes, no files, no sockets: the source goes to the worker's stdin as FLV;
//! rendition `i` comes back as FLV on the worker's fd `3 + i` (ffmpeg's `pipe:N`). Pipes
//! need no port, no secret and no listener anyone else could reach, and their EOF tells
//! each side the other is gone.
//!
//! The pipe buffers on Prism's side are charged to the memory budget's `transcode` pool
//! (`[limits] max_memory_mb`): the feeder's FLV batch (one hub batch of [`CHUNK`] bytes, or
//! one frame if larger) and, per rendition, the read buffer ([`CHUNK`]), the FLV reader's
//! partial tag (at most 8 MiB) and the tags held until the output is aligned. Each is
//! re-measured once per write or read, not per tag, and released when its task ends.
//! (The kernel's pipe buffers are the kernel's.)
//!
//! Never an orphan: the worker gets SIGKILL when Prism dies (PR_SET_PDEATHSIG); when its
//! source ends its stdin closes (ffmpeg flushes and exits), then SIGTERM, then SIGKILL, each
//! after a deadline, and it is always waited on.

mod align;
mod command;
mod flv;
mod probe;
mod spawn;

pub use probe::check;

use bytes::BytesMut;
use command::Progress;
use prism_config::TranscodeConfig;
use prism_hub::{Frame, FrameKind, QueueLimits, RecvStatus, Stream};
use prism_metrics::Metrics;
use prism_relay::{ConnInfo, Publisher, Relay, StreamOutput};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tracing::{info, warn};

/// No rendition output for this long (while the source is live) = stalled.
const STALL: Duration = Duration::from_secs(10);
/// Speed below [`SLOW_SPEED`] for this long = too slow to keep up.
const SLOW_FOR: Duration = Duration::from_secs(30);
const SLOW_SPEED: f64 = 0.9;
/// After the source ends: time for ffmpeg to flush and exit once its stdin closes, then
/// after SIGTERM, before SIGKILL.
const GRACEFUL: Duration = Duration::from_secs(2);
const TERM: Duration = Duration::from_secs(2);
/// Restart backoff: doubles from the first to the last; a run this long resets it.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const STABLE_RUN: Duration = Duration::from_secs(60);
/// The source's queue towards the worker: a worker that cannot take this much is too slow.
const FEED_QUEUE: QueueLimits = QueueLimits {
    max_bytes: 32 * 1024 * 1024,
    max_ms: 10_000,
    overflow_disconnect: Duration::from_secs(10),
};
/// Bytes moved per read/write of the pipes.
const CHUNK: usize = 256 * 1024;

/// The ABR supervisor: a [`StreamOutput`] handed every stream; those a `[[transcode]]`
/// ladder matches get a worker.
#[derive(Debug)]
pub struct Transcoder {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    metrics: Metrics,
    /// Workers by source stream name.
    workers: Mutex<BTreeMap<String, Arc<Worker>>>,
    /// Rendition stream names being published: never transcoded again themselves.
    renditions: Mutex<HashSet<String>>,
}

/// One worker's state, for the API and status page.
#[derive(Debug)]
struct Worker {
    stream: String,
    renditions: Vec<String>,
    status: Mutex<Status>,
}

#[derive(Debug, Clone, Default)]
struct Status {
    state: &'static str,
    pid: Option<u32>,
    restarts: u64,
    last_restart_reason: Option<&'static str>,
    cpu_seconds: f64,
    progress: Progress,
}

/// A worker as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSnapshot {
    /// Source stream `app/key`.
    pub stream: String,
    /// Rendition streams `app/key_name`.
    pub renditions: Vec<String>,
    /// `starting`, `running`, `restarting` or `stopping`.
    pub state: &'static str,
    pub pid: Option<u32>,
    pub speed: Option<f64>,
    pub fps: Option<f64>,
    pub cpu_seconds: f64,
    pub restarts: u64,
    pub last_restart_reason: Option<&'static str>,
    /// The last lines ffmpeg wrote that were not progress reports.
    pub last_lines: Vec<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Transcoder {
    pub fn new(metrics: Metrics) -> Arc<Transcoder> {
        Arc::new(Transcoder {
            shared: Arc::new(Shared {
                metrics,
                workers: Mutex::default(),
                renditions: Mutex::default(),
            }),
        })
    }

    /// Every worker, sorted by source stream.
    pub fn workers(&self) -> Vec<WorkerSnapshot> {
        lock(&self.shared.workers)
            .values()
            .map(|w| {
                let s = lock(&w.status).clone();
                WorkerSnapshot {
                    stream: w.stream.clone(),
                    renditions: w.renditions.clone(),
                    state: s.state,
                    pid: s.pid,
                    speed: s.progress.speed,
                    fps: s.progress.fps,
                    cpu_seconds: s.cpu_seconds,
                    restarts: s.restarts,
                    last_restart_reason: s.last_restart_reason,
                    last_lines: s.progress.lines.iter().cloned().collect(),
                }
            })
            .collect()
    }
}

impl StreamOutput for Transcoder {
    fn stream_started(&self, relay: &Arc<Relay>, stream: &Arc<Stream>) {
        if lock(&self.shared.renditions).contains(stream.name()) {
            return;
        }
        let config = relay.config();
        let Some(ladder) = config.transcode_for(stream.app(), stream.key()) else {
            return;
        };
        let name = stream.name().to_owned();
        let worker = {
            let mut workers = lock(&self.shared.workers);
            if workers.len() >= config.limits.max_transcodes {
                warn!(stream = %name, max_transcodes = config.limits.max_transcodes, "transcode refused: [limits] max_transcodes workers are running; the stream is relayed without its ladder");
                self.shared.metrics.transcode_refused().inc();
                return;
            }
            let renditions: Vec<String> = ladder
                .renditions
                .iter()
                .map(|r| format!("{name}_{}", r.name))
                .collect();
            let w = Arc::new(Worker {
                stream: name.clone(),
                renditions: renditions.clone(),
                status: Mutex::new(Status {
                    state: "starting",
                    ..Status::default()
                }),
            });
            // A previous worker of the same name is still stopping: its entry goes.
            workers.insert(name.clone(), w.clone());
            lock(&self.shared.renditions).extend(renditions);
            w
        };
        let (shared, relay, stream, ladder) = (
            self.shared.clone(),
            relay.clone(),
            stream.clone(),
            ladder.clone(),
        );
        let guard = relay.track(|| format!("transcode worker {name}"));
        tokio::spawn(async move {
            supervise(&shared, &relay, &stream, &ladder, &worker).await;
            let mut workers = lock(&shared.workers);
            if workers.get(&name).is_some_and(|w| Arc::ptr_eq(w, &worker)) {
                workers.remove(&name);
                let mut r = lock(&shared.renditions);
                for n in &worker.renditions {
                    r.remove(n);
                }
            }
            drop(guard);
        });
    }
}

/// Why a run of the worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The source ended: stop for good.
    SourceEnded,
    /// Restart, counted under this reason.
    Restart(&'static str),
}

/// Runs the worker until the source ends, restarting it with backoff.
async fn supervise(
    shared: &Shared,
    relay: &Arc<Relay>,
    source: &Arc<Stream>,
    ladder: &TranscodeConfig,
    worker: &Worker,
) {
    let name = source.name();
    let mut backoff = BACKOFF_FIRST;
    // The renditions' publishers stay over restarts: their players and targets wait
    // (as for a publisher that pauses), and the timeline goes on from where it was.
    let mut outs: Vec<RenditionOut> = ladder
        .renditions
        .iter()
        .map(|_| RenditionOut::default())
        .collect();
    loop {
        let started = Instant::now();
        let end = run_once(shared, relay, source, ladder, worker, &mut outs).await;
        let reason = match end {
            End::SourceEnded => break,
            End::Restart(r) => r,
        };
        if source.is_ended() {
            break;
        }
        if started.elapsed() >= STABLE_RUN {
            backoff = BACKOFF_FIRST;
        }
        shared.metrics.transcode_restarts(name, reason).inc();
        {
            let mut s = lock(&worker.status);
            s.state = "restarting";
            s.pid = None;
            s.restarts += 1;
            s.last_restart_reason = Some(reason);
        }
        warn!(stream = %name, reason, backoff_ms = backoff.as_millis() as u64, "transcode worker restarting");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = source.wait_ended() => break,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    lock(&worker.status).state = "stopping";
    for o in outs {
        if let Some(p) = o.publisher {
            p.unpublish();
        }
    }
    info!(stream = %name, "transcode worker stopped");
}

/// Shared between a run's tasks: when output last came, to tell a stall.
struct Liveness {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last rendition tag.
    last_output_ms: AtomicU64,
}

impl Liveness {
    fn touch(&self) {
        self.last_output_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn quiet_for(&self) -> Duration {
        self.epoch.elapsed().saturating_sub(Duration::from_millis(
            self.last_output_ms.load(Ordering::Relaxed),
        ))
    }
}

/// One run of the worker: spawn, feed, read, watch; then stop it and reap it.
async fn run_once(
    shared: &Shared,
    relay: &Arc<Relay>,
    source: &Arc<Stream>,
    ladder: &TranscodeConfig,
    worker: &Worker,
    outs: &mut [RenditionOut],
) -> End {
    let name = source.name();
    let Some(sub) = source.subscribe(FEED_QUEUE, Instant::now()) else {
        return End::SourceEnded;
    };
    let args = command::args(ladder);
    let spawned = match spawn::spawn(&ladder.ffmpeg_path(), &args, ladder.renditions.len()) {
        Ok(s) => s,
        Err(e) => {
            warn!(stream = %name, "cannot start the transcode worker: {e}");
            return End::Restart("spawn_failed");
        }
    };
    let mut child = spawned.child;
    let pid = child.id();
    shared.metrics.transcode_workers().inc();
    {
        let mut s = lock(&worker.status);
        s.state = "running";
        s.pid = pid;
        s.progress = Progress::default();
    }
    info!(stream = %name, pid, renditions = ladder.renditions.len(), "transcode worker started");
    let live = Arc::new(Liveness {
        epoch: Instant::now(),
        last_output_ms: AtomicU64::new(0),
    });
    let stdin = child.stdin.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let start = Arc::new(FedAtomic::default());
    let charge = || {
        relay
            .memory()
            .map(|b| b.charge(prism_mem::Pool::Transcode, 0))
            .unwrap_or_default()
    };
    let feeder = tokio::spawn(feed(sub, stdin, start.clone(), charge()));
    let status: Arc<Mutex<Status>> = Arc::new(Mutex::new(Status::default()));
    let progress = tokio::spawn(read_progress(stderr, status.clone()));
    let mut readers = Vec::new();
    for ((r, pipe), o) in ladder
        .renditions
        .iter()
        .zip(spawned.outputs)
        .zip(outs.iter_mut())
    {
        let key = format!("{}_{}", source.key(), r.name);
        readers.push(tokio::spawn(read_rendition(
            relay.clone(),
            source.app().to_owned(),
            key,
            pipe,
            live.clone(),
            start.clone(),
            r.video.is_some(),
            std::mem::take(o),
            charge(),
        )));
    }
    let speed = shared.metrics.transcode_speed(name);
    let cpu = shared.metrics.transcode_cpu_seconds(name);
    // CPU of earlier runs (the API shows the stream's total, as the metric does).
    let cpu_base = lock(&worker.status).cpu_seconds;
    let mut cpu_seen = 0.0;
    let mut slow_since: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut feeder = Some(feeder);
    let end = loop {
        tokio::select! {
            exit = child.wait() => {
                let st = exit.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                if source.is_ended() {
                    break End::SourceEnded;
                }
                let last = lock(&status).progress.lines.back().cloned().unwrap_or_default();
                warn!(stream = %name, pid, "transcode worker exited ({st}): {last}");
                break End::Restart("exited");
            }
            _ = source.wait_ended() => break End::SourceEnded,
            r = async { feeder.as_mut().expect("set").await }, if feeder.is_some() => {
                feeder = None;
                match r {
                    Ok(Fed::SourceEnded) => break End::SourceEnded,
                    Ok(Fed::TooSlow) => break End::Restart("slow"),
                    // The worker stopped reading: its exit (or stall) tells why.
                    Ok(Fed::WriteFailed) | Err(_) => {}
                }
            }
            _ = tick.tick() => {
                let p = lock(&status).progress.clone();
                if let Some(pid) = pid {
                    if let Some(secs) = read_cpu(pid) {
                        if secs > cpu_seen {
                            cpu.inc_by(secs - cpu_seen);
                            cpu_seen = secs;
                        }
                    }
                }
                {
                    let mut s = lock(&worker.status);
                    s.progress = p.clone();
                    s.cpu_seconds = cpu_base + cpu_seen;
                }
                if let Some(v) = p.speed {
                    speed.set(v);
                }
                if live.quiet_for() >= STALL {
                    warn!(stream = %name, pid, "transcode worker stalled: no output for {STALL:?}");
                    break End::Restart("stalled");
                }
                match p.speed {
                    Some(v) if v < SLOW_SPEED => {
                        let since = *slow_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= SLOW_FOR {
                            warn!(stream = %name, pid, speed = v, "transcode worker too slow for {SLOW_FOR:?}");
                            break End::Restart("slow");
                        }
                    }
                    _ => slow_since = None,
                }
            }
        }
    };
    // Stop: close stdin (ffmpeg flushes and exits), then SIGTERM, then SIGKILL.
    if let Some(f) = feeder.take() {
        f.abort();
        let _ = f.await;
    }
    stop(&mut child, pid, end == End::SourceEnded).await;
    shared.metrics.transcode_workers().dec();
    // The pipes are closed now: readers drain what ffmpeg flushed and end, handing back
    // their rendition (one that does not is dropped: its stream waits out its reconnect
    // grace for the next run).
    for (r, o) in readers.into_iter().zip(outs.iter_mut()) {
        if let Ok(Ok(back)) = tokio::time::timeout(GRACEFUL, r).await {
            *o = back;
        }
    }
    progress.abort();
    {
        let p = lock(&status).progress.clone();
        let mut s = lock(&worker.status);
        s.progress = p;
    }
    end
}

/// Stops and reaps the worker, within GRACEFUL + TERM + a bounded SIGKILL wait.
async fn stop(child: &mut Child, pid: Option<u32>, graceful: bool) {
    // stdin is already closed (the feeder owned it).
    if graceful {
        if let Ok(r) = tokio::time::timeout(GRACEFUL, child.wait()).await {
            let _ = r;
            return;
        }
    }
    if let Some(pid) = pid {
        signal(pid, libc::SIGTERM);
        if tokio::time::timeout(TERM, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.start_kill();
    // SIGKILL cannot be ignored; the bound only guards against a kernel in trouble.
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

/// Sends `sig` to a child that has not been reaped yet (so its pid is still ours).
#[allow(unsafe_code)]
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid we spawned and have not waited for: it cannot be reused.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// procfs reads are answered from kernel memory at once: no need for a blocking thread.
fn read_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    command::cpu_seconds(&stat)
}

/// How feeding the worker ended.
enum Fed {
    SourceEnded,
    TooSlow,
    WriteFailed,
}

/// Source frames to the worker's stdin as FLV. Script data stays out (ffmpeg writes its
/// own onMetaData per rendition).
async fn feed(
    sub: prism_hub::Subscription,
    mut stdin: ChildStdin,
    start: Arc<FedAtomic>,
    mem: prism_mem::MemCharge,
) -> Fed {
    let mut out = BytesMut::with_capacity(CHUNK);
    mem.set(out.capacity());
    flv::header(true, true, &mut out);
    let mut batch: Vec<Arc<Frame>> = Vec::new();
    // The cached sequence headers carry the time they were sent (often 0), far before the
    // cached GOP: ffmpeg would take the gap for a discontinuity and shift its output. They
    // go out with the first media frame's timestamp instead.
    let mut held: Vec<Arc<Frame>> = Vec::new();
    let mut started = false;
    loop {
        let status = sub.recv(&mut batch, CHUNK).await;
        for f in batch.drain(..) {
            if f.kind == FrameKind::Data {
                continue;
            }
            if !started {
                if f.sequence_header {
                    if held.len() < 4 {
                        held.push(f);
                    }
                    continue;
                }
                started = true;
                for h in held.drain(..) {
                    flv::tag(h.kind, f.timestamp, &h.payload, &mut out);
                }
            }
            // The first of each, set once.
            let first = |slot: &AtomicU64, at: u32| {
                let _ = slot.compare_exchange(
                    0,
                    u64::from(at) + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            };
            match f.kind {
                _ if f.sequence_header => {}
                FrameKind::Video if f.keyframe => {
                    first(&start.key, align::pts(&f.payload, f.timestamp))
                }
                FrameKind::Audio => first(&start.audio, f.timestamp),
                _ => {}
            }
            flv::tag(f.kind, f.timestamp, &f.payload, &mut out);
        }
        if !out.is_empty() {
            // Grown past CHUNK only by a frame larger than it: kept, and charged, as it is.
            if out.capacity() != mem.bytes() {
                mem.set(out.capacity());
            }
            if stdin.write_all(&out).await.is_err() {
                return Fed::WriteFailed;
            }
            out.clear();
        }
        match status {
            RecvStatus::Frames => {}
            RecvStatus::Ended => return Fed::SourceEnded,
            RecvStatus::TooSlow => return Fed::TooSlow,
        }
    }
}

/// The worker's stderr, line by line (each bounded), into its progress report.
async fn read_progress(stderr: tokio::process::ChildStderr, status: Arc<Mutex<Status>>) {
    let mut r = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded: a line without a newline is cut at 4 KB.
        match (&mut r).take(4096).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                lock(&status).progress.line(text.trim_end_matches('\n'));
            }
        }
    }
}

/// The source's first frames fed to a run, as the feeder sets them (+ 1; 0: none yet).
#[derive(Debug, Default)]
struct FedAtomic {
    key: AtomicU64,
    audio: AtomicU64,
}

impl FedAtomic {
    fn get(&self) -> align::FedStart {
        let read = |a: &AtomicU64| a.load(Ordering::Relaxed).checked_sub(1).map(|v| v as u32);
        align::FedStart {
            key: read(&self.key),
            audio: read(&self.audio),
        }
    }
}

/// One rendition across the worker's runs: its publisher is kept over a restart, so its
/// players and targets stay, and the next run goes on after the last time sent.
#[derive(Default)]
struct RenditionOut {
    publisher: Option<Publisher>,
    last_ts: Option<u32>,
}

/// One rendition's FLV from its pipe, published as `app/key` from its first tag on.
/// Returns the rendition's publisher and last time sent.
#[allow(clippy::too_many_arguments)]
async fn read_rendition(
    relay: Arc<Relay>,
    app: String,
    key: String,
    mut pipe: tokio::net::unix::pipe::Receiver,
    live: Arc<Liveness>,
    fed: Arc<FedAtomic>,
    video: bool,
    mut out: RenditionOut,
    mem: prism_mem::MemCharge,
) -> RenditionOut {
    let info = ConnInfo {
        peer: ([127, 0, 0, 1], 0).into(),
        transport: "transcode",
    };
    let mut reader = flv::Reader::default();
    let mut aligner = align::Aligner::new(video, out.last_ts);
    let mut ready = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        // What stays between reads: tags already taken share the reader's allocation with
        // the hub's frames, which are charged there.
        mem.track(buf.capacity() + reader.buffered_bytes() + aligner.buffered_bytes());
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        reader.push(&buf[..n]);
        loop {
            let tag = match reader.next_tag() {
                Ok(Some(t)) => t,
                Ok(None) => break,
                Err(e) => {
                    warn!(stream = %format!("{app}/{key}"), "transcode worker output: {}", e.0);
                    out.last_ts = aligner.last_ts();
                    return out;
                }
            };
            live.touch();
            if aligner.push(tag, fed.get(), &mut ready).is_err() {
                warn!(stream = %format!("{app}/{key}"), "transcode worker output: no keyframe to align on");
                break;
            }
            for (t, ts) in ready.drain(..) {
                if out.publisher.is_none() {
                    match relay.publish_internal(&app, &key, &info) {
                        Ok(p) => out.publisher = Some(p),
                        // Logged and counted by the relay (someone else publishes the key).
                        Err(_) => return out,
                    }
                }
                if let Some(p) = &out.publisher {
                    p.send(t.kind, ts, t.body);
                }
            }
        }
    }
    out.last_ts = aligner.last_ts();
    out
}
