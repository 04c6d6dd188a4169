"""Fixtures of the AMQP tests: the broker, a unique exchange, servers with the door on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pika
import pika.exceptions
import pytest

from tests.support.broker import delete_exchange, require_broker, unique_name
from tests.support.packets import PACKETS_APP
from tests.support.server import RunningServer
from tests.support.wait import wait_for

DOOR = "amqp-ingest"


@pytest.fixture(scope="session")
def broker_url() -> str:
    """The test broker's URL; skips (fails in CI) when it does not answer."""
    return require_broker()


@pytest.fixture
def exchange(broker_url: str) -> Iterator[str]:
    """A streamer exchange name of this test only, deleted afterwards."""
    name = unique_name("streamer")
    yield name
    delete_exchange(broker_url, name)


def door_status(server: RunningServer) -> dict[str, Any]:
    """The amqp-ingest door's status in the server's /healthz."""
    return server.get("/healthz").json()["doors"][DOOR]


def wait_for_door(
    server: RunningServer, check: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll /healthz until the door's status passes ``check``; return that status."""
    found: dict[str, Any] = {}

    def probe() -> bool:
        found.clear()
        found.update(door_status(server))
        return check(found)

    try:
        wait_for(probe, what=what)
    except AssertionError as err:
        raise AssertionError(f"{err}; last status {found}\n{server.stderr}") from None
    return dict(found)


@pytest.fixture
def amqp_server(
    server: Callable[..., RunningServer], broker_url: str, exchange: str
) -> Callable[..., RunningServer]:
    """Start a development.ini server whose amqp-ingest door consumes ``exchange``.

    ``amqp_server(url=..., **app_keys)``; waits until the door is connected
    unless ``connected=False``.
    """

    def start(*, url: str | None = None, connected: bool = True, **app: str) -> RunningServer:
        keys = {
            "amqp.url": url or broker_url,
            "amqp.exchange": exchange,
            "amqp.reconnect_max": "2",
            **app,
        }
        running = server(app=keys)
        if connected:
            wait_for_door(running, lambda door: door["state"] == "connected", "connected")
        return running

    return start


def delete_queue(url: str, name: str) -> None:
    """Delete queue (or stream) ``name``; never raises."""
    try:
        connection = pika.BlockingConnection(pika.URLParameters(url))
    except (pika.exceptions.AMQPError, OSError):
        return
    try:
        connection.channel().queue_delete(name)
    except pika.exceptions.AMQPError:
        pass
    finally:
        if connection.is_open:
            connection.close()


@pytest.fixture
def stream_name(broker_url: str) -> Iterator[str]:
    """A packet stream name of this test only, deleted afterwards (streams are durable)."""
    name = unique_name("gatd_packets")
    yield name
    delete_queue(broker_url, name)


def caught_up(server: RunningServer) -> dict[str, Any]:
    """Wait until the stream door is connected and has read the log up to its marker."""
    return wait_for_door(
        server,
        lambda door: door["state"] == "connected" and not door["catching_up"],
        "connected and caught up with the stream",
    )


@pytest.fixture
def stream_server(
    server: Callable[..., RunningServer], broker_url: str, exchange: str, stream_name: str
) -> Callable[..., RunningServer]:
    """Start a development.ini server whose door reads ``stream_name`` (``amqp.stream``).

    Every server of a test shares the exchange and the stream; each has the
    packet test keys (``tests/support/packets.py``: ingest token, secrets).
    ``stream_server(url=..., wait=False, **app_keys)`` (``wait``: until caught up).
    """

    def start(*, url: str | None = None, wait: bool = True, **app: str) -> RunningServer:
        keys = {
            **PACKETS_APP,
            "amqp.url": url or broker_url,
            "amqp.exchange": exchange,
            "amqp.stream": stream_name,
            "amqp.reconnect_max": "2",
            **app,
        }
        running = server(app=keys)
        if wait:
            caught_up(running)
        return running

    return start
