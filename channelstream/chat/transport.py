"""What every client transport of a connection shares: attach, kick.

A transport (a websocket, one long-poll request, an SSE stream) attaches to
a connection, drains its outbox from one greenlet, and detaches. A newer
transport of the same connection kicks the older one; so do the collector
and the shutdown. Kicking never blocks (it may run inside a hub publish): it
throws :class:`Kicked` into the transport's greenlet, and the transport that
replaces it waits for :attr:`Transport.ended` (:meth:`Transport.attach`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import gevent
from gevent.event import Event

if TYPE_CHECKING:
    from . import ChatState
    from .connections import Connection


class Kicked(Exception):
    """Thrown into a transport's greenlet to end it."""


class Transport:
    """Base of the client transports (see the module doc)."""

    kind = "transport"

    def __init__(self) -> None:
        self.greenlet: gevent.Greenlet | None = None
        self.kicked: str | None = None
        self.ended = Event()

    def kick(self, reason: str) -> None:
        """End this transport soon; never blocks.

        Sets :attr:`kicked` at once: a transport checks it after every wait
        and before draining, so once kicked it takes nothing more from the
        outbox even if a wake-up reaches it before the exception does.
        """
        if self.kicked is not None:
            return
        self.kicked = reason
        greenlet = self.greenlet
        if greenlet is None or greenlet.dead:
            self.ended.set()  # it never started draining, or has stopped
        elif greenlet is not gevent.getcurrent():
            greenlet.kill(Kicked(reason), block=False)

    def attach(
        self,
        chat: ChatState,
        connection: Connection,
        resume: Mapping[str, tuple[str, int]],
        timeout: float = 5.0,
    ) -> list[tuple[str, str]]:
        """Attach to ``connection`` (kicking the transport it had), apply ``resume``,
        then wait up to ``timeout`` until the kicked one stopped draining.

        Returns the resumes that failed (:meth:`ChatState.attach`). The wait
        yields: a transport whose :attr:`greenlet` runs this may get
        :class:`Kicked` here, by a newer one, after it attached.
        """
        previous = connection.transport  # read first: attaching replaces it
        failures = chat.attach(connection, self, resume)
        if previous is not None and previous is not self:
            previous.ended.wait(timeout)
        return failures

