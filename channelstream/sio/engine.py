"""engine.io sessions without a greenlet per client: websockets driven by watchers.

python-engineio (gevent mode) gives every websocket session three
greenlets: its reader blocks in the upgrade request's greenlet, a writer
drains the socket's queue, and a ping greenlet sleeps between pings; each
socket also holds a queue. At ~50 KiB per idle client that is most of
what a socket.io client costs. :class:`EngineServer` is engine.io's
server with :class:`EngineSocket` sessions that do without them, the way
``/ws`` runs its websockets (:mod:`channelstream.web.websocket`):

- the upgrade is taken over from :mod:`channelstream.web.httpserver`
  (``environ[TAKEOVER_KEY]``) once engine.io has accepted the request, and
  the request's greenlet ends: the connection is an
  :class:`~.websocket.EngineIOWebSocket`, a non-blocking socket whose read
  watcher hands each client message to :meth:`EngineSocket.on_ws_message`;
- a PONG (``3``) is handled there, in the event loop; any other packet
  goes to a short-lived greenlet that runs engine.io's ``receive`` (and so
  socket.io's handlers, which may block) for the packets that arrived, in
  order, and ends. A client that sends faster than they are handled is
  read no further past :data:`MAX_RECEIVED` waiting packets;
- what engine.io and socket.io send (:meth:`EngineSocket.send`: the OPEN,
  CONNECT, acks, events) is framed and handed to the websocket at once;
  its ``send`` never blocks and bounds what waits for a slow client (past
  it: close 1008). The fan-out sends its frames, encoded once for every
  recipient, the same way (:mod:`.session`);
- pings come from one timer for the whole server (:class:`Pings`), not a
  greenlet per client; pong timeouts are engine.io's own check (its
  service task, one greenlet for all sockets);
- the websocket closing (client gone, protocol error, 1009) ends the
  session in a greenlet after the packets that came before it; the
  session ending (server disconnect, ping timeout) sends engine.io's CLOSE
  and closes the websocket after what is pending.

Long-polling and the polling-to-websocket upgrade keep engine.io's own
queue (made when the first packet needs it): an upgrade answers the probe
(``2probe`` -> ``3probe``, a NOOP ends the pending poll) and the
``5`` from the read watcher, then hands the websocket what the queue held,
in order, and from then on the session is a websocket one. An upgrade
that fails (no probe, closed) leaves the polling session as it was.

Engine.io internals relied on (python-engineio 4.15): ``Socket`` and its
``receive``/``check_ping_timeout``/``handle_get_request``/
``_upgrade_websocket``; ``Server._handle_connect`` (re-implemented here
to make :class:`EngineSocket` sessions), ``sockets``, ``_trigger_event``,
``_bad_request``, ``_service_task``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import engineio
import gevent
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio import socket as eio_socket
from gevent import get_hub

from ..web.wsframes import CLOSE_NORMAL, TAKEOVER_KEY, HandshakeError, frame

if TYPE_CHECKING:
    from .websocket import EngineIOWebSocket

log = logging.getLogger(__name__)

#: Client packets that may wait for their greenlet before the websocket is read no further.
MAX_RECEIVED = 16

#: engine.io packets as websocket frames.
PING_FRAME = frame(b"2")
CLOSE_PACKET = "1"

#: Marks the end of a websocket in a session's inbox (after the packets before it).
_GONE = object()


class Pings:
    """Sends engine.io PINGs from one libev timer for every session of a server.

    engine.io pings a client ``ping_interval`` seconds after its last pong
    (or its connect). Every session waits the same interval, so the sessions
    due are kept in the order they were scheduled (a deque, oldest first)
    and a timer ticking at a fraction of the interval pings those whose
    time has come; a ping is late by at most one tick. The timer runs while
    a ping is scheduled. Runs in the event loop; never blocks.

    :param interval: engine.io's ``ping_interval`` (seconds).
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.tick = min(max(interval / 8, 0.02), 1.0)
        self._due: deque[tuple[float, EngineSocket]] = deque()
        self._timer: Any = None

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, sock: EngineSocket) -> None:
        """Ping ``sock`` in ``interval`` seconds (replacing a ping it had scheduled)."""
        due = time.monotonic() + self.interval
        sock.ping_due = due
        self._due.append((due, sock))
        if self._timer is None:
            self._timer = get_hub().loop.timer(self.tick, self.tick)
            self._timer.start(self._run)

    def _run(self) -> None:
        now = time.monotonic()
        due = self._due
        while due and due[0][0] <= now:
            when, sock = due.popleft()
            if sock.ping_due == when:  # not replaced by a later schedule
                sock.ping_due = None
                try:
                    sock.ping()
                except Exception:  # one broken session must not stop the pings of the rest
                    log.exception("engine.io ping to %s failed", sock.sid)
        if not due:
            self.stop()

    def stop(self) -> None:
        """Stop the timer and forget every scheduled ping."""
        self._due.clear()
        if self._timer is not None:
            self._timer.stop()
            self._timer.close()
            self._timer = None


class EngineSocket(eio_socket.Socket):
    """An engine.io session whose websocket is driven by watchers (see the module doc)."""

    server: EngineServer

    def __init__(self, server: EngineServer, sid: str) -> None:
        # BaseSocket's state, but for the queue: made by the first packet that needs it
        self.server = server
        self.sid = sid
        self.last_ping: float | None = time.time()
        self.connected = False
        self.upgrading = False
        self.upgraded = False
        self.closing = False
        self.closed = False
        self.session: dict[str, Any] = {}
        self._queue: Any = None
        #: The session's websocket (during an upgrade too), or None.
        self.ws: EngineIOWebSocket | None = None
        #: When :class:`Pings` pings this session next (None: no ping scheduled).
        self.ping_due: float | None = None
        self._probed = False  # an upgrade answered the probe and waits for "5"
        self._inbox: deque[Any] | None = None  # packets waiting for their greenlet

    @property
    def queue(self) -> Any:
        """engine.io's packet queue (long-polling, upgrades); made when first needed."""
        if self._queue is None:
            self._queue = self.server.create_queue()
        return self._queue

    @property
    def websocket(self) -> EngineIOWebSocket | None:
        """The websocket, once the session runs on it (not during an upgrade), or None."""
        return self.ws if self.upgraded else None

    # -- sending ----------------------------------------------------------------------------

    def send(self, pkt: eio_packet.Packet) -> None:
        """Send a packet: to the websocket now, or into the queue (polling, upgrading)."""
        if not self.check_ping_timeout():
            return
        ws = self.ws
        if ws is not None and self.upgraded:
            ws.send_packet(pkt.encode())
        else:
            self.queue.put(pkt)

    def send_texts(self, texts: list[str]) -> bool:
        """Send pre-encoded engine.io text packets; False if the session is ending.

        Never blocks, never ends the session (callers may run in the event loop).
        """
        if self.closing or self.closed:
            return False
        ws = self.ws
        if ws is not None and self.upgraded:
            ws.send(b"".join(frame(text.encode()) for text in texts))
            return True
        put = self.queue.put
        for text in texts:
            pkt = eio_packet.Packet(eio_packet.MESSAGE)
            pkt.encode_cache = text
            put(pkt)
        return True

    def ping(self) -> None:
        """Send a PING now (from :class:`Pings`); the pong timeout starts."""
        if self.closing or self.closed:
            return
        self.last_ping = time.time()
        ws = self.ws
        if ws is not None and self.upgraded:
            ws.send(PING_FRAME)
        else:
            self.queue.put(eio_packet.Packet(eio_packet.PING))

    def schedule_ping(self) -> None:
        # as engine.io: only once the previous ping was answered (or at connect)
        if self.last_ping:
            self.last_ping = None
            self.server.pings.schedule(self)

    # -- closing -------------------------------------------------------------------------------

    def close(self, wait: bool = True, abort: bool = False, reason: str | None = None) -> None:
        """End the session (engine.io's contract); on a websocket it never waits."""
        if self.closed or self.closing:
            return
        self.closing = True
        self.ping_due = None
        self.server._trigger_event(
            "disconnect", self.sid, reason or self.server.reason.SERVER_DISCONNECT, run_async=False
        )
        ws = self.ws
        if ws is not None and self.upgraded:
            if not abort:
                ws.send_packet(CLOSE_PACKET)
            self.closed = True
            ws.close(CLOSE_NORMAL, "")
            if ws.closed:
                self.ws = None
            if self.server.sockets.get(self.sid) is self:
                del self.server.sockets[self.sid]
            return
        if ws is not None:  # an upgrade under way ends with the session
            self.ws = None
            ws.close(CLOSE_NORMAL, "")
        if not abort:
            self.queue.put(eio_packet.Packet(eio_packet.CLOSE))
        self.closed = True
        self.queue.put(None)
        if wait:
            self.queue.join()

    # -- the websocket ---------------------------------------------------------------------------

    def _upgrade_websocket(self, environ: dict[str, Any], start_response: Any) -> Any:
        """Take the connection over (engine.io accepted the request); the request ends here."""
        if self.upgraded:
            raise OSError("Socket has been upgraded already")
        if self.ws is not None:
            return self.server._bad_request("an upgrade is already under way")
        takeover = environ.get(TAKEOVER_KEY)
        try:
            if takeover is None:
                raise HandshakeError("websockets need channelstream's HTTP server")
            sock = takeover()
        except (HandshakeError, OSError) as err:  # OSError: the client left meanwhile
            if not self.connected:  # a new session ends here (an upgrade's goes on polling)
                self.close(wait=False, abort=True)
            return self.server._bad_request(str(err))
        from .websocket import EngineIOWebSocket

        self.ws = ws = EngineIOWebSocket(
            sock, self, self.server.max_http_buffer_size, self.server.websockets
        )
        if self.connected:  # from long-polling: the probe comes first (on_ws_message)
            self.upgrading = True
        else:
            self.connected = True
            self._to_websocket()
        if not ws.closed:
            ws.start_reading()
        return []

    def _to_websocket(self) -> None:
        """The session runs on its websocket from now on: what the queue held goes first."""
        ws = self.ws
        queue = self._queue
        self._queue = None
        self.upgraded = True
        self.upgrading = False
        if queue is None:
            return
        frames = []
        while queue.qsize():
            pkt = queue.get(block=False)
            queue.task_done()  # wakes whoever waits for the queue to be taken
            if pkt is not None:
                frames.append(frame(_encoded(pkt)))
        if frames:
            ws.send(b"".join(frames))

    def on_ws_message(self, ws: EngineIOWebSocket, message: str | bytes) -> None:
        """A whole client message (from the read watcher: must not block)."""
        if ws is not self.ws:
            return
        if not self.upgraded:
            self._upgrade_step(ws, message)
            return
        inbox = self._inbox
        if inbox is None:
            if message == "3":  # a PONG, with nothing before it waiting
                self.schedule_ping()
                return
            inbox = self._inbox = deque()
            gevent.spawn(self._receive_all, inbox)
        inbox.append(message)
        if len(inbox) >= MAX_RECEIVED:
            ws.stop_reading()

    def on_ws_closed(self, ws: EngineIOWebSocket) -> None:
        """The websocket closed (from the event loop)."""
        if ws is not self.ws:
            return
        if not self.upgraded:  # an upgrade that did not finish: polling goes on
            self.ws = None
            self.upgrading = self._probed = False
            return
        if self.closed:
            self.ws = None
            return
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
            gevent.spawn(self._receive_all, inbox)
        inbox.append(_GONE)

    def _upgrade_step(self, ws: EngineIOWebSocket, message: str | bytes) -> None:
        """The probe, then the UPGRADE packet, of a long-polling session's upgrade."""
        if self.closing or self.closed:
            ws.close(CLOSE_NORMAL, "")
        elif not self._probed and message == "2probe":
            self._probed = True
            ws.send_packet("3probe")
            self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # ends the pending poll
        elif self._probed and message == "5":
            self._probed = False
            self._to_websocket()
        else:
            self.server.logger.info("%s: failed websocket upgrade (%r)", self.sid, message[:20])
            self.ws = None
            self.upgrading = self._probed = False
            ws.close(CLOSE_NORMAL, "")

    def _receive_all(self, inbox: deque[Any]) -> None:
        """The greenlet that handles the packets of ``inbox`` in order, then ends."""
        try:
            while inbox:
                message = inbox.popleft()
                ws = self.ws
                if ws is not None and len(inbox) == MAX_RECEIVED // 2 and not ws.closing:
                    ws.start_reading()
                if message is _GONE:
                    self.close(
                        wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE
                    )
                    break
                if self.closed:
                    break
                try:
                    pkt = eio_packet.Packet(encoded_packet=message)
                except Exception as err:  # bad input: the session ends
                    self.server.refuse_packet(self, err)
                    break
                try:
                    self.receive(pkt)
                except eio_exceptions.UnknownPacketError:
                    pass
                except eio_exceptions.SocketIsClosedError:
                    break
                except Exception:
                    self.server.logger.exception("Unknown receive error")
                    self.close(wait=False, abort=True)
                    break
        finally:
            if self._inbox is inbox:
                self._inbox = None


def _encoded(pkt: eio_packet.Packet) -> bytes:
    data = pkt.encode()
    return data.encode() if isinstance(data, str) else data


class EngineServer(engineio.Server):
    """engine.io's server with :class:`EngineSocket` sessions (see the module doc).

    :param websockets: where each session's websocket is kept by engine.io
        sid while it is open (the door's ``Sessions.websockets``).
    :param on_bad_packet: ``(session, error)`` when a client's engine.io
        packet does not decode; the session is then closed.

    Other arguments are engine.io's.
    """

    def __init__(
        self,
        *args: Any,
        websockets: MutableMapping[str, EngineIOWebSocket] | None = None,
        on_bad_packet: Callable[[EngineSocket, Exception], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.websockets: MutableMapping[str, EngineIOWebSocket] = (
            websockets if websockets is not None else {}
        )
        self.on_bad_packet = on_bad_packet
        self.pings = Pings(self.ping_interval)

    def refuse_packet(self, sock: EngineSocket, err: Exception) -> None:
        """A client's engine.io packet did not decode: its session ends."""
        if self.on_bad_packet is not None:
            self.on_bad_packet(sock, err)
        else:
            self.logger.info("%s: bad engine.io packet (%s)", sock.sid, err)
        sock.close(wait=False, abort=True)

    def shutdown(self) -> None:
        self.pings.stop()
        super().shutdown()

    def _handle_connect(
        self,
        environ: dict[str, Any],
        start_response: Any,
        transport: str,
        jsonp_index: int | None = None,
    ) -> Any:
        """engine.io's, making an :class:`EngineSocket` (python-engineio 4.15's steps)."""
        if self.start_service_task:
            # the service task checks the ping timeouts of every session
            self.start_service_task = False
            self.service_task_handle = self.start_background_task(self._service_task)

        sid = self.generate_id()
        s = EngineSocket(self, sid)
        self.sockets[sid] = s

        pkt = eio_packet.Packet(
            eio_packet.OPEN,
            {
                "sid": sid,
                "upgrades": self._upgrades(sid, transport),
                "pingTimeout": int(self.ping_timeout * 1000),
                "pingInterval": int(self.ping_interval + self.ping_interval_grace_period)
                * 1000,
                "maxPayload": self.max_http_buffer_size,
            },
        )
        s.send(pkt)

        ret = self._trigger_event("connect", sid, environ, run_async=False)
        if ret is not None and ret is not True:
            del self.sockets[sid]
            self.logger.warning("Application rejected connection")
            return self._unauthorized(ret or None)

        s.schedule_ping()

        if transport == "websocket":
            ret = s.handle_get_request(environ, start_response)
            if s.closed and self.sockets.get(sid) is s:
                del self.sockets[sid]
            return ret
        s.connected = True
        headers = None
        if self.cookie:
            attributes = (
                self.cookie
                if isinstance(self.cookie, dict)
                else {"name": self.cookie, "path": "/", "SameSite": "Lax"}
            )
            headers = [("Set-Cookie", self._generate_sid_cookie(sid, attributes))]
        try:
            return self._ok(s.poll(), headers=headers, jsonp_index=jsonp_index)
        except eio_exceptions.QueueEmpty:
            return self._bad_request()


__all__ = ["MAX_RECEIVED", "EngineServer", "EngineSocket", "Pings"]
