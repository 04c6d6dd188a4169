"""python-socketio's server, reading client packets strictly and refusing bad ones once.

A client's socket.io packet is JSON read with the project's strict reader
(:func:`channelstream.strict_json.loads`: standard JSON, at most 32 levels
deep, so a deeply nested ``auth`` or event is refused, never a
``RecursionError``). A packet that does not decode (bad JSON, too deep, bad
framing) ends that client's engine.io session at once (it is broken or
hostile; a connect does not hang), is counted in :attr:`StreamServer.bad_packets`,
and is logged as one warning line at most every few seconds, not a
traceback per packet.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import socketio
from socketio import packet

from .. import strict_json
from ..serving.doors import LogSampler

log = logging.getLogger(__name__)

#: Seconds between two log lines about malformed packets.
LOG_EVERY = 10.0


class StrictJSON:
    """The ``json`` module python-socketio's packets use: strict reading."""

    loads = staticmethod(strict_json.loads)
    dumps = staticmethod(json.dumps)


class StrictPacket(packet.Packet):
    """socket.io packets decoded with :class:`StrictJSON` (this server's only)."""

    json = StrictJSON


class StreamServer(socketio.Server):
    """``socketio.Server`` whose client packets are read strictly (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, serializer=StrictPacket, **kwargs)
        #: Client packets refused because they did not decode.
        self.bad_packets = 0
        self._log = LogSampler(LOG_EVERY)

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

    def _refuse(self, eio_sid: str, err: ValueError) -> None:
        self.bad_packets += 1
        if self._log.due():
            skipped = self._log.take_suppressed()
            log.warning(
                "socket.io: a client sent a malformed packet (%s); its session is closed%s",
                err,
                f" ({skipped} more since the last line)" if skipped else "",
            )
        self.eio.disconnect(eio_sid)


__all__ = ["StreamServer", "StrictJSON", "StrictPacket"]
