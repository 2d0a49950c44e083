#!/usr/bin/env python3
"""Records the HTTP requests a real RTMPT client (ffmpeg) sends, for the rtmpt_request seed
corpus: /fcs/ident2, /open/1, /send/<id>/<seq> with RTMP bytes, /idle/..., /close/....

Runs Prism (target/release/prism, copied first so a concurrent build cannot swap it) with
an [rtmpt] listener, puts a logging TCP proxy in front of it and publishes a short stream
with ffmpeg over rtmpt://. Run from the workspace root after `cargo build --release`.
"""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WS = os.path.dirname(ROOT)
OUT = os.path.join(ROOT, "corpus", "rtmpt_request")
CAP = 48 * 1024


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    tmp = tempfile.mkdtemp(prefix="prism-rtmpt-")
    prism = os.path.join(tmp, "prism")
    shutil.copy(os.path.join(WS, "target", "release", "prism"), prism)
    rtmp, http, tunnel, front = free_port(), free_port(), free_port(), free_port()
    with open(f"{tmp}/prism.toml", "w") as f:
        f.write(f'[rtmp]\nlisten = "127.0.0.1:{rtmp}"\n[http]\nlisten = "127.0.0.1:{http}"\n'
                f'[rtmpt]\nlisten = "127.0.0.1:{tunnel}"\n')
    log = open(f"{tmp}/prism.log", "w")
    server = subprocess.Popen([prism, "--config", f"{tmp}/prism.toml"], stdout=log, stderr=log)
    captured = []

    def serve(listener):
        while True:
            try:
                c, _ = listener.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", tunnel))
            buf = bytearray()
            captured.append(buf)
            threading.Thread(target=pump, args=(c, u, buf), daemon=True).start()
            threading.Thread(target=pump, args=(u, c, None), daemon=True).start()

    def pump(a, b, buf):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                if buf is not None and len(buf) < CAP:
                    buf.extend(d[: CAP - len(buf)])
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", front))
    listener.listen(8)
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
    try:
        time.sleep(1.0)
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
             "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "2",
             "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "20k", "-f", "flv",
             f"rtmpt://127.0.0.1:{front}/live/tunnelcam"],
            timeout=30)
        time.sleep(0.5)
    finally:
        server.terminate()
        server.wait()
        listener.close()
    os.makedirs(OUT, exist_ok=True)
    stream = b"".join(bytes(b) for b in captured)
    # The whole request stream (heads and bodies), and the request heads alone.
    with open(os.path.join(OUT, "ffmpeg_publish_stream"), "wb") as f:
        f.write(stream[:CAP])
    heads = b"".join(
        m.group(0) + b"\r\n" for m in re.finditer(rb"(POST|GET) \S+ HTTP/1\.[01]", stream)
    )
    with open(os.path.join(OUT, "ffmpeg_publish_request_lines"), "wb") as f:
        f.write(heads[:CAP])
    print(f"{len(captured)} connections, {len(stream)} bytes, {heads.count(b'HTTP/')} requests")


main()
