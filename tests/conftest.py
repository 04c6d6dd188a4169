"""Fixtures shared by the tests (see tests/support/server.py for the server helper)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from channelstream.client import ChannelstreamClient
from tests.support.api import api_client, run_api_server
from tests.support.server import PROBE_APP, REPO, RunningServer
from tests.support.server import free_port as _free_port


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free when the test began."""
    return _free_port()


@pytest.fixture
def repo() -> Path:
    """The repository's top folder (where development.ini lives)."""
    return REPO


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start servers with ``server(ini, app={...}, server={...}, env={...})``.

    Each call returns a ready :class:`RunningServer` (``/healthz`` answered);
    the ini is a copy in ``tmp_path`` with a free port. Servers still running
    at the end of the test get SIGTERM (and are killed if they hang).
    """
    started: list[RunningServer] = []

    def start(ini: str | Path = "development.ini", **options) -> RunningServer:
        folder = tmp_path / f"server{len(started)}"
        folder.mkdir()
        running = RunningServer(REPO / ini, folder, **options)
        started.append(running)
        return running.start()

    yield start
    for running in started:
        try:
            if running.returncode is None:
                running.stop()
        finally:
            running.kill()


@pytest.fixture(scope="module")
def probe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One development.ini server running the probe app, shared by a test module."""
    folder = tmp_path_factory.mktemp("probe")
    with RunningServer(REPO / "development.ini", folder, app=PROBE_APP) as running:
        yield running


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A development.ini server with known secrets (tests/support/api.py), per module."""
    yield from run_api_server(tmp_path_factory.mktemp("api"))


@pytest.fixture
def client(api_server: RunningServer) -> ChannelstreamClient:
    """The package's signing client, for ``api_server``."""
    return api_client(api_server)
