#!/usr/bin/env python3
"""Seeds for the rtmpt_client fuzz target (record format: crates/prism-fuzz-check/src/rtmpt_client.rs).

Hand-built from what Prism's RTMPT server answers (an /open id line, interval byte + RTMP bytes,
the closing byte 0) and the failures a client meets (404 for an expired id, 503, an empty body,
a reply that never comes). Usage: make_rtmpt_client_seeds.py fuzz/corpus/rtmpt_client
"""
import os
import struct
import sys

OPEN_ID = b"0123456789abcdef0123456789abcdef\n"


def reply(body, status=0):
    return bytes([0, status]) + struct.pack(">H", len(body)) + body


def write(n):
    return bytes([1, n])


def tick(units):
    return bytes([2, units])


CLOSE = bytes([3])
# S0 + S1 + S2 as a server sends them (3073 bytes), cut: the record length is 16-bit anyway.
HANDSHAKE = b"\x03" + bytes(range(256)) * 12 + b"\x00"

SEEDS = {
    "publish_session": reply(OPEN_ID)
    + write(200)  # C0+C1 (part)
    + reply(b"\x01" + HANDSHAKE)
    + write(255)
    + reply(b"\x01")
    + tick(2)
    + reply(b"\x01\x02\x00\x00\x00\x00\x00\x04\x05\x00\x00\x00\x00\x00\x4c\x4b\x40")
    + write(100)
    + reply(b"\x05")
    + tick(10)
    + reply(b"\x21")
    + CLOSE
    + reply(b"\x00"),
    "red5_numeric_id": reply(b"1234\n\x00") + write(10) + reply(b"\x01abc") + CLOSE + reply(b"\x00"),
    "server_closes": reply(OPEN_ID) + tick(1) + reply(b"\x00tail"),
    "expired_session": reply(OPEN_ID) + write(50) + reply(b"unknown RTMPT session\n", status=1),
    "buffer_full": reply(OPEN_ID) + write(255) + write(255) + write(255) + reply(b"", status=3),
    "empty_reply": reply(OPEN_ID) + tick(1) + reply(b""),
    "timeout": reply(OPEN_ID) + write(1) + tick(200),
    "bad_ids": reply(b"../x\n") + reply(b"a b\n"),
}

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
