"""``g3.listen``: the G3 channel's frames to G3 clients, each through its own hub outbox.

:class:`G3Server` is the library's :class:`~channelstream.g3.server.StreamServer`
whose clients' queues are hub outboxes (:class:`_ClientOutbox`); its bounds,
drops, stopping and counters are in :mod:`channelstream.g3.door`'s doc.
"""

from __future__ import annotations

import logging
from typing import Any

from ...chat.routing import hub_channel
from ...hub import REASON_OVERFLOW, Decimation, Hub, Outbox
from ...serving.doors import Door, DoorState
from ...settings import G3Settings
from ..concurrency import GREENLETS
from ..server import State as ServerState
from ..server import StreamServer
from .message import G3_FILTER, G3Message

log = logging.getLogger(__name__)

#: The server's name in ``/healthz``.
SERVER_NAME = "g3-server"
#: Longest time a stopping server lets its clients receive what is queued (seconds).
FLUSH_TIMEOUT = 2.0
#: Clients listed in the server's ``per_client``.
MAX_CLIENTS_SHOWN = 100


class _ClientOutbox:
    """A G3 client's hub outbox, as the library's writer consumes a queue
    (:class:`~channelstream.g3.writer.ClientQueue`): drained messages become
    their frames' bytes."""

    __slots__ = ("outbox", "door")

    def __init__(self, outbox: Outbox, door: G3Server) -> None:
        self.outbox = outbox
        self.door = door

    @property
    def closed(self) -> bool:
        return self.outbox.closed

    @property
    def close_reason(self) -> str | None:
        return self.outbox.close_reason

    @property
    def dropped(self) -> int:
        return self.outbox.dropped

    def __len__(self) -> int:
        return len(self.outbox)

    def wait(self, timeout: float | None = None) -> bool:
        return self.outbox.wait(timeout)

    def drain(self) -> list[bytes]:
        frames: list[bytes] = []
        size = 0
        for message in self.outbox.drain():
            if isinstance(message, G3Message):
                data = message.frame.encode()
                frames.append(data)
                size += len(data)
            else:  # a stored frame replaced by an edit: no G3 bytes any more
                self.door.skipped += 1
        self.door.sent += len(frames)
        self.door.bytes += size
        return frames

    def close(self, reason: str = "closed", discard: bool = False) -> None:
        self.outbox.close(reason, discard=discard)


class G3Server(Door):
    """``g3.listen``: the channel's frames to G3 clients (see the package doc)."""

    #: one process of a gunicorn server binds g3.listen (it serves that process's channel)
    single = True

    def __init__(self, settings: G3Settings, *, hub: Hub) -> None:
        if settings.listen is None:
            raise ValueError("g3.listen is empty: the G3 server is off")
        self.name = SERVER_NAME
        self.hub = hub
        self.channel = settings.channel
        self.hub_channel = hub_channel(settings.channel)
        self.max_queue_size = settings.max_queue_size or hub.config.outbox_size
        self.max_client_bytes = settings.max_client_bytes
        self.decimation = dict(settings.decimation)
        self._decimation = Decimation(per_type=self.decimation) if self.decimation else None
        host, port = settings.listen
        self._server = StreamServer(
            None if host == "*" else host,
            port,
            concurrency=GREENLETS,
            queue_factory=self._open_client,
            drain_timeout=FLUSH_TIMEOUT,
        )
        self._state = DoorState.NEW
        #: Counters shown in ``/healthz`` (the library's server keeps the others).
        self.sent = 0
        self.bytes = 0
        self.skipped = 0
        self.refused = 0

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound (host, port), once started."""
        return self._server.address

    def start(self) -> None:
        """Bind and accept. Raises :class:`~channelstream.g3.errors.G3ConnectionError`."""
        self._server.start()
        self._state = DoorState.RUNNING

    def stop(self, timeout: float) -> None:
        """Stop accepting, let clients receive what is queued (``FLUSH_TIMEOUT`` at
        most), close every client."""
        if self._state in (DoorState.NEW, DoorState.STOPPED):
            self._state = DoorState.STOPPED
            return
        self._state = DoorState.STOPPING
        try:
            self._server.stop(min(timeout, FLUSH_TIMEOUT))
        finally:
            self._state = DoorState.STOPPED

    def status(self) -> dict[str, Any]:
        stats = self._server.stats()
        state = self._state
        if state is DoorState.RUNNING and self._server.state is not ServerState.RUNNING:
            state = DoorState.STOPPING
        return {
            "state": state.value,
            "address": stats["address"],
            "channel": self.channel,
            "clients": stats["clients"],
            "accepted": stats["accepted"],
            "sent": self.sent,
            "bytes": self.bytes,
            "dropped": stats["dropped"],
            "overflowed": stats["overflowed"],
            "cut": stats["cut"],
            "skipped": self.skipped,
            "refused": self.refused,
            "max_queue_size": self.max_queue_size,
            "max_client_bytes": self.max_client_bytes,
            "decimation": self.decimation,
            "per_client": stats["per_client"][:MAX_CLIENTS_SHOWN],
        }

    def _open_client(self, peer: str) -> _ClientOutbox:
        """The queue of a new client (called by the server's accept loop; never raises:
        a client that cannot be subscribed gets a closed queue, and is closed)."""
        outbox = self.hub.open_outbox(
            max_queue=self.max_queue_size,
            max_bytes=self.max_client_bytes,
            hard_bytes=self.max_client_bytes,
            name=f"g3:{peer}",
        )
        queue = _ClientOutbox(outbox, self)
        try:
            self.hub.subscribe(outbox, self.hub_channel, filter=G3_FILTER,
                               decimation=self._decimation)
        except Exception as err:  # the hub is stopping, or an engine is down
            self.refused += 1
            log.warning("G3 client %s refused: %s", peer, err)
            outbox.close(f"cannot subscribe: {err}", discard=True)
            return queue
        outbox.on_close(lambda closed: self._closed(queue, closed))
        return queue

    def _closed(self, queue: _ClientOutbox, outbox: Outbox) -> None:
        if outbox.close_reason == REASON_OVERFLOW:
            # Its writer may be blocked in a write to a stalled client: wake it.
            self._server.disconnect(
                queue, f"its undroppable frames passed hub.outbox_hard_limit "
                f"({outbox.hard_limit}) or g3.max_client_bytes ({self.max_client_bytes})")

