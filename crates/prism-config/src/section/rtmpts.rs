//! `[rtmpts]`: RTMP tunnelled over HTTPS; absent = off. The `[rtmpt]` keys (see
//! `rtmpt::RawTunnel`, where `cert` and `key` are declared) with `cert` and `key` required.

use toml::Spanned;

use super::rtmpt::{RawTunnel, TunnelConfig};
use super::FromRaw;
use crate::{Checker, ConfigError, TlsFiles};

/// `[rtmpts]` resolved; a missing `cert` or `key` is placed at the table.
pub(crate) fn resolve(
    cx: &Checker<'_>,
    raw: Spanned<RawTunnel>,
) -> Result<(TunnelConfig, TlsFiles), ConfigError> {
    let span = raw.span();
    let mut raw = raw.into_inner();
    let tls = super::tls_files(cx, raw.cert.take(), raw.key.take(), span, "rtmpts")?;
    Ok((TunnelConfig::from_raw(&mut raw, cx, "rtmpts")?, tls))
}
