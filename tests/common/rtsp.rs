//! RTSP peers for the end-to-end tests: the simulated IP camera (GStreamer's RTSP server,
//! tests/rtsp_camera.py).

use super::*;
use std::io::{BufRead, BufReader};

/// The camera simulator serving `rtsp://admin:hunter22@127.0.0.1:PORT/cam` (H.264 + AAC
/// behind Digest auth); killed and reaped on drop.
pub struct Camera(Child);

impl Camera {
    pub fn start(port: u16) -> Camera {
        let script = workspace_dir().join("tests/rtsp_camera.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(port.to_string())
            .arg("/cam")
            .args([
                "--user",
                "admin",
                "--password",
                "hunter22",
                "--auth",
                "digest",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/bin/python3 tests/rtsp_camera.py (run ./scripts/test.sh)");
        let out = child.stdout.take().unwrap();
        let mut cam = Camera(child);
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        assert_eq!(line.trim(), "READY", "camera simulator did not start");
        cam.0.stdout = None;
        cam
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
