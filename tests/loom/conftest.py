"""Fixtures and helpers of the loom tests: a real server, curl, the CLIs."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.server import BIN, REPO, RunningServer
from tests.support.wait import wait_for

LOOM_STREAM = str(BIN / "loom-stream")
LOOM_CAT = str(BIN / "loom-cat")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def curl(
    *args: str, input: bytes | None = None, timeout: float = 30
) -> subprocess.CompletedProcess:
    """Run curl (quiet, errors shown) and return the finished process (stdout as bytes)."""
    return subprocess.run(
        ["curl", "--silent", "--show-error", *args],
        input=input,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def wait_for_stream(
    server: RunningServer,
    stream_id: str,
    until: Callable[[dict[str, Any]], bool] = lambda info: True,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """The description (``GET /streams/<id>``) of the stream once it exists and ``until`` it."""

    def described() -> dict[str, Any] | None:
        answer = requests.get(f"{server.url}/streams/{stream_id}", timeout=5)
        if answer.status_code == 200 and until(answer.json()):
            return answer.json()
        return None

    return wait_for(described, timeout=timeout, what=f"stream {stream_id}")


def popen(argv: Sequence[str], **kwargs) -> subprocess.Popen:
    """Start a client process (stdout/stderr piped unless given)."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    env = {**os.environ, **kwargs.pop("env", {})}
    return subprocess.Popen(list(argv), env=env, **kwargs)


def start_loom_server(folder: Path, **app: str) -> RunningServer:
    """A development.ini server whose loom storage is ``folder/var/loom``."""
    return RunningServer(REPO / "development.ini", folder, app=app).start()


@pytest.fixture(scope="module")
def loom_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One development.ini server shared by a test module (storage under its tmp folder)."""
    with RunningServer(REPO / "development.ini", tmp_path_factory.mktemp("loom")) as running:
        yield running
