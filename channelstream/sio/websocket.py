"""engine.io's websocket transport on the server's own websockets, without greenlet writes.

engine.io (gevent mode) runs a client's websocket through a ``websocket``
class of its async driver: ``cls(handler, server)(environ, start_response)``
calls ``handler(ws)`` (``Socket._websocket_handler``), which reads with
``ws.wait()`` in the request's greenlet and writes with ``ws.send()`` from a
writer greenlet that drains the socket's queue. :class:`TakeoverWSGI` is that
class for this server (the door installs it on its engine.io server): it
takes the connection over as ``/ws`` does
(``environ["channelstream.websocket.takeover"]``, set by
:mod:`channelstream.web.httpserver` for the paths in
``Runtime.raw_websocket_paths``), once engine.io has validated the request,
and hands engine.io an :class:`EngineIOWebSocket` (through an :class:`EngineIOView`):

- built on :class:`channelstream.transports.websocket.WebSocket`: a
  non-blocking socket driven by libev watchers, whose ``send`` never blocks
  and keeps whole frames in order;
- engine.io's ``send(str | bytes)`` (its writer, the upgrade probe) frames the
  packet and then waits while the kernel has not taken it, so engine.io's
  queue, not this socket, holds what a slow client has not read;
- ``wait()``/``receive()`` returns the next whole client message (``str``
  for text) or ``None`` once the socket closes; at most
  :data:`MAX_RECEIVED` messages wait to be taken, then reading pauses;
  a message over ``socketio.max_payload`` bytes closes with 1009 before
  its payload is read, invalid UTF-8 with 1007 (by the frame reader);
- its own ``send(frames)`` (:class:`WebSocket`'s: never blocks, keeps
  whole frames in order) is the fan-out's way in: frames encoded once for
  every recipient are handed to the socket straight from the hub's wake-up
  (see :class:`channelstream.sio.session.ChatTransport`).

The engine.io socket of each taken-over websocket is in
:attr:`EngineIOWebSocket.eio_socket`, and the websocket in the door's
``websockets`` (by engine.io sid) while open. Without a takeover callable in
the environ (a server other than :mod:`channelstream.web.httpserver`) the
upgrade is refused with 400: there is no other websocket implementation.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Any

from gevent import get_hub, getcurrent
from gevent.event import Event

from ..web.websocket import WebSocket
from ..web.wsframes import (
    CLOSE_NORMAL,
    OP_BINARY,
    OP_TEXT,
    TAKEOVER_KEY,
    FrameReader,
    HandshakeError,
    frame,
)

log = logging.getLogger(__name__)

#: Client messages read ahead of engine.io before reading pauses.
MAX_RECEIVED = 16


class EngineIOWebSocket(WebSocket):
    """A taken-over websocket carrying an engine.io socket (engine.io sees it
    through an :class:`EngineIOView`).

    :param sock: the upgraded connection (non-blocking).
    :param environ: the upgrade request's environ.
    :param eio_socket: the engine.io socket it carries.
    :param max_message: largest client message in bytes (``socketio.max_payload``).
    :param registry: where it is kept by engine.io sid while open.
    """

    def __init__(
        self,
        sock: Any,
        environ: dict[str, Any],
        eio_socket: Any,
        max_message: int,
        registry: MutableMapping[str, EngineIOWebSocket],
    ) -> None:
        super().__init__(sock)
        self.version = environ.get("HTTP_SEC_WEBSOCKET_VERSION")
        self.path = environ.get("PATH_INFO")
        self.origin = environ.get("HTTP_ORIGIN")
        self.eio_socket = eio_socket
        self.max_message = max_message
        self._registry = registry
        self._received: deque[str | bytes] = deque()
        self._arrived = Event()
        self._drained = Event()
        self._paused = False
        #: Greenlets in :meth:`wait_sent` (engine.io's writer may hold packets meanwhile).
        self.writers_waiting = 0
        #: Called (from the hub) when pending bytes are out; the fan-out resumes there.
        self.on_writable: Callable[[], None] | None = None
        registry[eio_socket.sid] = self
        self.start_reading()

    # -- input ----------------------------------------------------------------------------

    def new_reader(self) -> FrameReader:
        return FrameReader(self.max_message, keep_data=True)

    def on_message(self, opcode: int, payload: bytes) -> None:
        # the reader refused a text message that is not UTF-8 (1007) already
        message: str | bytes = payload.decode("utf-8") if opcode == OP_TEXT else payload
        self._received.append(message)
        if len(self._received) >= MAX_RECEIVED:
            self._paused = True
            self.stop_reading()
        self._arrived.set()

    def receive(self) -> str | bytes | None:
        """The next client message; ``None`` once closed. Blocks the calling greenlet."""
        while not self._received:
            if self.closing:
                return None
            self._arrived.clear()
            self._arrived.wait()
        message = self._received.popleft()
        if self._paused and len(self._received) < MAX_RECEIVED // 2 and not self.closing:
            self._paused = False
            self.start_reading()
        return message

    # -- output ------------------------------------------------------------------------

    def send_packet(self, message: str | bytes) -> None:
        """Send one engine.io packet; from a greenlet, wait until the kernel took it.

        Dropped once the websocket is closing (engine.io then sees ``None``
        from :meth:`receive` and ends the session).
        """
        if isinstance(message, str):
            data = frame(message.encode("utf-8"), OP_TEXT)
        else:
            data = frame(message, OP_BINARY)
        if not self.closing:
            self.send(data)
        self.wait_sent()

    def wait_sent(self) -> None:
        """From a greenlet: wait while bytes are pending (until the client took them,
        or the socket closed). While it waits, :attr:`writers_waiting` counts it."""
        if getcurrent() is get_hub():
            return
        self.writers_waiting += 1
        try:
            while self.blocked and not self.closed:
                self._drained.clear()
                self._drained.wait()
        finally:
            self.writers_waiting -= 1

    def on_drained(self) -> None:
        self._drained.set()
        callback = self.on_writable
        if callback is not None:
            callback()

    def abort(self) -> None:
        """Close at once, dropping what the client has not read (it stopped reading)."""
        self._shut()

    def on_closed(self) -> None:
        if self._registry.get(self.eio_socket.sid) is self:
            del self._registry[self.eio_socket.sid]
        self.on_writable = None
        self._arrived.set()
        self._drained.set()


class EngineIOView:
    """What engine.io's websocket handler holds: ``send``, ``wait``, ``close``.

    A separate object because :class:`WebSocket` has its own ``send`` (of
    frames) and ``close`` (with a code).
    """

    __slots__ = ("ws",)
    protocol = None

    def __init__(self, ws: EngineIOWebSocket) -> None:
        self.ws = ws

    @property
    def version(self) -> str | None:
        return self.ws.version

    @property
    def path(self) -> str | None:
        return self.ws.path

    @property
    def origin(self) -> str | None:
        return self.ws.origin

    def send(self, message: str | bytes) -> None:
        self.ws.send_packet(message)

    def wait(self) -> str | bytes | None:
        return self.ws.receive()

    receive = wait

    def close(self) -> None:
        self.ws.close(CLOSE_NORMAL, "")


class TakeoverWSGI:
    """engine.io's ``websocket`` driver class: ``TakeoverWSGI(handler, server)(environ, ...)``.

    The door installs ``functools.partial(TakeoverWSGI, max_message=...,
    registry=...)`` in its engine.io server's driver table.
    """

    def __init__(
        self,
        handler: Callable[[Any], Any],
        server: Any,
        *,
        max_message: int,
        registry: MutableMapping[str, EngineIOWebSocket],
    ) -> None:
        self.handler = handler
        self.server = server
        self.max_message = max_message
        self.registry = registry

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        takeover = environ.get(TAKEOVER_KEY)
        eio_socket = self.handler.__self__  # type: ignore[attr-defined]
        try:
            if takeover is None:
                raise HandshakeError("websockets need channelstream's HTTP server")
            sock = takeover()
        except (HandshakeError, OSError) as err:  # OSError: the client left meanwhile
            if not eio_socket.connected:  # a new session: it ends here (an upgrade's goes on)
                eio_socket.close(wait=False, abort=True)
            return self.server._bad_request(str(err))
        ws = EngineIOWebSocket(sock, environ, eio_socket, self.max_message, self.registry)
        try:
            return self.handler(EngineIOView(ws))
        finally:
            ws.close(CLOSE_NORMAL, "")


__all__ = ["MAX_RECEIVED", "EngineIOView", "EngineIOWebSocket", "TakeoverWSGI"]
