#!/usr/bin/python3
"""A simulated IP camera: GStreamer's RTSP server serving an H.264 (or H.265) + AAC (or Opus) test pattern.

Usage: rtsp_camera.py PORT PATH [--user U --password P] [--auth basic|digest]
       [--protocols tcp|udp|both]
Prints "READY" once listening; runs until killed (SIGTERM/SIGINT).
Needs /usr/bin/python3 with gi, gir1.2-gst-rtsp-server-1.0, an H.264 encoder (x264enc
from gstreamer1.0-plugins-ugly, or openh264enc), x265enc (gstreamer1.0-plugins-bad) for
--codec h265, and avenc_aac (gstreamer1.0-libav).
"""
import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("path")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--auth", choices=["basic", "digest"], default="digest")
    ap.add_argument("--protocols", choices=["tcp", "udp", "both"], default="both")
    ap.add_argument("--codec", choices=["h264", "h265"], default="h264")
    ap.add_argument("--kbps", type=int, default=800, help="video bitrate")
    ap.add_argument("--audio", choices=["aac", "opus"], default="aac")
    ap.add_argument("--pattern", default="ball", help="videotestsrc pattern (snow: full bitrate)")
    args = ap.parse_args()
    Gst.init(None)
    if args.codec == "h265":
        video = f"x265enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate={args.kbps} ! h265parse ! rtph265pay name=pay0 pt=96 config-interval=-1"
    elif Gst.ElementFactory.find("x264enc"):
        video = f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate={args.kbps} ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1"
    else:
        video = f"openh264enc gop-size=25 bitrate={args.kbps * 1000} ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1"
    if args.audio == "opus":
        audio = "audio/x-raw,rate=48000,channels=2 ! audioconvert ! opusenc ! rtpopuspay name=pay1 pt=97"
    else:
        audio = (
            "audio/x-raw,rate=44100,channels=1 ! audioconvert ! avenc_aac ! aacparse "
            "! rtpmp4gpay name=pay1 pt=97"
        )
    launch = (
        f"( videotestsrc is-live=true pattern={args.pattern} ! video/x-raw,width=320,height=240,framerate=25/1 "
        f"! {video} "
        f"audiotestsrc is-live=true wave=sine freq=440 ! {audio} )"
    )
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    lower = {
        "tcp": GstRtsp.RTSPLowerTrans.TCP,
        "udp": GstRtsp.RTSPLowerTrans.UDP,
        "both": GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP,
    }[args.protocols]
    factory.set_protocols(lower)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "camera-user")
        if args.auth == "digest":
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(args.user, args.password, token)
        else:
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
            basic = GstRtspServer.RTSPAuth.make_basic(args.user, args.password)
            auth.add_basic(basic, token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_role_from_structure(
            Gst.Structure.new_from_string(
                "camera-user, media.factory.access=(boolean)true, "
                "media.factory.construct=(boolean)true"
            )
        )
        factory.set_permissions(perms)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print("cannot attach the RTSP server", file=sys.stderr)
        sys.exit(1)
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("READY", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
