"""socket.io over the server's own websockets (channelstream/sio/websocket.py): frames
straight from the hub when that keeps the order, engine.io's queue otherwise."""

from __future__ import annotations

import json
import socket
import struct
import uuid
from collections.abc import Iterator

import pytest
import requests
import websocket

from tests.sio.clients import StreamClient, stalled_client
from tests.sio.conftest import door_status
from tests.support.api import api_client
from tests.support.packets import run_packets_server
from tests.support.server import RunningServer
from tests.support.wait import wait_for

BIG = "x" * 200_000  # a few of these fill the socket buffers of a client that does not read


@pytest.fixture(scope="module")
def ws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from run_packets_server(
        tmp_path_factory.mktemp("sio-ws"), **{"socketio.max_payload": "2000"}
    )


def raw_client(server: RunningServer) -> websocket.WebSocket:
    """A raw engine.io websocket, past the OPEN packet."""
    ws = websocket.create_connection(
        server.url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket", timeout=10
    )
    assert ws.recv().startswith("0{")
    return ws


def events(ws: websocket.WebSocket, done) -> list[list]:
    """socket.io packets of ``/stream`` as ``[ack id or None, payload]`` until ``done(them)``.

    engine.io pings are answered.
    """
    got: list[list] = []
    while not done(got):
        text = ws.recv()
        if text == "2":
            ws.send("3")
            continue
        assert text.startswith("4"), text
        body = text.partition(",")[2]
        digits = len(body) - len(body.lstrip("0123456789"))  # an ack's id
        got.append([body[:digits] or None, json.loads(body[digits:])])
    return got


def close_code(ws: websocket.WebSocket) -> int:
    """The code of the server's close frame (data frames before it are skipped)."""
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", data[:2])[0]


def test_frames_go_straight_to_websockets_and_keep_their_order_with_engineio_packets(ws_server):
    """A client that stops reading gets an ack while its socket is blocked: the ack
    waits in the socket after the frames handed over before it, the messages published
    meanwhile wait in the outbox and follow it once the client reads again. Everything
    goes straight to the socket (no engine.io queue on a websocket). It gets every
    message once, in order, the ack where it was handed over; a client that reads all
    along gets them all too."""
    api = api_client(ws_server)
    channel = f"room-{uuid.uuid4().hex[:8]}"
    slow_id = api.connect("olga", [channel])["conn_id"]
    fast_id = api.connect("pia", [channel])["conn_id"]
    fast = StreamClient(ws_server.url, auth={"conn_id": fast_id})
    slow = stalled_client(ws_server.url, json.dumps({"conn_id": slow_id}))
    try:
        fast.next("user_connect")
        before = door_status(ws_server)
        for n in range(40):
            api.message([{"channel": channel, "user": "bot", "message": {"n": n, "pad": BIG}}])
        wait_for(lambda: door_status(ws_server)["websockets_blocked"] == 1)
        slow.send('42/stream,7["join",["side"]]')  # the ack waits behind the blocked frames
        wait_for(lambda: api.info(channels=["side"])["channels"].get("side"))
        for n in range(40, 60):
            api.message([{"channel": channel, "user": "bot", "message": {"n": n, "pad": BIG}}])
        assert [f["message"]["n"] for f in fast.frames(60, timeout=30)] == list(range(60))

        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        got = events(slow, lambda g: sum(len(e[1][1]) for e in g if e[1][0] == "message") >= 60)
        frames = [f for e in got if e[1][0] == "message" for f in e[1][1]]
        assert [f["message"]["n"] for f in frames] == list(range(60))
        assert [f["offset"] for f in frames] == list(range(1, 61))
        assert got[0][1][0] == "user_connect"
        acks = [i for i, e in enumerate(got) if e[0] == "7"]
        assert len(acks) == 1 and got[acks[0]][1] == [["side"]]
        before_ack = [f["message"]["n"] for e in got[: acks[0]] if e[1][0] == "message"
                      for f in e[1][1]]
        assert max(before_ack) < 40  # those posted after the ack follow it
        after = door_status(ws_server)
        assert after["direct_writes"] > before["direct_writes"]
        assert after["queued_writes"] == before["queued_writes"]
        assert after["websockets_blocked"] == 0
    finally:
        slow.close()
        fast.close()


def test_gatd_packets_go_straight_to_the_websocket(ws_server):
    from tests.support.packets import new_run, post_packets

    run = new_run()
    client = StreamClient(ws_server.url)
    try:
        before = door_status(ws_server)["direct_writes"]
        assert client.call("query", {"run": run}) == {"ok": True}
        for n in range(5):
            post_packets(ws_server, {"run": run, "n": n}).raise_for_status()
        assert [p["n"] for p in client.data(5)] == list(range(5))
        assert door_status(ws_server)["direct_writes"] > before
    finally:
        client.close()


def test_a_message_over_max_payload_closes_the_websocket_with_1009(ws_server):
    ws = raw_client(ws_server)
    try:
        ws.send("40/stream,{}")
        assert ws.recv().startswith("40/stream,")
        ws.send('42/stream,3["query",{"a":"' + "y" * 1900 + '"}]')  # under the limit: served
        assert events(ws, lambda g: g)[0] == ["3", [{"ok": True}]]
        ws.send('42/stream,["query",{"a":"' + "y" * 3000 + '"}]')
        assert close_code(ws) == 1009
    finally:
        ws.close()
    wait_for(lambda: door_status(ws_server)["clients"] == 0)


def test_a_text_message_that_is_not_utf8_closes_with_1007(ws_server):
    ws = raw_client(ws_server)
    try:
        ws.send(b"4\xff\xfe", opcode=websocket.ABNF.OPCODE_TEXT)
        assert close_code(ws) == 1007
    finally:
        ws.close()


def upgrade_headers(version: str = "13", key: str = "dGhlIHNhbXBsZSBub25jZQ==") -> dict:
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": version,
        "Sec-WebSocket-Key": key,
    }


def test_an_upgrade_the_server_cannot_take_gets_a_400_with_the_reason(ws_server):
    response = requests.get(
        f"{ws_server.url}/socket.io/?EIO=4&transport=websocket",
        headers=upgrade_headers(version="8"),
        timeout=10,
    )
    assert response.status_code == 400
    assert "Sec-WebSocket-Version" in response.text
    bad_sid = requests.get(
        f"{ws_server.url}/socket.io/?EIO=4&transport=websocket&sid=nope",
        headers=upgrade_headers(),
        timeout=10,
    )
    assert bad_sid.status_code == 400  # engine.io refused it: no takeover, no 101


def test_a_polling_session_outlives_an_upgrade_the_server_cannot_take(ws_server):
    base = f"{ws_server.url}/socket.io/?EIO=4&transport=polling"
    with requests.Session() as http:
        opened = http.get(base, timeout=10)
        sid = json.loads(opened.text[1:])["sid"]
        upgrade = http.get(
            f"{ws_server.url}/socket.io/?EIO=4&transport=websocket&sid={sid}",
            headers=upgrade_headers(key="short"),
            timeout=10,
        )
        assert upgrade.status_code == 400 and "Sec-WebSocket-Key" in upgrade.text
        assert http.post(f"{base}&sid={sid}", data="40/stream,{}", timeout=10).text == "OK"
        assert http.get(f"{base}&sid={sid}", timeout=10).text.startswith("40/stream,{")
