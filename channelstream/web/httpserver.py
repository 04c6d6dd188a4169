"""The HTTP server of the process: gevent's pywsgi, hardened, with websocket takeover.

Used by the project's server runner (:mod:`channelstream.serving.server`) and by the
gunicorn worker (:mod:`channelstream.serving.gunicorn_worker`), so both serve alike:

- websocket upgrades (GET) of the paths in the server's ``raw_websocket_paths``
  (the runtime's, see :attr:`channelstream.serving.runtime.Runtime.raw_websocket_paths`)
  are left to the view: it finds a callable in
  ``environ["channelstream.websocket.takeover"]`` that answers the handshake
  and hands it the connection as a non-blocking socket, detached from the
  handler (whose greenlet then ends, and the connection leaves the server's
  counts); ``Upgrade: websocket`` on any other path is refused with 400 and
  the connection closed, before the app runs (a view's auth never sees it);
- reading a request has deadlines and bounds (:class:`HttpSettings`, the
  ``http.*`` keys): the request line and headers must arrive within
  ``header_timeout`` (408 and close; a connection that sent nothing is just
  closed), a kept-alive connection idle for ``keepalive_timeout`` is closed,
  a body read that gets no byte for ``body_timeout`` raises
  :class:`BodyTimeout` (an ``OSError`` to the reader, 408 for the client),
  the request line, each header line, the number of header lines and their
  total size are bounded (414 / 431 and close). None of them applies while the
  app writes its response: SSE, long-poll and loom tails stream for as long as
  they like;
- at most ``max_connections`` connections are served at once, at most
  ``max_connections_per_address`` from one client address: past either, a
  connection is answered ``503`` at accept (without reading its request) and
  closed; counted in :meth:`WSGIServer.stats`;
- a body the app did not read to its end is never read by the server (a
  refused upload, 401 or 413, costs nothing more): the connection is closed
  after the response (an error response says ``Connection: close``), after
  a short bounded lingering close so that the client can read the answer;
- every accepted TCP socket gets ``TCP_NODELAY`` (small frames go out now);
- ``environ["RAW_URI"]`` is the request target exactly as sent on the request
  line (as gunicorn's own workers set it): signed server API calls are
  checked against it (:func:`channelstream.security.signing.request_target`);
- ``environ[HTTP_SERVER_KEY]`` is the :class:`WSGIServer` serving the request
  (its :meth:`WSGIServer.stats` are the counters to show on /healthz, /metrics);
- one access line per request goes to the ``channelstream.access`` logger,
  with the values of credential-like query parameters redacted
  (:data:`REDACTED_PARAMS`: signatures, tokens, ``conn_id``, engine.io ``sid``);
- :meth:`WSGIServer.drain` ends a server gracefully: idle keep-alive
  connections are closed at once, requests in progress get a grace period;
- ``environ[RAW_RESPONSE]`` lets an app send its status and headers itself
  and then write the body on the socket
  (:class:`~channelstream.web.rawresponse.RawResponse`: sendfile, chunked
  bodies with trailers); pywsgi has no ``wsgi.file_wrapper``.

This module does not monkey-patch; whoever runs the server does.
"""

from __future__ import annotations

import _socket
import dataclasses
import email.parser
import enum
import io
import logging
import re
import socket
import time
from collections.abc import Collection
from typing import Any

import gevent
from gevent import pywsgi
from gevent.event import Event
from gevent.pool import Pool
from gevent.timeout import Timeout

from ..errors import ClientError
from ..settings import HttpSettings
from ..strict_json import dumps
from .rawresponse import COMBINED_WRITE_MAX, RAW_RESPONSE, RawResponse, header_block
from .requestio import (
    LINGER_SECONDS,
    MAX_LINGERING,
    REASONS,
    BodyInput,
    HeadRefused,
    HttpCounters,
    TimedReader,
    default_limits,
    error_response,
    linger,
)
from .wsframes import TAKEOVER_KEY, HandshakeError, accept_key

access_log = logging.getLogger("channelstream.access")
log = logging.getLogger("channelstream.serving.server")


#: Query parameters whose values never reach a log line: signatures, tokens,
#: and what is enough to use a connection (``conn_id``, engine.io's ``sid``).
REDACTED_PARAMS = frozenset(
    {"sig", "token", "access_token", "secret", "signature", "conn_id", "sid"}
)

#: environ key of the :class:`WSGIServer` serving a request (its :meth:`~WSGIServer.stats`).
HTTP_SERVER_KEY = "channelstream.http_server"

#: Bytes buffered when reading a request from a client.
READ_BUFFER = 8192


_QUERY_PARAM = re.compile(r"([?&;])([^=&;#\s]+)=([^&;#\s]*)")


def redact(target: str) -> str:
    """Replace the values of :data:`REDACTED_PARAMS` in a URL or request line by ``***``.

    ``"GET /ws?conn_id=1&x=2 HTTP/1.1"`` -> ``"GET /ws?conn_id=***&x=2 HTTP/1.1"``.
    Names match case-insensitively; everything else is left as it was.
    """
    if "?" not in target:
        return target

    def hide(match: re.Match[str]) -> str:
        sep, name, _ = match.groups()
        if name.lower() in REDACTED_PARAMS:
            return f"{sep}{name}=***"
        return match.group(0)

    head, _, tail = target.partition("?")
    return head + _QUERY_PARAM.sub(hide, "?" + tail)


class ServerState(enum.Enum):
    """Where a :class:`WSGIServer` is: serving, or draining (no new connections)."""

    SERVING = "serving"
    DRAINING = "draining"


class Handler(pywsgi.WSGIHandler):
    """One client connection: bounded request reading, websocket takeover, access log.

    Reads each request head itself (:meth:`handle_one_request`) under the
    server's :attr:`WSGIServer.limits`; pywsgi parses and serves the rest.
    Tracks whether it is inside a request (``busy``) so that
    :meth:`WSGIServer.drain` can close idle keep-alive connections at once
    and give requests in progress their grace period.
    """

    busy = False
    greenlet: gevent.Greenlet | None = None
    #: The view took the socket over (see :meth:`take_over_websocket`).
    taken_over = False
    #: Requests read on this connection.
    requests_read = 0
    wsgi_input: BodyInput | None = None

    def __init__(self, sock: Any, address: Any, server: WSGIServer) -> None:
        self._reader = TimedReader(sock, server.counters)
        super().__init__(sock, address, server, rfile=io.BufferedReader(self._reader, READ_BUFFER))
        self._header_lines: list[bytes] = []
        self._connected_at = time.monotonic()

    def handle(self) -> None:
        """Set TCP_NODELAY, register with the server, then serve the connection."""
        if self.socket.family in (socket.AF_INET, socket.AF_INET6):
            try:
                self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # the peer may already be gone; the handler will notice
                pass
        self.greenlet = gevent.getcurrent()
        handlers = self.server.handlers
        handlers.add(self)
        try:
            super().handle()
        finally:
            handlers.discard(self)

    # -- reading a request ---------------------------------------------------------------

    def handle_one_request(self) -> bool | None:
        """Read one request under the limits and serve it.

        Returns True to read the next request on this connection, None to
        close it (pywsgi's contract; refusals are answered here, never as a
        ``(status, body)`` tuple).
        """
        if self.socket is None or self.rfile.closed:
            return None
        try:
            if not self._read_head():
                return None
        except HeadRefused as refused:
            counters = self.server.counters
            setattr(counters, refused.counter, getattr(counters, refused.counter) + 1)
            return self._refuse(refused.status, refused.response)
        except OSError:  # reset by the peer: nothing to answer
            return None
        self.requests_read += 1
        self.response_length = 0
        try:
            if not self.read_request(self.requestline):
                raise ValueError("bad request")
        except Exception as err:
            self.server.counters.bad_requests += 1
            return self._refuse(*self._handle_client_error(err))
        self.environ = self.get_environ()
        self.application = self.server.application
        self.handle_one_response()
        if self.socket is None:  # taken over
            return None
        if self.wsgi_input is not None and not self.wsgi_input.complete:
            self.server.counters.unread_bodies += 1
            self._linger()
            return None
        if self.close_connection or self.rfile.closed:
            return None
        return True

    def _read_head(self) -> bool:
        """Read the request line and the header lines; False if the client left or idled.

        Raises :class:`HeadRefused` for a head over a bound or not complete
        in time (once its first byte came).
        """
        limits = self.server.limits
        rfile = self.rfile
        self._reader.timeout = None
        self.requestline = None
        first = self.requests_read == 0
        if first:  # the deadline runs from the connection
            deadline = self._connected_at + limits.header_timeout
            wait = deadline - time.monotonic()
        else:
            wait = limits.keepalive_timeout
        timer = Timeout.start_new(max(wait, 0.0))
        try:
            ready = rfile.peek(1)
        except Timeout as expired:
            if expired is not timer:
                raise
            counters = self.server.counters
            if first:
                counters.header_timeouts += 1
            else:
                counters.idle_timeouts += 1
            return False
        finally:
            timer.close()
        if not ready:
            return False
        if not first:
            deadline = time.monotonic() + limits.header_timeout
        timer = Timeout.start_new(max(deadline - time.monotonic(), 0.0))
        try:
            return self._read_head_lines(limits)
        except Timeout as expired:
            if expired is not timer:
                raise
            raise HeadRefused(
                "408 Request Timeout",
                "timeout",
                f"the request line and headers took longer than {limits.header_timeout:g} s"
                " (http.header_timeout)",
                "header_timeouts",
            ) from None
        finally:
            timer.close()

    def _read_head_lines(self, limits: HttpSettings) -> bool:
        rfile = self.rfile
        line = rfile.readline(limits.max_request_line + 2)
        if not line.endswith(b"\n"):
            if len(line) > limits.max_request_line:
                raise HeadRefused(
                    "414 URI Too Long",
                    "too_large",
                    f"the request line is longer than {limits.max_request_line} bytes"
                    " (http.max_request_line)",
                    "heads_too_large",
                )
            return False  # the client left in the middle
        if len(line.rstrip(b"\r\n")) > limits.max_request_line:
            raise HeadRefused(
                "414 URI Too Long",
                "too_large",
                f"the request line is longer than {limits.max_request_line} bytes"
                " (http.max_request_line)",
                "heads_too_large",
            )
        self.requestline = line.decode("latin-1").rstrip()
        lines: list[bytes] = []
        size = 0
        while True:
            header = rfile.readline(limits.max_header_line + 2)
            if not header.endswith(b"\n"):
                if len(header) > limits.max_header_line:
                    raise self._too_large(
                        f"a header line is longer than {limits.max_header_line} bytes"
                        " (http.max_header_line)"
                    )
                return False
            if header in (b"\r\n", b"\n"):
                break
            if len(header.rstrip(b"\r\n")) > limits.max_header_line:
                raise self._too_large(
                    f"a header line is longer than {limits.max_header_line} bytes"
                    " (http.max_header_line)"
                )
            size += len(header)
            if size > limits.max_header_bytes:
                raise self._too_large(
                    f"the headers are larger than {limits.max_header_bytes} bytes"
                    " (http.max_header_bytes)"
                )
            if len(lines) >= limits.max_headers:
                raise self._too_large(
                    f"more than {limits.max_headers} header lines (http.max_headers)"
                )
            lines.append(header)
        self._header_lines = lines
        return True

    @staticmethod
    def _too_large(message: str) -> HeadRefused:
        return HeadRefused(
            "431 Request Header Fields Too Large", "too_large", message, "heads_too_large"
        )

    def MessageClass(self, fp: Any, *args: Any) -> Any:  # pywsgi's name
        """The headers of the current request, from the lines :meth:`_read_head` read."""
        text = b"".join(self._header_lines).decode("iso-8859-1")
        return email.parser.Parser(_class=pywsgi.OldMessage).parsestr(text)

    def _refuse(self, status: str, response: bytes) -> None:
        """Send a whole error response, log it, linger, and end the connection.

        A client that does not even read it gets :data:`LINGER_SECONDS`.
        """
        self.status = status
        self._orig_status = status
        self.response_length = 0
        with Timeout(LINGER_SECONDS, False):
            try:
                self.socket.sendall(response)
            except OSError:
                return None
            self.response_length = len(response)
        if not self.response_length:
            return None
        self.time_finish = time.time()
        self.log_request()
        self._linger()
        return None

    def _linger(self) -> None:
        """Close the connection after a bounded lingering close (see :func:`linger`)."""
        self.close_connection = True
        if self.socket is not None:
            linger(self.socket)

    def _handle_client_error(self, ex: BaseException) -> tuple[str, bytes]:
        """Log a malformed request head in one line, credentials redacted; return
        the 400 answer (pywsgi's hook: ``(status, whole response)``)."""
        client = self.client_address
        client = client[0] if isinstance(client, tuple) else client
        message = getattr(ex, "formatted_message", None) or str(ex) or type(ex).__name__
        log.info("bad request from %s: %s", client or "-", redact(message))
        message = "the request line or headers are malformed"
        return "400 Bad Request", error_response("400 Bad Request", "bad_request", message)

    # -- serving it ----------------------------------------------------------------------

    def get_environ(self) -> dict[str, Any]:
        """pywsgi's environ with a bounded ``wsgi.input``, ``RAW_URI`` and the server.

        ``wsgi.input`` is always a :class:`BodyInput` bounded by the request's
        framing (pywsgi hands upgrade requests the raw socket file); reading
        it is subject to ``http.body_timeout`` from now on.
        """
        environ = super().get_environ()
        raw = self.wsgi_input
        self.wsgi_input = BodyInput(
            raw.rfile, raw.content_length, socket=raw.socket, chunked_input=raw.chunked_input
        )
        environ["wsgi.input"] = self.wsgi_input
        environ["wsgi.input_terminated"] = True
        environ["RAW_URI"] = self.path
        environ[RAW_RESPONSE] = self.start_raw_response
        self._reader.timeout = self.server.limits.body_timeout or None
        return environ

    def handle_one_response(self) -> None:
        """Run the app for one request; once draining, close the connection after it."""
        self.busy = True
        try:
            super().handle_one_response()
        finally:
            self.busy = False
            if self.server.state is ServerState.DRAINING:
                self.close_connection = True

    def run_application(self) -> None:
        """Hand websocket upgrades of ``server.raw_websocket_paths`` to their views;
        refuse those of any other path before the app runs."""
        environ = self.environ
        if "websocket" in environ.get("HTTP_UPGRADE", "").lower():
            path = environ.get("PATH_INFO", "")
            if path not in self.server.raw_websocket_paths:
                self._refuse_upgrade(path)
                return
            if environ.get("REQUEST_METHOD") == "GET":
                environ[TAKEOVER_KEY] = self.take_over_websocket
        super().run_application()

    def _refuse_upgrade(self, path: str) -> None:
        self.server.counters.stray_upgrades += 1
        body = dumps({"error": f"no websocket endpoint at {path}", "code": "bad_request"})
        self.close_connection = True
        self.start_response(
            "400 Bad Request",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                ("Connection", "close"),
            ],
        )
        self.write(body)

    def process_result(self) -> None:
        """Write the app's response, unless a view took the socket over."""
        if self.taken_over:
            self.status = "101 Switching Protocols"  # for the access line
            return
        super().process_result()

    def handle_error(self, t: type[BaseException], v: BaseException, tb: Any) -> None:
        """An error out of the app: a client's (e.g. :class:`BodyTimeout`) is answered
        with its status in one log line; anything else is pywsgi's 500 with a traceback."""
        if not isinstance(v, ClientError):
            super().handle_error(t, v, tb)
            return
        self.close_connection = True
        client = self.client_address
        client = client[0] if isinstance(client, tuple) else client
        log.info("%s from %s: %s", type(v).__name__, client or "-", v.message)
        if self.headers_sent or self.response_length:
            return
        body = dumps(v.as_dict())
        try:
            self.start_response(
                f"{v.status} {REASONS.get(v.status, 'Error')}",
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("Connection", "close"),
                ],
            )
            self.write(body)
        except OSError:
            pass

    def take_over_websocket(self) -> _socket.socket:
        """Answer the upgrade with 101 and return the connection, detached.

        The returned socket is a plain non-blocking ``_socket.socket`` (never
        gevent's: its callers drive it with watchers and would only pay for
        gevent's wrappers) that the caller owns; this handler ends without
        touching it, and the connection no longer counts against the
        server's caps. Raises
        :class:`~channelstream.web.wsframes.HandshakeError` (nothing
        sent) if the request is not a version 13 upgrade with a valid key.
        """
        environ = self.environ
        if environ.get("HTTP_SEC_WEBSOCKET_VERSION") != "13":
            raise HandshakeError("Sec-WebSocket-Version must be 13")
        if "upgrade" not in environ.get("HTTP_CONNECTION", "").lower():
            raise HandshakeError("Connection must include Upgrade")
        accept = accept_key(environ.get("HTTP_SEC_WEBSOCKET_KEY", ""))
        self.socket.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n"
        )
        self.taken_over = True
        self.close_connection = True
        self._reader.timeout = None
        fd = self.socket.detach()
        self.socket = None  # pywsgi neither reads from nor closes a handler without one
        sock = _socket.socket(fileno=fd)
        sock.setblocking(False)
        return sock

    def _close_if_body_unread(self) -> None:
        """An error answer to a request whose body is unread says ``Connection: close``."""
        inp = self.wsgi_input
        if self.code is None or self.code < 400 or inp is None or inp.complete:
            return
        self.close_connection = True
        if not any(name.lower() == b"connection" for name, _ in self.response_headers):
            self.response_headers.append((b"Connection", b"close"))

    def _write_with_headers(self, data: bytes) -> None:
        """Send the status line, the headers and a first body chunk in one write.

        pywsgi sends the headers and the body in two writes: for the small
        JSON answers of the server API that is twice the syscalls and
        wake-ups of the client. Large or chunked bodies keep pywsgi's way.
        """
        self.headers_sent = True
        self.finalize_headers()
        self._close_if_body_unread()
        towrite = header_block(self.status, self.response_headers)
        if self.response_use_chunked or len(data) > COMBINED_WRITE_MAX:
            self._sendall(towrite)
            self._write(data)
        else:
            towrite += data
            self._sendall(towrite)

    def start_raw_response(self, status: str, headers: list[tuple[str, str]]) -> RawResponse:
        """Send the status line and ``headers`` now, exactly as given (plus Date).

        The caller frames the body itself through the returned
        :class:`RawResponse`; see there.
        """
        self.start_response(status, list(headers))
        self.headers_sent = True
        self.response_use_chunked = False
        self._close_if_body_unread()
        sent = self.response_headers
        if self.provided_date is None:
            sent = [(b"Date", pywsgi.format_date_time(time.time())), *sent]
        self._sendall(bytes(header_block(self.status, sent)))
        return RawResponse(self)

    def format_request(self) -> str:
        """``client "request line" status length seconds``, secrets redacted."""
        length = self.response_length or "-"
        delta = f"{self.time_finish - self.time_start:.6f}" if self.time_finish else "-"
        client = self.client_address
        client = client[0] if isinstance(client, tuple) else client
        status = (self._orig_status or self.status or "000").split()[0]
        return f'{client or "-"} "{redact(self.requestline or "")}" {status} {length} {delta}'

    def log_request(self) -> None:
        """Write the access line to the ``channelstream.access`` logger."""
        access_log.info(self.format_request())


class WSGIServer(pywsgi.WSGIServer):
    """pywsgi's server with :class:`Handler`, connection caps, logging and drain.

    Takes pywsgi's arguments (``spawn`` defaults to an unbounded pool), plus
    ``raw_websocket_paths``: the URL paths whose websocket upgrades the app's
    views do themselves (a live collection: a door may add its path later),
    and ``limits``: the ``http.*`` settings (default: their defaults;
    :attr:`limits` may be replaced before the server starts). Errors of the
    server go to the ``channelstream.serving.server`` logger; access lines are
    written by :class:`Handler`.

    A connection counts against the caps from its accept until its handler
    ends (a taken-over websocket no longer counts). With a bounded pool (a
    gunicorn worker's ``worker_connections``), the cap is kept below the
    pool's size, so that a full server answers 503 instead of no longer
    accepting.
    """

    handler_class = Handler

    def __init__(
        self,
        *args: Any,
        raw_websocket_paths: Collection[str] = (),
        limits: HttpSettings | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("spawn", Pool())  # a pool, so that stop() can wait and kill
        kwargs.setdefault("error_log", log)
        kwargs.setdefault("log", None)
        super().__init__(*args, **kwargs)
        #: The ``http.*`` settings in force.
        self.limits = limits if limits is not None else default_limits()
        #: What was counted (see :meth:`stats`).
        self.counters = HttpCounters()
        #: Connections being served (see :class:`Handler`).
        self.handlers: set[Handler] = set()
        #: :attr:`ServerState.DRAINING` once :meth:`close` or :meth:`drain`
        #: began: finished requests close their connection.
        self.state = ServerState.SERVING
        #: Paths whose websocket upgrades the app's views do (:class:`Handler`).
        self.raw_websocket_paths = raw_websocket_paths
        #: Connections counted against the caps now, in all and per client address.
        self.connections = 0
        self._per_address: dict[str, int] = {}
        self._lingering = 0
        self.environ[HTTP_SERVER_KEY] = self

    @property
    def max_connections(self) -> int:
        """The cap in force: ``http.max_connections``, below a bounded pool's size."""
        cap = self.limits.max_connections
        size = getattr(self.pool, "size", None)
        if size:
            cap = min(cap, max(size - 1, 1))
        return cap

    def stats(self) -> dict[str, int]:
        """The server's counters (:class:`HttpCounters`) plus ``connections`` (now)
        and ``max_connections`` (the cap in force); JSON-able, cheap."""
        return {
            "connections": self.connections,
            "max_connections": self.max_connections,
            **dataclasses.asdict(self.counters),
        }

    def start(self) -> None:
        """Start accepting; warn when the cap is above the process's open-file limit."""
        super().start()
        try:
            import resource

            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ImportError, OSError, ValueError):  # pragma: no cover - not on Linux
            return
        if soft != resource.RLIM_INFINITY and self.max_connections >= soft:
            log.warning(
                "http.max_connections (%d) is not below the open-file limit (%d): accept"
                " fails (EMFILE) before the cap answers 503; raise the limit or lower the key",
                self.max_connections,
                soft,
            )

    def do_handle(self, sock: Any, address: Any) -> None:
        """Admit a connection under the caps, or answer 503 at once and close it."""
        key = address[0] if isinstance(address, tuple) else None
        per_address = self.limits.max_connections_per_address
        if self.connections >= self.max_connections:
            self.counters.refused_server_full += 1
            self._refuse(sock, "the server is at its connection limit; try again later")
            return
        if key is not None and per_address and self._per_address.get(key, 0) >= per_address:
            self.counters.refused_address_full += 1
            self._refuse(sock, "too many connections from your address; try again later")
            return
        self.counters.accepted += 1
        self.connections += 1
        if key is not None:
            self._per_address[key] = self._per_address.get(key, 0) + 1
        super().do_handle(sock, address)

    def do_close(self, sock: Any, address: Any) -> None:
        """The handler of an admitted connection ended: it leaves the counts."""
        self.connections -= 1
        key = address[0] if isinstance(address, tuple) else None
        if key is not None:
            left = self._per_address.get(key, 1) - 1
            if left > 0:
                self._per_address[key] = left
            else:
                self._per_address.pop(key, None)
        super().do_close(sock, address)

    def _refuse(self, sock: Any, message: str) -> None:
        """503 without reading the request (never blocks: runs in the accept loop)."""
        response = error_response(
            "503 Service Unavailable", "unavailable", message, "Retry-After: 5"
        )
        try:
            sock.settimeout(0.0)
            sock.send(response)
        except OSError:
            sock.close()
            return
        if self._lingering >= MAX_LINGERING:
            sock.close()
            return
        self._lingering += 1
        sock.settimeout(None)
        gevent.spawn(self._linger, sock)

    def _linger(self, sock: Any) -> None:
        try:
            linger(sock)
        finally:
            sock.close()
            self._lingering -= 1

    def close(self) -> None:
        """Stop accepting and close idle keep-alive connections at once.

        Requests in progress go on; their connection closes after the
        response. gunicorn's worker calls this when told to exit, so idle
        clients do not hold it up for the whole graceful timeout.
        """
        self.state = ServerState.DRAINING
        super().close()
        self._close_idle()

    def drain(self, timeout: float, force: Event | None = None) -> int:
        """Stop accepting, let requests in progress finish, end everything else.

        Idle keep-alive connections are closed at once; requests in progress
        get up to ``timeout`` seconds (less if ``force`` gets set), then every
        remaining connection is killed. Returns how many requests were
        still in progress when killed. Call from a greenlet other than a
        handler's.
        """
        self.close()
        deadline = time.monotonic() + timeout
        while True:
            self._close_idle()
            busy = [h for h in self.handlers if h.busy]
            remaining = deadline - time.monotonic()
            if not busy or remaining <= 0 or (force is not None and force.is_set()):
                break
            gevent.sleep(min(0.05, remaining))
        killed = sum(1 for h in self.handlers if h.busy)
        self.stop(timeout=0)
        return killed

    def _close_idle(self) -> None:
        current = gevent.getcurrent()
        for handler in list(self.handlers):
            if not handler.busy and handler.greenlet not in (None, current):
                handler.greenlet.kill(block=False)
