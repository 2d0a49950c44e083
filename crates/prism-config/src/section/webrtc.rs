//! `[webrtc]`: WHIP ingest and WHEP playback (HTTP signalling plus one UDP port for all
//! media); absent = off.

use std::net::{IpAddr, SocketAddr};

use toml::Spanned;

use super::{check, FromRaw};
use crate::{Checker, ConfigError, TlsFiles};

section! {
    raw RawWebrtc;
    /// The keys of `[webrtc]` that are checked one by one.
    define_required WebrtcKeys {
        /// Address of the WHIP/WHEP signalling HTTP endpoint, e.g. `0.0.0.0:8889`.
        listen: String => listen: SocketAddr = required(), check check::addr;
        /// UDP address of all WebRTC media (ICE-lite, sessions told apart by ICE ufrag and address), e.g. `0.0.0.0:8189`.
        udp: String => udp: SocketAddr = required(), check check::addr;
        /// Addresses advertised as ICE candidates (behind NAT, in containers); absent = the `udp` address, or this host's addresses if it is unspecified.
        public_ips: Vec<String> => public_ips: Vec<IpAddr> = default(Vec::new()),
            check public_ips;
        /// STUN/TURN URLs sent to clients in `Link` headers (RFC 9725 §4.6).
        ice_servers: Vec<String> => ice_servers: Vec<String> = default(Vec::new()),
            check ice_servers;
        /// WebRTC sessions (WHIP and WHEP) at once (default 1000); more get 503.
        max_sessions: usize => max_sessions: usize = default(1000), check check::positive;
        /// WebRTC sessions at once from one client IP (default 20); more get 429.
        max_sessions_per_ip: usize => max_sessions_per_ip: usize = default(20),
            check check::positive;
        /// ICE consent (RFC 7675): a session whose peer sent no STUN binding request for this long (default 30000) ends, whatever else it sends; at least 5000 (browsers check every 5 s or so).
        consent_timeout_ms: u64 => consent_timeout: std::time::Duration =
            default(std::time::Duration::from_secs(30)), check consent_timeout;
    }
    raw Files {
        /// Certificate chain, PEM: serve the signalling over HTTPS; re-read on SIGHUP.
        #[serde(default)]
        cert: Option<String>;
        /// Its private key, PEM.
        #[serde(default)]
        key: Option<String>;
    }
}

fn public_ips(v: Vec<String>) -> Result<Vec<IpAddr>, String> {
    v.iter()
        .map(|s| {
            let ip: IpAddr = s
                .parse()
                .map_err(|_| format!("`{s}` is not an IP address"))?;
            if ip.is_unspecified() {
                return Err(format!("`{s}` cannot be advertised to clients"));
            }
            Ok(ip)
        })
        .collect()
}

fn consent_timeout(ms: u64) -> Result<std::time::Duration, String> {
    if !(5_000..=600_000).contains(&ms) {
        return Err("must be 5000 to 600000 (ms)".into());
    }
    Ok(std::time::Duration::from_millis(ms))
}

fn ice_servers(v: Vec<String>) -> Result<Vec<String>, String> {
    for s in &v {
        let scheme_ok = ["stun:", "stuns:", "turn:", "turns:"]
            .iter()
            .any(|p| s.starts_with(p) && s.len() > p.len());
        if !scheme_ok || !s.chars().all(|c| c.is_ascii_graphic()) || s.contains(['<', '>', '"']) {
            return Err(format!("`{s}` is not a stun:, stuns:, turn: or turns: URL"));
        }
    }
    Ok(v)
}

/// `[webrtc]` resolved; `span` (the table) places a lone `cert` or `key`.
pub(crate) fn resolve(
    cx: &Checker<'_>,
    raw: Spanned<RawWebrtc>,
) -> Result<WebrtcConfig, ConfigError> {
    let span = raw.span();
    let mut raw = raw.into_inner();
    let keys = WebrtcKeys::from_raw(&mut raw, cx, "webrtc")?;
    let tls = match (raw.cert.take(), raw.key.take()) {
        (None, None) => None,
        (cert, key) => Some(super::tls_files(cx, cert, key, span, "webrtc")?),
    };
    Ok(WebrtcConfig { keys, tls })
}

/// TOML table `[webrtc]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebrtcConfig {
    pub keys: WebrtcKeys,
    /// `cert` and `key`: HTTPS signalling instead of plain HTTP.
    pub tls: Option<TlsFiles>,
}

impl std::ops::Deref for WebrtcConfig {
    type Target = WebrtcKeys;
    fn deref(&self) -> &WebrtcKeys {
        &self.keys
    }
}
