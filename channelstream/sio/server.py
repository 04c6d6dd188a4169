"""python-socketio's server for ``/stream``: strict packets, lean sessions, a start hook.

:class:`StreamServer` is ``socketio.Server`` on :class:`~.engine.EngineServer`
(engine.io sessions without greenlets of their own) with three changes:

- a client's socket.io packet is JSON read with the project's strict reader
  (:func:`channelstream.strict_json.loads`: standard JSON, at most 32 levels
  deep, so a deeply nested ``auth`` or event is refused, never a
  ``RecursionError``). A packet that does not decode (bad JSON, too deep,
  bad framing; or an engine.io packet that does not) ends that client's
  engine.io session at once (it is broken or hostile; a connect does not
  hang), is counted in :attr:`StreamServer.bad_packets`, and is logged as
  one warning line at most every few seconds, not a traceback per packet;
- of the WSGI environ of a client's first request, socket.io keeps only
  :data:`KEPT_ENVIRON` (the whole one would keep the request's handler and
  its buffers alive for as long as the client stays);
- once socket.io has sent a namespace's CONNECT to a client, it calls
  ``on_connected(sid)`` (:attr:`StreamServer.on_connected`): events may
  follow from then on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import socketio
from socketio import packet

from .. import strict_json
from ..serving.doors import LogSampler
from .engine import EngineServer

log = logging.getLogger(__name__)

#: Seconds between two log lines about malformed packets.
LOG_EVERY = 10.0

#: What socket.io keeps of a client's WSGI environ (``get_environ``, connect handlers).
KEPT_ENVIRON = (
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "REMOTE_ADDR",
    "HTTP_ORIGIN",
    "HTTP_USER_AGENT",
    "HTTP_X_FORWARDED_FOR",
)


class StrictJSON:
    """The ``json`` module python-socketio's packets use: strict reading."""

    loads = staticmethod(strict_json.loads)
    dumps = staticmethod(json.dumps)


class StrictPacket(packet.Packet):
    """socket.io packets decoded with :class:`StrictJSON` (this server's only)."""

    json = StrictJSON


class StreamServer(socketio.Server):
    """``socketio.Server`` for ``/stream`` (see the module doc).

    :param websockets: passed to :class:`~.engine.EngineServer`.

    Other arguments are ``socketio.Server``'s (and engine.io's).
    """

    def __init__(self, *args: Any, websockets: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(
            *args,
            serializer=StrictPacket,
            websockets=websockets,
            on_bad_packet=self._bad_eio_packet,
            **kwargs,
        )
        #: Client packets refused because they did not decode.
        self.bad_packets = 0
        #: Called with a client's sid once socket.io sent it CONNECT (see the module doc).
        self.on_connected: Callable[[str], None] | None = None
        self._log = LogSampler(LOG_EVERY)

    def _engineio_server_class(self) -> type[EngineServer]:
        return EngineServer

    def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        kept = {key: environ[key] for key in KEPT_ENVIRON if key in environ}
        return super()._handle_eio_connect(eio_sid, kept)

    def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        super()._handle_connect(eio_sid, namespace, data)
        callback = self.on_connected
        if callback is not None:
            sid = self.manager.sid_from_eio_sid(eio_sid, namespace or "/")
            if sid is not None and self.manager.is_connected(sid, namespace or "/"):
                callback(sid)

    def _handle_eio_message(self, eio_sid: str, data: Any) -> Any:
        # Decoded first on its own (client packets are few and small): a
        # ValueError from the handlers below would be a bug, not bad input.
        if isinstance(data, str) and eio_sid not in self._binary_packet:
            try:
                self.packet_class(encoded_packet=data)
            except ValueError as err:
                self._refuse(eio_sid, err)
                return None
        return super()._handle_eio_message(eio_sid, data)

    def _count_bad(self, err: Exception) -> None:
        self.bad_packets += 1
        if self._log.due():
            skipped = self._log.take_suppressed()
            log.warning(
                "socket.io: a client sent a malformed packet (%s); its session is closed%s",
                err,
                f" ({skipped} more since the last line)" if skipped else "",
            )

    def _refuse(self, eio_sid: str, err: ValueError) -> None:
        self._count_bad(err)
        self.eio.disconnect(eio_sid)

    def _bad_eio_packet(self, sock: Any, err: Exception) -> None:
        self._count_bad(err)  # the engine.io server closes the session


__all__ = ["KEPT_ENVIRON", "StreamServer", "StrictJSON", "StrictPacket"]
