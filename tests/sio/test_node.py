"""The same door with node's socket.io-client 4.x (tests/sio/node, `make test` installs it).

Skipped when node or the npm packages are missing, except in CI (where .ci/run
installs them and these tests must run).
"""

from __future__ import annotations

import collections
import itertools
import json
import queue
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from channelstream.amqp.publisher import PacketPublisher
from channelstream.sio import user_sig
from tests.amqp.conftest import amqp_server, broker_url, exchange  # noqa: F401 (fixtures)
from tests.support.api import SECRET
from tests.support.broker import in_ci
from tests.support.packets import new_run, post_packets

NODE_DIR = Path(__file__).parent / "node"


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "socket.io-client").is_dir():
        return f"socket.io-client is not installed: npm ci --prefix {NODE_DIR}"
    return None


@pytest.fixture(autouse=True)
def _need_node() -> None:
    missing = _missing()
    if missing is not None:
        if in_ci():
            pytest.fail(f"{missing} (CI is set: node tests must run)")
        pytest.skip(missing)


class NodeClient:
    """One node process running tests/sio/node/client.js; its output lines in a queue."""

    def __init__(self, url: str, **options: Any) -> None:
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        #: lines read while waiting for an ack, kept in order for :meth:`next`
        self.backlog: collections.deque[dict[str, Any]] = collections.deque()
        self.ids = itertools.count(1)
        self.process = subprocess.Popen(
            ["node", str(NODE_DIR / "client.js"), json.dumps({"url": url, **options})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def next(self, key: str, name: str | None = None, timeout: float = 10.0) -> Any:
        """The value of the next output line with ``key`` (an ``event`` named ``name``)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._line(deadline, name or key)
            if key in line and (name is None or line[key] == name):
                return line["data"] if key == "event" or key == "ack" else line[key]

    def _line(self, deadline: float, what: str) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.popleft()
        try:
            return self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
        except queue.Empty:
            raise AssertionError(f"no {what} within the time given") from None

    def event(self, name: str, timeout: float = 10.0) -> Any:
        return self.next("event", name, timeout)

    def frames(self, count: int, event: str = "message") -> list[Any]:
        got: list[Any] = []
        while len(got) < count:
            got += self.event(event)
        assert len(got) == count, got
        return got

    def call(self, event: str, data: Any) -> Any:
        return self._ask({"cmd": "call", "event": event, "data": data}, f"ack of {event}")

    def transport(self) -> str:
        """The engine.io transport the client is on now."""
        return self._ask({"cmd": "transport"}, "transport")

    def _ask(self, command: dict[str, Any], what: str) -> Any:
        ident = next(self.ids)
        self._send({**command, "id": ident})
        deadline = time.monotonic() + 10
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise AssertionError(f"no {what}") from None
            if line.get("ack") == ident:
                return line["data"]
            self.backlog.append(line)  # not ours: kept, in order, for next()

    def _send(self, command: dict[str, Any]) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self._send({"cmd": "close"})
                self.process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def node(sio_server):
    opened: list[NodeClient] = []

    def start(url: str | None = None, **options: Any) -> NodeClient:
        client = NodeClient(url or sio_server.url, **options)
        opened.append(client)
        return client

    yield start
    for client in opened:
        client.close()


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]], ids="+".join)
def test_node_client_joins_gets_messages_presence_and_leaves(api, node, transports):
    channel = f"room-{uuid.uuid4().hex[:8]}"
    api.channel_config({channel: {"notify_presence": True}})
    conn_id = api.connect("nora", [channel])["conn_id"]
    client = node(auth={"conn_id": conn_id}, transports=transports)
    assert client.next("connect")
    assert client.event("user_connect")["channels"] == [channel]
    other = node(auth={"conn_id": api.connect("otto")["conn_id"]}, transports=transports)
    other.event("user_connect")
    assert other.call("join", [channel]) == [channel]
    assert other.event("join") == [channel]
    presence = client.frames(1, "presence")[0]
    assert presence["user"] == "otto" and presence["message"] == {"action": "joined"}

    api.message([{"channel": channel, "user": "otto", "message": {"text": "hi nora"}}])
    for who in (client, other):
        frame = who.frames(1)[0]
        assert frame["message"] == {"text": "hi nora"} and frame["type"] == "message"
    assert other.call("leave", [channel]) == [channel]
    assert client.frames(1, "presence")[0]["message"] == {"action": "parted"}


def test_node_client_upgrades_from_polling_while_messages_flow(api, node):
    """socket.io-client's default: long-polling first, then the websocket upgrade."""
    channel = f"room-{uuid.uuid4().hex[:8]}"
    conn_id = api.connect("una", [channel])["conn_id"]
    client = node(auth={"conn_id": conn_id}, transports=["polling", "websocket"])
    assert client.event("user_connect")["channels"] == [channel]
    sent = 0
    deadline = time.monotonic() + 20
    while client.transport() != "websocket":
        assert time.monotonic() < deadline, "no upgrade"
        api.message([{"channel": channel, "user": "x", "message": {"n": sent}}])
        sent += 1
    for n in range(sent, sent + 20):
        api.message([{"channel": channel, "user": "x", "message": {"n": n}}])
    assert [f["message"]["n"] for f in client.frames(sent + 20)] == list(range(sent + 20))


def test_node_client_with_the_seeds_signed_query_string(api, node):
    expires = int(time.time()) + 60
    sig = user_sig(SECRET, "pia", expires)
    client = node(query={"username": "pia", "expires": str(expires), "sig": sig})
    assert client.event("user_connect")["username"] == "pia"
    assert client.call("join", ["lobby"]) == ["lobby"]
    refused = node(query={"username": "pia", "expires": str(expires), "sig": "0" * 64})
    assert refused.next("connect_error") == "bad signature"


def test_node_client_resumes_by_offsets(api, node):
    channel = f"room-{uuid.uuid4().hex[:8]}"
    conn_id = api.connect("quinn", [channel])["conn_id"]
    first = node(auth={"conn_id": conn_id})
    first.event("user_connect")
    api.message([{"channel": channel, "user": "x", "message": {"n": n}} for n in (1, 2)])
    last = first.frames(2)[-1]
    first.close()
    api.message([{"channel": channel, "user": "x", "message": {"n": n}} for n in (3, 4)])
    second = node(auth={"conn_id": conn_id, "resume": {channel: [last["epoch"], last["offset"]]}})
    second.event("user_connect")
    replay = second.frames(2)
    assert [f["message"]["n"] for f in replay] == [3, 4] and all(f["catchup"] for f in replay)


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]], ids="+".join)
def test_node_gatd_query_with_and_without_time(sio_server, node, transports):
    run = new_run()
    post_packets(sio_server, [{"run": run, "n": 1}, {"run": run, "n": 2}]).raise_for_status()
    live = node(transports=transports)
    past = node(transports=transports)
    assert live.call("query", {"run": run}) == {"ok": True}
    assert past.call("query", {"run": run, "time": 60_000}) == {"ok": True}
    assert [past.event("data")["n"] for _ in range(2)] == [1, 2]
    post_packets(sio_server, {"run": run, "n": 3}).raise_for_status()
    assert live.event("data")["n"] == 3
    assert past.event("data")["n"] == 3
    assert "must be a JSON object" in past.call("query", "nope")["error"]
    assert "must be a JSON object" in past.event("error")["message"]


@pytest.mark.broker
def test_node_gatd_query_of_packets_from_amqp(amqp_server, broker_url, exchange):  # noqa: F811
    server = amqp_server()
    run = new_run()
    client = NodeClient(server.url)
    try:
        assert client.call("query", {"run": run, "temperature": 70}) == {"ok": True}
        with PacketPublisher(broker_url, exchange) as publisher:
            for n, temperature in enumerate((70, 71, 70.0)):
                publisher.publish({"run": run, "n": n, "temperature": temperature})
        got = [client.event("data") for _ in range(2)]
        assert [p["n"] for p in got] == [0, 2], got
    finally:
        client.close()
