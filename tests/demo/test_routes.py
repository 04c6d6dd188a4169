"""The demo's routes over loopback, without a browser: the JSON contract of
/demo/api/*, the frames that reach /ws, and the bounds that keep the demo from
being an open door to the server API (demo/backend.py)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

from channelstream.client import ChannelstreamClient
from demo.backend import CHANNEL_CONFIG, DEFAULT_CHANNELS, Limits
from tests.demo.conftest import start_server
from tests.support.api import ADMIN_SECRET, SECRET, api_client
from tests.support.server import RunningServer


def call(
    server: RunningServer, method: str, path: str, body: Any = None, **kwargs
) -> requests.Response:
    kwargs.setdefault("timeout", 15)
    if body is not None:
        kwargs["json"] = body
    return requests.request(method, f"{server.url}/demo/api/{path}", **kwargs)


def ok(response: requests.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def session(server: RunningServer, user: str, **extra: Any) -> dict[str, Any]:
    return ok(call(server, "POST", "session", {"username": user, **extra}))


def receive(ws: websocket.WebSocket, wanted: str) -> list[dict[str, Any]]:
    """Frames from ``ws`` up to and including the first of type ``wanted``."""
    frames: list[dict[str, Any]] = []
    while not any(f.get("type") == wanted for f in frames):
        frames.extend(json.loads(ws.recv()))
    return frames


# -- the page and its files ------------------------------------------------------------


def test_the_page_and_everything_it_loads_come_from_the_server(demo_server):
    page = demo_server.get("/demo")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert page.headers["Cache-Control"] == "no-store"
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert any(a.endswith("angular.js") for a in assets)
    assert any(a.endswith("socket.io.min.js") for a in assets)
    for asset in assets:
        if asset.startswith("data:"):
            continue
        assert asset.startswith("/demo/"), f"{asset} is not served by the app"
        assert demo_server.get(asset).status_code == 200, asset
    assert demo_server.get("/demo/").status_code == 200


def test_the_config_says_what_the_page_can_show(demo_server):
    config = ok(call(demo_server, "GET", "config"))
    assert config["chat"] == {
        "available": True,
        "reason": None,
        "default_channels": list(DEFAULT_CHANNELS),
        "statuses": ["online", "away", "busy"],
        "bot": "hubbot",
    }
    assert config["packets"]["channel"] == "packets"
    assert config["packets"]["socketio_path"] == "/socket.io"
    assert config["packets"]["namespace"] == "/stream"
    assert config["loom"] == {"available": True, "reason": None}
    # development.ini's demo feeds (what make demo-data sends to)
    assert [(f["channel"], f["door"], f["health"]) for f in config["frames"]] == [
        ("channel:detector", "zmq", ["zmq-source:detector"]),
        ("channel:g3", "g3", ["g3-source:1"]),
    ]
    assert config["stats"]["available"] is True


def test_the_demo_routes_stay_out_of_the_openapi_document(demo_server):
    paths = demo_server.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/demo")]


# -- chat --------------------------------------------------------------------------------


def test_sign_in_returns_a_connection_and_what_each_channel_shows(demo_server):
    user = name("alice")
    answer = session(demo_server, user)
    assert uuid.UUID(answer["conn_id"])
    assert answer["username"] == user
    assert answer["state"] == {"status": "online"}
    assert answer["statuses"] == ["online", "away", "busy"]
    assert sorted(answer["channels"]) == sorted(DEFAULT_CHANNELS)
    lobby = answer["channels"]["lobby"]
    assert set(lobby) == {"history", "users", "epoch", "last_offset"}
    assert {"user": user, "state": {"status": "online"}} in lobby["users"]
    info = api_client(demo_server).info(channels=["lobby"], include_history=False)
    settings = info["channels"]["lobby"]["settings"]
    assert {key: settings[key] for key in CHANNEL_CONFIG} == dict(CHANNEL_CONFIG)


def test_signing_in_again_with_the_conn_id_keeps_the_connection(demo_server):
    user = name("alice")
    first = session(demo_server, user)
    again = session(demo_server, user, conn_id=first["conn_id"], channels=["lobby"])
    assert again["conn_id"] == first["conn_id"]
    info = api_client(demo_server).info(channels=["lobby"], include_connections=True)
    assert info["channels"]["lobby"]["connections"][user] == [first["conn_id"]]
    other = call(
        demo_server, "POST", "session", {"username": name("bob"), "conn_id": first["conn_id"]}
    )
    assert other.status_code == 409
    assert other.json()["field"] == "conn_id"


def test_messages_edits_deletes_and_state_reach_the_websocket(demo_server):
    alice, bob = name("alice"), name("bob")
    a = session(demo_server, alice)
    b = session(demo_server, bob)
    ws = websocket.create_connection(
        demo_server.url.replace("http", "ws") + f"/ws?conn_id={b['conn_id']}", timeout=15
    )
    try:
        posted = ok(
            call(
                demo_server,
                "POST",
                "message",
                {"conn_id": a["conn_id"], "channel": "lobby", "text": "hello"},
            )
        )
        assert posted["user"] == alice and posted["message"] == {"text": "hello"}
        frame = receive(ws, "message")[-1]
        assert (frame["user"], frame["message"], frame["uuid"]) == (
            alice,
            {"text": "hello"},
            posted["uuid"],
        )
        assert isinstance(frame["offset"], int) and frame["epoch"]

        ok(
            call(
                demo_server,
                "PATCH",
                "message",
                {"conn_id": a["conn_id"], "uuid": posted["uuid"], "text": "hello, edited"},
            )
        )
        frame = receive(ws, "message:edit")[-1]
        assert frame["uuid"] == posted["uuid"] and frame["message"] == {"text": "hello, edited"}

        # bob may not touch alice's message
        refused = call(
            demo_server, "DELETE", "message", {"conn_id": b["conn_id"], "uuid": posted["uuid"]}
        )
        assert refused.status_code == 404 and refused.json()["field"] == "uuid"

        ok(
            call(
                demo_server, "DELETE", "message", {"conn_id": a["conn_id"], "uuid": posted["uuid"]}
            )
        )
        assert receive(ws, "message:delete")[-1]["uuid"] == posted["uuid"]

        answer = ok(
            call(demo_server, "POST", "status", {"conn_id": a["conn_id"], "status": "away"})
        )
        assert answer["state"]["status"] == "away"
        frame = receive(ws, "user_state_change")[-1]
        assert frame["user"] == alice and frame["message"]["state"] == {"status": "away"}
    finally:
        ws.close()


def test_a_private_message_reaches_only_its_two_users_also_in_history(demo_server):
    alice, bob, carol = name("alice"), name("bob"), name("carol")
    a = session(demo_server, alice)
    session(demo_server, bob)
    posted = ok(
        call(
            demo_server,
            "POST",
            "message",
            {"conn_id": a["conn_id"], "channel": "random", "text": "psst", "to": bob},
        )
    )
    assert sorted(posted["pm_users"]) == sorted([alice, bob])
    uuids = lambda answer: [m["uuid"] for m in answer["channels"]["random"]["history"]]  # noqa: E731
    assert posted["uuid"] in uuids(session(demo_server, bob, channels=["random"]))
    assert posted["uuid"] not in uuids(session(demo_server, carol, channels=["random"]))


def test_joining_shows_history_and_leaving_leaves(demo_server):
    alice, bob = name("alice"), name("bob")
    channel = name("news")
    a = session(demo_server, alice)
    b = session(demo_server, bob)
    joined = ok(
        call(demo_server, "POST", "subscribe", {"conn_id": a["conn_id"], "channel": channel})
    )
    assert joined["channel"] == channel and joined["view"]["history"] == []
    ok(
        call(
            demo_server,
            "POST",
            "message",
            {"conn_id": a["conn_id"], "channel": channel, "text": "one"},
        )
    )
    view = ok(
        call(demo_server, "POST", "subscribe", {"conn_id": b["conn_id"], "channel": channel})
    )["view"]
    assert [m["message"]["text"] for m in view["history"]] == ["one"]
    assert sorted(u["user"] for u in view["users"]) == sorted([alice, bob])
    left = ok(
        call(demo_server, "POST", "unsubscribe", {"conn_id": b["conn_id"], "channel": channel})
    )
    assert channel not in left["channels"]
    refused = call(
        demo_server, "POST", "message", {"conn_id": b["conn_id"], "channel": channel, "text": "x"}
    )
    assert refused.status_code == 409


def test_stats_are_counts_only(demo_server):
    session(demo_server, name("alice"))
    stats = ok(call(demo_server, "GET", "stats"))
    assert stats["available"] is True
    assert stats["admin"]["total_connections"] >= 1
    assert {"published", "delivered", "dropped"} <= set(stats["admin"]["hub"])
    assert stats["demo"]["connections"] >= 1
    assert "users" not in stats["admin"] and "channels" not in stats["admin"]


# -- not an open door --------------------------------------------------------------------


def test_users_and_channels_of_another_app_are_refused(demo_server):
    app_user, app_channel = name("app-user"), name("app-channel")
    api_client(demo_server).connect(app_user, [app_channel])
    for taken in (app_user, "hubbot"):
        refused = call(demo_server, "POST", "session", {"username": taken})
        assert refused.status_code == 409 and refused.json()["field"] == "username"
    refused = call(
        demo_server, "POST", "session", {"username": name("alice"), "channels": [app_channel]}
    )
    assert refused.status_code == 409 and refused.json()["field"] == "channel"
    a = session(demo_server, name("alice"))
    refused = call(
        demo_server, "POST", "subscribe", {"conn_id": a["conn_id"], "channel": app_channel}
    )
    assert refused.status_code == 409


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("POST", "session", {}, 400, "username"),
        ("POST", "session", {"username": "x" * 33}, 400, "username"),
        ("POST", "session", {"username": "ok", "channels": ["../etc"]}, 400, "channels"),
        ("POST", "session", {"username": "ok", "channels": "lobby"}, 400, "channels"),
        ("POST", "session", {"username": "ok", "conn_id": "nope"}, 400, "conn_id"),
        ("POST", "session", [], 400, "body"),
        (
            "POST",
            "message",
            {"conn_id": str(uuid.uuid4()), "channel": "lobby", "text": "x"},
            404,
            "conn_id",
        ),
        ("POST", "status", {"conn_id": str(uuid.uuid4()), "status": "away"}, 404, "conn_id"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(demo_server, method, path, body, status, field):
    response = call(demo_server, method, path, body)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field


def test_bad_text_status_and_transport_are_refused(demo_server):
    a = session(demo_server, name("alice"))
    conn = a["conn_id"]
    long_text = call(
        demo_server, "POST", "message", {"conn_id": conn, "channel": "lobby", "text": "x" * 2001}
    )
    assert long_text.status_code == 400 and long_text.json()["field"] == "text"
    status = call(demo_server, "POST", "status", {"conn_id": conn, "status": "asleep"})
    assert status.status_code == 400 and status.json()["field"] == "status"
    form = call(
        demo_server,
        "POST",
        "session",
        data="username=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 400 and form.json()["field"] == "Content-Type"
    foreign = call(
        demo_server, "POST", "session", {"username": "x"}, headers={"Origin": "http://evil.example"}
    )
    assert foreign.status_code == 403 and foreign.json()["field"] == "Origin"
    same = call(
        demo_server,
        "POST",
        "session",
        {"username": name("ok")},
        headers={"Origin": demo_server.url},
    )
    assert same.status_code == 200
    huge = call(demo_server, "POST", "session", {"username": "x", "pad": "y" * 20000})
    assert huge.status_code == 413


def test_the_demo_keeps_a_bounded_number_of_connections(demo_server):
    client = api_client(demo_server)
    before = client.admin_stats()["total_connections"]
    first = session(demo_server, name("first"), channels=["lobby"])
    for index in range(Limits.connections):
        session(demo_server, f"crowd-{index}", channels=["lobby"])
    # the oldest was disconnected on the server and forgotten by the demo
    gone = call(
        demo_server,
        "POST",
        "message",
        {"conn_id": first["conn_id"], "channel": "lobby", "text": "x"},
    )
    assert gone.status_code == 404
    assert client.admin_stats()["total_connections"] <= before + Limits.connections


# -- configurations ----------------------------------------------------------------------


def test_demo_disabled_serves_nothing(tmp_path: Path):
    with start_server(tmp_path, **{"demo.enabled": "false"}) as server:
        for path in (
            "/demo",
            "/demo/static/demo.css",
            "/demo/angular/angular.js",
            "/demo/api/config",
        ):
            assert server.get(path).status_code == 404, path
        assert call(server, "POST", "session", {"username": "x"}).status_code == 404


def test_without_a_secret_the_chat_is_refused(tmp_path: Path):
    with start_server(tmp_path, secret="", admin_secret="") as server:
        assert server.get("/demo").status_code == 200
        config = ok(call(server, "GET", "config"))
        assert config["chat"]["available"] is False
        assert config["stats"]["available"] is False
        refused = call(server, "POST", "session", {"username": "alice"})
        assert refused.status_code == 503
        assert "secret" in refused.json()["error"]
        stats = ok(call(server, "GET", "stats"))
        assert stats["available"] is False and "admin_secret" in stats["reason"]


def zmq_like(channel: str, frame: int) -> dict[str, Any]:
    """A chat message shaped as the ZMQ door publishes an mflow message."""
    header = {"htype": "array-1.0", "shape": [2, 3], "type": "uint8", "frame": frame}
    return {
        "channel": channel,
        "user": "zmq:det",
        "message": {"htype": "array-1.0", "header": header, "parts": [{"size": 6}]},
    }


def test_a_frame_channel_is_tapped_as_server_sent_events(tmp_path: Path):
    sources = json.dumps([{"address": "tcp://127.0.0.1:9", "channel": "det"}])
    with start_server(tmp_path, **{"zmq.sources": sources, "g3.sources": None}) as server:
        config = ok(call(server, "GET", "config"))
        assert config["frames"] == [
            {
                "channel": "channel:det",
                "title": "ZMQ det",
                "door": "zmq",
                "health": ["zmq-source:det"],
                "url": "/demo/api/frames/channel:det",
            }
        ]
        for other in ("frames/channel:lobby", "frames/det", "frames/packets"):
            assert call(server, "GET", other).status_code == 404, other
        client = ChannelstreamClient(server.url, SECRET, admin_secret=ADMIN_SECRET)
        client.channel_config({"det": {}})
        url = server.url + "/demo/api/frames/channel:det"
        with requests.get(url, stream=True, timeout=15) as tap:
            assert tap.headers["Content-Type"].startswith("text/event-stream")
            events = (line for line in tap.iter_lines() if line.startswith(b"data: "))
            assert json.loads(next(events)[6:]) == {"frames": [], "skipped": 0}
            client.message(zmq_like("det", 7))
            client.message({**zmq_like("det", 8), "pm_users": ["someone"]})  # never tapped
            client.message(zmq_like("det", 9))
            frames = []
            while len(frames) < 2:
                frames.extend(json.loads(next(events)[6:])["frames"])
        values = frames[0]["values"]
        assert values["message.htype"] == "array-1.0"
        assert values["message.header.shape"] == [2, 3]
        assert values["message.header.frame"] == 7
        assert "message.parts" not in values
        assert [f["values"]["message.header.frame"] for f in frames] == [7, 9]
        assert frames[1]["offset"] > frames[0]["offset"] and frames[0]["kind"] == "data"
