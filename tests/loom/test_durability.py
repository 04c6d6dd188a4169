"""What ``loom.fsync`` promises, checked on the real server's system calls (strace).

The server runs under ``strace -f`` (its thread pool included), tracing the
calls that make a stream durable (``openat``, ``fsync``, ``rename``,
``unlink``) and the sends to clients; the test reads the order in which
they completed. strace is a Debian package (.ci/run installs it); without
it these tests are skipped, except in CI where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.broker import in_ci
from tests.support.server import BIN, REPO, RunningServer

TRACED = "openat,fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,sendto"

_CALL = re.compile(r"^(\d+) +(\w+)\((.*)\) += (-?\d+)")
_UNFINISHED = re.compile(r"^(\d+) +(.*) <unfinished \.\.\.>$")
_RESUMED = re.compile(r"^(\d+) +<\.\.\. (\w+) resumed>(.*)$")
_QUOTED = r'"((?:[^"\\]|\\.)*)"'


@pytest.fixture(autouse=True)
def _need_strace() -> None:
    if shutil.which("strace") is None:
        if in_ci():
            pytest.fail("strace is needed in CI (.ci/run APT_NEEDS) for the durability tests")
        pytest.skip("strace is not installed (apt-get install strace)")


def calls(trace: Path) -> Iterator[tuple[str, str]]:
    """``(syscall, arguments)`` of every successful call, in the order they returned.

    With ``-f`` a call interrupted by another thread's is printed in two
    parts (``<unfinished ...>``, then ``<... name resumed>``): it counts where
    it returned.
    """
    pending: dict[str, str] = {}
    for line in trace.read_text(errors="replace").splitlines():
        unfinished = _UNFINISHED.match(line)
        if unfinished:
            pending[unfinished.group(1)] = unfinished.group(2)
            continue
        resumed = _RESUMED.match(line)
        if resumed:
            line = f"{resumed.group(1)} {pending.pop(resumed.group(1), '')}{resumed.group(3)}"
        call = _CALL.match(line)
        if call and int(call.group(4)) >= 0:
            yield call.group(2), call.group(3)


def events(trace: Path, folder: Path, stream_id: str) -> list[tuple[str, ...]]:
    """The durability steps of ``stream_id`` in ``folder``, and what the clients were sent.

    ``("open", name)`` a file created, ``("fsync", name)`` (``"."`` is the
    folder), ``("rename", old, new)``, ``("unlink", name)``, ``("send",
    first line)`` an answer's first line or a final trailer; from the
    creation of the stream's data file on. Temporary names are numbered in
    order (``tmp1``, ``tmp2``...).
    """
    prefix = f"{folder}/"
    temporaries: dict[str, str] = {}

    def name(path: str) -> str | None:
        if path == str(folder):
            return "."
        if not path.startswith(prefix):
            return None
        base = path[len(prefix) :]
        if base.endswith(".tmp") and base.startswith(f"{stream_id}.json."):
            return temporaries.setdefault(base, f"tmp{len(temporaries) + 1}")
        return base if base.startswith(f"{stream_id}.") else None

    out: list[tuple[str, ...]] = []
    for syscall, args in calls(trace):
        step: tuple[str | None, ...] | None = None
        if syscall == "openat" and "O_CREAT" in args:
            step = ("open", name(re.search(_QUOTED, args).group(1)))
        elif syscall in ("fsync", "fdatasync"):
            found = re.match(r"\d+<([^>]*)>", args)
            step = ("fsync", name(found.group(1))) if found else None
        elif syscall.startswith("rename"):
            old, new = re.findall(_QUOTED, args)[:2]
            step = ("rename", name(old), name(new))
        elif syscall.startswith("unlink"):
            step = ("unlink", name(re.search(_QUOTED, args).group(1)))
        elif syscall == "sendto":
            sent = re.search(_QUOTED, args).group(1)
            if sent.startswith("HTTP/1.1 ") or sent.startswith("0\\r\\nX-Stream-State"):
                step = ("send", sent.split("\\r\\n")[0 if sent.startswith("HTTP") else 1])
        if step is not None and None not in step[1:]:
            out.append(step)  # type: ignore[arg-type]
    return out[out.index(("open", f"{stream_id}.data")) :]


class Traced:
    """``pserve`` under strace: :attr:`server`, :attr:`trace` (the output file)."""

    def __init__(self, tmp_path: Path, fsync: str) -> None:
        self.trace = tmp_path / "strace.out"
        command = ["strace", "-f", "-y", "-qq", "-s", "64", "-e", f"trace={TRACED}"]
        command += ["-o", str(self.trace), str(BIN / "pserve"), "{ini}"]
        self.server = RunningServer(
            REPO / "development.ini", tmp_path, app={"loom.fsync": fsync}, command=command
        ).start(timeout=90)
        self.url = self.server.url
        #: pserve's pid (the server's own process is strace)
        self.pid = self.server.get("/healthz").json()["pid"]

    def stop(self) -> None:
        """SIGTERM to pserve itself (strace's child); strace exits with it."""
        os.kill(self.pid, signal.SIGTERM)
        assert self.server.wait(30) == 0


def upload(server: RunningServer, path: str, body: bytes) -> bytes:
    """POST ``body`` (chunked) and return the whole answer, trailer included."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
        )
        answer = b""
        while b"0\r\nX-Stream-State: " not in answer or not answer.endswith(b"\r\n\r\n"):
            data = sock.recv(65536)
            assert data, answer
            answer += data
    return answer


def test_under_finish_each_step_is_on_disk_before_the_client_is_told(tmp_path):
    traced = Traced(tmp_path, "finish")
    try:
        assert b"X-Stream-State: finished" in upload(traced.server, "/stream/dur", b"first")
        replaced = upload(traced.server, "/stream/dur?force=true", b"new")
        assert b"X-Stream-State: finished" in replaced
        assert requests.delete(f"{traced.url}/stream/dur", timeout=10).status_code == 200
    finally:
        traced.stop()
    folder = tmp_path / "var" / "loom" / "streams"
    created = [
        ("open", "dur.data"),  # the data file, then its metadata file:
        ("open", "tmp1"),
        ("fsync", "tmp1"),  # written and fsynced under a temporary name,
        ("rename", "tmp1", "dur.json"),  # renamed into place,
        ("fsync", "."),  # the folder: both names are on disk
        ("send", "HTTP/1.1 201 Created"),  # and only then the 201
    ]
    finished = [
        ("fsync", "dur.data"),  # the data,
        ("open", "tmp2"),
        ("fsync", "tmp2"),  # the metadata saying finished,
        ("rename", "tmp2", "dur.json"),
        ("fsync", "."),  # the folder,
        ("send", "X-Stream-State: finished"),  # then the trailer says so
    ]
    renumbered = [
        tuple(s.replace("tmp1", "tmp3").replace("tmp2", "tmp4") for s in step)
        for step in created + finished
    ]
    assert events(traced.trace, folder, "dur") == [
        *created,
        *finished,
        # ?force=true: the old names go, the new ones come, one folder fsync for all
        ("unlink", "dur.data"),
        ("unlink", "dur.json"),
        *renumbered,
        # DELETE: the names go, the folder is fsynced, then the answer
        ("unlink", "dur.data"),
        ("unlink", "dur.json"),
        ("fsync", "."),
        ("send", "HTTP/1.1 200 OK"),
    ]


def test_under_never_nothing_is_fsynced(tmp_path):
    traced = Traced(tmp_path, "never")
    try:
        assert b"X-Stream-State: finished" in upload(traced.server, "/stream/lax", b"data")
        assert requests.delete(f"{traced.url}/stream/lax", timeout=10).status_code == 200
    finally:
        traced.stop()
    steps = events(traced.trace, tmp_path / "var" / "loom" / "streams", "lax")
    assert [step for step in steps if step[0] == "fsync"] == []
    assert [step[0] for step in steps] == [
        "open",
        "open",
        "rename",
        "send",
        "open",
        "rename",
        "send",
        "unlink",
        "unlink",
        "send",
    ]


def test_under_always_a_reader_gets_a_chunk_only_once_it_is_on_disk(tmp_path):
    traced = Traced(tmp_path, "always")
    try:
        producer = socket.create_connection(("127.0.0.1", traced.server.port), timeout=10)
        producer.sendall(
            b"POST /stream/safe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        assert producer.recv(4096).startswith(b"HTTP/1.1 201")
        reader = socket.create_connection(("127.0.0.1", traced.server.port), timeout=10)
        reader.sendall(b"GET /stream/safe HTTP/1.1\r\nHost: x\r\n\r\n")
        seen = b""
        for mark in (b"MARK-ONE", b"MARK-TWO"):
            producer.sendall(b"%x\r\n%b\r\n" % (len(mark), mark))
            while mark not in seen:
                data = reader.recv(65536)
                assert data, seen
                seen += data
        producer.sendall(b"0\r\n\r\n")
        while not seen.endswith(b"X-Stream-State: finished\r\n\r\n"):
            data = reader.recv(65536)
            assert data, seen
            seen += data
        producer.close()
        reader.close()
    finally:
        traced.stop()
    data_file = f"{tmp_path / 'var' / 'loom' / 'streams' / 'safe.data'}>"
    order = []
    for syscall, args in calls(traced.trace):
        if syscall == "fsync" and args.endswith(data_file):
            order.append("fsync")
        elif syscall == "sendto" and "MARK-" in args:
            order.append("send " + re.search(r"MARK-\w+", args).group(0))
    # each chunk is fsynced before the tail sends it; the end fsyncs once more
    assert order == ["fsync", "send MARK-ONE", "fsync", "send MARK-TWO", "fsync"]
