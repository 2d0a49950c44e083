#!/usr/bin/env python3
"""RTSP players load: N TCP (interleaved) players of one stream, and what they cost the
server process: CPU seconds per delivered Gbit.

    benches/rtsp-players.py --url rtsp://127.0.0.1:8554/live/bench --players 500 \
        --pid $(pidof prism) --seconds 20

Each player sends DESCRIBE, SETUP for every track of the SDP (interleaved 0-1, 2-3, ...)
and PLAY, then reads and discards everything, counting bytes. After every player plays and
a warm-up, CPU time of --pid (utime + stime from /proc) and bytes read are sampled over
--seconds. Standard library only (asyncio).
"""
import argparse
import asyncio
import os
import re
import time

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    m = re.search(rb"Content-Length:\s*(\d+)", head, re.I)
    body = await reader.readexactly(int(m.group(1))) if m else b""
    return head.decode(errors="replace"), body.decode(errors="replace")


class Player:
    def __init__(self):
        self.bytes = 0
        self.ok = False
        self.error = None

    async def run(self, host, port, url, stop):
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
            head, sdp = await read_response(reader)
            if not head.startswith("RTSP/1.0 200"):
                raise RuntimeError(head.splitlines()[0])
            controls = re.findall(r"a=control:(trackID=\d+)", sdp)
            session = None
            for i, c in enumerate(controls):
                s = f"Session: {session}\r\n" if session else ""
                writer.write(
                    f"SETUP {url}/{c} RTSP/1.0\r\nCSeq: {2 + i}\r\n{s}"
                    f"Transport: RTP/AVP/TCP;unicast;interleaved={2 * i}-{2 * i + 1}\r\n\r\n".encode()
                )
                head, _ = await read_response(reader)
                session = re.search(r"Session:\s*([^;\r\n]+)", head).group(1)
            writer.write(f"PLAY {url} RTSP/1.0\r\nCSeq: 9\r\nSession: {session}\r\n\r\n".encode())
            head, _ = await read_response(reader)
            if not head.startswith("RTSP/1.0 200"):
                raise RuntimeError(head.splitlines()[0])
            self.ok = True
            while not stop.is_set():
                data = await reader.read(256 * 1024)
                if not data:
                    raise RuntimeError("closed by the server")
                self.bytes += len(data)
            writer.close()
        except Exception as e:  # noqa: BLE001 - reported per player
            self.error = repr(e)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--players", type=int, default=100)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=3)
    args = ap.parse_args()
    m = re.match(r"rtsp://([^:/]+):(\d+)", args.url)
    host, port = m.group(1), int(m.group(2))
    stop = asyncio.Event()
    players = [Player() for _ in range(args.players)]
    tasks = []
    for i in range(0, len(players), 100):
        tasks += [asyncio.create_task(p.run(host, port, args.url, stop)) for p in players[i:i + 100]]
        await asyncio.sleep(0.2)
    deadline = time.monotonic() + 60
    while sum(p.ok or p.error is not None for p in players) < len(players):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(args.warmup)
    cpu0, b0, t0 = cpu_seconds(args.pid), sum(p.bytes for p in players), time.monotonic()
    await asyncio.sleep(args.seconds)
    cpu1, b1, t1 = cpu_seconds(args.pid), sum(p.bytes for p in players), time.monotonic()
    stop.set()
    playing = sum(p.ok and p.error is None for p in players)
    errors = [p.error for p in players if p.error]
    gbit = (b1 - b0) * 8 / 1e9
    secs = t1 - t0
    print(f"players={args.players} playing={playing} errors={len(errors)} {errors[:3]}")
    print(f"delivered={gbit / secs * 1000:.1f} Mbit/s  server_cpu={(cpu1 - cpu0) / secs:.3f} cores  "
          f"cpu_s_per_gbit={(cpu1 - cpu0) / gbit if gbit else float('nan'):.2f}")
    for t in tasks:
        t.cancel()


if __name__ == "__main__":
    asyncio.run(main())
