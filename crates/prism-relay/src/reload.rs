//! Applying a new configuration to a running relay (SIGHUP): the control plane stores it
//! and plans, per live stream, which configured targets to start, stop and restart
//! ([`prism_control::Control::plan_reload`]); this module carries the plan out, since
//! only the relay can start push targets. Publishers stay connected and untouched targets
//! keep their connection.

use crate::relay::Relay;
use prism_config::Config;
use prism_control::{ReloadReport, StreamChanges, TargetOrigin, TargetStatus};
use std::sync::Arc;
use tracing::{debug, info};

impl Relay {
    /// Applies a new (validated) configuration: stores it, then for every live stream
    /// starts the targets its routes now name, stops configured targets they no longer
    /// name (they unpublish) and restarts those whose URL or options changed. Publishers
    /// and unchanged targets are not touched; admin-API targets are left alone. Listener
    /// and `[stream]` changes need a restart: they are kept as running and reported.
    pub fn reload(self: &Arc<Self>, new: Config) -> ReloadReport {
        // Holds the reconcile lock while it is carried out.
        let plan = self.control().plan_reload(new);
        let mut report = ReloadReport {
            restart_needed: plan.restart_needed.clone(),
            ..Default::default()
        };
        report.sources = self.reload_sources();
        for sp in &plan.streams {
            let (stream, targets, plan) = (&sp.stream, &sp.targets, &sp.plan);
            let mut changes = StreamChanges {
                stream: stream.name().to_owned(),
                conflicts: plan.conflicts.clone(),
                ..Default::default()
            };
            for name in &plan.stop {
                if let Some(t) = targets.iter().find(|t| &t.name == name) {
                    t.cancel();
                    changes.stopped.push(name.clone());
                }
            }
            for target in &plan.start {
                let name = target.name.clone();
                match crate::push::spawn_target(self, stream, target.clone(), TargetOrigin::Config)
                {
                    Ok(_) => changes.started.push(name),
                    Err(e) => {
                        info!(stream = %stream.name(), target = %name, "target not started: {e}")
                    }
                }
            }
            for target in &plan.restart {
                let old: Vec<Arc<TargetStatus>> = targets
                    .iter()
                    .filter(|t| t.name == target.name)
                    .cloned()
                    .collect();
                changes.restarted.push(target.name.clone());
                for t in &old {
                    t.cancel();
                }
                let (relay, stream, target) = (self.clone(), stream.clone(), target.clone());
                // The new one starts once the old one has unpublished: the destination
                // would refuse a second publisher of the same key meanwhile.
                tokio::spawn(async move {
                    for t in &old {
                        t.finished().await;
                    }
                    let _reconciling = relay.control().reconcile_lock();
                    // Unless the stream ended or yet another reload changed it meanwhile.
                    let still_wanted = relay
                        .config()
                        .targets_for(stream.app(), stream.key())
                        .contains(&target);
                    if stream.is_ended() || !still_wanted {
                        return;
                    }
                    let name = target.name.clone();
                    if let Err(e) =
                        crate::push::spawn_target(&relay, &stream, target, TargetOrigin::Config)
                    {
                        debug!(stream = %stream.name(), target = %name, "target not restarted: {e}");
                    }
                });
            }
            report.streams.push(changes);
        }
        report
    }
}
