"""A G3 frame's message on the hub, and what web clients and other processes get of it.

No I/O: :class:`G3Message` keeps the frame (its bytes are what G3 clients
get) and builds, on first use, the chat frame web clients get (its form is in
:mod:`channelstream.g3.door`'s doc); importing this module registers its wire
form, so that a G3 message crosses processes on an engine bus with its
frame's bytes. A message is read-only once published.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ...chat.frames import iso_from_ms, message_frame, new_uuid, utcnow_iso
from ...chat.routing import hub_channel
from ...hub import Filter, Message, wire
from ..codec import decode_frame
from ..frame import G3Frame, describe
from ..frametype import G3FrameType

#: The fields of every G3 message, and the filter of G3 clients' subscriptions.
G3_FIELDS: Mapping[str, str] = MappingProxyType({"format": "g3"})
G3_FILTER = Filter(G3_FIELDS)


class Origin:
    """What every message of one source shares: its chat channel and user."""

    __slots__ = ("channel", "hub_channel", "user")

    def __init__(self, channel: str, index: int) -> None:
        self.channel = channel
        self.hub_channel = hub_channel(channel)
        self.user = f"g3:{index}"


def type_name(frame_type: G3FrameType) -> str:
    """The hub message type of a frame type: its name (``Timepoint``, an ad-hoc ``AB``)."""
    return frame_type.name or f"code-{int(frame_type)}"


_BODY = Message.body  # the slot of Message's body, under G3Message's lazy property


class G3Message(Message):
    """A frame on the hub: ``frame`` (its bytes are what G3 clients get) and, built
    on first use, the chat frame web clients get (the package doc has its form).

    Read-only once published, like every hub message.
    """

    __slots__ = ("frame", "origin")

    def __init__(
        self,
        frame: G3Frame,
        origin: Origin | None,
        *,
        channel: str,
        kind: str,
        droppable: bool,
        body: Any = None,
    ) -> None:
        self.frame = frame
        self.origin = origin
        super().__init__(
            channel,
            body,
            fields=G3_FIELDS,
            kind=kind,
            type=type_name(frame.type),
            droppable=droppable,
            size=len(frame.encode()),
        )

    @property
    def frame_bytes(self) -> bytes:
        """The frame's bytes, as the source sent them."""
        return self.frame.encode()

    def _get_body(self) -> dict[str, Any]:
        body = _BODY.__get__(self)
        if body is None:
            body = web_frame(self)
            _BODY.__set__(self, body)
        return body

    def _set_body(self, value: Any) -> None:
        _BODY.__set__(self, value)

    body = property(_get_body, _set_body)  # type: ignore[assignment]


def web_frame(message: G3Message) -> dict[str, Any]:
    """The chat frame of a G3 message (see the package doc)."""
    origin = message.origin
    objects: dict[str, Any] = {}
    opaque: dict[str, Any] = {}
    for name, value in describe(message.frame)["objects"].items():
        if isinstance(value, dict):
            opaque[_text(name)] = value["class"]
        else:
            objects[_text(name)] = _json_value(value)
    return message_frame(
        channel=origin.channel if origin is not None else None,
        uuid=new_uuid(),
        timestamp=iso_from_ms(message.time_ms) if message.time_ms else utcnow_iso(),
        user=origin.user if origin is not None else "g3",
        message={"frame_type": message.type, "objects": objects, "opaque": opaque},
    )


def _text(value: str) -> str:
    """``value`` as UTF-8-encodable text (bytes that were not UTF-8 become U+FFFD)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def _json_value(value: Any) -> Any:
    if type(value) is float and not math.isfinite(value):
        return None
    if type(value) is str:
        return _text(value)
    return value


def _wire_extra(message: Message) -> str:
    return base64.b64encode(message.frame.encode()).decode("ascii")  # type: ignore[attr-defined]


def _wire_rebuild(channel: str, body: Any, options: dict[str, Any], extra: Any) -> Message:
    frame = decode_frame(base64.b64decode(extra), verify_crc=False)
    return G3Message(frame, None, channel=channel, kind=options["kind"],
                     droppable=options["droppable"], body=body)


# A G3 message crosses processes (an engine bus) with its frame's bytes.
wire.register(G3Message, "g3", _wire_extra, _wire_rebuild)
