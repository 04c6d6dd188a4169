"""A development.ini server set up for the channelstream API, and its signing client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from channelstream.client import ChannelstreamClient
from channelstream.ops.openapi import OPENAPI_KEY
from channelstream.settings import default_settings
from channelstream.wsgi_app import build_app
from tests.support.server import REPO, RunningServer

SECRET = "test-secret"
ADMIN_SECRET = "test-admin-secret"

#: [app:main] keys: known secrets, and quick collection and heartbeats (tests wait on them).
API_APP = {
    "secret": SECRET,
    "admin_secret": ADMIN_SECRET,
    "gc_conns_after": "1",
    "client_heartbeat": "0.5",
    "listen_timeout": "1",
}


def run_api_server(folder: Path) -> Iterator[RunningServer]:
    """Start a server in ``folder``, yield it, stop it."""
    with RunningServer(REPO / "development.ini", folder, app=API_APP) as running:
        yield running


def api_client(server: RunningServer) -> ChannelstreamClient:
    return ChannelstreamClient(server.url, SECRET, admin_secret=ADMIN_SECRET)


def openapi_document() -> dict[str, Any]:
    """The ``/openapi.json`` an app with the default settings serves (built in-process).

    The document holds the fragments of the HTTP doors that are on; every
    test server's HTTP doors are the default ones.
    """
    return json.loads(build_app(default_settings()).registry[OPENAPI_KEY])
