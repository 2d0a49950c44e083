"""A/V sync through Prism, with FFmpeg 8 (PyAV) at both ends.

    python pyav_whip_sync.py RECORDING

The publisher is `pyav_whip.py URL TOKEN SECONDS CERT KEY sync`: video black with one white
frame every 2 s, audio silent with a 100 ms 1 kHz beep at the same instants (both made by
lavfi from the same clock, so flash and beep have the same timestamps at the source).
(Holding audio packets back before muxing does not skew what goes out: libavformat's
interleaver holds the video until audio of the same time comes. So this checks the whole
path, Opus -> AAC included; the sender-report sync is unit-tested in prism-webrtc.)

Decodes a recording (the FLV an RTMP destination wrote) and prints one JSON line:
{"flashes", "beeps", "offsets_ms"}: for each flash, the nearest beep onset minus the flash
time, in ms. In sync, the offsets are near 0.
"""
import array
import json
import sys

import av


def analyze(path):
    c = av.open(path)
    flashes, beeps = [], []
    lit = False
    for f in c.decode(video=0):
        y = bytes(f.planes[0])
        bright = sum(y[:: 7]) / max(1, len(y[:: 7])) > 128
        if bright and not lit and f.time is not None:
            flashes.append(f.time)
        lit = bright
    c.close()
    c = av.open(path)
    quiet = 0.0  # seconds of silence before the current sample
    for f in c.decode(audio=0):
        if f.time is None or f.format.name != "fltp":
            continue
        pcm = array.array("f", bytes(f.planes[0])[: f.samples * 4])
        for i, x in enumerate(pcm):
            if abs(x) > 0.05:
                if quiet > 0.5:
                    beeps.append(f.time + i / f.sample_rate)
                quiet = 0.0
            else:
                quiet += 1.0 / f.sample_rate
    c.close()
    offsets = []
    for t in flashes:
        if beeps:
            b = min(beeps, key=lambda x: abs(x - t))
            if abs(b - t) < 1.0:
                offsets.append(round((b - t) * 1000.0, 1))
    print(json.dumps({"flashes": len(flashes), "beeps": len(beeps), "offsets_ms": offsets}))


analyze(sys.argv[1])
