//! WebRTC peers for the end-to-end tests: FFmpeg 8's `whip` muxer (through PyAV) as a WHIP
//! publisher, and what it needs.

use super::*;

/// The Python with PyAV (FFmpeg 8 and its `whip` muxer): `PRISM_PYAV_PYTHON`, else the
/// venv scripts/test.sh makes in the target directory.
pub fn pyav_python() -> PathBuf {
    std::env::var_os("PRISM_PYAV_PYTHON")
        .map(Into::into)
        .unwrap_or_else(|| target_dir().join("pyav-venv/bin/python"))
}

/// A P-256 DTLS certificate and key for FFmpeg's whip muxer, in `dir`.
pub fn p256_cert(dir: &TempDir) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["ffmpeg".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Kills and reaps a child on drop.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// tests/py/pyav_ertmp.py publishing `vcodec` + `acodec` over Enhanced RTMP to `url` for
/// `seconds`, output discarded.
pub fn pyav_ertmp_publish(url: &str, vcodec: &str, acodec: &str, seconds: u32) -> Reaped {
    Reaped(
        Command::new(pyav_python())
            .arg(workspace_dir().join("tests/py/pyav_ertmp.py"))
            .args(["publish", url, vcodec, acodec, &seconds.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python pyav_ertmp.py publish"),
    )
}

/// tests/py/pyav_whip.py publishing to `url` with bearer `token` for `seconds` (then it
/// ends the session with a DELETE), output discarded.
pub fn pyav_whip(url: &str, token: &str, seconds: u32, cert: &(PathBuf, PathBuf)) -> Reaped {
    Reaped(
        Command::new(pyav_python())
            .arg(workspace_dir().join("tests/py/pyav_whip.py"))
            .args([url, token, &seconds.to_string()])
            .arg(&cert.0)
            .arg(&cert.1)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python pyav_whip.py"),
    )
}
