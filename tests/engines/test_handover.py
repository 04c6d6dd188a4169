"""hub.engine = redis: a transport that attaches on a process that does not
hold its connection takes the connection over (behind one port, /connect and
the transport land on different processes).

Three servers share one Redis (their own key prefix). A connection made by
``/connect`` on one is attached by ``/ws`` (and ``/listen``, ``/sse``,
socket.io) on another: its owner hands it over (its state, its queue's
positions) without parting it, so presence never flickers; a resume after
the move gets exactly what was missed; the owner SIGKILLed, the connection
is rebuilt from its Redis record; two transports racing on two processes:
exactly one keeps the connection.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import requests
import websocket

from tests.sio.clients import StreamClient
from tests.support.server import RunningServer
from tests.support.wait import wait_for

from .sockets import Socket
from .test_directory import PRESENCE, TTL, api, presence, room, running

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]


#: A connection waits 10 s for a transport (the tests move it meanwhile).
KEEP = {"gc_conns_after": "10"}


@pytest.fixture(scope="module")
def trio(tmp_path_factory) -> Iterator[list[RunningServer]]:
    with running(tmp_path_factory, "cs-move", 3, **KEEP) as servers:
        yield servers


def connect(server: RunningServer, name: str, channels: list[str]) -> str:
    """``/connect`` on ``server`` (no transport there); the conn_id."""
    configs = dict.fromkeys(channels, PRESENCE)
    return api(server).connect(name, channels, channel_configs=configs)["conn_id"]


def post(server: RunningServer, channel: str, **message) -> None:
    api(server).message({"channel": channel, "user": "poster", "message": message})


def connections(server: RunningServer, channel: str) -> dict:
    info = api(server).info(channels=[channel], include_connections=True)
    return info["channels"].get(channel, {}).get("connections", {})


def moves(server: RunningServer) -> dict:
    health = requests.get(server.url + "/healthz", timeout=10).json()
    door = health["doors"]["chat-redis"]
    return {key: door[key] for key in ("taken_over", "rebuilt", "handed_over")}


def test_ws_on_another_process_takes_the_connection_over_without_a_part(trio):
    first, second, third = trio
    name = room()
    watcher = Socket(third, connect(third, f"watcher-{name}", [name]))
    mover = f"mover-{name}"
    conn_id = connect(first, mover, [name])  # lives on the first
    watcher.wait(presence(mover, "joined"))
    post(third, name, n=1)  # queued on the first: no transport there yet
    before = moves(second)
    ws = Socket(second, conn_id)  # attached on the second: taken over
    try:
        ws.wait(lambda f: f.get("message") == {"n": 1})
        post(first, name, n=2)
        post(third, name, n=3)
        ws.wait(lambda f: f.get("message") == {"n": 3})
        assert [f["message"]["n"] for f in ws.messages()] == [1, 2, 3]
        for server in trio:  # present throughout, one connection, owned by the second now
            assert connections(server, name) == {
                mover: [conn_id], f"watcher-{name}": [watcher_id(watcher, third, name)]
            }
        assert moves(second)["taken_over"] == before["taken_over"] + 1
        api(first).subscribe(conn_id, [f"{name}-more"])  # calls reach the new owner
        post(third, f"{name}-more", n=4)
        ws.wait(lambda f: f.get("message") == {"n": 4})
        watcher.read_for(0.5)
        moved = [f for f in watcher.frames if f.get("type") == "presence" and f["user"] == mover]
        assert [f["message"]["action"] for f in moved] == ["joined"]  # no part, no new join
    finally:
        ws.close()
        watcher.close()


def watcher_id(watcher: Socket, server: RunningServer, channel: str) -> str:
    found = connections(server, channel)
    return next(ids[0] for user, ids in found.items() if user.startswith("watcher-"))


def test_listen_and_sse_on_another_process_take_the_connection_over(trio):
    first, second, third = trio
    name = room()
    conn_id = connect(first, f"poller-{name}", [name])
    post(first, name, n=1)
    polled = requests.get(second.url + "/listen", params={"conn_id": conn_id}, timeout=10)
    assert polled.status_code == 200, polled.text
    assert [f["message"] for f in polled.json()] == [{"n": 1}]
    post(first, name, n=2)  # the first no longer has it: the second queues it
    with requests.get(
        third.url + "/sse", params={"conn_id": conn_id}, stream=True, timeout=10
    ) as stream:
        assert stream.status_code == 200
        data = []
        for line in stream.iter_lines():
            if line.startswith(b"data: ") and line != b"data: []":
                data.extend(json.loads(line[6:]))
                break
    assert [f["message"] for f in data] == [{"n": 2}]
    unknown = requests.get(second.url + "/listen", params={"conn_id": "nope"}, timeout=10)
    assert unknown.status_code == 404 and unknown.json()["field"] == "conn_id"


def test_a_resume_after_moving_gets_no_gap_and_no_duplicate(trio):
    first, second, third = trio
    name = room()
    conn_id = connect(first, f"resumer-{name}", [name])
    total = 80
    done = threading.Event()

    def publish() -> None:
        for n in range(1, total + 1):
            post(third, name, n=n)
            time.sleep(0.01)
        done.set()

    ws = Socket(first, conn_id, resume={})
    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    received: list[dict] = []
    try:
        for target in (second, first, third, second):  # moving while messages come
            ws.wait(lambda f: f.get("type") == "message" and f["message"]["n"] > len(received))
            ws.read_for(0.1)
            received.extend(f for f in ws.messages() if f not in received)
            ws.close()
            last = received[-1]
            ws = Socket(target, conn_id, resume={name: [last["epoch"], last["offset"]]})
        done.wait(30)
        ws.wait(lambda f: f.get("message") == {"n": total}, timeout=30)
        received.extend(ws.messages())
    finally:
        ws.close()
        publisher.join(30)
    assert [f["message"]["n"] for f in received] == list(range(1, total + 1))  # no gap, no dup
    offsets = [f["offset"] for f in received]
    assert offsets == sorted(set(offsets))


def race(servers: tuple[RunningServer, ...], conn_id: str) -> list[Socket | int]:
    """``/ws`` of ``conn_id`` on each of ``servers`` at once: the sockets, or the
    status of those refused before the upgrade."""
    sockets: list[Socket | int] = [0] * len(servers)
    gate = threading.Barrier(len(servers))

    def attach(index: int, server: RunningServer) -> None:
        gate.wait()
        try:
            sockets[index] = Socket(server, conn_id)
        except websocket.WebSocketBadStatusException as err:
            sockets[index] = err.status_code

    threads = [
        threading.Thread(target=attach, args=(i, s), daemon=True) for i, s in enumerate(servers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    return sockets


@pytest.mark.parametrize("pair", [(0, 1), (1, 2)], ids=["owner-and-other", "two-others"])
def test_two_transports_racing_on_two_processes_one_keeps_the_connection(trio, pair):
    name = room()
    conn_id = connect(trio[0], f"racer-{name}", [name])  # the first owns it
    sockets = race(tuple(trio[i] for i in pair), conn_id)
    opened = [s for s in sockets if isinstance(s, Socket)]
    refused = [s for s in sockets if not isinstance(s, Socket)]
    assert refused in ([], [409]), sockets  # 409: lost the race, said before the upgrade
    alive = [s for s in opened if s.read_for(1.0)]
    assert len(alive) == 1, [(s.close_code, s.frames) for s in opened]
    assert all(s.close_code == 4000 for s in opened if s not in alive)  # moved away
    post(trio[2], name, n=1)
    alive[0].wait(lambda f: f.get("message") == {"n": 1})
    assert all(connections(server, name) == {f"racer-{name}": [conn_id]} for server in trio)
    for socket in opened:
        socket.close()


def test_socketio_with_a_conn_id_of_another_process_takes_it_over(trio):
    first, second, third = trio
    name = room()
    conn_id = connect(first, f"sio-{name}", [name])
    client = StreamClient(second.url, auth={"conn_id": conn_id})
    try:
        hello = client.next("user_connect")[1]
        assert hello["conn_id"] == conn_id and hello["channels"] == [name]
        post(third, name, n=1)
        assert [f["message"] for f in client.frames(1)] == [{"n": 1}]
        assert connections(first, name) == {f"sio-{name}": [conn_id]}
    finally:
        client.close()


def test_the_owner_killed_the_connection_is_rebuilt_from_its_record(tmp_path_factory):
    with running(tmp_path_factory, "cs-move-kill", 2, **KEEP) as (doomed, survivor):
        name = room()
        watcher = Socket(survivor, connect(survivor, f"watcher-{name}", [name]))
        orphan = f"orphan-{name}"
        conn_id = connect(doomed, orphan, [name])
        late_id = connect(doomed, f"late-{name}", [name])
        watcher.wait(presence(orphan, "joined"))
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(10)
        killed = time.monotonic()
        ws = Socket(survivor, conn_id, resume={})  # rebuilt from the record (user, channels)
        attached_after = time.monotonic() - killed
        post(survivor, name, n=1)
        ws.wait(lambda f: f.get("message") == {"n": 1})
        assert moves(survivor)["rebuilt"] >= 1
        # The late one's record expires with its dead process: unknown, as ever.
        wait_for(
            lambda: connections(survivor, name).get(f"late-{name}") is None,
            timeout=TTL * 3, what="the dead process's other connection gone",
        )
        late = Socket(survivor, late_id)
        assert not late.read_for(2.0) and late.close_code == 4404
        found = connections(survivor, name)
        assert found[orphan] == [conn_id]  # present throughout, now on the survivor
        watcher.read_for(0.5)
        parted = [f["user"] for f in watcher.frames if f.get("type") == "presence"
                  and f["message"]["action"] == "parted"]
        assert f"late-{name}" in parted
        if attached_after < TTL / 2:  # well before its presence could expire: never parted
            assert orphan not in parted
        ws.close()
        watcher.close()


def test_an_owner_that_does_not_answer_gets_a_504_then_the_connection_moves(trio):
    first, second, third = trio
    name = room()
    conn_id = connect(first, f"patient-{name}", [name])
    first.process.send_signal(signal.SIGSTOP)  # hung: the handover is not answered
    try:
        began = time.monotonic()
        with pytest.raises(websocket.WebSocketBadStatusException) as hung:
            Socket(second, conn_id)
        assert hung.value.status_code == 504 and time.monotonic() - began < 5  # bounded
        body = json.loads(hung.value.resp_body)
        assert body["code"] == "owner_timeout" and conn_id in body["error"]
    finally:
        first.process.send_signal(signal.SIGCONT)
    # The first hands it over late, to a taker that gave up: the second rebuilds it
    # from its record (or is handed it, if the first was quicker this time).
    ws = wait_for_socket(second, conn_id)
    try:
        post(third, name, n=1)
        ws.wait(lambda f: f.get("message") == {"n": 1})
        assert all(connections(s, name) == {f"patient-{name}": [conn_id]} for s in trio)
    finally:
        ws.close()


def wait_for_socket(server: RunningServer, conn_id: str) -> Socket:
    found: list[Socket] = []

    def attached() -> bool:
        try:
            found.append(Socket(server, conn_id))
        except websocket.WebSocketBadStatusException:
            return False
        return found[-1].read_for(0.2)

    wait_for(attached, timeout=10, what=f"a websocket of {conn_id}")
    return found[-1]
