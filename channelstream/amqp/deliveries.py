"""A fast reader of one consumer's deliveries, under pika.

pika decodes every frame into objects, assembles content through a chain of
callbacks, decodes each message's headers into a dict and queues an event
per message for ``BlockingChannel`` to dispatch: about 55 us of CPU per
small message here, more than the whole budget of a 20,000 packets/s
ingest. The ingest door needs only each message's delivery tag and body.

:class:`DeliveryReader` takes over the connection's input
(``Connection._on_data_available``, what pika's transport calls with each
chunk read) and reads the frames of the door's consumer itself, straight
from the bytes (wire format below): each complete message becomes
``(delivery_tag, body)``, and every message of one chunk is handed to
``on_batch`` in one call, in the order they came. Every other frame
(heartbeats, acks of methods, ``Basic.Cancel``, ``Channel.Close``, another
channel's content...) goes to pika as before, after the deliveries that
preceded it, so pika keeps running the connection: handshake, heartbeats,
flow control, closing. It counts ``bytes_received``/``frames_received`` as
pika does, so pika's heartbeat checker sees the traffic.

With ``properties=True`` (a stream consumer) each delivery also carries
what the stream door needs of its properties, read straight from the
content header (:func:`stream_properties`): ``(delivery_tag, body,
StreamMeta)``, where :class:`StreamMeta` holds the ``x-stream-offset``
header, the message's time (the ``timestamp_in_ms`` header, else the
``timestamp`` property in ms) and the door's ``x-channelstream-marker``
header. Other headers are skipped, not decoded.

A message whose body is larger than ``max_body`` is not assembled: its body
frames are skipped as they come, and it is handed on as
``(delivery_tag, BodyTooLarge(size))`` so that it is counted and
acknowledged away. A message is kept in the buffer until it is complete, so
the buffer holds at most one chunk plus one message of up to ``max_body``.

:func:`install` returns None when the pika in use does not have the
internals this relies on (checked, not assumed): the door then consumes
through pika's own callbacks, only slower.

Wire format (AMQP 0-9-1, section 4.2.3): a frame is ``type:u8
channel:u16 size:u32 payload[size] 0xCE``. A delivery is a method frame
(type 1) whose payload starts with class 60, method 60 (``Basic.Deliver``:
``consumer-tag:shortstr delivery-tag:u64 redelivered:u8 exchange:shortstr
routing-key:shortstr``), then a content header frame (type 2: ``class:u16
weight:u16 body-size:u64 properties...``), then body frames (type 3) whose
payloads add up to body-size (none when it is 0).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pika.exceptions
import pika.spec
from pika import frame as pika_frame

_HEAD = struct.Struct(">BHI")
_U64 = struct.Struct(">Q")
_METHOD, _HEADER, _BODY = 1, 2, 3
_FRAME_END = 0xCE
_DELIVER = b"\x00\x3c\x00\x3c"  # class 60 (basic), method 60 (deliver)
_HEAD_SIZE = 7  # type, channel, size: the frame end byte follows the payload


#: Header of the stream door's markers (the value names one connection).
MARKER_HEADER = "x-channelstream-marker"
#: Header of a message's time in ms (RabbitMQ's message interceptor and
#: timestamp plugin write it; so do this project's publishers).
TIME_HEADER = "timestamp_in_ms"

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
#: AMQP field-table value types of a fixed size (RabbitMQ's flavour of 0-9-1).
_FIXED = {
    ord("t"): 1, ord("b"): 1, ord("B"): 1, ord("s"): 2, ord("u"): 2, ord("I"): 4,
    ord("i"): 4, ord("l"): 8, ord("L"): 8, ord("f"): 4, ord("d"): 8, ord("D"): 5,
    ord("T"): 8, ord("V"): 0,
}  # fmt: skip
#: Integer types: struct format of each.
_INTEGERS = {
    ord("b"): ">b", ord("B"): ">B", ord("s"): ">h", ord("u"): ">H", ord("I"): ">i",
    ord("i"): ">I", ord("l"): ">q", ord("L"): ">Q",
}  # fmt: skip
#: Types whose value is a u32 size and that many bytes (strings, arrays, tables).
_SIZED = frozenset({ord("S"), ord("x"), ord("A"), ord("F")})
_OFFSET_KEY = b"x-stream-offset"
_TIME_KEY = TIME_HEADER.encode()
_MARKER_KEY = MARKER_HEADER.encode()


class StreamMeta(tuple):
    """``(offset, time_ms, marker)`` of a stream delivery (each may be None)."""

    __slots__ = ()

    def __new__(cls, offset: int | None, time_ms: int | None, marker: str | None) -> StreamMeta:
        return tuple.__new__(cls, (offset, time_ms, marker))

    @property
    def offset(self) -> int | None:
        return self[0]

    @property
    def time_ms(self) -> int | None:
        return self[1]

    @property
    def marker(self) -> str | None:
        return self[2]


def meta_of(headers: dict[str, Any] | None, timestamp: int | None) -> StreamMeta:
    """:class:`StreamMeta` from decoded properties (pika's path)."""
    headers = headers or {}
    offset = headers.get(_OFFSET_KEY.decode())
    stamp = headers.get(TIME_HEADER)
    marker = headers.get(MARKER_HEADER)
    if isinstance(marker, bytes):
        marker = marker.decode("utf-8", "replace")
    return StreamMeta(
        offset if isinstance(offset, int) and not isinstance(offset, bool) else None,
        _time_ms(stamp, timestamp),
        marker if isinstance(marker, str) else None,
    )


def _time_ms(stamp: object, timestamp: int | None) -> int | None:
    if isinstance(stamp, int) and not isinstance(stamp, bool) and stamp > 0:
        return stamp
    if isinstance(timestamp, int) and timestamp > 0:
        return timestamp * 1000
    return None


def stream_properties(buf: bytes, pos: int, end: int) -> StreamMeta | None:
    """The :class:`StreamMeta` of the content header payload ``buf[pos:end]``.

    Walks the basic properties (AMQP 0-9-1, 4.2.6.1: a u16 flag word, then
    each property present, in order) and the headers table, decoding only
    the three headers wanted. None when the header holds something this
    walk does not know (a field type outside RabbitMQ's set): the caller
    then decodes it with pika.
    """
    try:
        (flags,) = _U16.unpack_from(buf, pos + 12)
        p = pos + 14
        if flags & 1:  # a second flag word: not basic's
            return None
        if flags & 0x8000:  # content-type
            p += 1 + buf[p]
        if flags & 0x4000:  # content-encoding
            p += 1 + buf[p]
        offset = stamp = marker = None
        if flags & 0x2000:  # headers
            (size,) = _U32.unpack_from(buf, p)
            p += 4
            table_end = p + size
            while p < table_end:
                key_end = p + 1 + buf[p]
                key = buf[p + 1 : key_end]
                kind = buf[key_end]
                p = key_end + 1
                width = _FIXED.get(kind)
                if width is None:
                    if kind not in _SIZED:
                        return None
                    (width,) = _U32.unpack_from(buf, p)
                    width += 4
                if key == _OFFSET_KEY or key == _TIME_KEY:
                    fmt = _INTEGERS.get(kind)
                    if fmt is not None:
                        (value,) = struct.unpack_from(fmt, buf, p)
                        if key == _OFFSET_KEY:
                            offset = value
                        else:
                            stamp = value
                elif key == _MARKER_KEY and kind == ord("S"):
                    marker = buf[p + 4 : p + width].decode("utf-8", "replace")
                p += width
            p = table_end
        if flags & 0x1000:  # delivery-mode
            p += 1
        if flags & 0x0800:  # priority
            p += 1
        for bit in (0x0400, 0x0200, 0x0100, 0x0080):  # correlation, reply-to, expiration, id
            if flags & bit:
                p += 1 + buf[p]
        timestamp = None
        if flags & 0x0040:
            (timestamp,) = _U64.unpack_from(buf, p)
            p += 8
        if p > end:
            return None
    except (IndexError, struct.error):
        return None
    return StreamMeta(offset, _time_ms(stamp, timestamp), marker)


def _decode_meta(buf: bytes, pos: int) -> StreamMeta:
    """pika's decoding of the properties at ``pos`` (the unusual case)."""
    properties = pika.spec.BasicProperties()
    properties.decode(buf, pos + 12)
    return meta_of(properties.headers, properties.timestamp)


class BodyTooLarge:
    """Stands for the body of a message larger than ``max_body``: not read."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size

    def __repr__(self) -> str:
        return f"BodyTooLarge({self.size})"


Delivery = tuple  # (tag, body) or, with properties, (tag, body, StreamMeta)
OnBatch = Callable[[list[Delivery]], object]


class DeliveryReader:
    """Reads the deliveries of one consumer; see the module doc.

    :param connection: pika's connection object (``BlockingConnection._impl``).
    :param channel_number: the consumer's channel.
    :param consumer_tag: the consumer's tag (deliveries to another consumer
        go to pika).
    :param on_batch: called with the deliveries of each chunk read, in
        order, before any later frame is handed to pika. It runs inside
        pika's input handling: it may publish and acknowledge (without
        waiting), and what it raises aborts the connection.
    :param max_body: largest body assembled, in bytes.
    :param properties: also read each delivery's :class:`StreamMeta`.
    """

    def __init__(
        self,
        connection: Any,
        channel_number: int,
        consumer_tag: str,
        on_batch: OnBatch,
        *,
        max_body: int,
        properties: bool = False,
    ) -> None:
        self._connection = connection
        self._channel = channel_number
        self._tag = consumer_tag.encode("utf-8")
        self._on_batch = on_batch
        self._max_body = max_body
        self._properties = properties
        #: body bytes still to skip of an over-large message, and its delivery
        self._skip = 0
        self._skipped: Delivery | None = None
        self._frames = 0

    def feed(self, data: bytes) -> None:
        """Take a chunk read from the socket (pika's ``_on_data_available``)."""
        connection = self._connection
        buf = connection._frame_buffer
        buf = buf + data if buf else data
        n = len(buf)
        pos = 0
        batch: list[Delivery] = []
        channel = self._channel
        unpack_head = _HEAD.unpack_from
        self._frames = 0
        try:
            while n - pos > _HEAD_SIZE:
                kind, number, size = unpack_head(buf, pos)
                end = pos + _HEAD_SIZE + size  # the frame end byte
                if end >= n:
                    break  # incomplete frame: wait for more
                if number == channel:
                    if self._skip and kind == _BODY:
                        pos = self._skip_body(buf, pos, end, size, batch)
                        continue
                    if kind == _METHOD and not self._skip and buf[pos + 7 : pos + 11] == _DELIVER:
                        after = self._delivery(buf, pos, end, n, batch)
                        if after < 0:
                            break  # the rest of the message is still on its way
                        if after:
                            pos = after
                            continue
                # Anything else is pika's, after the deliveries before it.
                if batch:
                    self._on_batch(batch)
                    batch = []
                consumed, value = pika_frame.decode_frame(buf[pos : end + 1])
                if value is None:  # pragma: no cover - decode_frame had a whole frame
                    raise pika.exceptions.InvalidFrameError("pika could not decode a frame")
                pos += consumed
                connection._process_frame(value)  # counts itself in frames_received
        finally:
            connection._frame_buffer = buf[pos:] if pos < n else b""
            connection.bytes_received += pos
            connection.frames_received += self._frames
        if batch:
            self._on_batch(batch)

    def _delivery(self, buf: bytes, pos: int, end: int, n: int, batch: list[Delivery]) -> int:
        """Read the message whose ``Basic.Deliver`` frame is at ``pos``.

        Returns -1 when it is not all in ``buf`` yet, 0 when pika should have
        the frame (another consumer's delivery, a malformed frame, for pika to
        refuse), else the position after the message.
        """
        if buf[end] != _FRAME_END:
            return 0
        p = pos + 11
        tag_end = p + 1 + buf[p]
        if buf[p + 1 : tag_end] != self._tag or tag_end + 8 > end:
            return 0
        (delivery_tag,) = _U64.unpack_from(buf, tag_end)
        # The content header frame.
        head = end + 1
        if n - head <= _HEAD_SIZE:
            return -1
        kind, number, size = _HEAD.unpack_from(buf, head)
        head_end = head + _HEAD_SIZE + size
        if kind != _HEADER or number != self._channel or size < 14:
            return 0
        if head_end >= n:
            return -1
        if buf[head_end] != _FRAME_END:
            return 0
        (body_size,) = _U64.unpack_from(buf, head + 11)
        meta = None
        if self._properties:
            meta = stream_properties(buf, head + 7, head_end)
            if meta is None:
                meta = _decode_meta(buf, head + 7)
        p = head_end + 1
        if body_size > self._max_body:  # > 0: its body frames are skipped as they come
            self._skip = body_size
            too_large = BodyTooLarge(body_size)
            self._skipped = (
                (delivery_tag, too_large) if meta is None else (delivery_tag, too_large, meta)
            )
            self._frames += 2
            return p
        remaining = body_size
        parts: list[tuple[int, int]] = []
        while remaining:
            if n - p <= _HEAD_SIZE:
                return -1
            kind, number, size = _HEAD.unpack_from(buf, p)
            body_end = p + _HEAD_SIZE + size
            if kind != _BODY or number != self._channel or size > remaining:
                return 0
            if body_end >= n:
                return -1
            if buf[body_end] != _FRAME_END:
                return 0
            parts.append((p + _HEAD_SIZE, body_end))
            remaining -= size
            p = body_end + 1
        if len(parts) == 1:
            start, stop = parts[0]
            body = buf[start:stop]
        else:
            body = b"".join([buf[start:stop] for start, stop in parts])
        batch.append((delivery_tag, body) if meta is None else (delivery_tag, body, meta))
        self._frames += 2 + len(parts)
        return p

    def _skip_body(self, buf: bytes, pos: int, end: int, size: int, batch: list[Delivery]) -> int:
        if buf[end] != _FRAME_END or size > self._skip:
            raise pika.exceptions.InvalidFrameError(
                "a body frame does not fit the message it belongs to"
            )
        self._skip -= size
        self._frames += 1
        if not self._skip and self._skipped is not None:
            batch.append(self._skipped)
            self._skipped = None
        return end + 1


def install(
    connection: Any,
    channel_number: int,
    consumer_tag: str,
    on_batch: OnBatch,
    *,
    max_body: int,
    read_size: int,
    properties: bool = False,
) -> DeliveryReader | None:
    """Make ``connection`` (pika's, ``BlockingConnection._impl``) read the
    consumer's deliveries with a :class:`DeliveryReader`, up to ``read_size``
    bytes per read; None (nothing changed) when this pika lacks what it needs.
    """
    transport = getattr(connection, "_transport", None)
    needed = (
        isinstance(getattr(connection, "_frame_buffer", None), bytes)
        and isinstance(getattr(connection, "bytes_received", None), int)
        and isinstance(getattr(connection, "frames_received", None), int)
        and callable(getattr(connection, "_process_frame", None))
        and callable(getattr(connection, "_on_data_available", None))
        and isinstance(getattr(transport, "_MAX_RECV_BYTES", None), int)
        and isinstance(getattr(transport, "_MAX_CONSUME_BYTES", None), int)
    )
    if not needed:
        return None
    reader = DeliveryReader(
        connection, channel_number, consumer_tag, on_batch, max_body=max_body, properties=properties
    )
    transport._MAX_RECV_BYTES = read_size
    transport._MAX_CONSUME_BYTES = read_size
    connection._on_data_available = reader.feed
    return reader


__all__ = [
    "MARKER_HEADER",
    "TIME_HEADER",
    "BodyTooLarge",
    "Delivery",
    "DeliveryReader",
    "StreamMeta",
    "install",
    "meta_of",
    "stream_properties",
]
