"""Publish GATD packets to the streamer exchange: :class:`PacketPublisher`.

Each packet goes out as its JSON body (UTF-8, ``content_type
application/json``) with every scalar field as an AMQP header
(:func:`~channelstream.amqp.headers.packet_headers`), so a queue bound with
``x-match: all`` on any of its pairs, ``{"temperature": 70}`` say, gets it
from the broker: the bug of GATD's formatter, which sent only
``profile_id``, is not repeated. The exchange is declared first, as GATD's
formatter did (durable headers exchange; an existing one is used as it is).

::

    with PacketPublisher("amqp://guest:guest@127.0.0.1:5672/") as publisher:
        publisher.publish({"profile_id": "abcdefghij", "temperature": 70})

Each packet is stamped with the time it is published: the ``timestamp``
property (seconds, AMQP's own) and a ``timestamp_in_ms`` header (the name
RabbitMQ's timestamp interceptor and plugin use; a packet field of that name
is left as it is). A process that reads the packets back from a stream
(``amqp.stream``) places each at that time in its window.

Publishes are confirmed by the broker (``confirm=True``): ``publish``
returns once RabbitMQ has the packet. With ``transactional=True`` the
channel is transactional instead, and :meth:`PacketPublisher.publish_many`
publishes a list all or nothing: nothing is routed before ``tx.commit``,
and RabbitMQ answers ``commit-ok`` once every queue has confirmed them, as
it does for publisher confirms (``rabbit_channel``: ``maybe_complete_tx``).
A packet no queue is bound for is dropped by the broker, as in GATD ("if
there are no streamers running, the messages will just be dropped and that
is OK").

Blocking and not thread-safe: use one publisher per thread (or greenlet, in
a monkey-patched process). pika answers heartbeats only while it is called,
so an idle publisher's connection may be gone when the next packet comes:
``publish`` then connects again and sends the packet once more, so delivery
is at least once (a packet is duplicated if the connection broke after the
broker took it but before it confirmed). A broker that blocks publishers
(memory or disk alarm) longer than :data:`BLOCKED_TIMEOUT` makes ``publish``
fail, unless the URL sets ``blocked_connection_timeout``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from ..packets import BadPacket
from ..strict_json import dumps
from .broker import (
    broker_address,
    connection_parameters,
    declare_exchange,
    declare_stream,
    describe_error,
    redact_url,
)
from .deliveries import TIME_HEADER
from .headers import packet_headers

#: The content type of every packet.
CONTENT_TYPE = "application/json"
#: Seconds a publish may wait while the broker blocks publishers.
BLOCKED_TIMEOUT = 60.0



class PublishError(ConnectionError):
    """The broker could not be reached or refused the packet.

    The message names the broker (URL without its password) and the cause.
    :attr:`maybe_published` is True only when the connection broke during a
    transaction's commit (the broker may have taken the packets).
    """

    maybe_published = False


def encode_packet(packet: Any) -> bytes:
    """The packet's JSON body (UTF-8, compact).

    :raises BadPacket: not an object, or not standard JSON (NaN, Infinity,
        lone surrogates, values JSON has no form for).
    """
    if not isinstance(packet, Mapping):
        raise BadPacket(f"a packet must be a JSON object, not {type(packet).__name__}")
    try:
        return dumps(dict(packet))
    except (TypeError, ValueError) as err:  # UnicodeEncodeError is a ValueError
        raise BadPacket(f"the packet is not standard JSON: {err}") from None


def packet_properties(packet: Mapping[str, Any], now_ms: int) -> pika.BasicProperties:
    """The properties of ``packet`` published at ``now_ms``: headers and time stamps."""
    headers = packet_headers(packet)
    headers.setdefault(TIME_HEADER, now_ms)
    return pika.BasicProperties(
        content_type=CONTENT_TYPE, headers=headers, timestamp=now_ms // 1000
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _connection_lost(err: BaseException) -> bool:
    """True when the connection died (worth one retry), not when a channel was refused."""
    return isinstance(err, OSError | pika.exceptions.AMQPConnectionError)


class PacketPublisher:
    """A connection to the broker that publishes packets; see the module doc.

    :param url: ``amqp://user:password@host:port/vhost`` (pika's query
        options allowed). Never shown with its password.
    :param exchange: the streamer exchange (GATD's ``streamer_exchange``).
    :param confirm: wait for the broker to confirm each publish.
    :param transactional: a transactional channel (instead of confirms):
        :meth:`publish_many` is all or nothing.
    :param stream: ``(name, arguments)`` of a stream to declare and bind to
        the exchange on connecting (:func:`~.broker.declare_stream`), so that
        packets published before any consumer came are kept.

    Connects on :meth:`connect` or the first :meth:`publish`.

    :raises BadBrokerUrl: (from the constructor) when pika refuses the URL.
    """

    def __init__(
        self,
        url: str,
        exchange: str = "streamer_exchange",
        *,
        confirm: bool = True,
        transactional: bool = False,
        stream: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        self.url = url
        self.exchange = exchange
        self.confirm = confirm and not transactional
        self.transactional = transactional
        self.stream = stream
        #: The broker URL as shown in messages: no password.
        self.broker = redact_url(url)
        self._parameters = connection_parameters(
            url, name=f"channelstream packet publisher (pid {os.getpid()})"
        )
        if self._parameters.blocked_connection_timeout is None:
            self._parameters.blocked_connection_timeout = BLOCKED_TIMEOUT
        self._connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def connect(self) -> None:
        """Connect and declare the exchange (nothing when connected already).

        :raises PublishError: the broker is unreachable or refuses.
        """
        if self._channel is not None and self._channel.is_open:
            return
        self.close()
        try:
            connection = BlockingConnection(self._parameters)
        except (pika.exceptions.AMQPError, OSError) as err:
            raise PublishError(
                f"cannot connect to {self.broker} ({broker_address(self.url)}): "
                f"{describe_error(err, self.url)}"
            ) from None
        self._connection = connection
        try:
            channel = declare_exchange(connection, connection.channel(), self.exchange)
            if self.stream is not None:
                name, arguments = self.stream
                channel = declare_stream(connection, channel, name, self.exchange, arguments)
            if self.transactional:
                channel.tx_select()
            elif self.confirm:
                channel.confirm_delivery()
        except Exception as err:
            self.close()
            what = f"exchange {self.exchange!r}"
            if self.stream is not None:
                what += f" and stream {self.stream[0]!r}"
            raise PublishError(
                f"cannot use {what} at {self.broker}: {describe_error(err, self.url)}"
            ) from None
        self._channel = channel

    def publish(self, packet: Mapping[str, Any]) -> None:
        """Publish one packet (JSON body, scalar fields as headers).

        :raises BadPacket: the packet is not a JSON object of standard JSON.
        :raises PublishError: the broker is unreachable or refused it; the
            publisher is closed and connects again on the next call.
        """
        if self.transactional:
            self.publish_many([packet])
            return
        body = encode_packet(packet)
        properties = packet_properties(packet, _now_ms())
        reused = self._channel is not None and self._channel.is_open
        for attempt in (1, 2):
            self.connect()
            assert self._channel is not None
            try:
                self._channel.basic_publish(self.exchange, "", body, properties)
                return
            except (pika.exceptions.AMQPError, OSError) as err:
                self.close()
                if attempt == 1 and reused and _connection_lost(err):
                    continue  # the idle connection was gone: once more on a new one
                raise PublishError(
                    f"publishing to exchange {self.exchange!r} at {self.broker} failed: "
                    f"{describe_error(err, self.url)}"
                ) from None

    def publish_many(
        self,
        packets: Sequence[Mapping[str, Any]],
        *,
        check: Callable[[int, bytes], object] | None = None,
    ) -> None:
        """Publish ``packets`` all or nothing, in one transaction (``transactional=True``).

        Every packet is encoded first (a bad one raises before anything is
        sent). An idle connection found gone is replaced once, before
        anything of this call was committed. When the connection is lost
        during ``tx.commit`` itself the broker may or may not have taken
        them, and the error says so.

        :param check: called with each packet's index and JSON body once all
            are encoded, before anything is sent; what it raises propagates.
        :raises BadPacket: a packet is not a JSON object of standard JSON.
        :raises PublishError: nothing was committed (or, as said, maybe all).
        """
        if not self.transactional:
            raise RuntimeError("publish_many needs a transactional publisher")
        now_ms = _now_ms()
        encoded = [(encode_packet(p), packet_properties(p, now_ms)) for p in packets]
        if check is not None:
            for index, (body, _properties) in enumerate(encoded):
                check(index, body)
        if not encoded:
            return
        reused = self._channel is not None and self._channel.is_open
        for attempt in (1, 2):
            self.connect()
            channel = self._channel
            assert channel is not None and self._connection is not None
            try:
                if reused and attempt == 1:
                    self._connection.process_data_events(0)  # a broker gone while idle shows here
                for body, properties in encoded:
                    channel.basic_publish(self.exchange, "", body, properties)
            except (pika.exceptions.AMQPError, OSError) as err:
                self.close()  # nothing committed: the broker drops what it got
                if attempt == 1 and reused and _connection_lost(err):
                    continue
                raise PublishError(
                    f"publishing to exchange {self.exchange!r} at {self.broker} failed: "
                    f"{describe_error(err, self.url)}"
                ) from None
            try:
                channel.tx_commit()
            except (pika.exceptions.AMQPError, OSError) as err:
                self.close()
                error = PublishError(
                    f"the connection to {self.broker} was lost while it committed "
                    f"{len(encoded)} packet(s) to exchange {self.exchange!r}: it may or may "
                    f"not have taken them ({describe_error(err, self.url)})"
                )
                error.maybe_published = True
                raise error from None
            return

    def close(self) -> None:
        """Close the connection (idempotent; errors while closing are ignored)."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except (pika.exceptions.AMQPError, OSError):
                pass

    def __enter__(self) -> PacketPublisher:
        self.connect()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


__all__ = [
    "BLOCKED_TIMEOUT",
    "CONTENT_TYPE",
    "PacketPublisher",
    "PublishError",
    "encode_packet",
    "packet_properties",
]
