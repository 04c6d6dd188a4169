"""hub.engine = redis: two server processes share channels (offsets, history, fan-out).

Each test starts real servers (pserve on development.ini) with their own key
prefix on one Redis, talks to them with the signing client and websockets,
and checks what crosses processes: a post on one reaches clients of the
other, concurrent posts give every client one order, a client resumes on
another process, Redis losing its data gives ``resume_failed`` then live,
and Redis down gives 503s and a degraded /healthz until it is back.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
import requests
import websocket

from channelstream.client import ChannelstreamClient, ChannelstreamError
from tests.support.api import API_APP, SECRET
from tests.support.broker import in_ci
from tests.support.server import REPO, RunningServer, free_port
from tests.support.wait import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

REDIS_URL = "redis://127.0.0.1:6379/0"


def require_redis(url: str = REDIS_URL) -> str:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.exceptions.RedisError as err:
        message = f"Redis is not reachable at {url}: {err}"
        if in_ci():
            pytest.fail(f"{message} (CI is set: engine tests must run)")
        pytest.skip(message)
    return url


def engine_app(url: str, prefix: str) -> dict[str, str]:
    return {**API_APP, "hub.engine": "redis", "redis.url": url, "redis.key_prefix": prefix}


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"cs-test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="module")
def pair(tmp_path_factory, prefix) -> Iterator[tuple[RunningServer, RunningServer]]:
    url = require_redis()
    first = RunningServer(
        REPO / "development.ini", tmp_path_factory.mktemp("a"), app=engine_app(url, prefix)
    )
    second = RunningServer(
        REPO / "development.ini", tmp_path_factory.mktemp("b"), app=engine_app(url, prefix)
    )
    with first, second:
        yield first, second
    keys = redis.Redis.from_url(url).keys(prefix + "*")
    if keys:
        redis.Redis.from_url(url).delete(*keys)


def client_of(server: RunningServer) -> ChannelstreamClient:
    return ChannelstreamClient(server.url, SECRET)


def channel() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


class Listener:
    """A /ws client of a new connection on ``server`` joined to ``room``."""

    def __init__(self, server: RunningServer, room: str, resume: dict | None = None) -> None:
        self.conn_id = client_of(server).connect(f"u-{uuid.uuid4().hex[:6]}", [room])["conn_id"]
        url = server.url.replace("http://", "ws://") + f"/ws?conn_id={self.conn_id}"
        if resume is not None:
            url += "&resume=" + requests.utils.quote(json.dumps(resume))
        self.ws = websocket.create_connection(url, timeout=10)
        self.frames: list[dict] = []

    def messages(self, count: int, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while sum(1 for f in self.frames if f.get("type") == "message") < count:
            assert time.monotonic() < deadline, f"got {len(self.frames)} frames"
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self.frames.extend(json.loads(self.ws.recv()))
        return [f for f in self.frames if f.get("type") == "message"]

    def close(self) -> None:
        self.ws.close()


def post(server: RunningServer, room: str, *numbers: int) -> None:
    client_of(server).message(
        [{"channel": room, "user": "poster", "message": {"n": n}} for n in numbers]
    )


def test_a_message_posted_on_one_process_reaches_clients_of_the_other(pair):
    first, second = pair
    room = channel()
    here, there = Listener(first, room), Listener(second, room)
    try:
        post(second, room, 1)
        for listener in (here, there):
            (frame,) = listener.messages(1)
            assert frame["message"] == {"n": 1} and frame["offset"] == 1
        assert here.frames[0]["epoch"] == there.frames[0]["epoch"]
    finally:
        here.close()
        there.close()


def test_concurrent_posts_on_two_processes_give_every_client_one_order(pair):
    first, second = pair
    room = channel()
    listeners = [Listener(first, room), Listener(second, room)]
    try:

        def flood(server: RunningServer, start: int) -> None:
            for n in range(start, start + 1000, 10):  # 100 posts of 10 each
                post(server, room, *range(n, n + 10))

        threads = [
            threading.Thread(target=flood, args=(first, 0)),
            threading.Thread(target=flood, args=(second, 10_000)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seen = [
            [(f["offset"], f["message"]["n"]) for f in lst.messages(2000, timeout=60)]
            for lst in listeners
        ]
        assert seen[0] == seen[1]
        assert [offset for offset, _ in seen[0]] == list(range(1, 2001))
        for start in (0, 10_000):  # each poster's order is kept
            mine = [n for _, n in seen[0] if start <= n < start + 1000]
            assert mine == list(range(start, start + 1000))
    finally:
        for listener in listeners:
            listener.close()


def test_a_client_resumes_on_the_other_process_with_nothing_lost_or_repeated(pair):
    first, second = pair
    room = channel()
    listener = Listener(first, room)
    post(first, room, 1, 2, 3)
    got = listener.messages(3)
    listener.close()
    position = {room: [got[-1]["epoch"], got[-1]["offset"]]}
    post(first, room, 4, 5)  # missed
    back = Listener(second, room, resume=position)
    try:
        post(first, room, 6)  # live
        frames = back.messages(3)
        assert [f["message"]["n"] for f in frames] == [4, 5, 6]
        assert [f["catchup"] for f in frames] == [True, True, False]
        assert not [f for f in back.frames if f.get("type") == "resume_failed"]
    finally:
        back.close()


def test_redis_losing_the_channel_gives_resume_failed_then_live(pair, prefix):
    first, second = pair
    room = channel()
    listener = Listener(first, room)
    post(first, room, 1)
    (old,) = listener.messages(1)
    listener.close()
    engine = redis.Redis.from_url(REDIS_URL)
    engine.delete(*engine.keys(f"{prefix}{{channel:{room}}}*"))  # Redis lost its data
    post(first, room, 2)  # a new epoch starts
    back = Listener(second, room, resume={room: [old["epoch"], old["offset"]]})
    try:
        post(first, room, 3)
        wait_for(lambda: back.messages(1) and True, timeout=20)
        failed = [f for f in back.frames if f.get("type") == "resume_failed"]
        assert failed and failed[0]["channel"] == room and "epoch" in failed[0]["reason"]
        live = back.messages(1)
        assert live[-1]["message"] == {"n": 3} and live[-1]["epoch"] != old["epoch"]
    finally:
        back.close()


def _kill_pubsub_of(server: RunningServer) -> None:
    """Close ``server``'s pub/sub connection from Redis's side (as a network cut would)."""
    engine = redis.Redis.from_url(REDIS_URL)
    name = f"channelstream-{server.process.pid}"
    ids = [c["id"] for c in engine.client_list() if c.get("name") == name and int(c["sub"])]
    assert ids, f"no pub/sub connection named {name}"
    for client_id in ids:
        engine.client_kill_filter(_id=client_id)


def _close_frame(ws: websocket.WebSocket, timeout: float = 20.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "no close frame"
        ws.settimeout(max(0.1, deadline - time.monotonic()))
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(data[:2], "big"), data[2:].decode()


def test_messages_the_engine_could_not_deliver_close_the_clients_that_missed_them(pair, prefix):
    """A gap the stream no longer holds is never silent: the clients of the
    process that missed it are closed with the reason, and their resume says
    ``resume_failed`` (history no longer reaches back), then live."""
    first, second = pair
    room = channel()
    listener = Listener(second, room)
    post(first, room, 1)
    (seen,) = listener.messages(1)
    second.process.send_signal(signal.SIGSTOP)
    try:
        _kill_pubsub_of(second)
        post(first, room, 2, 3, 4)  # second is away: these never reach it live
        engine = redis.Redis.from_url(REDIS_URL)
        engine.xtrim(f"{prefix}{{channel:{room}}}:log", maxlen=0)  # nor from the stream
    finally:
        second.process.send_signal(signal.SIGCONT)
    code, reason = _close_frame(listener.ws)
    assert (code, reason) == (4000, "messages lost on the way: resume")
    assert [f["message"] for f in listener.messages(1)] == [{"n": 1}]  # nothing else came
    listener.close()
    back = Listener(second, room, resume={room: [seen["epoch"], seen["offset"]]})
    try:
        post(first, room, 5)
        live = back.messages(1)
        failed = [f for f in back.frames if f.get("type") == "resume_failed"]
        assert failed and failed[0]["channel"] == room
        assert [f["message"] for f in live] == [{"n": 5}]
    finally:
        back.close()


@pytest.fixture
def own_redis(tmp_path) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A redis-server of the test's own (so it can be stopped), and a restart function."""
    require_redis()
    port = free_port()
    command = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(tmp_path),
    ]
    state: dict[str, subprocess.Popen] = {}

    def start() -> None:
        state["process"] = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_for(lambda: _answers(port), timeout=10, what="redis-server up")

    def stop() -> None:
        state["process"].terminate()
        state["process"].wait(10)

    start()
    try:
        yield f"redis://127.0.0.1:{port}/0", start, stop
    finally:
        if state["process"].poll() is None:
            stop()


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.5).ping())
    except redis.exceptions.RedisError:
        return False


def test_redis_down_answers_503_and_everything_recovers_when_it_is_back(own_redis, tmp_path):
    url, start, stop = own_redis
    app = engine_app(url, "cs-down:")
    (tmp_path / "srv").mkdir()
    with RunningServer(REPO / "development.ini", tmp_path / "srv", app=app) as server:
        room = channel()
        listener = Listener(server, room)
        try:
            post(server, room, 1)
            assert listener.messages(1)[0]["message"] == {"n": 1}
            stop()
            with pytest.raises(ChannelstreamError) as refused:
                post(server, room, 2)
            assert refused.value.status == 503
            assert "redis" in refused.value.message and "unavailable" in refused.value.message
            health = requests.get(server.url + "/healthz", timeout=10).json()
            assert health["status"] == "degraded" and health["hub"]["bus"]["state"] == "down"
            start()
            wait_for(lambda: _post_ok(server, room, 3), timeout=30, what="posts work again")
            frames = listener.messages(2)  # the socket stayed open; n=3 arrives
            assert frames[-1]["message"] == {"n": 3}
            wait_for(
                lambda: requests.get(server.url + "/healthz", timeout=10).json()["status"] == "ok",
                timeout=30,
            )
        finally:
            listener.close()


def _post_ok(server: RunningServer, room: str, n: int) -> bool:
    try:
        post(server, room, n)
    except ChannelstreamError:
        return False
    return True


def test_publishes_run_the_script_by_sha_and_reload_it_when_redis_lost_it(own_redis, tmp_path):
    url, _start, _stop = own_redis
    engine = redis.Redis.from_url(url)
    (tmp_path / "srv").mkdir()
    with RunningServer(
        REPO / "development.ini", tmp_path / "srv", app=engine_app(url, "cs-sha:")
    ) as server:
        room = channel()
        listener = Listener(server, room)
        try:
            post(server, room, 1)
            for n in range(2, 6):
                engine.script_flush()  # the next publish finds NOSCRIPT
                post(server, room, n)
            engine.script_flush()
            post(server, room, 6, 7, 8)  # a batch: the whole pipeline answered NOSCRIPT
            post(server, room, 9)
            frames = listener.messages(9)
            assert [f["message"]["n"] for f in frames] == list(range(1, 10))
            assert [f["offset"] for f in frames] == list(range(1, 10))
            assert len({f["epoch"] for f in frames}) == 1
            stats = engine.info("commandstats")
            assert "cmdstat_script|exists" not in stats  # no round trip per publish
            bus = requests.get(server.url + "/healthz", timeout=10).json()["hub"]["bus"]
            # the first publish on this new Redis, and one after each flush
            assert bus["scripts_loaded"] == 6
            meta = engine.hgetall(f"cs-sha:{{channel:{room}}}:meta")
            assert int(meta[b"s"]) == 9  # each message ran the script once
        finally:
            listener.close()
