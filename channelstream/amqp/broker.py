"""What every AMQP door and tool shares: URLs, connection parameters, the exchange.

- :func:`redact_url` is the only form in which a broker URL is logged,
  reported in ``/healthz`` or printed: its password becomes ``***``.
- :func:`connection_parameters` turns ``amqp.url`` into pika parameters
  (raising :class:`BadBrokerUrl`, redacted, for a URL pika refuses).
- :func:`declare_exchange` declares the GATD streamer exchange: a headers
  exchange, durable as GATD's formatter declared it. It is idempotent and
  accepts an existing headers exchange whose other flags differ (e.g. a
  non-durable one made by another tool), or that this user may not
  (re)declare but may use; an exchange of another type is an error
  (:class:`ExchangeMismatch`) naming both types.

- :func:`declare_stream` declares the packet stream of ``amqp.stream`` (a
  RabbitMQ stream, retention by age and size) and binds it to the exchange;
  an existing stream whose retention differs is used as it is (logged), a
  queue of that name that is not a stream is an error (:class:`StreamMismatch`).

Blocking pika calls: under gevent they are cooperative only in a
monkey-patched process (see :mod:`channelstream.amqp.ingest`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

#: AMQP reply codes met while declaring the exchange.
_ACCESS_REFUSED = 403
_PRECONDITION_FAILED = 406

#: The exchange type of the GATD streamer exchange.
EXCHANGE_TYPE = "headers"

#: Segment files of the packet stream: a twentieth of its size bound, within
#: these limits. Retention deletes whole segments, so this is how finely it
#: cuts (RabbitMQ's default segment is 500 MB).
MIN_SEGMENT_BYTES = 1024 * 1024
MAX_SEGMENT_BYTES = 500_000_000

log = logging.getLogger(__name__)


class BadBrokerUrl(ValueError):
    """An ``amqp://`` URL that pika cannot use; the message shows it redacted."""


class ExchangeMismatch(RuntimeError):
    """The exchange exists with another type than ``headers``."""


class StreamMismatch(RuntimeError):
    """A queue named as ``amqp.stream`` exists and is not a stream."""


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***`` (user and host kept).

    ``amqp://guest:secret@host:5672/vhost`` gives
    ``amqp://guest:***@host:5672/vhost``; a URL without a password is
    returned as it is. Text that does not parse as a URL is hidden behind
    its scheme when it contains an ``@``.
    """
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))
    except ValueError:
        if "@" not in url:
            return url
        scheme = url.split("://", 1)[0] if "://" in url else "?"
        return f"{scheme}://***"


def redact_text(text: str, url: str) -> str:
    """Hide ``url``'s password anywhere in ``text`` (an error message, say)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    text = text.replace(url, redact_url(url))
    if password and len(password) >= 4:
        text = text.replace(password, "***")
    return text


def broker_address(url: str) -> str:
    """``host:port`` of an AMQP URL (default ports 5672 and 5671), for messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    except ValueError:
        return "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connection_parameters(url: str, *, name: str) -> pika.URLParameters:
    """pika parameters for ``url``, naming the connection ``name`` in RabbitMQ.

    Query options of the URL (``heartbeat``, ``socket_timeout``,
    ``connection_attempts``...) are pika's. Connecting is not attempted.

    :raises BadBrokerUrl: when pika refuses the URL (the message is redacted).
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("amqp", "amqps"):
        raise BadBrokerUrl(f"expected an amqp:// or amqps:// URL, got {redact_url(url)!r}")
    try:
        parameters = pika.URLParameters(url)
    except (ValueError, TypeError, pika.exceptions.AMQPError) as err:
        raise BadBrokerUrl(
            f"cannot use {redact_url(url)!r}: {redact_text(str(err), url)}"
        ) from None
    properties = dict(parameters.client_properties or {})
    properties.setdefault("connection_name", name)
    parameters.client_properties = properties
    return parameters


def _cause(err: BaseException) -> BaseException:
    """The error under pika's connection wrappers (the socket error, say)."""
    for _ in range(4):  # AMQPConnectionError > workflow failure > connector error > OSError
        inner: object = None
        if isinstance(err, pika.exceptions.AMQPConnectionError) and err.args:
            inner = err.args[0]
        failures = getattr(err, "exceptions", None)
        if isinstance(failures, list | tuple) and failures:
            inner = failures[-1]
        if isinstance(getattr(err, "exception", None), BaseException):
            inner = err.exception  # type: ignore[attr-defined]
        if not isinstance(inner, BaseException):
            break
        err = inner
    return err


def describe_error(err: BaseException, url: str) -> str:
    """One line for a broker error, password hidden.

    ``ConnectionRefusedError: Connection refused``, ``StreamLostError:
    Transport indicated EOF``, ``ChannelClosedByBroker: (404, "NOT_FOUND...")``.
    """
    cause = _cause(err)
    if isinstance(cause, OSError) and cause.strerror:
        text = cause.strerror
    else:
        text = str(cause) or repr(cause)
    return redact_text(f"{type(cause).__name__}: {text}", url)


def declare_exchange(
    connection: BlockingConnection, channel: BlockingChannel, name: str
) -> BlockingChannel:
    """Declare the headers exchange ``name`` (durable); return a usable channel.

    An existing headers exchange is used as it is, whatever its other flags;
    the broker closes the channel on such a mismatch, so the channel
    returned may be a new one. RabbitMQ checks the type before the other
    flags, so a mismatch that does not name the type means the type is
    right.

    :raises ExchangeMismatch: the exchange exists with another type.
    :raises pika.exceptions.AMQPError: any other broker refusal or a lost
        connection.
    """
    try:
        channel.exchange_declare(name, exchange_type=EXCHANGE_TYPE, durable=True)
        return channel
    except pika.exceptions.ChannelClosedByBroker as err:
        text = err.reply_text or ""
        if err.reply_code == _PRECONDITION_FAILED and "'type'" in text:
            raise ExchangeMismatch(
                f"exchange {name!r} exists but is not a headers exchange ({text})"
            ) from None
        if err.reply_code not in (_PRECONDITION_FAILED, _ACCESS_REFUSED):
            raise
    # Same type, other flags (or no right to declare it): use it if it exists.
    channel = connection.channel()
    channel.exchange_declare(name, passive=True)
    return channel


def stream_arguments(max_age: float, max_bytes: int) -> dict[str, Any]:
    """The ``queue.declare`` arguments of the packet stream.

    :param max_age: seconds a packet is kept at least (``packets.history_seconds``;
        0 = no age limit), rounded up to whole seconds.
    :param max_bytes: bound of the stream on disk (``amqp.stream_max_bytes``; 0 = none).
    """
    arguments: dict[str, Any] = {"x-queue-type": "stream"}
    if max_age > 0:
        arguments["x-max-age"] = f"{math.ceil(max_age)}s"
    if max_bytes > 0:
        arguments["x-max-length-bytes"] = max_bytes
        arguments["x-stream-max-segment-size-bytes"] = min(
            MAX_SEGMENT_BYTES, max(MIN_SEGMENT_BYTES, max_bytes // 20)
        )
    return arguments


def declare_stream(
    connection: BlockingConnection,
    channel: BlockingChannel,
    name: str,
    exchange: str,
    arguments: dict[str, Any],
) -> BlockingChannel:
    """Declare the stream ``name`` with ``arguments``, bind it to ``exchange``
    (no binding arguments: every packet); return a usable channel.

    A stream that exists with other retention arguments (another process's
    settings, or an operator's policy) is used as it is: the broker keeps
    the first declaration, and this is logged with the broker's words.

    :raises StreamMismatch: a queue called ``name`` exists and is not a stream.
    :raises pika.exceptions.AMQPError: any other refusal or a lost connection.
    """
    try:
        channel.queue_declare(name, durable=True, arguments=arguments)
    except pika.exceptions.ChannelClosedByBroker as err:
        text = err.reply_text or ""
        if err.reply_code != _PRECONDITION_FAILED:
            raise
        if "x-queue-type" in text:
            raise StreamMismatch(f"queue {name!r} exists but is not a stream ({text})") from None
        log.warning("stream %r exists with other arguments; used as it is (%s)", name, text)
        channel = connection.channel()
        channel.queue_declare(name, passive=True)
    _check_stream(connection, name)
    channel.queue_bind(name, exchange)
    return channel


@contextmanager
def probe_connection(connection: BlockingConnection) -> Iterator[BlockingConnection]:
    """A connection of its own, to the same broker, for a short-lived stream consumer.

    When such a consumer is cancelled (or its channel closed) pika rejects
    the deliveries it holds and any that arrive meanwhile, and a stream
    queue answers a reject by closing the whole connection (540
    NOT_IMPLEMENTED): on a connection of its own that closes only the probe,
    never the connection that publishes or reads the stream.
    """
    probe = BlockingConnection(connection._impl.params)  # pika keeps the parameters there
    try:
        yield probe
    finally:
        try:
            if probe.is_open:
                probe.close()
        except pika.exceptions.AMQPError:  # the broker closed it (a reject): it is closed
            pass


def _check_stream(connection: BlockingConnection, name: str) -> None:
    """Raise :class:`StreamMismatch` unless ``name`` is a stream.

    A classic queue declared without ``x-queue-type`` passes a stream's
    ``queue.declare``; only a stream consumer's ``x-stream-offset`` finds
    it out. So: a consumer at ``next`` (nothing is delivered), cancelled at once.
    """
    with probe_connection(connection) as probing:
        probe = probing.channel()
        try:
            probe.basic_qos(prefetch_count=1)
            probe.basic_consume(name, lambda *_args: None, arguments={"x-stream-offset": "next"})
        except pika.exceptions.ChannelClosedByBroker as err:
            text = err.reply_text or ""
            if err.reply_code == _PRECONDITION_FAILED and "queue type" in text:
                raise StreamMismatch(
                    f"queue {name!r} exists but is not a stream ({text})"
                ) from None
            raise
        # the consumer was accepted: a stream. Closing the probe may reject a message
        # published meanwhile, which closes the probe's connection: nothing else.


__all__ = [
    "EXCHANGE_TYPE",
    "probe_connection",
    "MAX_SEGMENT_BYTES",
    "MIN_SEGMENT_BYTES",
    "BadBrokerUrl",
    "ExchangeMismatch",
    "StreamMismatch",
    "broker_address",
    "connection_parameters",
    "declare_exchange",
    "declare_stream",
    "describe_error",
    "redact_text",
    "redact_url",
    "stream_arguments",
]
