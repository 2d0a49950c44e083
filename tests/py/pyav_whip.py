"""FFmpeg 8's `whip` muxer (through PyAV) as a WHIP publisher.

    python pyav_whip.py URL TOKEN SECONDS [CERT KEY [clock]]

Publishes a 320x240 25 fps test pattern (libx264 baseline, no B-frames) and a 440 Hz
tone (libopus) in real time for SECONDS, then ends the session (DELETE). CERT/KEY: the
DTLS certificate to use (PEM). PyAV's wheels build FFmpeg with GnuTLS, whose generated
DTLS certificate is ECDSA on secp224r1 (gnutls_sec_param_to_pk_bits(ECDSA, MEDIUM) is 224
bits there), a curve WebRTC stacks do not accept; a P-256 one works.
`clock`: the video is the wall clock drawn as bits (ms mod 65536, the pattern
tests/js/webrtc.mjs's latency mode reads back) instead of the test pattern.
`sync`: black video with one white frame every 2 s and silent audio with a 100 ms 1 kHz
beep at the same instants (one lavfi clock for both), which pyav_whip_sync.py analyzes.
"""
import fractions
import sys
import time

import av

url, token, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
opts = {"authorization": token}
if len(sys.argv) > 5:
    opts.update(cert_file=sys.argv[4], key_file=sys.argv[5])
CLOCK = (
    "color=black:size=320x240:rate=25,geq=lum='if(lt(Y\\,40)\\,255*mod(floor(mod(time(0)*1000"
    "\\,65536)/pow(2\\,floor(X/20)))\\,2)\\,128)':cb=128:cr=128"
)
FLASH = "color=c=black:size=320x240:rate=25,geq=lum='if(lt(mod(T\\,2)\\,0.04)\\,235\\,16)':cb=128:cr=128"
BEEP = "aevalsrc=exprs='if(lt(mod(t\\,2)\\,0.1)\\,0.5*sin(2*PI*1000*t)\\,0)':s=48000:c=stereo"
mode = sys.argv[6] if len(sys.argv) > 6 else ""
video_source = {"clock": CLOCK, "sync": FLASH}.get(mode, "testsrc2=size=320x240:rate=25")
audio_source = BEEP if mode == "sync" else "sine=frequency=440:sample_rate=48000"
video_in = av.open(video_source, format="lavfi")
audio_in = av.open(audio_source, format="lavfi")
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
    # Audio up to the end of this video frame (1920 samples per 40 ms frame, counted from
    # the start, so audio does not run ahead of video by a resampler block per frame).
    while samples < n * 1920:
        for r in resampler.resample(next(tone)):
            samples += r.samples
            for p in a.encode(r):
                out.mux(p)
    ahead = t0 + n / 25 - time.time()
    if ahead > 0:
        time.sleep(ahead)
out.close()
print(f"published {n} frames")
