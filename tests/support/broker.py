"""RabbitMQ for tests: find it, make unique exchanges, bind and read queues.

Broker tests are marked ``broker``. They use the broker at
``$CHANNELSTREAM_TEST_AMQP_URL`` (default ``amqp://guest:guest@127.0.0.1:5672/``)
and are skipped only when ``CI`` is unset and that broker is unreachable;
in CI (``CI=true``) an unreachable broker fails them.

These helpers use blocking pika in the (unpatched) test process.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import pika
import pika.exceptions
import pytest

from channelstream.amqp.broker import declare_exchange, describe_error

BROKER_URL = os.environ.get("CHANNELSTREAM_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

# pika logs every connection attempt; the tests say what they need.
logging.getLogger("pika").setLevel(logging.CRITICAL)


def in_ci() -> bool:
    """True when ``CI`` is set to anything but empty, 0 or false."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def probe(url: str = BROKER_URL) -> str | None:
    """None when the broker answers at ``url``, else the reason."""
    try:
        connection = pika.BlockingConnection(pika.URLParameters(url))
    except (pika.exceptions.AMQPError, OSError) as err:
        return describe_error(err, url)
    connection.close()
    return None


def require_broker(url: str = BROKER_URL) -> str:
    """Return ``url`` if the broker answers; else skip (fail in CI)."""
    error = probe(url)
    if error is not None:
        message = f"RabbitMQ is not reachable at {url.split('@')[-1]}: {error}"
        if in_ci():
            pytest.fail(f"{message} (CI is set: broker tests must run)")
        pytest.skip(f"{message} (start it with: rabbitmq-server -detached)")
    return url


def broker_target(url: str) -> tuple[str, int]:
    """(host, port) of the broker at ``url``, for a proxy in front of it."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5672


def url_via(url: str, port: int) -> str:
    """``url`` with its host and port replaced by ``127.0.0.1:port`` (a proxy)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return parts._replace(netloc=f"{userinfo}127.0.0.1:{port}").geturl()


def unique_name(prefix: str = "test") -> str:
    """An exchange (or other) name no other test uses."""
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


def delete_exchange(url: str, name: str) -> None:
    """Delete exchange ``name`` (durable ones would outlive the tests); never raises."""
    try:
        connection = pika.BlockingConnection(pika.URLParameters(url))
    except (pika.exceptions.AMQPError, OSError):
        return
    try:
        connection.channel().exchange_delete(name)
    except pika.exceptions.AMQPError:
        pass
    finally:
        if connection.is_open:
            connection.close()


def publish_raw(
    url: str,
    exchange: str,
    bodies: list[bytes],
    *,
    headers: Mapping[str, Any] | list[Mapping[str, Any] | None] | None = None,
) -> None:
    """Publish ``bodies`` as they are with plain pika (one connection, confirmed).

    ``headers``: one table for all, or one per body. The exchange is declared
    first, as any GATD publisher did.
    """
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = declare_exchange(connection, connection.channel(), exchange)
        channel.confirm_delivery()
        for index, body in enumerate(bodies):
            table = headers[index] if isinstance(headers, list) else headers
            properties = pika.BasicProperties(headers=dict(table) if table else None)
            channel.basic_publish(exchange, "", body, properties)
    finally:
        connection.close()


class BoundQueue:
    """An exclusive queue bound to ``exchange`` with ``arguments``, read with basic.get.

    ``BoundQueue(url, exchange, {"x-match": "all", "temperature": 70})``.
    """

    def __init__(self, url: str, exchange: str, arguments: Mapping[str, Any] | None) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        channel = declare_exchange(self.connection, self.connection.channel(), exchange)
        self.channel = channel
        self.queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        channel.queue_bind(self.queue, exchange, arguments=dict(arguments or {}) or None)

    def get(
        self, count: int, *, timeout: float = 10.0
    ) -> list[tuple[pika.BasicProperties, bytes]]:
        """Wait (bounded) for ``count`` messages; return what came (maybe fewer)."""
        got: list[tuple[pika.BasicProperties, bytes]] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                self.connection.sleep(0.02)
                continue
            got.append((properties, body))
        return got

    def packets(self, count: int, *, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The JSON bodies of :meth:`get`."""
        return [json.loads(body) for _, body in self.get(count, timeout=timeout)]

    def rest(self) -> list[dict[str, Any]]:
        """Whatever is in the queue now (confirmed publishes are in it already)."""
        found = []
        while True:
            method, _, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return found
            found.append(json.loads(body))

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()

    def __enter__(self) -> BoundQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
