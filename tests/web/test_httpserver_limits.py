"""The HTTP server's deadlines, bounds and caps (in-process server, real loopback sockets).

Each test starts :class:`WSGIServer` with small ``http.*`` limits and talks to it
with raw gevent sockets, so that it can send as slowly, as much or as badly as
an attacker would.
"""

from __future__ import annotations

import json
import logging

import gevent
import pytest
from gevent import select, socket
from gevent.event import Event

from channelstream.settings import default_settings
from channelstream.web.httpserver import HTTP_SERVER_KEY, WSGIServer
from channelstream.web.requestio import LINGER_SECONDS, MAX_LINGERING, BodyTimeout
from channelstream.web.wsframes import OP_TEXT, TAKEOVER_KEY, frame
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(60)


def limits(**changes):
    raw = {f"http.{key}": str(value) for key, value in changes.items()}
    return default_settings(raw).http


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


@pytest.fixture
def serve():
    servers: list[WSGIServer] = []

    def start(app=hello, raw_websocket_paths=(), **changes) -> WSGIServer:
        server = WSGIServer(
            ("127.0.0.1", 0),
            app,
            raw_websocket_paths=raw_websocket_paths,
            limits=limits(**changes),
        )
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(timeout=1)


def connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.server_port))
    sock.settimeout(20)
    return sock


def read_all(sock) -> bytes:
    """Everything until the server closes (or resets) the connection."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def read_response(sock) -> bytes:
    """One whole response with a Content-Length body (head and body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk, f"closed after {data!r}"
        body += chunk
    assert len(body) == length, "more than one response"
    return head + b"\r\n\r\n" + body


def read_head(sock) -> bytes:
    """The status line and headers of a response whose body is streamed (or absent)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def json_body(response: bytes) -> dict:
    return json.loads(response.partition(b"\r\n\r\n")[2])


# -- request heads ----------------------------------------------------------------------


def test_slowloris_is_dropped_at_the_header_deadline(serve):
    server = serve(header_timeout=1)
    sock = connect(server)
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    sent = 0
    answer = b""
    for byte in head:  # one byte every 0.1 s: 20 s to finish, were it let
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        sent += 1
        readable = select.select([sock], [], [], 0.1)[0]
        if readable:
            answer = read_all(sock)
            break
    assert sent < len(head)
    assert status_of(answer) == 408
    assert b"Connection: close" in answer
    assert "http.header_timeout" in json_body(answer)["error"]
    assert server.counters.header_timeouts == 1
    wait_for(lambda: server.connections == 0, what="the connection to be released")


def test_a_connection_that_sends_nothing_is_closed_silently_at_the_deadline(serve):
    server = serve(header_timeout=0.5)
    sock = connect(server)
    assert read_all(sock) == b""
    assert server.counters.header_timeouts == 1
    assert server.counters.idle_timeouts == 0


def test_an_idle_keep_alive_connection_is_closed(serve):
    server = serve(keepalive_timeout=0.5, header_timeout=30)
    sock = connect(server)
    for _ in range(2):  # kept alive between requests
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = read_response(sock)
        assert status_of(response) == 200
        assert response.endswith(b"hello")
    assert read_all(sock) == b""  # then closed by the server, not by the header deadline
    assert server.counters.idle_timeouts == 1
    assert server.counters.header_timeouts == 0


def test_the_header_deadline_of_a_later_request_runs_from_its_first_byte(serve):
    server = serve(keepalive_timeout=30, header_timeout=0.6)
    sock = connect(server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(sock).endswith(b"hello")
    gevent.sleep(1.0)  # idle longer than header_timeout: allowed between requests
    sock.sendall(b"GET / HTTP/1.1\r\n")  # then a head that never ends
    assert status_of(read_all(sock)) == 408


def test_an_unterminated_64k_header_line_gets_431_at_once(serve):
    server = serve(header_timeout=30)
    sock = connect(server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
    try:
        sock.sendall(b"a" * 65536)  # never terminated
    except OSError:
        pass  # the server may have answered and closed already
    answer = read_all(sock)
    assert status_of(answer) == 431
    assert b"Connection: close" in answer
    assert "http.max_header_line" in json_body(answer)["error"]
    assert server.counters.heads_too_large == 1
    assert server.counters.header_timeouts == 0  # answered on the bound, not the deadline


@pytest.mark.parametrize(
    ("head", "status", "key"),
    [
        (b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n\r\n", 414, "http.max_request_line"),
        (b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 11 + b"\r\n", 431, "http.max_headers"),
        (b"GET / HTTP/1.1\r\n" + b"X-A: " + b"b" * 130 + b"\r\n\r\n", 431, "http.max_header_line"),
        (
            b"GET / HTTP/1.1\r\n" + (b"X-A: " + b"b" * 90 + b"\r\n") * 5 + b"\r\n",
            431,
            "http.max_header_bytes",
        ),
    ],
)
def test_heads_over_a_bound_are_refused_and_closed(serve, head, status, key):
    server = serve(max_request_line=256, max_headers=10, max_header_line=128, max_header_bytes=400)
    sock = connect(server)
    sock.sendall(head)
    answer = read_all(sock)
    assert status_of(answer) == status
    assert key in json_body(answer)["error"]
    assert server.counters.heads_too_large == 1


def test_heads_within_the_bounds_are_served(serve):
    server = serve(max_request_line=256, max_headers=10, max_header_line=128, max_header_bytes=400)
    sock = connect(server)
    sock.sendall(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\n" + b"X-A: 1\r\n" * 9 + b"\r\n")
    assert status_of(read_response(sock)) == 200


def test_a_malformed_head_is_a_json_400_and_is_logged_redacted(serve, caplog):
    server = serve()
    sock = connect(server)
    with caplog.at_level(logging.INFO, logger="channelstream.serving.server"):
        sock.sendall(b"GET /ws?conn_id=S3CRET HTTP/9.0\r\n\r\n")
        answer = read_all(sock)
    assert status_of(answer) == 400
    assert json_body(answer)["code"] == "bad_request"
    assert server.counters.bad_requests == 1
    assert "conn_id=***" in caplog.text
    assert "S3CRET" not in caplog.text


# -- connection caps ----------------------------------------------------------------------


def test_300_unfinished_heads_cannot_hold_more_than_the_caps(serve):
    server = serve(header_timeout=2, max_connections=1000, max_connections_per_address=50)
    clients = []
    for _ in range(300):
        sock = connect(server)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 1000)  # never finished
        clients.append(sock)
    wait_for(
        lambda: server.counters.accepted + server.counters.refused_address_full == 300,
        what="every connection to be accepted or refused",
    )
    assert server.counters.accepted == 50
    assert server.counters.refused_address_full == 250
    assert server.connections == 50
    assert len(server.handlers) <= 50
    refused = clients[-1]
    answer = read_all(refused)
    assert status_of(answer) == 503
    assert b"Retry-After: 5" in answer
    assert json_body(answer) == {
        "error": "too many connections from your address; try again later",
        "code": "unavailable",
    }
    # the admitted ones are dropped at the header deadline: nothing is pinned
    wait_for(lambda: server.connections == 0, timeout=15, what="the admitted to be dropped")
    assert server.counters.header_timeouts == 50
    assert not server.handlers
    for sock in clients:
        sock.close()


def test_the_server_cap_refuses_with_503_and_frees_at_once(serve):
    release = Event()

    def slow(environ, start_response):
        release.wait(10)
        return hello(environ, start_response)

    server = serve(app=slow, max_connections=3, max_connections_per_address=0)
    busy = [connect(server) for _ in range(3)]
    for sock in busy:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: server.connections == 3)
    extra = connect(server)
    extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # refused without being read
    answer = read_all(extra)
    assert status_of(answer) == 503
    assert "connection limit" in json_body(answer)["error"]
    assert server.counters.refused_server_full == 1
    release.set()
    for sock in busy:
        assert status_of(read_response(sock)) == 200
        sock.close()
    wait_for(lambda: server.connections == 0)
    again = connect(server)
    again.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(read_response(again)) == 200
    assert server.stats()["refused_server_full"] == 1


def test_lingering_refusals_are_bounded(serve):
    server = serve(max_connections=1, max_connections_per_address=0, header_timeout=5)
    holder = connect(server)
    wait_for(lambda: server.connections == 1)
    refused = [connect(server) for _ in range(MAX_LINGERING + 20)]
    wait_for(lambda: server.counters.refused_server_full == len(refused))
    assert server._lingering <= MAX_LINGERING
    for sock in refused:
        assert status_of(read_all(sock)) == 503
        sock.close()
    wait_for(lambda: server._lingering == 0, timeout=LINGER_SECONDS + 10)
    holder.close()


# -- bodies ------------------------------------------------------------------------------


def test_a_413_closes_without_reading_the_body(serve):
    def refuse(environ, start_response):
        body = b'{"error":"too large"}'
        start_response(
            "413 Content Too Large",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    server = serve(app=refuse)
    sock = connect(server)
    size = 200 * 1024 * 1024
    sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    sent = 0
    chunk = b"x" * 65536

    def upload():
        nonlocal sent
        try:
            while sent < size:
                sent += sock.send(chunk)
        except OSError:
            pass

    uploader = gevent.spawn(upload)
    answer = read_all(sock)
    uploader.join(timeout=20)
    assert uploader.dead
    assert status_of(answer) == 413
    assert b"Connection: close" in answer
    assert sent < size // 4  # the server stopped taking it long before its end
    assert server.counters.unread_bodies == 1


def test_a_body_read_to_its_end_keeps_the_connection(serve):
    def echo(environ, start_response):
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    server = serve(app=echo)
    sock = connect(server)
    for _ in range(2):
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        assert read_response(sock).endswith(b"\r\n\r\nabc")
    sock.sendall(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
    )
    assert read_response(sock).endswith(b"\r\n\r\nxyz")
    assert server.counters.unread_bodies == 0


def test_a_stalled_body_fails_with_408_and_an_oserror_for_the_reader(serve):
    seen: list[BaseException] = []

    def upload(environ, start_response):
        try:
            environ["wsgi.input"].read(10)
        except OSError as err:
            seen.append(err)
            raise
        return hello(environ, start_response)

    server = serve(app=upload, body_timeout=0.5)
    sock = connect(server)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    answer = read_all(sock)  # the body never comes
    assert status_of(answer) == 408
    assert json_body(answer)["code"] == "timeout"
    (err,) = seen
    assert isinstance(err, BodyTimeout) and isinstance(err, TimeoutError)
    assert str(err) == "the request body sent nothing for 0.5 s (http.body_timeout)"
    assert server.counters.body_timeouts == 1


def test_a_stalled_body_read_straight_from_rfile_times_out_too(serve):
    seen: list[BaseException] = []

    def upload(environ, start_response):
        buffer = bytearray(10)
        try:
            environ["wsgi.input"].rfile.readinto1(buffer)  # as loom's reader does
            environ["wsgi.input"].rfile.readinto1(buffer)
        except OSError as err:
            seen.append(err)
        return hello(environ, start_response)

    server = serve(app=upload, body_timeout=0.5)
    sock = connect(server)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    answer = read_all(sock)
    assert status_of(answer) == 200  # the app answered; the unread body closes the connection
    assert [type(err) for err in seen] == [BodyTimeout]


# -- long-lived responses ----------------------------------------------------------------


def test_a_streamed_response_outlives_every_deadline(serve):
    def stream(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/event-stream")])

        def events():
            for n in range(8):
                gevent.sleep(0.25)  # 2 s in all: four times every deadline
                yield b"data: %d\n\n" % n

        return events()

    server = serve(app=stream, header_timeout=0.5, keepalive_timeout=0.5, body_timeout=0.5)
    sock = connect(server)
    sock.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    while b"data: 7" not in received:
        chunk = sock.recv(4096)
        assert chunk, f"cut after {received!r}"
        received += chunk
    assert server.counters.header_timeouts == server.counters.body_timeouts == 0


def test_a_taken_over_websocket_outlives_every_deadline_and_leaves_the_counts(serve):
    from tests.support.testapp import EchoWebSocket

    def ws(environ, start_response):
        EchoWebSocket(environ[TAKEOVER_KEY]()).start_reading()
        start_response("200 OK", [])
        return []

    server = serve(
        app=ws,
        raw_websocket_paths={"/ws"},
        header_timeout=0.5,
        keepalive_timeout=0.5,
        body_timeout=0.5,
        max_connections=2,
    )
    sock = connect(server)
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert read_head(sock).startswith(b"HTTP/1.1 101")
    wait_for(lambda: server.connections == 0, what="the websocket to leave the counts")
    gevent.sleep(1.5)  # three times every deadline
    mask = b"\x00\x00\x00\x00"
    sock.sendall(b"\x81\x82" + mask + b"hi")  # a masked text frame
    assert sock.recv(16) == frame(b"hi", OP_TEXT)


# -- upgrades, logs, stats ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/stream/x", "/healthz", "/ws/"])
def test_a_stray_websocket_upgrade_is_refused_before_the_app(serve, path):
    called = []

    def app(environ, start_response):
        called.append(environ["PATH_INFO"])
        return hello(environ, start_response)

    server = serve(app=app, raw_websocket_paths={"/ws"})
    sock = connect(server)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    answer = read_all(sock)
    assert status_of(answer) == 400
    assert json_body(answer)["error"] == f"no websocket endpoint at {path}"
    assert called == []
    assert server.counters.stray_upgrades == 1


def test_the_access_log_redacts_connection_ids_and_sids(serve, caplog):
    server = serve()
    sock = connect(server)
    with caplog.at_level(logging.INFO, logger="channelstream.access"):
        for target in (
            "/listen?conn_id=C0NN&resume=%7B%7D",
            "/socket.io/?EIO=4&transport=polling&sid=S1D",
            "/stream/x?access_token=T0K&n=1",
        ):
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            read_response(sock)
        wait_for(lambda: len(caplog.records) >= 3)
    lines = [record.getMessage() for record in caplog.records]
    assert '"GET /listen?conn_id=***&resume=%7B%7D HTTP/1.1" 200' in lines[0]
    assert '"GET /socket.io/?EIO=4&transport=polling&sid=*** HTTP/1.1" 200' in lines[1]
    assert '"GET /stream/x?access_token=***&n=1 HTTP/1.1" 200' in lines[2]
    for secret in ("C0NN", "S1D", "T0K"):
        assert secret not in caplog.text


def test_the_server_is_in_the_environ_with_its_stats(serve):
    seen = {}

    def app(environ, start_response):
        seen.update(environ[HTTP_SERVER_KEY].stats())
        return hello(environ, start_response)

    server = serve(app=app, max_connections=7)
    sock = connect(server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    read_response(sock)
    assert seen["connections"] == 1
    assert seen["max_connections"] == 7
    assert seen["accepted"] == 1
    assert set(seen) >= {
        "refused_server_full",
        "refused_address_full",
        "header_timeouts",
        "idle_timeouts",
        "body_timeouts",
        "heads_too_large",
        "bad_requests",
        "stray_upgrades",
        "unread_bodies",
    }


def test_a_bounded_pool_keeps_the_cap_below_its_size(serve):
    server = WSGIServer(("127.0.0.1", 0), hello, spawn=10, limits=limits(max_connections=100))
    assert server.max_connections == 9
    small = WSGIServer(("127.0.0.1", 0), hello, spawn=100, limits=limits(max_connections=5))
    assert small.max_connections == 5
