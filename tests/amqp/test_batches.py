"""The door publishes each read's packets together, and counts a refusal per packet.

In process, no broker: a real hub whose bus refuses one chosen packet, and the
door's own decode-and-publish step that every read of deliveries goes through.
"""

from __future__ import annotations

import json

from channelstream.amqp.ingest import AmqpIngestDoor
from channelstream.hub import Hub, LocalBus, Message
from channelstream.settings import default_settings


class RefusingBus(LocalBus):
    """The local bus, but a packet whose ``n`` is in ``refuse`` raises."""

    def __init__(self, refuse: set[int]) -> None:
        super().__init__()
        self.refuse = refuse
        self.batches: list[int] = []

    def publish(self, message: Message) -> Message:
        if message.fields.get("n") in self.refuse:
            raise RuntimeError(f"refused packet {message.fields['n']}")
        return super().publish(message)

    def publish_many(self, messages: list[Message]) -> list[Message]:
        self.batches.append(len(messages))
        for message in messages:
            if message.fields.get("n") in self.refuse:
                # as a failing fan-out would: those before it are published
                before = messages[: messages.index(message)]
                super().publish_many(before)
                raise RuntimeError(f"refused packet {message.fields['n']}")
        return super().publish_many(messages)


def make_door(refuse: set[int]) -> tuple[AmqpIngestDoor, Hub, RefusingBus]:
    bus = RefusingBus(refuse)
    hub = Hub(bus=bus)
    door = AmqpIngestDoor(
        default_settings({"amqp.url": "amqp://127.0.0.1/", "amqp.exchange": "x"}).amqp,
        hub=hub,
        packet_channel="gatd",
    )
    return door, hub, bus


def body(n: int) -> bytes:
    return json.dumps({"profile_id": "p", "n": n}).encode()


def ingest(door: AmqpIngestDoor, bodies: list[bytes]) -> None:
    messages = [m for m in (door._decode(b) for b in bodies) if m is not None]
    door._publish(messages)


def test_a_read_of_packets_is_published_in_one_call_and_reaches_every_subscriber():
    door, hub, bus = make_door(refuse=set())
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "gatd")
    ingest(door, [body(n) for n in range(5)] + [b"not json"])
    assert bus.batches == [5]
    assert [m.fields["n"] for m in outbox.drain()] == [0, 1, 2, 3, 4]
    status = door.extra_status()
    assert (status["consumed"], status["malformed"], status["failed"]) == (5, 1, 0)


def test_a_packet_the_hub_refuses_is_counted_alone_and_the_rest_still_go_in_order():
    door, hub, _bus = make_door(refuse={2})
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "gatd")
    ingest(door, [body(n) for n in range(5)])
    assert [m.fields["n"] for m in outbox.drain()] == [0, 1, 3, 4]
    status = door.extra_status()
    assert (status["consumed"], status["failed"]) == (4, 1)
    assert hub.channel("gatd").published == 4
