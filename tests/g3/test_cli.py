"""g3-frames: print frames from files and tcp:// sources; serve them as a streaming server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from channelstream.g3 import FrameWriter, G3FrameType
from channelstream.g3.cli import main
from tests.g3.helpers import SPT3G_FRAME, BytesServer, RawClient, make_frame
from tests.support.server import free_port
from tests.support.wait import wait_for


def _file(tmp_path, name: str = "run.g3.gz"):
    path = tmp_path / name
    with FrameWriter(path) as writer:
        writer.write(make_frame(G3FrameType.Wiring, w="map", x=float("nan")))
        for n in range(3):
            writer.write(make_frame(G3FrameType.Timepoint, n=n, ok=True))
    return path


def test_print_text(tmp_path, capsys) -> None:
    assert main(["print", str(_file(tmp_path)), "--count", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('Frame (Wiring) [\n"w" (G3String) => "map"\n"x" (G3Double) => nan\n]')
    assert out.count("Frame (") == 2


def test_print_json_and_types(tmp_path, capsys) -> None:
    assert main(["print", str(_file(tmp_path)), "--json", "--type", "Timepoint"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [{"type": "Timepoint", "objects": {"n": n, "ok": True}} for n in range(3)]


def test_print_tcp_source(capsys) -> None:
    server = BytesServer(SPT3G_FRAME * 2)
    assert main(["print", server.url, "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["objects"]["i"] for line in out] == [5, 5]


def test_errors(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.g3"
    bad.write_bytes(SPT3G_FRAME[:-2])
    assert main(["print", str(bad)]) == 1
    assert "bad.g3: the stream ended inside a frame" in capsys.readouterr().err
    for argv in (
        ["print", str(tmp_path / "none.g3")],
        ["print", "tcp://x"],
        ["serve", str(bad), "--listen", "nowhere"],
        ["serve", str(bad), "--decimate", "Q=1"],
    ):
        with pytest.raises(SystemExit) as exit:
            main(argv)
        assert exit.value.code == 2, argv


def _serve(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "channelstream.g3.cli", "serve", *argv],
                            stderr=subprocess.PIPE, text=True, env=env)


def test_serve_a_file_with_linger_until_interrupted(tmp_path) -> None:
    port = free_port()
    proc = _serve(str(_file(tmp_path)), "--listen", f"127.0.0.1:{port}", "--linger",
                  "--decimate", "Timepoint=2")
    try:
        assert "serving on tcp://127.0.0.1:" in proc.stderr.readline()
        assert "sources ended" in proc.stderr.readline()
        client = RawClient(("127.0.0.1", port))  # late: it gets the metadata replayed
        wait_for(lambda: client.frames, what="the replayed Wiring frame")
        assert client.types() == ["Wiring"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        # the Wiring frame and every 2nd of 3 Timepoints
        assert "2 frames published, 1 clients, 0 frames dropped" in proc.stderr.read()
        wait_for(lambda: client.eof, what="EOF")
    finally:
        proc.kill()
        proc.wait()


def test_serve_relays_a_tcp_source() -> None:
    def frames(*ns: int) -> bytes:
        return b"".join(make_frame(G3FrameType.Timepoint, n=n).encode() for n in ns)

    wiring = make_frame(G3FrameType.Wiring, w="map").encode()
    upstream = BytesServer(wiring + frames(0, 1), hold=True, then=frames(2, 3, 4))
    port = free_port()
    proc = _serve(upstream.url, "--listen", f"127.0.0.1:{port}")
    try:
        assert "serving on" in proc.stderr.readline()
        client = RawClient(("127.0.0.1", port))
        # the client is served once it has the Wiring frame (replayed or live)
        wait_for(lambda: client.frames, what="the Wiring frame")
        upstream.release()  # frames 2-4 go out live, then the source ends: drain, exit
        assert proc.wait(30) == 0
        wait_for(lambda: client.eof, what="EOF")
        assert client.types()[0] == "Wiring"
        # Timepoints published before the client was served are not replayed
        ns = [f["n"] for f in client.frames[1:]]
        assert ns == list(range(5))[5 - len(ns):] and ns[-3:] == [2, 3, 4]
    finally:
        proc.kill()
        proc.wait()
