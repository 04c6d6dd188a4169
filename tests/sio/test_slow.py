"""A socket.io client that stops reading never delays the others and is dropped
past its outbox's hard limit (chat), or loses the oldest packets (GATD)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tests.sio.clients import StreamClient, stalled_client
from tests.sio.conftest import door_status
from tests.support.api import api_client
from tests.support.packets import new_run, post_packets, run_packets_server
from tests.support.server import RunningServer
from tests.support.wait import wait_for

BIG = "x" * 200_000  # a few of these fill the socket buffers of a client that does not read


@pytest.fixture(scope="module")
def small_outboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from run_packets_server(
        tmp_path_factory.mktemp("sio-slow"),
        **{"hub.outbox_size": "5", "hub.outbox_hard_limit": "40"},
    )


def test_a_stalled_chat_client_is_disconnected_and_the_others_get_everything(small_outboxes):
    server = small_outboxes
    api = api_client(server)
    channel = f"room-{uuid.uuid4().hex[:8]}"
    slow_id = api.connect("slow", [channel])["conn_id"]
    fast_id = api.connect("fast", [channel])["conn_id"]
    stalled = stalled_client(server.url, json.dumps({"conn_id": slow_id}))
    fast = StreamClient(server.url, auth={"conn_id": fast_id})
    try:
        fast.next("user_connect")
        got = []
        for n in range(120):  # in step with the fast client: only the stalled one lags
            api.message([{"channel": channel, "user": "bot", "message": {"n": n, "pad": BIG}}])
            got += fast.frames(1)
        assert [f["message"]["n"] for f in got] == list(range(120))
        stats = wait_for(lambda: (s := api.admin_stats())["slow_disconnects"] >= 1 and s)
        assert stats["slow_disconnects"] == 1
        # the stalled websocket is closed at once, not left to engine.io's ping timeout
        door = wait_for(lambda: (d := door_status(server))["websockets"] == 1 and d, timeout=5)
        assert door["chat_clients"] == 1
        assert slow_id not in api.info(channels=[channel], include_connections=True)["channels"][
            channel
        ]["connections"].get("slow", [])
    finally:
        stalled.close()
        fast.close()


def test_a_stalled_gatd_client_loses_the_oldest_packets_only(small_outboxes):
    server = small_outboxes
    run = new_run()
    stalled = stalled_client(server.url, "")
    fast = StreamClient(server.url)
    try:
        stalled.send("42/stream," + json.dumps(["query", {"run": run}]))
        fast.call("query", {"run": run})
        wait_for(  # both queries registered before the first packet
            lambda: server.get("/healthz").json()["doors"]["socketio"]["query_clients"] == 2
        )
        got = []
        for n in range(80):
            post_packets(server, {"run": run, "n": n, "pad": BIG}).raise_for_status()
            got += fast.data(1)
        assert [p["n"] for p in got] == list(range(80))
        door = wait_for(
            lambda: (
                (d := server.get("/healthz").json()["doors"]["socketio"])["packets_dropped"] and d
            )
        )
        assert door["packets_dropped"] > 0
        assert door["query_clients"] == 2  # packets are droppable: nobody is disconnected
    finally:
        stalled.close()
        fast.close()
