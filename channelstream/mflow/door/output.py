"""A ``zmq.outputs`` entry: one hub outbox on the channel, its messages out.

:class:`ZmqOutput` sends what its outbox gets, one message at a time, so that
a full ZMQ queue leaves the rest to the outbox's bound and drops; at stop it
flushes for :data:`FLUSH_TIMEOUT` at most (:mod:`channelstream.mflow.door`'s
doc has the forms sent, the bounds and the counters).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
import zmq

from ...chat.routing import hub_channel
from ...hub import REASON_LOST, REASON_OVERFLOW, Decimation, Hub, Outbox
from ...settings.endpoints import ZmqEndpoint
from ..stream import Stream
from .endpoint import ZmqContext, ZmqDoor
from .message import output_parts

log = logging.getLogger(__name__)

#: Messages an output sends before it yields to other greenlets.
SEND_BATCH = 64
#: Seconds a blocked send waits before the output looks at whether it is stopping.
SEND_SLICE = 0.5
#: Seconds a stopping output goes on sending what it holds to peers that take it.
FLUSH_TIMEOUT = 1.0
#: ms an output's socket keeps unsent messages when it closes.
LINGER_MS = 1000


class ZmqOutput(ZmqDoor):
    """A ``zmq.outputs`` entry: one outbox on the channel, its messages out (the package doc)."""

    linger = LINGER_MS
    #: a connecting socket queues only to a peer it is connected to: without one it is
    #: full (the writer waits, the outbox's bound applies), as a bound one is
    socket_options = ((zmq.IMMEDIATE, 1),)

    def __init__(self, endpoint: ZmqEndpoint, *, hub: Hub, context: ZmqContext) -> None:
        super().__init__(endpoint, hub=hub, context=context)
        self.sent = 0
        self.bytes = 0
        self.waits = 0
        self.overflows = 0
        self._dropped_before = 0  # drops of the outboxes before the current one
        self._outbox: Outbox | None = None
        self._flush_deadline: float | None = None

    def run(self) -> None:
        try:
            link = self._connect(send_timeout=int(SEND_SLICE * 1000))
            if link is None:
                return
            while not self.stopping:
                outbox = self._subscribe()
                try:
                    self._send_all(link.stream, outbox)
                finally:
                    outbox.close("zmq output stopped", discard=True)
                    self._dropped_before += outbox.dropped
                    self._outbox = None
                if outbox.close_reason == REASON_OVERFLOW and not self.stopping:
                    self.overflows += 1
                    log.warning("%s: over hub.outbox_hard_limit undroppable messages: its "
                                "outbox was closed; subscribed again", self.name)
                    continue
                if outbox.close_reason == REASON_LOST and not self.stopping:
                    log.warning("%s: the shared engine lost messages of %s on the way; "
                                "subscribed again", self.name, self.endpoint.channel)
                    continue
                return
        finally:
            self._disconnect()

    def interrupt(self) -> None:
        """Close the outbox: the writer sends what it holds (for :data:`FLUSH_TIMEOUT`
        at most), then ends."""
        self._flush_deadline = time.monotonic() + FLUSH_TIMEOUT
        outbox = self._outbox
        if outbox is not None:
            outbox.close("server shutting down")

    def extra_status(self) -> dict[str, Any]:
        outbox = self._outbox
        return {
            **self._common_status(),
            "modulo": self.endpoint.modulo,
            "sent": self.sent,
            "bytes": self.bytes,
            "dropped": self._dropped_before + (outbox.dropped if outbox is not None else 0),
            "queued": len(outbox) if outbox is not None else 0,
            "waits": self.waits,
            "overflows": self.overflows,
        }

    def _subscribe(self) -> Outbox:
        endpoint = self.endpoint
        outbox = self.hub.open_outbox(max_queue=endpoint.queue_size, name=self.name)
        modulo = endpoint.modulo
        self.hub.subscribe(outbox, hub_channel(endpoint.channel),
                           decimation=Decimation(modulo) if modulo > 1 else None)
        self._outbox = outbox
        return outbox

    def _send_all(self, stream: Stream, outbox: Outbox) -> None:
        """Send what the outbox gets until it closes (then what it still holds).

        One message at a time: the one being sent is the only one outside the
        outbox, so a full ZMQ queue leaves everything else where the outbox's
        bound (``queue_size``) and drops apply.
        """
        since_yield = 0
        while True:
            if not outbox.wait():
                continue
            taken = outbox.drain(1)
            if not taken:
                if outbox.closed:
                    return
                continue
            message = taken[0]
            parts = output_parts(message)
            if not self._send(stream, parts):
                # stopping, and the peers took too long: what is left is lost
                self._dropped_before += 1 + len(outbox.drain())
                return
            self.sent += 1
            self.bytes += message.size or sum(len(p) for p in parts)
            since_yield += 1
            if since_yield >= SEND_BATCH:
                since_yield = 0
                gevent.sleep(0)  # a fast channel must not keep the others waiting

    def _send(self, stream: Stream, parts: list) -> bool:
        """Send one message whole; False only when the flush at stop is over."""
        if stream.send_parts(parts, block=False):
            return True
        self.waits += 1
        while not self._flush_over():
            try:
                return stream.send_parts(parts)  # waits SEND_SLICE at most (green)
            except zmq.Again:
                continue
        return False

    def _flush_over(self) -> bool:
        deadline = self._flush_deadline
        return deadline is not None and time.monotonic() >= deadline

