"""Reading a request under deadlines and bounds, and refusing one in a few bytes.

What :class:`~channelstream.web.httpserver.Handler` reads with: a client
socket's reads under ``http.body_timeout`` (:class:`TimedReader`, raising
:class:`BodyTimeout`), a ``wsgi.input`` that never reads what the app left
(:class:`BodyInput`), the counters of a server (:class:`HttpCounters`), the
JSON error answers sent before or instead of the app (:func:`error_response`,
:class:`HeadRefused`), and the bounded lingering close after one
(:func:`linger`). No server state here; the handler holds it.
"""

from __future__ import annotations

import dataclasses
import io
import socket
from typing import Any

from gevent import pywsgi
from gevent.timeout import Timeout

from ..errors import ClientError
from ..settings import HttpSettings, default_settings
from ..strict_json import dumps

#: A connection closed after an error (or a refusal) still reads and drops what
#: the client sends for at most this long and this many bytes, so that the
#: client can read the answer instead of getting a reset while it writes.
LINGER_SECONDS = 1.0


LINGER_BYTES = 256 * 1024


#: Refused connections that may linger at once; past it they are closed at once.
MAX_LINGERING = 64


class BodyTimeout(ClientError, TimeoutError):
    """A request body sent no byte for ``http.body_timeout`` seconds.

    Raised by reads of ``wsgi.input`` (and of its ``rfile``): to a reader it
    is an ``OSError`` (``TimeoutError``) like a broken connection; a view
    that lets it through answers 408 (it is a
    :class:`~channelstream.errors.ClientError`). The connection is closed.
    """

    status = 408
    code = "timeout"


def default_limits() -> HttpSettings:
    """The ``http.*`` settings with their default values."""
    return default_settings().http


@dataclasses.dataclass
class HttpCounters:
    """What a :class:`WSGIServer` counted since it started (see :meth:`WSGIServer.stats`)."""

    #: connections admitted (not refused)
    accepted: int = 0
    #: connections answered 503 at accept: ``http.max_connections`` reached
    refused_server_full: int = 0
    #: connections answered 503 at accept: ``http.max_connections_per_address`` reached
    refused_address_full: int = 0
    #: request heads not complete within ``http.header_timeout`` (408, or closed if empty)
    header_timeouts: int = 0
    #: kept-alive connections closed after ``http.keepalive_timeout`` idle
    idle_timeouts: int = 0
    #: body reads that got no byte within ``http.body_timeout``
    body_timeouts: int = 0
    #: request heads over a bound (414 or 431)
    heads_too_large: int = 0
    #: request heads that could not be parsed (400)
    bad_requests: int = 0
    #: ``Upgrade: websocket`` outside the websocket paths (400)
    stray_upgrades: int = 0
    #: connections closed because the app left the request body unread
    unread_bodies: int = 0


class TimedReader(io.RawIOBase):
    """The raw side of a connection's ``rfile``: reads of the client socket.

    While :attr:`timeout` is set (the body of a request is being read), a
    read that gets no byte in that many seconds raises :class:`BodyTimeout`.
    """

    def __init__(self, sock: Any, counters: HttpCounters) -> None:
        super().__init__()
        self._sock = sock
        #: the OS socket under gevent's (non-blocking): a read that finds bytes
        #: waiting needs no timer
        self._os_sock = getattr(sock, "_sock", None)
        self._counters = counters
        #: seconds a read may wait for a byte; None = forever
        self.timeout: float | None = None

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._sock.fileno()

    def readinto(self, buffer: Any) -> int:
        timeout = self.timeout
        if timeout is None:
            return self._sock.recv_into(buffer)
        if self._os_sock is not None:
            try:
                return self._os_sock.recv_into(buffer)
            except (BlockingIOError, InterruptedError):
                pass  # nothing waiting: wait, under the timer
        timer = Timeout.start_new(timeout)
        try:
            return self._sock.recv_into(buffer)
        except Timeout as expired:
            if expired is not timer:
                raise
            self._counters.body_timeouts += 1
            raise BodyTimeout(
                f"the request body sent nothing for {timeout:g} s (http.body_timeout)"
            ) from None
        finally:
            timer.close()


class BodyInput(pywsgi.Input):
    """pywsgi's ``wsgi.input``, except that the server never reads what the app left.

    pywsgi reads (and drops) the rest of a body the app did not read, to
    keep the connection: a refused 1 GB upload would be received in full.
    Here the connection is closed instead (see :class:`Handler`).
    """

    __slots__ = ()

    @property
    def complete(self) -> bool:
        """Whether the body was read to its end (a request without a body is)."""
        if self.chunked_input:
            return self.chunk_length == 0 and not self._chunked_input_error
        return self.position >= (self.content_length or 0)

    def _discard(self) -> None:
        """Read nothing: :class:`Handler` closes a connection whose body is not complete."""


class HeadRefused(Exception):
    """A request head over a bound or too slow: the answer and the counter to bump."""

    def __init__(self, status: str, code: str, message: str, counter: str) -> None:
        super().__init__(message)
        self.response = error_response(status, code, message)
        self.status = status
        self.counter = counter


def error_response(status: str, code: str, message: str, *headers: str) -> bytes:
    """A whole ``Connection: close`` JSON error response, ``{"error", "code"}``."""
    body = dumps({"error": message, "code": code})
    lines = [
        f"HTTP/1.1 {status}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def linger(sock: Any) -> None:
    """Half-close ``sock`` and drop what the client still sends, then return.

    At most :data:`LINGER_SECONDS` and :data:`LINGER_BYTES`; from a greenlet.
    The caller closes the socket.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        received = 0
        with Timeout(LINGER_SECONDS, False):
            while received < LINGER_BYTES:
                data = sock.recv(16384)
                if not data:
                    break
                received += len(data)
    except OSError:
        pass


#: Reason phrases of the statuses :meth:`Handler.handle_error` may answer.
REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    503: "Service Unavailable",
}
