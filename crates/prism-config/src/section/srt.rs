//! `[srt]`: the SRT listener (MPEG-TS ingest and play); absent = off.

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::{check, FromRaw};
use crate::{Checker, ConfigError};

section! {
    raw RawSrt;
    /// TOML table `[srt]`.
    define_required SrtConfig {
        /// UDP address, e.g. `0.0.0.0:9000`.
        listen: String => listen: SocketAddr = required(), check check::addr;
        /// Receive latency we ask for (the larger of both sides' wins), default 120.
        // SRT carries latency in 16-bit milliseconds in the handshake.
        latency_ms: u64 => latency: Duration = default(Duration::from_millis(120)),
            check |v: u64| check::range(0, 65_535)(v).map(Duration::from_millis);
        /// Callers must encrypt with it (10..=79 bytes); absent = no encryption.
        passphrase: String => passphrase: Option<SrtPassphrase> = default(None),
            check passphrase;
        /// AES key length in bytes (16, 24 or 32; default 16); only with `passphrase`.
        pbkeylen: u8 => pbkeylen: u8 = default(16), check |v: u8| match v {
            16 | 24 | 32 => Ok(v),
            _ => Err("must be 16, 24 or 32".to_string()),
        };
        /// `app/key` for callers that send no stream id; absent = refuse them.
        default_stream: String => default_stream: Option<String> = default(None),
            check default_stream;
    }
}

fn passphrase(p: String) -> Result<Option<SrtPassphrase>, String> {
    // Never echo the value: only its length.
    if !(10..=79).contains(&p.len()) {
        return Err(format!("must be 10..=79 bytes long (it is {})", p.len()));
    }
    Ok(Some(SrtPassphrase(p)))
}

fn default_stream(v: String) -> Result<Option<String>, String> {
    let ok = matches!(v.split_once('/'), Some((a, k))
        if !a.is_empty() && !k.is_empty() && !k.contains('/'));
    if !ok {
        return Err("must be `app/key` (e.g. `live/main`)".into());
    }
    Ok(Some(v))
}

/// `[srt]` resolved; `pbkeylen` without `passphrase` is refused first, whatever its value.
pub(crate) fn resolve(cx: &Checker<'_>, raw: Spanned<RawSrt>) -> Result<SrtConfig, ConfigError> {
    let mut raw = raw.into_inner();
    if let (Some(v), None) = (&raw.pbkeylen, &raw.passphrase) {
        return Err(cx.err(
            v.span(),
            "srt.pbkeylen",
            "only applies with `passphrase` (no passphrase = no encryption)",
        ));
    }
    SrtConfig::from_raw(&mut raw, cx, "srt")
}

/// An SRT passphrase. `Debug` never shows it, so configs can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtPassphrase(String);

impl SrtPassphrase {
    /// The passphrase itself, for handing to the SRT engine only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SrtPassphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SrtPassphrase(<redacted>)")
    }
}
