//! DVR spill to `[hls] dvr_dir`: the disk side of the packager's [`DiskJob`]s.
//!
//! Each window (one stream's packaging, see `HlsStream`) gets a directory of its own,
//! `dvr_dir/w<16 hex digits>` (an opaque id, not the stream key: keys are secrets), mode
//! 0700, holding one file per segment and track (`video-<msn>.m4s`, mode 0600). A writer
//! task per window takes the packager's jobs whenever it changes, writes and deletes on a
//! blocking thread, and reports writes back; when the window is dropped it removes the
//! directory. Window directories left by a crash or a shutdown are removed at start
//! ([`prepare`]). A failed write (disk full, permissions) is logged once per window and
//! counted in `prism_hls_dvr_errors_total{op="write"}`; the packager then keeps that
//! window in memory (bounded by `dvr_max_mb`) and nothing else is disturbed.

use crate::HlsStream;
use bytes::Bytes;
use prism_hls::{DiskJob, TrackKind};
use prism_metrics::Metrics;
use std::fs;
use std::io::{self, Read, Seek, Write};
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, warn};

/// Segment files read at once (each read holds at most a segment in memory).
const MAX_READS: usize = 32;
/// A disk operation that takes longer than this failed (a hung network filesystem).
const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// How often an idle writer checks whether its window is gone.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// `dvr_dir` of the process.
#[derive(Debug)]
pub(crate) struct Root {
    dir: PathBuf,
    reads: Semaphore,
    metrics: Metrics,
}

impl Root {
    pub(crate) fn new(dir: PathBuf, metrics: Metrics) -> Arc<Root> {
        Arc::new(Root {
            dir,
            reads: Semaphore::new(MAX_READS),
            metrics,
        })
    }

    /// The directory of window `instance`.
    pub(crate) fn window(self: &Arc<Root>, instance: u64) -> Window {
        Window {
            root: self.clone(),
            dir: self.dir.join(window_name(instance)),
        }
    }
}

fn window_name(instance: u64) -> String {
    format!("w{instance:016x}")
}

fn is_window_name(name: &str) -> bool {
    name.len() == 17 && name.starts_with('w') && name[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// One window's directory.
#[derive(Debug)]
pub(crate) struct Window {
    root: Arc<Root>,
    dir: PathBuf,
}

impl Window {
    fn file(&self, track: TrackKind, msn: u64) -> PathBuf {
        self.dir.join(format!("{}-{msn}.m4s", track.as_str()))
    }

    /// `len` bytes at `offset` of the file of segment `msn`. None: the file is gone (the
    /// segment left the window meanwhile) or unreadable (counted).
    pub(crate) async fn read(
        &self,
        track: TrackKind,
        msn: u64,
        offset: u64,
        len: u64,
    ) -> Option<Bytes> {
        let permit = tokio::time::timeout(IO_TIMEOUT, self.root.reads.acquire())
            .await
            .ok()?
            .ok()?;
        let path = self.file(track, msn);
        let len = usize::try_from(len).ok()?;
        let read = tokio::task::spawn_blocking(move || -> io::Result<Bytes> {
            let mut f = fs::File::open(path)?;
            f.seek(io::SeekFrom::Start(offset))?;
            let mut buf = vec![0; len];
            f.read_exact(&mut buf)?;
            Ok(Bytes::from(buf))
        });
        let result = tokio::time::timeout(IO_TIMEOUT, read).await;
        drop(permit);
        match result {
            Ok(Ok(Ok(b))) => Some(b),
            Ok(Ok(Err(e))) if e.kind() == io::ErrorKind::NotFound => None,
            other => {
                debug!(window = %self.dir.display(), "DVR read failed: {other:?}");
                self.root.metrics.hls_dvr_error("read").inc();
                None
            }
        }
    }
}

/// Runs the disk jobs of `hs`'s window until the window is dropped, then removes its
/// directory.
pub(crate) async fn run_writer(hs: Weak<HlsStream>, mut changed: watch::Receiver<u64>) {
    let Some(window) = hs.upgrade().and_then(|h| h.dvr.clone()) else {
        return;
    };
    let mut created = false;
    let mut logged = false;
    loop {
        let Some(stream) = hs.upgrade() else {
            break;
        };
        let jobs = stream.packager().take_disk_jobs();
        if !jobs.is_empty() {
            let results = run_jobs(&window, jobs, &mut created).await;
            let mut failed = false;
            {
                let mut p = stream.packager();
                for (track, msn, ok) in results {
                    p.spilled(track, msn, ok);
                    failed |= !ok;
                }
            }
            if failed && !logged {
                logged = true;
                // No stream name: it holds the key; the window id is in the path.
                warn!(window = %window.dir.display(), app = %stream.app(), "DVR spill to dvr_dir failed; this stream's DVR window stays in memory (bounded by dvr_max_mb)");
            }
        }
        drop(stream);
        // The version changes with every part; an error means the window is gone.
        if let Ok(Err(_)) = tokio::time::timeout(IDLE_CHECK, changed.changed()).await {
            break;
        }
    }
    let dir = window.dir.clone();
    let removed = tokio::task::spawn_blocking(move || remove_dir(&dir)).await;
    if !matches!(removed, Ok(Ok(()))) {
        window.root.metrics.hls_dvr_error("delete").inc();
    }
}

/// Does `jobs` in order on a blocking thread; the outcome of each write.
async fn run_jobs(
    window: &Window,
    jobs: Vec<DiskJob>,
    created: &mut bool,
) -> Vec<(TrackKind, u64, bool)> {
    let writes: Vec<(TrackKind, u64)> = jobs
        .iter()
        .filter_map(|j| match j {
            DiskJob::Write { track, msn, .. } => Some((*track, *msn)),
            DiskJob::Delete { .. } => None,
        })
        .collect();
    let dir = window.dir.clone();
    let paths: Vec<PathBuf> = jobs
        .iter()
        .map(|j| match j {
            DiskJob::Write { track, msn, .. } | DiskJob::Delete { track, msn } => {
                window.file(*track, *msn)
            }
        })
        .collect();
    let need_dir = !*created;
    let work = tokio::task::spawn_blocking(move || {
        let mut dir_ok = !need_dir || create_private_dir(&dir).is_ok();
        let mut out = Vec::new();
        let mut delete_errors = 0u64;
        for (job, path) in jobs.into_iter().zip(paths) {
            match job {
                DiskJob::Write { track, msn, parts } => {
                    let ok = dir_ok && write_file(&path, &parts).is_ok();
                    if !ok {
                        // Don't leave half a file behind.
                        let _ = fs::remove_file(&path);
                        // The directory may have been the problem: try it again next time.
                        dir_ok = false;
                    }
                    out.push((track, msn, ok));
                }
                DiskJob::Delete { .. } => match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => delete_errors += 1,
                    _ => {}
                },
            }
        }
        (dir_ok, out, delete_errors)
    });
    match tokio::time::timeout(IO_TIMEOUT, work).await {
        Ok(Ok((dir_ok, out, delete_errors))) => {
            *created = dir_ok;
            let m = &window.root.metrics;
            let failed = out.iter().filter(|(_, _, ok)| !ok).count() as u64;
            if failed > 0 {
                m.hls_dvr_error("write").inc_by(failed);
            }
            if delete_errors > 0 {
                m.hls_dvr_error("delete").inc_by(delete_errors);
            }
            out
        }
        // Timed out (the thread goes on; its files are removed with the window) or the
        // thread panicked: every write of the batch failed.
        _ => {
            window
                .root
                .metrics
                .hls_dvr_error("write")
                .inc_by(writes.len() as u64);
            writes.into_iter().map(|(t, m)| (t, m, false)).collect()
        }
    }
}

/// Owner-only directories and files where the platform has modes (a stream's media is
/// not for other local users).
fn dir_builder() -> fs::DirBuilder {
    #[allow(unused_mut)]
    let mut b = fs::DirBuilder::new();
    #[cfg(unix)]
    b.mode(0o700);
    b
}

fn file_options() -> fs::OpenOptions {
    #[allow(unused_mut)]
    let mut o = fs::OpenOptions::new();
    #[cfg(unix)]
    o.mode(0o600);
    o
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    match dir_builder().create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ if !dir.is_dir() => Err(io::Error::other("not a directory")),
        _ => Ok(()),
    }
}

fn write_file(path: &Path, parts: &[Bytes]) -> io::Result<()> {
    let mut f = file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    for p in parts {
        f.write_all(p)?;
    }
    Ok(())
}

fn remove_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `prism check`: `dir` is a writable directory, or could be created (its nearest existing
/// ancestor is a writable directory). Creates nothing.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let mut at = dir;
    loop {
        match fs::metadata(at) {
            Ok(m) if m.is_dir() => {
                return writable(at).map_err(|e| {
                    if at == dir {
                        format!("{} is not writable: {e}", dir.display())
                    } else {
                        format!(
                            "{} cannot be created in {}: {e}",
                            dir.display(),
                            at.display()
                        )
                    }
                })
            }
            Ok(_) => return Err(format!("{} is not a directory", at.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => at = Path::new("."),
            },
            Err(e) => return Err(format!("{}: {e}", at.display())),
        }
    }
}

/// Whether we may create files in `dir`: try one (root passes any mode check).
fn writable(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(".prism-check-{}", std::process::id()));
    file_options().write(true).create_new(true).open(&probe)?;
    fs::remove_file(&probe)
}

/// At start: creates `dir` (mode 0700) if needed, checks it is writable, and removes the
/// window directories a previous run left behind (nothing else in it is touched).
pub fn prepare(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        dir_builder()
            .recursive(true)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        #[cfg(unix)]
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    check_dir(dir)?;
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let stale = entry.file_name().to_str().is_some_and(is_window_name);
        if stale && entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_dir(&entry.path())
                .map_err(|e| format!("removing {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("prism-dvr-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    #[cfg(unix)]
    fn prepare_creates_private_dir_and_removes_only_stale_windows() {
        let root = temp("prepare");
        let dir = root.join("a/b");
        fs::create_dir_all(&root).unwrap();
        assert_eq!(check_dir(&dir), Ok(()), "creatable");
        assert!(!dir.exists(), "check creates nothing");
        prepare(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let stale = dir.join(window_name(42));
        fs::create_dir(&stale).unwrap();
        fs::write(stale.join("video-1.m4s"), b"x").unwrap();
        fs::write(dir.join("notes.txt"), b"mine").unwrap();
        prepare(&dir).unwrap();
        assert!(!stale.exists(), "stale window removed");
        assert!(dir.join("notes.txt").exists(), "other files kept");
        // A file where a directory should be.
        let file = root.join("file");
        fs::write(&file, b"").unwrap();
        assert!(check_dir(&file.join("dvr")).is_err());
        assert!(check_dir(&file).is_err());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn window_names() {
        assert!(is_window_name(&window_name(0)));
        assert!(is_window_name(&window_name(u64::MAX)));
        assert!(!is_window_name("wxyz"));
        assert!(!is_window_name("notes.txt"));
    }
}
