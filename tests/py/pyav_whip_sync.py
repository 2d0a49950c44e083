"""A/V sync through Prism, with FFmpeg 8 (PyAV) at both ends.

    python pyav_whip_sync.py publish URL TOKEN SECONDS CERT KEY
    python pyav_whip_sync.py analyze RECORDING

publish: a WHIP publisher (as pyav_whip.py) whose video is black with one white frame every
2 s and whose audio is silent with a 100 ms 1 kHz beep at the same instants (both made by
lavfi from the same clock, so flash and beep have the same timestamps at the source).
(Holding audio packets back before muxing does not skew what goes out: libavformat's
interleaver holds the video until audio of the same time comes. So this checks the whole
path, Opus -> AAC included; the sender-report sync is unit-tested in prism-webrtc.)

analyze: decodes a recording (the FLV an RTMP destination wrote) and prints one JSON line:
{"flashes", "beeps", "offsets_ms"}: for each flash, the nearest beep onset minus the flash
time, in ms. In sync, the offsets are near 0.
"""
import array
import fractions
import json
import sys
import time

import av


def publish(url, token, seconds, cert, key):
    opts = {"authorization": token, "cert_file": cert, "key_file": key}
    video_in = av.open(
        "color=c=black:size=320x240:rate=25,geq=lum='if(lt(mod(T\\,2)\\,0.04)\\,235\\,16)':cb=128:cr=128",
        format="lavfi",
    )
    audio_in = av.open(
        "aevalsrc=exprs='if(lt(mod(t\\,2)\\,0.1)\\,0.5*sin(2*PI*1000*t)\\,0)':s=48000:c=stereo",
        format="lavfi",
    )
    out = av.open(url, mode="w", format="whip", options=opts)
    v = out.add_stream(
        "libx264",
        rate=25,
        options={"preset": "ultrafast", "tune": "zerolatency", "bf": "0", "g": "25", "profile": "baseline"},
    )
    v.width, v.height, v.pix_fmt = 320, 240, "yuv420p"
    a = out.add_stream("libopus", rate=48000, layout="stereo")
    a.bit_rate = 96000
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000)
    tone = audio_in.decode(audio=0)
    t0 = time.time()
    n = 0
    samples = 0
    for frame in video_in.decode(video=0):
        if time.time() - t0 > seconds:
            break
        frame.pts, frame.time_base = n, fractions.Fraction(1, 25)
        n += 1
        for p in v.encode(frame):
            out.mux(p)
        # Audio up to the end of this video frame.
        while samples < n * 1920:
            for r in resampler.resample(next(tone)):
                samples += r.samples
                for p in a.encode(r):
                    out.mux(p)
        ahead = t0 + n / 25 - time.time()
        if ahead > 0:
            time.sleep(ahead)
    out.close()


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


if sys.argv[1] == "publish":
    publish(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5], sys.argv[6])
else:
    analyze(sys.argv[2])
