"""Tailing readers, the spy, a producer that vanishes, and the CLIs, against the real server."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import time

import requests

from tests.loom.conftest import LOOM_CAT, LOOM_STREAM, curl, popen, sha, wait_for_stream
from tests.support.wait import wait_for

#: Longer than every timeout of the server (listen_timeout, client_heartbeat: 5 s),
#: and than anything a reader could use to guess that a silent producer is done.
PAUSE = 6.0


def read_until(proc: subprocess.Popen, stream, needle: bytes, timeout: float = 10.0) -> bytes:
    """Read ``proc``'s ``stream`` (a pipe) until ``needle`` appears; return what was read."""
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{needle!r} not seen in {seen[-500:]!r}"
        readable, _, _ = select.select([stream], [], [], remaining)
        if readable:
            data = os.read(stream.fileno(), 65536)
            assert data or needle in seen, f"EOF before {needle!r}: {seen[-500:]!r}"
            seen += data
    return seen


def readers(server, stream_id: str) -> list[subprocess.Popen]:
    """A curl (the seed's --no-buffer GET) and a loom-cat on the stream."""
    return [
        popen(
            ["curl", "--silent", "--show-error", "--no-buffer", f"{server.url}/stream/{stream_id}"]
        ),
        popen([LOOM_CAT, server.url, stream_id]),
    ]


def test_readers_at_the_start_mid_stream_and_after_the_end_all_get_every_byte(loom_server):
    first, second = os.urandom(300_000), os.urandom(200_000) + b"\x00\r\n0\r\n\r\n"
    producer = popen(
        [LOOM_STREAM, loom_server.url, "paused", "--metadata", '{"buildId": "b1"}'],
        stdin=subprocess.PIPE,
    )
    producer.stdin.write(first)
    producer.stdin.flush()
    assert wait_for_stream(loom_server, "paused")["state"] == "live"
    at_start = readers(loom_server, "paused")
    time.sleep(PAUSE)
    mid = readers(loom_server, "paused")
    time.sleep(PAUSE / 2)
    producer.stdin.write(second)
    producer.stdin.close()
    assert producer.wait(30) == 0, producer.stderr.read()
    ended = time.monotonic()
    after = readers(loom_server, "paused")
    for reader in at_start + mid + after:
        out, err = reader.communicate(timeout=20)
        assert reader.returncode == 0, err
        assert sha(out) == sha(first + second), (reader.args, len(out))
    assert time.monotonic() - ended < 20  # every reader ended when the producer did
    info = requests.get(f"{loom_server.url}/streams/paused", timeout=5).json()
    assert info["state"] == "finished" and info["size"] == len(first + second)
    assert info["metadata"] == {"buildId": "b1"}


def test_a_producer_that_vanishes_aborts_the_stream_and_its_readers_end_at_once(loom_server):
    producer = socket.create_connection(("127.0.0.1", loom_server.port), timeout=10)
    producer.sendall(
        b"POST /stream/vanished HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\nbefore\r\n"
    )
    assert producer.recv(4096).startswith(b"HTTP/1.1 201 Created")
    tail = popen(
        [
            "curl",
            "--silent",
            "--show-error",
            "--no-buffer",
            "--raw",
            "-i",
            f"{loom_server.url}/stream/vanished",
        ]
    )
    cat = popen([LOOM_CAT, loom_server.url, "vanished"])
    cat_seen = read_until(cat, cat.stdout, b"before")
    tail_seen = read_until(tail, tail.stdout, b"before")
    producer.sendall(b"5\r\nafter")  # a chunk cut short, then the connection drops
    producer.close()
    out, _ = tail.communicate(timeout=10)
    out = tail_seen + out
    assert b"X-Stream-State: live\r\n" in out  # the header said live...
    assert out.endswith(b"0\r\nX-Stream-State: aborted\r\n\r\n")  # ...the trailer how it ended
    cat_out, cat_err = cat.communicate(timeout=10)
    assert cat.returncode == 1 and b"aborted" in cat_err
    info = requests.get(f"{loom_server.url}/streams/vanished", timeout=5).json()
    assert info["state"] == "aborted" and "connection" in info["reason"]
    got = requests.get(f"{loom_server.url}/stream/vanished", timeout=5)
    assert got.headers["X-Stream-State"] == "aborted"
    assert got.content.startswith(b"before") and got.content == cat_seen + cat_out


def test_the_spy_sees_a_stream_that_starts_after_it_connected_and_its_end(loom_server):
    spy = popen(
        [
            "curl",
            "--silent",
            "--show-error",
            "--no-buffer",
            "-D",
            "/dev/stderr",
            f"{loom_server.url}/spy",
        ]
    )
    read_until(spy, spy.stderr, b"\r\n\r\n")  # connected: its headers arrived
    assert (
        requests.post(
            f"{loom_server.url}/stream/spied", data=b"spied data\n", timeout=5
        ).status_code
        == 201
    )
    producer = popen([LOOM_STREAM, loom_server.url, "spied2"], stdin=subprocess.PIPE)
    producer.stdin.write(b"other line\n")
    producer.stdin.flush()
    seen = read_until(spy, spy.stdout, b"other line\n")
    producer.stdin.write(b"last line\n")
    producer.stdin.close()
    assert producer.wait(10) == 0
    seen += read_until(spy, spy.stdout, b"END: spied2\n")
    spy.kill()
    spy.wait(5)
    assert b"START: spied\nspied:\nspied data\nEND: spied\n" in seen
    assert b"START: spied2\nspied2:\nother line\n" in seen
    assert seen.index(b"last line\n") < seen.index(b"END: spied2\n")


def test_the_seed_spy_examples(loom_server):
    """``curl --no-buffer localhost:3060/spy`` and ``...?color`` as the seed writes them."""
    spies = {
        query: popen(["bash", "-c", f"curl --no-buffer localhost:{loom_server.port}/spy{query}"])
        for query in ("", "?color")
    }
    # live until both spies showed it: a live stream is shown whenever a spy connects
    producer = popen([LOOM_STREAM, loom_server.url, "colored"], stdin=subprocess.PIPE)
    producer.stdin.write(b"in colour\n")
    producer.stdin.flush()
    plain = read_until(spies[""], spies[""].stdout, b"in colour\n")
    colored = read_until(spies["?color"], spies["?color"].stdout, b"in colour\n")
    producer.stdin.close()
    assert producer.wait(10) == 0
    if b"END: colored\n" not in plain:
        plain += read_until(spies[""], spies[""].stdout, b"END: colored\n")
    end = b"END:\x1b[22m colored\n\x1b[39m"
    if end not in colored:
        colored += read_until(spies["?color"], spies["?color"].stdout, end)
    for spy in spies.values():
        spy.kill()
        spy.wait(5)
    assert b"START: colored\ncolored:\nin colour\nEND: colored\n" in plain
    found = re.search(rb"\x1b\[1m(\x1b\[\d+m)START:\x1b\[22m colored\n\x1b\[39m", colored)
    assert found, colored
    color = found.group(1)  # one of the 9 colours, the same for all of the stream's text
    assert b"\x1b[1m" + color + b"colored:\x1b[22m\nin colour\n\x1b[39m" in colored
    assert b"\x1b[1m" + color + b"END:\x1b[22m colored\n\x1b[39m" in colored


def test_a_reader_that_stops_reading_slows_neither_the_producer_nor_other_readers(loom_server):
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", loom_server.port))
    producer = popen([LOOM_STREAM, loom_server.url, "bulk"], stdin=subprocess.PIPE)
    producer.stdin.write(b"x" * 1000)
    producer.stdin.flush()
    wait_for_stream(loom_server, "bulk")
    stalled.sendall(b"GET /stream/bulk HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
    good = popen([LOOM_CAT, loom_server.url, "bulk"])
    data = os.urandom(1 << 20) * 16
    producer.stdin.write(data)
    producer.stdin.close()
    assert producer.wait(60) == 0
    out, err = good.communicate(timeout=60)
    assert good.returncode == 0, err
    assert sha(out) == sha(b"x" * 1000 + data)
    stalled.close()


def test_the_seed_cli_example_streams_stdin_in_real_time(loom_server):
    command = (
        f"for i in {{1..5}}; do echo $i; sleep 1; done | {LOOM_STREAM} "
        f"http://localhost:{loom_server.port} streamid"
    )
    producer = popen(["bash", "-c", command])
    wait_for_stream(loom_server, "streamid")
    cat = popen([LOOM_CAT, loom_server.url, "streamid"])
    early = read_until(cat, cat.stdout, b"2\n")
    assert producer.poll() is None  # seen while the producer still runs
    out, _ = cat.communicate(timeout=15)
    assert early + out == b"1\n2\n3\n4\n5\n"
    assert producer.wait(10) == 0


def run_cli(argv: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=30, check=False)


def test_cli_errors_force_and_metadata(loom_server):
    first = run_cli([LOOM_STREAM, loom_server.url, "cli-x"], b"one")
    assert first.returncode == 0, first.stderr
    again = run_cli([LOOM_STREAM, loom_server.url, "cli-x"], b"two")
    assert again.returncode == 1
    assert b"409" in again.stderr and b"The stream with ID cli-x already exists" in again.stderr
    forced = run_cli(
        [LOOM_STREAM, loom_server.url, "cli-x", "--force", "--metadata", '{"v": 2}'], b"three"
    )
    assert forced.returncode == 0, forced.stderr
    got = requests.get(f"{loom_server.url}/stream/cli-x", timeout=5)
    assert got.content == b"three" and got.headers["X-Stream-Metadata"] == '{"v":2}'
    bad = run_cli([LOOM_STREAM, loom_server.url, "../up"], b"x")
    assert bad.returncode == 1 and b"400" in bad.stderr
    meta = run_cli([LOOM_STREAM, loom_server.url, "m", "--metadata", "{no"], b"")
    assert meta.returncode == 2 and b"--metadata" in meta.stderr
    missing = run_cli([LOOM_CAT, loom_server.url, "no-such"])
    assert missing.returncode == 1
    assert b"The stream with ID no-such does not exist" in missing.stderr
    down = run_cli([LOOM_STREAM, "http://127.0.0.1:9", "x"], b"x")
    assert down.returncode == 1 and b"failed" in down.stderr
    notail = curl(f"{loom_server.url}/stream/cli-x?notail")
    assert notail.stdout == b"three"


def test_head_and_abandoned_tails_of_a_live_stream_leave_nothing_behind(loom_server):
    producer = popen([LOOM_STREAM, loom_server.url, "headed"], stdin=subprocess.PIPE)
    producer.stdin.write(b"some bytes\n")
    producer.stdin.flush()
    wait_for_stream(loom_server, "headed")
    fds = f"/proc/{loom_server.process.pid}/fd"
    before_fds = len(os.listdir(fds))
    before_outboxes = loom_server.get("/healthz").json()["hub"]["outboxes"]
    for _ in range(20):
        head = requests.head(f"{loom_server.url}/stream/headed", timeout=5)
        assert head.status_code == 200 and head.headers["X-Stream-State"] == "live"
    for _ in range(5):  # readers that go away in the middle of a live tail
        with socket.create_connection(("127.0.0.1", loom_server.port), timeout=5) as sock:
            sock.sendall(b"GET /stream/headed HTTP/1.1\r\nHost: x\r\n\r\n")
            seen = b""
            while b"some bytes" not in seen:
                seen += sock.recv(65536)

    def tails_gone() -> bool:
        # a tail notices at once that its reader is gone, though the stream does not change
        return loom_server.get("/healthz").json()["hub"]["outboxes"] <= before_outboxes

    wait_for(tails_gone, timeout=10, interval=0.2, what="the abandoned tails to unsubscribe")
    # their sockets and files close right after (under load, a moment later)
    wait_for(
        lambda: len(os.listdir(fds)) <= before_fds + 2, timeout=10, what="the tails' fds closed"
    )
    producer.stdin.close()
    assert producer.wait(10) == 0
