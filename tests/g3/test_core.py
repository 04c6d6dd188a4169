"""channelstream.g3.core in place of spt3g.core: the seed's examples, run as written.

Each code example of the seed ("Network Streaming") runs verbatim but for
the import and the host names (``name.of.remote.host`` and
``name.of.streamer.host`` become 127.0.0.1, the cal data path a real file).
They bind every interface on port 4536 (``hostname='*'``,
``tcp://*:4536``), so they run in a private network namespace
(:mod:`tests.g3.netns`), once in plain threads and once in a process
monkey-patched by gevent.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
from typing import Any

import pytest

from channelstream.g3 import core
from tests.g3.helpers import make_frame
from tests.g3.netns import netns_problem, run_in_netns
from tests.g3.peers import need

#: The seed's examples, as written there.
SEED = {
    "sender": "pipe.Add(core.G3NetworkSender, hostname='name.of.remote.host', port=4536)",
    "server": "pipe.Add(core.G3NetworkSender, hostname='*', port=4536)",
    "client": "pipe.Add(core.G3Reader, filename='tcp://name.of.streamer.host:4536')",
    "server_queue": "pipe.Add(core.G3NetworkSender, hostname='*', port=4536, max_queue_size=10)",
    "throttled": "pipe.Add(core.G3ThrottledNetworkSender, hostname='*', port=4536, "
    "max_queue_size=10, frame_decimation = {G3FrameType.Timepoint: 10})",
    "mixed": "pipe.Add(core.G3Reader, filename=['/path/to/some/cal/data', "
    "'tcp://name.of.streamer.host:4536'])",
    "listen": "pipe.Add(core.G3Reader, filename='tcp://*:4536')",
}


def _add(pipe: core.G3Pipeline, example: str, cal_path: str = "") -> None:
    code = SEED[example].replace("name.of.remote.host", "127.0.0.1")
    code = code.replace("name.of.streamer.host", "127.0.0.1")
    code = code.replace("/path/to/some/cal/data", cal_path)
    exec(code, {"core": core, "G3FrameType": core.G3FrameType, "pipe": pipe})


def _frames(metadata: bool, timepoints: int) -> list[core.G3Frame]:
    frames = [make_frame(core.G3FrameType.Wiring, n=-1)] if metadata else []
    return frames + [make_frame(core.G3FrameType.Timepoint, n=i) for i in range(timepoints)]


def _source(frames: list[core.G3Frame], gate: threading.Event | None = None,
            pace=None):
    """Emit ``frames``; Timepoints only once ``gate`` is set (the client is connected)
    and ``pace(i)`` has returned (the client has what was sent before it:
    max_queue_size=10 would rightly drop frames of a faster source)."""
    pending = list(frames)

    def source(frame):
        if not pending:
            return []
        if pending[0].type == core.G3FrameType.Timepoint:
            if gate is not None:
                gate.wait(30)
            if pace is not None:
                pace(pending[0]["n"])
        return [pending.pop(0)]

    return source


def _collect(into: list, seen_wiring: threading.Event | None = None,
             arrived: threading.Condition | None = None):
    def collect(frame):
        if frame.type == core.G3FrameType.EndProcessing:
            return
        into.append([frame.type.name, frame.get("n")])
        if seen_wiring is not None and frame.type == core.G3FrameType.Wiring:
            seen_wiring.set()
        if arrived is not None:
            with arrived:
                arrived.notify_all()

    return collect


def _run_in_thread(pipe: core.G3Pipeline) -> threading.Thread:
    thread = threading.Thread(target=functools.partial(pipe.Run, signal_halt=False), daemon=True)
    thread.start()
    return thread


def seed_scenario(server: str, client: str, timepoints: int = 30) -> dict[str, Any]:
    """Run one sending example and one reading example of the seed against each other."""
    got: list = []
    connected = threading.Event()
    every = 10 if server == "throttled" else 1
    head = 1 + (client == "mixed")

    arrived = threading.Condition()

    def pace(index: int) -> None:
        sent = head + sum(1 for j in range(index) if (j + 1) % every == 0)
        with arrived:
            arrived.wait_for(lambda: len(got) >= sent, timeout=30)

    with tempfile.TemporaryDirectory() as folder:
        cal = os.path.join(folder, "cal data")
        with core.G3Writer(cal) as writer:
            writer(make_frame(core.G3FrameType.Calibration, n=-2))
        if server == "sender":  # connects: the listening reader must be there first
            reading = core.G3Pipeline()
            _add(reading, client, cal)
            reading.Add(_collect(got))
            thread = _run_in_thread(reading)
            sending = core.G3Pipeline()
            sending.Add(_source(_frames(False, timepoints)))
            _add(sending, server)
            sending.Run(signal_halt=False)
        else:
            sending = core.G3Pipeline()
            sending.Add(_source(_frames(True, timepoints), connected, pace))
            _add(sending, server)
            reading = core.G3Pipeline()
            _add(reading, client, cal)
            reading.Add(_collect(got, connected, arrived))
            thread = _run_in_thread(reading)
            sending.Run(signal_halt=False)
        thread.join(30)
        return {"frames": got, "reader_ended": not thread.is_alive()}


@pytest.fixture(scope="module")
def _netns() -> None:
    need(netns_problem())


def _expected(example: str, timepoints: int = 30) -> list:
    every = 10 if example == "throttled" else 1
    return [["Timepoint", i] for i in range(timepoints) if (i + 1) % every == 0]


@pytest.mark.parametrize("patched", [False, True], ids=["threads", "gevent-patched"])
@pytest.mark.parametrize(
    "server, client",
    [
        ("sender", "listen"),
        ("server", "client"),
        ("server_queue", "client"),
        ("throttled", "client"),
        ("server", "mixed"),
    ],
)
def test_seed_examples(_netns, server: str, client: str, patched: bool) -> None:
    result = run_in_netns("tests.g3.test_core:seed_scenario", server=server, client=client,
                          monkey_patch=patched)
    assert result["reader_ended"], "the reader saw no end (EndProcessing closes the sender)"
    frames = result["frames"]
    head = []
    if client == "mixed":
        head.append(["Calibration", -2])
    if server != "sender":
        head.append(["Wiring", -1])
    assert frames == head + _expected(server)


def test_core_names() -> None:
    for name in ("G3Pipeline", "G3Reader", "G3Writer", "G3NetworkSender",
                 "G3ThrottledNetworkSender", "G3FrameType", "G3Frame", "G3Int", "G3Double",
                 "G3Bool", "G3String", "G3Module", "G3File", "pipesegment"):
        assert hasattr(core, name), name


def test_g3file_and_writer_streams(tmp_path) -> None:
    path = tmp_path / "run.g3"
    writer = core.G3Writer(filename=str(path), streams=[core.G3FrameType.Timepoint])
    writer(make_frame(core.G3FrameType.Wiring, n=0))
    writer(make_frame(core.G3FrameType.Timepoint, n=1))
    writer(core.G3Frame(core.G3FrameType.EndProcessing))
    assert [f["n"] for f in core.G3File(str(path))] == [1]
    with core.G3File(str(path)) as frames:
        assert [f.type for f in frames] == [core.G3FrameType.Timepoint]


def test_reader_after_the_first_module_prefixes_its_frames(tmp_path) -> None:
    path = tmp_path / "cal.g3"
    with core.G3Writer(str(path)) as writer:
        writer(make_frame(core.G3FrameType.Calibration, n=0))
    got: list = []
    pipe = core.G3Pipeline()
    pipe.Add(_source(_frames(False, 2)))
    pipe.Add(core.G3Reader, filename=str(path))
    pipe.Add(_collect(got))
    pipe.Run()
    assert got == [["Calibration", 0], ["Timepoint", 0], ["Timepoint", 1]]


def test_streaming_server_on_one_address_with_counters() -> None:
    sender = core.G3NetworkSender(hostname="*@127.0.0.1", port=0, max_queue_size=10)
    try:
        assert sender.address[0] == "127.0.0.1"
        assert sender.clients == [] and sender.dropped == 0
        assert sender.FramesDroppedFromSending() == 0
    finally:
        sender.Close()


def test_reader_connect_errors_surface_at_construction() -> None:
    from tests.support.server import free_port

    with pytest.raises(core.G3ConnectionError, match="cannot connect"):
        core.G3Reader(filename=f"tcp://127.0.0.1:{free_port()}")
