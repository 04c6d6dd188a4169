"""The ZMQ doors of the real server: sources into channels, channels out of outputs.

One development.ini server per module with every source and output these
tests use (each test has channels of its own); the peers are PSI's mflow in a
separate process, our library and plain pyzmq in this one (not
monkey-patched: plain sockets).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
import zmq

from channelstream import mflow
from channelstream.mflow import encode
from tests.mflow import samples
from tests.mflow.support import finish, read_line
from tests.sio.clients import StreamClient
from tests.support.api import API_APP, api_client
from tests.support.server import REPO, RunningServer, free_port
from tests.support.wait import wait_for
from tests.transports.test_transports import messages, receive_frames, sse_events, ws_url

pytestmark = pytest.mark.timeout(120)


def tcp() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


#: name -> address of every source and output of the module's server
ADDRESSES = {name: tcp() for name in (
    "det", "mal", "pass", "stall", "out-pass", "out-pass-3", "out-rest-psi", "out-rest-ours",
    "out-stalled", "out-fine",
)}

SOURCES = [
    {"address": ADDRESSES["det"], "conn_type": "bind", "channel": "det"},
    {"address": ADDRESSES["mal"], "conn_type": "bind", "channel": "mal"},
    {"address": ADDRESSES["pass"], "conn_type": "bind", "channel": "pass", "name": "passer"},
    {"address": ADDRESSES["stall"], "conn_type": "bind", "channel": "stall"},
]
OUTPUTS = [
    {"address": ADDRESSES["out-pass"], "conn_type": "bind", "channel": "pass", "name": "all"},
    {"address": ADDRESSES["out-pass-3"], "conn_type": "bind", "channel": "pass", "name": "third",
     "modulo": 3},
    {"address": ADDRESSES["out-rest-psi"], "conn_type": "bind", "channel": "rest",
     "name": "rest-psi"},
    {"address": ADDRESSES["out-rest-ours"], "conn_type": "bind", "channel": "rest",
     "name": "rest-ours", "mode": "push"},
    {"address": ADDRESSES["out-stalled"], "conn_type": "bind", "channel": "stall",
     "name": "stalled", "queue_size": 3},
    {"address": ADDRESSES["out-fine"], "conn_type": "bind", "channel": "stall", "name": "fine"},
]


def zmq_app(sources: list[dict], outputs: list[dict], **extra: str) -> dict[str, str]:
    return {**API_APP, "zmq.sources": json.dumps(sources), "zmq.outputs": json.dumps(outputs),
            **extra}


@pytest.fixture(scope="module")
def zmq_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("zmq")
    with RunningServer(REPO / "development.ini", folder, app=zmq_app(SOURCES, OUTPUTS)) as server:
        yield server
    assert server.returncode == 0, server.stderr


@pytest.fixture
def api(zmq_server):
    client = api_client(zmq_server)
    yield client
    client.close()


def door(server: RunningServer, name: str) -> dict[str, Any]:
    return server.get("/healthz").json()["doors"][name]


def pusher(address: str) -> zmq.Socket:
    """A plain PUSH socket connected to ``address`` (closed by the caller)."""
    socket = zmq.Context.instance().socket(zmq.PUSH)
    socket.setsockopt(zmq.LINGER, 2000)
    socket.connect(address)
    return socket


def reader(address: str) -> mflow.Stream:
    """Our library's PULL stream connected to an output."""
    return mflow.connect(address, conn_type=mflow.CONNECT, mode=mflow.PULL,
                         receive_timeout=20000)


def expected_frame(parts: list[bytes], source: str, channel: str) -> dict[str, Any]:
    """What the module doc of channelstream.mflow.door promises web clients."""
    return {
        "type": "message",
        "channel": channel,
        "user": f"zmq:{source}",
        "message": {
            "htype": json.loads(parts[0])["htype"],
            "header": json.loads(parts[0]),
            "parts": [{"size": len(p), "base64": base64.b64encode(p).decode()} for p in parts[1:]],
        },
        "edited": None,
        "catchup": False,
    }


def without_stamp(frame: dict[str, Any]) -> dict[str, Any]:
    """The frame without what differs per message (uuid, time, offset, epoch)."""
    for key, kind in (("uuid", str), ("timestamp", str), ("offset", int), ("epoch", str)):
        assert isinstance(frame.get(key), kind), (key, frame)
    return {k: v for k, v in frame.items() if k not in ("uuid", "timestamp", "offset", "epoch")}


def sse_messages(response: requests.Response, count: int) -> list[dict[str, Any]]:
    """The first ``count`` message frames of an SSE stream (in one event or several)."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        got.extend(messages(sse_events(response, 1)[0][1]))
    return got


PSI_SENDER = """
import sys
import mflow
from tests.mflow import samples
stream = mflow.connect(sys.argv[1], mode=mflow.PUSH)
for name, message in samples.everything():
    if name in sys.argv[2:]:
        stream.forward(message)
stream.disconnect()
"""

# -- (a) a source fed by PSI's mflow reaches websocket, SSE and socket.io clients ------------


def test_psi_messages_reach_websocket_sse_and_socketio_clients(psi, procs, zmq_server, api):
    names = ["array", "raw"]
    sent = {name: [bytes(p) for p in encode(message)]
            for name, message in samples.everything() if name in names}
    ws_conn = api.connect("ws-user", channels=["det"])["conn_id"]
    sse_conn = api.connect("sse-user", channels=["det"])["conn_id"]
    sio_conn = api.connect("sio-user", channels=["det"])["conn_id"]
    ws = websocket.create_connection(ws_url(zmq_server, ws_conn), timeout=10)
    sio = StreamClient(zmq_server.url, auth={"conn_id": sio_conn})
    sse = requests.get(zmq_server.url + "/sse", params={"conn_id": sse_conn}, stream=True,
                       timeout=10)
    try:
        sio.next("user_connect")
        sender = procs.script(PSI_SENDER, ADDRESSES["det"], *names)
        assert finish(sender)[0] == 0
        want = [expected_frame(sent[name], "det", "det") for name in names]
        got_ws = messages(receive_frames(ws, lambda got: len(messages(got)) >= 2))
        got_sio = sio.frames(2)
        got_sse = sse_messages(sse, 2)
        for got in (got_ws, got_sio, got_sse):
            assert [without_stamp(frame) for frame in got] == want
            assert got[1]["offset"] == got[0]["offset"] + 1
        assert got_ws == got_sio == got_sse  # one frame, encoded once, for every client
        array = got_ws[0]["message"]
        assert array["header"] == {"htype": "array-1.0", "type": "uint16", "shape": [3, 4],
                                   "frame": 1}
        assert [p["size"] for p in array["parts"]] == [24, 24]
        status = door(zmq_server, "zmq-source:det")
        assert (status["state"], status["received"], status["malformed"]) == ("running", 2, 0)
        assert status["bytes"] == sum(len(p) for parts in sent.values() for p in parts)
    finally:
        ws.close()
        sio.close()
        sse.close()


# -- (b) a REST post reaches ZMQ outputs read by PSI's mflow and by ours ---------------------

PSI_RECEIVER = """
import sys
import mflow
from tests.mflow import samples
stream = mflow.connect(sys.argv[1], conn_type=mflow.CONNECT, receive_timeout=20000)
print("ready", flush=True)
message = stream.receive()
print(samples.dumps(None if message is None else message.data), flush=True)
stream.disconnect()
"""


def test_a_rest_post_reaches_outputs_read_by_psi_and_by_ours(psi, procs, zmq_server, api):
    conn = api.connect("rest-user", channels=["rest"])["conn_id"]
    ws = websocket.create_connection(ws_url(zmq_server, conn), timeout=10)
    psi_reader = procs.script(PSI_RECEIVER, ADDRESSES["out-rest-psi"])
    ours = reader(ADDRESSES["out-rest-ours"])
    try:
        assert read_line(psi_reader).strip() == "ready"
        api.message([{"channel": "rest", "user": "bob", "message": {"text": "to zmq", "n": 1}}])
        (frame,) = messages(receive_frames(ws, lambda got: len(messages(got)) >= 1))
        ours_got = ours.receive()
        status, out, err = finish(psi_reader)
        assert status == 0, err
    finally:
        ws.close()
        ours.disconnect()
    header = {"htype": "raw-1.0", "type": "json", "channel": "rest",
              "offset": frame["offset"], "epoch": frame["epoch"]}
    psi_data = samples.loads(out)
    assert psi_data["header"] == header
    assert [json.loads(part) for part in psi_data["data"]] == [frame]
    assert ours_got.data["header"] == header
    assert ours_got.frames[0] == json.dumps(header).encode()  # mflow's own JSON layout
    assert len(ours_got.frames) == 2 and json.loads(ours_got.frames[1]) == frame
    assert frame["message"] == {"text": "to zmq", "n": 1} and frame["user"] == "bob"
    assert b" " not in ours_got.frames[1].replace(b"to zmq", b"")  # compact JSON
    for name in ("zmq-output:rest-psi", "zmq-output:rest-ours"):
        shown = door(zmq_server, name)
        assert (shown["sent"], shown["dropped"]) == (1, 0), shown


# -- (c) a source's message reaches outputs byte for byte, modulo keeps them whole -----------


def test_source_to_outputs_byte_identical_and_modulo_keeps_messages_whole(zmq_server):
    todo = [[bytes(p) for p in encode(message)] for _, message in samples.everything()][:7]
    assert max(len(parts) for parts in todo) >= 5
    every = reader(ADDRESSES["out-pass"])
    third = reader(ADDRESSES["out-pass-3"])
    sender = pusher(ADDRESSES["pass"])
    try:
        for parts in todo:
            sender.send_multipart(parts)
        got_every = [every.receive().frames for _ in todo]
        got_third = [third.receive().frames for _ in range(3)]
        assert third.receive(block=False) is None
    finally:
        for closing in (every, third):
            closing.disconnect()
        sender.close()
    assert got_every == todo
    assert got_third == [todo[0], todo[3], todo[6]]  # the first, then every 3rd, whole
    assert door(zmq_server, "zmq-source:passer")["received"] == 7
    shown = door(zmq_server, "zmq-output:third")
    assert (shown["modulo"], shown["sent"], shown["dropped"]) == (3, 3, 0)


# -- (d) a stalled output drops (counted); another output of the channel gets everything ----


def test_a_stalled_output_drops_while_another_gets_everything(zmq_server):
    total = 60
    fine = reader(ADDRESSES["out-fine"])
    sender = pusher(ADDRESSES["stall"])
    try:
        for n in range(total):
            sender.send_multipart([json.dumps({"htype": "raw-1.0", "n": n}).encode(), b"x" * n])
        got = [fine.receive().data["header"]["n"] for _ in range(total)]
    finally:
        fine.disconnect()
        sender.close()
    assert got == list(range(total))
    # nobody reads "stalled" (queue_size 3): the message its writer took waits to be
    # sent, at most three are queued, every other one was dropped (oldest first), counted
    def settled() -> dict[str, Any] | None:
        shown = door(zmq_server, "zmq-output:stalled")
        return shown if shown["dropped"] + shown["queued"] == total - 1 else None

    stalled = wait_for(settled, what="the stalled output's drops")
    assert stalled["dropped"] >= total - 4 and stalled["queued"] <= 3
    assert (stalled["sent"], stalled["waits"], stalled["peers"]) == (0, 1, 0)
    assert stalled["state"] == "running"
    shown = door(zmq_server, "zmq-output:fine")
    assert (shown["sent"], shown["dropped"]) == (total, 0)
    assert zmq_server.get("/healthz").json()["hub"]["dropped"] >= total - 4


# -- (e) malformed messages are counted, and the next one passes -----------------------------


def test_malformed_messages_are_counted_and_the_next_passes(zmq_server, api):
    conn = api.connect("mal-user", channels=["mal"])["conn_id"]
    ws = websocket.create_connection(ws_url(zmq_server, conn), timeout=10)
    sender = pusher(ADDRESSES["mal"])
    good = [b'{"htype": "raw-1.0", "good": true}', b"ok"]
    try:
        sender.send_multipart([b"not json", b"data"])
        sender.send_multipart([b'{"htype": "no-such-1.0"}', b"data"])
        sender.send_multipart([b'{"htype": "array-1.0", "type": "uint16", "shape": [4]}', b"abc"])
        sender.send_multipart([b"[1, 2]"])
        sender.send_multipart(good)
        (frame,) = messages(receive_frames(ws, lambda got: len(messages(got)) >= 1))
    finally:
        ws.close()
        sender.close()
    assert without_stamp(frame) == expected_frame(good, "mal", "mal")
    status = door(zmq_server, "zmq-source:mal")
    assert (status["malformed"], status["received"], status["restarts"]) == (4, 1, 0)
    assert "header" in status["last_malformed"] or "JSON" in status["last_malformed"]
    assert "malformed message" in zmq_server.stderr


def test_the_metrics_have_every_door_figure(zmq_server):
    from tests.support.api import ADMIN_SECRET

    text = requests.get(zmq_server.url + "/metrics", auth=("admin", ADMIN_SECRET),
                        timeout=10).text
    assert 'channelstream_door_received{door="zmq-source:det"}' in text
    assert 'channelstream_door_dropped{door="zmq-output:stalled"}' in text
    assert 'channelstream_door_peers{door="zmq-output:all"}' in text


# -- (f) and (g): startup with bad settings, shutdown with traffic ---------------------------


@pytest.mark.parametrize("key, value, said", [
    ("zmq.sources", '[{"address": "tcp://127.0.0.1:9", "channel": "x", "mode": "push"}]',
     "item 0: 'mode' of a source must be pull or sub, got 'push'"),
    ("zmq.outputs", '[{"address": "tcp://127.0.0.1:9"}]', "item 0: needs a 'channel' string"),
    ("zmq.outputs", '[{"address": "tcp://*:9", "channel": "x", "modulo": 0}]',
     "'modulo' must be an integer"),
    ("zmq.max_inline_bytes", "lots", "expected an integer"),
])
def test_bad_zmq_settings_stop_startup_naming_the_key(tmp_path, key, value, said):
    from tests.support.server import run_to_exit

    server = run_to_exit(REPO / "development.ini", tmp_path, app={key: value})
    assert server.returncode != 0
    assert f"channelstream: bad setting {key}: " in server.stderr
    assert said in server.stderr


def test_sigterm_stops_promptly_with_sources_and_outputs_running(tmp_path: Path):
    source, connecting, stuck, read = tcp(), tcp(), tcp(), tcp()
    sources = [{"address": source, "conn_type": "bind", "channel": "t"},
               {"address": connecting, "channel": "t", "name": "nobody-there"}]
    outputs = [{"address": stuck, "conn_type": "bind", "channel": "t", "name": "stuck"},
               {"address": read, "conn_type": "bind", "channel": "t", "name": "read"}]
    context = zmq.Context()
    stop = threading.Event()
    with RunningServer(REPO / "development.ini", tmp_path,
                       app=zmq_app(sources, outputs)) as server:
        slow = context.socket(zmq.PULL)  # connected, reads nothing: the output waits
        slow.setsockopt(zmq.RCVHWM, 1)
        slow.connect(read)
        sender = context.socket(zmq.PUSH)
        sender.setsockopt(zmq.LINGER, 0)
        sender.connect(source)

        def flood() -> None:
            while not stop.is_set():
                try:
                    sender.send_multipart([b'{"htype": "raw-1.0"}', b"x" * 1000], zmq.NOBLOCK)
                except zmq.Again:
                    stop.wait(0.01)

        thread = threading.Thread(target=flood, daemon=True)
        thread.start()
        try:
            wait_for(lambda: door(server, "zmq-output:stuck")["dropped"] > 0
                     and door(server, "zmq-output:read")["waits"] > 0, what="both outputs full")
            assert door(server, "zmq-source:nobody-there")["state"] == "waiting"
            assert server.stop() == 0
        finally:
            stop.set()
            thread.join(10)
            for socket in (slow, sender):
                socket.close(linger=0)
            context.term()
    assert "Traceback" not in server.stderr
    assert "did not stop" not in server.stderr and "killing it" not in server.stderr
    assert "did not terminate" not in server.stderr


def test_pass_through_stays_byte_identical_on_the_redis_engine(tmp_path: Path):
    """With hub.engine = redis a message comes back to its own process through
    Redis: an output beside its source still sends the source's parts."""
    from tests.engines.test_redis import require_redis

    source, output = tcp(), tcp()
    app = zmq_app(
        [{"address": source, "conn_type": "bind", "channel": "pass", "name": "passer"}],
        [{"address": output, "conn_type": "bind", "channel": "pass", "name": "all"}],
        **{"hub.engine": "redis", "redis.url": require_redis()},
    )
    todo = [[bytes(p) for p in encode(message)] for _, message in samples.everything()][:5]
    with RunningServer(REPO / "development.ini", tmp_path, app=app) as server:
        every = reader(output)
        sender = pusher(source)
        try:
            first = []

            def through() -> bool:  # the output follows the channel once one comes out
                sender.send_multipart(todo[0])
                message = every.receive(block=False)
                if message is not None:
                    first.append(message.frames)
                return bool(first)

            wait_for(through, what="a message through the output")
            for parts in todo[1:]:
                sender.send_multipart(parts)
            got = first[:1]
            while len(got) < len(todo):
                frames = every.receive().frames
                if len(got) > 1 or frames != todo[0]:  # copies of the probe sent meanwhile
                    got.append(frames)
        finally:
            every.disconnect()
            sender.close()
        assert door(server, "zmq-source:passer")["malformed"] == 0
    assert got == todo
