"""``POST /packets`` into the streamer exchange (``amqp.stream`` set): :class:`BrokerSink`.

With the stream on, the packets a process accepts over HTTP must reach every
process, as AMQP ones do: the ingest publishes them into the exchange (so
into the stream, and any other streamer bound to it) instead of its own
hub, and its own window gets them back from the stream like every other
process's, at the same place in the same order.

All or nothing (:mod:`channelstream.packets.sink`): every packet is encoded
and checked against ``amqp.max_body_size`` (what the consumers take)
first, then all are published in one AMQP transaction
(:meth:`~.publisher.PacketPublisher.publish_many`); the broker routes none
before the commit, and answers it once every queue confirmed them. A 202
therefore means the broker has them all; a broker that cannot be reached or
refuses gives a 503 that names it, with nothing published.

One connection per process, opened on the first POST, declaring the
exchange and the stream (so that packets posted before any consumer
started are kept) and bound to it; POSTs take turns on it (a gevent lock:
one transaction at a time, ~0.6 ms for a small one here). A POST that waits
for its turn longer than :data:`TURN_TIMEOUT` gets a 503.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gevent.lock import Semaphore

from ..errors import Unavailable
from ..packets.sink import PacketTooLarge
from .publisher import PacketPublisher, PublishError

#: Seconds a POST waits for the connection before a 503.
TURN_TIMEOUT = 30.0


class BrokerSink:
    """Publishes the packets of each ``POST /packets`` into the exchange; see the module doc.

    :param url: ``amqp.url``.
    :param exchange: ``amqp.exchange``.
    :param stream: ``amqp.stream`` and its declaration arguments.
    :param max_body_size: ``amqp.max_body_size``: larger packets are refused (413).
    """

    def __init__(
        self,
        url: str,
        exchange: str,
        stream: tuple[str, dict[str, Any]],
        *,
        max_body_size: int,
    ) -> None:
        self.publisher = PacketPublisher(url, exchange, transactional=True, stream=stream)
        self.max_body_size = max_body_size
        self.name = f"exchange {exchange!r} (stream {stream[0]!r}) at {self.publisher.broker}"
        self._turn = Semaphore()
        #: Packets published, POSTs refused because of the broker.
        self.published = 0
        self.failures = 0

    def publish(self, packets: Sequence[dict[str, Any]]) -> None:
        """Publish ``packets`` all or nothing.

        :raises PacketTooLarge: a packet over ``amqp.max_body_size`` (413).
        :raises Unavailable: the broker cannot take them (503, naming it).
        """
        if not self._turn.acquire(timeout=TURN_TIMEOUT):
            self.failures += 1
            raise Unavailable(
                f"the broker connection ({self.name}) stayed busy for {TURN_TIMEOUT:g} s; "
                "nothing was published"
            )
        try:
            self.publisher.publish_many(packets, check=self._check_size)
        except PublishError as err:
            self.failures += 1
            if err.maybe_published:
                raise Unavailable(str(err)) from None
            raise Unavailable(
                f"the AMQP broker did not take the packets, nothing was published: {err}"
            ) from None
        finally:
            self._turn.release()
        self.published += len(packets)

    def _check_size(self, index: int, body: bytes) -> None:
        if len(body) > self.max_body_size:
            raise PacketTooLarge(
                f"packet {index} is {len(body)} bytes as JSON, more than amqp.max_body_size "
                f"({self.max_body_size}): the consumers would drop it; nothing was published",
                index,
            )

    def close(self) -> None:
        """Close the connection (the next POST opens it again)."""
        self.publisher.close()


__all__ = ["TURN_TIMEOUT", "BrokerSink"]
