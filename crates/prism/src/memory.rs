//! Sizing the media-memory budget (`[limits] max_memory_mb`): unless configured, a quarter
//! of what the process may use, the machine's memory or its cgroup's limit, whichever is
//! lower (a container sees the host's MemTotal in /proc/meminfo).

use prism_config::Limits;
use tracing::info;

/// Share of the available memory the automatic budget takes: the rest is for the
/// process's own overhead (allocator slack, sockets' user-space buffers, TLS, tasks) and
/// for whatever else runs on the machine.
const AUTO_DIVISOR: u64 = 4;
/// Floor of the automatic budget, in MiB: a machine too small to say is still given room
/// for a few streams.
const AUTO_MIN_MB: u64 = 64;

/// Resolves `max_memory_mb = 0` (automatic) to its value and logs the budget.
pub fn resolve_budget(limits: &mut Limits) {
    let available = available_bytes();
    if limits.max_memory_mb == 0 {
        let auto = available.map_or(1024, |b| (b / AUTO_DIVISOR) >> 20);
        limits.max_memory_mb = auto.max(AUTO_MIN_MB);
        info!(
            max_memory_mb = limits.max_memory_mb,
            available_mb = available.map(|b| b >> 20),
            "media memory budget: a quarter of the memory available ([limits] max_memory_mb = 0)"
        );
    } else {
        info!(
            max_memory_mb = limits.max_memory_mb,
            available_mb = available.map(|b| b >> 20),
            "media memory budget ([limits] max_memory_mb)"
        );
    }
}

/// Memory the process may use: the lower of MemTotal and the cgroup's limit (v2, then v1).
fn available_bytes() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| mem_total(&s));
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|p| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| cgroup_limit(&s))
    });
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// MemTotal from /proc/meminfo, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// A cgroup memory limit file: bytes, or `max` (none). cgroup v1 says "none" with a huge
/// number (about 2^63), taken as none too.
fn cgroup_limit(s: &str) -> Option<u64> {
    let v: u64 = s.trim().parse().ok()?;
    (v < 1 << 60).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo_and_cgroup_limits() {
        let meminfo = "MemTotal:       16314128 kB\nMemFree:         1234 kB\n";
        assert_eq!(mem_total(meminfo), Some(16314128 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(cgroup_limit("max\n"), None);
        assert_eq!(cgroup_limit("536870912\n"), Some(512 << 20));
        assert_eq!(cgroup_limit("9223372036854771712\n"), None);
    }

    #[test]
    fn automatic_budget_is_a_quarter_with_a_floor() {
        let mut l = Limits {
            max_memory_mb: 0,
            ..Limits::default()
        };
        resolve_budget(&mut l);
        assert!(l.max_memory_mb >= AUTO_MIN_MB);
        if let Some(b) = available_bytes() {
            assert_eq!(l.max_memory_mb, ((b / 4) >> 20).max(AUTO_MIN_MB));
        }
        let mut set = Limits {
            max_memory_mb: 300,
            ..Limits::default()
        };
        resolve_budget(&mut set);
        assert_eq!(set.max_memory_mb, 300);
    }
}
