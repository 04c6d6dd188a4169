"""``GET /ws?conn_id=…[&resume=…]``: a connection's frames over a websocket.

The upgrade is answered by the HTTP server (:mod:`channelstream.web.httpserver`
hands the view a ``takeover`` callable for the paths in
``Runtime.raw_websocket_paths``); from then on a websocket is not a greenlet
but a non-blocking socket with two libev watchers, driven from the gevent
hub:

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
import socket
import struct
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from gevent import get_hub
from pyramid.request import Request
from pyramid.response import Response

from ..chat import CHAT_KEY, ChatState
from ..chat.connections import Connection
from ..chat.frames import encode_batch, live_json, resume_failed
from ..chat.transport import Transport, parse_resume
from ..errors import BadRequest
from ..hub import Message
from ..web.wsframes import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    TAKEOVER_KEY,
    FrameReader,
    HandshakeError,
    ProtocolError,
    close_frame,
    frame,
)

log = logging.getLogger(__name__)

#: Registry key of the process's :class:`Heartbeats`.
HEARTBEATS_KEY = "channelstream.websocket.heartbeats"

#: Close codes: 4000 kicked (replaced, collected, shutdown), 4404 unknown connection.
CLOSE_KICKED = 4000
CLOSE_UNKNOWN = 4404
#: Seconds the closing handshake may take before the socket is closed anyway.
CLOSE_TIMEOUT = 2.0
#: Bytes read from a client at a time.
READ_SIZE = 16384

_READ, _WRITE = 1, 2

#: The idle heartbeat: a text frame holding ``[]``.
HEARTBEAT_FRAME = frame(b"[]")


def live_frame(message: Message) -> bytes:
    """Codec: a websocket text frame holding ``[<live frame of message>]``."""
    return frame(b"[" + message.encoded(live_json) + b"]")


def batch_frame(batch: list[Message], replayed: int) -> bytes:
    """The text frame of a drained batch (JSON array, the first ``replayed`` catch-up)."""
    return frame(encode_batch(batch, replayed))


class LastBatchFrame:
    """The frame of the last batch encoded, reused while the next batches are the same.

    A publish of several messages to a channel queues the same messages in
    every subscriber's outbox, and the listeners drain them one after the
    other: all but the first reuse the first one's frame instead of joining
    and framing the same bytes again.

    :param encode: ``encode(batch, replayed) -> bytes`` (other protocols
        than ``/ws`` bring their own).
    """

    def __init__(self, encode: Callable[[list[Message], int], bytes] = batch_frame) -> None:
        self.batch: list[Message] = []
        self.replayed = 0
        self.data = b""
        self._encode = encode

    def encode(self, batch: list[Message], replayed: int) -> bytes:
        if replayed == self.replayed and batch == self.batch:  # identity per item
            return self.data
        self.batch, self.replayed = batch, replayed
        self.data = self._encode(batch, replayed)
        return self.data


_batch_frames = LastBatchFrame()


class WebSocket:
    """A server-side websocket on a non-blocking socket, driven by watchers.

    Subclasses override :meth:`on_closed` (called once, when the socket is
    closed) and may send with :meth:`send`. Every method runs in the gevent
    hub or in a greenlet, and none blocks.

    :param sock: the upgraded connection, a non-blocking ``_socket.socket``.
    """

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        loop = get_hub().loop
        self._read_watcher = loop.io(sock.fileno(), _READ)
        self._write_watcher = None
        self._close_timer = None
        self._reader: FrameReader | None = None
        self._pending: memoryview | None = None
        #: The close frame is queued: nothing else goes out.
        self.closing = False
        #: The socket is closed.
        self.closed = False
        #: ``time.monotonic()`` of the last frame handed to the kernel.
        self.last_send = time.monotonic()

    # -- output ------------------------------------------------------------------------

    @property
    def blocked(self) -> bool:
        """True while earlier bytes wait for the client to read."""
        return self._pending is not None

    def send(self, data: bytes) -> None:
        """Send ``data`` (whole frames) now, or as soon as earlier bytes are out."""
        if self.closed:
            return
        self.last_send = time.monotonic()
        if self._pending is not None:
            self._pending = memoryview(self._pending.tobytes() + data)
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._shut()
            return
        if sent < len(data):
            self._pending = memoryview(data)[sent:]
            if self._write_watcher is None:
                self._write_watcher = get_hub().loop.io(self.sock.fileno(), _WRITE)
            self._write_watcher.start(self._on_writable)

    def _on_writable(self) -> None:
        pending = self._pending
        if pending is None:  # pragma: no cover - the watcher is stopped with it
            return
        try:
            sent = self.sock.send(pending)
        except BlockingIOError:
            return
        except OSError:
            self._shut()
            return
        if sent < len(pending):
            self._pending = pending[sent:]
            return
        self._pending = None
        self._write_watcher.stop()
        if self.closing:
            self._half_close()
        else:
            self.on_drained()

    def on_drained(self) -> None:
        """Called when bytes that had to wait are all out."""

    # -- input --------------------------------------------------------------------------

    def start_reading(self) -> None:
        if not self.closed:
            self._read_watcher.start(self._on_readable)

    def stop_reading(self) -> None:
        """Read nothing more until :meth:`start_reading` (the client then waits in TCP)."""
        self._read_watcher.stop()

    def new_reader(self) -> FrameReader:
        """The frame reader of this websocket: data frames skipped (subclasses may keep them)."""
        return FrameReader()

    def on_message(self, opcode: int, payload: bytes) -> None:
        """Called with each whole data message a :meth:`new_reader` that keeps them returns."""

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._shut()
            return
        if self._reader is None:
            if self.closing:  # after a protocol error: drop all until the client hangs up
                return
            self._reader = self.new_reader()
        try:
            for opcode, payload in self._reader.feed(data):
                if self.closing:  # only the client's answering close matters now
                    if opcode == OP_CLOSE:
                        self._shut()
                        return
                elif opcode == OP_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    self.close(code if code in _ECHOED else CLOSE_NORMAL, "")
                    return
                elif opcode == OP_PING:
                    self.send(frame(payload, OP_PONG))
                elif opcode in _MESSAGE_OPCODES:
                    self.on_message(opcode, payload)
        except ProtocolError as err:
            self._reader = None
            self.close(err.code, err.reason)

    # -- closing -------------------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with ``code``; never blocks. Idempotent.

        The close frame goes out after any bytes still pending; the socket is
        then half-closed and closed when the client answers or hangs up, or
        after :data:`CLOSE_TIMEOUT` seconds.
        """
        if self.closing or self.closed:
            return
        self.send(close_frame(code, reason))
        self.closing = True
        if self.closed:
            return
        self._close_timer = get_hub().loop.timer(CLOSE_TIMEOUT)
        self._close_timer.start(self._shut)
        self.start_reading()
        if self._pending is None:
            self._half_close()

    def _half_close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._shut()

    def _shut(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.closing = True
        self._pending = None
        self._reader = None
        for watcher in (self._read_watcher, self._write_watcher, self._close_timer):
            if watcher is not None:
                watcher.stop()
                watcher.close()
        try:
            self.sock.close()
        except OSError:  # pragma: no cover - closing a socket does not fail here
            pass
        try:
            self.on_closed()
        except Exception:
            log.exception("closing websocket %r failed", self)

    def on_closed(self) -> None:
        """Called once when the socket is closed."""


#: Opcodes of the data messages a keeping reader returns.
_MESSAGE_OPCODES = frozenset({OP_TEXT, OP_BINARY})

#: Close codes a client may send that the server echoes back.
_ECHOED = frozenset({1000, 1001}) | frozenset(range(3000, 5000))


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

    def start(self, extra: list[bytes]) -> None:
        """Send ``extra`` frames first, then follow the outbox. From the view's greenlet."""
        if self.kicked is not None or self.closed:
            return
        self.start_reading()
        if extra:
            self.send(frame(encode_batch((), extra=extra)))
        self.heartbeats.add(self)
        self.connection.outbox.listen(self._on_ready)

    def _on_ready(self) -> None:
        outbox = self.connection.outbox
        while self._pending is None and not self.closing and self.kicked is None:
            batch = outbox.drain()
            if not batch:
                if outbox.closed:
                    self.kick(outbox.close_reason or "connection closed")
                return
            if len(batch) == 1 and not outbox.last_replayed:
                self.send(batch[0].encoded(live_frame))
            else:
                self.send(_batch_frames.encode(batch, outbox.last_replayed))
            if not len(outbox) and not outbox.closed:
                return  # the usual case: no second drain (a close calls again)

    on_drained = _on_ready

    def heartbeat(self) -> None:
        if self._pending is None and not self.closing:
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


def _close_now(sock: _socket.socket, code: int, reason: str) -> None:
    WebSocket(sock).close(code, reason)


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
    try:
        sock = takeover()
    except HandshakeError as err:
        raise BadRequest(str(err), field="Sec-WebSocket-Key") from None
    if bad_resume is not None:
        _close_now(sock, CLOSE_POLICY, bad_resume)
        return Response()
    connection = chat.connections.get(conn_id)
    if connection is None:
        _close_now(sock, CLOSE_UNKNOWN, "unknown connection")
        return Response()
    transport = WebSocketTransport(sock, chat, connection, heartbeats)
    failures = transport.attach(chat, connection, resume)
    transport.start([resume_failed(channel, reason) for channel, reason in failures])
    return Response()
