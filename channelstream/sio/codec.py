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

Every text here is computed once per message per codec and cached on the hub
message (:meth:`~channelstream.hub.Message.encoded`): for a broadcast to
1,000 clients the JSON is made once; a one-frame event is one cached string
sent as it is to every client. Codecs of this module return ``str`` (engine.io
text frames), not bytes.
"""

from __future__ import annotations

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


def chat_packets(
    batch: Sequence[Message], replayed: int = 0, extra: Iterable[bytes] = ()
) -> list[str]:
    """The packets of a drained batch: one event per run of frames of one event.

    The first ``replayed`` messages are catch-up; ``extra`` frames (already
    encoded JSON, e.g. ``resume_failed``) come first, in a ``message`` event.
    """
    packets: list[str] = []
    extra_frames = [frame.decode() for frame in extra]
    if extra_frames:
        packets.append(_HEAD + 'message",[' + ",".join(extra_frames) + "]]")
    start = 0
    count = len(batch)
    while start < count:
        event = event_of(batch[start])
        end = start + 1
        while end < count and event_of(batch[end]) == event:
            end += 1
        if end - start == 1:
            codec = catchup_event if start < replayed else live_event
            packets.append(batch[start].encoded(codec))
        else:
            frames = [
                batch[i].encoded(catchup_frame if i < replayed else live_frame)
                for i in range(start, end)
            ]
            packets.append(_HEAD + event + '",[' + ",".join(frames) + "]]")
        start = end
    return packets


def data_event(message: Message) -> str:
    """Codec: a GATD packet as one ``data`` event (its JSON shared with the TCP streamer)."""
    return _HEAD + 'data",' + message.encoded(ndjson)[:-1].decode() + "]"


# -- websocket frames: the packets above as the bytes a websocket sends ----------------------


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


_last_batch = LastBatchFrame(lambda batch, replayed: packet_frames(chat_packets(batch, replayed)))


def chat_frames(batch: Sequence[Message], replayed: int = 0) -> bytes:
    """The websocket frames of :func:`chat_packets` (a one-message batch's cached on it)."""
    if len(batch) == 1:
        return batch[0].encoded(catchup_event_frame if replayed else live_event_frame)
    return _last_batch.encode(list(batch), replayed)


__all__ = [
    "NAMESPACE",
    "chat_frames",
    "chat_packets",
    "data_event_frame",
    "packet_frames",
    "data_event",
    "event_of",
    "event_packet",
]
