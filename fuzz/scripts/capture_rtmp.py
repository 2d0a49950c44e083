#!/usr/bin/env python3
"""Records real RTMP/RTMPT/SRT traffic from ffmpeg for the fuzz seed corpora.

Starts nginx-rtmp on loopback, puts a byte-logging TCP proxy in front of it, publishes a
short synthetic stream with ffmpeg through the proxy (and plays it back with a second
ffmpeg), then writes:

  corpus/rtmp_handshake/  client->server bytes from the start (C0 C1 C2 + first chunks)
  corpus/rtmp_chunk/      client->server chunk stream after the handshake (+ split byte)
  corpus/rtmp_session/    the same, for the session target (its harness makes the handshake)
  corpus/rtmp_client_session/  nginx-rtmp's replies after S0 S1 S2 (+ split byte)
  corpus/amf0/            every AMF0 command/data payload seen in either direction

Usage: python3 fuzz/scripts/capture_rtmp.py  (from the workspace root; needs ffmpeg,
nginx and libnginx-mod-rtmp). Files are capped well below 64 KiB.
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "corpus")
CAP = 60 * 1024
HS = 1 + 1536 + 1536


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Proxy(threading.Thread):
    """Accepts connections on `port`, forwards to `upstream`, logs the first CAP bytes of
    each direction per connection."""

    def __init__(self, port, upstream):
        super().__init__(daemon=True)
        self.port, self.upstream = port, upstream
        self.sessions = []  # (client->server bytearray, server->client bytearray)
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", port))
        self.srv.listen(8)

    def run(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.upstream))
            logs = (bytearray(), bytearray())
            self.sessions.append(logs)
            for a, b, log in ((c, u, logs[0]), (u, c, logs[1])):
                threading.Thread(target=self.pump, args=(a, b, log), daemon=True).start()

    @staticmethod
    def pump(a, b, log):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                if len(log) < CAP:
                    log.extend(d[: CAP - len(log)])
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def messages(stream):
    """Reassembles RTMP messages from a chunk stream (after the handshake)."""
    pos, chunk_size, prev, partial = 0, 128, {}, {}
    out = []
    while pos < len(stream):
        b0 = stream[pos]
        fmt, csid = b0 >> 6, b0 & 0x3F
        pos += 1
        if csid == 0:
            csid, pos = 64 + stream[pos], pos + 1
        elif csid == 1:
            csid, pos = 64 + stream[pos] + (stream[pos + 1] << 8), pos + 2
        h = dict(prev.get(csid, {"ts": 0, "len": 0, "type": 0, "sid": 0}))
        if fmt <= 2:
            h["ts"] = int.from_bytes(stream[pos : pos + 3], "big")
        if fmt <= 1:
            h["len"] = int.from_bytes(stream[pos + 3 : pos + 6], "big")
            h["type"] = stream[pos + 6]
        if fmt == 0:
            h["sid"] = int.from_bytes(stream[pos + 7 : pos + 11], "little")
        pos += [11, 7, 3, 0][fmt]
        if fmt <= 2 and h["ts"] == 0xFFFFFF:
            pos += 4
        prev[csid] = h
        buf = partial.get(csid, b"")
        n = min(chunk_size, h["len"] - len(buf))
        buf += stream[pos : pos + n]
        pos += n
        if pos > len(stream):
            break
        if len(buf) == h["len"]:
            partial[csid] = b""
            out.append((h["type"], bytes(buf)))
            if h["type"] == 1:
                chunk_size = int.from_bytes(buf[:4], "big") & 0x7FFFFFFF
        else:
            partial[csid] = buf
    return out


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    tmp = tempfile.mkdtemp(prefix="prism-capture-")
    rtmp_port, proxy_port = free_port(), free_port()
    conf = f"""load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off; master_process off; worker_processes 1;
pid {tmp}/nginx.pid; error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
rtmp {{ server {{ listen 127.0.0.1:{rtmp_port}; chunk_size 4096;
  application app {{ live on; }} }} }}
"""
    with open(f"{tmp}/nginx.conf", "w") as f:
        f.write(conf)
    nginx = subprocess.Popen(["nginx", "-p", tmp, "-e", f"{tmp}/error.log", "-c", f"{tmp}/nginx.conf"])
    try:
        time.sleep(0.5)
        proxy = Proxy(proxy_port, rtmp_port)
        proxy.start()
        url = f"rtmp://127.0.0.1:{proxy_port}/app/cam1?token=abc"
        pub = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
             "-f", "lavfi", "-i", "testsrc=size=96x64:rate=15",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
             "-t", "8", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
             "-g", "15", "-b:v", "60k", "-c:a", "aac", "-b:a", "24k", "-f", "flv", url])
        time.sleep(1.0)
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-probesize", "32768",
             "-analyzeduration", "1000000", "-i",
             f"rtmp://127.0.0.1:{proxy_port}/app/cam1", "-t", "1", "-f", "null", "-"],
            timeout=20)
        pub.wait(timeout=30)
        time.sleep(0.5)
    finally:
        nginx.terminate()
        nginx.wait()

    names = ["publish", "play"]
    amf = 0
    for i, (c2s, s2c) in enumerate(proxy.sessions[:2]):
        name = names[i]
        c2s, s2c = bytes(c2s), bytes(s2c)
        print(f"{name}: {len(c2s)} bytes client->server, {len(s2c)} server->client")
        write("rtmp_handshake", f"ffmpeg_{name}_start", c2s[: HS + 600])
        chunks = c2s[HS:]
        # The targets read their last byte as the split pattern: 0 = whole input.
        write("rtmp_chunk", f"ffmpeg_{name}", chunks[:20 * 1024] + b"\x00")
        write("rtmp_session", f"ffmpeg_{name}", chunks[:20 * 1024] + b"\x00")
        if len(chunks) > 800:
            write("rtmp_session", f"ffmpeg_{name}_commands", chunks[:800] + b"\x00")
        # What nginx-rtmp answered: seeds for the push client (the harness makes S0-S2).
        write("rtmp_client_session", f"nginx_{name}_replies", s2c[HS:][:20 * 1024] + b"\x00")
        for direction, stream in (("c2s", chunks), ("s2c", s2c[HS:])):
            try:
                msgs = messages(stream)
            except IndexError:
                msgs = []
            for ty, payload in msgs:
                if ty in (18, 20) or (ty in (15, 17) and payload[:1] == b"\x00"):
                    body = payload if ty in (18, 20) else payload[1:]
                    if len(body) < CAP:
                        write("amf0", f"ffmpeg_{name}_{direction}_{amf:02}", body)
                        amf += 1
    print(f"{amf} AMF0 payloads")


if __name__ == "__main__":
    sys.exit(main())
