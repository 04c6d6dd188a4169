"""The websocket wire format (RFC 6455) as the server side needs it: a pure codec.

Server to client frames are never masked and never fragmented here:
``FIN=1 | opcode``, then the payload length (7 bits, or 126 + u16, or 127 +
u64, big-endian), then the payload.

Client to server frames are always masked (a 4-byte key after the length).
channelstream clients only ever send frames whose content the server ignores
(0.7.1 ignored them too), so by default :class:`FrameReader` does not keep
data frames at all: it checks their framing and skips their payload (a text
message's payload is unmasked on the way and checked to be UTF-8, then
dropped). Only control frames (close, ping, pong; at most 125 bytes by the
RFC) are unmasked and returned. Its memory is therefore bounded by a header
plus one control frame, whatever a client sends.

With ``keep_data=True`` (socket.io, whose clients do talk) it also returns
each data message whole: unmasked, its fragments joined, as
``(OP_TEXT or OP_BINARY, payload)``; its memory is then bounded by
``max_message`` (a larger message is refused with 1009 as soon as its frame
header says so, before its payload is read).

What a client may send is what RFC 6455 allows, checked as wsproto (the
maintained RFC 6455 library) checks it; ``tests/web/test_wsframes_reference.py``
feeds both the same byte streams. A violation raises :class:`ProtocolError`
with the close code to answer: 1002 (reserved bits, unmasked frame, unknown
opcode, bad fragmentation, a fragmented or over-long control frame, a length
not in its shortest encoding or with the top bit of its u64 set, a 1-byte
close payload, a close code a peer may not send), 1007 (a text message or a
close reason that is not UTF-8, found as soon as the bytes that make it so
arrive), 1009 (over ``max_message``). One deliberate difference: close code
1014 (Bad Gateway, IANA-registered since the RFC) is accepted; wsproto 1.3
refuses it.
"""

from __future__ import annotations

import base64
import codecs
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
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009

#: Close codes a peer may send (RFC 6455 7.4, and the IANA registry's 1012-1014);
#: 1004-1006 and 1015 are reserved, never sent; 1016-2999 are unassigned.
PEER_CLOSE_CODES = frozenset(range(1000, 1004)) | frozenset(range(1007, 1015))
PEER_CLOSE_CODES |= frozenset(range(3000, 5000))

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


def check_close(payload: bytes) -> int | None:
    """The code of a client's close frame payload (``None`` if it has none).

    Raises :class:`ProtocolError`: 1002 for a 1-byte payload or a code a peer
    may not send (:data:`PEER_CLOSE_CODES`), 1007 for a reason that is not UTF-8.
    """
    if not payload:
        return None
    if len(payload) == 1:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
    (code,) = struct.unpack_from("!H", payload)
    if code not in PEER_CLOSE_CODES:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"close code {code} may not be sent")
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CLOSE_INVALID_DATA, "close reason is not UTF-8") from None
    return code


class FrameReader:
    """Incremental parser of client frames that returns control frames only
    (and whole data messages with ``keep_data``).

    :param max_message: largest data message (sum of its fragments) accepted
        before :class:`ProtocolError` with 1009; without ``keep_data`` its
        bytes are never stored.
    :param keep_data: also return data messages (see the module doc).

    Not thread-safe; one reader per connection. After a :class:`ProtocolError`
    the reader is spent: drop it.
    """

    __slots__ = (
        "_buffer",
        "_missing",
        "_mask",
        "_fin",
        "_fragmented",
        "_message_size",
        "_opcode",
        "_parts",
        "_utf8",
        "max_message",
        "keep_data",
    )

    def __init__(self, max_message: int = 1 << 20, keep_data: bool = False) -> None:
        self._buffer = b""  # an incomplete frame header, or control frame
        # The data frame whose payload is being read:
        self._missing = 0  # payload bytes still to come
        self._mask = b""  # its mask, turned to line up with the next payload byte
        self._fin = False  # it ends its message
        # The data message being read:
        self._fragmented = False  # a frame of it is still to come
        self._message_size = 0
        self._opcode = OP_TEXT  # opcode of its first frame
        self._parts: list[bytes] = []  # keep_data: unmasked payload so far
        self._utf8: codecs.IncrementalDecoder | None = None  # a text message's checker
        self.max_message = max_message
        self.keep_data = keep_data

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        """Consume ``data``; yield ``(opcode, unmasked payload)`` of each control frame
        (and, with ``keep_data``, of each data message once whole).

        A close frame is returned after :func:`check_close` accepted it.
        Raises :class:`ProtocolError` when the client broke the protocol (see
        the module doc); frames before the faulty one were yielded.
        """
        pos, end = 0, len(data)
        if self._missing:
            pos = min(end, self._missing)
            self._payload(data, 0, pos)
            if self._missing:
                return
            message = self._frame_done()
            if message is not None:
                yield message
        if self._buffer:
            data = self._buffer + data[pos:]
            pos, end = 0, len(data)
            self._buffer = b""
        while end - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            fin, opcode, length = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
            if b0 & 0x70:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
            if not b1 & 0x80:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
            control = opcode in _CONTROL_OPCODES
            if control:
                if not fin or length > 125:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "bad control frame")
            elif opcode not in _DATA_OPCODES:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
            head = 6 if length < 126 else 8 if length == 126 else 14
            if end - pos < head:
                break
            if length == 126:
                (length,) = struct.unpack_from("!H", data, pos + 2)
                if length < 126:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "length not in its shortest form")
            elif length == 127:
                (length,) = struct.unpack_from("!Q", data, pos + 2)
                if length < 0x10000 or length >> 63:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "length not in its shortest form")
            mask = data[pos + head - 4 : pos + head]
            pos += head
            if control:
                if end - pos < length:
                    pos -= head
                    break
                payload = _unmask(data[pos : pos + length], mask)
                pos += length
                if opcode == OP_CLOSE:
                    check_close(payload)
                yield opcode, payload
                continue
            if (opcode == OP_CONTINUATION) != self._fragmented:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "bad fragmentation")
            if fin and opcode != OP_CONTINUATION and end - pos >= length:
                # The usual case: a whole message in one frame, all here.
                if length > self.max_message:
                    raise ProtocolError(CLOSE_TOO_BIG, "message too big")
                if opcode == OP_TEXT or self.keep_data:
                    payload = _unmask(data[pos : pos + length], mask)
                    if opcode == OP_TEXT and not payload.isascii():
                        try:
                            payload.decode("utf-8")
                        except UnicodeDecodeError:
                            raise ProtocolError(
                                CLOSE_INVALID_DATA, "text message is not UTF-8"
                            ) from None
                    if self.keep_data:
                        yield opcode, payload
                pos += length
                continue
            if opcode != OP_CONTINUATION:
                self._opcode = opcode
                self._message_size = 0
                if opcode == OP_TEXT:
                    self._utf8 = _utf8_decoder()
            self._message_size += length
            if self._message_size > self.max_message:
                raise ProtocolError(CLOSE_TOO_BIG, "message too big")
            self._fragmented = not fin
            self._fin = bool(fin)
            self._mask = mask
            self._missing = length
            taken = min(end - pos, length)
            self._payload(data, pos, pos + taken)
            pos += taken
            if self._missing:
                return
            message = self._frame_done()
            if message is not None:
                yield message
        if pos < end:
            self._buffer = data[pos:]

    def _payload(self, data: bytes, start: int, stop: int) -> None:
        """Take ``data[start:stop]``, payload of the current data frame: skip it, or
        unmask it to check a text message's UTF-8 and, with keep_data, keep it."""
        self._missing -= stop - start
        if (not self.keep_data and self._utf8 is None) or start == stop:
            return
        mask = self._mask
        plain = _unmask(data[start:stop], mask)
        turn = (stop - start) % 4
        if turn:
            self._mask = mask[turn:] + mask[:turn]
        utf8 = self._utf8
        if utf8 is not None and not (plain.isascii() and not utf8.getstate()[0]):
            try:
                utf8.decode(plain)
            except UnicodeDecodeError:
                raise ProtocolError(CLOSE_INVALID_DATA, "text message is not UTF-8") from None
        if self.keep_data:
            self._parts.append(plain)

    def _frame_done(self) -> tuple[int, bytes] | None:
        """The current data frame is whole: the message if it was its last frame."""
        if not self._fin:
            return None
        if self._utf8 is not None:
            try:
                self._utf8.decode(b"", True)
            except UnicodeDecodeError:
                raise ProtocolError(CLOSE_INVALID_DATA, "text message is not UTF-8") from None
            self._utf8 = None
        if not self.keep_data:
            return None
        parts, self._parts = self._parts, []
        return self._opcode, parts[0] if len(parts) == 1 else b"".join(parts)


_utf8_decoder = codecs.getincrementaldecoder("utf-8")


def _unmask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return data
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
