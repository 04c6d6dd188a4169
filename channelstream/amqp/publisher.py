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

Publishes are confirmed by the broker (``confirm=True``): ``publish``
returns once RabbitMQ has the packet. A packet no queue is bound for is
dropped by the broker, as in GATD ("if there are no streamers running, the
messages will just be dropped and that is OK").

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
from collections.abc import Mapping
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
    describe_error,
    redact_url,
)
from .headers import packet_headers

#: The content type of every packet.
CONTENT_TYPE = "application/json"
#: Seconds a publish may wait while the broker blocks publishers.
BLOCKED_TIMEOUT = 60.0



class PublishError(ConnectionError):
    """The broker could not be reached or refused the packet.

    The message names the broker (URL without its password) and the cause.
    """


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


def _connection_lost(err: BaseException) -> bool:
    """True when the connection died (worth one retry), not when a channel was refused."""
    return isinstance(err, OSError | pika.exceptions.AMQPConnectionError)


class PacketPublisher:
    """A connection to the broker that publishes packets; see the module doc.

    :param url: ``amqp://user:password@host:port/vhost`` (pika's query
        options allowed). Never shown with its password.
    :param exchange: the streamer exchange (GATD's ``streamer_exchange``).
    :param confirm: wait for the broker to confirm each publish.

    Connects on :meth:`connect` or the first :meth:`publish`.

    :raises BadBrokerUrl: (from the constructor) when pika refuses the URL.
    """

    def __init__(
        self, url: str, exchange: str = "streamer_exchange", *, confirm: bool = True
    ) -> None:
        self.url = url
        self.exchange = exchange
        self.confirm = confirm
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
            if self.confirm:
                channel.confirm_delivery()
        except Exception as err:
            self.close()
            raise PublishError(
                f"cannot use exchange {self.exchange!r} at {self.broker}: "
                f"{describe_error(err, self.url)}"
            ) from None
        self._channel = channel

    def publish(self, packet: Mapping[str, Any]) -> None:
        """Publish one packet (JSON body, scalar fields as headers).

        :raises BadPacket: the packet is not a JSON object of standard JSON.
        :raises PublishError: the broker is unreachable or refused it; the
            publisher is closed and connects again on the next call.
        """
        body = encode_packet(packet)
        properties = pika.BasicProperties(
            content_type=CONTENT_TYPE, headers=packet_headers(packet)
        )
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


__all__ = ["BLOCKED_TIMEOUT", "CONTENT_TYPE", "PacketPublisher", "PublishError", "encode_packet"]
