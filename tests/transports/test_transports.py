"""Client transports over real sockets: websocket, long-poll, SSE, and resume."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import pytest
import requests
import websocket

pytestmark = pytest.mark.timeout(90)


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ws_url(server, conn_id: str, resume: dict | None = None) -> str:
    url = server.url.replace("http://", "ws://") + f"/ws?conn_id={conn_id}"
    if resume is not None:
        url += "&resume=" + requests.utils.quote(json.dumps(resume))
    return url


def receive_frames(ws, until, timeout: float = 10.0) -> list[dict]:
    """Read JSON-array frames until ``until(frames)`` holds; heartbeats skipped."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while not until(got):
        ws.settimeout(max(0.05, deadline - time.monotonic()))
        got.extend(json.loads(ws.recv()))
        assert time.monotonic() < deadline, f"gave up waiting; got {got}"
    return got


def messages(frames):
    return [f for f in frames if f.get("type") == "message"]


def test_websocket_receives_messages_as_json_arrays_and_heartbeats(api_server, client):
    room = name("room")
    conn_id = client.connect("ann", channels=[room])["conn_id"]
    ws = websocket.create_connection(ws_url(api_server, conn_id), timeout=10)
    try:
        client.message([{"channel": room, "user": "bob", "message": {"text": "hi"}}])
        (frame,) = receive_frames(ws, lambda got: len(got) >= 1)
        assert frame["type"] == "message" and frame["message"] == {"text": "hi"}
        assert frame["channel"] == room and frame["catchup"] is False
        assert frame["offset"] == 1 and isinstance(frame["epoch"], str)
        ws.settimeout(3)
        assert json.loads(ws.recv()) == []  # heartbeat (client_heartbeat = 0.5 s)
    finally:
        ws.close()


def test_websocket_for_an_unknown_connection_is_closed_with_4404(api_server):
    ws = websocket.create_connection(ws_url(api_server, str(uuid.uuid4())), timeout=10)
    opcode, data = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(data[:2], "big") == 4404
    ws.close()


def test_messages_sent_while_no_transport_is_attached_wait_in_the_outbox(api_server, client):
    room = name("room")
    conn_id = client.connect("ann", channels=[room])["conn_id"]
    client.message([{"channel": room, "user": "x", "message": {"n": n}} for n in range(3)])
    ws = websocket.create_connection(ws_url(api_server, conn_id), timeout=10)
    try:
        got = receive_frames(ws, lambda got: len(messages(got)) >= 3)
        assert [f["message"]["n"] for f in messages(got)] == [0, 1, 2]
    finally:
        ws.close()


def test_a_newer_websocket_replaces_the_older_one(api_server, client):
    room = name("room")
    conn_id = client.connect("ann", channels=[room])["conn_id"]
    first = websocket.create_connection(ws_url(api_server, conn_id), timeout=10)
    second = websocket.create_connection(ws_url(api_server, conn_id), timeout=10)
    try:
        deadline = time.monotonic() + 5
        while True:  # the first one is closed with 4000
            opcode, data = first.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                assert int.from_bytes(data[:2], "big") == 4000
                break
            assert time.monotonic() < deadline
        client.message([{"channel": room, "user": "x", "message": {"to": "second"}}])
        got = receive_frames(second, lambda got: len(messages(got)) >= 1)
        assert messages(got)[0]["message"] == {"to": "second"}
    finally:
        first.close()
        second.close()


def test_presence_over_websockets(api_server, client):
    room = name("room")
    client.channel_config(
        {room: {"notify_presence": True, "broadcast_presence_with_user_lists": True}}
    )
    ann = client.connect("ann", channels=[room])["conn_id"]
    ws = websocket.create_connection(ws_url(api_server, ann), timeout=10)
    try:
        bob = client.connect("bob", channels=[room])["conn_id"]
        got = receive_frames(ws, lambda got: any(f.get("type") == "presence" for f in got))
        presence = next(f for f in got if f.get("type") == "presence")
        assert presence["user"] == "bob" and presence["message"] == {"action": "joined"}
        assert [u["user"] for u in presence["users"]] == ["ann", "bob"]
        client.disconnect(bob)
        got = receive_frames(
            ws, lambda got: any(f.get("message") == {"action": "parted"} for f in got)
        )
    finally:
        ws.close()


def test_long_poll_returns_queued_frames_and_supports_jsonp(api_server, client):
    room = name("room")
    conn_id = client.connect("ann", channels=[room])["conn_id"]
    client.message([{"channel": room, "user": "x", "message": {"n": 1}}])
    response = requests.get(api_server.url + "/listen", params={"conn_id": conn_id}, timeout=10)
    assert response.headers["Content-Type"].startswith("application/json")
    (frame,) = response.json()
    assert frame["message"] == {"n": 1}
    started = time.monotonic()
    empty = requests.get(api_server.url + "/listen", params={"conn_id": conn_id}, timeout=10)
    assert empty.json() == [] and time.monotonic() - started >= 0.5  # waited listen_timeout
    client.message([{"channel": room, "user": "x", "message": {"n": 2}}])
    jsonp = requests.get(
        api_server.url + "/listen", params={"conn_id": conn_id, "callback": "cb.got"}, timeout=10
    )
    assert jsonp.text.startswith("cb.got(") and jsonp.text.endswith(");")
    assert json.loads(jsonp.text[len("cb.got(") : -2])[0]["message"] == {"n": 2}


def test_long_poll_refuses_bad_input(api_server):
    unknown = requests.get(api_server.url + "/listen", params={"conn_id": "nope"}, timeout=10)
    assert unknown.status_code == 404 and unknown.json()["field"] == "conn_id"
    bad = requests.get(
        api_server.url + "/listen", params={"conn_id": "x", "callback": "alert(1)"}, timeout=10
    )
    assert bad.status_code == 400 and bad.json()["field"] == "callback"
    bad_resume = requests.get(
        api_server.url + "/listen", params={"conn_id": "x", "resume": "[1]"}, timeout=10
    )
    assert bad_resume.status_code == 400 and bad_resume.json()["field"] == "resume"


def sse_events(response, count: int, timeout: float = 10.0) -> list[tuple[str | None, list]]:
    """Read ``count`` data events (id, frames), skipping heartbeats."""
    events: list[tuple[str | None, list]] = []
    event_id = None
    deadline = time.monotonic() + timeout
    for line in response.iter_lines(decode_unicode=True):
        assert time.monotonic() < deadline
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            frames = json.loads(line[6:])
            if frames:
                events.append((event_id, frames))
                if len(events) >= count:
                    return events
            event_id = None
    return events


def test_sse_streams_batches_and_resumes_with_last_event_id(api_server, client):
    room = name("room")
    conn_id = client.connect("ann", channels=[room])["conn_id"]
    url = api_server.url + "/sse"
    with requests.get(url, params={"conn_id": conn_id}, stream=True, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        client.message([{"channel": room, "user": "x", "message": {"n": 1}}])
        ((last_id, frames),) = sse_events(response, 1)
        assert frames[0]["message"] == {"n": 1}
    client.message([{"channel": room, "user": "x", "message": {"n": n}} for n in (2, 3)])
    headers = {"Last-Event-ID": last_id}
    with requests.get(
        url, params={"conn_id": conn_id}, headers=headers, stream=True, timeout=10
    ) as response:
        events = sse_events(response, 1)
        got = [f["message"]["n"] for _, frames in events for f in frames]
        assert got == [2, 3]


def test_resume_after_forced_disconnects_loses_and_repeats_nothing(api_server, client):
    """100 reconnects while a publisher posts: every message exactly once, in order."""
    room = name("room")
    conn_id = client.connect("ann", channels=[room])["conn_id"]
    total = 600
    stop = threading.Event()

    def publish():
        for n in range(total):
            client.message([{"channel": room, "user": "x", "message": {"n": n}}])
            time.sleep(0.005)  # spread over many reconnects
        stop.set()

    publisher = threading.Thread(target=publish)
    publisher.start()
    received: list[int] = []
    position: dict = {}
    reconnects = 0
    try:
        while len(received) < total or reconnects < 100:
            ws = websocket.create_connection(
                ws_url(api_server, conn_id, position or None), timeout=10
            )
            reconnects += 1
            try:
                # read one frame, then drop the socket without a goodbye
                for _ in range(1):
                    ws.settimeout(5)
                    try:
                        batch = json.loads(ws.recv())
                    except websocket.WebSocketTimeoutException:
                        break  # everything was received; reconnect anyway
                    for frame in batch:
                        assert frame.get("type") != "resume_failed", frame
                        if frame.get("type") == "message":
                            received.append(frame["message"]["n"])
                            position = {room: [frame["epoch"], frame["offset"]]}
                    if len(received) >= total:
                        break
            finally:
                ws.sock.close()  # abrupt: frames in flight are lost on purpose
            if reconnects > 1000:
                break
    finally:
        stop.wait(30)
        publisher.join(30)
    assert reconnects >= 100
    assert received == list(range(total)), (len(received), reconnects)


def test_a_stalled_websocket_does_not_delay_the_others(api_server, client):
    room = name("room")
    stalled_id = client.connect("stalled", channels=[room])["conn_id"]
    stalled = websocket.create_connection(ws_url(api_server, stalled_id), timeout=10)
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read
    healthy = []
    for i in range(5):
        conn_id = client.connect(f"healthy{i}", channels=[room])["conn_id"]
        healthy.append(websocket.create_connection(ws_url(api_server, conn_id), timeout=10))
    try:
        payload = "x" * 2000
        for n in range(300):
            client.message([{"channel": room, "user": "x", "message": {"n": n, "p": payload}}])
        for ws in healthy:
            got = receive_frames(ws, lambda got: len(messages(got)) >= 300, timeout=30)
            assert [f["message"]["n"] for f in messages(got)] == list(range(300))
    finally:
        for ws in healthy:
            ws.close()
        stalled.close()


def test_long_poll_resumes_from_an_offset(api_server, client):
    room = name("room")
    conn_id = client.connect("ann", channels=[room])["conn_id"]
    client.message([{"channel": room, "user": "x", "message": {"n": n}} for n in range(3)])
    url = api_server.url + "/listen"
    first = requests.get(url, params={"conn_id": conn_id}, timeout=10).json()
    assert [f["message"]["n"] for f in first] == [0, 1, 2]
    # the answer was lost on the way: ask again from the first frame
    resume = json.dumps({room: [first[0]["epoch"], first[0]["offset"]]})
    again = requests.get(url, params={"conn_id": conn_id, "resume": resume}, timeout=10).json()
    assert [f["message"]["n"] for f in again] == [1, 2]
    assert all(f["catchup"] for f in again)
    stale = json.dumps({room: ["another-epoch", 1]})
    failed = requests.get(url, params={"conn_id": conn_id, "resume": stale}, timeout=10).json()
    assert failed[0]["type"] == "resume_failed" and failed[0]["channel"] == room
    assert "epoch" in failed[0]["reason"]
