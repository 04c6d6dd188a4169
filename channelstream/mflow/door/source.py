"""A ``zmq.sources`` entry: mflow messages in, hub messages out.

:class:`ZmqSource` receives whole mflow messages in its own greenlet and
publishes them in batches into its channel (:mod:`channelstream.mflow.door`'s
doc has the frame, the counters and what is malformed or too large).
"""

from __future__ import annotations

import logging
from typing import Any

import gevent
import zmq

from ...hub import Hub, Message
from ...serving.doors import DoorState, LogSampler
from ...settings.endpoints import ZmqEndpoint
from .. import jsonpart
from ..errors import MalformedMessage
from ..stream import Stream
from .endpoint import ZmqContext, ZmqDoor
from .message import Origin, ZmqMessage

log = logging.getLogger(__name__)

#: Most messages a source publishes at once (then it yields), and most bytes.
BATCH = 64
BATCH_BYTES = 1 << 20
#: Seconds between two log lines about malformed messages of one source.
LOG_EVERY = 10.0


class ZmqSource(ZmqDoor):
    """A ``zmq.sources`` entry: mflow messages in, hub messages out (the package doc)."""

    no_peer_state = DoorState.WAITING  # its sender is off: nothing is lost

    def __init__(self, endpoint: ZmqEndpoint, *, hub: Hub, context: ZmqContext,
                 max_inline_bytes: int, max_message_bytes: int) -> None:
        super().__init__(endpoint, hub=hub, context=context)
        self.origin = Origin(endpoint.channel, endpoint.name, max_inline_bytes)
        self.max_message_bytes = max_message_bytes
        self.received = 0
        self.bytes = 0
        self.malformed = 0
        self.too_large = 0
        self.last_malformed: str | None = None
        self._runner: gevent.Greenlet | None = None
        self._malformed_log = LogSampler(LOG_EVERY)

    def run(self) -> None:
        self._runner = gevent.getcurrent()
        try:
            link = self._connect(max_message_size=self.max_message_bytes)
            if link is not None:
                self._receive(link.stream)
        finally:
            self._runner = None
            self._disconnect()

    def interrupt(self) -> None:
        """Kill the receiving greenlet where it waits (nothing is half read)."""
        runner = self._runner
        if runner is not None and runner is not gevent.getcurrent():
            runner.kill(block=False)

    def extra_status(self) -> dict[str, Any]:
        return {
            **self._common_status(),
            "received": self.received,
            "bytes": self.bytes,
            "malformed": self.malformed,
            "too_large": self.too_large,
            "last_malformed": self.last_malformed,
        }

    def _receive(self, stream: Stream) -> None:
        """Receive, publish each batch, yield; until killed.

        A batch is what is waiting, up to :data:`BATCH` messages (malformed
        ones included) or :data:`BATCH_BYTES`: a flood of any kind of message
        yields as often.
        """
        receive = stream.receive
        # What is waiting is read whole with one call (the stream's own non-blocking
        # receive reads part by part, and a green socket checks its state after each).
        recv_waiting = stream.socket.recv_multipart
        handle = stream.handle
        statistics = stream.statistics
        publish_many = self.hub.publish_many
        origin = self.origin
        limit = self.max_message_bytes
        while True:
            batch: list[Message] = []
            batch_bytes = 0
            for taken in range(BATCH):
                try:
                    if taken:
                        try:
                            frames = recv_waiting(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        message = handle(frames)
                    else:
                        message = receive()  # waits (this greenlet only)
                except MalformedMessage as err:
                    self._count_malformed(err)
                    continue
                size = statistics.bytes_received
                if size > limit:
                    self._count_too_large(size)
                    continue
                data = message.data
                header = data.get("header") if isinstance(data, dict) else None
                if not isinstance(header, dict):
                    header = jsonpart.loads(message.frames[0])
                batch.append(ZmqMessage(message.frames, header, origin, size))
                batch_bytes += size
                if batch_bytes >= BATCH_BYTES:
                    break
            if batch:
                publish_many(batch)
                self.received += len(batch)
                self.bytes += batch_bytes
            gevent.sleep(0)  # let clients' writers and other doors run

    def _count_malformed(self, err: MalformedMessage) -> None:
        self.malformed += 1
        self.last_malformed = str(err)
        if self._malformed_log.due():
            others = self._malformed_log.take_suppressed()
            log.warning("%s: a malformed message (%s parts) skipped: %s%s", self.name, err.parts,
                        err, f"; {others} more since the last report" if others else "")

    def _count_too_large(self, size: int) -> None:
        self.too_large += 1
        self.last_malformed = (f"a message of {size} bytes, over zmq.max_message_bytes "
                               f"({self.max_message_bytes})")
        if self._malformed_log.due():
            log.warning("%s: %s: dropped", self.name, self.last_malformed)

