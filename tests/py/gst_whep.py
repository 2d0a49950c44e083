"""GStreamer's webrtcbin (libnice ICE, its own DTLS/SRTP) as a WHEP player.

    /usr/bin/python3 gst_whep.py URL SECONDS

Offers receive-only H.264 and Opus, POSTs the offer once ICE gathering is complete (no
trickle), sets the answer, decodes what arrives (decodebin) and counts decoded video
frames and audio samples for SECONDS, then DELETEs the session. Prints one JSON line:
{"status", "video_frames", "audio_samples", "delete_status", "error"}.

Certificate: webrtcbin (OpenSSL) makes an RSA-2048 DTLS certificate, and Prism's DTLS
(str0m's dimpl) takes ECDSA P-256/P-384 only (as its README says: no RSA), answering
with a handshake_failure alert; so the DTLS decoder (which owns the connection) is given
a P-256 one (`pem`), and the offer's fingerprint, which webrtcbin keeps of the certificate
it made, is rewritten to that one's.
"""
import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

url, seconds = sys.argv[1], float(sys.argv[2])
Gst.init(None)
result = {"status": None, "video_frames": 0, "audio_samples": 0, "delete_status": None, "error": None}
location = None
loop = GLib.MainLoop()
pipe = Gst.Pipeline.new("whep")
webrtc = Gst.ElementFactory.make("webrtcbin", "w")
webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
pipe.add(webrtc)
# libnice leaves loopback out of its host candidates; the tests' Prism listens there.
# (The agent is kept referenced here: PyGObject drops a reference it does not own when
# its wrapper goes.)
ice = webrtc.get_property("ice-agent")
ice.emit("add-local-ip-address", "127.0.0.1")
for caps in (
    "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,packetization-mode=(string)1,profile-level-id=(string)42e01f",
    "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=(string)2",
):
    webrtc.emit(
        "add-transceiver",
        GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY,
        Gst.Caps.from_string(caps),
    )


PEM = subprocess.run(
    ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
     "-nodes", "-keyout", "/dev/stdout", "-out", "/dev/stdout", "-subj", "/CN=gst-whep", "-days", "2"],
    check=True, capture_output=True, text=True, timeout=30,
).stdout



FINGERPRINT = subprocess.run(
    ["openssl", "x509", "-noout", "-fingerprint", "-sha256"],
    input=PEM, check=True, capture_output=True, text=True, timeout=30,
).stdout.strip().split("=", 1)[1]


def fail(msg):
    result["error"] = msg
    loop.quit()


def count(kind):
    def on_handoff(_sink, buf, _pad):
        if kind == "video":
            result["video_frames"] += 1
        else:
            # Decoded audio: interleaved S16 after audioconvert; count samples per channel.
            result["audio_samples"] += buf.get_size() // 4
    return on_handoff


def on_decoded_pad(_decodebin, pad):
    name = pad.get_current_caps().get_structure(0).get_name()
    kind = "video" if name.startswith("video") else "audio"
    conv = Gst.ElementFactory.make("videoconvert" if kind == "video" else "audioconvert")
    sink = Gst.ElementFactory.make("fakesink")
    sink.set_property("signal-handoffs", True)
    sink.set_property("sync", False)
    sink.connect("handoff", count(kind))
    els = [conv]
    if kind == "audio":
        capsf = Gst.ElementFactory.make("capsfilter")
        capsf.set_property("caps", Gst.Caps.from_string("audio/x-raw,format=S16LE,channels=2"))
        els.append(capsf)
    els.append(sink)
    for e in els:
        pipe.add(e)
        e.sync_state_with_parent()
    pad.link(els[0].get_static_pad("sink"))
    for a, b in zip(els, els[1:]):
        a.link(b)


def on_incoming(_w, pad):
    if pad.get_direction() != Gst.PadDirection.SRC:
        return
    dec = Gst.ElementFactory.make("decodebin")
    dec.connect("pad-added", on_decoded_pad)
    pipe.add(dec)
    dec.sync_state_with_parent()
    pad.link(dec.get_static_pad("sink"))


def post_offer():
    global location
    offer = webrtc.get_property("local-description").sdp.as_text()
    # webrtcbin keeps the fingerprint of the certificate it made in its SDP: the one the
    # DTLS connection now uses is PEM's.
    offer = "\r\n".join(
        f"a=fingerprint:sha-256 {FINGERPRINT}" if l.startswith("a=fingerprint:") else l
        for l in offer.splitlines()
    ) + "\r\n"
    req = urllib.request.Request(
        url, data=offer.encode(), method="POST", headers={"Content-Type": "application/sdp"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            result["status"] = r.status
            location = urllib.parse.urljoin(url, r.headers.get("Location", ""))
            answer = r.read().decode()
    except urllib.error.HTTPError as e:
        result["status"] = e.code
        return fail(e.read().decode(errors="replace"))
    _, sdp = GstSdp.SDPMessage.new_from_text(answer)
    desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
    webrtc.emit("set-remote-description", desc, Gst.Promise.new())


posted = False


def on_gathering(w, _pspec):
    global posted
    if w.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE and not posted:
        posted = True
        GLib.idle_add(lambda: post_offer() and False)


def on_offer(promise, _data):
    reply = promise.get_reply()
    offer = reply.get_value("offer")
    webrtc.emit("set-local-description", offer, Gst.Promise.new())


def on_element(_bin, _sub, el):
    factory = el.get_factory()
    if factory is not None and factory.get_name() == "dtlssrtpdec":
        # Replaces the connection's certificate (webrtcbin made the connection with the
        # RSA one when it set the id; a new pem makes it anew, before the encoder takes it).
        el.set_property("pem", PEM)


pipe.connect("deep-element-added", on_element)


def on_negotiation_needed(w):
    w.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))


def on_bus(_bus, msg):
    if msg.type == Gst.MessageType.ERROR:
        err, dbg = msg.parse_error()
        fail(f"{err.message} ({dbg})")


webrtc.connect("on-negotiation-needed", on_negotiation_needed)
webrtc.connect("notify::ice-gathering-state", on_gathering)
webrtc.connect("pad-added", on_incoming)
bus = pipe.get_bus()
bus.add_signal_watch()
bus.connect("message", on_bus)
pipe.set_state(Gst.State.PLAYING)
GLib.timeout_add(int(seconds * 1000), loop.quit)
loop.run()
if location:
    try:
        with urllib.request.urlopen(urllib.request.Request(location, method="DELETE"), timeout=5) as r:
            result["delete_status"] = r.status
    except urllib.error.HTTPError as e:
        result["delete_status"] = e.code
    except OSError as e:
        result["delete_status"] = str(e)
pipe.set_state(Gst.State.NULL)
print(json.dumps(result), flush=True)
