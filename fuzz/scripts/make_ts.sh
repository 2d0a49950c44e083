#!/bin/sh
# Writes small real MPEG-TS files made by ffmpeg into corpus/mpegts_demux/ (run from the
# workspace root). Synthetic sources (lavfi), so the result is reproducible in kind.
set -eu
out=fuzz/corpus/mpegts_demux
mkdir -p "$out"
src="-f lavfi -i testsrc=size=64x48:rate=10 -f lavfi -i sine=frequency=300:sample_rate=22050"
ff="ffmpeg -hide_banner -loglevel error -y"
# H.264 + AAC (ADTS), what an SRT encoder typically sends.
$ff $src -t 1 -c:v libx264 -preset ultrafast -g 5 -bf 2 -b:v 20k -c:a aac -b:a 16k \
  -f mpegts "$out/ffmpeg_h264_aac.ts"
# HEVC + AAC.
$ff $src -t 1 -c:v libx265 -preset ultrafast -x265-params log-level=none:keyint=5 -b:v 20k \
  -c:a aac -b:a 16k -f mpegts "$out/ffmpeg_hevc_aac.ts"
# Audio only, and video only with PES packets of bounded length.
$ff -f lavfi -i sine=frequency=300:sample_rate=22050 -t 1 -c:a aac -b:a 16k \
  -f mpegts "$out/ffmpeg_aac_only.ts"
$ff -f lavfi -i testsrc=size=64x48:rate=10 -t 1 -c:v libx264 -preset ultrafast -g 3 -b:v 20k \
  -f mpegts -mpegts_flags +resend_headers "$out/ffmpeg_h264_only.ts"
ls -l "$out"
