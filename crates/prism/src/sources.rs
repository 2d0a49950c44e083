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
