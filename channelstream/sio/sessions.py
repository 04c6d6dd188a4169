"""The socket.io door's clients: one :class:`Sessions` that owns them and their counters.

The door makes one :class:`Sessions` and hands it to the namespace (which
adds and removes sessions as clients connect and go) and to every
:class:`~.session.Session` (which counts what it sends and drops, and
reaches the chat, the hub and the socket.io server through it). Nothing
else writes these dicts or counters; ``/healthz`` reads :meth:`Sessions.stats`.
Used from the gevent hub's greenlets only; no method yields.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from .pacing import Pacer

if TYPE_CHECKING:
    import socketio

    from ..chat import ChatState
    from ..hub import Hub
    from .session import Session
    from .websocket import EngineIOWebSocket


@dataclasses.dataclass
class SessionCounters:
    """What the door's clients did since it started (shown in ``/healthz``)."""

    connects: int = 0
    refused: int = 0
    queries: int = 0
    bad_queries: int = 0
    #: queries whose window history no longer held in full
    partial_replays: int = 0
    packets_sent: int = 0
    #: Packets dropped by query outboxes that are closed; open ones add theirs live.
    packets_dropped: int = 0
    #: Batches handed straight to a websocket, and through engine.io's queue.
    direct_writes: int = 0
    queued_writes: int = 0


class Sessions:
    """The live sessions of ``/stream`` and what they share.

    :param hub: the hub (GATD queries open outboxes on it).
    :param chat: the channelstream state (chat clients attach to connections).
    :param packet_channel: the hub channel of GATD packets.
    :param namespace: the socket.io namespace (``/stream``).

    :attr:`server` is the socket.io server while the door runs (None
    otherwise); :attr:`accepting` says whether new clients are let in.
    """

    def __init__(self, hub: Hub, chat: ChatState, packet_channel: str, namespace: str) -> None:
        self.hub = hub
        self.chat = chat
        self.packet_channel = packet_channel
        self.namespace = namespace
        self.server: socketio.Server | None = None
        self.accepting = False
        self.counters = SessionCounters()
        #: Sessions by socket.io sid.
        self.by_sid: dict[str, Session] = {}
        #: The clients' websockets by engine.io sid (kept by :mod:`.websocket`).
        self.websockets: dict[str, EngineIOWebSocket] = {}
        #: Spaces the chat transports' fan-out passes out under load.
        self.pacer = Pacer()

    def add(self, session: Session) -> None:
        """A client connected (the namespace's connect handler)."""
        self.by_sid[session.sid] = session
        self.counters.connects += 1

    def get(self, sid: str) -> Session | None:
        return self.by_sid.get(sid)

    def connected(self, sid: str) -> None:
        """socket.io sent CONNECT to ``sid`` (the server's ``on_connected``)."""
        session = self.by_sid.get(sid)
        if session is not None:
            session.connected()

    def remove(self, sid: str) -> Session | None:
        """A client disconnected: forget its session and return it (None if unknown)."""
        return self.by_sid.pop(sid, None)

    def end_all(self, reason: str) -> None:
        """End every session (each client gets an ``error`` event saying why)."""
        for session in list(self.by_sid.values()):
            session.end(reason)
        self.by_sid.clear()

    def stats(self) -> dict[str, Any]:
        """Counts of clients and the counters, as ``/healthz`` shows them."""
        sessions = self.by_sid.values()
        live_drops = sum(
            s.packets.dropped for s in sessions if s.packets is not None and not s.packets.closed
        )
        counters = dataclasses.asdict(self.counters)
        counters["packets_dropped"] += live_drops
        return {
            "clients": len(self.by_sid),
            "chat_clients": sum(1 for s in sessions if s.connection is not None),
            "query_clients": sum(1 for s in sessions if s.packets is not None),
            **counters,
            "websockets": len(self.websockets),
            "websockets_blocked": sum(1 for ws in self.websockets.values() if ws.blocked),
            "fanout_passes": self.pacer.passes,
            "fanout_passes_paced": self.pacer.paced,
        }


__all__ = ["SessionCounters", "Sessions"]
