"""AMQP doors of the GATD streamer: packets in from RabbitMQ, and a publisher.

- :mod:`~channelstream.amqp.ingest`: the ``amqp-ingest`` door, which
  consumes the streamer exchange (``amqp.exchange``, a headers exchange)
  through one exclusive queue per process into the packet channel;
- :mod:`~channelstream.amqp.publisher`: :class:`PacketPublisher`, which
  publishes packets with every scalar field as an AMQP header
  (:mod:`~channelstream.amqp.headers`), and the ``gatd-publish`` command
  (:mod:`~channelstream.amqp.cli`);
- :mod:`~channelstream.amqp.broker`: URL redaction, connection parameters
  and the exchange declaration they share.

``includeme`` adds the door only when ``amqp.url`` is set. Nothing connects
while the app is built (gunicorn's master builds it); the door connects in
the serving process, in the background, and keeps trying. pika is imported
only then, so a process without AMQP never loads it.
"""

from __future__ import annotations

from typing import Any

from ..serving.runtime import get_runtime


def includeme(config: Any) -> None:
    """Add the ``amqp-ingest`` door to the runtime when ``amqp.url`` is set."""

    runtime = get_runtime(config.registry)
    settings = runtime.settings
    if not settings.amqp.url:
        return
    from .ingest import AmqpIngestDoor  # here: pika is loaded only when AMQP is on

    runtime.doors.add(
        AmqpIngestDoor(settings.amqp, hub=runtime.hub, packet_channel=settings.packets.channel)
    )


__all__ = ["includeme"]
