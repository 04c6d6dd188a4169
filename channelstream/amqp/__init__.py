"""AMQP doors of the GATD streamer: packets in from RabbitMQ, and a publisher.

- :mod:`~channelstream.amqp.ingest`: the ``amqp-ingest`` door, which
  consumes the streamer exchange (``amqp.exchange``, a headers exchange)
  through one exclusive queue per process into the packet channel;
- :mod:`~channelstream.amqp.publisher`: :class:`PacketPublisher`, which
  publishes packets with every scalar field as an AMQP header
  (:mod:`~channelstream.amqp.headers`), and the ``gatd-publish`` command
  (:mod:`~channelstream.amqp.cli`);
- :mod:`~channelstream.amqp.stream`: the same door on one RabbitMQ stream
  that every process reads (``amqp.stream`` set): a process refills its
  packet window from it; and :mod:`~channelstream.amqp.sink`, through which
  ``POST /packets`` then publishes into the exchange rather than its own hub;
- :mod:`~channelstream.amqp.broker`: URL redaction, connection parameters
  and the exchange and stream declarations they share.

``includeme`` adds the door only when ``amqp.url`` is set. Nothing connects
while the app is built (gunicorn's master builds it); the door connects in
the serving process, in the background, and keeps trying. pika is imported
only then, so a process without AMQP never loads it.
"""

from __future__ import annotations

from typing import Any

from ..serving.runtime import get_runtime


def includeme(config: Any) -> None:
    """Add the ``amqp-ingest`` door to the runtime when ``amqp.url`` is set (and,
    with ``amqp.stream``, make ``POST /packets`` publish into the exchange)."""

    runtime = get_runtime(config.registry)
    settings = runtime.settings
    if not settings.amqp.url:
        return
    # here: pika is loaded only when AMQP is on
    from ..packets.sink import set_sink
    from .broker import stream_arguments
    from .ingest import AmqpIngestDoor
    from .sink import BrokerSink
    from .stream import AmqpStreamDoor

    amqp, packets = settings.amqp, settings.packets
    if not amqp.stream:
        runtime.doors.add(AmqpIngestDoor(amqp, hub=runtime.hub, packet_channel=packets.channel))
        return
    arguments = stream_arguments(packets.history_seconds, amqp.stream_max_bytes)
    sink = BrokerSink(
        amqp.url, amqp.exchange, (amqp.stream, arguments), max_body_size=amqp.max_body_size
    )
    set_sink(config.registry, sink)
    runtime.doors.add(
        AmqpStreamDoor(
            amqp,
            hub=runtime.hub,
            packet_channel=packets.channel,
            history_seconds=packets.history_seconds,
            history_size=packets.history_size,
            sink=sink,
        )
    )


__all__ = ["includeme"]
