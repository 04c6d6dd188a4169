"""A stand-in for ``spt3g.core``: ``from channelstream.g3 import core``.

The names and keyword arguments of spt3g 1.0.2 for frames, pipelines, files
and network streaming, so that pipelines written for spt3g run unchanged
but for the import::

    pipe = core.G3Pipeline()
    pipe.Add(core.G3Reader, filename=["/path/to/cal.g3", "tcp://daq.example:4536"])
    pipe.Add(core.G3ThrottledNetworkSender, hostname="*", port=4536, max_queue_size=10,
             frame_decimation={core.G3FrameType.Timepoint: 10})
    pipe.Run()

What differs from spt3g, on purpose (each a fix of one of its weaknesses):

* ``G3NetworkSender(hostname="*@127.0.0.1", ...)`` serves on one address
  only (``"*"`` still means every interface); clients are accepted at once,
  not when a frame passes; EndProcessing closes the client sockets after
  draining (within ``drain_timeout``); per-client drop counters are
  visible (``sender.clients``, ``sender.dropped``).
* In connect mode the sender's buffer is bounded (backpressure), its
  connection is closed at EndProcessing, and a reader that goes away is an
  error rather than silence.
* ``G3Reader`` reads any file name (compression by suffix), IPv6 URLs, and
  ``tcp://*@ADDR:port`` listens on ADDR only; its ``timeout`` also bounds
  the wait for a connection in listen mode.
* No PipelineInfo frame is added (see :mod:`.pipeline`); only the four
  scalar classes are decoded, every other object is carried opaque.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

from . import net
from .concurrency import Concurrency
from .errors import G3ConnectionError, G3Error, G3FormatError, G3TruncatedError
from .files import FrameWriter
from .frame import G3Frame, G3KeyExistsError
from .frametype import G3FrameType
from .objects import G3Bool, G3Double, G3FrameObject, G3Int, G3String, OpaqueObject
from .pipeline import (
    G3Module,
    G3Pipeline,
    indexmod,
    pipesegment,
    pipesegment_nodoc,
    usefulfunc,
)
from .queue import DEFAULT_MAX_BYTES
from .sender import DEFAULT_BUFFER_BYTES, FrameSender
from .server import StreamServer
from .sources import FrameReader, TcpSource
from .wire import DEFAULT_MAX_FRAME_SIZE

__all__ = [
    "G3Frame", "G3FrameType", "G3FrameObject", "G3Int", "G3Double", "G3Bool", "G3String",
    "OpaqueObject", "G3Module", "G3Pipeline", "G3Reader", "G3Writer", "G3File",
    "G3NetworkSender", "G3ThrottledNetworkSender", "G3NetworkReceiver",
    "pipesegment", "pipesegment_nodoc", "indexmod", "usefulfunc",
    "Dump", "Delete", "Keep", "Rename", "InjectFrame",
    "G3Error", "G3FormatError", "G3TruncatedError", "G3ConnectionError", "G3KeyExistsError",
    "log_trace", "log_debug", "log_info", "log_notice", "log_warn", "log_error", "log_fatal",
]

log = logging.getLogger("channelstream.g3")


class G3Reader(G3Module):
    """Read frames from files and ``tcp://`` URLs, in order (see :mod:`.sources`).

    As the first module it emits one frame per call and ends the pipeline
    after the last source; placed later, it emits everything it reads
    before the first frame it is given. ``timeout`` > 0 ends a silent TCP
    source after that many seconds (spt3g: -1 = never).
    """

    def __init__(
        self,
        filename: str | os.PathLike[str] | Iterable[str],
        n_frames_to_read: int = 0,
        timeout: float = -1.0,
        track_filename: bool = False,
        buffersize: int = 1024 * 1024,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        concurrency: Concurrency | str | None = None,
    ) -> None:
        self._reader = FrameReader(
            filename,
            timeout=timeout if timeout > 0 else None,
            max_frame_size=max_frame_size,
            n_frames_to_read=max(0, n_frames_to_read),
            track_filename=track_filename,
            chunk_size=max(4096, buffersize),
            concurrency=concurrency,
        )
        # Connect (or bind) now, as spt3g's constructor does: a wrong address fails here.
        source = self._reader.open_next()
        if isinstance(source, TcpSource):
            source.open()
        self._frames: Iterator[G3Frame] = iter(self._reader)
        self._prefixed = False

    @property
    def reader(self) -> FrameReader:
        return self._reader

    def Process(self, frame: G3Frame | None) -> list[G3Frame]:
        if frame is None:
            for first in self._frames:
                return [first]
            return []
        if self._prefixed:
            return [frame]
        self._prefixed = True
        return [*self._frames, frame]

    def Close(self) -> None:
        self._reader.close()


class G3Writer(G3Module):
    """Write frames to a file (``.gz``/``.bz2``/``.xz`` compressed by name).

    :param streams: frame types to write (default: all). EndProcessing
        flushes and closes the file; it is not written.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        streams: Iterable[Any] = (),
        append: bool = False,
        buffersize: int = 1024 * 1024,
    ) -> None:
        self._writer = FrameWriter(filename, streams, append, buffersize)

    def Process(self, frame: G3Frame) -> None:
        if frame.type == G3FrameType.EndProcessing:
            self._writer.close()
        else:
            self._writer.write(frame)

    def flush(self) -> None:
        self._writer.flush()

    def tell(self) -> int:
        return self._writer.tell()

    def Close(self) -> None:
        self._writer.close()

    def __enter__(self) -> G3Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self(G3Frame(G3FrameType.EndProcessing))


class G3NetworkSender(G3Module):
    """Send frames over TCP: a streaming server (``hostname="*"`` or
    ``"*@ADDR"``) or a sender to a listening reader (any other host name).

    :param max_queue_size: per-client (or link) bound in frames past which
        the oldest Timepoint/Scan frames are dropped (0: none).
    :param n_serializers: accepted for spt3g compatibility; frames are
        encoded once, in the pipeline's thread.
    :param drain_timeout: seconds EndProcessing waits for the queues to
        drain (default 10 for a server, unbounded for a sender).
    :param max_client_bytes: a streaming client's queue bound in bytes (its
        connection is closed past it).
    :param max_buffer_bytes: the sender's buffer bound (backpressure past it).
    """

    def __init__(
        self,
        hostname: str,
        port: int,
        max_queue_size: int = 0,
        n_serializers: int = 0,
        *,
        drain_timeout: float | None = None,
        max_client_bytes: int = DEFAULT_MAX_BYTES,
        max_buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        concurrency: Concurrency | str | None = None,
    ) -> None:
        host, listen = net.parse_host(hostname)
        port = net.parse_port(port, f"{hostname}:{port}")
        self.server: StreamServer | None = None
        self.sender: FrameSender | None = None
        self._drain_timeout = drain_timeout
        self.closed = False
        if listen:
            self.server = StreamServer(
                host,
                port,
                max_queue_size=max_queue_size,
                max_client_bytes=max_client_bytes,
                drain_timeout=10.0 if drain_timeout is None else drain_timeout,
                concurrency=concurrency,
            ).start()
        else:
            self.sender = FrameSender(
                host or "",
                port,
                max_queue_size=max_queue_size,
                max_buffer_bytes=max_buffer_bytes,
                concurrency=concurrency,
            ).start()

    @property
    def address(self) -> tuple[str, int] | None:
        """The streaming server's bound ``(host, port)`` (None for a sender)."""
        return None if self.server is None else self.server.address

    @property
    def clients(self) -> list[Any]:
        """The streaming server's clients with their counters (frames, bytes, queued, dropped)."""
        return [] if self.server is None else self.server.clients

    @property
    def dropped(self) -> int:
        """Frames dropped so far (every client's, or the link's)."""
        if self.server is not None:
            return self.server.dropped
        return self.sender.dropped if self.sender is not None else 0

    def FramesDroppedFromSending(self) -> int:
        return self.dropped

    def Process(self, frame: G3Frame) -> None:
        if frame.type == G3FrameType.EndProcessing:
            self._end()
            return
        if self.closed:
            return
        if self.server is not None:
            self.server.publish(frame)
        elif self.sender is not None:
            self.sender.publish(frame)

    def _end(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.server is not None:
            self.server.stop()
        elif self.sender is not None:
            self.sender.stop(self._drain_timeout)

    def Close(self) -> None:
        """Stop at once (what is queued is dropped). Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.server is not None:
            self.server.stop(0)
        elif self.sender is not None:
            self.sender.close()


class G3ThrottledNetworkSender:
    """Send every Nth frame of some types through a :class:`G3NetworkSender`.

    ``frame_decimation`` maps a frame type to N (0 drops that type from
    what is sent); other types are all sent. Every frame still goes on to
    the next module, as in spt3g.
    """

    def __init__(
        self,
        hostname: str = "*",
        port: int = 5978,
        frame_decimation: dict[Any, int] | None = None,
        max_queue_size: int = 0,
        **options: Any,
    ) -> None:
        if frame_decimation is None:
            frame_decimation = {G3FrameType.Timepoint: 10}
        self.sender = G3NetworkSender(
            hostname=hostname, port=port, max_queue_size=max_queue_size, **options
        )
        self.decimation = {G3FrameType(k): int(v) for k, v in frame_decimation.items()}
        for frame_type, every in self.decimation.items():
            if every < 0:
                raise ValueError(f"frame_decimation of {frame_type} must be >= 0")
        self.counts = dict.fromkeys(self.decimation, 0)

    def __call__(self, frame: G3Frame) -> None:
        every = self.decimation.get(frame.type)
        if every is not None:
            if every == 0:
                return
            self.counts[frame.type] += 1
            if self.counts[frame.type] % every != 0:
                return
        self.sender(frame)

    def Close(self) -> None:
        self.sender.Close()


@pipesegment
def G3NetworkReceiver(pipe: G3Pipeline, hostname: str = "localhost", port: int = 5978) -> None:
    """spt3g's emulation of the old receiver: a G3Reader of ``tcp://hostname:port``."""
    pipe.Add(G3Reader, filename=f"tcp://{hostname}:{port}")


class G3File:
    """Iterate the frames of a file (or URL, or list): ``for frame in core.G3File(path)``."""

    def __init__(self, path: str | os.PathLike[str] | Iterable[str]) -> None:
        self.reader: FrameReader | None = FrameReader(path)
        self._frames = iter(self.reader)

    def __iter__(self) -> G3File:
        return self

    def __next__(self) -> G3Frame:
        if self.reader is None:
            raise StopIteration
        return next(self._frames)

    next = __next__

    def __enter__(self) -> G3File:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


# -- small modules of spt3g's core/python/util.py ------------------------------------------------


@indexmod
def Dump(frame: G3Frame, type: Any = None, added_message: str | None = None) -> None:
    """Print frames (of ``type`` only, if given)."""
    if (type is not None and frame.type != type) or frame.type == G3FrameType.EndProcessing:
        return
    if added_message:
        print(added_message)
    print(frame)


@indexmod
def Delete(frame: G3Frame, keys: Iterable[str] = (), type: Any = None) -> None:
    """Delete ``keys`` from frames (of ``type`` only, if given)."""
    if type is not None and frame.type != type:
        return
    for key in keys:
        if key in frame:
            del frame[key]


@indexmod
def Keep(frame: G3Frame, keys: Iterable[str] = (), type: Any = None) -> None:
    """Delete every key but ``keys`` from frames (of ``type`` only, if given)."""
    if type is not None and frame.type != type:
        return
    keep = set(keys)
    for key in list(frame.keys()):
        if key not in keep:
            del frame[key]


@indexmod
def Rename(frame: G3Frame, keys: dict[str, str] | None = None, type: Any = None) -> None:
    """Rename keys (old -> new) in frames (of ``type`` only, if given)."""
    if type is not None and frame.type != type:
        return
    for old, new in (keys or {}).items():
        if old in frame:
            obj = frame.object(old)
            del frame[old]
            frame[new] = obj


@indexmod
class InjectFrame:
    """Emit ``frame`` before the first frame that passes."""

    def __init__(self, frame: G3Frame) -> None:
        self.frame: G3Frame | None = frame

    def __call__(self, frame: G3Frame) -> list[G3Frame] | None:
        if self.frame is None:
            return None
        out = [self.frame, frame]
        self.frame = None
        return out


def log_trace(*args: Any, **kwargs: Any) -> None:
    log.debug(*args)


def log_debug(*args: Any, **kwargs: Any) -> None:
    log.debug(*args)


def log_info(*args: Any, **kwargs: Any) -> None:
    log.info(*args)


def log_notice(*args: Any, **kwargs: Any) -> None:
    log.info(*args)


def log_warn(*args: Any, **kwargs: Any) -> None:
    log.warning(*args)


def log_error(*args: Any, **kwargs: Any) -> None:
    log.error(*args)


def log_fatal(message: str, *args: Any, **kwargs: Any) -> None:
    """Log and raise :class:`G3Error` (spt3g raises RuntimeError)."""
    log.critical(message, *args)
    raise G3Error(message % args if args else message)
