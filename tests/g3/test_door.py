"""The G3 doors of the real server (development.ini with g3.* keys), with spt3g 1.0.2 as
the peer in its own process (tests/g3/spt3g_peer.py).

(a) spt3g's G3NetworkSender and a file spt3g wrote feed sources; websocket and
socket.io clients of the channel get the documented JSON; (b) spt3g's G3Reader
reads ``g3.listen``: metadata first (first-seen order), then live, byte for
byte; (c) a stalled client loses only Timepoint/Scan frames, counted, while
another gets everything; (d) decimation; (e) bad input is counted, sources
open again, the server goes on; (f) bad settings stop startup naming the key;
(g) SIGTERM stops with a stalled client. Our own frames are fed through a
plain TCP connection to a listening source (``tcp://*@127.0.0.1:port``).
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from typing import Any

import pytest
import websocket

from channelstream.g3 import FrameReader, G3Frame, G3FrameType, StreamServer, decode_frame
from tests.g3.helpers import SPT3G_FRAME, RawClient, make_frame
from tests.g3.peers import Peer, frame_spec, need_spt3g
from tests.sio.clients import StreamClient
from tests.support.api import ADMIN_SECRET, API_APP, api_client
from tests.support.server import REPO, RunningServer, free_port, run_to_exit
from tests.support.wait import wait_for
from tests.transports.test_transports import messages, receive_frames, ws_url

pytestmark = pytest.mark.timeout(120)

T, S, W, C, H, OBS = (G3FrameType.Timepoint, G3FrameType.Scan, G3FrameType.Wiring,
                      G3FrameType.Calibration, G3FrameType.Housekeeping,
                      G3FrameType.Observation)

#: A Calibration frame with every class spt3g_peer.py makes, and a NaN.
OBJECTS: dict[str, tuple[str, Any]] = {
    "i": ("G3Int", -42),
    "d": ("G3Double", 2.5),
    "nan": ("G3Double", math.nan),
    "b": ("G3Bool", True),
    "s": ("G3String", "héllo, wörld"),
    "vd": ("G3VectorDouble", [1.5, -2.0]),
    "vi": ("G3VectorInt", [1, 2, 3]),
    "vs": ("G3VectorString", ["a", "b"]),
    "md": ("G3MapDouble", {"x": 1.0}),
    "ts": ("G3Timestream", [0.0, 1.0, 2.0]),
}
#: What web clients get of it.
CALIBRATION_JSON = {
    "frame_type": "Calibration",
    "objects": {"i": -42, "d": 2.5, "nan": None, "b": True, "s": "héllo, wörld"},
    "opaque": {"vd": "G3VectorDouble", "vi": "G3VectorInt", "vs": "G3VectorString",
               "md": "G3MapDouble", "ts": "G3Timestream"},
}


def listen(port: int) -> str:
    return f"tcp://*@127.0.0.1:{port}"


def g3_server(start: Callable[..., RunningServer], **keys: str) -> RunningServer:
    """A development.ini server with the G3 server on a free port and ``keys``."""
    return start(app={**API_APP, "g3.listen": f"127.0.0.1:{free_port()}", **keys})


def doors(server: RunningServer) -> dict[str, dict[str, Any]]:
    return server.get("/healthz").json()["doors"]


def wait_door(server: RunningServer, name: str, check: Callable[[dict], Any],
              what: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        door = doors(server)[name]
        return door if check(door) else None

    return wait_for(ready, what=f"{name}: {what}")


def g3_address(server: RunningServer) -> tuple[str, int]:
    url = doors(server)["g3-server"]["address"]  # tcp://127.0.0.1:port
    host, port = url[len("tcp://"):].rsplit(":", 1)
    return host, int(port)


class Feed:
    """A sender into a listening source: one TCP connection, frames as bytes."""

    def __init__(self, port: int) -> None:
        self.sock: socket.socket = wait_for(lambda: _connect(port),
                                            what=f"the source listening on {port}")

    def send(self, *frames: G3Frame | bytes) -> None:
        self.sock.sendall(b"".join(f if isinstance(f, bytes) else f.encode() for f in frames))

    def close(self) -> None:
        self.sock.close()


def _connect(port: int) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=10)
    except ConnectionRefusedError:
        return None


def without_stamp(frame: dict[str, Any]) -> dict[str, Any]:
    for key, kind in (("uuid", str), ("timestamp", str), ("offset", int), ("epoch", str)):
        assert isinstance(frame.get(key), kind), (key, frame)
    return {k: v for k, v in frame.items() if k not in ("uuid", "timestamp", "offset", "epoch")}


def web_message(body: dict[str, Any], user: str = "g3:1", catchup: bool = False) -> dict:
    return {"type": "message", "channel": "g3", "user": user, "message": body,
            "edited": None, "catchup": catchup}


def peer_name(client: RawClient) -> str:
    host, port = client.sock.getsockname()[:2]
    return f"{host}:{port}"


def per_client(server: RunningServer) -> dict[str, dict[str, Any]]:
    return {c["peer"]: c for c in doors(server)["g3-server"]["per_client"]}


# -- (a) spt3g feeds sources; web clients get the JSON form ---------------------------------


def test_spt3g_sender_reaches_websocket_and_socketio_clients(server):
    need_spt3g()
    port = free_port()
    running = g3_server(server, **{"g3.sources": listen(port)})
    api = api_client(running)
    ws = websocket.create_connection(
        ws_url(running, api.connect("ws-user", channels=["g3"])["conn_id"]), timeout=30)
    sio_conn = api.connect("sio-user", channels=["g3"])["conn_id"]
    sio = StreamClient(running.url, auth={"conn_id": sio_conn})
    try:
        sio.next("user_connect")
        timepoints = [frame_spec("Timepoint", n=("G3Int", i), t=("G3Double", i / 2))
                      for i in range(5)]
        sent = [frame_spec("Calibration", **OBJECTS), *timepoints,
                frame_spec("Wiring", flag=("G3Bool", False))]
        Peer("send", "127.0.0.1", str(port), sent).finish()  # connects to our source
        # spt3g's pipeline adds one PipelineInfo frame (a G3PipelineInfo object)
        got_ws = messages(receive_frames(ws, lambda got: len(messages(got)) >= 8, timeout=60))
        got_sio = sio.frames(8, timeout=60)
        assert got_ws == got_sio  # one frame, encoded once, for every client
        info = [f for f in got_ws if f["message"]["frame_type"] == "PipelineInfo"]
        assert len(info) == 1 and set(info[0]["message"]["opaque"].values()) == {
            "G3PipelineInfo"}
        frames = [without_stamp(f) for f in got_ws if f not in info]
        assert frames == [
            web_message(CALIBRATION_JSON),
            *[web_message({"frame_type": "Timepoint", "objects": {"n": i, "t": i / 2},
                           "opaque": {}}) for i in range(5)],
            web_message({"frame_type": "Wiring", "objects": {"flag": False}, "opaque": {}}),
        ]
        offsets = [f["offset"] for f in got_ws]
        assert offsets == list(range(offsets[0], offsets[0] + 8))
        # the sender is gone: the source listens for the next one
        source = wait_door(running, "g3-source:1", lambda d: d["state"] == "running",
                           "listening again")
        assert (source["frames"], source["data_frames"], source["metadata_frames"],
                source["errors"], source["connections"]) == (8, 5, 3, 0, 1)
        assert source["types"] == {"PipelineInfo": 1, "Calibration": 1, "Timepoint": 5,
                                   "Wiring": 1}
    finally:
        ws.close()
        sio.close()


def test_a_file_written_by_spt3g_is_read_once_and_its_metadata_replayed(server, tmp_path):
    need_spt3g()
    path = tmp_path / "run.g3"
    Peer("write", str(path), [
        frame_spec("Calibration", **OBJECTS),
        frame_spec("Timepoint", n=("G3Int", 1)),
        frame_spec("Wiring", flag=("G3Bool", False)),
        frame_spec("Timepoint", n=("G3Int", 2)),
        frame_spec("Calibration", i=("G3Int", 7)),
    ]).finish()
    written = list(FrameReader(path))
    assert [f.type for f in written] == [C, T, W, T, C]
    running = g3_server(server, **{"g3.sources": str(path)})
    source = wait_door(running, "g3-source:1", lambda d: d["state"] == "finished", "finished")
    assert (source["frames"], source["errors"], source["restarts"], source["mode"]) == (
        5, 0, 0, "file")
    assert running.get("/healthz").json()["status"] == "ok"  # finished is healthy
    # a web client that joins now gets the latest of each metadata type, first seen first
    api = api_client(running)
    ws = websocket.create_connection(
        ws_url(running, api.connect("late", channels=["g3"])["conn_id"]), timeout=30)
    g3 = RawClient(g3_address(running))
    reader = Peer("read", f"tcp://127.0.0.1:{g3_address(running)[1]}")
    try:
        got = messages(receive_frames(ws, lambda got: len(messages(got)) >= 2, timeout=60))
        assert [without_stamp(f) for f in got] == [
            web_message({"frame_type": "Calibration", "objects": {"i": 7}, "opaque": {}},
                        catchup=True),
            web_message({"frame_type": "Wiring", "objects": {"flag": False}, "opaque": {}},
                        catchup=True),
        ]
        # G3 clients get the same two frames, byte for byte as spt3g wrote them
        wait_for(lambda: len(g3.frames) == 2, what="the G3 client's replay")
        assert [f.encode() for f in g3.frames] == [written[4].encode(), written[2].encode()]
        wait_door(running, "g3-server", lambda d: d["clients"] == 2, "two G3 clients")
        assert doors(running)["g3-source:1"]["frames"] == 5  # read once, not again
    finally:
        ws.close()
    assert running.stop() == 0
    reader.finish()  # the server closed spt3g's connection: its G3Reader ended
    assert [(f["type"], f["objects"]) for f in reader.data_frames()] == [
        ("Calibration", {"i": ["G3Int", 7]}), ("Wiring", {"flag": ["G3Bool", False]})]
    wait_for(lambda: g3.eof, what="EOF for our client")


# -- (b) spt3g's G3Reader reads g3.listen ------------------------------------------------


def test_spt3g_reader_gets_metadata_first_then_live_frames_byte_for_byte(server):
    need_spt3g()
    port = free_port()
    running = g3_server(server, **{"g3.sources": listen(port)})
    feed = Feed(port)
    first = [make_frame(W, n=1), make_frame(T, n=2), make_frame(C, n=3), make_frame(W, n=4),
             make_frame(S, n=5), make_frame(OBS, n=6)]
    feed.send(*first)
    wait_door(running, "g3-source:1", lambda d: d["frames"] == 6, "6 frames")
    api = api_client(running)
    ws = websocket.create_connection(
        ws_url(running, api.connect("web", channels=["g3"])["conn_id"]), timeout=30)
    host, g3_port = g3_address(running)
    reader = Peer("read", f"tcp://{host}:{g3_port}")
    ours = RawClient((host, g3_port))
    try:
        wait_door(running, "g3-server", lambda d: d["clients"] == 2, "two G3 clients")
        api.message([{"channel": "g3", "user": "bob", "message": {"text": "not a frame"}}])
        live = [make_frame(T, n=7), decode_frame(SPT3G_FRAME), make_frame(T, n=9)]
        feed.send(*live)
        expected = [first[3], first[2], first[5], *live]
        wait_for(lambda: len(ours.frames) == 6, what="our client's 6 frames")
        assert [f.encode() for f in ours.frames] == [f.encode() for f in expected]
        # the web client got the REST post and the frames; G3 clients only frames
        got = messages(receive_frames(ws, lambda got: len(messages(got)) >= 7, timeout=60))
        assert [f["message"].get("text") or f["message"]["frame_type"] for f in got] == [
            "Wiring", "Calibration", "Observation", "not a frame", *["Timepoint"] * 3]
        assert [f["catchup"] for f in got] == [True] * 3 + [False] * 4
        server_door = wait_door(running, "g3-server", lambda d: d["sent"] == 12, "12 sent")
        assert (server_door["dropped"], server_door["skipped"]) == (0, 0)
    finally:
        ws.close()
        feed.close()
    assert running.stop() == 0  # SIGTERM: our server closes its G3 clients
    reader.finish()
    got = [(f["type"], f["objects"].get("n", f["objects"].get("i"))) for f in
           reader.data_frames()]
    assert got == [("Wiring", ["G3Int", 4]), ("Calibration", ["G3Int", 3]),
                   ("Observation", ["G3Int", 6]), ("Timepoint", ["G3Int", 7]),
                   ("Timepoint", ["G3Int", 5]), ("Timepoint", ["G3Int", 9])]
    wait_for(lambda: ours.eof, what="EOF for our client")
    assert ours.error is None


# -- (c) a stalled client loses only data frames --------------------------------------------


def test_a_stalled_client_loses_only_timepoints_while_another_gets_everything(server):
    port = free_port()
    running = g3_server(server, **{"g3.sources": listen(port), "g3.max_queue_size": "5"})
    address = g3_address(running)
    healthy = RawClient(address)
    stalled = RawClient(address, stalled=True, rcvbuf=4096)
    feed = Feed(port)
    try:
        wait_door(running, "g3-server", lambda d: d["clients"] == 2, "two G3 clients")
        feed.send(make_frame(H, n=-1))
        wait_for(lambda: len(healthy.frames) == 1, what="the first frame")
        pad = "x" * 100_000
        for n in range(300):  # 30 MB: far more than the stalled client's socket buffers
            frame_type = H if n % 60 == 0 else T
            feed.send(make_frame(frame_type, n=n, pad=pad))
            wait_for(lambda n=n: len(healthy.frames) == n + 2, interval=0.002,
                     what=f"the healthy client's frame {n}")
        clients = per_client(running)
        assert clients[peer_name(healthy)]["dropped"] == 0
        dropped = clients[peer_name(stalled)]["dropped"]
        assert dropped > 0
        server_door = doors(running)["g3-server"]
        assert server_door["dropped"] == dropped and server_door["overflowed"] == 0
        stalled.resume()
        wait_for(lambda: len(stalled.frames) == 301 - dropped, what="the stalled client's rest")
    finally:
        feed.close()
        healthy.close()
        stalled.close()
    got = [(f.type, f["n"]) for f in stalled.frames]
    assert [g for g in got if g[0] != T] == [(H, -1)] + [(H, n) for n in range(0, 300, 60)]
    assert [n for _, n in got] == sorted(n for _, n in got)  # in order, only gaps
    assert [(f.type, f["n"]) for f in healthy.frames] == [(H, -1)] + [
        (H if n % 60 == 0 else T, n) for n in range(300)]
    assert running.get("/healthz").json()["hub"]["dropped"] >= dropped


# -- (d) decimation --------------------------------------------------------------------------


def test_decimation_thins_g3_clients_only(server):
    port = free_port()
    running = g3_server(server, **{"g3.sources": listen(port),
                                   "g3.decimation": "Timepoint=10, Scan=0"})
    api = api_client(running)
    ws = websocket.create_connection(
        ws_url(running, api.connect("web", channels=["g3"])["conn_id"]), timeout=30)
    g3 = RawClient(g3_address(running))
    feed = Feed(port)
    try:
        wait_door(running, "g3-server", lambda d: d["clients"] == 1, "a G3 client")
        frames = [make_frame(W, n=0), *[make_frame(T, n=n) for n in range(1, 51)],
                  make_frame(S, n=100), make_frame(W, n=200), make_frame(T, n=51)]
        feed.send(*frames)
        wait_for(lambda: len(g3.frames) == 8, what="8 frames")
        assert [(f.type, f["n"]) for f in g3.frames] == [
            (W, 0), (T, 1), (T, 11), (T, 21), (T, 31), (T, 41), (W, 200), (T, 51)]
        got = messages(receive_frames(ws, lambda got: len(messages(got)) >= len(frames),
                                      timeout=60))
        assert [f["message"]["objects"]["n"] for f in got] == [f["n"] for f in frames]
        assert doors(running)["g3-server"]["decimation"] == {"Timepoint": 10, "Scan": 0}
    finally:
        ws.close()
        feed.close()
        g3.close()


# -- (e) bad input ---------------------------------------------------------------------------


def test_bad_input_is_counted_and_sources_open_again(server):
    listening, upstream_port = free_port(), free_port()
    upstream = StreamServer("127.0.0.1", upstream_port, concurrency="threads").start()
    running = g3_server(server, **{
        "g3.sources": f"{listen(listening)}, tcp://127.0.0.1:{upstream_port}",
        "g3.max_frame_size": "4096",
    })
    g3 = RawClient(g3_address(running))
    try:
        wait_door(running, "g3-server", lambda d: d["clients"] == 1, "a G3 client")
        # garbage: counted, the source listens again (after 1 s)
        garbage = Feed(listening)
        garbage.send(b"\x01\xff\xff\xff\xff" + b"\x00" * 64)
        door = wait_door(running, "g3-source:1", lambda d: d["errors"] == 1, "an error")
        assert door["last_error"].startswith(f"tcp://*@127.0.0.1:{listening}: ")
        garbage.close()
        good = Feed(listening)
        good.send(make_frame(W, n=1), make_frame(T, n=2))
        wait_for(lambda: len(g3.frames) == 2, what="frames after the garbage")
        # a stream that ends inside a frame, then a frame over g3.max_frame_size
        good.send(make_frame(T, n=3).encode()[:20])
        good.close()
        wait_door(running, "g3-source:1", lambda d: d["errors"] == 2, "a truncated stream")
        big = Feed(listening)
        big.send(make_frame(T, n=4, pad="x" * 10_000))
        door = wait_door(running, "g3-source:1", lambda d: d["errors"] == 3, "a large frame")
        assert "max_frame_size" in door["last_error"]
        big.close()
        # a connecting source: its server goes away and comes back
        wait_door(running, "g3-source:2", lambda d: d["state"] == "connected", "connected")
        upstream.publish(make_frame(T, n=5))
        wait_for(lambda: len(g3.frames) == 3, what="the upstream's frame")
        upstream.stop()
        wait_door(running, "g3-source:2", lambda d: d["state"] != "connected", "EOF")
        upstream = StreamServer("127.0.0.1", upstream_port, concurrency="threads").start()
        door = wait_door(running, "g3-source:2",
                         lambda d: d["state"] == "connected" and d["connections"] == 2,
                         "connected again")
        upstream.publish(make_frame(T, n=6))
        wait_for(lambda: len(g3.frames) == 4, what="the new upstream's frame")
        assert [f["n"] for f in g3.frames] == [1, 2, 5, 6]
        assert running.returncode is None and running.get("/healthz").status_code == 200
        assert doors(running)["g3-server"]["clients"] == 1  # never cut
        listening_door = doors(running)["g3-source:1"]
        assert (listening_door["frames"], listening_door["restarts"]) == (2, 0)
    finally:
        upstream.stop()
        g3.close()
    metrics = running.get("/metrics", auth=("prometheus", ADMIN_SECRET)).text
    assert 'channelstream_door_errors{door="g3-source:1"} 3.0' in metrics
    assert 'channelstream_door_frames{door="g3-source:2"} 2.0' in metrics


# -- (f) bad settings, busy ports --------------------------------------------------------


@pytest.mark.parametrize(("keys", "line"), [
    ({"g3.sources": "tcp://daq"}, "channelstream: bad setting g3.sources: no port in"),
    ({"g3.decimation": "Timepoint=ten"}, "channelstream: bad setting g3.decimation: "),
    ({"g3.sources": "no/such/run.g3"}, "channelstream: bad setting g3.sources: no such file"),
])
def test_bad_g3_settings_stop_startup_naming_the_key(tmp_path, keys, line):
    done = run_to_exit(REPO / "development.ini", tmp_path, app=keys)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith(line), done.stderr[-2000:]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("key", ["g3.listen", "g3.sources"])
def test_a_busy_port_stops_startup_naming_the_door(tmp_path, key):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        value = f"127.0.0.1:{port}" if key == "g3.listen" else listen(port)
        done = run_to_exit(REPO / "development.ini", tmp_path, app={key: value})
    assert done.returncode != 0
    door = "g3-server" if key == "g3.listen" else "g3-source:1"
    assert f"door '{door}' failed to start" in done.stderr, done.stderr[-2000:]
    assert f"127.0.0.1:{port}" in done.stderr


# -- (g) SIGTERM ---------------------------------------------------------------------------


def test_sigterm_stops_with_a_stalled_client_and_a_connected_sender(server):
    port = free_port()
    running = g3_server(server, **{"g3.sources": listen(port)})
    stalled = RawClient(g3_address(running), stalled=True, rcvbuf=4096)
    feed = Feed(port)
    try:
        wait_door(running, "g3-server", lambda d: d["clients"] == 1, "a G3 client")
        feed.send(*[make_frame(H if n == 0 else T, n=n, pad="x" * 100_000) for n in range(100)])
        wait_door(running, "g3-source:1", lambda d: d["frames"] == 100, "100 frames")
        wait_for(lambda: per_client(running)[peer_name(stalled)]["queued"] > 0,
                 what="frames queued for the stalled client")
        assert running.stop() == 0
        stderr = running.stderr
        assert "cut at stop" in stderr
        assert "door 'g3-server' stopped" in stderr and "door 'g3-source:1' stopped" in stderr
    finally:
        feed.close()
        stalled.resume()
    wait_for(lambda: stalled.eof or stalled.error is not None, what="the stalled client closed")
