"""The HTTP server of the process: gevent's pywsgi with websocket upgrades.

Used by the project's server runner (:mod:`channelstream.serving.server`) and by the
gunicorn worker (:mod:`channelstream.serving.gunicorn_worker`), so both serve alike:

- websocket upgrades of the paths in the server's ``raw_websocket_paths``
  (the runtime's, see :attr:`channelstream.serving.runtime.Runtime.raw_websocket_paths`)
  are left to the view: it finds a callable in
  ``environ["channelstream.websocket.takeover"]`` that answers the handshake
  and hands it the connection as a non-blocking socket, detached from the
  handler (whose greenlet then ends); other upgrades go through
  gevent-websocket, whose websocket is in ``environ["wsgi.websocket"]``;
- every accepted TCP socket gets ``TCP_NODELAY`` (small frames go out now);
- ``environ["RAW_URI"]`` is the request target exactly as sent on the request
  line (as gunicorn's own workers set it): signed server API calls are
  checked against it (:func:`channelstream.security.signing.request_target`);
- one access line per request goes to the ``channelstream.access`` logger,
  with the values of credential-like query parameters redacted;
- :meth:`WSGIServer.drain` ends a server gracefully: idle keep-alive
  connections are closed at once, requests in progress get a grace period;
- ``environ[RAW_RESPONSE]`` lets an app send its status and headers itself
  and then write the body on the socket (:class:`RawResponse`: sendfile,
  chunked bodies with trailers); pywsgi has no ``wsgi.file_wrapper``.

This module does not monkey-patch; whoever runs the server does.
"""

from __future__ import annotations

import _socket
import enum
import errno
import logging
import os
import re
import socket
import time
from collections.abc import Collection, Iterable
from typing import Any

import gevent
from gevent import pywsgi
from gevent.event import Event
from gevent.pool import Pool
from gevent.socket import wait_write
from geventwebsocket.handler import WebSocketHandler

from .wsframes import TAKEOVER_KEY, HandshakeError, accept_key

access_log = logging.getLogger("channelstream.access")
log = logging.getLogger("channelstream.serving.server")

#: Largest first body chunk sent in the same write as the headers.
COMBINED_WRITE_MAX = 65536

#: Query parameters whose values never reach a log line.
REDACTED_PARAMS = frozenset({"sig", "token", "access_token", "secret", "signature"})

_QUERY_PARAM = re.compile(r"([?&;])([^=&;#\s]+)=([^&;#\s]*)")


def redact(target: str) -> str:
    """Replace the values of :data:`REDACTED_PARAMS` in a URL or request line by ``***``.

    ``"GET /ws?conn_id=1&sig=abc HTTP/1.1"`` -> ``"GET /ws?conn_id=1&sig=*** HTTP/1.1"``.
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


#: environ key of :meth:`Handler.start_raw_response` (absent under other servers).
RAW_RESPONSE = "channelstream.raw_response"


def _header_block(status: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytearray:
    """A response's status line and header lines, with the blank line that ends them."""
    block = bytearray(b"HTTP/1.1 ")
    block += status
    block += b"\r\n"
    for name, value in headers:
        block += name
        block += b": "
        block += value
        block += b"\r\n"
    block += b"\r\n"
    return block


class RawResponse:
    """The body side of a response whose status and headers already went out.

    Returned by ``environ[RAW_RESPONSE](status, headers)``. The app writes the
    whole body itself (framing included: it chose Content-Length or chunked
    in its headers), then returns an empty iterable; pywsgi adds nothing.
    Socket errors propagate (a vanished peer is ``EPIPE``/``ECONNRESET``,
    which pywsgi ignores). Bytes sent count in the access log.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    def sendall(self, data: bytes) -> None:
        """Send ``data`` (cooperatively)."""
        self._handler._sendall(data)

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Send ``count`` bytes of file ``fd`` from ``offset`` with ``os.sendfile``.

        Waits cooperatively while the socket buffer is full. Returns the
        bytes sent (fewer only if the file is shorter).
        """
        handler = self._handler
        out = handler.socket.fileno()
        sent = 0
        while sent < count:
            try:
                n = os.sendfile(out, fd, offset + sent, count - sent)
            except BlockingIOError:
                wait_write(out)
                continue
            except OSError as err:
                if err.errno == errno.EINTR:
                    continue
                handler.status = f"socket error: {err}".encode()
                raise
            if n == 0:
                break
            sent += n
            handler.response_length += n
        return sent

    def close_connection(self) -> None:
        """Close the connection after this response (no keep-alive)."""
        self._handler.close_connection = True


class ServerState(enum.Enum):
    """Where a :class:`WSGIServer` is: serving, or draining (no new connections)."""

    SERVING = "serving"
    DRAINING = "draining"


class Handler(WebSocketHandler):
    """One client connection: websocket upgrades, TCP_NODELAY, redacted access log.

    Tracks whether it is inside a request (``busy``) so that
    :meth:`WSGIServer.drain` can close idle keep-alive connections at once
    and give requests in progress their grace period.
    """

    busy = False
    greenlet: gevent.Greenlet | None = None
    #: The view took the socket over (see :meth:`take_over_websocket`).
    taken_over = False

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
        """Let views of ``server.raw_websocket_paths`` do their own upgrades."""
        environ = self.environ
        if (
            environ.get("PATH_INFO") in self.server.raw_websocket_paths
            and environ.get("HTTP_UPGRADE", "").lower() == "websocket"
            and environ.get("REQUEST_METHOD") == "GET"
        ):
            environ[TAKEOVER_KEY] = self.take_over_websocket
            pywsgi.WSGIHandler.run_application(self)  # not gevent-websocket's upgrade
        else:
            super().run_application()

    def process_result(self) -> None:
        """Write the app's response, unless a view took the socket over."""
        if self.taken_over:
            self.status = "101 Switching Protocols"  # for the access line
            return
        super().process_result()

    def take_over_websocket(self) -> _socket.socket:
        """Answer the upgrade with 101 and return the connection, detached.

        The returned socket is a plain non-blocking ``_socket.socket`` (never
        gevent's: its callers drive it with watchers and would only pay for
        gevent's wrappers) that the caller owns; this handler ends without
        touching it. Raises
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
        fd = self.socket.detach()
        self.socket = None  # pywsgi neither reads from nor closes a handler without one
        sock = _socket.socket(fileno=fd)
        sock.setblocking(False)
        return sock

    def _write_with_headers(self, data: bytes) -> None:
        """Send the status line, the headers and a first body chunk in one write.

        pywsgi sends the headers and the body in two writes: for the small
        JSON answers of the server API that is twice the syscalls and
        wake-ups of the client. Large or chunked bodies keep pywsgi's way.
        """
        self.headers_sent = True
        self.finalize_headers()
        towrite = _header_block(self.status, self.response_headers)
        if self.response_use_chunked or len(data) > COMBINED_WRITE_MAX:
            self._sendall(towrite)
            self._write(data)
        else:
            if data:  # gevent-websocket writes '' (a str) to send its 101
                towrite += data
            self._sendall(towrite)

    def get_environ(self) -> dict[str, Any]:
        """pywsgi's environ plus ``RAW_URI``: the request target as sent."""
        environ = super().get_environ()
        environ["RAW_URI"] = self.path
        environ[RAW_RESPONSE] = self.start_raw_response
        return environ

    def start_raw_response(self, status: str, headers: list[tuple[str, str]]) -> RawResponse:
        """Send the status line and ``headers`` now, exactly as given (plus Date).

        The caller frames the body itself through the returned
        :class:`RawResponse`; see there.
        """
        self.start_response(status, list(headers))
        self.headers_sent = True
        self.response_use_chunked = False
        sent = self.response_headers
        if self.provided_date is None:
            sent = [(b"Date", pywsgi.format_date_time(time.time())), *sent]
        self._sendall(bytes(_header_block(self.status, sent)))
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
    """pywsgi's server with :class:`Handler`, logging through :mod:`logging`, and drain.

    Takes pywsgi's arguments (``spawn`` defaults to an unbounded pool), and
    ``raw_websocket_paths``: the URL paths whose websocket upgrades the app's
    views do themselves (a live collection: a door may add its path later).
    Errors of the server go to the ``channelstream.serving.server`` logger at ERROR;
    access lines are written by :class:`Handler`.
    """

    handler_class = Handler

    def __init__(
        self, *args: Any, raw_websocket_paths: Collection[str] = (), **kwargs: Any
    ) -> None:
        kwargs.setdefault("spawn", Pool())  # a pool, so that stop() can wait and kill
        kwargs.setdefault("error_log", log)
        kwargs.setdefault("log", None)
        super().__init__(*args, **kwargs)
        #: gevent-websocket's handler logs through ``server.logger``.
        self.logger = logging.getLogger("channelstream.websocket")
        #: Connections being served (see :class:`Handler`).
        self.handlers: set[Handler] = set()
        #: :attr:`ServerState.DRAINING` once :meth:`close` or :meth:`drain`
        #: began: finished requests close their connection.
        self.state = ServerState.SERVING
        #: Paths whose websocket upgrades the app's views do (:class:`Handler`).
        self.raw_websocket_paths = raw_websocket_paths

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

