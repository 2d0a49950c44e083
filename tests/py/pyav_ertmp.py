"""FFmpeg 8 (through PyAV) as an Enhanced RTMP publisher and player.

    python pyav_ertmp.py publish URL VCODEC ACODEC SECONDS
    python pyav_ertmp.py play URL SECONDS

publish: a 320x240 25 fps test pattern (VCODEC: libx265, libsvtav1, libx264) and a 440 Hz
tone (ACODEC: libopus, flac, ac3, eac3, libmp3lame, aac) in real time to URL through
FFmpeg's FLV muxer, which signals HEVC/AV1/Opus/FLAC/AC-3/E-AC-3 as Enhanced RTMP.
play: reads URL for up to SECONDS, decoding, and prints one JSON line: codec names,
decoded frame counts, video size.
"""
import json
import sys
import time

import av


def publish(url, vcodec, acodec, seconds):
    video_in = av.open("testsrc2=size=320x240:rate=25", format="lavfi")
    audio_in = av.open("sine=frequency=440:sample_rate=48000", format="lavfi")
    out = av.open(url, mode="w", format="flv")
    opts = {"g": "25", "bf": "0"}
    if vcodec == "libx265":
        opts.update(preset="ultrafast", **{"x265-params": "keyint=25:bframes=0:log-level=error"})
    elif vcodec == "libsvtav1":
        opts.update(preset="12")
    elif vcodec == "libx264":
        opts.update(preset="ultrafast", tune="zerolatency")
    v = out.add_stream(vcodec, rate=25, options=opts)
    v.width, v.height, v.pix_fmt = 320, 240, "yuv420p"
    rate = 48000 if acodec in ("libopus", "flac", "ac3", "eac3") else 44100
    a = out.add_stream(acodec, rate=rate, layout="stereo")
    fmt = a.codec_context.codec.audio_formats[0].name
    resampler = av.AudioResampler(format=fmt, layout="stereo", rate=rate)
    fifo = av.AudioFifo()
    frame_size = a.codec_context.frame_size or 1024
    tone = audio_in.decode(audio=0)
    start = time.monotonic()
    n = 0
    apts = 0
    while n < seconds * 25:
        vf = next(video_in.decode(video=0))
        vf.pts = n
        vf.time_base = v.codec_context.time_base or __import__("fractions").Fraction(1, 25)
        for p in v.encode(vf.reformat(format="yuv420p")):
            out.mux(p)
        # Audio up to this video frame's time.
        while apts < (n + 1) * rate // 25:
            for r in resampler.resample(next(tone)):
                fifo.write(r)
            while fifo.samples >= frame_size:
                af = fifo.read(frame_size)
                af.pts = apts
                apts += frame_size
                for p in a.encode(af):
                    out.mux(p)
        n += 1
        ahead = start + n / 25 - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    for s in (v, a):
        for p in s.encode(None):
            out.mux(p)
    out.close()


def play(url, seconds):
    inp = av.open(url, options={"rtmp_live": "live"}, timeout=10)
    res = {"video_codec": None, "audio_codec": None, "video_frames": 0, "audio_frames": 0,
           "width": None, "height": None}
    for s in inp.streams:
        if s.type == "video":
            res["video_codec"] = s.codec_context.name
        elif s.type == "audio":
            res["audio_codec"] = s.codec_context.name
    deadline = time.monotonic() + seconds
    for packet in inp.demux():
        if time.monotonic() > deadline:
            break
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            continue
        for f in frames:
            if packet.stream.type == "video":
                res["video_frames"] += 1
                res["width"], res["height"] = f.width, f.height
            elif packet.stream.type == "audio":
                res["audio_frames"] += 1
    print(json.dumps(res), flush=True)


if sys.argv[1] == "publish":
    publish(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
else:
    play(sys.argv[2], float(sys.argv[3]))
