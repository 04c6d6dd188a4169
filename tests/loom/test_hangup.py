"""Readers that go away while their stream is idle, and the fd limit of uploads (real sockets)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess

import pytest
import requests

from tests.loom.conftest import LOOM_STREAM, popen, sha, wait_for_stream
from tests.support.server import BIN, REPO, RunningServer
from tests.support.wait import wait_for

#: Tails opened by the RST test (the issue's probe).
TAILS = 50


def open_fds(server) -> int:
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def outboxes(server) -> int:
    return server.get("/healthz").json()["hub"]["outboxes"]


def tail(server, path: str, until: bytes) -> socket.socket:
    """A raw GET of ``path`` whose response has shown ``until``."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    seen = b""
    while until not in seen:
        data = sock.recv(65536)
        assert data, f"EOF before {until!r}: {seen!r}"
        seen += data
    return sock


def reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a killed client or a dropped NAT entry does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Idle:
    """A producer (``loom-stream``) and its stream's id."""

    def __init__(self, producer: subprocess.Popen, stream_id: str) -> None:
        self.producer = producer
        self.id = stream_id
        self.path = f"/stream/{stream_id}"

    def end(self, last: bytes) -> None:
        self.producer.stdin.write(last)
        self.producer.stdin.close()
        assert self.producer.wait(10) == 0, self.producer.stderr.read()


@pytest.fixture
def idle(loom_server, request):
    """A live stream that holds ``first line`` and then stays idle until the test ends it."""
    stream_id = request.node.name.replace("_", "-")[:100]
    producer = popen([LOOM_STREAM, loom_server.url, stream_id], stdin=subprocess.PIPE)
    producer.stdin.write(b"first line\n")
    producer.stdin.flush()
    wait_for_stream(loom_server, stream_id, until=lambda info: info["size"] == 11)
    yield Idle(producer, stream_id)
    if not producer.stdin.closed:
        producer.stdin.close()
        producer.wait(10)


def released(server, fds: int, boxes: int):
    """A condition: the server holds no more fds (give or take 2) and outboxes than before."""
    return lambda: open_fds(server) <= fds + 2 and outboxes(server) <= boxes


def test_tails_that_reset_while_the_stream_is_idle_release_everything_at_once(loom_server, idle):
    fds, boxes = open_fds(loom_server), outboxes(loom_server)
    tails = [tail(loom_server, idle.path, b"first line\n") for _ in range(TAILS)]
    # each tail holds its socket and the stream's data file, and one subscription
    assert open_fds(loom_server) >= fds + 2 * TAILS - 2
    assert outboxes(loom_server) == boxes + TAILS
    for sock in tails:
        reset(sock)
    # the stream does not change meanwhile: only the resets can free them
    wait_for(released(loom_server, fds, boxes), timeout=15, what="the reset tails to be freed")
    assert wait_for_stream(loom_server, idle.id)["state"] == "live"
    # the producer and a new reader are unaffected
    late = tail(loom_server, idle.path, b"first line\n")
    idle.end(b"second line\n")
    seen = b""
    while not seen.endswith(b"0\r\nX-Stream-State: finished\r\n\r\n"):
        data = late.recv(65536)
        assert data, seen
        seen += data
    late.close()
    assert b"second line\n" in seen


def test_tails_and_spies_that_close_while_idle_are_freed_and_the_half_closed_too(loom_server, idle):
    fds, boxes = open_fds(loom_server), outboxes(loom_server)
    closed = [tail(loom_server, idle.path, b"first line\n") for _ in range(5)]
    spies = [tail(loom_server, "/spy", b"first line\n") for _ in range(5)]
    spies += [tail(loom_server, "/spy?color", b"first line\n") for _ in range(5)]
    half = [tail(loom_server, idle.path, b"first line\n") for _ in range(5)]
    assert outboxes(loom_server) == boxes + 20
    for sock in closed + spies:
        sock.close()  # FIN
    for sock in half:
        sock.shutdown(socket.SHUT_WR)  # no more requests: the server ends the response
    wait_for(released(loom_server, fds + 5, boxes), timeout=15, what="the closed readers")
    for sock in half:  # the server closed them without the final chunk
        sock.settimeout(10)
        rest = b""
        while data := sock.recv(65536):
            rest += data
        assert b"0\r\n" not in rest
        sock.close()
    wait_for(released(loom_server, fds, boxes), timeout=15, what="the half-closed readers")


def test_a_pipelined_request_behind_a_tail_is_served_after_it(loom_server, idle):
    """A client that sends its next request while its tail runs is not taken for gone,
    and is still freed when it resets while the stream is idle (checked every
    ``loom.hangup.PIPELINED_CHECK`` seconds then)."""
    fds, boxes = open_fds(loom_server), outboxes(loom_server)
    request = f"GET /streams/{idle.id} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    gone = tail(loom_server, idle.path, b"first line\n")
    gone.sendall(request)
    reset(gone)
    wait_for(released(loom_server, fds, boxes), timeout=15, what="the pipelining reader")
    sock = tail(loom_server, idle.path, b"first line\n")
    sock.sendall(request)
    idle.end(b"second line\n")
    seen = b""
    while b'"state":"finished"' not in seen:
        data = sock.recv(65536)
        assert data, seen
        seen += data
    assert b"second line\n" in seen
    assert seen.index(b"X-Stream-State: finished") < seen.index(b'"state":"finished"')
    sock.close()


def test_uploads_past_the_fd_limit_get_a_503_naming_it(tmp_path):
    """With a low RLIMIT_NOFILE, uploads stop at the limit minus loom.fd_reserve with a
    JSON 503, the server keeps answering, and the uploads already running finish."""
    limited = RunningServer(
        REPO / "development.ini",
        tmp_path,
        app={"loom.fd_reserve": "40"},
        command=["prlimit", "--nofile=160:160", str(BIN / "pserve"), "{ini}"],
    )
    with limited:
        producers: list[socket.socket] = []
        refused = None
        for number in range(200):
            sock = socket.create_connection(("127.0.0.1", limited.port), timeout=10)
            sock.sendall(
                f"POST /stream/up{number} HTTP/1.1\r\nHost: x\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                data = sock.recv(4096)
                assert data, head
                head += data
            if head.startswith(b"HTTP/1.1 503"):
                refused = head
                sock.close()
                break
            assert head.startswith(b"HTTP/1.1 201"), head
            producers.append(sock)
        assert refused is not None, "no 503 before 200 uploads"
        assert b"application/json" in refused
        assert 20 < len(producers) < 160
        error = requests.post(f"{limited.url}/stream/one-more", data=b"x", timeout=10)
        assert error.status_code == 503
        message = error.json()["error"]
        assert "file descriptors" in message and "160" in message
        assert "loom.fd_reserve" in message
        assert requests.get(f"{limited.url}/healthz", timeout=10).status_code == 200
        for sock in producers:
            sock.sendall(b"4\r\ndone\r\n0\r\n\r\n")
        for sock in producers:
            seen = b""
            while not seen.endswith(b"\r\n\r\n") or b"X-Stream-State" not in seen:
                data = sock.recv(4096)
                assert data, seen
                seen += data
            assert b"X-Stream-State: finished" in seen
            sock.close()
        again = requests.post(f"{limited.url}/stream/after", data=b"after", timeout=10)
        assert again.status_code == 201
        got = requests.get(f"{limited.url}/stream/after", timeout=10)
        assert sha(got.content) == sha(b"after")
