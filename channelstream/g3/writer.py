"""The write loop of one connection: drain a queue, coalesce, write.

Used by the streaming server's clients and by the sender to one reader.
Each drained batch goes out in few system calls: buffers smaller than
:data:`LARGE_FRAME` are joined into writes of up to :data:`COALESCE_BYTES`,
larger ones are passed as they are (no copy), many per ``sendmsg``
(writev). Frames are encoded once by the producer and shared by every
connection's queue; a large frame may be several buffers (see
:meth:`~.frame.G3Frame.encoded`).
"""

from __future__ import annotations

import select
from collections.abc import Callable
from typing import Any, Protocol

#: Frames at least this big are written on their own, without copying.
LARGE_FRAME = 64 * 1024
#: Small frames are joined into writes of about this size.
COALESCE_BYTES = 256 * 1024
#: Most buffers in one sendmsg (Linux's IOV_MAX is 1024).
MAX_IOV = 512
#: Seconds a writer waits for frames before checking that its peer is still there.
IDLE_CHECK = 5.0


class ClientQueue(Protocol):
    """What a connection's writer consumes (a :class:`~.queue.FrameQueue`, or a
    door's adapter of its own bounded queue).

    ``wait`` blocks until something is queued or the queue is closed (False
    on timeout); ``drain`` takes every queued encoded frame; ``close`` means
    no more frames: the writer writes what is left, then ends.
    """

    closed: bool
    dropped: int

    def wait(self, timeout: float | None = None) -> bool: ...

    def drain(self) -> list[Any]: ...

    def close(self, reason: str = "closed", discard: bool = False) -> None: ...


def send_frames(sock: Any, batch: list[Any]) -> int:
    """Write every encoded frame of ``batch`` in order; return the bytes written.

    Small frames are joined into writes of about :data:`COALESCE_BYTES`;
    large buffers (a frame's, or a large object's within a frame) go out as
    they are, several per ``sendmsg`` (writev), never copied.
    """
    iov: list[Any] = []
    pending: list[Any] = []
    size = total = 0
    for data in batch:
        for part in data if type(data) is tuple else (data,):
            n = len(part)
            total += n
            if n < LARGE_FRAME:
                pending.append(part)
                size += n
                if size < COALESCE_BYTES:
                    continue
                iov.append(b"".join(pending))
            else:
                if pending:
                    iov.append(pending[0] if len(pending) == 1 else b"".join(pending))
                iov.append(part)
            pending, size = [], 0
        if len(iov) >= MAX_IOV:
            send_buffers(sock, iov)
            iov = []
    if pending:
        iov.append(pending[0] if len(pending) == 1 else b"".join(pending))
    if iov:
        send_buffers(sock, iov)
    return total


def send_buffers(sock: Any, buffers: list[Any]) -> None:
    """Write ``buffers`` in order: one ``sendall``, or ``sendmsg`` calls until all is sent."""
    if len(buffers) == 1 or not hasattr(sock, "sendmsg"):
        for buffer in buffers:
            sock.sendall(buffer)
        return
    views = buffers
    index = 0
    while index < len(views):
        sent = sock.sendmsg(views[index : index + MAX_IOV])
        while sent:
            n = len(views[index])  # byte buffers: len is their size
            if sent >= n:
                sent -= n
                index += 1
            else:
                if views is buffers:
                    views = list(buffers)
                views[index] = memoryview(views[index])[sent:]
                sent = 0


def peer_gone(sock: Any) -> bool:
    """True when the peer closed its side (input is read and discarded: G3 readers
    never send). Never blocks."""
    try:
        while select.select([sock.fileno()], [], [], 0)[0]:
            if not sock.recv(65536):
                return True
    except (OSError, ValueError):
        return True
    return False


def write_loop(
    sock: Any,
    queue: ClientQueue,
    on_sent: Callable[[int, int], None],
    idle_check: float | None = IDLE_CHECK,
) -> str:
    """Write what ``queue`` gets to ``sock`` until it closes; return why it ended.

    ``on_sent(frames, bytes)`` is called after each batch. OSError from the
    socket propagates (the caller closes the queue and the socket).
    """
    while True:
        if not queue.wait(idle_check):
            if peer_gone(sock):
                return "peer closed the connection"
            continue
        batch = queue.drain()
        if batch:
            on_sent(len(batch), send_frames(sock, batch))
        elif queue.closed:
            return getattr(queue, "close_reason", None) or "closed"
