"""loom across processes: two real servers share one storage folder and Redis.

A is started first and owns the folder (its lock file); B follows it
(``hub.engine = redis``). A producer on A, tails and ``/spy`` on B: every
byte in order, and the end; B answers writes with a 503 naming A; a stream
that went live before B started is tailed on B from where it stands; B
takes the folder over when A is SIGKILLed (the stream A left live ends on
B's tails, aborted) and then takes writes; with Redis down a tail on B still
ends (B reads the folder), and B follows again when Redis is back.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from tests.engines.test_redis import own_redis, require_redis  # noqa: F401 (a fixture)
from tests.loom.conftest import LOOM_STREAM, popen, wait_for_stream
from tests.loom.test_tail import read_until
from tests.support.server import REPO, RunningServer
from tests.support.wait import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]


def loom_app(folder: Path, prefix: str) -> dict[str, str]:
    return {
        "hub.engine": "redis",
        "redis.url": require_redis(),
        "redis.key_prefix": prefix,
        "loom.storage_dir": str(folder),
    }


def loom_door(server: RunningServer) -> dict:
    return server.get("/healthz").json()["doors"]["loom"]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RunningServer, RunningServer]]:
    prefix = f"cs-loom-{uuid.uuid4().hex[:8]}:"
    app = loom_app(tmp_path / "shared", prefix)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = RunningServer(REPO / "development.ini", tmp_path / "a", app=app)
    second = RunningServer(REPO / "development.ini", tmp_path / "b", app=app)
    with first:
        assert loom_door(first)["role"] == "owner"
        with second:
            wait_for(lambda: loom_door(second).get("mirror", {}).get("following"), timeout=10,
                     what="B following A's folder")
            yield first, second
    client = redis.Redis.from_url(require_redis())
    keys = client.keys(prefix + "*")
    if keys:
        client.delete(*keys)


def curl_get(server: RunningServer, path: str):
    return popen(["curl", "--silent", "--show-error", "--no-buffer", f"{server.url}{path}"])


def test_a_producer_on_a_reaches_a_tail_and_the_spy_on_b_in_order_with_the_end(pair):
    first, second = pair
    spy = curl_get(second, "/spy")
    producer = popen([LOOM_STREAM, first.url, "build-1-task-1"], stdin=subprocess.PIPE)
    chunks = [os.urandom(1000).hex().encode() + b"\n" for _ in range(20)]
    producer.stdin.write(chunks[0])
    producer.stdin.flush()
    wait_for_stream(second, "build-1-task-1", lambda info: info["stored"] >= len(chunks[0]))
    tail = curl_get(second, "/stream/build-1-task-1")
    seen = read_until(tail, tail.stdout, chunks[0])
    for chunk in chunks[1:]:  # each one reaches the tail on B before the next is sent
        producer.stdin.write(chunk)
        producer.stdin.flush()
        seen += read_until(tail, tail.stdout, chunk)
    producer.stdin.close()
    assert producer.wait(10) == 0
    rest = tail.communicate(timeout=10)[0]  # the tail ends with the stream
    assert seen + rest == b"".join(chunks)
    assert tail.returncode == 0
    shown = read_until(spy, spy.stdout, b"END: build-1-task-1\n")
    assert shown.startswith(b"START: build-1-task-1\n")
    body = shown[len(b"START: build-1-task-1\n") : -len(b"END: build-1-task-1\n")]
    assert body.replace(b"build-1-task-1:\n", b"") == b"".join(chunks)
    spy.kill()
    spy.wait()
    info = wait_for_stream(second, "build-1-task-1", lambda info: info["state"] == "finished")
    assert info["size"] == len(b"".join(chunks))
    whole = requests.get(f"{second.url}/stream/build-1-task-1", timeout=5)
    assert whole.content == b"".join(chunks)
    assert whole.headers["Content-Length"] == str(len(whole.content))


def test_b_answers_writes_with_a_503_naming_the_owner(pair):
    first, second = pair
    owner_pid = str(first.get("/healthz").json()["pid"])
    for method, path in (("POST", "/stream/x"), ("POST", "/stream"), ("DELETE", "/stream/x")):
        answer = requests.request(method, f"{second.url}{path}", data=b"abc", timeout=5)
        assert answer.status_code == 503, (method, path, answer.text)
        body = answer.json()
        assert body["code"] == "not_owner"
        assert body["owner"] == {"pid": owner_pid, "url": first.url}
        assert first.url in body["error"] and "POST, DELETE" in body["error"]
        assert answer.headers["X-Loom-Owner"] == first.url
    assert requests.get(f"{second.url}/stream/x", timeout=5).status_code == 404
    assert loom_door(second)["role"] == "follower"


def test_a_stream_live_before_b_started_is_tailed_on_b_from_where_it_stands(tmp_path):
    prefix = f"cs-loom-{uuid.uuid4().hex[:8]}:"
    app = loom_app(tmp_path / "shared", prefix)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with RunningServer(REPO / "development.ini", tmp_path / "a", app=app) as first:
        producer = popen([LOOM_STREAM, first.url, "early"], stdin=subprocess.PIPE)
        producer.stdin.write(b"before B\n")
        producer.stdin.flush()
        wait_for_stream(first, "early", lambda info: info["stored"] == 9)
        with RunningServer(REPO / "development.ini", tmp_path / "b", app=app) as second:
            wait_for(lambda: loom_door(second)["mirror"]["following"], timeout=10, what="B")
            tail = curl_get(second, "/stream/early")
            seen = read_until(tail, tail.stdout, b"before B\n")  # from the owner's snapshot
            producer.stdin.write(b"after B\n")
            producer.stdin.close()
            assert producer.wait(10) == 0
            assert seen + tail.communicate(timeout=10)[0] == b"before B\nafter B\n"
    client = redis.Redis.from_url(require_redis())
    keys = client.keys(prefix + "*")
    if keys:
        client.delete(*keys)


def test_b_takes_the_folder_over_when_a_is_killed(pair):
    first, second = pair
    producer = popen([LOOM_STREAM, first.url, "orphan"], stdin=subprocess.PIPE)
    producer.stdin.write(b"half\n")
    producer.stdin.flush()
    wait_for_stream(second, "orphan", lambda info: info["stored"] == 5)
    tail = curl_get(second, "/stream/orphan")
    read_until(tail, tail.stdout, b"half\n")
    first.kill()
    assert tail.communicate(timeout=15)[0] == b""  # ended: the owner's stream aborted
    assert loom_door(second)["role"] == "owner"
    info = wait_for_stream(second, "orphan")
    assert info["state"] == "aborted" and info["size"] == 5
    answer = requests.post(f"{second.url}/stream/after", data=b"written on B", timeout=5)
    assert answer.status_code == 201
    assert requests.get(f"{second.url}/stream/after", timeout=5).content == b"written on B"
    producer.kill()
    producer.wait()


def test_redis_down_a_tail_on_b_still_ends_and_b_follows_again_when_it_is_back(
    own_redis, tmp_path  # noqa: F811 (the fixture)
):
    url, start, stop = own_redis
    app = {**loom_app(tmp_path / "shared", "cs-loom-down:"), "redis.url": url}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with RunningServer(REPO / "development.ini", tmp_path / "a", app=app) as first, \
            RunningServer(REPO / "development.ini", tmp_path / "b", app=app) as second:
        wait_for(lambda: loom_door(second)["mirror"]["following"], timeout=10, what="B")
        producer = popen([LOOM_STREAM, first.url, "outage"], stdin=subprocess.PIPE)
        producer.stdin.write(b"before\n")
        producer.stdin.flush()
        wait_for_stream(second, "outage", lambda info: info["stored"] == 7)
        tail = curl_get(second, "/stream/outage")
        read_until(tail, tail.stdout, b"before\n")
        stop()  # no events reach B now
        producer.stdin.write(b"during\n")
        producer.stdin.close()
        assert producer.wait(10) == 0
        # the end is on disk: B's next read of the folder ends the tail, every byte sent
        assert tail.communicate(timeout=15)[0] == b"during\n"
        relay = wait_for(lambda: loom_door(first)["relay"]["engine"] == "down" and
                         loom_door(first)["relay"], timeout=10, what="A's relay down")
        assert relay["pending"] >= 1
        start()
        wait_for(lambda: loom_door(first)["relay"]["pending"] == 0, timeout=20,
                 what="A's events sent")
        wait_for(lambda: loom_door(second)["mirror"]["following"], timeout=20, what="B again")
        producer = popen([LOOM_STREAM, first.url, "after"], stdin=subprocess.PIPE)
        producer.stdin.write(b"live again\n")
        producer.stdin.flush()
        wait_for_stream(second, "after", lambda info: info["stored"] == 11)
        tail = curl_get(second, "/stream/after")
        read_until(tail, tail.stdout, b"live again\n")
        producer.stdin.close()
        assert producer.wait(10) == 0
        assert tail.communicate(timeout=10)[0] == b""
