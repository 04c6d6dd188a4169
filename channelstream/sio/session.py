"""One socket.io client of ``/stream``: its chat transport, its GATD query, its writers.

Fan-out goes through hub outboxes, as on every door. A channelstream
client's connection outbox is drained by its :class:`ChatTransport` (a
:class:`~channelstream.chat.transport.Transport`, attached, resumed, kicked
and detached by :class:`~channelstream.chat.ChatState` exactly as ``/ws``
is), which listens to the outbox: no greenlet of its own; a GATD query has
its own outbox on the packet channel, drained by a writer greenlet. Both
turn a drained batch into pre-encoded packets (:mod:`.codec`, cached on the
hub messages) and send them one of two ways:

- a client on a websocket (:mod:`.engine`: the engine.io session runs on
  it, with no queue) gets the batch's websocket frames (one frame per
  packet; a one-message batch's frame, and a batch's frames while the next
  client drains the same batch, encoded once for all recipients) straight
  from the hub's wake-up, as on ``/ws``; engine.io's and socket.io's own
  packets (acks, pings, events) go to the same socket as they are sent,
  so everything a client gets is in the order it was handed over;
- a long-polling client (or one whose upgrade is under way) gets them
  through engine.io's queue, after what is there, which its next poll (or
  the upgrade) takes.

The chat transports drain in the door's passes (:mod:`.pacing`): at once
while passes take little of the process's time, after a pause as long as
the last pass when they follow each other closely (under load: fewer,
fuller writes).

Backpressure: on a websocket, when the socket's kernel buffer is full the
rest waits and nothing more is drained until it empties
(:attr:`~.websocket.EngineIOWebSocket.on_writable` resumes). engine.io's
queue has no bound, so no more than :data:`MAX_IN_FLIGHT` packets are left
there; past that, the session waits until engine.io has taken them before
draining again. Whatever the client cannot take yet waits in its hub
outbox, which is bounded: chat frames are not droppable, so a chat client
past ``hub.outbox_hard_limit`` is disconnected (and resumes by offset; a
websocket that stopped reading is closed at once); GATD packets are, so a
slow GATD client loses the oldest (counted). Publishing never waits for
any of this.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import gevent

from ..chat.connections import Connection
from ..chat.frames import resume_failed
from ..chat.transport import Positions, Transport
from ..hub import Message, Outbox
from ..packets import Query
from ..packets.replay import REASON_HISTORY_END, serve_query
from .codec import chat_frames, chat_packets, data_event, data_event_frame, event_packet

if TYPE_CHECKING:
    from .sessions import Sessions
    from .websocket import EngineIOWebSocket

log = logging.getLogger(__name__)

#: Most messages drained at once by a writer (one hand-over to engine.io).
BATCH_LIMIT = 512
#: Packets a writer may leave in engine.io's queue before it waits for them to go:
#: a live client takes each at once and the writer never waits; a slow one holds
#: at most this many batches there, the rest stays in its (bounded) hub outbox.
MAX_IN_FLIGHT = 4


class ClientGone(ConnectionError):
    """The engine.io socket of the session closed."""


class Session:
    """State of one socket.io client of ``/stream`` (created by the connect handler).

    :param sessions: the door's :class:`~.sessions.Sessions`: what the
        session reaches (chat, hub, server) and where it counts.
    """

    def __init__(self, sessions: Sessions, sid: str, eio_socket: Any) -> None:
        self.sessions = sessions
        self.sid = sid
        self.eio_socket = eio_socket
        self.connection: Connection | None = None
        self.transport: ChatTransport | None = None
        self.packets: Outbox | None = None
        self.packet_writer: gevent.Greenlet | None = None
        self.ended = False

    # -- sending ----------------------------------------------------------------------

    @property
    def gone(self) -> bool:
        sock = self.eio_socket
        return sock is None or sock.closed or sock.closing

    @property
    def websocket(self) -> EngineIOWebSocket | None:
        """The client's websocket once the engine.io session runs on it (else None)."""
        sock = self.eio_socket
        return None if sock is None else sock.websocket

    def direct(self) -> EngineIOWebSocket | None:
        """The websocket to hand frames to directly: the session runs on it and
        neither is closing. Otherwise ``None``: packets go through engine.io's
        queue. The websocket's ``send`` (frames) never blocks."""
        sock = self.eio_socket
        if sock is None or not sock.upgraded or sock.closing or sock.closed:
            return None
        ws = sock.ws
        if ws is None or ws.closing:
            return None
        return ws

    def push(self, packets: Sequence[str]) -> None:
        """Send pre-encoded packets (to the websocket, or into engine.io's queue);
        never blocks."""
        sock = self.eio_socket
        if sock is None or not sock.send_texts(packets):
            raise ClientGone("the socket.io client is gone")

    def send(self, packets: Sequence[str]) -> None:
        """:meth:`push`; then, past :data:`MAX_IN_FLIGHT` packets not yet taken from
        engine.io's queue, wait until it took them all (backpressure).

        The wait ends when the client takes them (a poll, or the upgrade) or
        when :meth:`close` kills the writer (the engine.io socket closed).
        """
        self.push(packets)
        sock = self.eio_socket
        if sock.websocket is not None:
            return
        queue = sock.queue
        if queue.unfinished_tasks > MAX_IN_FLIGHT:
            queue.join()
            if self.gone:
                raise ClientGone("the socket.io client is gone")

    def emit(self, event: str, data: Any) -> None:
        """Send one event now (acks, errors, join/leave answers); never blocks."""
        try:
            self.push([event_packet(event, data)])
        except ClientGone:
            pass

    def connected(self) -> None:
        """socket.io sent CONNECT to the client: a chat transport starts (events may follow)."""
        if self.transport is not None:
            self.transport.start()

    # -- channelstream ------------------------------------------------------------

    def attach_chat(
        self,
        connection: Connection,
        resume: Mapping[str, tuple[str, int]],
        *,
        resume_aware: bool = False,
    ) -> None:
        """Attach to ``connection`` (kicking its previous transport) and resume.

        The transport starts once socket.io sent CONNECT (:meth:`connected`):
        first ``user_connect`` and any ``resume_failed`` frames, then the
        outbox. For a ``resume_aware`` client the connection remembers where each
        stream stood before it drains any of it (see
        :class:`~channelstream.chat.transport.Positions`).
        May wait (up to 5 s) for a replaced transport to stop draining.
        """
        transport = ChatTransport(self)
        # Set before attaching: a disconnect while it waits detaches this transport.
        self.connection = connection
        self.transport = transport
        failures = transport.attach(
            self.sessions.chat, connection, resume, resume_aware=resume_aware
        )
        user = connection.user
        first = [
            event_packet(
                "user_connect",
                {
                    "conn_id": connection.id,
                    "username": user.name,
                    "channels": sorted(connection.channels),
                    "state": user.public_state,
                },
            )
        ]
        if resume_aware:
            transport.positions = Positions(connection)
        transport.first = first + chat_packets((), extra=[resume_failed(c, r) for c, r in failures])

    # -- GATD -----------------------------------------------------------------------------

    def query(self, query: Query) -> None:
        """Serve ``query`` from now on, replacing the previous one (nothing of it follows).

        Each query has its own outbox and writer greenlet
        (:func:`channelstream.packets.replay.serve_query`: the window at once,
        paced by ``_speedup``, or alone with ``_history_only``, then live). The
        previous writer is killed now (it sends nothing more) and the new one
        waits for it to be gone before it writes.
        """
        previous_writer = self.packet_writer
        if self.packets is not None:
            self.packets.close("replaced by a new query")  # what it held is not a drop
        if previous_writer is not None and previous_writer is not gevent.getcurrent():
            previous_writer.kill(block=False)
        outbox = self.packets = self.sessions.hub.open_outbox(name=f"socket.io {self.sid} query")
        # Counted at the close, however it comes: a writer killed before it ran never counts.
        outbox.on_close(self._count_dropped)
        self.packet_writer = gevent.spawn(self._write_packets, outbox, query, previous_writer)

    def _write_packets(
        self, outbox: Outbox, query: Query, previous: gevent.Greenlet | None
    ) -> None:
        if previous is not None:
            previous.join()
        counters = self.sessions.counters

        def write(batch: list[Message]) -> None:
            ws = self.direct()
            if ws is not None:
                ws.send(b"".join(message.encoded(data_event_frame) for message in batch))
                counters.direct_writes += 1
                ws.wait_sent()
                if self.gone:
                    raise ClientGone("the socket.io client is gone")
            else:
                self.send([message.encoded(data_event) for message in batch])
                counters.queued_writes += 1
            counters.packets_sent += len(batch)

        def partial(reason: str) -> None:
            counters.partial_replays += 1

        # No wait for CONNECT: socket.io handles ``query`` only from a connected session.
        try:
            ended = serve_query(
                self.sessions.hub,
                self.sessions.packet_channel,
                outbox,
                query,
                write,
                batch_limit=BATCH_LIMIT,
                on_partial=partial,
            )
            if ended == REASON_HISTORY_END:
                self.emit("query_end", {"reason": ended})
        except ClientGone:
            pass
        finally:
            outbox.close("socket.io client gone", discard=True)

    def _count_dropped(self, outbox: Outbox) -> None:
        self.sessions.counters.packets_dropped += outbox.dropped  # discarded ones included

    # -- the end ----------------------------------------------------------------------------

    def end(self, reason: str) -> None:
        """Tell the client why, and disconnect it from the namespace; never blocks."""
        if self.ended:
            return
        self.emit("error", {"message": f"disconnected: {reason}"})
        self.sessions.server.disconnect(self.sid, namespace=self.sessions.namespace)
        self.close(reason)  # if socket.io had already forgotten the session

    def close(self, reason: str) -> None:
        """Release everything (the client disconnected); idempotent, never blocks."""
        if self.ended:
            return
        self.ended = True
        ws = self.websocket
        if ws is not None and ws.blocked:  # it stopped reading: nothing more would reach it
            ws.abort()
        transport = self.transport
        if transport is not None:
            transport.kick(reason)
            if self.connection is not None:
                self.sessions.chat.detach(self.connection, transport)
        if self.packets is not None:
            self.packets.close(reason, discard=True)
        writer = self.packet_writer
        if writer is not None and writer is not gevent.getcurrent():
            writer.kill(block=False)


class ChatTransport(Transport):
    """A socket.io session as the transport of a channelstream connection.

    No greenlet: :meth:`start` (once socket.io sent CONNECT) sends the first
    packets and makes :meth:`on_ready` the outbox's listener. From then on
    the hub calls :meth:`on_ready` (from its own greenlet, batched per
    burst, never blocking) whenever frames are queued, and so does the
    websocket when it drained; the door's :class:`~.pacing.Pacer` runs
    :meth:`_drain` in its next pass. That writes the frames to the websocket
    (see the module doc) until its kernel buffer is full, or drains them
    into engine.io's queue while fewer than :data:`MAX_IN_FLIGHT` packets
    wait there, and otherwise leaves them in the outbox and spawns one
    greenlet that waits for engine.io to take them and then drains again.
    """

    kind = "socket.io"

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.outbox: Outbox | None = None
        #: Set for a resume-aware client (see :meth:`Session.attach_chat`).
        self.positions: Positions | None = None
        #: The packets :meth:`start` sends first (``user_connect``, ``resume_failed``).
        self.first: list[str] = []
        self._waiting: gevent.Greenlet | None = None
        self._drain_now = self._drain  # one object: the pacer keeps it once

    def kick(self, reason: str) -> None:
        """Never blocks; drains nothing more; disconnects the client soon."""
        if self.kicked is not None:
            return
        super().kick(reason)
        if self.outbox is not None:
            self.outbox.unlisten(self.on_ready)
        self.session.sessions.pacer.discard(self._drain_now)
        waiting = self._waiting
        if waiting is not None and waiting is not gevent.getcurrent():
            waiting.kill(block=False)
        if not self.session.ended:  # nothing drains any more: the client is disconnected
            gevent.spawn(self.session.end, reason)

    def start(self) -> None:
        """Send the first packets, then follow the outbox (socket.io sent CONNECT)."""
        connection = self.session.connection
        if self.kicked or self.outbox is not None or connection is None:
            return
        first, self.first = self.first, []
        try:
            self.session.push(first)
        except ClientGone:
            return  # the disconnect handler ends the session
        self.outbox = connection.outbox
        self.outbox.listen(self.on_ready)

    def on_ready(self) -> None:
        """Frames are queued (from the hub's wake-up), or the websocket drained: drain
        now or in the door's next pass (:mod:`.pacing`); never blocks."""
        self.session.sessions.pacer.ready(self._drain_now)

    def _drain(self) -> None:
        """Drain the outbox to the websocket or into engine.io's queue; never blocks."""
        outbox = self.outbox
        session = self.session
        if self.kicked or outbox is None or self._waiting is not None:
            return
        if self.positions is not None:
            self.positions.news()  # remembered by the connection before the drain
        ws = session.direct()
        if ws is not None:  # nothing here yields: it stays the way to go while this runs
            counters = session.sessions.counters
            while not ws.blocked:
                batch = outbox.drain(BATCH_LIMIT)
                if not batch:
                    break
                ws.send(chat_frames(batch, outbox.last_replayed))
                counters.direct_writes += 1
                if not len(outbox):
                    break  # the usual case: no second drain
            else:  # resumed by on_drained, once the client read
                ws.on_writable = self.on_ready
        elif session.gone:
            return  # a gone client's session is being ended by the disconnect handler
        else:
            self._drain_queued(outbox)
        if outbox.closed and not self.kicked:
            self.kick(outbox.close_reason or "connection closed")

    def _drain_queued(self, outbox: Outbox) -> None:
        """Drain the outbox into engine.io's queue, at most MAX_IN_FLIGHT packets there."""
        session = self.session
        queue = session.eio_socket.queue
        try:
            while len(outbox):
                if queue.unfinished_tasks > MAX_IN_FLIGHT:
                    self._waiting = gevent.spawn(self._wait_taken, queue)
                    return
                batch = outbox.drain(BATCH_LIMIT)
                session.push(chat_packets(batch, outbox.last_replayed))
                session.sessions.counters.queued_writes += 1
        except ClientGone:
            return  # the disconnect handler is ending the session

    def _wait_taken(self, queue: Any) -> None:
        try:
            queue.join()
        finally:
            self._waiting = None
        if not self.kicked and not self.session.gone:
            self._drain()


__all__ = ["BATCH_LIMIT", "ChatTransport", "ClientGone", "Session"]
