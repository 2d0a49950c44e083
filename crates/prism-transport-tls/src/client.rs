//! The dialing side: `rtmps://` push targets.

use crate::files::{load_certs, TlsError};
use prism_config::{Config, ResolvedTarget, TargetTls};
use prism_relay::ErrorReason;
use prism_relay::{BoxedStream, DialError, DialFuture, Dialer};
use prism_rtmp::url::RtmpUrl;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio_rustls::TlsConnector;
use tracing::warn;

/// What a client config depends on: the target's `ca` and `tls_verify`.
type ConfigKey = (Option<PathBuf>, bool);

/// Dials `rtmps://` push targets: TCP (with the capped send buffer of plain RTMP targets),
/// then TLS with SNI set to the URL's host.
///
/// The server certificate is verified against the `webpki-roots` CAs, or against the
/// target's `ca` file only when it has one. `tls_verify = false` skips verification
/// (handshake signatures are still checked) and is logged as a warning once per target.
/// Client configs are built once per distinct (`ca`, `tls_verify`) and shared.
#[derive(Debug, Default)]
pub struct TlsDialer {
    pub(crate) configs: Mutex<HashMap<ConfigKey, Arc<ClientConfig>>>,
    warned: Mutex<HashSet<String>>,
}

impl TlsDialer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the client config of every `rtmps://` and `rtmpts://` target in `config` now, so that an
    /// unreadable or invalid `ca` file is a start-up error, and warns about each target
    /// that has verification off.
    pub fn prepare(&self, config: &Config) -> Result<(), TlsError> {
        for target in config.routes.iter().flat_map(|r| &r.targets) {
            if !prism_config::is_tls_target_url(&target.url) {
                continue;
            }
            self.client_config(&target.tls)?;
            if !target.tls.verify {
                self.warn_unverified(&target.name);
            }
        }
        Ok(())
    }

    fn warn_unverified(&self, target: &str) {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.insert(target.to_owned()) {
            warn!(
                target_name = target,
                "TLS verification disabled for target {target} — testing only"
            );
        }
    }

    /// The cached client config for `tls`, built on first use. Failures are not cached: a
    /// fixed CA file is picked up by the next attempt.
    pub(crate) fn client_config(&self, tls: &TargetTls) -> Result<Arc<ClientConfig>, TlsError> {
        let key = (tls.ca.clone(), tls.verify);
        if let Some(c) = self
            .configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        let config = Arc::new(build(tls)?);
        Ok(self
            .configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert(config)
            .clone())
    }
}

impl Dialer for TlsDialer {
    fn scheme(&self) -> &'static str {
        "rtmps"
    }

    fn dial<'a>(&'a self, url: &'a RtmpUrl, target: &'a ResolvedTarget) -> DialFuture<'a> {
        Box::pin(async move {
            let config = self
                .client_config(&target.tls)
                .map_err(|e| DialError::new(ErrorReason::TlsConfig, e))?;
            if !target.tls.verify {
                self.warn_unverified(&target.name);
            }
            // An IP address host gives an IpAddress name (verified against IP SANs, no SNI).
            let name = ServerName::try_from(url.host.clone()).map_err(|_| {
                DialError::new(
                    ErrorReason::TlsConfig,
                    format!("{:?} is not a valid TLS server name", url.host),
                )
            })?;
            let tcp = prism_transport_rtmp::connect(&url.host, url.port)
                .await
                .map_err(|e| DialError::new(ErrorReason::Connect, e))?;
            let tls = TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(classify)?;
            Ok(Box::new(crate::LenientClose(tls)) as BoxedStream)
        })
    }
}

/// Wraps a connected TCP stream in TLS as a client of `host`, verifying as `tls` says:
/// for pulls over TLS (`rtsps://` sources). The client config is built per call (pulls
/// connect rarely; targets use [`TlsDialer`]'s cache).
pub async fn connect_client(
    tcp: tokio::net::TcpStream,
    host: &str,
    tls: &TargetTls,
) -> Result<BoxedStream, DialError> {
    let config = Arc::new(build(tls).map_err(|e| DialError::new(ErrorReason::TlsConfig, e))?);
    let name = ServerName::try_from(host.to_owned()).map_err(|_| {
        DialError::new(
            ErrorReason::TlsConfig,
            format!("{host:?} is not a valid TLS server name"),
        )
    })?;
    let stream = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(classify)?;
    Ok(Box::new(crate::LenientClose(stream)) as BoxedStream)
}

/// `tls_verify` when the destination's certificate was refused (untrusted, expired, wrong
/// name, ...), `tls_handshake` for any other failure.
fn classify(e: std::io::Error) -> DialError {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(_)) => DialError::new(ErrorReason::TlsVerify, e),
        _ => DialError::new(ErrorReason::TlsHandshake, e),
    }
}

fn build(tls: &TargetTls) -> Result<ClientConfig, TlsError> {
    let provider = crate::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?;
    let config = if !tls.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        match &tls.ca {
            Some(path) => {
                for cert in load_certs(path)? {
                    roots.add(cert).map_err(|e| TlsError::BadCa {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(config)
}

/// Accepts any server certificate (`tls_verify = false`), but still checks that the server
/// signed the handshake with the key of the certificate it sent.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
