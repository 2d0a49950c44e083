//! A test CA made with rcgen and the leaf certificates it signs, as PEM files: for the
//! TLS listeners (`[rtmps]`, `[hls] cert/key`) and the peers that must trust them.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::TempDir;

/// A test CA and the leaf certificates it signs, as PEM files.
pub struct Pki {
    pub dir: TempDir,
    pub ca: CertifiedIssuer<'static, KeyPair>,
    pub ca_pem: PathBuf,
}

/// A leaf certificate's files and DER.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Prism e2e test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("self-sign CA");
        let dir = TempDir::new("pki");
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca.pem()).expect("write ca.pem");
        Pki { dir, ca, ca_pem }
    }

    /// A leaf for 127.0.0.1 and localhost, written to `<name>.pem` and `<name>.key`.
    pub fn leaf(&self, name: &str) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("leaf params")
            .signed_by(&key, &self.ca)
            .expect("sign leaf");
        let leaf = Leaf {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
            der: cert.der().to_vec(),
        };
        std::fs::write(&leaf.cert, cert.pem()).expect("write cert");
        std::fs::write(&leaf.key, key.serialize_pem()).expect("write key");
        leaf
    }

    /// The leaf certificate a TLS server at `addr` presents, checked against the test CA.
    pub fn served_leaf(&self, addr: SocketAddr) -> Result<Vec<u8>, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca.der().clone())
            .map_err(|e| e.to_string())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = "localhost".try_into().map_err(|e| format!("{e:?}"))?;
        let mut conn =
            rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let mut tcp =
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
        }
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or("no peer certificate")?
            .to_vec();
        // Close politely so that the server does not log a reset.
        conn.send_close_notify();
        let _ = conn.complete_io(&mut tcp);
        Ok(leaf)
    }
}
