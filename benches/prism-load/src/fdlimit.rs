//! RLIMIT_NOFILE: thousands of players or targets need thousands of file descriptors, in the
//! tool and in the relay (which inherits the tool's limits).
//!
//! The workspace forbids `unsafe`, so instead of calling setrlimit(2) through libc the
//! tool asks util-linux's `prlimit(1)` to change its own limits (prlimit(2) on our pid);
//! children spawned afterwards inherit them.

use std::process::Command;

/// (soft, hard) "Max open files" of a process ("self" or a pid), from /proc/<pid>/limits;
/// `u64::MAX` stands for "unlimited".
pub fn nofile(pid: &str) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut v = line["Max open files".len()..].split_whitespace().map(|x| {
        if x == "unlimited" {
            Some(u64::MAX)
        } else {
            x.parse().ok()
        }
    });
    Some((v.next()??, v.next()??))
}

/// Raises the tool's soft limit to at least `want` (and the hard limit too when it is lower
/// and we may: CAP_SYS_RESOURCE, which containers often drop even for root). Returns a line
/// for the log describing what happened.
pub fn raise_nofile(want: u64) -> String {
    let Some((soft, hard)) = nofile("self") else {
        return "cannot read /proc/self/limits; open-file limit left as is".into();
    };
    if soft >= want {
        return format!("open-file limit {soft} (needs {want})");
    }
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let new_hard = hard.max(want.min(nr_open));
    let new_soft = want.min(new_hard);
    let pid = std::process::id().to_string();
    let run = |s: u64, h: u64| {
        Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={s}:{h}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    // Raising the hard limit needs CAP_SYS_RESOURCE; without it, settle for the old one.
    let ok = run(new_soft, new_hard) || run(want.min(hard), hard);
    let now = nofile("self").map_or(0, |l| l.0);
    if ok && now >= want {
        format!("open-file limit raised from {soft} to {now} (needs {want})")
    } else {
        format!(
            "WARNING: open-file limit is {now} but the scenario needs about {want} \
             (prlimit(1) {}); expect failed connections",
            if ok { "set less" } else { "failed or missing" }
        )
    }
}
