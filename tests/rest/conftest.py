"""A development.ini server shared by a test module, and a signing client for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from channelstream.client import ChannelstreamClient
from tests.support.server import REPO, RunningServer

SECRET = "test-secret"
ADMIN_SECRET = "test-admin-secret"

#: Keys that make the server quick to collect (tests wait on it).
FAST_GC = {
    "secret": SECRET,
    "admin_secret": ADMIN_SECRET,
    "gc_conns_after": "1",
    "client_heartbeat": "0.5",
    "listen_timeout": "1",
}


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("api")
    running = RunningServer(REPO / "development.ini", folder, app=FAST_GC)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        running.kill()


@pytest.fixture
def client(api_server: RunningServer) -> ChannelstreamClient:
    return ChannelstreamClient(api_server.url, SECRET, admin_secret=ADMIN_SECRET)
