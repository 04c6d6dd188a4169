"""The ``socketio.*`` settings, and the seed's ``[server:main]`` keys, on a live server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests

from tests.sio.clients import StreamClient, stalled_client
from tests.support.api import API_APP, api_client
from tests.support.server import REPO, RunningServer
from tests.support.wait import wait_for

ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    app = {
        **API_APP,
        "socketio.path": "io",
        "socketio.ping_interval": "2",
        "socketio.ping_timeout": "3",
        "socketio.cors_allowed_origins": ORIGIN,
        "socketio.max_payload": "2000",
    }
    folder = tmp_path_factory.mktemp("sio-tuned")
    with RunningServer(REPO / "development.ini", folder, app=app) as running:
        yield running


def handshake(server: RunningServer, path: str = "socket.io", **headers: str) -> requests.Response:
    """The engine.io polling handshake: ``0{"sid", "pingInterval", ...}`` when accepted."""
    return requests.get(
        f"{server.url}/{path}/?EIO=4&transport=polling", headers=headers, timeout=10
    )


def opened(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text
    assert response.text.startswith("0")
    return json.loads(response.text[1:])


def test_path_and_ping_settings_come_from_the_ini(tuned):
    info = opened(handshake(tuned, "io"))
    assert (info["pingInterval"], info["pingTimeout"]) == (2000, 3000)
    assert info["maxPayload"] == 2000
    assert info["upgrades"] == ["websocket"]
    missing = handshake(tuned, "socket.io")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"].startswith("application/json")


def test_only_the_allowed_origins_may_connect(tuned):
    allowed = handshake(tuned, "io", Origin=ORIGIN)
    opened(allowed)
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    refused = handshake(tuned, "io", Origin="https://evil.example")
    assert refused.status_code == 400
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_same_origin_only_by_default(sio_server):
    same = handshake(sio_server, Origin=sio_server.url)
    opened(same)
    assert handshake(sio_server, Origin="https://elsewhere.example").status_code == 400


def test_seed_server_keys_set_path_transports_and_heartbeats_max_payload_from_the_app(server):
    running = server(
        app={**API_APP, "socketio.max_payload": "2000"},
        server={
            "resource": "legacy.io",
            "transports": "websocket",
            "heartbeat_interval": "7",
            "heartbeat_timeout": "9",
        },
    )
    # polling is off: the handshake must come as a websocket
    assert handshake(running, "legacy.io").status_code == 400
    client = StreamClient(running.url, transports=["websocket"], path="legacy.io")
    try:
        assert client.call("query", {"a": 1}) == {"ok": True}
        assert client.sio.eio.ping_interval == 7
        assert client.sio.eio.ping_timeout == 9
        client.emit("query", {"big": "x" * 3000})  # over socketio.max_payload
        client.next("disconnect")
    finally:
        client.close()
    status = running.get("/healthz").json()["doors"]["socketio"]
    assert status["path"] == "/legacy.io/" and status["transports"] == ["websocket"]


def test_a_client_that_never_answers_pings_is_dropped_after_ping_interval_and_timeout(server):
    running = server(app={**API_APP, "socketio.ping_interval": "1", "socketio.ping_timeout": "1"})
    api = api_client(running)
    conn_id = api.connect("pat", ["lobby"])["conn_id"]
    silent = stalled_client(running.url, json.dumps({"conn_id": conn_id}))
    try:
        door = running.get("/healthz").json()["doors"]["socketio"]
        assert door["chat_clients"] == 1
        started = time.monotonic()
        wait_for(
            lambda: running.get("/healthz").json()["doors"]["socketio"]["clients"] == 0,
            timeout=15,
        )
        assert time.monotonic() - started >= 1.0  # not before a ping went unanswered
    finally:
        silent.close()
