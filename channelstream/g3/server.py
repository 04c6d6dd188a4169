"""``StreamServer``: spt3g's streaming server (``G3NetworkSender`` with host ``*``).

Clients connect; each new client first gets the latest frame of each type
other than Timepoint and Scan, in the order those types were first seen
(at most :data:`MAX_METADATA_TYPES` types are remembered), then every
frame published after it connected. The server:

* binds the address it is given (``127.0.0.1`` by default, ``None`` for
  every interface) and accepts clients at once, from its own worker (not
  only when a frame passes, as spt3g does);
* encodes each frame once and shares the bytes between clients;
* gives each client a bounded :class:`~.queue.FrameQueue`:
  ``max_queue_size`` (0 = none) drops the oldest queued Timepoint/Scan
  frame, counted per client (:attr:`StreamServer.clients`); a client whose
  queue still exceeds ``max_client_bytes`` is disconnected (counted). A
  slow client therefore never blocks :meth:`publish` or the other clients;
* :meth:`stop` stops accepting, lets every client's writer send what is
  queued for up to ``drain_timeout`` seconds, then closes every client
  socket (those still writing are cut, and counted).

EndProcessing frames are never sent (as spt3g). Each client has one
writer (a thread, or a greenlet: see :mod:`.concurrency`) that drains its
queue and writes in few writes (:mod:`.writer`). A client that closes its
side is noticed at the next write, or within ``idle_check`` seconds when
nothing is sent.

For a service door, ``queue_factory(peer)`` replaces the per-client
queue: it returns any object with the :class:`~.writer.ClientQueue`
methods (the door's own bounded outbox, fed and replayed by the door), and
:meth:`publish` is then not used; the server only accepts, writes and
closes (:meth:`StreamServer.disconnect` ends a client whose queue the door
closed on overflow). Lifecycle: ``start()`` (binds; raises :class:`~.errors.G3ConnectionError`
if it cannot), ``publish()``..., ``stop()`` (idempotent).
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import logging
import time
from collections.abc import Callable
from typing import Any

from . import net
from .concurrency import Concurrency, pick
from .frame import G3Frame
from .frametype import G3FrameType, is_data
from .queue import DEFAULT_MAX_BYTES, OVERFLOW, Encoded, FrameQueue, encoded_size
from .writer import IDLE_CHECK, ClientQueue, write_loop

log = logging.getLogger(__name__)

#: accept() errors that mean "out of resources for now": back off, go on.
_ACCEPT_BACKOFF_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_BACKOFF = 0.1
#: Seconds a cut client's writer gets to notice its closed socket.
_CUT_GRACE = 2.0
#: Metadata frame types remembered for replay (spt3g has 15 standard types; ad-hoc
#: types could otherwise make the replay grow without bound).
MAX_METADATA_TYPES = 64


class State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclasses.dataclass(frozen=True)
class ClientStats:
    """One client, as :attr:`StreamServer.clients` reports it."""

    peer: str
    connected_at: float
    frames: int
    bytes: int
    queued: int
    dropped: int


class _Client:
    __slots__ = ("sock", "peer", "queue", "worker", "frames", "bytes", "connected_at", "cut")

    def __init__(self, sock: Any, peer: str, queue: ClientQueue) -> None:
        self.sock = sock
        self.peer = peer
        self.queue = queue
        self.worker: Any = None
        self.frames = 0
        self.bytes = 0
        self.connected_at = time.time()
        self.cut = False

    def sent(self, frames: int, nbytes: int) -> None:
        self.frames += frames
        self.bytes += nbytes

    def stats(self) -> ClientStats:
        queued = len(self.queue) if hasattr(self.queue, "__len__") else 0
        return ClientStats(
            self.peer, self.connected_at, self.frames, self.bytes, queued, self.queue.dropped
        )


def _peer_name(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = addr[0]
        if host.startswith("::ffff:"):
            host = host[7:]
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr)


class StreamServer:
    """Serve published frames to every connected client (see the module doc).

    :param host: address to listen on (None: every interface, as spt3g's ``*``).
    :param port: port (0: any free one; see :attr:`address`).
    :param max_queue_size: frames a client may have queued before its oldest
        Timepoint/Scan frames are dropped (0: no limit but ``max_client_bytes``).
    :param max_client_bytes: bytes queued for one client past which it is disconnected.
    :param drain_timeout: seconds :meth:`stop` lets clients receive what is queued.
    :param concurrency: threads or greenlets (:mod:`.concurrency`).
    :param queue_factory: ``queue_factory(peer) -> ClientQueue`` (for a door).
    :param nodelay: set TCP_NODELAY on client sockets (lower latency for
        sparse small frames). Off by default, as in spt3g: writes are
        already coalesced, and without it a client socket whose buffer is
        full is not refilled in small segments.
    """

    def __init__(
        self,
        host: str | None = "127.0.0.1",
        port: int = 0,
        *,
        max_queue_size: int = 0,
        max_client_bytes: int = DEFAULT_MAX_BYTES,
        drain_timeout: float = 10.0,
        idle_check: float | None = IDLE_CHECK,
        concurrency: Concurrency | str | None = None,
        queue_factory: Callable[[str], ClientQueue] | None = None,
        nodelay: bool = False,
    ) -> None:
        if max_queue_size < 0:
            raise ValueError("max_queue_size must be >= 0")
        self.host = host
        self.port = port
        self.max_queue_size = max_queue_size
        self.max_client_bytes = max_client_bytes
        self.drain_timeout = drain_timeout
        self.idle_check = idle_check
        self.concurrency = pick(concurrency)
        self.queue_factory = queue_factory
        self.nodelay = nodelay
        self.state = State.NEW
        self._lock = self.concurrency.lock()
        self._listener: Any = None
        self._acceptor: Any = None
        self._clients: list[_Client] = []
        # Latest encoded frame per metadata type, in first-seen order.
        self._metadata: dict[int, Encoded] = {}
        self._warned_metadata = False
        #: the bound (host, port), once started
        self.address: tuple[str, int] | None = None
        #: counters: clients accepted, frames published, frames dropped and
        #: clients disconnected (over max_client_bytes, cut at stop, gone)
        self.accepted = 0
        self.published = 0
        self.dropped_closed = 0  # drops of clients no longer connected
        self.overflowed = 0
        self.cut = 0

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> StreamServer:
        """Bind and start accepting. Raises :class:`~.errors.G3ConnectionError`."""
        if self.state is not State.NEW:
            raise RuntimeError(f"the server is {self.state.value}; start it once")
        self._listener = net.open_listener(self.concurrency.socket, self.host, self.port)
        self.address = net.bound_address(self._listener)
        self.state = State.RUNNING
        self._acceptor = self.concurrency.spawn(self._accept_loop, name="g3-accept")
        log.info("G3 streaming server on %s", self.url)
        return self

    @property
    def url(self) -> str:
        """``tcp://host:port`` a client on this host can read."""
        if self.address is None:
            return "tcp://(not started)"
        host = self.address[0]
        if host in ("::", "0.0.0.0"):
            host = "127.0.0.1"
        return str(net.TcpAddress(host, self.address[1], False))

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, drain every client for up to ``timeout`` seconds
        (default ``drain_timeout``), close every client socket. Idempotent."""
        with self._lock:
            if self.state in (State.STOPPING, State.STOPPED):
                return
            was_running = self.state is State.RUNNING
            self.state = State.STOPPING
            clients = list(self._clients)
        if not was_running:
            self.state = State.STOPPED
            return
        net.close_quietly(self._listener)
        if self._acceptor is not None:
            self._acceptor.join(_CUT_GRACE)
        for client in clients:
            client.queue.close("server stopping")
        deadline = time.monotonic() + (self.drain_timeout if timeout is None else timeout)
        for client in clients:
            if client.worker is not None:
                client.worker.join(max(0.0, deadline - time.monotonic()))
        alive = self.concurrency.alive
        late = [c for c in clients if c.worker is not None and alive(c.worker)]
        for client in late:
            self.cut += 1
            log.warning("G3 client %s cut at stop with frames still queued", client.peer)
            net.close_quietly(client.sock)
        for client in late:
            client.worker.join(_CUT_GRACE)
        self.state = State.STOPPED

    def __enter__(self) -> StreamServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- frames -----------------------------------------------------------------------------

    def publish(self, frame: G3Frame) -> None:
        """Send ``frame`` to every client (encoded once); remember it if it is metadata."""
        data, size = frame.encoded()
        self.publish_encoded(data[0] if len(data) == 1 else data, frame.type, size)

    def publish_encoded(self, data: Encoded, frame_type: int, size: int | None = None) -> None:
        """:meth:`publish` for an encoded frame (bytes, or a tuple of buffers of
        ``size`` bytes in all) of type ``frame_type``."""
        if frame_type == G3FrameType.EndProcessing:
            return
        if self.queue_factory is not None:
            raise RuntimeError("this server's clients are fed by its queue_factory's queues")
        droppable = is_data(frame_type)
        if size is None:
            size = encoded_size(data)
        with self._lock:
            if self.state is not State.RUNNING:
                raise RuntimeError(f"the server is {self.state.value}")
            if not droppable:
                self._remember(frame_type, data)
            for client in self._clients:
                queue = client.queue
                if not queue.put(data, droppable, size) and not client.cut:
                    if queue.close_reason == OVERFLOW:  # over max_client_bytes
                        self._cut(client)
            self.published += 1

    def _remember(self, frame_type: int, data: Encoded) -> None:
        metadata = self._metadata
        if frame_type in metadata or len(metadata) < MAX_METADATA_TYPES:
            metadata[frame_type] = data
        elif not self._warned_metadata:
            self._warned_metadata = True
            log.warning("G3 server: more than %d metadata frame types; frames of new types "
                        "are sent but not replayed to new clients", MAX_METADATA_TYPES)

    def disconnect(self, queue: ClientQueue, reason: str) -> bool:
        """End the client whose queue is ``queue`` now, even while its writer is
        blocked in a write (a door's queue that overflowed: it is closed, and
        nothing else would wake that writer). Counted in :attr:`overflowed`.
        False if no connected client has that queue."""
        with self._lock:
            for client in self._clients:
                if client.queue is queue:
                    if client.cut:
                        return False
                    self._cut(client, reason)
                    return True
        return False

    def _cut(self, client: _Client, reason: str | None = None) -> None:
        """End a client whose queue overflowed: its writer may be blocked in a write."""
        client.cut = True
        self.overflowed += 1
        log.warning("G3 client %s disconnected: %s", client.peer,
                    reason or f"more than {self.max_client_bytes} bytes queued")
        try:
            client.sock.shutdown(2)  # wakes its writer, which closes the socket
        except OSError:
            pass

    # -- clients ----------------------------------------------------------------------------

    @property
    def clients(self) -> list[ClientStats]:
        """The connected clients, each with its counters (frames, bytes, queued, dropped)."""
        with self._lock:
            return [client.stats() for client in self._clients]

    @property
    def dropped(self) -> int:
        """Frames dropped for every client so far (connected or not)."""
        with self._lock:
            return self.dropped_closed + sum(c.queue.dropped for c in self._clients)

    def stats(self) -> dict[str, Any]:
        """Counters for a health or metrics page."""
        clients = self.clients
        return {
            "state": self.state.value,
            "address": self.url,
            "clients": len(clients),
            "accepted": self.accepted,
            "published": self.published,
            "dropped": self.dropped,
            "overflowed": self.overflowed,
            "cut": self.cut,
            "per_client": [dataclasses.asdict(c) for c in clients],
        }

    def _accept_loop(self) -> None:
        listener = self._listener
        while self.state is State.RUNNING:
            try:
                sock, addr = listener.accept()
            except OSError as error:
                if self.state is not State.RUNNING:
                    return
                if error.errno in _ACCEPT_BACKOFF_ERRNOS:
                    log.warning("G3 server: accept failed (%s); backing off", error)
                    self.concurrency.sleep(_ACCEPT_BACKOFF)
                continue
            self._add_client(sock, _peer_name(addr))

    def _add_client(self, sock: Any, peer: str) -> None:
        sm = self.concurrency.socket
        sock.setblocking(True)
        if self.nodelay:
            net.set_nodelay(sock, sm)
        if self.queue_factory is not None:
            queue: Any = self.queue_factory(peer)
        else:
            queue = FrameQueue(
                self.concurrency, self.max_queue_size, self.max_client_bytes, "close", peer
            )
        client = _Client(sock, peer, queue)
        with self._lock:
            if self.state is not State.RUNNING:
                net.close_quietly(sock)
                return
            if self.queue_factory is None:
                queue.put_many(list(self._metadata.values()))
            self._clients.append(client)
            self.accepted += 1
            client.worker = self.concurrency.spawn(self._serve, client, name=f"g3-{peer}")
        log.info("G3 client %s connected", peer)

    def _serve(self, client: _Client) -> None:
        try:
            reason = write_loop(client.sock, client.queue, client.sent, self.idle_check)
        except OSError as error:
            reason = f"write failed: {error}"
        except Exception:
            log.exception("G3 client %s: writer failed", client.peer)
            reason = "writer failed"
        client.queue.close(reason, discard=True)
        try:
            client.sock.shutdown(1)  # SHUT_WR: EOF after what was written
        except OSError:
            pass
        net.close_quietly(client.sock, shutdown=False)
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)
                self.dropped_closed += client.queue.dropped
        log.info("G3 client %s closed: %s (%d frames sent, %d dropped)",
                 client.peer, reason, client.frames, client.queue.dropped)
