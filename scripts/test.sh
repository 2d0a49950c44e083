#!/usr/bin/env bash
# Prism's test command: installs the system tools the end-to-end tests drive
# (only those missing), builds the workspace and runs every test.
#
#   ./scripts/test.sh [extra cargo test args...]
#
# Env: PRISM_TEST_THREADS (default 2) — parallel tests per test binary;
#      SKIP_APT=1 — never call apt-get (fail later if a tool is missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\n==> %s\n' "$*"; }

# --- system tools ------------------------------------------------------------
missing=()
have() { command -v "$1" >/dev/null 2>&1; }
have ffmpeg && have ffprobe || missing+=(ffmpeg)
have nginx || missing+=(nginx)
if [ ! -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] &&
   ! dpkg -s libnginx-mod-rtmp >/dev/null 2>&1; then
  missing+=(libnginx-mod-rtmp)
fi
have srt-live-transmit || missing+=(srt-tools)
have promtool || missing+=(prometheus)
have stunnel4 || have stunnel || missing+=(stunnel4)
# tests/status_page.rs renders the status page in headless Chromium.
[ -x /usr/bin/chromium ] || missing+=(chromium)
# tests/deploy_artifacts.rs parses deploy/ YAML with PyYAML.
python3 -c 'import yaml' 2>/dev/null || /usr/bin/python3 -c 'import yaml' 2>/dev/null ||
  missing+=(python3-yaml)
have rtmpdump || missing+=(rtmpdump)
# tests/hls.rs and tests/hls_dvr.rs drive headless Chromium with playwright-core (tests/js)
# under Node.js.
have node || missing+=(nodejs)
have npm || missing+=(npm)
# tests/hls_serving.rs plays HLS with GStreamer 1.22: playbin3 + hlsdemux2 (plugins-good),
# h264parse (plugins-bad), H.264/AAC decoders (libav).
have gst-launch-1.0 || missing+=(gstreamer1.0-tools)
if have gst-inspect-1.0; then
  gst-inspect-1.0 playbin3 >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-base)
  gst-inspect-1.0 hlsdemux2 >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-good)
  gst-inspect-1.0 h264parse >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-bad)
  gst-inspect-1.0 avdec_h264 >/dev/null 2>&1 || missing+=(gstreamer1.0-libav)
else
  missing+=(gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav)
fi
# crates/prism-transport-rtsp/tests/pull.rs simulates an IP camera with GStreamer's RTSP
# server (tests/rtsp_camera.py, run by /usr/bin/python3 with gi) encoding with x264enc.
/usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null ||
  missing+=(gir1.2-gst-rtsp-server-1.0 python3-gi python3-gst-1.0)
gst-inspect-1.0 x264enc >/dev/null 2>&1 || missing+=(gstreamer1.0-plugins-ugly)
# tests/webrtc.rs plays WHEP with GStreamer's webrtcbin too (tests/py/gst_whep.py, run by
# /usr/bin/python3 with gi): its ICE agent (libnice) and the GstWebRTC/GstSdp bindings.
/usr/bin/python3 -c 'import gi; gi.require_version("GstWebRTC", "1.0"); gi.require_version("GstSdp", "1.0")' 2>/dev/null ||
  missing+=(gir1.2-gst-plugins-bad-1.0 python3-gi python3-gst-1.0)
gst-inspect-1.0 nicesrc >/dev/null 2>&1 || missing+=(gstreamer1.0-nice)

# crates/prism-audio: opusic-sys builds the libopus source it vendors with cmake;
# fdk-aac-sys compiles the FDK AAC C++ it vendors.
have cmake || missing+=(cmake)
have g++ || missing+=(g++)

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "${SKIP_APT:-0}" = 1 ]; then
    log "missing system packages (SKIP_APT=1, not installing): ${missing[*]}"
  else
    log "installing missing system packages: ${missing[*]}"
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
    # Keep apt from starting the packages' daemons (nginx on :80, prometheus
    # on :9090...): the tests start their own instances on random ports.
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
      "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
      created_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    rc=0
    "${SUDO[@]}" apt-get update -q &&
      "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}" || rc=$?
    if [ "$created_policy" = 1 ]; then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; fi
    [ "$rc" -eq 0 ] || { echo "apt-get failed ($rc)" >&2; exit "$rc"; }
    # In case a service got started anyway (no policy-rc.d support, systemd):
    for svc in nginx prometheus prometheus-node-exporter stunnel4; do
      if have systemctl && systemctl is-active --quiet "$svc" 2>/dev/null; then
        "${SUDO[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 || true
      elif have service; then
        "${SUDO[@]}" service "$svc" stop >/dev/null 2>&1 || true
      fi
    done
    if [ -s /run/nginx.pid ]; then "${SUDO[@]}" nginx -s stop >/dev/null 2>&1 || true; fi
  fi
fi

log "tool versions"
ffmpeg -hide_banner -version 2>/dev/null | head -n1 || echo "ffmpeg: missing"
nginx -v 2>&1 || echo "nginx: missing"
cargo --version
rustc --version

# --- build and test ----------------------------------------------------------
# --- browser test peers (npm, pinned by tests/js/package-lock.json) -----------
if [ ! -d tests/js/node_modules/playwright-core ] || [ ! -d tests/js/node_modules/dashjs ]; then
  log "npm ci (tests/js)"
  npm ci --prefix tests/js --no-audit --no-fund
fi

# --- FFmpeg 8 as a WHIP publisher (tests/webrtc.rs): PyAV bundles it with its `whip` muxer
pyav_venv="${CARGO_TARGET_DIR:-target}/pyav-venv"
if [ ! -x "$pyav_venv/bin/python" ] || ! "$pyav_venv/bin/python" -c 'import av' 2>/dev/null; then
  log "PyAV venv ($pyav_venv)"
  python3 -m venv "$pyav_venv"
  "$pyav_venv/bin/pip" install -q 'av>=18,<19'
fi

log "cargo build --workspace --bins"
cargo build --workspace --bins

# The e2e tests use the binary just built (no nested cargo from inside tests).
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
export PRISM_BIN="$target_dir/debug/prism"

# E2E tests each spawn ffmpeg/nginx/prism and stream in real time: two at a
# time keeps a 2-core machine responsive while the suite stays short.
log "cargo test --workspace"
cargo test --workspace --no-fail-fast "$@" -- --test-threads="${PRISM_TEST_THREADS:-2}"
