"""Resume restores every stream of a connection, cut at every point (/ws, /sse, /listen).

A connection on channels ``a`` and ``b`` that also gets global private
messages (resume key ``""``) receives messages interleaved over the three
streams. The client is cut off after it took ``k`` of them (the rest were
sent or queued but never reached it), and reconnects with the positions it
holds: only those of the streams that delivered something to it. It must get
every other message exactly once, in order per stream, whatever ``k``.
"""

from __future__ import annotations

import json
import select
import time
import uuid

import pytest
import requests
import websocket

from tests.support.wait import wait_for
from tests.transports.test_transports import ws_url

pytestmark = pytest.mark.timeout(120)

#: Messages per run: a, b, private, a, b, private...
COUNT = 6
STREAMS = ("a", "b", "pm")


class Run:
    """One connection, its three streams, and what its client took."""

    def __init__(self, client) -> None:
        self.client = client
        tag = uuid.uuid4().hex[:8]
        self.user = f"resumer-{tag}"
        self.channels = {"a": f"a-{tag}", "b": f"b-{tag}"}
        self.conn_id = client.connect(self.user, channels=list(self.channels.values()))["conn_id"]
        self.taken: list[int] = []
        self.resume: dict[str, list] = {}

    def publish(self, n: int) -> None:
        stream = STREAMS[n % 3]
        item = {"user": "sender", "message": {"n": n}}
        if stream == "pm":
            item["pm_users"] = [self.user]
        else:
            item["channel"] = self.channels[stream]
        self.client.message([item])

    def take(self, frames: list[dict]) -> None:
        """What a client keeps of frames it received: messages, and their positions."""
        for frame in frames:
            if frame.get("type") != "message":
                continue
            self.taken.append(frame["message"]["n"])
            key = frame["channel"] if frame["channel"] is not None else ""
            self.resume[key] = [frame["epoch"], frame["offset"]]

    def check(self) -> None:
        assert sorted(self.taken) == list(range(COUNT)), self.taken
        for stream in range(3):  # each stream in order
            mine = [n for n in self.taken if n % 3 == stream]
            assert mine == sorted(mine), self.taken


def read_ws(ws, until, timeout: float = 10.0) -> list[dict]:
    frames: list[dict] = []
    deadline = time.monotonic() + timeout
    while not until(frames):
        ws.settimeout(max(0.05, deadline - time.monotonic()))
        frames.extend(json.loads(ws.recv()))
        assert time.monotonic() < deadline, f"gave up waiting; got {frames}"
    return frames


def has(frames: list[dict], n: int) -> bool:
    return any(f.get("type") == "message" and f["message"]["n"] == n for f in frames)


@pytest.mark.parametrize("cut", range(COUNT + 1))
def test_websocket_resume_restores_every_stream(api_server, client, cut):
    run = Run(client)
    ws = websocket.create_connection(ws_url(api_server, run.conn_id, {}), timeout=10)
    try:
        for n in range(COUNT):
            run.publish(n)
            if n < cut:
                run.take(read_ws(ws, lambda frames, n=n: has(frames, n)))
        if cut < COUNT:  # the rest reached the client's kernel, not the client
            wait_for(lambda: select.select([ws.sock], [], [], 0)[0], timeout=10)
    finally:
        ws.sock.close()  # abrupt: unread frames are lost
    again = websocket.create_connection(ws_url(api_server, run.conn_id, run.resume), timeout=10)
    try:
        if len(run.taken) < COUNT:
            run.take(read_ws(again, lambda frames: len(run.taken) + count(frames) >= COUNT))
        again.settimeout(1)
        extra = json.loads(again.recv())  # nothing more comes: a heartbeat
        assert [f for f in extra if f.get("type") == "message"] == []
    finally:
        again.close()
    run.check()


def count(frames: list[dict]) -> int:
    return sum(1 for f in frames if f.get("type") == "message")


def sse_read(lines, run: Run, until_taken: int, timeout: float = 10.0) -> str | None:
    """Read events into ``run`` until it took ``until_taken`` messages; return the last id."""
    last_id = None
    deadline = time.monotonic() + timeout
    event: dict[str, str] = {}
    for raw in lines:
        assert time.monotonic() < deadline, "gave up waiting"
        if raw:
            field, _, value = raw.partition(":")
            event[field] = value.lstrip(" ")
            continue
        if "id" in event:
            last_id = event["id"]
        if "data" in event:
            run.take(json.loads(event["data"]))
        event = {}
        if len(run.taken) >= until_taken and last_id is not None:
            return last_id
    return last_id


@pytest.mark.parametrize("cut", range(COUNT + 1))
def test_sse_last_event_id_restores_every_stream(api_server, client, cut):
    run = Run(client)
    url = api_server.url + "/sse"
    with requests.get(url, params={"conn_id": run.conn_id}, stream=True, timeout=10) as first:
        lines = first.iter_lines(decode_unicode=True)
        last_id = sse_read(lines, run, 0)  # the head event carries every position already
        for n in range(COUNT):
            run.publish(n)
            if n < cut:
                last_id = sse_read(lines, run, n + 1)
    headers = {"Last-Event-ID": last_id}
    with requests.get(
        url, params={"conn_id": run.conn_id}, headers=headers, stream=True, timeout=10
    ) as again:
        if len(run.taken) < COUNT:
            sse_read(again.iter_lines(decode_unicode=True), run, COUNT)
    run.check()


@pytest.mark.parametrize("cut", range(COUNT + 1))
def test_long_poll_resume_restores_every_stream(api_server, client, cut):
    run = Run(client)
    url = api_server.url + "/listen"

    def poll() -> list[dict]:
        params = {"conn_id": run.conn_id, "resume": json.dumps(run.resume)}
        return requests.get(url, params=params, timeout=10).json()

    for n in range(COUNT):
        run.publish(n)
        answer = poll()
        if n < cut:
            run.take(answer)  # else: the answer was lost on the way
    deadline = time.monotonic() + 10
    while len(run.taken) < COUNT:
        assert time.monotonic() < deadline, run.taken
        run.take(poll())
    assert count(poll()) == 0  # and nothing twice
    run.check()


def test_a_channel_that_keeps_a_long_history_can_be_resumed_that_far(api_server, client):
    """history_size of /channel_config sizes the resume window, not only hub.history_size."""
    channel = f"long-{uuid.uuid4().hex[:8]}"
    client.channel_config({channel: {"store_history": True, "history_size": 500}})
    conn_id = client.connect("patient", channels=[channel])["conn_id"]
    first = requests.get(api_server.url + "/listen", params={"conn_id": conn_id}, timeout=10)
    assert first.json() == []  # nothing yet: the poll times out
    items = [{"channel": channel, "user": "x", "message": {"n": n}} for n in range(300)]
    client.message(items)  # 300 > hub.history_size (100)
    epoch = client.info(channels=[channel])["channels"][channel]["epoch"]
    answer = requests.get(
        api_server.url + "/listen",
        params={"conn_id": conn_id, "resume": json.dumps({channel: [epoch, 0]})},
        timeout=10,
    ).json()
    assert [f["type"] for f in answer if f["type"] != "message"] == []  # no resume_failed
    assert [f["message"]["n"] for f in answer] == list(range(300))
