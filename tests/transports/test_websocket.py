"""The websocket transport's protocol handling over real sockets: handshake, ping, close."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
import uuid

import pytest
import requests
import websocket

from tests.support.api import API_APP, api_client
from tests.support.server import REPO, RunningServer
from tests.support.wait import wait_for
from tests.transports.test_transports import messages, name, receive_frames, ws_url

pytestmark = pytest.mark.timeout(60)


def raw_upgrade(server, path: str, headers: dict[str, str]) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
        assert time.monotonic() < deadline, f"still open after {timeout} s: {data[:300]!r}"


def read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(1)
    return data


def upgrade_headers(key: str | None = None) -> dict[str, str]:
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": key or base64.b64encode(os.urandom(16)).decode(),
    }


def test_pings_are_answered_with_the_same_payload(api_server, client):
    conn_id = client.connect("ann", channels=[name("room")])["conn_id"]
    ws = websocket.create_connection(ws_url(api_server, conn_id), timeout=10)
    try:
        ws.ping(b"are you there")
        deadline = time.monotonic() + 5
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_PONG:
                assert data == b"are you there"
                break
            assert time.monotonic() < deadline
    finally:
        ws.close()


def test_a_client_close_is_echoed_and_the_connection_ends_at_once(api_server, client):
    conn_id = client.connect("ann", channels=[name("room")])["conn_id"]
    ws = websocket.create_connection(ws_url(api_server, conn_id), timeout=10)
    ws.send_close(websocket.STATUS_GOING_AWAY, b"bye")
    started = time.monotonic()
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
    assert struct.unpack("!H", data[:2]) == (1001,)
    ws.sock.settimeout(5)
    assert ws.sock.recv(10) == b""  # the server closed its side without waiting it out
    assert time.monotonic() - started < 1.5
    ws.sock.close()


def test_text_sent_by_the_client_is_ignored_and_the_connection_goes_on(api_server, client):
    room = name("room")
    conn_id = client.connect("ann", channels=[room])["conn_id"]
    ws = websocket.create_connection(ws_url(api_server, conn_id), timeout=10)
    try:
        ws.send("hello server" * 1000)
        ws.send_binary(b"\x00" * 70000)
        client.message([{"channel": room, "user": "bob", "message": {"n": 1}}])
        got = receive_frames(ws, lambda got: len(messages(got)) >= 1)
        assert messages(got)[0]["message"] == {"n": 1}
    finally:
        ws.close()


def test_an_unmasked_client_frame_closes_with_a_protocol_error(api_server, client):
    conn_id = client.connect("ann", channels=[name("room")])["conn_id"]
    sock = raw_upgrade(api_server, f"/ws?conn_id={conn_id}", upgrade_headers())
    assert read_head(sock).startswith(b"HTTP/1.1 101")
    sock.sendall(b"\x81\x02hi")  # a client frame without a mask
    frames = read_until_closed(sock)
    close = frames[frames.index(b"\x88") :]
    assert struct.unpack("!H", close[2:4]) == (1002,)


def test_an_oversized_client_message_closes_with_1009(api_server, client):
    conn_id = client.connect("ann", channels=[name("room")])["conn_id"]
    ws = websocket.create_connection(ws_url(api_server, conn_id), timeout=10)
    try:
        ws.send_binary(b"x" * (2 << 20))
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
        assert struct.unpack("!H", data[:2]) == (1009,)
    finally:
        ws.close()


@pytest.mark.parametrize(
    "drop, field",
    [("Sec-WebSocket-Key", "Sec-WebSocket-Key"), ("Sec-WebSocket-Version", "Sec-WebSocket-Key")],
)
def test_a_bad_handshake_gets_a_json_400(api_server, drop, field):
    headers = upgrade_headers()
    del headers[drop]
    response = requests.get(api_server.url + f"/ws?conn_id={uuid.uuid4()}", headers=headers)
    assert response.status_code == 400
    error = response.json()
    assert error["field"] == field and "Sec-WebSocket" in error["error"]


def test_a_plain_get_of_ws_gets_a_json_400(api_server):
    response = requests.get(api_server.url + f"/ws?conn_id={uuid.uuid4()}", timeout=10)
    assert response.status_code == 400
    assert "websocket upgrade" in response.json()["error"]


def test_a_bad_resume_closes_with_1008(api_server, client):
    conn_id = client.connect("ann", channels=[name("room")])["conn_id"]
    ws = websocket.create_connection(ws_url(api_server, conn_id) + "&resume=notjson", timeout=10)
    opcode, data = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert struct.unpack("!H", data[:2]) == (1008,) and b"resume" in data
    ws.close()


def test_a_client_that_never_reads_is_closed_past_its_hard_limit(tmp_path):
    app = dict(API_APP, **{"hub.outbox_size": "10", "hub.outbox_hard_limit": "20"})
    with RunningServer(REPO / "development.ini", tmp_path, app=app) as server:
        api = api_client(server)
        room = name("room")
        stalled_id = api.connect("stalled", channels=[room])["conn_id"]
        stalled = websocket.create_connection(ws_url(server, stalled_id), timeout=10)
        stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read
        healthy_id = api.connect("healthy", channels=[room])["conn_id"]
        healthy = websocket.create_connection(ws_url(server, healthy_id), timeout=10)
        try:
            payload = "x" * 100000  # 20 MB in all: more than the kernel buffers hold
            for n in range(200):
                api.message([{"channel": room, "user": "x", "message": {"n": n, "p": payload}}])
                got = receive_frames(healthy, lambda got: len(messages(got)) >= 1)
                assert [f["message"]["n"] for f in messages(got)] == [n]
            wait_for(
                lambda: api.info(channels=[room])["channels"][room]["total_connections"] == 1,
                timeout=10,
                what="the stalled connection to be closed",
            )
        finally:
            healthy.close()
            stalled.close()
