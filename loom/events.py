"""Stream events on the hub, and readers that wait for them.

The bytes of a stream are never carried by the hub: they are in the data
file (and the page cache). What the hub carries is small notifications,
published by :class:`Notifier` (the store's ``notify`` callback):

- channel ``loom`` (:data:`EVENTS_CHANNEL`, for ``/spy``): every event of
  every stream;
- channel ``loom:<id>`` (:func:`stream_channel`, for tailing readers): the
  events of that stream, published only while the channel has subscribers.

Both are kept in this process (``ChannelConfig.local``) even when the hub
has a shared engine: each process wakes its own readers. What crosses
processes is one channel per storage folder (:mod:`loom.link`): the owner
relays every event there, and a following process turns what it hears into
the same local notifications (:mod:`loom.mirror`).

Body: ``{"id", "event": "start" | "data" | "end" | "delete", "size",
"stored", "state", "ended", "reason"}``. A ``data`` event only says "the
stream has grown"; it is droppable, because a reader always reads
everything up to what the store announces, so losing one of them loses no
byte. The others are not droppable. A reader therefore never polls: it
reads what is stored, then waits on its outbox (:class:`Follower`), and a
slow reader only delays itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from channelstream.hub import ChannelConfig, Hub, Message
from channelstream.hub.outbox import Outbox

from .store import Stream

EVENTS_CHANNEL = "loom"

#: Notifications queued per reader before the oldest droppable one is dropped.
FOLLOWER_QUEUE = 8
#: Undroppable events (start/end) per outbox past which it is closed.
FOLLOWER_HARD_LIMIT = 10000

#: ``loom`` and ``loom:<id>``: no history, kept in this process (never through an engine).
_LOCAL_EVENTS = ChannelConfig(history_size=0, persistent=True, local=True)
_LOCAL_STREAM = ChannelConfig(history_size=0, local=True)


def stream_channel(stream_id: str) -> str:
    """The hub channel of one stream's events."""
    return f"{EVENTS_CHANNEL}:{stream_id}"


def event_body(stream: Stream, event: str) -> dict[str, Any]:
    """The notification of ``event`` on ``stream`` (see the module doc)."""
    return {
        "id": stream.id,
        "event": event,
        "size": stream.size,
        "stored": stream.stored,
        "state": stream.state,
        "ended": stream.ended,
        "reason": stream.reason,
    }


class Notifier:
    """Publishes the store's changes on this process's hub (see the module doc).

    :param relay: also called with each event's body (the owner hands them to
        :class:`loom.link.Relay`); it must not block.
    """

    def __init__(self, hub: Hub, relay: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.hub = hub
        self.relay = relay
        hub.configure_channel(EVENTS_CHANNEL, _LOCAL_EVENTS)

    def __call__(self, stream: Stream, event: str) -> None:
        body = event_body(stream, event)
        droppable = event == "data"
        channel = self.hub.channel(stream_channel(stream.id))
        if channel is not None and channel.subscriber_count:
            self.hub.publish(Message(channel.name, body, droppable=droppable))
        self.hub.publish(Message(EVENTS_CHANNEL, body, droppable=droppable))
        if self.relay is not None:
            self.relay(body)


class Follower:
    """One reader's subscription: wait until a stream (or any stream) changes.

    Subscribe *before* reading what is stored: then no change can slip
    between the read and :meth:`wait`.

    :param channel: :func:`stream_channel` of the stream, or
        :data:`EVENTS_CHANNEL` for every stream (the spy).
    """

    def __init__(self, hub: Hub, channel: str, *, name: str = "") -> None:
        self.hub = hub
        self.channel = channel
        if channel != EVENTS_CHANNEL:  # loom:<id>: kept here, like ``loom``
            hub.configure_channel(channel, _LOCAL_STREAM)
        self.outbox: Outbox = hub.open_outbox(
            max_queue=FOLLOWER_QUEUE, hard_limit=FOLLOWER_HARD_LIMIT, name=name or channel
        )
        hub.subscribe(self.outbox, channel)

    def wait(self, timeout: float | None = None) -> list[dict]:
        """Block until events arrive (or the outbox closes: server stopping).

        :returns: the event bodies (possibly empty on timeout or close).
        """
        self.outbox.wait(timeout)
        return [message.body for message in self.outbox.drain()]

    @property
    def closed(self) -> bool:
        return self.outbox.closed

    def close(self) -> None:
        self.outbox.close("reader gone")  # idempotent
        if self.channel != EVENTS_CHANNEL:
            channel = self.hub.channel(self.channel)
            if channel is None or not channel.subscriber_count:
                self.hub.forget_channel_config(self.channel)  # configs do not pile up
