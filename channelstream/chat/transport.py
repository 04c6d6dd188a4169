"""What every client transport of a connection shares: attach, kick, positions.

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

from .routing import resume_key

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
        *,
        resume_aware: bool = False,
    ) -> list[tuple[str, str]]:
        """Attach to ``connection`` (kicking the transport it had), apply ``resume``,
        then wait up to ``timeout`` until the kicked one stopped draining.

        Returns the resumes that failed (:meth:`ChatState.attach`). The wait
        yields: a transport whose :attr:`greenlet` runs this may get
        :class:`Kicked` here, by a newer one, after it attached.
        """
        previous = connection.transport  # read first: attaching replaces it
        failures = chat.attach(connection, self, resume, resume_aware=resume_aware)
        if previous is not None and previous is not self:
            previous.ended.wait(timeout)
        return failures


class Positions:
    """Where each stream of a connection stood before a transport drained any of it.

    A resume-aware client (it passed ``resume``, even ``{}``, or an SSE
    ``Last-Event-ID``) keeps a resume object ``{"<channel>": ["<epoch>",
    <offset>]}`` from the ``offset``/``epoch`` of the frames it received. It
    can only name the streams that delivered something to it: a frame lost
    on the way (the network dropped) takes its streams' news with it. So the
    connection remembers, per stream (channels and, as ``""``, its private
    messages), the position before the first message of that stream a
    resume-aware transport drained (``Connection.told``): at attach, and when
    the connection gets a new stream while attached (``/subscribe``; checked
    before each drain through ``Outbox.subscription_changes``: one
    comparison). When the client reconnects, a stream it does not name
    resumes from there (:meth:`ChatState.attach`) instead of going on live:
    nothing drained for it is lost, and, since the client names every stream
    it received from, nothing is repeated. SSE event ids carry all of them.
    """

    __slots__ = ("connection", "_changes")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._changes = -1

    def news(self) -> dict[str, tuple[str, int]]:
        """Positions of the streams not told yet on this transport, keyed as in ``resume``."""
        outbox = self.connection.outbox
        if outbox.subscription_changes == self._changes:
            return {}
        first = self._changes < 0
        self._changes = outbox.subscription_changes
        told = self.connection.told
        current = {resume_key(name): name for name in outbox.subscriptions}
        for key in [k for k in told if k not in current]:
            del told[key]  # a stream left: joined again, it is new
        missing = [name for key, name in current.items() if first or key not in told]
        if not missing:
            return {}
        news = {resume_key(name): pos for name, pos in outbox.positions(missing).items()}
        told.update(news)
        return news
