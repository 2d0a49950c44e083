//! Start-up of the RTMPT and RTMPTS tunnel listeners (`[rtmpt]`, `[rtmpts]`): bound and
//! certificates loaded with the other listeners, served once the relay exists.

use anyhow::Context;
use prism_config::{Config, TunnelConfig};
use prism_relay::Relay;
use prism_transport_rtmpt::{Tunnel, RTMPT, RTMPTS};
use prism_transport_tls::ReloadableTls;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::info;

/// The tunnel listeners the config asks for, bound but not yet served.
pub struct Tunnels {
    rtmpt: Option<(TcpListener, TunnelConfig)>,
    rtmpts: Option<(TcpListener, TunnelConfig, Arc<ReloadableTls>)>,
}

/// Binds `[rtmpt]` and `[rtmpts]` and loads the latter's certificate; any failure is a
/// start-up error naming the listener or file.
pub async fn bind(config: &Config) -> anyhow::Result<Tunnels> {
    let rtmpt = match &config.rtmpt {
        None => None,
        Some(c) => {
            let listener = crate::bind_tcp(c.listen, "RTMPT", "[rtmpt] listen").await?;
            info!(rtmpt = %c.listen, "RTMPT listening");
            Some((listener, c.clone()))
        }
    };
    let rtmpts = match &config.rtmpts {
        None => None,
        Some((c, files)) => {
            let tls = ReloadableTls::load(files).context("loading the [rtmpts] certificate")?;
            let listener = crate::bind_tcp(c.listen, "RTMPTS", "[rtmpts] listen").await?;
            info!(rtmpts = %c.listen, "RTMPTS listening");
            Some((listener, c.clone(), Arc::new(tls)))
        }
    };
    Ok(Tunnels { rtmpt, rtmpts })
}

impl Tunnels {
    /// Certificates to re-read on SIGHUP.
    pub fn certificates(&self) -> impl Iterator<Item = Arc<ReloadableTls>> + '_ {
        self.rtmpts.iter().map(|(_, _, tls)| tls.clone())
    }

    /// Serves every bound listener; dropping (aborting) a returned task closes its
    /// listener.
    pub fn spawn(self, relay: &Arc<Relay>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some((listener, c)) = self.rtmpt {
            tasks.push(tokio::spawn(
                Tunnel::new(&c, RTMPT, relay.clone()).run(listener),
            ));
        }
        if let Some((listener, c, tls)) = self.rtmpts {
            tasks.push(tokio::spawn(
                Tunnel::new(&c, RTMPTS, relay.clone()).run_tls(listener, tls),
            ));
        }
        tasks
    }
}
