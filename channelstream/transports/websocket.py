"""``GET /ws?conn_id=…[&resume=…]``: a connection's frames over a websocket.

The upgrade is answered by the HTTP server (:mod:`channelstream.web.httpserver`
hands the view a ``takeover`` callable for the paths in
``Runtime.raw_websocket_paths``); from then on a websocket is not a greenlet
but a non-blocking socket with two libev watchers, driven from the gevent
hub (:class:`channelstream.web.websocket.WebSocket`):

- the connection's outbox calls :meth:`WebSocketTransport._on_ready` when
  frames are queued (:meth:`channelstream.hub.Outbox.listen`); it drains the
  outbox and sends the batch as one text frame holding a JSON array. A
  single live message is sent as a frame encoded once for all recipients;
- when the kernel's send buffer is full, the rest waits for a write watcher
  and nothing more is drained: the outbox bounds what piles up meanwhile
  (drop oldest, close past the hard limit), so a stalled client never
  delays anyone;
- a read watcher consumes what the client sends: pings are answered, close
  is echoed, data frames are ignored (as channelstream 0.7.1 did) without
  being stored;
- one timer per process (:class:`Heartbeats`) sends ``[]`` to websockets that
  sent nothing for ``client_heartbeat`` seconds.

An idle websocket therefore costs a socket, two watchers and a few small
objects, not two greenlets with their stacks.

Close codes: 4000 kicked (replaced, collected, shutdown), 4404 unknown
connection, 1008 bad request parameters, 1002 protocol error.
"""

from __future__ import annotations

import _socket
import logging
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from gevent import get_hub
from pyramid.request import Request
from pyramid.response import Response

from ..chat import CHAT_KEY, ChatState
from ..chat.connections import Connection
from ..chat.frames import encode_batch, live_json, resume_failed
from ..chat.resume import parse_resume
from ..chat.transport import Positions, Transport
from ..errors import BadRequest, NotFound
from ..hub import Message
from ..web.websocket import LastBatchFrame, WebSocket, close_now
from ..web.wsframes import (
    CLOSE_POLICY,
    TAKEOVER_KEY,
    HandshakeError,
    frame,
)

log = logging.getLogger(__name__)

#: Path of the websocket transport; its upgrades are done by the view.
WEBSOCKET_PATH = "/ws"

#: Registry key of the process's :class:`Heartbeats`.
HEARTBEATS_KEY = "channelstream.websocket.heartbeats"

#: Close codes: 4000 kicked (replaced, collected, shutdown), 4404 unknown connection.
CLOSE_KICKED = 4000
CLOSE_UNKNOWN = 4404

#: The idle heartbeat: a text frame holding ``[]``.
HEARTBEAT_FRAME = frame(b"[]")


def live_frame(message: Message) -> bytes:
    """Codec: a websocket text frame holding ``[<live frame of message>]``."""
    return frame(b"[" + message.encoded(live_json) + b"]")


def batch_frame(batch: list[Message], replayed: int) -> bytes:
    """The text frame of a drained batch (JSON array, the first ``replayed`` catch-up)."""
    return frame(encode_batch(batch, replayed))


_batch_frames = LastBatchFrame(batch_frame)


class WebSocketTransport(WebSocket, Transport):
    """A websocket attached to a channelstream connection (see the module doc)."""

    kind = "websocket"

    def __init__(
        self,
        sock: _socket.socket,
        chat: ChatState,
        connection: Connection,
        heartbeats: Heartbeats,
    ) -> None:
        WebSocket.__init__(self, sock)
        Transport.__init__(self)
        self.chat = chat
        self.connection = connection
        self.heartbeats = heartbeats
        #: Set when the client passed ``resume`` (see :meth:`start`).
        self.positions: Positions | None = None

    def start(self, extra: list[bytes], *, resume_aware: bool = False) -> None:
        """Send ``extra`` frames first, then follow the outbox. From the view's greenlet.

        ``resume_aware`` (the client passed ``resume``): the connection
        remembers where each stream stood before this transport drained any
        of it (:class:`~channelstream.chat.transport.Positions`).
        """
        if self.kicked is not None or self.closed:
            return
        self.start_reading()
        if resume_aware:
            self.positions = Positions(self.connection)
        if extra:
            self.send(frame(encode_batch((), extra=extra)))
        self.heartbeats.add(self)
        self.connection.outbox.listen(self._on_ready)

    def _on_ready(self) -> None:
        outbox = self.connection.outbox
        while not self.blocked and not self.closing and self.kicked is None:
            if self.positions is not None:
                self.positions.news()  # remembered by the connection before the drain
            batch = outbox.drain()
            if not batch:
                if outbox.closed:
                    self.kick(outbox.close_reason or "connection closed")
                return
            elif len(batch) == 1 and not outbox.last_replayed:
                self.send(batch[0].encoded(live_frame))
            else:
                self.send(_batch_frames.encode(batch, outbox.last_replayed))
            if not len(outbox) and not outbox.closed:
                return  # the usual case: no second drain (a close calls again)

    on_drained = _on_ready

    def heartbeat(self) -> None:
        if not self.blocked and not self.closing:
            self.send(HEARTBEAT_FRAME)

    def kick(self, reason: str) -> None:
        """Take nothing more from the outbox; close with 4000 soon. Never blocks."""
        if self.kicked is not None:
            return
        self._stop_following(reason)
        get_hub().loop.run_callback(self.close, CLOSE_KICKED, reason)

    def close(self, code: int, reason: str) -> None:
        self._stop_following("websocket closed")
        super().close(code, reason)

    def _stop_following(self, reason: str) -> None:
        if self.kicked is None:
            self.kicked = reason
        self.connection.outbox.unlisten(self._on_ready)
        self.ended.set()

    def on_closed(self) -> None:
        self._stop_following("websocket closed")
        self.heartbeats.discard(self)
        self.chat.detach(self.connection, self)


class Heartbeats:
    """Sends ``[]`` to every websocket that sent nothing for ``interval`` seconds.

    One libev timer for the whole process instead of one per connection; it
    runs while at least one websocket is registered.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.tick = max(interval / 4, 0.05)
        self.sockets: set[WebSocketTransport] = set()
        self._timer = None

    def add(self, transport: WebSocketTransport) -> None:
        self.sockets.add(transport)
        if self._timer is None:
            self._timer = get_hub().loop.timer(self.tick, self.tick)
            self._timer.start(self._beat)

    def discard(self, transport: WebSocketTransport) -> None:
        self.sockets.discard(transport)
        if not self.sockets and self._timer is not None:
            self._timer.stop()
            self._timer.close()
            self._timer = None

    def _beat(self) -> None:
        due = time.monotonic() - self.interval
        for transport in [t for t in self.sockets if t.last_send <= due]:
            try:
                transport.heartbeat()
            except Exception:  # pragma: no cover - heartbeat only sends
                log.exception("heartbeat to %r failed", transport)


def websocket_view(request: Request) -> Response:
    takeover: Callable[[], _socket.socket] | None = request.environ.get(TAKEOVER_KEY)
    if takeover is None:
        raise BadRequest("this endpoint needs a websocket upgrade", field="Upgrade")
    chat: ChatState = request.registry[CHAT_KEY]
    heartbeats: Heartbeats = request.registry[HEARTBEATS_KEY]
    # Not request.GET: webob caches it in the environ, and that cycle kept
    # every closed websocket's socket and buffers alive until a full GC pass.
    params = parse_qs(request.environ.get("QUERY_STRING", ""))
    conn_id = params.get("conn_id", [""])[0]
    bad_resume = None
    try:
        resume = parse_resume(params.get("resume", [None])[0])
    except BadRequest as err:
        resume, bad_resume = {}, err.message
    connection = chat.connections.get(conn_id)
    if connection is None and bad_resume is None:
        # A connection of another process is taken over before the upgrade:
        # what prevents it (409, 503, 504) is answered as JSON, not as a close.
        try:
            connection = chat.find_connection(conn_id)
        except NotFound:
            pass
    try:
        sock = takeover()
    except HandshakeError as err:
        raise BadRequest(str(err), field="Sec-WebSocket-Key") from None
    if bad_resume is not None:
        close_now(sock, CLOSE_POLICY, bad_resume)
        return Response()
    if connection is None:
        close_now(sock, CLOSE_UNKNOWN, "unknown connection")
        return Response()
    transport = WebSocketTransport(sock, chat, connection, heartbeats)
    resume_aware = "resume" in params
    failures = transport.attach(chat, connection, resume, resume_aware=resume_aware)
    transport.start(
        [resume_failed(channel, reason) for channel, reason in failures],
        resume_aware=resume_aware,
    )
    return Response()
