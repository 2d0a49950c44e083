//! Planning a new configuration for a running relay (SIGHUP): the new config is stored, and
//! every live stream's configured targets are diffed with what its routes now name.
//! Publishers stay connected and untouched targets keep their connection.
//!
//! The decision is [`plan_targets`], a pure function of the running targets and the wanted
//! ones; `plan_streams` runs it for every live stream. Carrying the plan out (starting push
//! targets) is the relay's job: only it can spawn them.

use crate::registry::{LiveTargets, TargetOrigin, TargetStatus};
use prism_config::{Config, ResolvedTarget};
use prism_hub::Stream;
use std::collections::HashSet;
use std::sync::{Arc, MutexGuard};

/// A running target as the reconciliation sees it.
#[derive(Debug, Clone, Copy)]
pub struct Running<'a> {
    pub name: &'a str,
    pub origin: TargetOrigin,
    pub spec: &'a ResolvedTarget,
    /// Being removed (unpublishing); its name frees up when its task ends.
    pub cancelled: bool,
}

/// What to do to one stream's targets.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TargetPlan {
    /// New names: start.
    pub start: Vec<ResolvedTarget>,
    /// Configured targets no longer named by any route: stop (they unpublish).
    pub stop: Vec<String>,
    /// Same name, different URL or options (or the old one is still being removed):
    /// stop the old one, start this once it has gone.
    pub restart: Vec<ResolvedTarget>,
    /// Names the config wants but an admin-API target holds: left alone.
    pub conflicts: Vec<String>,
}

impl TargetPlan {
    pub fn is_empty(&self) -> bool {
        self.start.is_empty()
            && self.stop.is_empty()
            && self.restart.is_empty()
            && self.conflicts.is_empty()
    }
}

/// Diffs a stream's running targets against those its routes now name, by name.
/// Targets added through the admin API are never touched, and configured targets an
/// operator removed through it (`removed`) are not brought back.
pub fn plan_targets(
    running: &[Running<'_>],
    wanted: Vec<ResolvedTarget>,
    removed: &HashSet<String>,
) -> TargetPlan {
    let mut plan = TargetPlan::default();
    let wanted_names: HashSet<&str> = wanted.iter().map(|t| t.name.as_str()).collect();
    for r in running {
        if r.origin == TargetOrigin::Config && !r.cancelled && !wanted_names.contains(r.name) {
            plan.stop.push(r.name.to_owned());
        }
    }
    for t in wanted {
        if removed.contains(&t.name) {
            continue;
        }
        let live = running.iter().find(|r| r.name == t.name && !r.cancelled);
        match live {
            None if running.iter().any(|r| r.name == t.name) => plan.restart.push(t),
            None => plan.start.push(t),
            Some(r) if r.origin == TargetOrigin::Api => plan.conflicts.push(t.name),
            Some(r) if *r.spec != t => plan.restart.push(t),
            Some(_) => {}
        }
    }
    plan
}

/// What a reload changed, for the log.
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    /// Per live stream with changes: (stream, started, stopped, restarted, conflicts).
    pub streams: Vec<StreamChanges>,
    /// Config sections that changed but only take effect on restart (listeners and the
    /// like); the running values were kept for them.
    pub restart_needed: Vec<&'static str>,
    /// Pulled sources started, stopped and restarted (by stream); `conflicts`: streams the
    /// file names but an admin-API source pulls.
    pub sources: StreamChanges,
}

/// The target changes a reload made to one live stream.
#[derive(Debug, Clone, Default)]
pub struct StreamChanges {
    pub stream: String,
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
    /// Configured names an admin-API target holds on this stream (not started).
    pub conflicts: Vec<String>,
}

/// Sections read once at start-up (bound sockets, loaded certificates, the hub's
/// settings): a reload keeps their running values, so the stored config always says what
/// runs, and reports which ones differ.
pub(crate) fn keep_startup_sections(old: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if new.rtmp.listen != old.rtmp.listen {
        changed.push("[rtmp] listen");
        new.rtmp.listen = old.rtmp.listen;
    }
    macro_rules! keep {
        ($field:ident, $name:literal) => {
            if new.$field != old.$field {
                changed.push($name);
                new.$field = old.$field.clone();
            }
        };
    }
    keep!(http, "[http]");
    keep!(hub, "[stream]");
    keep!(rtmps, "[rtmps]");
    keep!(rtmpt, "[rtmpt]");
    keep!(rtmpts, "[rtmpts]");
    keep!(srt, "[srt]");
    keep!(rtsp, "[rtsp]");
    keep!(rtsps, "[rtsps]");
    keep!(webrtc, "[webrtc]");
    // The budget is sized once, at start (0 = automatic, resolved then).
    if new.limits.max_memory_mb != 0 && new.limits.max_memory_mb != old.limits.max_memory_mb {
        changed.push("[limits] max_memory_mb");
    }
    new.limits.max_memory_mb = old.limits.max_memory_mb;
    changed
}

/// One live stream's part of a reload plan.
#[derive(Debug)]
pub struct StreamPlan {
    pub stream: Arc<Stream>,
    /// Its targets when the plan was made (running or still being removed).
    pub targets: Vec<Arc<TargetStatus>>,
    pub plan: TargetPlan,
}

/// What a reload is to do. Holds the reconcile lock (see [`crate::Control::reconcile_lock`])
/// until dropped: no stream starts its configured targets from another config meanwhile.
#[derive(Debug)]
pub struct ReloadPlan<'a> {
    /// Sections that changed but only take effect on restart (kept as running).
    pub restart_needed: Vec<&'static str>,
    /// Live streams whose targets change.
    pub streams: Vec<StreamPlan>,
    pub(crate) _reconciling: MutexGuard<'a, ()>,
}

/// Diffs every live stream's targets against what `config` (the new one, already stored)
/// names for it.
pub(crate) fn plan_streams(config: &Config, live: Vec<LiveTargets>) -> Vec<StreamPlan> {
    let mut out = Vec::new();
    for live in live {
        let running: Vec<Running<'_>> = live
            .targets
            .iter()
            .map(|t| Running {
                name: &t.name,
                origin: t.origin,
                spec: &t.spec.0,
                cancelled: t.is_cancelled(),
            })
            .collect();
        let wanted = config.targets_for(live.stream.app(), live.stream.key());
        let plan = plan_targets(&running, wanted, &live.removed_config);
        if !plan.is_empty() {
            out.push(StreamPlan {
                stream: live.stream,
                targets: live.targets,
                plan,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_config::{QueueConfig, TargetTls};

    fn target(name: &str, url: &str) -> ResolvedTarget {
        ResolvedTarget {
            name: name.into(),
            url: url.into(),
            queue: QueueConfig::default(),
            tls: TargetTls::default(),
            audio: Default::default(),
            tracks: Default::default(),
        }
    }

    fn running<'a>(specs: &'a [(ResolvedTarget, TargetOrigin, bool)]) -> Vec<Running<'a>> {
        specs
            .iter()
            .map(|(t, origin, cancelled)| Running {
                name: &t.name,
                origin: *origin,
                spec: t,
                cancelled: *cancelled,
            })
            .collect()
    }

    #[test]
    fn adds_removes_and_keeps_by_name() {
        let a = target("a", "rtmp://h/app/a");
        let b = target("b", "rtmp://h/app/b");
        let c = target("c", "rtmp://h/app/c");
        let now = [
            (a.clone(), TargetOrigin::Config, false),
            (b.clone(), TargetOrigin::Config, false),
        ];
        let plan = plan_targets(&running(&now), vec![a, c.clone()], &HashSet::new());
        assert_eq!(
            plan,
            TargetPlan {
                start: vec![c],
                stop: vec!["b".into()],
                ..Default::default()
            }
        );
    }

    #[test]
    fn unchanged_config_is_a_no_op() {
        let a = target("a", "rtmp://h/app/a");
        let now = [(a.clone(), TargetOrigin::Config, false)];
        assert!(plan_targets(&running(&now), vec![a], &HashSet::new()).is_empty());
    }

    #[test]
    fn changed_url_or_queue_restarts() {
        let a = target("a", "rtmp://h/app/a");
        let b = target("b", "rtmp://h/app/b");
        let now = [
            (a.clone(), TargetOrigin::Config, false),
            (b.clone(), TargetOrigin::Config, false),
        ];
        let a2 = target("a", "rtmp://other/app/a");
        let mut b2 = b.clone();
        b2.queue.max_queue_ms = 1000;
        let plan = plan_targets(
            &running(&now),
            vec![a2.clone(), b2.clone()],
            &HashSet::new(),
        );
        assert_eq!(plan.restart, vec![a2, b2]);
        assert!(plan.start.is_empty() && plan.stop.is_empty());
    }

    #[test]
    fn api_targets_are_left_alone() {
        let x = target("x", "rtmp://h/app/x");
        let now = [(x.clone(), TargetOrigin::Api, false)];
        // Not in the config: not stopped.
        assert!(plan_targets(&running(&now), vec![], &HashSet::new()).is_empty());
        // The config now names it too: the API one keeps the name.
        let x2 = target("x", "rtmp://elsewhere/app/x");
        let plan = plan_targets(&running(&now), vec![x2], &HashSet::new());
        assert_eq!(plan.conflicts, vec!["x".to_string()]);
        assert!(plan.start.is_empty() && plan.restart.is_empty());
    }

    #[test]
    fn operator_removals_stick_and_removals_in_progress_wait() {
        let a = target("a", "rtmp://h/app/a");
        let b = target("b", "rtmp://h/app/b");
        // `a` was removed through the API and has finished; `b` is still unpublishing.
        let now = [(b.clone(), TargetOrigin::Config, true)];
        let removed: HashSet<String> = ["a".to_string()].into();
        let plan = plan_targets(&running(&now), vec![a, b.clone()], &removed);
        assert_eq!(
            plan,
            TargetPlan {
                restart: vec![b],
                ..Default::default()
            }
        );
    }

    #[test]
    fn startup_sections_are_kept_and_reported() {
        let old = Config::default();
        let mut new = Config::default();
        new.rtmp.listen = "127.0.0.1:1".parse().unwrap();
        new.rtmp.chunk_size = 8192;
        new.hub.gop_cache = false;
        let changed = keep_startup_sections(&old, &mut new);
        assert_eq!(changed, vec!["[rtmp] listen", "[stream]"]);
        assert_eq!(new.rtmp.listen, old.rtmp.listen);
        assert_eq!(new.hub, old.hub);
        // Settings read per connection apply.
        assert_eq!(new.rtmp.chunk_size, 8192);
    }

    #[test]
    fn memory_budget_is_kept_from_start() {
        let mut old = Config::default();
        // Resolved at start from 0 (automatic).
        old.limits.max_memory_mb = 6000;
        // Still automatic in the file: nothing to say, the running budget stays.
        let mut new = Config::default();
        assert!(keep_startup_sections(&old, &mut new).is_empty());
        assert_eq!(new.limits.max_memory_mb, 6000);
        // Set to another value: takes effect on restart, said so.
        new.limits.max_memory_mb = 512;
        assert_eq!(
            keep_startup_sections(&old, &mut new),
            vec!["[limits] max_memory_mb"]
        );
        assert_eq!(new.limits.max_memory_mb, 6000);
    }
}
