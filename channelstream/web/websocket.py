"""A server-side websocket on a non-blocking socket, driven by libev watchers.

The HTTP server (:mod:`.httpserver`) answers the upgrade of the paths it
is told about and hands the view the connection as a non-blocking socket
(``environ[TAKEOVER_KEY]()``); :class:`WebSocket` then runs it from the
gevent hub, with no greenlet of its own:

- :meth:`WebSocket.send` never blocks: what the kernel does not take waits
  for a write watcher, whole frames in order, as a list of chunks (never
  copied into one); the caller stops producing while
  :attr:`WebSocket.blocked` (its own queue, e.g. a hub outbox, is what
  bounds a stalled client);
- a read watcher parses what the client sends (:mod:`.wsframes`): pings are
  answered (the pongs of one read in one write, before anything a later
  message of that read makes the subclass send), a close is echoed, data
  messages go to :meth:`WebSocket.on_message` (or are skipped without being
  stored, by default);
- :meth:`WebSocket.close` runs the closing handshake with a deadline.

Output that waits for a client is bounded: besides the frame being written,
at most ``max_pending`` bytes (:data:`MAX_PENDING`) and ``max_pending_pongs``
pongs (:data:`MAX_PENDING_PONGS`) may wait. A client past either bound is
not reading what it asks for (a ping flood, or a sender that ignores
:attr:`WebSocket.blocked`): what had not started going out is dropped, the
socket is closed with 1008, reading stops (the flood stays in TCP), and the
class's :attr:`WebSocket.overflows` counts it.

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
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any, ClassVar

from gevent import get_hub

from .wsframes import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
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

#: Bytes that may wait for a client to read, on top of the frame being written
#: (a frame of any size is taken when nothing waits), before it is closed with 1008.
MAX_PENDING = 4 << 20

#: Pongs that may wait for a client to read before it is closed with 1008.
MAX_PENDING_PONGS = 32

#: Chunks handed to the kernel in one ``sendmsg``.
_IOV_MAX = 64

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
    :param max_pending: bytes that may wait for the client on top of the
        frame being written (see the module doc).
    :param max_pending_pongs: pongs that may wait for the client.
    """

    #: Websockets of this class closed with 1008 because output waiting for
    #: their client went past its bound (process-wide; each subclass counts
    #: its own, see :meth:`__init_subclass__`).
    overflows: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.overflows = 0

    @classmethod
    def overflows_by_class(cls) -> dict[str, int]:
        """``{class name: overflows}`` of this class and every subclass that has any."""
        found: dict[str, int] = {}
        pending = [cls]
        while pending:
            klass = pending.pop()
            if klass.overflows:
                found[klass.__name__] = klass.overflows
            pending.extend(klass.__subclasses__())
        return found

    def __init__(
        self,
        sock: _socket.socket,
        max_pending: int = MAX_PENDING,
        max_pending_pongs: int = MAX_PENDING_PONGS,
    ) -> None:
        self.sock = sock
        self.max_pending = max_pending
        self.max_pending_pongs = max_pending_pongs
        loop = get_hub().loop
        self._read_watcher = loop.io(sock.fileno(), _READ)
        self._write_watcher = None
        self._close_timer = None
        self._reader: FrameReader | _Spent | None = None  # made on the first read
        # Whole frames that wait for the kernel, the first one maybe partly
        # sent; None when nothing waits.
        self._pending: deque[memoryview] | None = None
        self._pending_bytes = 0  # in _pending, but for its first chunk
        self._pending_pongs = 0  # pongs queued since the socket blocked
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
        """Send ``data`` (whole frames) now, or as soon as earlier bytes are out.

        Dropped once the websocket is closing (nothing may follow a close
        frame). Past :attr:`max_pending` bytes waiting, the client is closed
        with 1008 (see the module doc) and ``data`` dropped.
        """
        if not self.closing:
            self._write(data, 0)

    def _write(self, data: bytes, pongs: int, close: bool = False) -> None:
        """Hand ``data`` (whole frames, ``pongs`` of them pongs) to the kernel or queue it."""
        if self.closed:
            return
        self.last_send = time.monotonic()
        pending = self._pending
        if pending is not None:
            if not close:
                self._pending_pongs += pongs
                if (
                    self._pending_bytes + len(data) > self.max_pending
                    or self._pending_pongs > self.max_pending_pongs
                ):
                    self._overflow()
                    return
            pending.append(memoryview(data))
            self._pending_bytes += len(data)
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._shut()
            return
        if sent < len(data):
            self._pending = deque((memoryview(data)[sent:],))
            self._pending_bytes = 0
            self._pending_pongs = pongs
            if self._write_watcher is None:
                self._write_watcher = get_hub().loop.io(self.sock.fileno(), _WRITE)
            self._write_watcher.start(self._on_writable)

    def _on_writable(self) -> None:
        pending = self._pending
        if pending is None:  # pragma: no cover - the watcher is stopped with it
            return
        try:
            sent = self.sock.sendmsg(islice(pending, _IOV_MAX))
        except BlockingIOError:
            return
        except OSError:
            self._shut()
            return
        while sent:
            first = pending[0]
            if sent < len(first):
                pending[0] = first[sent:]
                return
            sent -= len(first)
            pending.popleft()
            if pending:
                self._pending_bytes -= len(pending[0])
        if pending:
            return
        self._pending = None
        self._pending_pongs = 0
        self._write_watcher.stop()
        if self.closing:
            self._half_close()
        else:
            self.on_drained()

    def _overflow(self) -> None:
        """Output for the client went past its bound: drop what had not started going
        out, close with 1008, read nothing more."""
        type(self).overflows += 1
        pending = self._pending
        if pending is not None:
            while len(pending) > 1:
                pending.pop()
            self._pending_bytes = 0
        log.debug("websocket %r: client does not read, closing", self)
        self.close(CLOSE_POLICY, "output backlog over limit")
        self.stop_reading()

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
            self._reader = self.new_reader()
        pongs: list[bytes] = []
        try:
            for opcode, payload in self._reader.feed(data):
                if self.closing:  # only the client's answering close matters now
                    if opcode == OP_CLOSE:
                        self._shut()
                        return
                elif opcode == OP_PING:
                    pongs.append(frame(payload, OP_PONG))
                elif opcode == OP_CLOSE:
                    self._pong(pongs)
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    self.close(code if code in _ECHOED else CLOSE_NORMAL, "")
                    return
                elif opcode in _MESSAGE_OPCODES:
                    self._pong(pongs)  # answers go out in the order of what they answer
                    self.on_message(opcode, payload)
        except ProtocolError as err:
            self._reader = _SPENT  # drop all until the client hangs up
            self._pong(pongs)
            self.close(err.code, err.reason)
            return
        self._pong(pongs)

    def _pong(self, pongs: list[bytes]) -> None:
        """Send ``pongs`` (those of one read so far) in one write, and empty the list."""
        if pongs and not self.closing:
            self._write(pongs[0] if len(pongs) == 1 else b"".join(pongs), len(pongs))
        pongs.clear()

    # -- closing -------------------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with ``code``; never blocks. Idempotent.

        The close frame goes out after any bytes still pending; the socket is
        then half-closed and closed when the client answers or hangs up, or
        after :data:`CLOSE_TIMEOUT` seconds.
        """
        if self.closing or self.closed:
            return
        self._write(close_frame(code, reason), 0, close=True)
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
        self._pending_bytes = self._pending_pongs = 0
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


class _Spent:
    """The reader after a protocol error: whatever the client sends is dropped."""

    @staticmethod
    def feed(data: bytes) -> tuple[()]:
        return ()


_SPENT = _Spent()


#: Opcodes of the data messages a keeping reader returns.
_MESSAGE_OPCODES = frozenset({OP_TEXT, OP_BINARY})


#: Close codes a client may send that the server echoes back.
_ECHOED = frozenset({1000, 1001}) | frozenset(range(3000, 5000))


def close_now(sock: _socket.socket, code: int, reason: str) -> None:
    WebSocket(sock).close(code, reason)

