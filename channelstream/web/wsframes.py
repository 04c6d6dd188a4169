"""The websocket wire format (RFC 6455) as the server side needs it: a pure codec.

Server to client frames are never masked and never fragmented here:
``FIN=1 | opcode``, then the payload length (7 bits, or 126 + u16, or 127 +
u64, big-endian), then the payload.

Client to server frames are always masked (a 4-byte key after the length).
channelstream clients only ever send frames whose content the server ignores
(0.7.1 ignored them too), so by default :class:`FrameReader` does not keep
data frames at all: it checks their framing and skips their payload. Only
control frames (close, ping; at most 125 bytes by the RFC) are unmasked and
returned. Its memory is therefore bounded by a header plus one control frame,
whatever a client sends.

With ``keep_data=True`` (socket.io, whose clients do talk) it also returns
each data message whole: unmasked, its fragments joined, as
``(OP_TEXT or OP_BINARY, payload)``; its memory is then bounded by
``max_message`` (a larger message is refused with 1009 as soon as its frame
header says so, before its payload is read).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterator

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_DATA_OPCODES = frozenset({OP_CONTINUATION, OP_TEXT, OP_BINARY})
_CONTROL_OPCODES = frozenset({OP_CLOSE, OP_PING, OP_PONG})

#: Close codes of RFC 6455 used by the server.
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: environ key of the HTTP server's upgrade callable for views that do their
#: own websocket (``channelstream.web.httpserver.Handler.take_over_websocket``).
TAKEOVER_KEY = "channelstream.websocket.takeover"


class HandshakeError(ValueError):
    """The upgrade request is not one this server accepts; the message says why."""


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``.

    Raises :class:`HandshakeError` if the key is not 16 bytes in base64.
    """
    try:
        raw = base64.b64decode(key.strip(), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 16:
        raise HandshakeError("Sec-WebSocket-Key must be 16 bytes in base64")
    digest = hashlib.sha1(key.strip().encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One unmasked, final frame holding ``payload``."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, n))
    elif n < 0x10000:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame with ``code`` and ``reason`` (cut to fit 125 bytes)."""
    data = reason.encode("utf-8")[:123]
    # Never cut inside a UTF-8 sequence: clients reject invalid close reasons.
    data = data.decode("utf-8", "ignore").encode("utf-8")
    return frame(struct.pack("!H", code) + data, OP_CLOSE)


class ProtocolError(Exception):
    """A client broke the protocol; close with :attr:`code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class FrameReader:
    """Incremental parser of client frames that returns control frames only
    (and whole data messages with ``keep_data``).

    :param max_message: largest data message (sum of its fragments) accepted
        before :class:`ProtocolError` with 1009; without ``keep_data`` its
        bytes are never stored.
    :param keep_data: also return data messages (see the module doc).
    """

    __slots__ = (
        "_buffer",
        "_skip",
        "_fragmented",
        "_message_size",
        "max_message",
        "keep_data",
        "_opcode",
        "_parts",
        "_missing",
        "_frame",
    )

    def __init__(self, max_message: int = 1 << 20, keep_data: bool = False) -> None:
        self._buffer = b""
        self._skip = 0  # payload bytes of the current data frame still to skip
        self._fragmented = False  # inside a data message whose last frame is to come
        self._message_size = 0
        self.max_message = max_message
        self.keep_data = keep_data
        # keep_data only: the message being assembled, and the frame being read.
        self._opcode = OP_TEXT  # opcode of the message's first frame
        self._parts: list[bytes] = []  # unmasked payloads of its frames so far
        self._missing = 0  # payload bytes of the current frame still to come
        self._frame: list[bytes] = []  # the mask, then the current frame's payload so far

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        """Consume ``data``; yield ``(opcode, unmasked payload)`` of each control frame
        (and, with ``keep_data``, of each data message once whole).

        Raises :class:`ProtocolError` on a framing error: unmasked frame,
        reserved bits, unknown opcode, bad fragmentation, oversized control
        frame or message.
        """
        if self._missing:
            if len(data) < self._missing:
                self._missing -= len(data)
                self._frame.append(data)
                return
            self._frame.append(data[: self._missing])
            data = data[self._missing :]
            self._missing = 0
            mask, *chunks = self._frame
            self._frame = []
            message = self._data_frame(_unmask(b"".join(chunks), mask))
            if message is not None:
                yield message
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data = data[self._skip :]
            self._skip = 0
        buffer = self._buffer + data if self._buffer else data
        self._buffer = b""
        pos, end = 0, len(buffer)
        while pos < end:
            if end - pos < 2:
                break
            b0, b1 = buffer[pos], buffer[pos + 1]
            fin, opcode, length = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
            if b0 & 0x70:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
            if not b1 & 0x80:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
            head = 6
            if length == 126:
                head = 8
            elif length == 127:
                head = 14
            if end - pos < head:
                break
            if length == 126:
                (length,) = struct.unpack_from("!H", buffer, pos + 2)
            elif length == 127:
                (length,) = struct.unpack_from("!Q", buffer, pos + 2)
            if opcode in _CONTROL_OPCODES:
                if not fin or length > 125:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "bad control frame")
                if end - pos < head + length:
                    break
                mask = buffer[pos + head - 4 : pos + head]
                payload = _unmask(buffer[pos + head : pos + head + length], mask)
                pos += head + length
                yield opcode, payload
                continue
            if opcode not in _DATA_OPCODES:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
            if (opcode == OP_CONTINUATION) != self._fragmented:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "bad fragmentation")
            self._message_size = (self._message_size if self._fragmented else 0) + length
            if self._message_size > self.max_message:
                raise ProtocolError(CLOSE_TOO_BIG, "message too big")
            if self.keep_data and opcode != OP_CONTINUATION:
                self._opcode = opcode
            self._fragmented = not fin
            available = end - pos - head
            if available < length:
                if self.keep_data:
                    self._missing = length - available
                    self._frame = [buffer[pos + head - 4 : pos + head], buffer[pos + head :]]
                else:
                    self._skip = length - available
                return
            if self.keep_data:
                mask = buffer[pos + head - 4 : pos + head]
                message = self._data_frame(_unmask(buffer[pos + head : pos + head + length], mask))
                if message is not None:
                    yield message
            pos += head + length
        if pos < end:
            self._buffer = buffer[pos:]

    def _data_frame(self, payload: bytes) -> tuple[int, bytes] | None:
        """Add a whole data frame's payload; the message if it was its last frame."""
        if self._fragmented:
            self._parts.append(payload)
            return None
        if self._parts:
            self._parts.append(payload)
            payload = b"".join(self._parts)
            self._parts = []
        return self._opcode, payload


def _unmask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return data
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
