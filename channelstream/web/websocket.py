"""A server-side websocket on a non-blocking socket, driven by libev watchers.

The HTTP server (:mod:`.httpserver`) answers the upgrade of the paths it
is told about and hands the view the connection as a non-blocking socket
(``environ[TAKEOVER_KEY]()``); :class:`WebSocket` then runs it from the
gevent hub, with no greenlet of its own:

- :meth:`WebSocket.send` never blocks: what the kernel does not take waits
  for a write watcher, whole frames in order; the caller stops producing
  while :attr:`WebSocket.blocked` (its own queue, e.g. a hub outbox, is
  what bounds a stalled client);
- a read watcher parses what the client sends (:mod:`.wsframes`): pings are
  answered, a close is echoed, data messages go to :meth:`WebSocket.on_message`
  (or are skipped without being stored, by default);
- :meth:`WebSocket.close` runs the closing handshake with a deadline.

An idle websocket therefore costs a socket, two watchers and a few small
objects. Subclasses (the channelstream ``/ws`` transport, engine.io's
websockets for socket.io) override :meth:`WebSocket.on_closed`,
:meth:`WebSocket.on_drained`, :meth:`WebSocket.new_reader` and
:meth:`WebSocket.on_message`. :class:`LastBatchFrame` lets a fan-out reuse
the frame it encoded for the previous recipient.
"""

from __future__ import annotations

import _socket
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from gevent import get_hub

from .wsframes import (
    CLOSE_NORMAL,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    ProtocolError,
    close_frame,
    frame,
)

log = logging.getLogger(__name__)

#: Seconds the closing handshake may take before the socket is closed anyway.
CLOSE_TIMEOUT = 2.0


#: Bytes read from a client at a time.
READ_SIZE = 16384

_READ, _WRITE = 1, 2


class LastBatchFrame:
    """The frame of the last batch encoded, reused while the next batches are the same.

    A publish of several messages to a channel queues the same messages in
    every subscriber's outbox, and the listeners drain them one after the
    other: all but the first reuse the first one's frame instead of joining
    and framing the same bytes again.

    :param encode: ``encode(batch, replayed) -> bytes`` (other protocols
        than ``/ws`` bring their own).
    """

    def __init__(self, encode: Callable[[list[Any], int], bytes]) -> None:
        self.batch: list[Any] = []
        self.replayed = 0
        self.data = b""
        self._encode = encode

    def encode(self, batch: list[Any], replayed: int) -> bytes:
        if replayed == self.replayed and batch == self.batch:  # identity per item
            return self.data
        self.batch, self.replayed = batch, replayed
        self.data = self._encode(batch, replayed)
        return self.data


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


def close_now(sock: _socket.socket, code: int, reason: str) -> None:
    WebSocket(sock).close(code, reason)

