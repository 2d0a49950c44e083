//! Certificates made with rcgen, real TLS over loopback sockets.

use super::*;
use prism_config::{Config, QueueConfig, ResolvedTarget, TargetTls, TlsFiles};
use prism_relay::Dialer;
use prism_rtmp::url::RtmpUrl;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A directory removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "prism-tls-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn test_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Prism test CA");
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, names: &[&str]) -> Leaf {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
    }
}

fn write_leaf(dir: &Dir, leaf: &Leaf) -> TlsFiles {
    TlsFiles {
        cert: dir.write("cert.pem", &leaf.cert_pem),
        key: dir.write("key.pem", &leaf.key_pem),
    }
}

/// A TLS echo server on loopback; returns its port.
async fn echo_server(tls: Arc<ReloadableTls>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = tls.clone();
            tokio::spawn(async move {
                let Ok(mut s) = tls.accept(tcp, Duration::from_secs(5)).await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    let _ = s.flush().await;
                }
            });
        }
    });
    port
}

fn target(ca: Option<&Path>, verify: bool) -> ResolvedTarget {
    ResolvedTarget {
        name: "t".into(),
        url: String::new(),
        queue: QueueConfig::default(),
        tls: TargetTls {
            ca: ca.map(Path::to_owned),
            verify,
        },
        audio: Default::default(),
        tracks: Default::default(),
    }
}

async fn dial(
    dialer: &TlsDialer,
    port: u16,
    host: &str,
    target: &ResolvedTarget,
) -> Result<prism_relay::BoxedStream, prism_relay::DialError> {
    let url = RtmpUrl::parse(&format!("rtmps://{host}:{port}/app/key")).unwrap();
    dialer.dial(&url, target).await
}

async fn echo(stream: &mut prism_relay::BoxedStream) {
    stream.write_all(b"ping").await.unwrap();
    stream.flush().await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}

/// Connects trusting `ca` and returns the leaf certificate the server presented.
async fn served_leaf(port: u16, ca: &CertificateDer<'static>) -> CertificateDer<'static> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[test]
fn load_names_the_file_at_fault() {
    let dir = Dir::new();
    let ca = test_ca();
    let good = write_leaf(&dir, &leaf(&ca, &["localhost"]));

    let missing = TlsFiles {
        cert: dir.0.join("nope.pem"),
        key: good.key.clone(),
    };
    let e = ReloadableTls::load(&missing).unwrap_err().to_string();
    assert!(e.contains("nope.pem"), "{e}");

    let not_pem = TlsFiles {
        cert: dir.write("junk.pem", "hello"),
        key: good.key.clone(),
    };
    let e = ReloadableTls::load(&not_pem).unwrap_err().to_string();
    assert!(
        e.contains("junk.pem") && e.contains("no certificate"),
        "{e}"
    );

    let no_key = TlsFiles {
        cert: good.cert.clone(),
        key: good.cert.clone(),
    };
    let e = ReloadableTls::load(&no_key).unwrap_err().to_string();
    assert!(
        e.contains("cert.pem") && e.contains("no private key"),
        "{e}"
    );

    let other = leaf(&ca, &["localhost"]);
    let mismatched = TlsFiles {
        cert: good.cert.clone(),
        key: dir.write("other-key.pem", &other.key_pem),
    };
    let e = ReloadableTls::load(&mismatched).unwrap_err();
    assert!(matches!(e, TlsError::Rejected { .. }), "{e}");
}

#[tokio::test]
async fn reload_swaps_the_certificate_for_new_connections_only() {
    let dir = Dir::new();
    let ca = test_ca();
    let first = leaf(&ca, &["localhost"]);
    let files = write_leaf(&dir, &first);
    let tls = Arc::new(ReloadableTls::load(&files).unwrap());
    let port = echo_server(tls.clone()).await;
    assert_eq!(served_leaf(port, ca.der()).await, first.der);

    let dialer = TlsDialer::new();
    let ca_file = dir.write("ca.pem", &ca.pem());
    let t = target(Some(&ca_file), true);
    let mut before = dial(&dialer, port, "localhost", &t).await.unwrap();

    let second = leaf(&ca, &["localhost"]);
    write_leaf(&dir, &second);
    tls.reload().unwrap();
    assert_eq!(served_leaf(port, ca.der()).await, second.der);
    // The connection made before the reload keeps its session.
    echo(&mut before).await;

    // A broken file is refused and the certificate in use stays.
    dir.write("cert.pem", "-----BEGIN CERTIFICATE-----\ngarbage");
    assert!(tls.reload().is_err());
    assert_eq!(served_leaf(port, ca.der()).await, second.der);
}

#[tokio::test]
async fn dialer_verifies_against_the_target_ca_or_the_webpki_roots() {
    let dir = Dir::new();
    let ca = test_ca();
    let files = write_leaf(&dir, &leaf(&ca, &["localhost", "127.0.0.1"]));
    let port = echo_server(Arc::new(ReloadableTls::load(&files).unwrap())).await;
    let ca_file = dir.write("ca.pem", &ca.pem());
    let dialer = TlsDialer::new();

    // The private CA named by the target: by DNS name and by IP address.
    let with_ca = target(Some(&ca_file), true);
    echo(&mut dial(&dialer, port, "localhost", &with_ca).await.unwrap()).await;
    echo(&mut dial(&dialer, port, "127.0.0.1", &with_ca).await.unwrap()).await;

    // The public roots do not know the test CA.
    let public = target(None, true);
    let e = dial(&dialer, port, "127.0.0.1", &public)
        .await
        .err()
        .unwrap();
    assert_eq!(e.reason.as_str(), "tls_verify", "{}", e.detail);
    assert!(e.detail.contains("UnknownIssuer"), "{}", e.detail);

    // Verification off: anything goes.
    let unverified = target(None, false);
    echo(&mut dial(&dialer, port, "127.0.0.1", &unverified).await.unwrap()).await;

    // One config per distinct (ca, verify).
    let a = dialer.client_config(&with_ca.tls).unwrap();
    let b = dialer.client_config(&with_ca.tls).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(dialer.configs.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn dialer_refuses_a_certificate_for_another_name() {
    let dir = Dir::new();
    let ca = test_ca();
    let files = write_leaf(&dir, &leaf(&ca, &["other.example"]));
    let port = echo_server(Arc::new(ReloadableTls::load(&files).unwrap())).await;
    let ca_file = dir.write("ca.pem", &ca.pem());
    let e = dial(
        &TlsDialer::new(),
        port,
        "localhost",
        &target(Some(&ca_file), true),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(e.reason.as_str(), "tls_verify", "{}", e.detail);
    assert!(e.detail.contains("not valid for name"), "{}", e.detail);
}

#[test]
fn a_bad_ca_file_fails_prepare_naming_it() {
    let dir = Dir::new();
    let ca = dir.write("ca.pem", "not a certificate");
    let text = format!(
        "[[route]]\nstream = \"live/*\"\n[[route.target]]\nname = \"fb\"\n\
         url = \"rtmps://example.com/app/{{stream}}\"\nca = {:?}\n",
        ca.display().to_string()
    );
    let config = Config::from_toml_str(&text, "test.toml").unwrap();
    let e = TlsDialer::new().prepare(&config).unwrap_err().to_string();
    assert!(e.contains("ca.pem"), "{e}");
}

#[tokio::test]
async fn plaintext_and_silent_clients_are_refused() {
    let dir = Dir::new();
    let ca = test_ca();
    let files = write_leaf(&dir, &leaf(&ca, &["localhost"]));
    let tls = ReloadableTls::load(&files).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    // A plain RTMP handshake (C0 + C1).
    let client = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0u8; 1536]);
        let _ = tcp.write_all(&c0c1).await;
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink).await;
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let e = tls.accept(tcp, Duration::from_secs(5)).await.err().unwrap();
    assert_eq!(e.reason.as_str(), "tls_handshake", "{}", e.detail);
    drop(e);
    client.await.unwrap();

    // A client that connects and says nothing.
    let _silent = TcpStream::connect(addr).await.unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let e = tls
        .accept(tcp, Duration::from_millis(200))
        .await
        .err()
        .unwrap();
    assert_eq!(e.reason.as_str(), "tls_handshake_timeout");
}
