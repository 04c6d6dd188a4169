"""The HTTP server's deadlines, caps and refusals through the real runners (pserve, gunicorn).

Raw loopback sockets against a real server process, with small ``http.*`` keys
so that every deadline passes in a second or two.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import time

import pytest
import requests
import websocket

from tests.support.api import API_APP, api_client
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(120)

SECRETS = {"CHANNELSTREAM_SECRET": "s3cret", "CHANNELSTREAM_ADMIN_SECRET": "adm1n"}
ONE_WORKER = {"workers": "1", "control_socket_disable": "true"}
UPGRADE = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


def connect(running, timeout: float = 20) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=timeout)
    return sock


def read_all(sock) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def server_pid(running) -> int:
    """The pid that serves HTTP: pserve's own (development.ini serves in-process)."""
    return running.process.pid


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def test_300_unfinished_heads_cannot_pin_fds_or_memory(server):
    running = server(app={"http.header_timeout": "10", "http.max_connections_per_address": "50"})
    pid = server_pid(running)
    fds_before, rss_before = open_fds(pid), rss_kib(pid)
    clients = []
    for _ in range(300):
        sock = connect(running)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 8000)  # never finished
        clients.append(sock)
    # 250 are answered 503 at once, without being read
    answered: set[socket.socket] = set()
    while len(answered) < 250:
        readable, _, _ = select.select([c for c in clients if c not in answered], [], [], 10)
        assert readable, f"only {len(answered)} answered"
        answered.update(readable)
    fds_held = open_fds(pid) - fds_before  # 50 admitted, at most 64 refused lingering
    rss_held = rss_kib(pid) - rss_before
    assert fds_held <= 50 + 64 + 4
    # the 50 admitted are dropped at the header deadline (408)
    wait_for(lambda: open_fds(pid) <= fds_before + 2, timeout=30, what="the fds to be released")
    statuses = [status_of(read_all(sock)) for sock in clients]
    # 250 refused, or 251 if the address still held the readiness check's connection
    assert statuses.count(503) in (250, 251)
    assert statuses.count(408) == 300 - statuses.count(503)
    for sock in clients:
        sock.close()
    print(f"300 unfinished heads: +{fds_held} fds, +{rss_held} KiB RSS while held")
    assert rss_held < 16 * 1024


def test_300_oversized_heads_are_refused_at_once(server):
    running = server(app={"http.max_connections_per_address": "400"})
    pid = server_pid(running)
    fds_before = open_fds(pid)
    clients = []
    for _ in range(300):  # 60 KB of headers each, never finished: over http.max_header_bytes
        sock = connect(running)
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"p" * 8000 + b"\r\n")
            for _ in range(7):
                sock.sendall(b"X-Pad: " + b"p" * 8000 + b"\r\n")
        except OSError:
            pass  # answered and closed already
        clients.append(sock)
    statuses = {status_of(read_all(sock)) for sock in clients}
    assert statuses == {431}
    wait_for(lambda: open_fds(pid) <= fds_before + 2, timeout=20, what="the fds to be released")
    assert running.get("/healthz").json()["status"] == "ok"
    for sock in clients:
        sock.close()


def test_sse_and_websocket_streams_outlive_the_deadlines(server):
    deadlines = {
        "http.header_timeout": "1",
        "http.keepalive_timeout": "1",
        "http.body_timeout": "1",
    }
    running = server(
        app={**API_APP, **deadlines, "client_heartbeat": "30", "listen_timeout": "2.5"}
    )
    client = api_client(running)
    conn_sse = client.connect("ann", channels=["room"])["conn_id"]
    conn_ws = client.connect("bob", channels=["room"])["conn_id"]
    ws = websocket.create_connection(
        running.url.replace("http://", "ws://") + f"/ws?conn_id={conn_ws}", timeout=20
    )
    with requests.get(
        running.url + "/sse", params={"conn_id": conn_sse}, stream=True, timeout=20
    ) as sse:
        assert sse.status_code == 200
        time.sleep(3.5)  # three times every deadline, with nothing said either way
        client.message([{"channel": "room", "user": "x", "message": {"n": 1}}])
        lines = sse.iter_lines()
        frames = next(
            json.loads(line[5:])
            for line in lines
            if line.startswith(b"data:") and line[5:] != b" []"
        )
        assert frames[0]["message"] == {"n": 1}
    got = json.loads(ws.recv())
    assert got[0]["message"] == {"n": 1}
    ws.close()
    poll = requests.get(running.url + "/listen", params={"conn_id": conn_sse}, timeout=20)
    assert poll.status_code == 200  # waited listen_timeout (2.5 s), past every deadline
    assert poll.elapsed.total_seconds() >= 2


@pytest.mark.parametrize("path", ["/stream/x", "/healthz"])
def test_stray_upgrades_are_refused_not_switched(server, path):
    running = server(app={"loom.tokens": "t0ken"})
    sock = connect(running)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{UPGRADE}\r\n".encode())
    answer = read_all(sock)
    assert status_of(answer) == 400
    assert b"101" not in answer.split(b"\r\n", 1)[0]
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body == {"error": f"no websocket endpoint at {path}", "code": "bad_request"}


def test_the_access_log_of_the_runner_hides_conn_ids_and_sids(server):
    running = server(app=API_APP)
    client = api_client(running)
    conn_id = client.connect("ann", channels=["room"])["conn_id"]
    listen = requests.get(running.url + "/listen", params={"conn_id": conn_id}, timeout=20)
    assert listen.status_code == 200
    handshake = requests.get(
        running.url + "/socket.io/", params={"EIO": "4", "transport": "polling"}, timeout=20
    )
    sid = json.loads(handshake.text[handshake.text.index("{") :])["sid"]
    poll = requests.post(
        running.url + "/socket.io/",
        params={"EIO": "4", "transport": "polling", "sid": sid},
        data="40/stream,",
        timeout=20,
    )
    assert poll.status_code == 200
    wait_for(
        lambda: "POST /socket.io/?EIO=4&transport=polling&sid=*** HTTP/1.1" in running.stderr,
        what="the socket.io access line",
    )
    stderr = running.stderr
    assert "GET /listen?conn_id=*** HTTP/1.1" in stderr
    assert conn_id not in stderr
    assert sid not in stderr


def test_a_stalled_loom_upload_is_aborted_saying_why(server):
    running = server(app={"http.body_timeout": "1"})
    sock = connect(running)
    sock.sendall(
        b"POST /stream/stalled HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n"
    )
    head = sock.recv(4096)
    assert status_of(head) == 201
    info = wait_for(
        lambda: (i := running.get("/streams/stalled").json())["state"] == "aborted" and i,
        what="the stream to be aborted",
    )
    assert "http.body_timeout" in info["reason"]
    assert info["size"] == 5
    sock.close()


def test_gunicorn_workers_apply_the_same_limits(server):
    running = server(
        "production.ini",
        server=ONE_WORKER,
        env=SECRETS,
        app={"http.header_timeout": "3", "http.max_connections_per_address": "3"},
    )
    slow = connect(running)
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
    stray = connect(running)
    stray.sendall(f"GET /healthz HTTP/1.1\r\nHost: x\r\n{UPGRADE}\r\n".encode())
    assert status_of(read_all(stray)) == 400
    holders = [connect(running) for _ in range(2)]  # with `slow`: the address's 3
    assert status_of(read_all(connect(running))) == 503
    answer = read_all(slow)
    assert status_of(answer) == 408
    assert b"http.header_timeout" in answer
    for sock in holders:
        sock.close()
