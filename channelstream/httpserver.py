"""The HTTP server of the process: gevent's pywsgi with websocket upgrades.

Used by the project's server runner (:mod:`channelstream.server`) and by the
gunicorn worker (:mod:`channelstream.gunicorn_worker`), so both serve alike:

- a view of an upgraded request finds the websocket in
  ``environ["wsgi.websocket"]`` (gevent-websocket);
- every accepted TCP socket gets ``TCP_NODELAY`` (small frames go out now);
- ``environ["RAW_URI"]`` is the request target exactly as sent on the request
  line (as gunicorn's own workers set it): signed server API calls are
  checked against it (:func:`channelstream.signing.request_target`);
- one access line per request goes to the ``channelstream.access`` logger,
  with the values of credential-like query parameters redacted;
- :meth:`WSGIServer.drain` ends a server gracefully: idle keep-alive
  connections are closed at once, requests in progress get a grace period.

This module does not monkey-patch; whoever runs the server does.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from typing import Any

import gevent
from gevent import pywsgi
from gevent.event import Event
from gevent.pool import Pool
from geventwebsocket.handler import WebSocketHandler

access_log = logging.getLogger("channelstream.access")
log = logging.getLogger("channelstream.server")

#: Query parameters whose values never reach a log line.
REDACTED_PARAMS = frozenset({"sig", "token", "secret", "signature"})

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


class Handler(WebSocketHandler):
    """One client connection: websocket upgrades, TCP_NODELAY, redacted access log.

    Tracks whether it is inside a request (``busy``) so that
    :meth:`WSGIServer.drain` can close idle keep-alive connections at once
    and give requests in progress their grace period.
    """

    busy = False
    greenlet: gevent.Greenlet | None = None

    def handle(self) -> None:
        """Set TCP_NODELAY, register with the server, then serve the connection."""
        if self.socket.family in (socket.AF_INET, socket.AF_INET6):
            try:
                self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # the peer may already be gone; the handler will notice
                pass
        self.greenlet = gevent.getcurrent()
        handlers = getattr(self.server, "handlers", None)
        if handlers is not None:
            handlers.add(self)
        try:
            super().handle()
        finally:
            if handlers is not None:
                handlers.discard(self)

    def handle_one_response(self) -> None:
        """Run the app for one request; once draining, close the connection after it."""
        self.busy = True
        try:
            super().handle_one_response()
        finally:
            self.busy = False
            if getattr(self.server, "draining", False):
                self.close_connection = True

    def get_environ(self) -> dict[str, Any]:
        """pywsgi's environ plus ``RAW_URI``: the request target as sent."""
        environ = super().get_environ()
        environ["RAW_URI"] = self.path
        return environ

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

    Takes pywsgi's arguments (``spawn`` defaults to an unbounded pool).
    Errors of the server go to the ``channelstream.server`` logger at ERROR;
    access lines are written by :class:`Handler`.
    """

    handler_class = Handler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("spawn", Pool())  # a pool, so that stop() can wait and kill
        kwargs.setdefault("error_log", log)
        kwargs.setdefault("log", None)
        super().__init__(*args, **kwargs)
        #: gevent-websocket's handler logs through ``server.logger``.
        self.logger = logging.getLogger("channelstream.websocket")
        #: Connections being served (see :class:`Handler`).
        self.handlers: set[Handler] = set()
        #: Set by :meth:`drain`: finished requests close their connection.
        self.draining = False

    def close(self) -> None:
        """Stop accepting and close idle keep-alive connections at once.

        Requests in progress go on; their connection closes after the
        response. gunicorn's worker calls this when told to exit, so idle
        clients do not hold it up for the whole graceful timeout.
        """
        self.draining = True
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
