"""examples/nginx/channelstream.conf in front of three real server processes.

Debian's nginx runs as a process of the test's own (its prefix, pid file,
logs and temp folders in the test's folder; ``daemon off``; a free port),
with the example's upstreams pointed at three pserve processes on
``hub.engine = redis`` sharing one loom folder. Through it:

- socket.io clients on long-polling (``transports=["polling"]``) with the
  seed's username login in the URL stick to the process of their handshake,
  join a room and receive every message (they are spread over the processes);
- a backend's ``/connect?conn_id=`` and that connection's ``/ws`` and
  ``/listen`` reach the same process; socket.io over websocket works;
- loom writes go to the owner, reads anywhere.

Skipped without nginx or Redis unless ``CI`` is set (``.ci/run`` installs nginx).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import websocket

from channelstream.client import ChannelstreamClient
from channelstream.sio import user_sig
from tests.engines.test_redis import Listener, require_redis
from tests.sio.clients import StreamClient
from tests.support.api import API_APP, SECRET
from tests.support.broker import in_ci
from tests.support.server import REPO, RunningServer, free_port
from tests.support.wait import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

EXAMPLE = REPO / "examples" / "nginx" / "channelstream.conf"


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        message = "nginx is not installed (apt-get install nginx)"
        if in_ci():
            pytest.fail(f"{message}; CI is set: the nginx example must be tested")
        pytest.skip(message)
    return found


def example_for(ports: list[int], listen: int) -> str:
    """The example with its upstreams on ``ports`` (the first owns loom) and ``listen``."""
    text = EXAMPLE.read_text()
    servers = "".join(f"    server 127.0.0.1:{port};\n" for port in ports)
    text, count = re.subn(
        r"(upstream channelstream \{\n    hash [^\n]*\n)(?:    server [^\n]*\n)+",
        lambda m: m.group(1) + servers, text,
    )
    assert count == 1
    text, count = re.subn(
        r"(upstream channelstream_loom_owner \{\n)    server [^\n]*\n",
        lambda m: m.group(1) + f"    server 127.0.0.1:{ports[0]};\n", text,
    )
    assert count == 1
    text, count = re.subn(r"listen \d+;", f"listen 127.0.0.1:{listen};", text)
    assert count == 1
    return text


class Nginx:
    """nginx in the foreground with everything under ``prefix``."""

    def __init__(self, prefix: Path, site: str) -> None:
        self.binary = nginx_binary()
        self.prefix = prefix
        prefix.mkdir()
        (prefix / "channelstream.conf").write_text(site)
        temps = "".join(
            f"    {name}_temp_path {prefix / name};\n"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers keep our uid
        (prefix / "nginx.conf").write_text(
            f"daemon off;\nworker_processes 1;\n{user}pid {prefix / 'nginx.pid'};\n"
            f"error_log {prefix / 'error.log'} info;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n    access_log {prefix / 'access.log'};\n{temps}"
            f"    include {prefix / 'channelstream.conf'};\n}}\n"
        )
        self.process: subprocess.Popen | None = None

    def start(self, port: int) -> Nginx:
        self.process = subprocess.Popen(
            [self.binary, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"),
             "-e", str(self.prefix / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

        def listening() -> bool:
            assert self.process.poll() is None, self.process.stderr.read().decode()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(listening, timeout=15, what="nginx listening")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: fast shutdown of master and workers
            self.process.wait(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[str, list[RunningServer]]]:
    """Three servers on Redis sharing a loom folder, and nginx in front: (url, servers)."""
    url = require_redis()
    nginx_binary()
    folder = tmp_path_factory.mktemp("nginx")
    prefix = f"cs-nginx-{uuid.uuid4().hex[:8]}:"
    app = {**API_APP, "hub.engine": "redis", "redis.url": url, "redis.key_prefix": prefix,
           "loom.storage_dir": str(folder / "loom"),
           "gc_conns_after": "30"}  # a connection waits for its first poll
    servers: list[RunningServer] = []
    listen = free_port()
    try:
        for n in range(3):
            (folder / f"s{n}").mkdir()
            role = {} if n == 0 else {"loom.role": "follow"}
            servers.append(
                RunningServer(REPO / "development.ini", folder / f"s{n}", app={**app, **role})
                .start()
            )
        nginx = Nginx(folder / "nginx", example_for([s.port for s in servers], listen))
        nginx.start(listen)
        try:
            yield f"http://127.0.0.1:{listen}", servers
        finally:
            nginx.stop()
    finally:
        for running in servers:
            try:
                if running.returncode is None:
                    running.stop()
            finally:
                running.kill()
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)


def clients_per_server(servers: list[RunningServer]) -> list[int]:
    return [s.get("/healthz").json()["doors"]["socketio"]["clients"] for s in servers]


def signed_query(name: str) -> str:
    expires = int(time.time()) + 300
    return f"username={name}&expires={expires}&sig={user_sig(SECRET, name, expires)}"


def test_socketio_polling_clients_stick_join_and_receive(cluster):
    url, servers = cluster
    room = f"room-{uuid.uuid4().hex[:8]}"
    before = clients_per_server(servers)
    clients = [
        StreamClient(url, query=signed_query(f"poll-{n}-{uuid.uuid4().hex[:4]}"),
                     transports=["polling"])
        for n in range(8)
    ]
    try:
        for client in clients:
            client.next("user_connect")
            assert client.call("join", [room]) == [room]
        placed = [now - was for now, was in zip(clients_per_server(servers), before, strict=True)]
        assert sum(placed) == 8
        assert sum(1 for count in placed if count) >= 2, placed  # spread, each one stuck
        # the room exists where the clients are; post on one of those processes
        poster = servers[next(i for i, count in enumerate(placed) if count)]
        api = ChannelstreamClient(poster.url, SECRET)
        api.message([{"channel": room, "user": "bot", "message": {"n": n}} for n in range(20)])
        orders = [[(f["offset"], f["message"]["n"]) for f in c.frames(20)] for c in clients]
        assert orders[0] == [(n + 1, n) for n in range(20)]
        assert all(order == orders[0] for order in orders)
    finally:
        for client in clients:
            client.close()


def test_connect_ws_listen_and_socketio_websocket_through_nginx(cluster):
    url, servers = cluster
    room = f"room-{uuid.uuid4().hex[:8]}"
    anchors = [Listener(s, room) for s in servers]  # the room on every process
    api = ChannelstreamClient(url, SECRET)
    ws_conn, poll_conn = str(uuid.uuid4()), str(uuid.uuid4())
    for conn_id in (ws_conn, poll_conn):
        # routed by the conn_id the backend chose: made where its transports will go
        api.call("POST", "/connect", {"username": f"u-{conn_id[:6]}", "conn_id": conn_id,
                                      "channels": [room]}, query={"conn_id": conn_id})
    ws = websocket.create_connection(
        url.replace("http://", "ws://") + f"/ws?conn_id={ws_conn}", timeout=10)
    sio = StreamClient(url, query=signed_query(f"ws-{uuid.uuid4().hex[:4]}"),
                       transports=["websocket"])
    try:
        sio.next("user_connect")
        assert sio.call("join", [room]) == [room]
        api.message([{"channel": room, "user": "bot", "message": {"n": n}} for n in range(5)])
        frames: list[dict] = []
        while len([f for f in frames if f.get("type") == "message"]) < 5:
            opcode, data = ws.recv_data(control_frame=True)
            assert opcode == websocket.ABNF.OPCODE_TEXT, (opcode, data)
            frames.extend(json.loads(data))
        assert [f["message"]["n"] for f in frames if f.get("type") == "message"] == list(range(5))
        assert [f["message"]["n"] for f in sio.frames(5)] == list(range(5))
        polled = requests.get(f"{url}/listen?conn_id={poll_conn}", timeout=10).json()
        assert [f["message"]["n"] for f in polled if f.get("type") == "message"] == list(range(5))
    finally:
        ws.close()
        sio.close()
        for anchor in anchors:
            anchor.close()


def test_loom_writes_reach_the_owner_and_reads_any_process(cluster):
    url, servers = cluster
    created = requests.post(f"{url}/stream/through-nginx", data=b"one\ntwo\n", timeout=10)
    assert created.status_code == 201, created.text
    wait_for(lambda: all(
        s.get("/streams/through-nginx").json().get("state") == "finished" for s in servers
    ), timeout=15, what="every process to see the stream")
    for base in [s.url for s in servers] + [url]:
        assert requests.get(f"{base}/stream/through-nginx", timeout=5).content == b"one\ntwo\n"
    refused = requests.post(f"{servers[1].url}/stream/direct", data=b"x", timeout=5)
    assert refused.status_code == 503 and refused.json()["owner"]["url"] == servers[0].url
    assert requests.delete(f"{url}/stream/through-nginx", timeout=10).status_code == 200
