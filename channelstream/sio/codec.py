"""socket.io packets of the ``/stream`` namespace, encoded once per message. No I/O here.

Wire format (engine.io v4 over websocket or long-polling, socket.io v5
protocol). Each packet the server sends is one engine.io MESSAGE (``4``)
holding one socket.io EVENT (``2``) of the namespace, its data a JSON array
``[event name, argument]``::

    42/stream,["message",[{frame}, {frame}, ...]]
    42/stream,["presence",[{frame}]]
    42/stream,["user_state_change",[{frame}]]
    42/stream,["data",{packet}]

Channelstream frames are the objects of ``/ws`` (:mod:`channelstream.chat.frames`:
the same bytes, shared with every other transport through
``Message.encoded``); a batch drained from a connection's outbox becomes one
event per run of consecutive frames of the same event (:func:`event_of`), so
a batch of 50 messages is one ``message`` event holding 50 frames. GATD
packets are one ``data`` event each, as GATD's streamer sent them.

Two forms of the same packets:

- text (``str``), for engine.io's queue (long-polling, an upgrade under
  way): :func:`event_packet`, :func:`chat_packets`, :func:`data_event`;
- websocket frames (``bytes``), for a session on a websocket, one text frame
  per packet: :func:`chat_frames`, :func:`data_event_frame`. They are built
  from the frames' JSON bytes with one join per batch (no text in between).

Everything is computed once per message per codec and cached on the hub
message (:meth:`~channelstream.hub.Message.encoded`): for a broadcast to
1,000 clients the JSON is made once; a one-frame event is one cached
websocket frame sent as it is to every client, and a batch's frames are
reused by every client that drains the same batch (:func:`chat_frames`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

from ..chat.frames import catchup_json, live_json
from ..hub import Message
from ..packets import ndjson
from ..strict_json import dumps_text
from ..web.websocket import LastBatchFrame
from ..web.wsframes import frame

#: The namespace both uses share.
NAMESPACE = "/stream"

#: Event of each channelstream frame type; every other type is a ``message``.
FRAME_EVENTS = {"presence": "presence", "user_state_change": "user_state_change"}

_HEAD = "42" + NAMESPACE + ',["'
#: ``42/stream,["<event>",[`` as bytes, by event.
_EVENT_HEADS = {
    event: (_HEAD + event + '",[').encode() for event in ("message", *FRAME_EVENTS.values())
}
_TAIL = b"]]"


def event_packet(event: str, data: Any) -> str:
    """One engine.io text packet: the socket.io event ``event`` with ``data``."""
    return _HEAD + event + '",' + dumps_text(data) + "]"


def event_of(message: Message) -> str:
    """The socket.io event that carries a channelstream frame."""
    body = message.body
    kind = body.get("type") if isinstance(body, dict) else None
    return FRAME_EVENTS.get(kind, "message")  # type: ignore[arg-type]


def live_frame(message: Message) -> str:
    """Codec: the frame as a live delivery (the ``/ws`` bytes, as text)."""
    return message.encoded(live_json).decode()


def catchup_frame(message: Message) -> str:
    """Codec: the frame as replayed history (``catchup: true``)."""
    return message.encoded(catchup_json).decode()


def live_event(message: Message) -> str:
    """Codec: a whole one-frame event, live (the common case of a broadcast)."""
    return _HEAD + event_of(message) + '",[' + message.encoded(live_frame) + "]]"


def catchup_event(message: Message) -> str:
    """Codec: a whole one-frame event, replayed."""
    return _HEAD + event_of(message) + '",[' + message.encoded(catchup_frame) + "]]"


def _runs(batch: Sequence[Message]) -> Iterable[tuple[str, int, int]]:
    """``(event, start, end)`` of each run of consecutive frames of one event."""
    start = 0
    count = len(batch)
    while start < count:
        event = event_of(batch[start])
        end = start + 1
        while end < count and event_of(batch[end]) == event:
            end += 1
        yield event, start, end
        start = end


def chat_packets(
    batch: Sequence[Message], replayed: int = 0, extra: Iterable[bytes] = ()
) -> list[str]:
    """The text packets of a drained batch: one event per run of frames of one event.

    The first ``replayed`` messages are catch-up; ``extra`` frames (already
    encoded JSON, e.g. ``resume_failed``) come first, in a ``message`` event.
    """
    packets: list[str] = []
    extra_frames = [frame.decode() for frame in extra]
    if extra_frames:
        packets.append(_HEAD + 'message",[' + ",".join(extra_frames) + "]]")
    for event, start, end in _runs(batch):
        if end - start == 1:
            codec = catchup_event if start < replayed else live_event
            packets.append(batch[start].encoded(codec))
        else:
            frames = [
                batch[i].encoded(catchup_frame if i < replayed else live_frame)
                for i in range(start, end)
            ]
            packets.append(_HEAD + event + '",[' + ",".join(frames) + "]]")
    return packets


def data_event(message: Message) -> str:
    """Codec: a GATD packet as one ``data`` event (its JSON shared with the TCP streamer)."""
    return _HEAD + 'data",' + message.encoded(ndjson)[:-1].decode() + "]"


# -- websocket frames: the packets above as the bytes a websocket sends ----------------------


def frame_header(length: int) -> bytes:
    """The header of an unmasked, final text frame of ``length`` payload bytes
    (:func:`channelstream.web.wsframes.frame` without the payload)."""
    if length < 126:
        return bytes((0x81, length))
    if length < 0x10000:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


def packet_frames(packets: Iterable[str]) -> bytes:
    """Websocket text frames, one per engine.io packet."""
    return b"".join(frame(text.encode()) for text in packets)


def live_event_frame(message: Message) -> bytes:
    """Codec: :func:`live_event` as a websocket frame."""
    return frame(message.encoded(live_event).encode())


def catchup_event_frame(message: Message) -> bytes:
    """Codec: :func:`catchup_event` as a websocket frame."""
    return frame(message.encoded(catchup_event).encode())


def data_event_frame(message: Message) -> bytes:
    """Codec: :func:`data_event` as a websocket frame."""
    return frame(message.encoded(data_event).encode())


def batch_frames(batch: Sequence[Message], replayed: int = 0) -> bytes:
    """The websocket frames of :func:`chat_packets` (no ``extra``), built from the
    frames' cached JSON bytes in one join."""
    parts: list[bytes] = []
    for event, start, end in _runs(batch):
        frames = [
            batch[i].encoded(catchup_json if i < replayed else live_json)
            for i in range(start, end)
        ]
        head = _EVENT_HEADS[event]
        size = len(head) + sum(map(len, frames)) + len(frames) - 1 + len(_TAIL)
        parts += (frame_header(size), head, b",".join(frames), _TAIL)
    return b"".join(parts)


_MESSAGE_HEAD = _EVENT_HEADS["message"]


class WindowFrames:
    """The frames of batches of live ``message`` frames of one channel, cut from the
    messages' JSON joined once.

    The outboxes of a channel's clients hold windows of one sequence of
    messages: a client that drained everything it had drains what was just
    published, like the others; one whose socket was full drains a longer
    window, ending at the same message. :attr:`body` holds the JSON of the
    recent messages drained, in sequence order, joined with commas, once; a
    batch that is a run of consecutive messages of it is one slice of it: its
    frame costs a lookup, an identity comparison of two lists (in C) and one
    copy, whatever its length and wherever it starts. Messages just before or
    after the sequence kept are added as a batch brings them (a client that
    lagged further drains an earlier start: the JSON of those messages alone
    is made and put in front); a batch that starts past them (by channel
    offset) starts the sequence anew. At most
    :attr:`max_messages` messages and :attr:`max_bytes` bytes are kept, but
    for the last batch (the older half goes). :meth:`frame` returns None for
    a batch that is not such a run (another event, messages of the sequence
    left out, such as private ones, or older than what is kept): the caller
    encodes it on its own.
    """

    max_messages = 2048
    max_bytes = 1 << 20

    def __init__(self) -> None:
        self.msgs: list[Message] = []
        self.pos: dict[Message, int] = {}  # absolute index of each message kept
        self.base = 0  # absolute index of msgs[0]
        self.starts: list[int] = []  # absolute byte offset of each message's JSON
        self.byte_base = 0  # absolute byte offset of body[0]
        self.body = bytearray()
        self.last: list[Message] = []  # the last batch framed, and its frame
        self.last_frame = b""

    def frame(self, batch: list[Message]) -> bytes | None:
        """The websocket frame of ``batch`` (live, one ``message`` event), or None."""
        if batch == self.last:  # the next client of a broadcast: identity per item
            return self.last_frame
        span = self._span(batch)
        if span is None:
            return None
        start, end = span
        size = len(_MESSAGE_HEAD) + end - start + len(_TAIL)
        with memoryview(self.body) as view:
            data = b"".join((frame_header(size), _MESSAGE_HEAD, view[start:end], _TAIL))
        self.last, self.last_frame = batch, data
        return data

    def _span(self, batch: list[Message]) -> tuple[int, int] | None:
        """Where the JSON of ``batch`` lies in :attr:`body`, after adding what it
        brings before or after what is kept; None if it is not a run of it."""
        count = len(batch)
        msgs = self.msgs
        index = self.pos.get(batch[0])
        if index is None:
            first = batch[0].offset
            if msgs and first < msgs[0].offset:  # starts before what is kept: reaches it?
                try:
                    ahead = batch.index(msgs[0])  # by identity
                except ValueError:
                    return None
                if not self._prepend(batch[:ahead]):
                    return None
            elif not msgs or first > msgs[-1].offset:  # past all that is kept: anew
                self._clear()
                if not self._append(batch):
                    return None
                self._trim(count)
            else:
                return None  # left out of the sequence kept (another stream)
            index = self.pos[batch[0]]
        k = index - self.base
        have = len(self.msgs) - k
        if have >= count:
            if self.msgs[k : k + count] != batch:
                return None
        else:
            if self.msgs[k:] != batch[:have] or not self._append(batch[have:]):
                return None
            self._trim(count)
            k = self.pos[batch[0]] - self.base
        last = len(batch[-1].encoded(live_json))
        base = self.byte_base
        return self.starts[k] - base, self.starts[k + count - 1] + last - base

    def _pieces(self, messages: list[Message]) -> list[bytes] | None:
        """The live JSON of ``messages``, or None if one is not a ``message`` frame."""
        pieces = []
        for message in messages:
            if event_of(message) != "message":
                return None
            pieces.append(message.encoded(live_json))
        return pieces

    def _prepend(self, older: list[Message]) -> bool:
        """Add messages that come just before the sequence kept (False, and nothing
        added, if one is not a ``message`` frame or the bounds would be passed)."""
        pieces = self._pieces(older)
        if pieces is None:
            return False
        data = b",".join(pieces) + b","
        if (
            len(self.msgs) + len(older) > self.max_messages
            or len(self.body) + len(data) > self.max_bytes
        ):
            return False
        self.body[:0] = data
        self.byte_base -= len(data)
        offset = self.byte_base
        starts = []
        for piece in pieces:
            starts.append(offset)
            offset += len(piece) + 1
        self.starts[:0] = starts
        self.base -= len(older)
        for index, message in enumerate(older, self.base):
            self.pos[message] = index
        self.msgs[:0] = older
        return True

    def _append(self, more: list[Message]) -> bool:
        """Add messages that continue the sequence (False, and nothing added, if one
        is not a ``message`` frame)."""
        pieces = self._pieces(more)
        if pieces is None:
            return False
        body = self.body
        offset = self.byte_base + len(body)
        index = self.base + len(self.msgs)
        for message, piece in zip(more, pieces, strict=True):
            if body:
                body += b","
                offset += 1
            self.starts.append(offset)
            self.pos[message] = index
            body += piece
            offset += len(piece)
            index += 1
        self.msgs += more
        return True

    def _trim(self, keep: int) -> None:
        """Past the bounds, let the older half go, keeping the ``keep`` newest messages."""
        if len(self.msgs) <= self.max_messages and len(self.body) <= self.max_bytes:
            return
        drop = min(len(self.msgs) // 2, len(self.msgs) - keep)
        if drop <= 0:
            return
        for message in self.msgs[:drop]:
            del self.pos[message]
        cut = self.starts[drop]
        del self.body[: cut - self.byte_base]
        self.byte_base = cut
        del self.msgs[:drop]
        del self.starts[:drop]
        self.base += drop

    def _clear(self) -> None:
        self.msgs = []
        self.pos = {}
        self.starts = []
        self.byte_base = 0
        self.body = bytearray()


class ChannelWindows:
    """A :class:`WindowFrames` per channel, for the :attr:`max_channels` channels
    that drained last."""

    max_channels = 16

    def __init__(self) -> None:
        self.by_channel: dict[str, WindowFrames] = {}

    def frame(self, batch: list[Message]) -> bytes | None:
        channel = batch[0].channel
        windows = self.by_channel.get(channel)
        if windows is None:
            if len(self.by_channel) >= self.max_channels:
                del self.by_channel[next(iter(self.by_channel))]
            windows = self.by_channel[channel] = WindowFrames()
        return windows.frame(batch)


_windows = ChannelWindows()
_last_batch = LastBatchFrame(batch_frames)


def chat_frames(batch: list[Message], replayed: int = 0) -> bytes:
    """The websocket frames of :func:`chat_packets` (no ``extra``), encoded once
    for every client: a one-message batch's cached on the message, a batch of
    live ``message`` frames cut from its channel's :class:`WindowFrames`, any
    other kept while the next clients drain the same batch
    (:class:`~channelstream.web.websocket.LastBatchFrame`).

    ``batch`` is kept by reference: the caller must not change it afterwards.
    """
    if len(batch) == 1:
        return batch[0].encoded(catchup_event_frame if replayed else live_event_frame)
    if not replayed:
        data = _windows.frame(batch)
        if data is not None:
            return data
    return _last_batch.encode(batch, replayed)


__all__ = [
    "NAMESPACE",
    "ChannelWindows",
    "WindowFrames",
    "batch_frames",
    "chat_frames",
    "chat_packets",
    "data_event",
    "data_event_frame",
    "event_of",
    "event_packet",
    "frame_header",
    "packet_frames",
]
