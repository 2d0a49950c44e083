//! Starting a worker: ffmpeg with the source on stdin, one pipe per rendition on fds
//! 3, 4, ..., stderr for progress, and no way to outlive Prism.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

use crate::command::FIRST_FD;

/// A running worker and the parent's ends of its pipes.
pub struct Spawned {
    pub child: Child,
    /// Rendition `i`'s FLV, in ladder order.
    pub outputs: Vec<pipe::Receiver>,
}

/// Starts `ffmpeg args` with `n` rendition pipes. Must be called on a runtime worker
/// thread that lives as long as Prism (any task is): see the PR_SET_PDEATHSIG note below.
pub fn spawn(ffmpeg: &Path, args: &[String], n: usize) -> std::io::Result<Spawned> {
    let mut readers = Vec::with_capacity(n);
    let mut writers: Vec<OwnedFd> = Vec::with_capacity(n);
    for _ in 0..n {
        // Both ends close-on-exec: only the dup2'd copies below reach ffmpeg.
        let (r, w) = std::io::pipe()?;
        readers.push(OwnedFd::from(r));
        writers.push(OwnedFd::from(w));
    }
    let raw: Vec<i32> = writers.iter().map(|w| w.as_raw_fd()).collect();
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = Command::new(ffmpeg);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // A leaked handle kills rather than orphans (the supervisor always waits first).
        .kill_on_drop(true)
        // Its own process group: a terminal's Ctrl-C reaches Prism, which stops the
        // workers in order, rather than every ffmpeg at once.
        .process_group(0);
    pre_exec(&mut cmd, raw, parent);
    let child = cmd.spawn()?;
    // The parent's write ends must close, or a reader would never see EOF.
    drop(writers);
    let outputs = readers
        .into_iter()
        .map(pipe::Receiver::from_owned_fd)
        .collect::<std::io::Result<_>>()?;
    Ok(Spawned { child, outputs })
}

/// In the forked child, before exec: die with Prism, and move the rendition pipes to fds
/// 3, 4, ... Only async-signal-safe calls (prctl, getppid, fcntl, dup2).
#[allow(unsafe_code)]
fn pre_exec(cmd: &mut Command, fds: Vec<i32>, parent: libc::pid_t) {
    // Above any fd the child can have at this point: the pipes are first copied there so
    // that placing one on fd 3 + i cannot overwrite another not yet placed.
    const PARK: i32 = 1000;
    let hook = move || -> std::io::Result<()> {
        // SAFETY: prctl, getppid, fcntl and dup2 are async-signal-safe system calls on
        // plain integers; nothing here allocates or takes a lock (the fd list was built
        // before the fork and is only read).
        unsafe {
            // SIGKILL when the thread that forked us dies: with Prism (even SIGKILLed),
            // or with its runtime thread (which only ends at Prism's exit).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Prism died between fork and prctl: nobody would send the signal.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("parent exited"));
            }
            let mut parked = [0i32; 64];
            if fds.len() > parked.len() {
                return Err(std::io::Error::other("too many renditions"));
            }
            for (i, fd) in fds.iter().enumerate() {
                let p = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, PARK + i as i32);
                if p < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                parked[i] = p;
            }
            for (i, p) in parked[..fds.len()].iter().enumerate() {
                // dup2 clears close-on-exec on the new fd: it is what ffmpeg inherits.
                if libc::dup2(*p, FIRST_FD + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe calls (see above).
    unsafe {
        cmd.pre_exec(hook);
    }
}
