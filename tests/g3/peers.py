"""spt3g 1.0.2 as a peer for the interop tests: its availability and its processes.

The peer is :mod:`tests.g3.spt3g_peer`, run with this interpreter in its own
process (spt3g's sender holds the GIL while blocked, and nothing of spt3g
may leak into the process under test). :class:`Peer` starts it and reads
its JSON lines; :func:`need_spt3g` skips a test when spt3g is not
installed, except in CI, where it fails (the tests must run there).
"""

from __future__ import annotations

import functools
import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import in_ci

PEER = Path(__file__).with_name("spt3g_peer.py")
INSTALL = "pip install --no-deps spt3g==1.0.2 numpy (make test does it)"


@functools.cache
def spt3g_problem() -> str | None:
    """Why spt3g 1.0.2 cannot be used as a peer, or None."""
    probe = subprocess.run(
        [sys.executable, "-c", "import spt3g, spt3g.core; print(spt3g.__version__)"],
        capture_output=True, text=True, timeout=120,
    )
    if probe.returncode != 0:
        return f"spt3g is not installed: {INSTALL}"
    version = probe.stdout.strip()
    if version != "1.0.2":
        return f"spt3g {version} is installed; the tests need 1.0.2: {INSTALL}"
    return None


def need(problem: str | None) -> None:
    if problem is not None:
        if in_ci():
            pytest.fail(f"{problem} (CI is set: the spt3g interop tests must run)")
        pytest.skip(problem)


def need_spt3g() -> None:
    need(spt3g_problem())


def frame_spec(frame_type: str, **objects: tuple[str, Any]) -> dict[str, Any]:
    """A frame for the peer: ``frame_spec("Timepoint", n=("G3Int", 1))``."""
    return {"type": frame_type, "objects": {k: list(v) for k, v in objects.items()}}


class Peer:
    """One spt3g_peer.py process; its JSON lines arrive in :attr:`lines`."""

    def __init__(self, *args: Any, stdin: bool = False) -> None:
        argv = [a if isinstance(a, str) else json.dumps(a) for a in args]
        self.process = subprocess.Popen(
            [sys.executable, str(PEER), *argv],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.frames: list[dict[str, Any]] = []
        self.events: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def next(self, timeout: float = 60.0) -> dict[str, Any]:
        try:
            item = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the spt3g peer said nothing for {timeout} s: "
                                 f"{self.stderr_so_far()}") from None
        if "frame" in item:
            self.frames.append(item["frame"])
        else:
            self.events.append(item["event"])
        return item

    def wait_event(self, event: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while event not in self.events:
            self.next(max(0.1, deadline - time.monotonic()))

    def send_line(self, text: str = "go") -> None:
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def stderr_so_far(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        return self.process.stderr.read()[-3000:]

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for the process to end, reading every line; return its exit status."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError("the spt3g peer did not end") from None
        self._reader.join(10)
        while not self.lines.empty():
            self.next(1)
        if code != 0:
            raise AssertionError(f"the spt3g peer failed ({code}): {self.process.stderr.read()}")
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def data_frames(self) -> list[dict[str, Any]]:
        """Frames read, without the PipelineInfo frames spt3g's pipelines add."""
        return [f for f in self.frames if f["type"] != "PipelineInfo"]
