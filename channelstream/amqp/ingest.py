"""The ``amqp-ingest`` door: GATD packets from the streamer exchange into the hub.

What it does, per process (each gunicorn worker has its own):

1. declares the headers exchange ``amqp.exchange`` (durable, as GATD's
   formatter did; an existing headers exchange is used as it is, see
   :func:`~channelstream.amqp.broker.declare_exchange`);
2. declares one exclusive, auto-delete, server-named queue and binds it with
   no arguments: every packet comes in, the hub filters per subscriber;
3. ``basic.qos(prefetch_count=amqp.prefetch)`` and consumes with manual
   acks: each body is decoded (:func:`decode_packet`), published on the
   packet channel (:func:`~channelstream.packets.packet_message`), then
   acknowledged (acks are batched with ``multiple``, never ahead of the
   publish). A malformed body (not UTF-8 JSON, not an object, NaN, nested
   too deeply, larger than ``amqp.max_body_size``) is counted,
   logged (the first, then at most one line per :data:`LOG_EVERY` seconds
   with the number left unlogged) and acknowledged away, so the queue never
   stalls on it;
4. when the broker goes away (or refuses, or cancels the consumer), it logs
   the reason, shows ``retrying`` and connects again after 1 s, doubling up
   to ``amqp.reconnect_max``; a connection that lasted that long resets the
   delay. Packets published while no queue is bound are not kept (the queue
   is exclusive and auto-delete, as GATD's streamers' were).

``status()``: ``state`` (``connecting``, ``connected``, ``retrying``; or
``new``/``restarting``/``stopping``/``stopped`` from
:class:`~channelstream.serving.doors.LoopDoor`), ``broker`` (the URL without its
password), ``exchange``, ``queue``, ``prefetch``, ``consumed`` (packets
published on the hub), ``malformed``, ``failed`` (packets the hub refused:
a bug, logged with its traceback), ``reconnects`` (connections made after
the first), ``last_error``/``last_error_at``.

pika under gevent: this door uses pika's :class:`~pika.BlockingConnection`
in its own greenlet. The serving process is monkey-patched (the server
runner, gunicorn's gevent worker), so pika's sockets are gevent sockets and
its ``select.poll`` is gevent's: waiting for the broker parks this greenlet
only, and the callbacks run in it, where they may yield. ``start()`` refuses
to run in a process that is not patched, where it would freeze every other
greenlet. (pika's own gevent adapter runs every callback inside gevent's
hub greenlet, where nothing may block or yield, and turns the door into a
callback state machine: the blocking API is both simpler and safer here.)
The door waits in ``process_data_events()`` with no time limit; ``stop()``
wakes it with ``add_callback_threadsafe``.

Deliveries are read by :class:`~channelstream.amqp.deliveries.DeliveryReader`
(pika's own per-message decoding costs ~55 us of CPU per packet here, the
reader ~7 us): up to :data:`READ_CHUNK` bytes per read, every packet of a
read published on the hub in one go (so each TCP client's writer wakes once
per read, not once per packet). Acks are ``multiple``: one per
``min(prefetch // 2, 256)`` packets, and within :data:`ACK_DELAY` of the last
packet when fewer come. The door yields between reads: a read is at most
~270 small packets, ~12 ms of work, when draining a backlog (yielding
within a read too made each packet cost half as much again, with no
quicker /healthz); while keeping up, reads are smaller. With a pika that
lacks the internals the reader needs, pika's callbacks do the work: the
door then yields every :data:`YIELD_EVERY` deliveries and pika parses at
most :data:`PIKA_READ_CHUNK` bytes per read (:func:`limit_reads`).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import Any

import gevent
import pika.exceptions
from gevent import monkey
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from .. import strict_json
from ..hub import Hub, Message
from ..packets import BadPacket, packet_message
from ..serving.doors import Backoff, DoorState, LogSampler, LoopDoor
from ..settings import AmqpSettings
from .broker import (
    ExchangeMismatch,
    StreamMismatch,
    connection_parameters,
    declare_exchange,
    describe_error,
    redact_url,
)
from .deliveries import BodyTooLarge, Delivery, DeliveryReader, install

log = logging.getLogger(__name__)

#: Bytes read (and their packets published) per readable event before the
#: door polls again and so lets the other greenlets run: ~270 packets of
#: ~480 bytes (AMQP framing included). The more packets per read, the more
#: each TCP client gets per write (a loopback send costs ~30 us here).
READ_CHUNK = 131072
#: Longest wait before packets handled are acknowledged (when fewer than an
#: ack's worth came).
ACK_DELAY = 0.05
#: Deliveries handled before the door yields, on pika's own (slow) path.
YIELD_EVERY = 64
#: Bytes pika parses per readable event on its own path. pika's default,
#: 100 KiB, is some 300 deliveries parsed in pure Python in one go: draining
#: a backlog at ~14k packets/s, /healthz then took 25-33 ms (p50) instead of
#: 4-5 ms with 4 KiB.
PIKA_READ_CHUNK = 4096
#: Seconds between two log lines about malformed packets (or hub failures).
LOG_EVERY = 10.0
#: Bytes of a malformed body shown in its log line.
_EXCERPT_BYTES = 60


class ConsumerCancelled(RuntimeError):
    """The broker cancelled the consumer (its queue was deleted, say)."""


#: What ends a connection without being a bug of the door: logged, then retried.
BROKER_ERRORS = (
    pika.exceptions.AMQPError, OSError, ExchangeMismatch, StreamMismatch, ConsumerCancelled
)


# -- decoding -----------------------------------------------------------------


def decode_packet(body: bytes, *, max_size: int | None = None) -> dict[str, Any]:
    """A message body as a packet: a JSON object in UTF-8, read by
    :mod:`channelstream.strict_json` (the rules every door shares).

    :raises BadPacket: naming the problem (too large, not UTF-8, not JSON,
        NaN/Infinity, lone surrogates, too deep, not an object).
    """
    if max_size is not None and len(body) > max_size:
        raise BadPacket(f"the body is {len(body)} bytes, more than the limit of {max_size}")
    try:
        packet = strict_json.loads_utf8(body)
    except UnicodeDecodeError as err:
        raise BadPacket(f"not UTF-8: {err.reason} at byte {err.start}") from None
    except ValueError as err:
        raise BadPacket(f"not JSON: {err}") from None
    if not isinstance(packet, dict):
        raise BadPacket(f"a packet must be a JSON object, not {strict_json.type_name(packet)}")
    return packet


def require_monkey_patched() -> None:
    """Raise unless sockets and select are gevent's (pika would block the process)."""
    missing = [name for name in ("socket", "select") if not monkey.is_module_patched(name)]
    if missing:
        raise RuntimeError(
            f"the AMQP doors need a gevent monkey-patched process ({', '.join(missing)} "
            "not patched): serve with pserve and the channelstream server runner, or "
            "with gunicorn and channelstream.serving.gunicorn_conf"
        )


def _nothing() -> None:
    """A callback that only wakes ``process_data_events`` up."""


def limit_reads(connection: BlockingConnection, chunk: int = PIKA_READ_CHUNK) -> bool:
    """Make pika parse at most ``chunk`` bytes per readable event; True if it could.

    Uses pika's private ``_MAX_CONSUME_BYTES`` of the connection's transport
    (pika 1.x); when a pika release drops it nothing is changed (the door
    works, only with longer stretches between yields) and False is returned.
    """
    transport = getattr(getattr(connection, "_impl", None), "_transport", None)
    if transport is None or not isinstance(getattr(transport, "_MAX_CONSUME_BYTES", None), int):
        return False
    transport._MAX_CONSUME_BYTES = chunk
    return True


# -- the door -----------------------------------------------------------------


class AmqpIngestDoor(LoopDoor):
    """Consume the streamer exchange into the packet channel; see the module doc.

    (:class:`~channelstream.amqp.stream.AmqpStreamDoor` consumes one shared
    stream instead: it overrides ``_declare``, ``_item`` and ``_consume``.)

    :param hub: the process's hub (running before :meth:`start`).
    :param url: ``amqp.url`` (never logged or reported with its password).
    :param exchange: ``amqp.exchange``.
    :param channel: the hub's packet channel (``packets.channel``).
    :param prefetch: ``amqp.prefetch``.
    :param reconnect_max: ``amqp.reconnect_max``, seconds.
    :param max_body_size: ``amqp.max_body_size``, bytes.

    Building it connects nothing; :meth:`start` checks the process and the
    URL (raising, which stops startup with a message naming the door), and
    the loop connects in the background, so an absent broker never stops
    the process from serving.
    """

    #: Whether deliveries carry their :class:`~.deliveries.StreamMeta` (a stream consumer).
    reads_properties = False

    def __init__(
        self,
        settings: AmqpSettings,
        *,
        hub: Hub,
        packet_channel: str,
        name: str = "amqp-ingest",
    ) -> None:
        if not settings.url:
            raise ValueError("amqp.url is empty: the AMQP doors are off")
        reconnect_max = settings.reconnect_max
        super().__init__(name, backoff_initial=min(1.0, reconnect_max), backoff_max=reconnect_max)
        self.hub = hub
        self.settings = settings
        self.url = settings.url
        #: The broker URL as shown in logs and status: no password.
        self.broker = redact_url(settings.url)
        self.exchange = settings.exchange
        self.packet_channel = packet_channel
        self.prefetch = settings.prefetch
        self.max_body_size = settings.max_body_size
        self._parameters: pika.URLParameters | None = None
        self._link = DoorState.CONNECTING
        self._connection: BlockingConnection | None = None
        self._reader: DeliveryReader | None = None
        self._queue: str | None = None
        self._connected_at: float | None = None
        self._cancelled = False
        self._consumed = 0
        self._malformed = 0
        self._failed = 0
        self._connections = 0
        self._reconnects = 0
        # Acks: the last delivery tag handled and how many are not acked yet.
        self._ack_every = max(1, min(self.prefetch // 2, 256))
        self._ack_tag = 0
        self._unacked = 0
        self._ack_timer = False
        self._since_yield = 0
        self._malformed_log = LogSampler(LOG_EVERY)
        self._failure_log = LogSampler(LOG_EVERY)

    # -- LoopDoor hooks -------------------------------------------------------------

    def open(self) -> None:
        """Check the process and the URL; connect nothing (the loop does)."""
        require_monkey_patched()
        self._parameters = connection_parameters(
            self.url, name=f"channelstream {self.name} (pid {os.getpid()})"
        )

    def run(self) -> None:
        """Connect, consume until the connection ends, wait, again; until stopped."""
        backoff = Backoff(self.backoff_initial, self.backoff_max)
        while not self.stopping:
            self._link = DoorState.CONNECTING
            self._connected_at = None
            log.info("%s: connecting to %s", self.name, self.broker)
            try:
                self._session()
            except BROKER_ERRORS as err:
                reason = describe_error(err, self.url)
            else:  # the session ends without an error only when stopping
                return
            if self.stopping:
                return
            connected_at = self._connected_at
            if connected_at is not None and time.monotonic() - connected_at >= self.backoff_max:
                backoff.reset()
            delay = backoff.next()
            self._record_error(reason)
            self._link = DoorState.RETRYING
            if connected_at is None:
                log.warning(
                    "%s: cannot connect to %s: %s; retrying in %g s",
                    self.name, self.broker, reason, delay,
                )
            else:
                log.warning(
                    "%s: lost the connection to %s: %s; retrying in %g s",
                    self.name, self.broker, reason, delay,
                )
            if self.wait(delay):
                return

    def interrupt(self) -> None:
        """Wake the loop out of ``process_data_events`` so that it sees :attr:`stopping`."""
        connection = self._connection
        if connection is None:
            return
        try:
            connection.add_callback_threadsafe(_nothing)
        except BROKER_ERRORS:
            pass  # closed or closing: the loop ends by itself

    def status(self) -> dict[str, Any]:
        """The door's status, with the connection state in place of ``running``."""
        info = super().status()
        if info["state"] == DoorState.RUNNING.value:
            info["state"] = self._link.value
        return info

    def extra_status(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "exchange": self.exchange,
            "queue": self._queue,
            "prefetch": self.prefetch,
            "consumed": self._consumed,
            "malformed": self._malformed,
            "failed": self._failed,
            "reconnects": self._reconnects,
            # How deliveries are read: "reader" (DeliveryReader) or "pika" (its callbacks).
            "delivery_path": (
                None if self._queue is None else "pika" if self._reader is None else "reader"
            ),
        }

    # -- one connection -----------------------------------------------------------

    def _session(self) -> None:
        """One connection: declare, bind, consume until stopping; raise when it ends."""
        connection = BlockingConnection(self._parameters)
        self._connection = connection
        self._ack_tag = self._unacked = 0
        self._ack_timer = False
        try:
            channel, queue, arguments = self._declare(connection)
            channel.basic_qos(prefetch_count=self.prefetch)
            self._cancelled = False
            channel.add_on_cancel_callback(self._on_cancel)
            tag = f"{self.name}-{uuid.uuid4().hex}"
            # Installed before consuming: no delivery goes through pika first.
            self._reader = install(
                connection._impl,
                channel.channel_number,
                tag,
                lambda batch: self._on_batch(channel, batch),
                max_body=self.max_body_size,
                read_size=READ_CHUNK,
                properties=self.reads_properties,
            )
            if self._reader is None:
                limit_reads(connection)
            channel.basic_consume(queue, self._on_message, consumer_tag=tag, arguments=arguments)
            self._queue = queue
            self._connected_at = time.monotonic()
            if self._connections:
                self._reconnects += 1
            self._connections += 1
            self._link = DoorState.CONNECTED
            self._connected(queue, arguments)
            while not self.stopping:
                connection.process_data_events(time_limit=None)
                self._ack(channel)
                if self._cancelled:
                    raise ConsumerCancelled("the broker cancelled the consumer")
        finally:
            self._connection = None
            self._reader = None
            self._queue = None
            if connection.is_open:
                try:
                    connection.close()
                except BROKER_ERRORS:
                    pass

    def _declare(
        self, connection: BlockingConnection
    ) -> tuple[BlockingChannel, str, dict[str, Any] | None]:
        """Declare what the door consumes: ``(channel, queue, consume arguments)``.

        Here the exchange and one exclusive, auto-delete, server-named queue
        bound to it with no arguments (every packet comes in).
        """
        channel = declare_exchange(connection, connection.channel(), self.exchange)
        queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        channel.queue_bind(queue, self.exchange)
        return channel, queue, None

    def _connected(self, queue: str, arguments: dict[str, Any] | None) -> None:
        log.info(
            "%s: connected to %s; queue %s bound to exchange %r (prefetch %d)",
            self.name, self.broker, queue, self.exchange, self.prefetch,
        )

    def _item(
        self, method: pika.spec.Basic.Deliver, properties: pika.BasicProperties, body: bytes
    ) -> Delivery:
        """A delivery of pika's path as the reader hands them: ``(tag, body)``."""
        return (method.delivery_tag, body)

    def _consume(self, batch: list[Delivery]) -> None:
        """Publish the packets of ``batch`` (malformed ones counted and logged)."""
        messages = [m for m in (self._decode(item[1]) for item in batch) if m is not None]
        self._publish(messages)

    def _on_message(
        self,
        channel: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        """pika's path (when the reader could not be installed): one delivery."""
        self._consume([self._item(method, properties, body)])
        self._ack_tag = method.delivery_tag
        self._unacked += 1
        if self._unacked >= self._ack_every:
            self._ack(channel)
        self._since_yield += 1
        if self._since_yield >= YIELD_EVERY:
            self._since_yield = 0
            gevent.sleep(0)

    def _on_batch(self, channel: BlockingChannel, batch: list[Delivery]) -> None:
        """The reader's path: the packets of one read, then their ack if due.

        Runs inside pika's input handling: an ack is queued, not waited for.
        When no ack is due, a timer makes ``process_data_events`` return
        within :data:`ACK_DELAY`, and the loop acknowledges what is left.
        """
        self._consume(batch)
        self._ack_tag = batch[-1][0]
        self._unacked += len(batch)
        if self._unacked >= self._ack_every:
            channel._impl.basic_ack(delivery_tag=self._ack_tag, multiple=True)
            self._unacked = 0
        elif not self._ack_timer and self._connection is not None:
            self._ack_timer = True
            self._connection.call_later(ACK_DELAY, self._on_ack_timer)

    def _on_ack_timer(self) -> None:
        self._ack_timer = False  # the loop acks when process_data_events returns

    def _decode(self, body: bytes | BodyTooLarge) -> Message | None:
        """The packet message of ``body``, or None (counted and logged) if malformed."""
        try:
            if isinstance(body, BodyTooLarge):
                raise BadPacket(
                    f"the body is {body.size} bytes, more than the limit of {self.max_body_size}"
                )
            packet = decode_packet(body, max_size=self.max_body_size)
            return packet_message(self.packet_channel, packet, size=len(body), raw=body)
        except BadPacket as err:
            self._malformed += 1
            self._log_malformed(err, body if isinstance(body, bytes) else b"")
            return None

    def _publish(self, messages: list[Message]) -> None:
        """Publish ``messages`` together (a subscriber without a filter takes
        them in one step); if the hub refuses one, the rest go one by one so
        that only the refused ones are counted as failed."""
        try:
            self.hub.publish_many(messages)
        except Exception:
            for message in messages:
                if message.sequenced:
                    self._consumed += 1
                    continue
                try:
                    self.hub.publish(message)
                except Exception:
                    self._failed += 1
                    if self._failure_log.due():
                        log.exception(
                            "%s: the hub refused a packet (dropped; %d more since the last report)",
                            self.name, self._failure_log.take_suppressed(),
                        )
                else:
                    self._consumed += 1
        else:
            self._consumed += len(messages)

    def _ack(self, channel: BlockingChannel) -> None:
        """Acknowledge every delivery handled so far (one ``multiple`` ack)."""
        if self._unacked:
            channel.basic_ack(self._ack_tag, multiple=True)
            self._unacked = 0

    def _on_cancel(self, _frame: Any) -> None:
        self._cancelled = True

    def _log_malformed(self, err: BadPacket, body: bytes) -> None:
        if not self._malformed_log.due():
            return
        more = self._malformed_log.take_suppressed()
        excerpt = body[:_EXCERPT_BYTES]
        log.warning(
            "%s: dropped a malformed packet (%s): %r%s%s",
            self.name,
            err,
            excerpt,
            "..." if len(body) > _EXCERPT_BYTES else "",
            f"; {more} more since the last report" if more else "",
        )


__all__ = [
    "BROKER_ERRORS",
    "AmqpIngestDoor",
    "ConsumerCancelled",
    "decode_packet",
    "limit_reads",
]
