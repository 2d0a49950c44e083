//! `srt://` push targets: Prism calls an SRT listener and sends the stream as MPEG-TS.

use crate::media::{self, SendEnd};
use crate::stats::{self, Direction};
use futures::SinkExt;
use prism_config::ResolvedTarget;
use prism_hub::Subscription;
use prism_metrics::ErrorReason;
use prism_relay::{DialError, Relay, SinkFuture, SinkReport, TargetSink};
use srt_tokio::SrtSocket;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_LATENCY: Duration = Duration::from_millis(120);

/// The [`TargetSink`] for `srt://host:port?streamid=...&latency=...&passphrase=...`
/// (`latency` in milliseconds, as libsrt's URI syntax has it; `pbkeylen` 16, 24 or 32).
#[derive(Debug, Default)]
pub struct SrtSink {
    /// For statistics metrics; set once the relay exists (it owns the sinks).
    relay: OnceLock<Weak<Relay>>,
}

impl SrtSink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets the sink export per-connection SRT statistics through the relay's metrics.
    pub fn attach(&self, relay: &Arc<Relay>) {
        let _ = self.relay.set(Arc::downgrade(relay));
    }
}

/// A parsed `srt://` target URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SrtUrl {
    pub host: String,
    pub port: u16,
    pub stream_id: Option<String>,
    pub latency: Duration,
    pub passphrase: Option<String>,
    pub pbkeylen: u16,
}

impl SrtUrl {
    /// Parses a target URL. Errors never quote the URL (it holds secrets).
    pub fn parse(url: &str) -> Result<SrtUrl, &'static str> {
        let rest = url
            .strip_prefix("srt://")
            .or_else(|| url.strip_prefix("SRT://"))
            .ok_or("not an srt:// URL")?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.trim_end_matches('/');
        let (host, port) = authority.rsplit_once(':').ok_or("srt:// needs host:port")?;
        let port: u16 = port.parse().map_err(|_| "bad port")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err("srt:// needs host:port");
        }
        let mut out = SrtUrl {
            host: host.to_owned(),
            port,
            stream_id: None,
            latency: DEFAULT_LATENCY,
            passphrase: None,
            pbkeylen: 16,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = if v.contains('%') {
                crate::streamid::percent_decode(v).ok_or("bad percent-encoding")?
            } else {
                v.to_owned()
            };
            match k {
                "streamid" => out.stream_id = Some(v),
                "latency" => {
                    out.latency = Duration::from_millis(v.parse().map_err(|_| "bad latency")?)
                }
                "passphrase" => {
                    if !(10..=79).contains(&v.len()) {
                        return Err("passphrase must be 10..=79 bytes");
                    }
                    out.passphrase = Some(v)
                }
                "pbkeylen" => {
                    out.pbkeylen = v.parse().map_err(|_| "bad pbkeylen")?;
                    if ![16, 24, 32].contains(&out.pbkeylen) {
                        return Err("pbkeylen must be 16, 24 or 32");
                    }
                }
                // mode=caller is the only mode a target can have; others are libsrt
                // options srt-tokio does not offer.
                _ => {}
            }
        }
        Ok(out)
    }
}

impl TargetSink for SrtSink {
    fn scheme(&self) -> &'static str {
        "srt"
    }

    fn run<'a>(
        &'a self,
        sub: &'a Subscription,
        target: &'a ResolvedTarget,
        report: &'a SinkReport,
    ) -> SinkFuture<'a> {
        Box::pin(async move {
            let url =
                SrtUrl::parse(&target.url).map_err(|e| DialError::new(ErrorReason::BadUrl, e))?;
            let mut socket = tokio::time::timeout(CONNECT_TIMEOUT, call(&url))
                .await
                .map_err(|_| {
                    DialError::new(ErrorReason::ConnectTimeout, "SRT handshake timed out")
                })?
                .map_err(|e| DialError::new(ErrorReason::Connect, e))?;
            report.up.set(1);
            let _stats = self.relay.get().and_then(Weak::upgrade).map(|relay| {
                stats::watch_target(
                    &relay,
                    &mut socket,
                    sub.stream().name(),
                    Direction::Push,
                    &target.name,
                )
            });
            let bytes = report.bytes_sent.clone();
            // Queue depth and drops go out on the driver's periodic check.
            let audio = self
                .relay
                .get()
                .and_then(Weak::upgrade)
                .filter(|_| target.audio == prism_config::TargetAudio::Aac)
                .map(|relay| relay.aac_audio(sub.stream()));
            let end = media::send_stream(
                &mut socket,
                sub,
                audio,
                |n| bytes.inc_by(n as u64),
                || report.report(sub),
            )
            .await;
            match end {
                SendEnd::StreamEnded => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), socket.close()).await;
                    Ok(())
                }
                SendEnd::TooSlow => Err(DialError::new(
                    ErrorReason::TooSlow,
                    "target stayed over its queue budget",
                )),
                SendEnd::PeerGone => Err(DialError::new(
                    ErrorReason::Closed,
                    "SRT destination went away",
                )),
            }
        })
    }
}

async fn call(url: &SrtUrl) -> std::io::Result<SrtSocket> {
    let addr = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("no address for host"))?;
    let latency = url.latency;
    let mut builder = SrtSocket::builder().set(|o| crate::tune(o, latency));
    if let Some(p) = &url.passphrase {
        builder = builder.encryption(url.pbkeylen, p.clone());
    }
    builder.call(addr, url.stream_id.as_deref()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_target_urls() {
        let u = SrtUrl::parse(
            "srt://example.com:9000?streamid=%23%21%3A%3Ar%3Dlive%2Fk%2Cm%3Dpublish&latency=200&passphrase=0123456789&pbkeylen=32&mode=caller",
        )
        .unwrap();
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, 9000);
        assert_eq!(u.stream_id.as_deref(), Some("#!::r=live/k,m=publish"));
        assert_eq!(u.latency, Duration::from_millis(200));
        assert_eq!(u.passphrase.as_deref(), Some("0123456789"));
        assert_eq!(u.pbkeylen, 32);

        let u = SrtUrl::parse("srt://[::1]:9000").unwrap();
        assert_eq!((u.host.as_str(), u.stream_id), ("::1", None));
        // Unencoded access-control stream ids work too.
        let u = SrtUrl::parse("srt://h:1?streamid=#!::r=live/k,m=publish").unwrap();
        assert_eq!(u.stream_id.as_deref(), Some("#!::r=live/k,m=publish"));
    }

    #[test]
    fn bad_target_urls() {
        for bad in [
            "rtmp://h:1",
            "srt://h",
            "srt://h:0",
            "srt://:9000",
            "srt://h:1?latency=x",
            "srt://h:1?passphrase=short",
            "srt://h:1?pbkeylen=20",
            "srt://h:1?streamid=%zz",
        ] {
            assert!(SrtUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(!SrtUrl::parse("srt://h:1?passphrase=short")
            .unwrap_err()
            .contains("short"));
    }
}
