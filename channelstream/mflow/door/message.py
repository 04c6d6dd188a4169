"""A ZMQ source's message on the hub, and what clients and outputs get of it.

No I/O: :class:`ZmqMessage` keeps a source's raw parts (what outputs send, byte
for byte) and builds, on first use, the chat frame web clients get;
:func:`output_parts` is what an output sends for any message of its channel
(the forms are in :mod:`channelstream.mflow.door`'s doc). Called from the
doors' greenlets; a message is read-only once published.
"""

from __future__ import annotations

import base64
import math
from datetime import datetime, timezone
from typing import Any

from ... import strict_json
from ...chat.frames import live_json, message_frame, new_uuid, utcnow_iso
from ...chat.routing import CHANNEL_PREFIX, hub_channel
from ...hub import Message
from .. import jsonpart


class Origin:
    """What every message of one source shares: its channel, name and inline bound."""

    __slots__ = ("channel", "user", "max_inline")

    def __init__(self, channel: str, name: str, max_inline: int) -> None:
        self.channel = channel
        self.user = f"zmq:{name}"
        self.max_inline = max_inline


_BODY = Message.body  # the slot of Message's body, under ZmqMessage's lazy property


class ZmqMessage(Message):
    """A message of a ZMQ source: its raw ``parts`` (what outputs send) and, built
    on first use, the chat frame web clients get (the package doc has its form).

    Read-only once published, like every hub message.
    """

    __slots__ = ("parts", "origin")

    def __init__(self, parts: list, header: dict, origin: Origin, size: int) -> None:
        htype = header.get("htype")
        super().__init__(
            hub_channel(origin.channel),
            None,
            fields={"htype": htype},
            type=htype if type(htype) is str else None,
            size=size,
        )
        self.parts = parts
        self.origin = origin

    def _get_body(self) -> dict[str, Any]:
        frame = _BODY.__get__(self)
        if frame is None:
            frame = _web_frame(self)
            _BODY.__set__(self, frame)
        return frame

    def _set_body(self, value: Any) -> None:
        _BODY.__set__(self, value)

    body = property(_get_body, _set_body)  # type: ignore[assignment]


def _web_frame(message: ZmqMessage) -> dict[str, Any]:
    origin = message.origin
    parts = message.parts
    header = web_header(parts[0])
    inline = origin.max_inline
    described = []
    for part in parts[1:]:
        size = len(part)
        if size <= inline:
            described.append({"size": size, "base64": base64.b64encode(part).decode("ascii")})
        else:
            described.append({"size": size})
    return message_frame(
        channel=origin.channel,
        uuid=new_uuid(),
        timestamp=iso_time(message.time_ms) if message.time_ms else utcnow_iso(),
        user=origin.user,
        message={"htype": header.get("htype"), "header": header, "parts": described},
    )


def iso_time(ms: int) -> str:
    """UTC milliseconds as channelstream's naive ISO 8601 timestamp."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).replace(tzinfo=None).isoformat()


def web_header(raw: bytes) -> dict[str, Any]:
    """Part 0 (a JSON object, as the source checked) as standard JSON for browsers.

    mflow writes headers with Python's ``json``, which allows ``NaN`` and
    ``Infinity``; they become ``null`` (as do strings that cannot be UTF-8
    and nesting past :data:`channelstream.strict_json.MAX_DEPTH`).
    """
    try:
        value = strict_json.loads_utf8(raw)
    except ValueError:
        value = _standard(jsonpart.loads(raw), 0)
    return value if isinstance(value, dict) else {}


def _standard(value: Any, depth: int) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict | list):
        if depth >= strict_json.MAX_DEPTH:
            return None
        if isinstance(value, list):
            return [_standard(item, depth + 1) for item in value]
        return {_standard(k, depth + 1): _standard(v, depth + 1) for k, v in value.items()}
    return value


def _raw_header(message: Message) -> bytes:
    """Codec: part 0 of the ``raw-1.0`` message an output sends for a non-ZMQ frame."""
    channel = message.channel
    if channel.startswith(CHANNEL_PREFIX):
        channel = channel[len(CHANNEL_PREFIX):]
    kind = "bytes" if isinstance(message.body, bytes | bytearray) else "json"
    return jsonpart.dumps({"htype": "raw-1.0", "type": kind, "channel": channel,
                           "offset": message.offset, "epoch": message.epoch})


def _raw_payload(message: Message) -> bytes:
    """Codec: part 1 of that message: the frame as web clients get it."""
    body = message.body
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, dict):
        return message.encoded(live_json)  # the very bytes /ws clients get
    return strict_json.dumps(body)


def output_parts(message: Message) -> list:
    """What an output sends for ``message`` (see the package doc)."""
    if isinstance(message, ZmqMessage):
        return message.parts
    return [message.encoded(_raw_header), message.encoded(_raw_payload)]
