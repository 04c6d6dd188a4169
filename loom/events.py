"""Stream events on the hub, and readers that wait for them.

The bytes of a stream are never carried by the hub: they are in the data
file (and the page cache). What the hub carries is small notifications,
published by :class:`Notifier` (the store's ``notify`` callback):

- channel ``loom`` (:data:`EVENTS_CHANNEL`, for ``/spy``): every event of
  every stream;
- channel ``loom:<id>`` (:func:`stream_channel`, for tailing readers): the
  events of that stream, published only while the channel has subscribers.

Body: ``{"id", "event": "start" | "data" | "end", "size", "stored",
"state"}``. A ``data`` event only says "the stream has grown"; it is
droppable, because a reader always reads everything up to what the store
announces, so losing one of them loses no byte. ``start`` and ``end`` are
not droppable. A reader therefore never polls: it reads what is stored,
then waits on its outbox (:class:`Follower`), and a slow reader only delays
itself.
"""

from __future__ import annotations

from channelstream.hub import ChannelConfig, Hub, Message
from channelstream.hub.outbox import Outbox

from .store import Stream

EVENTS_CHANNEL = "loom"

#: Notifications queued per reader before the oldest droppable one is dropped.
FOLLOWER_QUEUE = 8
#: Undroppable events (start/end) per outbox past which it is closed.
FOLLOWER_HARD_LIMIT = 10000


def stream_channel(stream_id: str) -> str:
    """The hub channel of one stream's events."""
    return f"{EVENTS_CHANNEL}:{stream_id}"


class Notifier:
    """Publishes the store's changes on the hub (see the module doc)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        hub.configure_channel(EVENTS_CHANNEL, ChannelConfig(history_size=0, persistent=True))

    def __call__(self, stream: Stream, event: str) -> None:
        body = {
            "id": stream.id,
            "event": event,
            "size": stream.size,
            "stored": stream.stored,
            "state": stream.state,
        }
        droppable = event == "data"
        channel = self.hub.channel(stream_channel(stream.id))
        if channel is not None and channel.subscriber_count:
            self.hub.publish(Message(channel.name, body, droppable=droppable))
        self.hub.publish(Message(EVENTS_CHANNEL, body, droppable=droppable))


class Follower:
    """One reader's subscription: wait until a stream (or any stream) changes.

    Subscribe *before* reading what is stored: then no change can slip
    between the read and :meth:`wait`.

    :param channel: :func:`stream_channel` of the stream, or
        :data:`EVENTS_CHANNEL` for every stream (the spy).
    """

    def __init__(self, hub: Hub, channel: str, *, name: str = "") -> None:
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
        self.outbox.close("reader gone")
