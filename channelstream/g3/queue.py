"""``FrameQueue``: encoded frames waiting for one connection, bounded and drop-aware.

One producer (the pipeline) puts encoded frames; one writer (the
connection's thread or greenlet) drains everything queued and writes it in
as few writes as it can. Bounds, checked on every put:

* ``max_frames`` (spt3g's ``max_queue_size``; 0 = none): past it, the
  oldest *droppable* frame (Timepoint, Scan) is dropped and counted in
  :attr:`dropped`. Other frames are never dropped.
* ``max_bytes`` (always set: no queue a peer controls grows without
  bound): past it, depending on ``on_full``:

  - ``"close"`` (the streaming server): the queue closes as overflowed
    and discards what it holds; its writer then ends the connection.
  - ``"block"`` (a sender to one reader): :meth:`put` waits until the
    writer has made room (backpressure). A frame larger than the bound
    still goes through when the queue is empty.

Thread-safe with the threads concurrency; with greenlets the critical
sections never yield. The writer waits with :meth:`wait`.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from .concurrency import Concurrency
from .wire import Buffer

#: An encoded frame: its bytes, or buffers to write one after the other.
Encoded = Buffer | tuple[Buffer, ...]

#: Default byte bound of one client's queue.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024

OVERFLOW = "overflow"


def encoded_size(data: Encoded) -> int:
    if type(data) is tuple:
        return sum(len(part) for part in data)
    return len(data)  # type: ignore[arg-type]


class FrameQueue:
    """See the module doc. ``name`` is for logs."""

    __slots__ = (
        "max_frames", "max_bytes", "on_full", "name", "closed", "close_reason",
        "dropped", "put_count", "sent", "_items", "_bytes", "_kept", "_lock", "_ready",
        "_space",
    )

    def __init__(
        self,
        concurrency: Concurrency,
        max_frames: int = 0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        on_full: Literal["close", "block"] = "close",
        name: str = "",
    ) -> None:
        if max_frames < 0:
            raise ValueError("max_frames must be >= 0")
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if on_full not in ("close", "block"):
            raise ValueError("on_full must be 'close' or 'block'")
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.on_full = on_full
        self.name = name
        self.closed = False
        self.close_reason: str | None = None
        #: frames dropped (max_frames), or discarded by an overflow close
        self.dropped = 0
        #: frames accepted by put
        self.put_count = 0
        #: frames handed to the writer
        self.sent = 0
        self._items: deque[tuple[Encoded, int, bool]] = deque()
        self._bytes = 0
        # Length of the run of undroppable frames at the head that a drop has
        # already scanned past (each frame is scanned once).
        self._kept = 0
        self._lock = concurrency.lock()
        self._ready = concurrency.event()
        self._space = concurrency.event()
        self._space.set()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def put(self, data: Encoded, droppable: bool, size: int | None = None) -> bool:
        """Queue one encoded frame (bytes, or a tuple of buffers of ``size`` bytes in all).

        False if the queue is (or just got) closed.
        """
        if size is None:
            size = encoded_size(data)
        if self.on_full == "block":
            while True:
                with self._lock:
                    if self.closed:
                        return False
                    if not self._items or self._bytes + size <= self.max_bytes:
                        self._append(data, size, droppable)
                        return True
                    self._space.clear()
                self._space.wait()
        with self._lock:
            if self.closed:
                return False
            self._append(data, size, droppable)
            if self._bytes > self.max_bytes:
                self._close(OVERFLOW, discard=True)
                return False
            return True

    def put_many(self, items: list[Encoded]) -> bool:
        """Queue several frames in order (a new client's replay), never dropped."""
        with self._lock:
            if self.closed:
                return False
            for data in items:
                size = encoded_size(data)
                self._items.append((data, size, False))
                self._bytes += size
            self.put_count += len(items)
            if items:
                self._ready.set()
            return True

    def _append(self, data: Encoded, size: int, droppable: bool) -> None:
        items = self._items
        items.append((data, size, droppable))
        self._bytes += size
        self.put_count += 1
        if len(items) == 1:
            self._ready.set()
        elif self.max_frames and len(items) > self.max_frames:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        items = self._items
        index, end = self._kept, len(items)
        while index < end and not items[index][2]:
            index += 1
        self._kept = index
        if index == end:
            return  # nothing droppable: metadata is never dropped
        size = items[index][1]
        del items[index]
        self._bytes -= size
        self.dropped += 1

    def drain(self) -> list[Encoded]:
        """Take everything queued (empty when nothing is)."""
        with self._lock:
            items = self._items
            if not items:
                if not self.closed:
                    self._ready.clear()
                return []
            batch = [item[0] for item in items]
            items.clear()
            self._bytes = 0
            self._kept = 0
            self.sent += len(batch)
            if not self.closed:
                self._ready.clear()
            self._space.set()
            return batch

    def wait(self, timeout: float | None = None) -> bool:
        """Block until frames are queued or the queue is closed; False on timeout."""
        return self._ready.wait(timeout)

    def close(self, reason: str = "closed", discard: bool = False) -> None:
        """No more frames: the writer drains what is left (unless ``discard``) and ends."""
        with self._lock:
            self._close(reason, discard)

    def _close(self, reason: str, discard: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if discard:
            self.dropped += len(self._items)
            self._items.clear()
            self._bytes = 0
        self._ready.set()
        self._space.set()
