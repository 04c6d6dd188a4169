"""Fixtures of the socket.io tests: one server for chat and GATD clients, per module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from channelstream.client import ChannelstreamClient
from tests.sio.clients import StreamClient
from tests.support.api import api_client
from tests.support.packets import run_packets_server
from tests.support.server import RunningServer


@pytest.fixture(scope="module")
def sio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """development.ini with known secrets and an ingest token (tests/support/packets.py)."""
    yield from run_packets_server(tmp_path_factory.mktemp("sio"))


@pytest.fixture
def api(sio_server: RunningServer) -> ChannelstreamClient:
    """The signing client of ``sio_server``'s server API."""
    return api_client(sio_server)


@pytest.fixture
def stream(sio_server: RunningServer) -> Iterator[Callable[..., StreamClient]]:
    """Open ``/stream`` clients on ``sio_server`` (``stream(auth=..., transports=...)``)."""
    opened: list[StreamClient] = []

    def open_client(**options: Any) -> StreamClient:
        client = StreamClient(sio_server.url, **options)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


def door_status(server: RunningServer) -> dict[str, Any]:
    """The socket.io door's status in the server's /healthz."""
    return server.get("/healthz").json()["doors"]["socketio"]
