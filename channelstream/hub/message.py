"""Messages: what flows through the hub.

A message is created by a door (unsequenced: ``offset`` 0), handed to the hub,
and sequenced exactly once by its channel, which stamps ``offset``, ``epoch``
and ``time_ms``. After that it is shared, read-only, by the channel history and
every outbox that receives it: nothing copies it per recipient.

Each wire format encodes a message once. ``Message.encoded(codec)`` caches the
bytes per codec, so a message sent to 1,000 websocket clients is serialised
once. A codec is any callable ``codec(message) -> bytes``; the callable itself
is the cache key, so doors define their codecs at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

DATA = "data"
STICKY = "sticky"

Codec = Callable[["Message"], bytes]

_EMPTY: Mapping[str, Any] = {}


class Message:
    """One message on one channel.

    :param channel: channel name.
    :param body: JSON value or ``bytes``; the hub never looks inside it.
    :param fields: scalar key/value pairs that subscription filters match.
    :param kind: ``DATA`` or ``STICKY``. The latest sticky message of each
        ``type`` is replayed to every new subscription, and sticky messages are
        never dropped from an outbox.
    :param type: message type (a G3 frame type, an htype...). Required for
        sticky messages; used by per-type decimation.
    :param droppable: whether a full outbox may drop this message (data only;
        channelstream chat messages are not droppable: a client too slow for
        them is disconnected and resumes by offset instead).
    :param audience: if set, only subscriptions whose principal is in it see
        the message (private messages inside a channel).
    :param excluded: principals that must not see the message.
    :param size: payload size in bytes for outbox byte accounting (0 if the
        door does not know or care).
    """

    __slots__ = (
        "channel",
        "body",
        "fields",
        "kind",
        "type",
        "droppable",
        "audience",
        "excluded",
        "size",
        "offset",
        "epoch",
        "time_ms",
        "_encoded",
    )

    def __init__(
        self,
        channel: str,
        body: Any,
        *,
        fields: Mapping[str, Any] | None = None,
        kind: str = DATA,
        type: str | None = None,
        droppable: bool = True,
        audience: frozenset[str] | None = None,
        excluded: frozenset[str] | None = None,
        size: int = 0,
    ) -> None:
        if kind not in (DATA, STICKY):
            raise ValueError(f"kind must be {DATA!r} or {STICKY!r}, not {kind!r}")
        if kind == STICKY and not type:
            raise ValueError("a sticky message needs a type")
        if kind == STICKY and (audience is not None or excluded is not None):
            # Sticky messages are the channel's state, replayed to everyone.
            raise ValueError("a sticky message cannot be private")
        self.channel = channel
        self.body = body
        self.fields = fields if fields is not None else _EMPTY
        self.kind = kind
        self.type = type
        # Sticky messages carry state every subscriber needs: never dropped.
        self.droppable = droppable and kind == DATA
        self.audience = audience
        self.excluded = excluded
        self.size = size
        self.offset = 0
        self.epoch = ""
        self.time_ms = 0
        self._encoded: dict[Codec, bytes] | None = None

    @property
    def sticky(self) -> bool:
        return self.kind == STICKY

    @property
    def sequenced(self) -> bool:
        return self.offset > 0

    def visible_to(self, principal: str | None) -> bool:
        """Whether a subscription owned by ``principal`` may receive this."""
        if self.audience is not None and principal not in self.audience:
            return False
        if self.excluded is not None and principal in self.excluded:
            return False
        return True

    def encoded(self, codec: Codec) -> bytes:
        """The message encoded by ``codec``, computed once and cached."""
        cache = self._encoded
        if cache is None:
            cache = self._encoded = {}
        try:
            return cache[codec]
        except KeyError:
            data = cache[codec] = codec(self)
            return data

    def replaced(self, body: Any) -> Message:
        """A copy with another body and the same sequence stamp.

        Used to edit a message in history: the old object stays valid for the
        outboxes that already hold it, and the new one has an empty cache.
        """
        new = Message(
            self.channel,
            body,
            fields=self.fields,
            kind=self.kind,
            type=self.type,
            droppable=self.droppable,
            audience=self.audience,
            excluded=self.excluded,
            size=self.size,
        )
        new.offset, new.epoch, new.time_ms = self.offset, self.epoch, self.time_ms
        return new

    def __repr__(self) -> str:
        return (
            f"<Message {self.channel!r} #{self.offset} {self.kind}"
            f"{'/' + self.type if self.type else ''}>"
        )
