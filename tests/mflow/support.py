"""Helpers of the mflow tests: peer and tool processes (see conftest.py for the fixtures)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys

import pytest

from tests.support.server import REPO

PYTHON = sys.executable


def require_peer(module: str, package: str) -> None:
    """Skip (fail in CI) unless ``module`` can be imported (by a subprocess)."""
    if importlib.util.find_spec(module) is not None:
        return
    text = f"{package} is not installed (import name {module}); `make test` installs it"
    if os.environ.get("CI") == "true":
        pytest.fail(text)
    pytest.skip(text)


class Procs:
    """Processes started by a test; the ones still running at its end are killed."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def popen(self, args: list[str], **options) -> subprocess.Popen:
        options.setdefault("stdout", subprocess.PIPE)
        options.setdefault("stderr", subprocess.PIPE)
        options.setdefault("text", True)
        proc = subprocess.Popen(args, cwd=REPO, **options)
        self.started.append(proc)
        return proc

    def script(self, code: str, *args: str, **options) -> subprocess.Popen:
        """Run ``python -c code args...`` (the repository is on its sys.path)."""
        return self.popen([PYTHON, "-c", code, *args], **options)

    def tool(self, name: str, *args: str, **options) -> subprocess.Popen:
        """One of our m_* tools (``m_split`` -> channelstream.mflow.cli.split)."""
        return self.popen([PYTHON, "-m", f"channelstream.mflow.cli.{name[2:]}", *args],
                          **options)

    def psi_tool(self, name: str, *args: str, **options) -> subprocess.Popen:
        """One of PSI's tools (``m_dump`` -> mflow.cli.dump)."""
        return self.popen([PYTHON, "-m", f"mflow.cli.{name[2:]}", *args], **options)

    def kill_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            if proc.stdin is not None and proc.stdin.closed:
                proc.stdin = None
            try:
                proc.communicate(timeout=10)
            except (subprocess.TimeoutExpired, ValueError):
                pass


def finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str, str]:
    """Wait for ``proc``; (status, stdout, stderr)."""
    if proc.stdin is not None and proc.stdin.closed:
        proc.stdin = None
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def interrupt(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str, str]:
    """SIGINT ``proc`` (Ctrl-C) and wait for it."""
    proc.send_signal(signal.SIGINT)
    return finish(proc, timeout)


def read_line(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"process {proc.args[:3]} ended: {proc.communicate()}")
    return line
