"""Interoperation with spt3g 1.0.2 itself, run as a separate process (tests/g3/spt3g_peer.py).

Files both ways (raw and compressed), spt3g's G3NetworkSender to our
reader (connect and listen modes), our streaming server and sender to
spt3g's G3Reader (metadata replay, max_queue_size drops with a stalled
client, decimation). Peers in spt3g's all-interfaces modes (``*``) run with
us inside a private network namespace (:mod:`tests.g3.netns`).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from channelstream.g3 import (
    FrameReader,
    FrameSender,
    FrameWriter,
    G3Frame,
    G3FrameType,
    StreamServer,
    TcpSource,
    core,
    describe,
)
from tests.g3.helpers import make_frame
from tests.g3.netns import netns_problem, run_in_netns
from tests.g3.peers import Peer, frame_spec, need, need_spt3g
from tests.support.wait import wait_for

OBJECTS: dict[str, tuple[str, Any]] = {
    "i": ("G3Int", -42),
    "d": ("G3Double", 2.5),
    "b": ("G3Bool", True),
    "s": ("G3String", "héllo, wörld"),
    "vd": ("G3VectorDouble", [1.5, -2.0]),
    "vi": ("G3VectorInt", [1, 2, 3]),
    "vs": ("G3VectorString", ["a", "b"]),
    "md": ("G3MapDouble", {"x": 1.0}),
    "ts": ("G3Timestream", [0.0, 1.0, 2.0]),
}
SCALARS = {"i": -42, "d": 2.5, "b": True, "s": "héllo, wörld"}
OPAQUE = {"vd": "G3VectorDouble", "vi": "G3VectorInt", "vs": "G3VectorString",
          "md": "G3MapDouble", "ts": "G3Timestream"}


@pytest.fixture(autouse=True)
def _spt3g() -> None:
    need_spt3g()


@pytest.fixture(scope="module")
def netns() -> None:
    need(netns_problem())


def _spec_frames() -> list[dict[str, Any]]:
    return [
        frame_spec("Calibration", **OBJECTS),
        frame_spec("Timepoint", n=("G3Int", 1), s=("G3String", "")),
        frame_spec("Wiring", flag=("G3Bool", False)),
    ]


def _check_ours(frame: G3Frame) -> None:
    assert {k: frame[k] for k in SCALARS} == SCALARS
    for name, cls in OPAQUE.items():
        assert frame.object(name).class_name == cls


def _spt3g_objects() -> dict[str, list]:
    return {name: list(value) for name, value in OBJECTS.items()}


# -- files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["run.g3", "run.g3.gz", "run.g3.bz2", "run.g3.xz"])
def test_files_written_by_spt3g_are_read_and_written_back(tmp_path, name: str) -> None:
    theirs = tmp_path / name
    Peer("write", str(theirs), _spec_frames()).finish()
    frames = list(FrameReader(theirs))
    assert [f.type.name for f in frames] == ["Calibration", "Timepoint", "Wiring"]
    _check_ours(frames[0])
    assert frames[1]["n"] == 1 and frames[2]["flag"] is False
    raw = b"".join(f.encode() for f in frames)
    # rebuilt from its objects, every frame encodes to spt3g's exact bytes
    for frame in frames:
        rebuilt = G3Frame(frame.type)
        for key in frame.keys():
            rebuilt[key] = frame.object(key)
        assert rebuilt.encode() == frame.encode()
    ours = tmp_path / ("ours." + name.split(".", 1)[1])
    with FrameWriter(ours) as writer:
        for frame in frames:
            writer.write(frame)
    if name == "run.g3":
        assert ours.read_bytes() == theirs.read_bytes() == raw
    peer = Peer("read", str(ours))
    peer.finish()
    got = peer.data_frames()
    assert [f["type"] for f in got] == ["Calibration", "Timepoint", "Wiring"]
    assert got[0]["objects"] == _spt3g_objects()


def test_files_written_by_us_are_read_by_spt3g(tmp_path) -> None:
    path = tmp_path / "ours.g3.gz"
    with core.G3Writer(str(path)) as writer:
        frame = make_frame(G3FrameType.Housekeeping, i=-42, d=2.5, b=True, s="héllo, wörld")
        frame["empty"] = ""
        writer(frame)
        writer(make_frame(G3FrameType.Scan, big=1 << 62))
    peer = Peer("read", str(path))
    peer.finish()
    got = peer.data_frames()
    assert got[0] == {"type": "Housekeeping", "objects": {
        "i": ["G3Int", -42], "d": ["G3Double", 2.5], "b": ["G3Bool", True],
        "s": ["G3String", "héllo, wörld"], "empty": ["G3String", ""]}}
    assert got[1] == {"type": "Scan", "objects": {"big": ["G3Int", 1 << 62]}}


# -- spt3g's sender to our reader ----------------------------------------------------------


def _timepoints(n: int) -> list[dict[str, Any]]:
    return [frame_spec("Timepoint", n=("G3Int", i)) for i in range(n)]


def spt3g_server_to_our_reader() -> dict[str, Any]:
    """spt3g's G3NetworkSender in '*' mode (every interface: netns), our reader connects."""
    frames = [frame_spec("Calibration", **OBJECTS), *_timepoints(50)]
    peer = Peer("send", "*", "4536", frames, {"wait": True}, stdin=True)
    peer.wait_event("ready")
    reader = FrameReader("tcp://127.0.0.1:4536")
    source = reader.open_next()
    source.open()  # connected (spt3g accepts when the next frame passes)
    peer.send_line()
    got = [describe(f) for f in reader]  # ends when the spt3g process exits
    peer.finish()
    return {"frames": got}


def test_spt3g_streaming_server_to_our_reader(netns) -> None:
    frames = run_in_netns("tests.g3.test_interop:spt3g_server_to_our_reader")["frames"]
    info = [f for f in frames if f["type"] == "PipelineInfo"]  # spt3g's pipelines add one
    assert len(info) == 1
    assert {o["class"] for o in info[0]["objects"].values()} == {"G3PipelineInfo"}
    frames = [f for f in frames if f["type"] != "PipelineInfo"]
    assert frames[0]["type"] == "Calibration"
    assert {k: frames[0]["objects"][k] for k in SCALARS} == SCALARS
    assert {k: frames[0]["objects"][k]["class"] for k in OPAQUE} == OPAQUE
    assert [f["objects"]["n"] for f in frames[1:]] == list(range(50))


@pytest.mark.parametrize("concurrency", ["threads", "greenlets"])
def test_spt3g_sender_to_our_listening_reader(concurrency: str) -> None:
    source = TcpSource("tcp://*@127.0.0.1:0", concurrency=concurrency)
    port = source.bind()[1]
    peer = Peer("send", "127.0.0.1", str(port), [frame_spec("Wiring", **OBJECTS),
                                                *_timepoints(200)])
    frames = list(source.frames())  # spt3g closes only when its process exits
    peer.finish()
    frames = [f for f in frames if f.type != G3FrameType.PipelineInfo]  # spt3g adds one
    assert frames[0].type == G3FrameType.Wiring
    _check_ours(frames[0])
    assert [f["n"] for f in frames[1:]] == list(range(200))


def spt3g_sender_to_our_reader_on_every_interface() -> dict[str, Any]:
    """Our G3Reader on tcp://*:4536 (every interface: netns); spt3g connects to it."""
    got: list = []
    pipe = core.G3Pipeline()
    pipe.Add(core.G3Reader, filename="tcp://*:4536")  # binds here
    pipe.Add(lambda frame: got.append(frame.type.name))
    peer = Peer("send", "::1", "4536", _timepoints(10))
    pipe.Run(signal_halt=False)
    peer.finish()
    return {"types": got}


def test_spt3g_sender_to_our_reader_listening_everywhere(netns) -> None:
    types = run_in_netns("tests.g3.test_interop:spt3g_sender_to_our_reader_on_every_interface")
    assert [t for t in types["types"] if t != "PipelineInfo"] == [
        *["Timepoint"] * 10, "EndProcessing"]


# -- our server and sender to spt3g's reader -------------------------------------------------


def _client(server: StreamServer, **options: Any) -> Peer:
    before = server.accepted
    peer = Peer("read", f"tcp://127.0.0.1:{server.address[1]}", options, stdin=True)
    wait_for(lambda: server.accepted > before, what="spt3g's reader to connect")
    return peer


@pytest.mark.parametrize("concurrency", ["threads", "greenlets"])
def test_our_server_replays_metadata_to_spt3g(concurrency: str) -> None:
    server = StreamServer("127.0.0.1", 0, concurrency=concurrency).start()
    try:
        for frame_type, n in [("Wiring", 1), ("Timepoint", 2), ("Calibration", 3),
                              ("Wiring", 4), ("Scan", 5), ("Observation", 6)]:
            server.publish(make_frame(G3FrameType[frame_type], n=n))
        peer = _client(server)
        for n in range(7, 10):
            server.publish(make_frame(G3FrameType.Timepoint, n=n))
    finally:
        server.stop()
    peer.finish()  # the reader ends: the server closed its socket
    got = [(f["type"], f["objects"]["n"][1]) for f in peer.data_frames()]
    assert got == [("Wiring", 4), ("Calibration", 3), ("Observation", 6),
                   ("Timepoint", 7), ("Timepoint", 8), ("Timepoint", 9)]


def test_max_queue_size_drops_for_a_stalled_spt3g_client() -> None:
    server = StreamServer("127.0.0.1", 0, max_queue_size=10).start()
    healthy = _client(server)
    (healthy_port,) = [c.peer for c in server.clients]
    stalled = _client(server, stall=True)
    try:
        # (spt3g's pipelines hold Wiring, Calibration and Observation frames back until
        # another type passes: Housekeeping goes through at once)
        server.publish(make_frame(G3FrameType.Housekeeping, n=-1))
        stalled.wait_event("stalled")  # it has read that frame and reads no more
        pad = "x" * 100_000
        for n in range(300):  # 30 MB: more than the stalled client's socket buffers
            frame_type = G3FrameType.Housekeeping if n % 60 == 0 else G3FrameType.Timepoint
            wait_for(lambda: _queued(server, healthy_port) < 5, interval=0.001,
                     what="the healthy client")
            server.publish(make_frame(frame_type, n=n, pad=pad))
        wait_for(lambda: sum(c.frames for c in server.clients if c.peer == healthy_port) == 301,
                 what="the healthy client's frames")
        drops = {c.peer: c.dropped for c in server.clients}
    finally:
        stalled.send_line()
        server.stop()
    healthy.finish()
    stalled.finish()
    assert drops[healthy_port] == 0
    dropped = sum(drops.values())
    assert dropped > 0
    assert len(healthy.data_frames()) == 301
    got = [(f["type"], f["objects"]["n"][1]) for f in stalled.data_frames()]
    assert len(got) == 301 - dropped
    assert [g for g in got if g[0] != "Timepoint"] == [("Housekeeping", -1)] + [
        ("Housekeeping", n) for n in range(0, 300, 60)]  # metadata is never dropped
    assert [g[1] for g in got] == sorted(g[1] for g in got)


def _queued(server: StreamServer, peer: str) -> int:
    return next(c.queued for c in server.clients if c.peer == peer)


def test_decimation_to_spt3g() -> None:
    throttled = core.G3ThrottledNetworkSender(
        hostname="*@127.0.0.1", port=0,
        frame_decimation={G3FrameType.Timepoint: 10, G3FrameType.Scan: 0},
    )
    server = throttled.sender.server
    peer = _client(server)
    pipe = core.G3Pipeline()
    frames = [make_frame(G3FrameType.Timepoint, n=n) for n in range(1, 51)]
    frames += [make_frame(G3FrameType.Scan, n=100), make_frame(G3FrameType.Wiring, n=200)]
    pending = list(frames)
    pipe.Add(lambda frame: [pending.pop(0)] if pending else [])
    pipe.Add(throttled)
    pipe.Run()
    peer.finish()
    got = [(f["type"], f["objects"]["n"][1]) for f in peer.data_frames()]
    assert got == [("Timepoint", n) for n in range(10, 51, 10)] + [("Wiring", 200)]


def our_sender_to_spt3g_listening_reader() -> dict[str, Any]:
    """spt3g's G3Reader on tcp://*:4536 (every interface: netns); our sender connects."""
    peer = Peer("read", "tcp://*:4536")
    peer.wait_event("reading")
    for _ in range(200):  # spt3g binds in its constructor, after printing "reading"
        try:
            sender = FrameSender("127.0.0.1", 4536, connect_timeout=5).start()
            break
        except OSError:
            threading.Event().wait(0.05)
    for n in range(100):
        sender.publish(make_frame(G3FrameType.Timepoint, n=n, pad="y" * 20_000))
    sender.stop()
    peer.finish()  # spt3g's reader ends at once: our sender closed the connection
    return {"n": [f["objects"]["n"][1] for f in peer.data_frames()]}


def test_our_sender_to_spt3g_listening_reader(netns) -> None:
    result = run_in_netns("tests.g3.test_interop:our_sender_to_spt3g_listening_reader")
    assert result["n"] == list(range(100))
