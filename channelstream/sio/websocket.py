"""The websocket of an engine.io session: the server's own, driven by watchers.

:class:`EngineIOWebSocket` is :class:`channelstream.web.websocket.WebSocket`
(a non-blocking socket driven by libev watchers, as on ``/ws``) carrying
one :class:`~.engine.EngineSocket`, which makes it when it takes an upgrade
over (:mod:`.engine`):

- each whole client message (``str`` for text) goes to
  :meth:`EngineSocket.on_ws_message <.engine.EngineSocket.on_ws_message>`
  from the read watcher; a message over ``socketio.max_payload`` bytes
  closes with 1009 before its payload is read, invalid UTF-8 with 1007 (by
  the frame reader);
- :meth:`EngineIOWebSocket.send_packet` frames one engine.io packet and
  :meth:`~channelstream.web.websocket.WebSocket.send` hands whole frames
  over; neither blocks, and what waits for a slow client is bounded
  (``max_pending``: past it, close 1008). The fan-out stops producing
  while the socket is :attr:`~channelstream.web.websocket.WebSocket.blocked`
  and resumes from :attr:`EngineIOWebSocket.on_writable`;
- closed, it tells its engine.io session
  (:meth:`~.engine.EngineSocket.on_ws_closed`) and leaves the door's
  ``websockets`` (by engine.io sid), where it is kept while open.

An idle one costs a socket, a read watcher and a few small objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from gevent import get_hub, getcurrent
from gevent.event import Event

from ..web.websocket import WebSocket
from ..web.wsframes import OP_BINARY, OP_TEXT, FrameReader, frame

if TYPE_CHECKING:
    from .engine import EngineSocket

log = logging.getLogger(__name__)


class EngineIOWebSocket(WebSocket):
    """A taken-over websocket carrying an engine.io session (see the module doc).

    :param sock: the upgraded connection (non-blocking).
    :param eio_socket: the engine.io session it carries.
    :param max_message: largest client message in bytes (``socketio.max_payload``).
    :param registry: where it is kept by engine.io sid while open.
    """

    def __init__(
        self,
        sock: Any,
        eio_socket: EngineSocket,
        max_message: int,
        registry: MutableMapping[str, EngineIOWebSocket],
    ) -> None:
        super().__init__(sock)
        self.eio_socket = eio_socket
        self.max_message = max_message
        self._registry = registry
        self._drained: Event | None = None  # made by the first wait_sent that waits
        #: Called (from the event loop) when pending bytes are out; the fan-out resumes there.
        self.on_writable: Callable[[], None] | None = None
        registry[eio_socket.sid] = self

    # -- input ----------------------------------------------------------------------------

    def new_reader(self) -> FrameReader:
        return FrameReader(self.max_message, keep_data=True)

    def on_message(self, opcode: int, payload: bytes) -> None:
        # the reader refused a text message that is not UTF-8 (1007) already
        message: str | bytes = payload.decode("utf-8") if opcode == OP_TEXT else payload
        self.eio_socket.on_ws_message(self, message)

    # -- output ------------------------------------------------------------------------

    def send_packet(self, packet: str | bytes) -> None:
        """Send one engine.io packet (text or binary) as one frame; never blocks."""
        if isinstance(packet, str):
            self.send(frame(packet.encode("utf-8"), OP_TEXT))
        else:
            self.send(frame(packet, OP_BINARY))

    def wait_sent(self) -> None:
        """From a greenlet: wait while bytes are pending (until the client took them,
        or the socket closed)."""
        if getcurrent() is get_hub():
            return
        while self.blocked and not self.closed:
            if self._drained is None:
                self._drained = Event()
            self._drained.clear()
            self._drained.wait()

    def on_drained(self) -> None:
        if self._drained is not None:
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
        if self._drained is not None:
            self._drained.set()
        self.eio_socket.on_ws_closed(self)


__all__ = ["EngineIOWebSocket"]
