"""``FrameSender``: frames to one listening reader (spt3g's ``G3NetworkSender`` to a host).

spt3g's sender in this mode hands frames to a second thread through an
unbounded buffer, so a slow link can pull a whole input file into memory.
Here the buffer is bounded (``max_buffer_bytes``): when it is full,
:meth:`FrameSender.publish` blocks until the writer has made room, so the
pipeline runs at the speed of the link (backpressure). With
``max_queue_size`` > 0 the oldest queued Timepoint/Scan frames are dropped
instead, as spt3g does, and counted (:attr:`FrameSender.dropped`); other
frames are never dropped.

If the reader goes away, the next :meth:`publish` raises
:class:`~.errors.G3ConnectionError` (spt3g goes on silently, dropping
everything). :meth:`stop` sends what is queued (waiting up to ``timeout``
seconds, None = as long as it takes), then closes the connection, so the
reader sees its end at once (spt3g's reader sees it only when the sending
process exits).
"""

from __future__ import annotations

import logging
from typing import Any

from . import net
from .concurrency import Concurrency, pick
from .errors import G3ConnectionError
from .frame import G3Frame
from .frametype import G3FrameType, is_data
from .queue import Encoded, FrameQueue
from .writer import write_loop

log = logging.getLogger(__name__)

#: Default bound of the frames waiting for the link.
DEFAULT_BUFFER_BYTES = 64 * 1024 * 1024


class FrameSender:
    """Send frames to a reader listening on ``host:port`` (see the module doc).

    :param connect_timeout: seconds to wait for the connection (None: the OS's).
    :param concurrency: threads or greenlets (:mod:`.concurrency`).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_queue_size: int = 0,
        max_buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        connect_timeout: float | None = 30.0,
        concurrency: Concurrency | str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.concurrency = pick(concurrency)
        self.connect_timeout = connect_timeout
        self.queue = FrameQueue(
            self.concurrency, max_queue_size, max_buffer_bytes, "block", f"{host}:{port}"
        )
        self._sock: Any = None
        self._worker: Any = None
        self.error: str | None = None
        self.stopped = False
        #: frames and bytes written
        self.frames = 0
        self.bytes = 0

    @property
    def dropped(self) -> int:
        return self.queue.dropped

    def start(self) -> FrameSender:
        """Connect and start the writer. Raises :class:`~.errors.G3ConnectionError`."""
        if self._sock is not None:
            raise RuntimeError("the sender is already started")
        sm = self.concurrency.socket
        self._sock = net.connect(sm, self.host, self.port, self.connect_timeout)
        self._worker = self.concurrency.spawn(self._run, name=f"g3-send-{self.host}")
        return self

    def _sent(self, frames: int, nbytes: int) -> None:
        self.frames += frames
        self.bytes += nbytes

    def _run(self) -> None:
        try:
            write_loop(self._sock, self.queue, self._sent, idle_check=None)
        except OSError as error:
            self.error = f"the reader at {net._bracket(self.host)}:{self.port} went away: {error}"
            log.warning("G3 sender: %s", self.error)
        except Exception as error:
            self.error = f"writer failed: {error}"
            log.exception("G3 sender to %s:%s failed", self.host, self.port)
        finally:
            self.queue.close(self.error or "done", discard=self.error is not None)

    def publish(self, frame: G3Frame) -> None:
        """Queue ``frame``; blocks while the buffer is full. EndProcessing is not sent."""
        data, size = frame.encoded()
        self.publish_encoded(data[0] if len(data) == 1 else data, frame.type, size)

    def publish_encoded(self, data: Encoded, frame_type: int, size: int | None = None) -> None:
        """:meth:`publish` for an encoded frame (bytes, or a tuple of buffers)."""
        if frame_type == G3FrameType.EndProcessing:
            return
        if self._sock is None or self.stopped:
            raise RuntimeError("the sender is not running")
        if not self.queue.put(data, is_data(frame_type), size) or self.error:
            raise G3ConnectionError(self.error or "the sender's connection is closed")

    def stop(self, timeout: float | None = None) -> None:
        """Send what is queued (up to ``timeout`` s), close the connection. Idempotent.

        Raises :class:`~.errors.G3ConnectionError` if the reader went away or
        the frames could not be sent in time.
        """
        if self.stopped or self._sock is None:
            self.stopped = True
            return
        self.stopped = True
        self.queue.close("stopping")
        self._worker.join(timeout)
        if self.concurrency.alive(self._worker):
            self.error = self.error or (
                f"{len(self.queue)} frames still queued after {timeout} s; connection cut"
            )
            net.close_quietly(self._sock)
            self._worker.join(2.0)
        else:
            try:
                self._sock.shutdown(1)  # SHUT_WR: the reader sees the end at once
            except OSError:
                pass
            net.close_quietly(self._sock, shutdown=False)
        if self.error:
            raise G3ConnectionError(self.error)

    def close(self) -> None:
        """Stop at once, dropping what is queued (no error raised)."""
        self.stopped = True
        self.queue.close("closed", discard=True)
        net.close_quietly(self._sock)
        if self._worker is not None:
            self._worker.join(2.0)
