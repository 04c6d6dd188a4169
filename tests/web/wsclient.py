"""A raw websocket client side for the tests of tests/web: masked frames out, frames in."""

from __future__ import annotations

import base64
import os
import socket
import struct

from tests.support.server import RunningServer


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One client frame (masked with a random key, as RFC 6455 requires)."""
    mask = os.urandom(4)
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 0x10000:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def parse_frames(data: bytearray) -> list[tuple[int, bytes]]:
    """Take the whole server frames at the start of ``data`` (removed from it)."""
    frames, pos = [], 0
    while len(data) - pos >= 2:
        opcode, n, head = data[pos] & 0x0F, data[pos + 1] & 0x7F, 2
        if n == 126:
            head = 4
        elif n == 127:
            head = 10
        if len(data) - pos < head:
            break
        if n == 126:
            (n,) = struct.unpack_from("!H", data, pos + 2)
        elif n == 127:
            (n,) = struct.unpack_from("!Q", data, pos + 2)
        if len(data) - pos < head + n:
            break
        frames.append((opcode, bytes(data[pos + head : pos + head + n])))
        pos += head + n
    del data[:pos]
    return frames


def upgrade(server: RunningServer, target: str, rcvbuf: int | None = None) -> socket.socket:
    """A raw websocket to ``target`` on ``server`` (optionally with a small receive
    buffer, set before connecting), past the 101 head."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        .encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"closed during the handshake: {head!r}"
        head += byte
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock
