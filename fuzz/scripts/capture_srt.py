#!/usr/bin/env python3
"""Records the datagrams a real SRT caller (ffmpeg/libsrt) sends to a listener, for the
srt_handshake seed corpus: induction, conclusion (with HSREQ and stream id extensions,
plain and encrypted with KMREQ), then data and control packets.

An ffmpeg listener receives; an ffmpeg caller publishes through a UDP relay in this script
that writes each caller->listener datagram to corpus/srt_handshake/. Run from the workspace
root; needs ffmpeg built with libsrt.
"""
import os
import socket
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "corpus", "srt_handshake")


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run(tag, caller_opts, listener_opts, keep):
    listen_port = free_udp_port()
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", 0))
    front_port = front.getsockname()[1]
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.bind(("127.0.0.1", 0))
    caller = [None]
    seen = []
    stop = threading.Event()

    def c2l():
        front.settimeout(0.2)
        while not stop.is_set():
            try:
                d, addr = front.recvfrom(65536)
            except socket.timeout:
                continue
            caller[0] = addr
            seen.append(d)
            back.sendto(d, ("127.0.0.1", listen_port))

    def l2c():
        back.settimeout(0.2)
        while not stop.is_set():
            try:
                d, _ = back.recvfrom(65536)
            except socket.timeout:
                continue
            if caller[0]:
                front.sendto(d, caller[0])

    threads = [threading.Thread(target=f, daemon=True) for f in (c2l, l2c)]
    for t in threads:
        t.start()
    ff = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    listener = subprocess.Popen(
        ff + ["-i", f"srt://127.0.0.1:{listen_port}?mode=listener{listener_opts}",
              "-t", "1", "-f", "null", "-"])
    time.sleep(0.5)
    pub = subprocess.run(
        ff + ["-re", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "1.5",
              "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "20k", "-f", "mpegts",
              f"srt://127.0.0.1:{front_port}?mode=caller{caller_opts}"],
        timeout=30)
    try:
        listener.wait(timeout=10)
    except subprocess.TimeoutExpired:
        listener.kill()
        listener.wait()
    stop.set()
    for t in threads:
        t.join()
    os.makedirs(OUT, exist_ok=True)
    control = [d for d in seen if d[:1] and d[0] & 0x80]
    data = [d for d in seen if d[:1] and not d[0] & 0x80]
    picked = control[:keep] + data[:1]
    for i, d in enumerate(picked):
        with open(os.path.join(OUT, f"libsrt_{tag}_{i:02}"), "wb") as f:
            f.write(d)
    print(f"{tag}: {len(seen)} datagrams, kept {len(picked)}; caller exit {pub.returncode}")


run("plain", "&streamid=%23!::r=live/cam1,m=publish&latency=120000", "", 6)
run("aes128", "&streamid=live/cam2&passphrase=0123456789abcdef&pbkeylen=16",
    "&passphrase=0123456789abcdef&pbkeylen=16", 6)
run("filecc", "&transtype=file", "&transtype=file", 3)
