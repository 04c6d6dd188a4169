"""production.ini's gunicorn with several gevent workers on the Redis engine.

- websocket clients spread over 3 workers get a channel's messages, posted
  concurrently on another process, in one order;
- a worker SIGKILLed is replaced, and its clients resume on another worker
  by offsets: no gap, no duplicate, while messages keep coming;
- a door that one process must run (``g3.listen``) runs in one worker, the
  others hold it back (``standby``, /healthz ``ok``), and another worker
  takes it over when that one dies;
- loom: one worker owns the folder and takes writes (the others answer 503
  naming it), every worker serves reads.

Each ``/ws`` client here makes its connection (``/connect``) and opens its
websocket over separate TCP connections, so they land on any workers: the
worker that takes the websocket takes the connection over from the one that
made it (README, Scale out). Which worker holds it is read from its record in
Redis.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis
import requests
import websocket

from channelstream.client import ChannelstreamClient
from channelstream.security.signing import SIGNATURE_HEADER, sign
from tests.engines.test_redis import Listener, require_redis
from tests.support.api import API_APP, SECRET
from tests.support.server import RunningServer, free_port
from tests.support.wait import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

GUNICORN_SECRET = "s3cret"
ADMIN = ("ops", "adm1n")
ENV = {"CHANNELSTREAM_SECRET": GUNICORN_SECRET, "CHANNELSTREAM_ADMIN_SECRET": "adm1n"}


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"cs-workers-{uuid.uuid4().hex[:8]}:"
    yield name
    client = redis.Redis.from_url(require_redis())
    keys = list(client.scan_iter(match=f"{name}*"))
    if keys:
        client.delete(*keys)


def gunicorn(server, prefix: str, workers: int = 3, **app: str) -> RunningServer:
    return server(
        "production.ini",
        server={"workers": str(workers), "control_socket_disable": "true"},
        app={"redis.url": require_redis(), "redis.key_prefix": prefix, **app},
        env=ENV,
    )


def publisher(server, prefix: str) -> RunningServer:
    """A pserve process on the same Redis, which takes the posts (its chat knows the room)."""
    app = {**API_APP, "hub.engine": "redis", "redis.url": require_redis(),
           "redis.key_prefix": prefix}
    return server("development.ini", app=app)


def owner_pid(prefix: str, conn_id: str) -> int:
    """The pid of the worker that owns ``conn_id`` (its record in Redis names it)."""
    owner = redis.Redis.from_url(require_redis()).hget(f"{prefix}chat:conn:{conn_id}", "owner")
    assert owner is not None, f"no record of {conn_id}"
    return int(owner.decode().split(":")[-2])  # host:pid:random


class WorkerClient:
    """A ``/ws`` client of gunicorn's port: ``/connect`` and the upgrade go over
    separate TCP connections, so each lands on any worker. :attr:`made_on`:
    the pid of the worker that made the connection; :attr:`pid`: of the one
    holding the websocket (it took the connection over if they differ)."""

    def __init__(self, url: str, prefix: str, room: str, resume: dict | None = None) -> None:
        host, port = url.split("//", 1)[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        body = json.dumps({"username": f"u-{uuid.uuid4().hex[:6]}", "channels": [room]}).encode()
        conn.request("POST", "/connect", body=body, headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(GUNICORN_SECRET, "POST", "/connect", body),
        })
        answer = conn.getresponse()
        assert answer.status == 200, answer.read()
        self.conn_id = json.loads(answer.read())["conn_id"]
        conn.close()
        self.made_on = owner_pid(prefix, self.conn_id)
        path = f"/ws?conn_id={self.conn_id}"
        if resume is not None:
            path += "&resume=" + quote(json.dumps(resume))
        self.ws = websocket.create_connection(f"ws://{host}:{port}{path}", timeout=10)
        self.pid = owner_pid(prefix, self.conn_id)  # taken over before the upgrade's answer
        self.frames: list[dict] = []

    def messages(self, count: int, timeout: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.received()) < count:
            assert time.monotonic() < deadline, f"got {len(self.received())} of {count}"
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self.frames.extend(json.loads(self.ws.recv()))
        return self.received()

    def received(self) -> list[dict]:
        return [f for f in self.frames if f.get("type") == "message"]

    def read_until_closed(self, timeout: float = 15.0) -> None:
        """Take what arrives until the worker is gone (the socket closes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                text = self.ws.recv()
            except (websocket.WebSocketException, OSError):
                return
            if not text:
                return
            self.frames.extend(json.loads(text))
        raise AssertionError("the socket did not close")

    def close(self) -> None:
        self.ws.close()


def reconnect(url: str, prefix: str, room: str, resume: dict) -> WorkerClient:
    """A new client resuming at ``resume``; again if a worker took it as it died."""
    for _ in range(3):
        try:
            return WorkerClient(url, prefix, room, resume=resume)
        except (OSError, http.client.HTTPException, websocket.WebSocketException):
            time.sleep(0.2)
    return WorkerClient(url, prefix, room, resume=resume)


def spread(
    url: str, prefix: str, room: str, workers: int, per_worker: int = 2
) -> list[WorkerClient]:
    """Clients until every worker has ``per_worker`` (the kernel picks the worker)."""
    clients: list[WorkerClient] = []
    for _ in range(60):
        counts = {pid: sum(1 for c in clients if c.pid == pid) for pid in {c.pid for c in clients}}
        if len(counts) == workers and min(counts.values()) >= per_worker:
            return clients
        clients.append(WorkerClient(url, prefix, room))
    raise AssertionError(f"clients did not spread over {workers} workers: {counts}")


def worker_pids(running: RunningServer, count: int) -> set[int]:
    """The pids of the workers that answer /healthz (until ``count`` are seen)."""
    seen: set[int] = set()

    def all_seen() -> bool:
        seen.add(running.get("/healthz", auth=ADMIN).json()["pid"])
        return len(seen) >= count

    wait_for(all_seen, timeout=30, what=f"{count} workers")
    return seen


def test_websocket_clients_spread_over_three_workers_get_one_order(server, prefix):
    running = gunicorn(server, prefix)
    poster = publisher(server, prefix)
    room = f"room-{uuid.uuid4().hex[:8]}"
    reference = Listener(poster, room)  # makes the room on the posting process
    clients = spread(running.url, prefix, room, 3)
    try:
        # /connect and /ws landed on different workers (taken over) for some of them
        assert any(c.made_on != c.pid for c in clients), [(c.made_on, c.pid) for c in clients]
        api = ChannelstreamClient(poster.url, SECRET)

        def flood(start: int) -> None:
            for n in range(start, start + 200, 10):
                api.message([{"channel": room, "user": "p", "message": {"n": k}}
                             for k in range(n, n + 10)])

        threads = [threading.Thread(target=flood, args=(base,)) for base in (0, 1000)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        expected = [(f["offset"], f["message"]["n"]) for f in reference.messages(400)]
        assert [offset for offset, _ in expected] == list(range(1, 401))
        for client in clients:
            assert [(f["offset"], f["message"]["n"]) for f in client.messages(400)] == expected
    finally:
        for client in clients:
            client.close()
        reference.close()
    assert running.stop() == 0


def test_a_killed_worker_is_replaced_and_its_clients_resume_on_another(server, prefix):
    running = gunicorn(server, prefix)
    poster = publisher(server, prefix)
    room = f"room-{uuid.uuid4().hex[:8]}"
    reference = Listener(poster, room)
    clients = spread(running.url, prefix, room, 3)
    api = ChannelstreamClient(poster.url, SECRET)
    total = 300
    stop = threading.Event()

    def post_steadily() -> None:
        for n in range(total):
            api.message([{"channel": room, "user": "p", "message": {"n": n}}])
            time.sleep(0.01)
        stop.set()

    victim = clients[0].pid
    doomed = [c for c in clients if c.pid == victim]
    others = [c for c in clients if c.pid != victim]
    resumed: list[tuple[WorkerClient, WorkerClient]] = []
    thread = threading.Thread(target=post_steadily)
    thread.start()
    try:
        doomed[0].messages(20)  # the flow is on
        os.kill(victim, signal.SIGKILL)
        for client in doomed:
            client.read_until_closed()
        # messages go on meanwhile: the clients come back having missed some
        reference.messages(max(len(c.received()) for c in doomed) + 5)
        for client in doomed:
            last = client.received()[-1]
            back = reconnect(running.url, prefix, room, {room: [last["epoch"], last["offset"]]})
            assert back.pid != victim
            resumed.append((client, back))
        thread.join(30)
        assert stop.is_set()
        expected = [f["message"]["n"] for f in reference.messages(total)]
        assert expected == list(range(total))
        for old, back in resumed:
            before = old.received()
            after = back.messages(total - len(before))
            assert not [f for f in back.frames if f.get("type") == "resume_failed"]
            frames = before + after
            assert [f["offset"] for f in frames] == list(range(1, total + 1))  # no gap, no dup
            assert [f["message"]["n"] for f in frames] == expected
            assert after[0]["catchup"]  # what the dead worker never sent, then live
        for client in others:
            assert [f["message"]["n"] for f in client.messages(total)] == expected
        pids = worker_pids(running, 3)
        assert victim not in pids  # replaced: three workers again
    finally:
        stop.set()
        for client in clients + [back for _, back in resumed]:
            client.close()
        reference.close()
    assert running.stop() == 0


def test_a_single_door_runs_in_one_worker_and_moves_when_it_dies(server, prefix):
    port = free_port()
    running = gunicorn(server, prefix, **{"g3.listen": f"127.0.0.1:{port}"})
    doors: dict[int, dict[str, Any]] = {}

    def every_worker_seen() -> bool:
        body = running.get("/healthz", auth=ADMIN).json()
        assert body["status"] == "ok", body
        doors[body["pid"]] = body["doors"]["g3-server"]
        return len(doors) == 3

    wait_for(every_worker_seen, timeout=30, what="3 workers")
    runners = [pid for pid, door in doors.items() if door["state"] == "running"]
    assert len(runners) == 1, doors
    assert sorted(d["state"] for d in doors.values()) == ["running", "standby", "standby"]
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # the one worker accepts G3 clients
    os.kill(runners[0], signal.SIGKILL)

    def taken_over() -> bool:
        try:
            body = running.get("/healthz", auth=ADMIN).json()
        except requests.ConnectionError:  # accepted by the worker as it died
            return False
        return body["pid"] != runners[0] and body["doors"]["g3-server"]["state"] == "running"

    wait_for(taken_over, timeout=30, what="another worker running g3-server")
    wait_for(lambda: _accepts(port), timeout=10, what="the G3 port open again")
    # the worker that replaced it, or one that held it back, runs it now
    assert running.stderr.count("this worker runs the single doors") + running.stderr.count(
        "this one runs them now"
    ) == 2
    assert running.stop() == 0


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def test_loom_under_three_workers_one_owns_every_one_reads(server, prefix):
    token = {"Authorization": "Bearer t0ken"}
    running = server(
        "production.ini",
        server={"workers": "3", "control_socket_disable": "true"},
        app={"redis.url": require_redis(), "redis.key_prefix": prefix},
        env={**ENV, "CHANNELSTREAM_LOOM_TOKENS": "t0ken"},
    )
    roles: dict[int, str] = {}

    def every_worker_seen() -> bool:
        body = running.get("/healthz", auth=ADMIN).json()
        roles[body["pid"]] = body["doors"]["loom"]["role"]
        return len(roles) == 3

    wait_for(every_worker_seen, timeout=30, what="3 workers")
    assert sorted(roles.values()) == ["follower", "follower", "owner"]
    owner = next(pid for pid, role in roles.items() if role == "owner")
    answers = []
    for n in range(30):  # a POST lands on any worker: only the owner takes it
        answer = requests.post(f"{running.url}/stream/w-{n}", data=b"log", headers=token,
                               timeout=10)
        answers.append(answer.status_code)
        if answer.status_code == 201:
            break
        assert answer.status_code == 503 and answer.json()["code"] == "not_owner"
        assert answer.json()["owner"]["pid"] == str(owner)
    assert answers[-1] == 201, answers
    created = f"w-{len(answers) - 1}"
    knows: dict[int, int] = {}

    def every_worker_knows_it() -> bool:  # a follower, once the owner's event came
        body = running.get("/healthz", auth=ADMIN).json()
        knows[body["pid"]] = body["doors"]["loom"]["streams"]
        return len(knows) == 3 and min(knows.values()) == 1

    wait_for(every_worker_knows_it, timeout=30, what="every worker to know the stream")
    for _ in range(9):  # whichever worker answers serves it
        got = requests.get(f"{running.url}/stream/{created}", headers=token, timeout=10)
        assert got.status_code == 200 and got.content == b"log"
    assert running.stop() == 0
