"""The ``amqp-ingest`` door on one shared RabbitMQ stream (``amqp.stream`` set).

Every process reads the same ordered log, so every process's packet window
holds the same packets, and a process that starts (or reconnects) refills
its window from the log instead of starting empty.

Broker side, declared by every process (idempotent): the headers exchange
``amqp.exchange`` as before, and the stream ``amqp.stream`` (a durable queue
``x-queue-type: stream``; retention ``x-max-age`` = ``packets.history_seconds``
and ``x-max-length-bytes`` = ``amqp.stream_max_bytes``,
:func:`~.broker.stream_arguments`) bound to it with no arguments. Producers
still publish to the exchange with their scalar fields as headers; other
streamers may still bind their own queues to it.

One session (one connection):

1. declare the exchange and the stream, bind it;
2. publish a *marker* into the stream (default exchange, routing key = the
   stream, so no other queue sees it; an empty body with the header
   ``x-channelstream-marker: <random id>``; confirmed): everything before it
   in the log was published before this session began;
3. read the offset of the log's last chunk (a consumer at ``last``, closed
   after its first delivery): if it is not past the last offset this
   process consumed, the stream was deleted and made again (a broker that
   lost its data): the process refills by time, as a new one does;
4. consume (``basic.qos(amqp.prefetch)``, manual acks, as streams require)
   from ``x-stream-offset``:

   - the first session: ``"<packets.history_seconds>s"``, an interval the
     broker reads on its own clock, so the log's chunks of the window (and
     at most a chunk before it); with ``packets.history_seconds = 0`` (no
     age bound), the last ``packets.history_size`` offsets before the tail;
   - after a reconnect: the last offset consumed + 1. Offsets are the
     dedupe: a delivery at or below the last consumed one is skipped
     (counted ``duplicates``), a jump past the next one is counted in
     ``lost`` (retention passed a process that was away too long).

Catching up, then live: deliveries before this session's own marker are
*catch-up* (published before the session began), the rest are live.

- Live packets are published on the hub as the per-queue door does: each
  at the time this process receives it.
- Catch-up packets are published *dated* (:meth:`~channelstream.hub.Hub.publish_dated`)
  at the time they entered the log: the ``timestamp_in_ms`` header (this
  project's publishers and ``POST /packets`` set it; so does RabbitMQ 3.12+'s
  ``message_interceptors.incoming.set_header_timestamp``), else the AMQP
  ``timestamp`` property (seconds), else (an untimed packet) right after the
  packet before it. A time query then finds them where they belong, and a
  client connected meanwhile gets one only if its window covers it: never an
  old packet as a live one. Catch-up packets older than the window are not
  kept (``stale``). Markers (this process's and others') are skipped.

Status, besides the per-queue door's: ``stream``, ``stream_offset`` (the
last offset consumed), ``catching_up``, ``refilled`` (dated packets kept),
``stale``, ``untimed``, ``duplicates``, ``lost``, ``stream_resets``; and
the ``POST /packets`` sink's ``posted`` (packets the broker took) and
``post_failures`` (POSTs answered 503).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from ..hub import Hub, Message
from ..settings import AmqpSettings
from .broker import declare_exchange, declare_stream, probe_connection, stream_arguments
from .deliveries import MARKER_HEADER, Delivery, StreamMeta, meta_of
from .ingest import AmqpIngestDoor
from .sink import BrokerSink

log = logging.getLogger(__name__)

#: Seconds the door waits for the stream's last chunk (step 3) before it
#: gives the connection up and tries again.
TAIL_TIMEOUT = 10.0


class StreamTailTimeout(pika.exceptions.AMQPError):
    """The broker sent nothing of the stream's last chunk in time."""


class AmqpStreamDoor(AmqpIngestDoor):
    """Consume the shared packet stream into the packet channel; see the module doc.

    :param history_seconds: ``packets.history_seconds`` (the window, and the
        stream's age bound).
    :param history_size: ``packets.history_size``.
    :param sink: the ``POST /packets`` sink (:class:`~.sink.BrokerSink`), if any.

    Other parameters as :class:`~.ingest.AmqpIngestDoor`.
    """

    reads_properties = True

    def __init__(
        self,
        settings: AmqpSettings,
        *,
        hub: Hub,
        packet_channel: str,
        history_seconds: float,
        history_size: int,
        sink: BrokerSink | None = None,
        name: str = "amqp-ingest",
    ) -> None:
        if not settings.stream:
            raise ValueError("amqp.stream is empty: the per-process queue door serves that")
        super().__init__(settings, hub=hub, packet_channel=packet_channel, name=name)
        self.stream = settings.stream
        self.arguments = stream_arguments(history_seconds, settings.stream_max_bytes)
        self.window_ms = int(history_seconds * 1000)
        self.history_size = history_size
        #: The ``POST /packets`` sink of this process: its counters are shown
        #: here, and it is closed with the door.
        self.sink = sink
        #: The last stream offset consumed (None: nothing yet, or the stream was reset).
        self._last: int | None = None
        self._marker: str | None = None
        self._catching_up = False
        self._refilled = 0
        self._stale = 0
        self._untimed = 0
        self._duplicates = 0
        self._lost = 0
        self._resets = 0

    def extra_status(self) -> dict[str, Any]:
        info = super().extra_status()
        info.update(
            stream=self.stream,
            stream_offset=self._last,
            catching_up=self._catching_up,
            refilled=self._refilled,
            stale=self._stale,
            untimed=self._untimed,
            duplicates=self._duplicates,
            lost=self._lost,
            stream_resets=self._resets,
        )
        if self.sink is not None:
            info.update(posted=self.sink.published, post_failures=self.sink.failures)
        return info

    def close(self) -> None:
        super().close()
        if self.sink is not None:
            self.sink.close()

    # -- one session ------------------------------------------------------------------

    def _declare(
        self, connection: BlockingConnection
    ) -> tuple[BlockingChannel, str, dict[str, Any] | None]:
        channel = declare_exchange(connection, connection.channel(), self.exchange)
        channel = declare_stream(connection, channel, self.stream, self.exchange, self.arguments)
        # the marker and the tail's consumer on a connection of their own: a stream
        # answers pika's reject of what that consumer holds by closing the connection
        with probe_connection(connection) as probing:
            side = probing.channel()
            marker = uuid.uuid4().hex
            side.confirm_delivery()
            side.basic_publish(
                "", self.stream, b"", pika.BasicProperties(headers={MARKER_HEADER: marker})
            )
            tail = self._tail(probing, side)
        if self._last is not None and tail <= self._last:
            self._resets += 1
            log.warning(
                "%s: stream %r ends at offset %d, not past %d consumed before: it was made"
                " again (the broker lost it?); refilling the window from it",
                self.name, self.stream, tail, self._last,
            )
            self._last = None
        if self._last is not None:
            start: Any = self._last + 1
        elif self.window_ms:
            start = f"{-(-self.window_ms // 1000)}s"
        else:
            start = max(0, tail - self.history_size)
        self._marker = marker
        self._catching_up = True
        return channel, self.stream, {"x-stream-offset": start}

    def _tail(self, connection: BlockingConnection, side: BlockingChannel) -> int:
        """The offset of the first message of the stream's last chunk."""
        found: list[int] = []

        def on_message(_channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
            offset = meta_of(properties.headers, None).offset
            found.append(-1 if offset is None else offset)

        side.basic_qos(prefetch_count=1)
        side.basic_consume(
            self.stream, on_message, auto_ack=False, arguments={"x-stream-offset": "last"}
        )
        deadline = time.monotonic() + TAIL_TIMEOUT
        while not found:
            left = deadline - time.monotonic()
            if left <= 0 or self.stopping:
                raise StreamTailTimeout(
                    f"no message of stream {self.stream!r}'s last chunk within {TAIL_TIMEOUT:g} s"
                )
            connection.process_data_events(time_limit=min(left, 1.0))
        return found[0]

    def _connected(self, queue: str, arguments: dict[str, Any] | None) -> None:
        log.info(
            "%s: connected to %s; stream %r bound to exchange %r, reading from offset %s"
            " (prefetch %d)",
            self.name, self.broker, queue, self.exchange,
            (arguments or {}).get("x-stream-offset"), self.prefetch,
        )

    # -- deliveries -----------------------------------------------------------------------

    def _item(
        self, method: pika.spec.Basic.Deliver, properties: pika.BasicProperties, body: bytes
    ) -> Delivery:
        return (method.delivery_tag, body, meta_of(properties.headers, properties.timestamp))

    def _consume(self, batch: list[Delivery]) -> None:
        """Skip what was consumed before and markers; publish catch-up packets
        dated, live ones as they come (in log order: catch-up ones first)."""
        dated: list[Message] = []
        live: list[Message] = []
        caught_up: int | None = None
        for _tag, body, meta in batch:
            if not self._advance(meta):
                continue
            if meta.marker is not None:
                if meta.marker == self._marker:
                    self._catching_up = False
                    caught_up = meta.offset
                continue
            message = self._decode(body)
            if message is None:
                continue
            if self._catching_up:
                if self._date(message, meta):
                    dated.append(message)
            else:
                live.append(message)
        if dated:
            self._publish_dated(dated)
        if caught_up is not None:
            log.info(
                "%s: caught up with stream %r at offset %d (%d packets refilled in all)",
                self.name, self.stream, caught_up, self._refilled,
            )
        if live:
            self._publish(live)

    def _advance(self, meta: StreamMeta) -> bool:
        """Record the delivery's offset; False for one consumed before."""
        offset = meta.offset
        if offset is None:  # not from a stream: nothing to dedupe by
            return True
        last = self._last
        if last is not None:
            if offset <= last:
                self._duplicates += 1
                return False
            if offset > last + 1:
                self._lost += offset - last - 1
                log.warning(
                    "%s: stream %r went on at offset %d after %d: %d packets were gone"
                    " (retention) before this process read them",
                    self.name, self.stream, offset, last, offset - last - 1,
                )
        self._last = offset
        return True

    def _date(self, message: Message, meta: StreamMeta) -> bool:
        """Give a catch-up packet its time; False when it is older than the window."""
        channel = self.hub.channel(self.packet_channel)
        floor = channel.last_time_ms if channel is not None else 0
        stamp = meta.time_ms
        if stamp is None:
            self._untimed += 1
            stamp = floor  # right after the packet before it
        stamp = max(stamp, floor)
        if stamp <= 0 or (
            self.window_ms and stamp < time.time_ns() // 1_000_000 - self.window_ms
        ):
            self._stale += 1
            return False
        message.time_ms = stamp
        return True

    def _publish_dated(self, messages: list[Message]) -> None:
        try:
            self.hub.publish_dated(messages)
        except Exception:
            self._failed += len([m for m in messages if not m.sequenced])
            self._consumed += len([m for m in messages if m.sequenced])
            self._refilled += len([m for m in messages if m.sequenced])
            if self._failure_log.due():
                log.exception(
                    "%s: the hub refused refilled packets (dropped; %d more since the last"
                    " report)", self.name, self._failure_log.take_suppressed(),
                )
        else:
            self._consumed += len(messages)
            self._refilled += len(messages)


__all__ = ["TAIL_TIMEOUT", "AmqpStreamDoor", "StreamTailTimeout"]
