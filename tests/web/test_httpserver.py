"""The HTTP server pieces: redaction, TCP_NODELAY, drain (in-process, real sockets)."""

from __future__ import annotations

import socket as stdlib_socket
import time

import gevent
import pytest
from gevent import socket
from gevent.event import Event
from hypothesis import given
from hypothesis import strategies as st

from channelstream.web.httpserver import REDACTED_PARAMS, Handler, WSGIServer, redact


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /ws?conn_id=1&sig=abc HTTP/1.1", "GET /ws?conn_id=***&sig=*** HTTP/1.1"),
        (
            "GET /socket.io/?EIO=4&transport=websocket&sid=Ab1",
            "GET /socket.io/?EIO=4&transport=websocket&sid=***",
        ),
        ("GET /listen?resume=%7B%7D&conn_id=c", "GET /listen?resume=%7B%7D&conn_id=***"),
        ("GET /x?token=t&secret=s&signature=g", "GET /x?token=***&secret=***&signature=***"),
        ("GET /x?SIG=abc;x=1", "GET /x?SIG=***;x=1"),
        ("GET /stream/x?access_token=t", "GET /stream/x?access_token=***"),
        ("GET /x?sig= HTTP/1.1", "GET /x?sig=*** HTTP/1.1"),
        ("GET /sig=abc HTTP/1.1", "GET /sig=abc HTTP/1.1"),
        ("GET /x?signal=1&mysig=2", "GET /x?signal=1&mysig=2"),
    ],
)
def test_redact(line, expected):
    assert redact(line) == expected


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
values = st.text(alphabet="abcdefXYZ0123456789%-._~", max_size=10)


@given(st.lists(st.tuples(names, values), min_size=1, max_size=6))
def test_redact_hides_every_secret_and_nothing_else(pairs):
    query = "&".join(f"{name}={value}" for name, value in pairs)
    redacted = redact(f"GET /p?{query} HTTP/1.1")
    expected = "&".join(
        f"{name}=***" if name in REDACTED_PARAMS else f"{name}={value}" for name, value in pairs
    )
    assert redacted == f"GET /p?{expected} HTTP/1.1"


def start_server(app):
    server = WSGIServer(("127.0.0.1", 0), app)
    server.start()
    return server


def http_get(port, path, keep_alive=True):
    sock = socket.create_connection(("127.0.0.1", port))
    connection = "keep-alive" if keep_alive else "close"
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: {connection}\r\n\r\n".encode())
    return sock


def read_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_accepted_sockets_get_tcp_nodelay():
    seen = Event()
    release = Event()

    def app(environ, start_response):
        seen.set()
        release.wait(5)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = start_server(app)
    try:
        client = http_get(server.server_port, "/")
        assert seen.wait(5)
        (handler,) = server.handlers
        assert handler.busy
        assert handler.socket.getsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY)
        release.set()
        assert read_response(client).startswith(b"HTTP/1.1 200")
        client.close()
    finally:
        server.stop(timeout=1)


def test_drain_closes_idle_connections_at_once_and_waits_for_busy_ones():
    busy_in_app = Event()
    release = Event()

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            busy_in_app.set()
            release.wait(5)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = start_server(app)
    idle = http_get(server.server_port, "/fast")
    assert read_response(idle).startswith(b"HTTP/1.1 200")  # now idle, kept alive
    busy = http_get(server.server_port, "/slow")
    assert busy_in_app.wait(5)
    gevent.spawn_later(0.3, release.set)  # the point: drain must wait this long
    began = time.monotonic()
    killed = server.drain(5.0)
    elapsed = time.monotonic() - began
    assert killed == 0
    assert 0.25 < elapsed < 2.0  # waited for the slow request, not for the idle one
    response = read_response(busy)
    assert response.startswith(b"HTTP/1.1 200")
    assert idle.recv(10) == b""  # the idle keep-alive connection was closed
    with pytest.raises(OSError):
        http_get(server.server_port, "/fast")  # no longer accepting


def test_drain_kills_requests_past_the_grace_period():
    in_app = Event()

    def app(environ, start_response):
        in_app.set()
        gevent.sleep(30)  # longer than any grace period here
        start_response("200 OK", [])
        return []

    server = start_server(app)
    client = http_get(server.server_port, "/")
    assert in_app.wait(5)
    began = time.monotonic()
    killed = server.drain(0.3)
    assert killed == 1
    assert time.monotonic() - began < 2.0
    received = b""
    while chunk := client.recv(4096):  # ends: the connection is closed
        received += chunk
    assert received == b"" or received.startswith(b"HTTP/1.1 500")  # pywsgi's own answer


def test_a_second_signal_skips_the_grace_period():
    in_app = Event()

    def app(environ, start_response):
        in_app.set()
        gevent.sleep(30)  # longer than any grace period here
        start_response("200 OK", [])
        return []

    server = start_server(app)
    http_get(server.server_port, "/")
    assert in_app.wait(5)
    force = Event()
    gevent.spawn_later(0.2, force.set)  # the second signal, well within the grace period
    began = time.monotonic()
    assert server.drain(30.0, force) == 1
    assert time.monotonic() - began < 2.0


# headers + body in one write; a large body in a second; a chunked one: headers, chunk, end
@pytest.mark.parametrize(
    ("body", "chunked", "writes"),
    [(b"x" * 100, False, 1), (b"x" * 200_000, False, 2), (b"x" * 100, True, 3)],
)
def test_small_responses_go_out_in_one_write(body, chunked, writes):
    sent: list[bytes] = []

    def app(environ, start_response):
        handler = environ["channelstream.test.handler"]
        handler.socket = Recorder(handler.socket, sent)
        headers = [] if chunked else [("Content-Length", str(len(body)))]
        start_response("200 OK", headers)
        return iter([body]) if chunked else [body]

    server = start_server(app)
    server.handler_class = RecordingHandler
    try:
        client = http_get(server.server_port, "/")
        data = b""
        while not data.endswith(body if not chunked else b"0\r\n\r\n"):
            data += client.recv(65536)
        client.close()
    finally:
        server.stop(timeout=1)
    assert len(sent) == writes
    assert b"".join(sent) == data


class RecordingHandler(Handler):
    def get_environ(self):
        environ = super().get_environ()
        environ["channelstream.test.handler"] = self
        return environ


class Recorder:
    """A socket whose sendall calls are recorded."""

    def __init__(self, sock, sent):
        self._sock = sock
        self._sent = sent

    def sendall(self, data):
        self._sent.append(bytes(data))
        return self._sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)
