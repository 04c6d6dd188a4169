"""A server for the GATD packet doors (HTTP ingest, TCP streamer) and small clients.

``run_packets_server`` starts development.ini with known secrets, an ingest
token and a short query timeout; :class:`StreamClient` is a plain blocking
TCP client of the streamer; :func:`post_packets` POSTs with the token.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests

from channelstream.client import ChannelstreamClient
from tests.support.api import API_APP, SECRET
from tests.support.server import REPO, RunningServer

TOKEN = "ingest-token-1"
OTHER_TOKEN = "ingest-token-2"

#: [app:main] keys of the packet server (secrets as in tests/support/api.py).
PACKETS_APP = {
    **API_APP,
    "packets.ingest_tokens": f"{TOKEN}, {OTHER_TOKEN}",
    "tcp_streamer.query_timeout": "1",
    # socket.io tests join hundreds of new channels from one user (the 1,000 a
    # connection may be in); the default cap of clients' new channels is 100
    "socketio.max_client_channels_per_user": "2000",
}


def run_packets_server(folder: Path, **app: str) -> Iterator[RunningServer]:
    """Start a packet server in ``folder`` (``app`` keys on top), yield it, stop it."""
    with RunningServer(REPO / "development.ini", folder, app={**PACKETS_APP, **app}) as running:
        yield running


def signing_client(server: RunningServer) -> ChannelstreamClient:
    return ChannelstreamClient(server.url, SECRET)


def new_run() -> str:
    """A value no other test uses: queries filter on it, so tests never see each other."""
    return uuid.uuid4().hex


def post_packets(
    server: RunningServer,
    body: Any,
    *,
    token: str | None = TOKEN,
    content_type: str | None = None,
    **kwargs: Any,
) -> requests.Response:
    """POST ``body`` (bytes as they are, anything else as JSON) to ``/packets``."""
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if isinstance(body, bytes | bytearray | Iterator):  # an iterator: sent chunked
        data = body
    else:
        data = json.dumps(body).encode()
    if content_type is not None:
        headers["Content-Type"] = content_type
    kwargs.setdefault("timeout", 30)
    return requests.post(server.url + "/packets", data=data, headers=headers, **kwargs)


def ndjson_body(packets: list[Mapping[str, Any]]) -> bytes:
    return b"".join(json.dumps(p).encode() + b"\n" for p in packets)


def door_status(server: RunningServer) -> dict[str, Any]:
    return server.get("/healthz").json()["doors"]["tcp-streamer"]


class StreamClient:
    """A blocking TCP client of the streamer: send a query, read NDJSON lines."""

    def __init__(self, server: RunningServer, *, timeout: float = 30.0, rcvbuf: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", server.tcp_streamer_port))
        self.buffer = b""
        self.eof = False

    def send(self, data: bytes | Mapping[str, Any]) -> StreamClient:
        if not isinstance(data, bytes):
            data = json.dumps(data).encode() + b"\n"
        self.sock.sendall(data)
        return self

    def _fill(self) -> bool:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def line(self) -> bytes | None:
        """The next line (without its newline), or None at EOF."""
        while b"\n" not in self.buffer:
            if self.eof or not self._fill():
                return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def packets(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` packets (fails on EOF or timeout)."""
        result = []
        for _ in range(count):
            line = self.line()
            assert line is not None, f"EOF after {len(result)} of {count} packets"
            result.append(json.loads(line))
        return result

    def until(self, predicate: Any) -> list[dict[str, Any]]:
        """Packets up to and including the first one ``predicate`` accepts."""
        result = []
        while True:
            line = self.line()
            assert line is not None, f"EOF after {len(result)} packets"
            packet = json.loads(line)
            result.append(packet)
            if predicate(packet):
                return result

    def rest(self) -> bytes:
        """Everything until EOF (fails on timeout)."""
        while not self.eof:
            self._fill()
        data, self.buffer = self.buffer, b""
        return data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> StreamClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
