#!/usr/bin/env python3
"""Seeds for the cmaf_payload, hls_packager and hls_request fuzz targets.

ffmpeg writes a short FLV (H.264 with B-frames + AAC); its tag bodies become
cmaf_payload seeds (plus hand-built Enhanced RTMP forms: avc1, av01, Opus, mp4a, a
ModEx-prefixed frame), and the first seconds of it, frames cut to 40 bytes, become
hls_packager record streams. Run from the workspace root:
    python3 fuzz/scripts/make_hls_seeds.py
"""
import os, struct, subprocess, tempfile

ROOT = os.path.join(os.path.dirname(__file__), "..", "corpus")

def flv_tags(path):
    data = open(path, "rb").read()
    pos = struct.unpack(">I", data[5:9])[0] + 4
    while pos + 11 <= len(data):
        kind = data[pos]
        size = int.from_bytes(data[pos + 1:pos + 4], "big")
        ts = int.from_bytes(data[pos + 4:pos + 7], "big") | (data[pos + 7] << 24)
        body = data[pos + 11:pos + 11 + size]
        pos += 11 + size + 4
        if kind in (8, 9):
            yield ("audio" if kind == 8 else "video"), ts, body

def write(target, name, blob):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), "wb").write(blob)

def record(op, dt, body):
    return bytes([op]) + struct.pack(">HH", min(dt, 65535), len(body)) + body

with tempfile.TemporaryDirectory() as tmp:
    flv = os.path.join(tmp, "in.flv")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "4",
                    "-c:v", "libx264", "-g", "30", "-bf", "2", "-c:a", "aac", "-b:a", "32k",
                    "-f", "flv", flv], check=True)
    tags = list(flv_tags(flv))

video = [b for k, _, b in tags if k == "video"]
audio = [b for k, _, b in tags if k == "audio"]
avc_config = video[0]
record_avcc = avc_config[5:]
key = next(b for b in video[1:] if b[0] >> 4 == 1)
inter = next(b for b in video[1:] if b[0] >> 4 == 2)
# cmaf_payload: byte 0 = 0 video, 1 audio.
write("cmaf_payload", "avc_config", b"\x00" + avc_config)
write("cmaf_payload", "avc_keyframe", b"\x00" + key[:600])
write("cmaf_payload", "avc_inter_bframes", b"\x00" + inter[:300])
write("cmaf_payload", "aac_config", b"\x01" + audio[0])
write("cmaf_payload", "aac_frame", b"\x01" + audio[1])
write("cmaf_payload", "ertmp_avc1_config", b"\x00" + bytes([0x90]) + b"avc1" + record_avcc)
write("cmaf_payload", "ertmp_avc1_frames_x", b"\x00" + bytes([0x93]) + b"avc1" + key[5:300])
write("cmaf_payload", "ertmp_avc1_modex", b"\x00" + bytes([0x97, 0x02, 0, 0, 1, 0x03]) + b"avc1" + key[5:200])
# AV1: av1C (marker/version, seq profile/level, flags, no delay) + a sequence header OBU.
av1c = bytes([0x81, 0x08, 0x0C, 0x00, 0x0A, 0x0B, 0x00, 0x00, 0x00, 0x24, 0xC6, 0x7F, 0xEC, 0xB1, 0x00, 0x40])
write("cmaf_payload", "ertmp_av01_config", b"\x00" + bytes([0x90]) + b"av01" + av1c)
write("cmaf_payload", "ertmp_av01_frame", b"\x00" + bytes([0x91]) + b"av01" + bytes([0x12, 0x00, 0x32, 0x05, 1, 2, 3, 4, 5]))
opus_head = b"OpusHead" + bytes([1, 2]) + struct.pack("<HIhB", 312, 48000, 0, 0)
write("cmaf_payload", "ertmp_opus_config", b"\x01" + bytes([0x90]) + b"Opus" + opus_head)
write("cmaf_payload", "ertmp_opus_frame", b"\x01" + bytes([0x91]) + b"Opus" + bytes([0xFC, 0xFF, 0xFE]))
write("cmaf_payload", "ertmp_mp4a_config", b"\x01" + bytes([0x90]) + b"mp4a" + audio[0][2:])

# hls_packager: records [op][dt_ms][len][bytes]; op 0 video, 1 audio, 2 end, 3 URL.
def stream(seconds, kinds=("video", "audio"), cut=40):
    out, last = b"", 0
    for k, ts, b in tags:
        if ts > seconds * 1000 or k not in kinds:
            continue
        config = (k == "video" and b[1] == 0) or (k == "audio" and b[1] == 0)
        out += record(0 if k == "video" else 1, ts - last, b if config else b[:cut])
        last = ts
    return out

urls = [b"/live/a/index.m3u8", b"/live/a/video.m3u8?_HLS_msn=3&_HLS_part=1",
        b"/live/a/audio.m3u8?_HLS_skip=YES", b"/live/a/video/2.1.m4s?token=t",
        b"/live/a/video/init0.mp4", b"/live/../x", b"/live/a/manifest.mpd"]
write("hls_packager", "h264_aac_3s", stream(3))
write("hls_packager", "aac_only_3s", stream(3, kinds=("audio",)))
write("hls_packager", "h264_aac_end", stream(2) + record(2, 0, b""))
with_urls = stream(2) + b"".join(record(3, 5, u) for u in urls) + stream(3)[:2000]
write("hls_packager", "h264_aac_with_urls", with_urls)
print("seeds written to", os.path.abspath(ROOT))
