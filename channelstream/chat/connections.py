"""Connections: one client session of a user, with its outbox.

A connection is made by ``/connect`` and outlives its transports: a websocket,
a long-poll or an SSE stream attaches to it, drains its outbox, and detaches.
Messages published while no transport is attached wait in the outbox (bounded
by the hub). A connection with no transport for ``gc_conns_after`` seconds is
collected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..hub import Outbox

if TYPE_CHECKING:
    from .users import User


class Transport(Protocol):
    """What a transport attached to a connection must offer."""

    kind: str

    def kick(self, reason: str) -> None:
        """End this transport soon (replaced, connection collected, shutdown)."""


class Connection:
    """A connection of ``user``; ``outbox`` carries its frames."""

    def __init__(self, conn_id: str, user: User, outbox: Outbox, now: float) -> None:
        self.id = conn_id
        self.user = user
        self.outbox = outbox
        #: channelstream channel names this connection is in
        self.channels: set[str] = set()
        #: the channels the backend put it in (``/connect``, ``/subscribe``)
        self.granted: set[str] = set()
        self.transport: Transport | None = None
        #: when the last transport went away (None while one is attached)
        self.detached_at: float | None = now
        self.created = now
        self.closed = False
        #: The position last told to a resume-aware client, per ``resume`` key
        #: (see :class:`~channelstream.chat.transport.Positions`).
        self.told: dict[str, tuple[str, int]] = {}
        #: The process it was handed over to (``ChatState.hand_over``): it closed
        #: here without leaving its channels, which it is still in over there.
        self.moved_to: str | None = None

    def attach(self, transport: Transport) -> Transport | None:
        """Make ``transport`` the one that drains the outbox; return the one it replaces."""
        previous, self.transport = self.transport, transport
        self.detached_at = None
        return previous

    def detach(self, transport: Transport, now: float) -> None:
        """``transport`` ended; start the collection clock if it was the current one."""
        if self.transport is transport:
            self.transport = None
            self.detached_at = now

    def idle_for(self, now: float) -> float:
        return 0.0 if self.detached_at is None else now - self.detached_at
