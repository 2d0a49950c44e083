//! Pulled sources (`[[source]]`): which transports pull which URL schemes in this build,
//! and the check that every configured source has one.

use prism_config::Config;
use prism_relay::{unsupported_scheme_message, Relay, SourcePuller};
use std::sync::Arc;

/// The pullers of this build, one per transport. A transport that pulls a new scheme
/// (RTSP, ...) adds its puller here.
pub(crate) fn pullers() -> Vec<Arc<dyn SourcePuller>> {
    vec![
        Arc::new(prism_relay::RtmpPuller),
        Arc::new(prism_transport_srt::SrtPuller),
        Arc::new(prism_transport_rtsp::RtspPuller),
    ]
}

/// `Err` names the first source whose URL scheme no puller of this build serves.
pub(crate) fn check(config: &Config) -> Result<(), String> {
    let pullers = pullers();
    for (i, s) in config.sources.iter().enumerate() {
        let scheme = s.scheme();
        if !pullers
            .iter()
            .any(|p| p.schemes().contains(&scheme.as_str()))
        {
            return Err(format!(
                "source[{i}] ({}): {}",
                s.stream,
                unsupported_scheme_message(&scheme)
            ));
        }
    }
    Ok(())
}

/// Registers the pullers and starts the configured sources.
pub(crate) fn start(relay: &Arc<Relay>) {
    for p in pullers() {
        relay.add_puller(p);
    }
    relay.start_sources();
}

/// Logs what a reload did to sources.
pub(crate) fn log_reload(changes: &prism_relay::StreamChanges) {
    let c = changes;
    if !(c.started.is_empty() && c.stopped.is_empty() && c.restarted.is_empty()) {
        tracing::info!(started = ?c.started, stopped = ?c.stopped, restarted = ?c.restarted, "sources updated from the new config");
    }
    if !c.conflicts.is_empty() {
        tracing::warn!(streams = ?c.conflicts, "configured sources not started: an admin-API source of the same stream runs");
    }
}
