#!/usr/bin/env python3
"""RTSP cameras restreamed to RTMP: N cameras pulled at --kbps and each pushed to its own
RTMP target, by Prism (N `[[source]]` + one route) and, side by side, by N
`ffmpeg -rtsp_transport tcp -i rtsp://... -c copy -f flv rtmp://...` processes (the way
people do it by hand). Reports CPU (utime + stime from /proc) and RSS per camera.

    cargo build --release -p prism
    benches/rtsp-cameras.py --cameras 100 --kbps 2000 --seconds 15

The cameras are GStreamer RTSP servers (tests/rtsp_camera.py, `pattern=snow` so the
encoder spends the whole bitrate, RTP over TCP, one shared encoder per server process);
--camera-procs spreads the N cameras' URLs over that many server processes, each with one
unmeasured primer client from the start. The RTMP
target of every camera is a second Prism (RTMP ingest only) whose
`prism_ingest_bytes_total` shows what arrived. Each side: start, wait until the sink has
N live streams, --warmup, then sample CPU and RSS of the side's processes over --seconds.
Results: a Markdown table on stdout and benches/results/<date>-rtsp-cameras.{json,md}.
Standard library only; needs /usr/bin/python3 with GStreamer's RTSP server (see
tests/rtsp_camera.py) and ffmpeg.
"""
import argparse
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except OSError:
        return 0.0


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KB
    except OSError:
        return 0


def metrics(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_until(what, timeout, f):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = f()
        if v:
            return v
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def wait_streams(sink_port, n, timeout):
    """Waits until the sink has `n` live streams, or their number stopped growing for 10 s
    (some cameras refused their client: the simulator sometimes does under a burst).
    Returns the number live."""
    deadline = time.monotonic() + timeout
    best, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        live = int(metric_sum(metrics(sink_port), "prism_streams_active"))
        if live >= n:
            return live
        if live > best:
            best, since = live, time.monotonic()
        elif live > 0 and time.monotonic() - since > 10:
            return live
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {n} streams at the sink")


def start_prism(binary, config, tmp, name):
    path = os.path.join(tmp, f"{name}.toml")
    with open(path, "w") as f:
        f.write(config)
    log = open(os.path.join(tmp, f"{name}.log"), "w")
    p = subprocess.Popen(
        [binary, "--config", path], stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    return p


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def start_cameras(n, kbps, tmp):
    cams = []
    script = os.path.join(ROOT, "tests", "rtsp_camera.py")
    for i in range(n):
        port = free_port()
        log = open(os.path.join(tmp, f"camera{i}.log"), "w")
        p = subprocess.Popen(
            ["/usr/bin/python3", script, str(port), "/cam", "--protocols", "tcp",
             "--kbps", str(kbps), "--pattern", "snow"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True,
        )
        line = p.stdout.readline()
        if "READY" not in line:
            raise RuntimeError(f"camera {i} did not start (see {tmp}/camera{i}.log)")
        cams.append((p, port))
    return cams


def prime_cameras(cams, tmp):
    """One client per camera server from the start, kept to the end: the shared media is
    built once, before the burst of N clients (a GStreamer server hit by many first
    clients at once sometimes never answers them). Not measured."""
    primers = []
    for i, (_, port) in enumerate(cams):
        log = open(os.path.join(tmp, f"primer{i}.log"), "w")
        primers.append(subprocess.Popen(
            ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-rtsp_transport", "tcp",
             "-i", f"rtsp://127.0.0.1:{port}/cam", "-c", "copy", "-f", "null", "-"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
        ))
        time.sleep(1)
    time.sleep(2)
    return primers


def measure(pids, sink_port, seconds):
    """CPU seconds of `pids` and bytes the sink ingested over `seconds`; mean RSS."""
    cpu0 = sum(cpu_seconds(p) for p in pids)
    in0 = metric_sum(metrics(sink_port), "prism_ingest_bytes_total")
    t0 = time.monotonic()
    rss = []
    while time.monotonic() - t0 < seconds:
        time.sleep(1)
        rss.append(sum(rss_kb(p) for p in pids))
    elapsed = time.monotonic() - t0
    cpu = sum(cpu_seconds(p) for p in pids) - cpu0
    got = metric_sum(metrics(sink_port), "prism_ingest_bytes_total") - in0
    return {
        "seconds": round(elapsed, 2),
        "cpu_fraction": cpu / elapsed,
        "rss_mb": (sum(rss) / len(rss)) / 1024 if rss else 0,
        "delivered_mbps": got * 8 / elapsed / 1e6,
    }


def side_prism(args, cams, sink_rtmp, sink_http, tmp):
    rtmp, http = free_port(), free_port()
    n = args.cameras
    lines = [
        f'[rtmp]\nlisten = "127.0.0.1:{rtmp}"\n[http]\nlisten = "127.0.0.1:{http}"\n',
        f"[limits]\nmax_streams = {n + 10}\nmax_connections = {2 * n + 100}\n"
        f"max_connections_per_ip = {2 * n + 100}\n",
        f'[[route]]\nstream = "cams/*"\n  [[route.target]]\n  name = "sink"\n'
        f'  url = "rtmp://127.0.0.1:{sink_rtmp}/prism/{{stream}}"\n',
    ]
    for i in range(n):
        port = cams[i % len(cams)][1]
        lines.append(f'[[source]]\nstream = "cams/c{i}"\nurl = "rtsp://127.0.0.1:{port}/cam"\n')
    p = start_prism(args.prism, "\n".join(lines), tmp, "prism")
    try:
        live = wait_streams(sink_http, n, args.connect_timeout)
        time.sleep(args.warmup)
        r = measure([p.pid], sink_http, args.seconds)
        r["processes"] = 1
        r["live"] = live
        return r
    finally:
        stop([p])


def side_ffmpeg(args, cams, sink_rtmp, sink_http, tmp):
    procs = []
    try:
        for i in range(args.cameras):
            port = cams[i % len(cams)][1]
            log = open(os.path.join(tmp, f"ffmpeg{i}.log"), "w")
            procs.append(subprocess.Popen(
                ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-rtsp_transport", "tcp",
                 "-i", f"rtsp://127.0.0.1:{port}/cam", "-c", "copy", "-f", "flv",
                 f"rtmp://127.0.0.1:{sink_rtmp}/ffmpeg/c{i}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            ))
        live = wait_streams(sink_http, args.cameras, args.connect_timeout)
        time.sleep(args.warmup)
        # Processes whose camera refused them have exited: they cost nothing.
        r = measure([p.pid for p in procs if p.poll() is None], sink_http, args.seconds)
        r["processes"] = sum(1 for p in procs if p.poll() is None)
        r["live"] = live
        return r
    finally:
        stop(procs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prism", default=os.path.join(ROOT, "target", "release", "prism"))
    ap.add_argument("--cameras", type=int, default=100)
    ap.add_argument("--camera-procs", type=int, default=4)
    ap.add_argument("--kbps", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--connect-timeout", type=float, default=60)
    ap.add_argument("--sides", default="prism,ffmpeg")
    ap.add_argument("--note", default="", help="recorded with the results (load, build...)")
    ap.add_argument("--out", default=os.path.join(ROOT, "benches", "results"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rtsp-cameras-")
    print(f"logs in {tmp}", file=sys.stderr)
    sink_rtmp, sink_http = free_port(), free_port()
    sink = start_prism(
        args.prism,
        f'[rtmp]\nlisten = "127.0.0.1:{sink_rtmp}"\n[http]\nlisten = "127.0.0.1:{sink_http}"\n'
        f"[limits]\nmax_streams = {args.cameras + 10}\nmax_connections = {2 * args.cameras + 100}\n"
        f"max_connections_per_ip = {2 * args.cameras + 100}\n",
        tmp, "sink",
    )
    cams = []
    primers = []
    results = {}
    try:
        wait_until("the sink", 20, lambda: metrics(sink_http))
        cams = start_cameras(max(1, min(args.camera_procs, args.cameras)), args.kbps, tmp)
        primers = prime_cameras(cams, tmp)
        for side in args.sides.split(","):
            wait_until("the sink to drain", 30,
                       lambda: metric_sum(metrics(sink_http), "prism_streams_active") == 0)
            print(f"{side}: {args.cameras} cameras...", file=sys.stderr)
            run = side_prism if side == "prism" else side_ffmpeg
            results[side] = run(args, cams, sink_rtmp, sink_http, tmp)
            print(f"{side}: {results[side]}", file=sys.stderr)
    finally:
        stop(primers + [c[0] for c in cams] + [sink])
    load = os.getloadavg()
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cameras": args.cameras,
        "camera_procs": len(cams),
        "kbps": args.kbps,
        "seconds": args.seconds,
        "loadavg_after": [round(x, 2) for x in load],
        "prism": args.prism,
        "note": args.note,
        "results": results,
    }
    n = args.cameras
    md = [
        f"{n} RTSP cameras × {args.kbps} kbit/s → {n} RTMP targets, {args.seconds:.0f} s window"
        f" (load average after: {load[0]:.1f}){'; ' + args.note if args.note else ''}",
        "",
        "| restreamer | processes | restreams up | delivered | CPU (cores) | CPU per restream | RSS | RSS per restream |",
        "| --- | --: | --: | --: | --: | --: | --: | --: |",
    ]
    for side, r in results.items():
        live = max(1, r["live"])
        md.append(
            f"| {side} | {r['processes']} | {r['live']} | {r['delivered_mbps']:.0f} Mbit/s "
            f"| {r['cpu_fraction']:.2f} | {1000 * r['cpu_fraction'] / live:.1f} ms/s "
            f"| {r['rss_mb']:.0f} MB | {r['rss_mb'] / live:.2f} MB |"
        )
    text = "\n".join(md) + "\n"
    print(text)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{datetime.date.today().isoformat()}-rtsp-cameras")
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=2)
    with open(stem + ".md", "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
