"""hub.engine = redis: taking a connection over is all or nothing (channelstream/chat/adoption.py).

Two servers running the test app share one Redis. A connection made on the
first, in three channels, is attached by ``/ws`` on the second, whose engine
refuses to follow the second of those channels (the test app's
``engine-refuse`` probe: the bus's ``watch`` raises the engine's own
``EngineUnavailable`` for that hub channel, as while Redis cannot take a
``SUBSCRIBE``). The attach answers 503 naming Redis; nothing parts, the
shared presence and the connection's record (every channel) stay as they
were. The failure gone, an attach here or on the other process rebuilds the
connection with all its channels from the record.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import redis
import requests
import websocket

from tests.support.server import PROBE_APP, RunningServer

from .sockets import Socket
from .test_directory import PRESENCE, api, delete_keys, presence, room, start_servers
from .test_redis import REDIS_URL, require_redis

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

#: The test app (its probes), a connection waiting 10 s for a transport, and a
#: presence ttl long enough that nothing expires while a test looks at it.
APP = {**PROBE_APP, "gc_conns_after": "10", "redis.presence_ttl": "30"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Iterator[tuple[list[RunningServer], str]]:
    url = require_redis()
    prefix = f"cs-adopt-{uuid.uuid4().hex[:8]}:"
    servers = start_servers(tmp_path_factory, url, prefix, 2, **APP)
    try:
        yield servers, prefix
    finally:
        for server in servers:
            server.__exit__(None, None, None)
        delete_keys(url, prefix)


def refuse(server: RunningServer, channel: str | None) -> None:
    """``server``'s engine refuses to follow chat ``channel`` (None: refuses none)."""
    if channel is None:
        answer = requests.delete(server.url + "/test/engine-refuse", timeout=10)
    else:
        params = {"channel": f"channel:{channel}"}
        answer = requests.post(server.url + "/test/engine-refuse", params=params, timeout=10)
    assert answer.status_code == 200, answer.text


def record(prefix: str, conn_id: str) -> dict[str, object]:
    """The connection's record in Redis: owner process, channels, granted."""
    found = redis.Redis.from_url(REDIS_URL).hgetall(f"{prefix}chat:conn:{conn_id}")
    return {
        "owner": found[b"owner"].decode(),
        "channels": json.loads(found[b"channels"]),
        "granted": json.loads(found[b"granted"]),
    }


def process_id(server: RunningServer) -> str:
    health = requests.get(server.url + "/healthz", timeout=10).json()
    return health["doors"]["chat-redis"]["control_process_id"]


def moves(server: RunningServer) -> dict[str, int]:
    """The connections the server took over (handed over) and rebuilt, so far."""
    door = requests.get(server.url + "/healthz", timeout=10).json()["doors"]["chat-redis"]
    return {key: door[key] for key in ("taken_over", "rebuilt")}


def connections(server: RunningServer, channels: list[str]) -> dict[str, dict]:
    info = api(server).info(channels=channels, include_connections=True)
    return {name: info["channels"][name]["connections"] for name in channels}


@pytest.mark.parametrize("retry_on", [1, 0], ids=["retry-on-the-same", "retry-on-the-other"])
def test_a_failed_take_over_leaves_the_record_whole_and_a_retry_rebuilds_every_channel(
    pair, retry_on
):
    (first, second), prefix = pair
    name = room()
    channels = [f"{name}-a", f"{name}-b", f"{name}-c"]
    configs = dict.fromkeys(channels, PRESENCE)
    watcher_id = api(first).connect(f"watcher-{name}", channels, channel_configs=configs)[
        "conn_id"
    ]
    watcher = Socket(first, watcher_id)
    mover = f"mover-{name}"
    conn_id = api(first).connect(mover, channels, channel_configs=configs)["conn_id"]
    for channel in channels:
        watcher.wait(lambda f, c=channel: presence(mover, "joined")(f) and f["channel"] == c)
    everyone = {mover: [conn_id], f"watcher-{name}": [watcher_id]}
    refuse(second, channels[1])  # the user's channel and the first one go through
    before = {server.url: moves(server) for server in (first, second)}
    try:
        with pytest.raises(websocket.WebSocketBadStatusException) as failed:
            Socket(second, conn_id)  # the first hands it over; the second cannot follow b
        assert failed.value.status_code == 503
        assert "redis" in json.loads(failed.value.resp_body)["error"]
        assert moves(second) == before[second.url]  # not counted: nothing was taken over
        # Kept whole: every channel recorded, owned by the second, present everywhere.
        assert record(prefix, conn_id) == {
            "owner": process_id(second), "channels": channels, "granted": channels
        }
        for server in (first, second):
            assert connections(server, channels) == dict.fromkeys(channels, everyone)
        assert watcher.read_for(0.5)
        assert not [f for f in watcher.frames if presence(mover, "parted")(f)]
    finally:
        refuse(second, None)
    retry = (first, second)[retry_on]
    ws = Socket(retry, conn_id)  # rebuilt from the record
    try:
        counted = before[retry.url]
        assert moves(retry) == {**counted, "rebuilt": counted["rebuilt"] + 1}
        for n, channel in enumerate(channels, 1):
            api(first).message({"channel": channel, "user": "poster", "message": {"n": n}})
            ws.wait(lambda f, n=n: f.get("message") == {"n": n})
        assert [(f["channel"], f["message"]["n"]) for f in ws.messages()] == [
            (channel, n) for n, channel in enumerate(channels, 1)
        ]
        assert record(prefix, conn_id) == {
            "owner": process_id(retry), "channels": channels, "granted": channels
        }
        for server in (first, second):
            assert connections(server, channels) == dict.fromkeys(channels, everyone)
        watcher.read_for(0.3)
        moved = [f for f in watcher.frames if f.get("type") == "presence" and f["user"] == mover]
        assert [f["message"]["action"] for f in moved] == ["joined"] * 3  # no part, no join
    finally:
        ws.close()
        watcher.close()


def test_a_connection_taken_over_is_recorded_with_all_its_channels(pair):
    (first, second), prefix = pair
    name = room()
    channels = [f"{name}-{n}" for n in range(4)]
    conn_id = api(first).connect(f"mover-{name}", channels)["conn_id"]
    ws = Socket(second, conn_id)  # handed over by the first
    try:
        assert ws.read_for(0.2)
        assert record(prefix, conn_id) == {
            "owner": process_id(second), "channels": channels, "granted": channels
        }
        for n, channel in enumerate(channels):
            api(first).message({"channel": channel, "user": "poster", "message": {"n": n}})
            ws.wait(lambda f, n=n: f.get("message") == {"n": n})
    finally:
        ws.close()
