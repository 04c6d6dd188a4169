"""Malformed socket.io packets: the client's session ends at once, the server logs one line.

A deeply nested ``auth`` (or event) once raised RecursionError inside
python-socketio: the connect hung and every packet logged a traceback.
"""

from __future__ import annotations

import pytest
import websocket

from tests.sio.conftest import door_status
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(60)

DEEP = "[" * 1000 + "]" * 1000


def engineio(server) -> websocket.WebSocket:
    ws = websocket.create_connection(
        server.url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket",
        timeout=10,
    )
    assert ws.recv().startswith("0{")  # engine.io OPEN
    return ws


def closed_soon(ws: websocket.WebSocket) -> bool:
    """Read until the server ends the session (engine.io's CLOSE packet ``1``, or the
    websocket's close), within the socket's timeout."""
    try:
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE or data == b"1":
                return True
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return True


@pytest.mark.parametrize(
    "packet",
    [
        '40/stream,{"conn_id": "x", "resume": ' + DEEP + "}",
        "40/stream," + DEEP,
        "40/stream,{not json",
        '40/stream,{"a": NaN}',
    ],
    ids=["deep-resume", "deep-auth", "syntax", "nan"],
)
def test_a_malformed_connect_ends_the_session_at_once(sio_server, packet):
    before = door_status(sio_server)["bad_packets"]
    ws = engineio(sio_server)
    try:
        ws.send(packet)
        assert closed_soon(ws)
    finally:
        ws.close()
    wait_for(lambda: door_status(sio_server)["bad_packets"] == before + 1, timeout=10)


def test_a_malformed_event_after_connect_ends_only_that_session(sio_server, stream):
    healthy = stream()
    ws = engineio(sio_server)
    try:
        ws.send("40/stream,{}")
        assert ws.recv().startswith("40/stream,")  # connected (a GATD-only client)
        ws.send('42/stream,["query", ' + DEEP + "]")
        assert closed_soon(ws)
    finally:
        ws.close()
    assert healthy.call("query", {"profile_id": "still-here"}) == {"ok": True}


def test_a_flood_of_malformed_packets_logs_a_line_not_a_traceback_each(sio_server):
    before = door_status(sio_server)["bad_packets"]
    log_before = sio_server.stderr
    for _ in range(5):
        ws = engineio(sio_server)
        try:
            ws.send("40/stream," + DEEP)
            assert closed_soon(ws)
        finally:
            ws.close()
    wait_for(lambda: door_status(sio_server)["bad_packets"] == before + 5, timeout=10)
    logged = sio_server.stderr[len(log_before) :]
    assert logged.count("malformed packet") <= 1
    assert "Traceback" not in logged
