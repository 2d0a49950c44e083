//! The TOML sections, one module each, and the `section!` macro that lets every key be
//! declared once: name, TOML type, resolved field and type, default, check and doc line.
//!
//! From one declaration the macro generates the raw serde struct (`deny_unknown_fields`,
//! values `Spanned` so errors carry `file:line:col`), the resolved struct with its
//! `Default`, the code that applies defaults and checks (errors name `prefix.key`), and the
//! key list ([`KeyDoc`]) the docs test reads.

use std::ops::Range;

use crate::{Checker, ConfigError};

/// One TOML key of a table: its name and its doc line. Test-only: the docs test reads it.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyDoc {
    pub name: &'static str,
    pub doc: &'static str,
}

/// Resolves one group of keys (a resolved struct) out of the raw table `R`, applying defaults
/// and checks; `prefix` is the table's path in messages (`rtmp`, `route[0].target[1]`).
/// Keys are taken out of `raw`, so each group is resolved once.
pub(crate) trait FromRaw<R>: Sized {
    fn from_raw(raw: &mut R, cx: &Checker<'_>, prefix: &str) -> Result<Self, ConfigError>;
}

/// Declares a TOML table:
///
/// ```text
/// section! {
///     #[derive(Default)]            // attributes of the raw struct (Default when no key is required)
///     raw RawRtmp;                  // the serde struct (its name shows in type errors)
///     /// doc of the resolved struct
///     define RtmpConfig {           // a group of keys resolved into one struct
///         /// doc line
///         chunk_size: u32 => chunk_size: u32 = default(4096), check check::range(128, 65536);
///     }
/// }
/// ```
///
/// Group modes: `define` (struct + `Default` + resolution), `define_required` (the same without
/// `Default`, for tables with a required key), `reuse` (resolution only, for a group defined by
/// another table: see `queue_keys!`), `raw` (keys kept raw, checked by hand, e.g. keys whose
/// checks need other keys). A key is `default(expr)` (optional) or `required()`; a raw key is
/// `name: Type;`, stored as written.
macro_rules! section {
    (
        $(#[$rmeta:meta])*
        raw $Raw:ident;
        $(
            $(#[$gmeta:meta])*
            $mode:ident $Group:ident {
                $(
                    #[doc = $doc:literal]
                    $(#[$fmeta:meta])*
                    $key:ident : $raw:ty
                    $( => $field:ident : $ty:ty = $pres:ident ( $($default:expr)? ), check $check:expr )? ;
                )*
            }
        )*
    ) => {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        $(#[$rmeta])*
        pub(crate) struct $Raw {
            $($(
                #[doc = $doc]
                $(#[$fmeta])*
                pub(crate) $key: raw_type!($raw $(, $pres)?),
            )*)*
        }

        impl $Raw {
            /// Every key of the table, in declaration order.
            #[cfg(test)]
            pub(crate) const KEYS: &'static [$crate::section::KeyDoc] = &[
                $($( $crate::section::KeyDoc { name: stringify!($key), doc: $doc }, )*)*
            ];
        }

        $(
            group! {
                $mode $Group $Raw [$(#[$gmeta])*] {
                    $( [$doc] $key [$( $field : $ty = $pres ( $($default)? ), $check )?] ; )*
                }
            }
        )*
    };
}

/// The raw (serde) type of a key: optional keys are `Option<Spanned<T>>`, required ones
/// `Spanned<T>`, raw ones as written.
macro_rules! raw_type {
    ($raw:ty, default) => { Option<toml::Spanned<$raw>> };
    ($raw:ty, required) => { toml::Spanned<$raw> };
    ($raw:ty) => { $raw };
}

/// One group of `section!`: its resolved struct (per mode) and its resolution.
macro_rules! group {
    (raw $Group:ident $Raw:ident [$($gmeta:tt)*] { $($keys:tt)* }) => {};
    (reuse $Group:ident $Raw:ident [$($gmeta:tt)*] { $($keys:tt)* }) => {
        group!(@resolve $Group $Raw { $($keys)* });
    };
    (define_required $Group:ident $Raw:ident [$(#[$gmeta:meta])*] {
        $( [$doc:literal] $key:ident [$field:ident : $ty:ty = $pres:ident ( $($default:expr)? ), $check:expr] ; )*
    }) => {
        $(#[$gmeta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $Group {
            $(
                #[doc = concat!("`", stringify!($key), "`:", $doc)]
                pub $field: $ty,
            )*
        }
        group!(@resolve $Group $Raw { $( [$doc] $key [$field : $ty = $pres ( $($default)? ), $check] ; )* });
    };
    (define $Group:ident $Raw:ident [$(#[$gmeta:meta])*] {
        $( [$doc:literal] $key:ident [$field:ident : $ty:ty = $pres:ident ( $($default:expr)? ), $check:expr] ; )*
    }) => {
        group!(define_required $Group $Raw [$(#[$gmeta])*] {
            $( [$doc] $key [$field : $ty = $pres ( $($default)? ), $check] ; )*
        });
        impl Default for $Group {
            fn default() -> Self {
                $Group { $( $field: default_value!($pres ( $($default)? )), )* }
            }
        }
    };
    (@resolve $Group:ident $Raw:ident {
        $( [$doc:literal] $key:ident [$field:ident : $ty:ty = $pres:ident ( $($default:expr)? ), $check:expr] ; )*
    }) => {
        impl $crate::section::FromRaw<$Raw> for $Group {
            fn from_raw(
                raw: &mut $Raw,
                cx: &$crate::Checker<'_>,
                prefix: &str,
            ) -> Result<Self, $crate::ConfigError> {
                Ok($Group {
                    $(
                        $field: {
                            let path = || format!("{prefix}.{}", stringify!($key));
                            resolve_key!($pres ( $($default)? ), raw.$key, cx, path, $ty, $check)
                        },
                    )*
                })
            }
        }
    };
}

/// The default of an optional key; a required key has none (a compile error in `define`).
macro_rules! default_value {
    (default ( $default:expr )) => {
        $default
    };
}

/// Applies a key's check to its raw value (errors placed at the value), or its default.
macro_rules! resolve_key {
    (default ( $default:expr ), $v:expr, $cx:ident, $path:ident, $ty:ty, $check:expr) => {
        match $v.take() {
            Some(v) => {
                let span = v.span();
                let checked: Result<$ty, String> = ($check)(v.into_inner());
                checked.map_err(|m| $cx.err(span, &$path(), m))?
            }
            None => $default,
        }
    };
    (required (), $v:expr, $cx:ident, $path:ident, $ty:ty, $check:expr) => {{
        let v = $v.clone();
        let span = v.span();
        let checked: Result<$ty, String> = ($check)(v.into_inner());
        checked.map_err(|m| $cx.err(span, &$path(), m))?
    }};
}

#[macro_use]
pub(crate) mod player;

pub(crate) mod auth;
pub(crate) mod edge;
pub(crate) mod hls;
pub(crate) mod http;
pub(crate) mod limits;
pub(crate) mod route;
pub(crate) mod rtmp;
pub(crate) mod rtmps;
pub(crate) mod rtmpt;
pub(crate) mod rtmpts;
pub(crate) mod rtsp;
pub(crate) mod source;
pub(crate) mod srt;
pub(crate) mod state;
pub(crate) mod stream;
pub(crate) mod target;
pub(crate) mod transcode;
pub(crate) mod webrtc;

/// The checks keys share. Each takes the raw value and returns the resolved one or a message
/// for the operator (the caller adds place and key).
pub(crate) mod check {
    use std::net::SocketAddr;
    use std::time::Duration;

    /// Any value.
    pub(crate) fn ok<T>(v: T) -> Result<T, String> {
        Ok(v)
    }

    /// A count or size where 0 would make the setting useless.
    pub(crate) fn positive<T: Default + PartialEq>(v: T) -> Result<T, String> {
        if v == T::default() {
            return Err("must be > 0".into());
        }
        Ok(v)
    }

    /// Milliseconds, any value.
    pub(crate) fn ms(v: u64) -> Result<Duration, String> {
        Ok(Duration::from_millis(v))
    }

    /// Milliseconds, 0 refused (a timeout of 0 would fire at once).
    pub(crate) fn positive_ms(v: u64) -> Result<Duration, String> {
        positive(v).map(Duration::from_millis)
    }

    /// A value in `lo..=hi`.
    pub(crate) fn range<T: PartialOrd + std::fmt::Display + Copy>(
        lo: T,
        hi: T,
    ) -> impl Fn(T) -> Result<T, String> {
        move |v| {
            if v < lo || v > hi {
                return Err(format!("must be in {lo}..={hi}"));
            }
            Ok(v)
        }
    }

    /// A listen address.
    pub(crate) fn addr(v: String) -> Result<SocketAddr, String> {
        v.parse().map_err(|_| {
            format!("`{v}` is not an IP:port address (e.g. 0.0.0.0:1935 or [::]:1935)")
        })
    }

    /// A token that travels in an HTTP header. Never echoes the value: only what is wrong.
    pub(crate) fn header_token(t: &str) -> Result<(), String> {
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_graphic()) {
            return Err(
                "must be printable ASCII without spaces (it travels in an HTTP header)".into(),
            );
        }
        Ok(())
    }
}

/// `cert` and `key` of a TLS listener, both present and non-empty; errors point at the table.
pub(crate) fn tls_files(
    cx: &Checker<'_>,
    cert: Option<String>,
    key: Option<String>,
    span: Range<usize>,
    table: &str,
) -> Result<crate::TlsFiles, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => Ok(crate::TlsFiles {
            cert: cert.into(),
            key: key.into(),
        }),
        _ => Err(cx.err(
            span,
            table,
            "needs `cert` and `key` (PEM files: the certificate chain and its private key)",
        )),
    }
}
