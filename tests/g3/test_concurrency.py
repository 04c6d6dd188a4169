"""Threads or greenlets: the choice, and the library under a monkey-patched gevent."""

from __future__ import annotations

import subprocess
import sys

import pytest

from channelstream.g3.concurrency import GREENLETS, THREADS, pick
from tests.support.server import REPO


def test_pick() -> None:
    assert pick("threads") is THREADS and pick("greenlets") is GREENLETS
    assert pick(GREENLETS) is GREENLETS
    assert pick() is THREADS  # this test process is not monkey-patched
    with pytest.raises(ValueError, match="threads"):
        pick("fibers")


PATCHED = """
from gevent import monkey
monkey.patch_all()
import gevent
from channelstream.g3 import FrameReader, StreamServer, G3Frame, G3FrameType
from channelstream.g3.concurrency import GREENLETS, pick
assert pick() is GREENLETS
server = StreamServer("127.0.0.1", 0).start()
got = []
reader = FrameReader(server.url)
reading = gevent.spawn(lambda: got.extend(f["n"] for f in reader))
while not server.clients:
    gevent.sleep(0.01)
for n in range(100):
    frame = G3Frame(G3FrameType.Timepoint)
    frame["n"] = n
    server.publish(frame)
server.stop()
reading.join(10)
assert got == list(range(100)), got
print("ok")
"""


def test_a_monkey_patched_process_uses_greenlets() -> None:
    result = subprocess.run([sys.executable, "-c", PATCHED], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
