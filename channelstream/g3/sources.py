"""Reading frames: from files, from TCP (connect or listen), from a list of both in order.

:class:`FrameReader` is the reading side of everything (``core.G3Reader``,
the console script, a service door): iterate it for frames, each a
:class:`~.frame.G3Frame` whose ``encode()`` is exactly the bytes received.
A list of sources is read in order; each one's end (EOF, or the peer
closing) moves on to the next, and the reader ends after the last.

``timeout`` (seconds, None = wait forever) turns silence on a TCP source
into its end: no connection accepted, no byte received for that long. A
source that ends inside a frame (EOF or silence) raises
:class:`~.errors.G3TruncatedError`; bytes that are not frames raise
:class:`~.errors.G3FormatError`, naming the source.

:meth:`FrameReader.close` may be called from another thread or greenlet:
it shuts the current socket down (which wakes a blocked read or accept),
and iteration then ends quietly. A listening source binds when it is
opened (its turn in the list) and accepts one connection only (spt3g's
listen mode); :meth:`TcpSource.bind` binds ahead of time (to learn the
port of ``tcp://*@127.0.0.1:0``, say).

Memory: a source holds one read chunk (``chunk_size``) plus its decoder
(at most ``max_frame_size``, see :mod:`.codec`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

from . import net
from .codec import FrameDecoder
from .concurrency import Concurrency, pick
from .errors import G3ConnectionError, G3Error, G3FormatError, G3TruncatedError
from .files import open_input
from .frame import G3Frame
from .wire import DEFAULT_MAX_FRAME_SIZE

log = logging.getLogger(__name__)

#: Bytes read at a time.
CHUNK_SIZE = 1 << 20


class Source:
    """One file or TCP source: ``frames()`` once, ``close()`` from anywhere."""

    name: str
    closed: bool = False

    def frames(self) -> Iterator[G3Frame]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class FileSource(Source):
    """The frames of a file (``.gz``, ``.bz2``, ``.xz`` decompressed by name)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.name = os.fspath(path)
        self.closed = False
        self._max_frame_size = max_frame_size
        self._chunk_size = chunk_size
        if not os.path.isfile(self.name):
            raise G3Error(f"no such file: {self.name!r}")

    def frames(self) -> Iterator[G3Frame]:
        decoder = FrameDecoder(self._max_frame_size)
        try:
            with open_input(self.name) as file:
                while not self.closed:
                    try:
                        data = file.read(self._chunk_size)
                    except (OSError, EOFError, ValueError) as error:
                        # gzip/bz2/lzma raise these for corrupt compressed data
                        raise G3FormatError(f"cannot read: {error}") from None
                    if not data:
                        decoder.close()
                        return
                    yield from decoder.feed(data)
        except G3FormatError as error:
            raise type(error)(f"{self.name}: {error}") from None

    def close(self) -> None:
        self.closed = True


class TcpSource(Source):
    """The frames of one TCP connection, made (``tcp://host:port``) or accepted
    (``tcp://*:port``, ``tcp://*@ADDR:port``)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        chunk_size: int = CHUNK_SIZE,
        concurrency: Concurrency | str | None = None,
    ) -> None:
        self.address = net.parse_url(url)
        self.name = str(self.address)
        self.timeout = timeout
        self.closed = False
        self._max_frame_size = max_frame_size
        self._chunk_size = chunk_size
        self._concurrency = pick(concurrency)
        self._listener: Any = None
        self._sock: Any = None
        #: the peer's address once connected
        self.peer: Any = None

    def bind(self) -> tuple[str, int]:
        """Listen now (listen mode only); return the bound ``(host, port)``."""
        if not self.address.listen:
            raise ValueError(f"{self.name} connects; it does not listen")
        if self._listener is None:
            sm = self._concurrency.socket
            self._listener = net.open_listener(sm, self.address.host, self.address.port, 1)
            if self.closed:  # closed meanwhile
                net.close_quietly(self._listener)
        return net.bound_address(self._listener)

    def open(self) -> None:
        """Connect now (connect mode) or bind (listen mode): errors surface here.

        Raises :class:`~.errors.G3ConnectionError`.
        """
        if self.address.listen:
            self.bind()
        elif self._sock is None and not self.closed:
            sm = self._concurrency.socket
            self._sock = net.connect(sm, self.address.host or "", self.address.port, self.timeout)
            self.peer = self._sock.getpeername()

    def _accept(self) -> Any:
        self.bind()
        listener = self._listener
        listener.settimeout(self.timeout)
        try:
            sock, self.peer = listener.accept()
        except TimeoutError:
            return None
        except OSError:
            if self.closed:
                return None
            raise
        finally:
            self._listener = None
            net.close_quietly(listener, shutdown=False)
        return sock

    def frames(self) -> Iterator[G3Frame]:
        if self.closed:
            return
        try:
            self.open()
            sock = self._accept() if self.address.listen else self._sock
        except G3ConnectionError:
            raise
        except OSError as error:
            if self.closed:
                return
            raise G3ConnectionError(f"{self.name}: {error}") from None
        if sock is None:
            return
        self._sock = sock
        if self.closed:  # closed while connecting
            net.close_quietly(sock)
            return
        sock.settimeout(self.timeout)
        decoder = FrameDecoder(self._max_frame_size)
        recv = sock.recv
        size = self._chunk_size
        try:
            while True:
                try:
                    data = recv(size)
                except TimeoutError:
                    if decoder.pending:
                        raise G3TruncatedError(
                            f"{self.name}: no data for {self.timeout} s inside a frame "
                            f"({decoder.pending} bytes of it)"
                        ) from None
                    return
                except OSError as error:
                    if self.closed:
                        return
                    raise G3ConnectionError(f"{self.name}: {error}") from None
                if not data:
                    if self.closed:
                        return
                    try:
                        decoder.close()
                    except G3TruncatedError as error:
                        raise G3TruncatedError(f"{self.name}: {error}") from None
                    return
                try:
                    frames = decoder.feed(data)
                except G3FormatError as error:
                    raise type(error)(f"{self.name}: {error}") from None
                yield from frames
        finally:
            self._sock = None
            net.close_quietly(sock)

    def close(self) -> None:
        self.closed = True
        net.close_quietly(self._listener)
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(2)  # wakes a blocked recv; frames() closes it
            except OSError:
                pass


def open_source(name: str, **options: Any) -> Source:
    """A :class:`TcpSource` for a ``tcp://`` URL, else a :class:`FileSource`."""
    if net.is_url(name):
        return TcpSource(name, **options)
    options.pop("timeout", None)
    options.pop("concurrency", None)
    return FileSource(name, **options)


class FrameReader:
    """Frames from one source or a list of them, read in order.

    :param sources: a file path or ``tcp://`` URL, or a list of them.
    :param timeout: seconds of silence that end a TCP source (None: wait forever).
    :param n_frames_to_read: stop after that many frames (0: no limit).
    :param track_filename: set each frame's ``_filename`` to its source's name.
    :param concurrency: see :mod:`.concurrency` (TCP sources only).

    A URL that cannot be parsed, or a file that does not exist, is refused
    here; each source is opened (connected, bound) in its turn.
    """

    def __init__(
        self,
        sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        *,
        timeout: float | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        n_frames_to_read: int = 0,
        track_filename: bool = False,
        chunk_size: int = CHUNK_SIZE,
        concurrency: Concurrency | str | None = None,
    ) -> None:
        if isinstance(sources, (str, os.PathLike)):
            names = [os.fspath(sources)]
        else:
            names = [os.fspath(s) for s in sources]
        if not names:
            raise ValueError("no source to read (an empty list)")
        for name in names:
            if net.is_url(name):
                net.parse_url(name)
            elif not os.path.isfile(name):
                raise G3Error(f"no such file: {name!r}")
        self.names = names
        self.n_frames_to_read = n_frames_to_read
        self.track_filename = track_filename
        self._options: dict[str, Any] = {
            "timeout": timeout,
            "max_frame_size": max_frame_size,
            "chunk_size": chunk_size,
            "concurrency": concurrency,
        }
        self._next = 0
        self.current: Source | None = None
        self.closed = False
        #: frames read so far
        self.frames = 0
        self._iter: Iterator[G3Frame] | None = None

    def open_next(self) -> Source | None:
        """Make the next source current (its ``open()`` connects or binds at once;
        reading does it otherwise); None after the last."""
        if self.closed or self._next >= len(self.names):
            return None
        name = self.names[self._next]
        self._next += 1
        self.current = open_source(name, **self._options)
        return self.current

    def __iter__(self) -> Iterator[G3Frame]:
        if self._iter is None:
            self._iter = self._run()
        return self._iter

    def __next__(self) -> G3Frame:
        return next(iter(self))

    def _run(self) -> Iterator[G3Frame]:
        limit = self.n_frames_to_read
        source = self.current
        while not self.closed:
            if source is None:
                source = self.open_next()
                if source is None:
                    return
            count = 0
            for frame in source.frames():
                if self.closed:
                    return
                if self.track_filename:
                    frame._filename = source.name
                count += 1
                self.frames += 1
                yield frame
                if limit and self.frames >= limit:
                    self.close()
                    return
            if count == 0 and not self.closed:
                log.warning("empty source %s", source.name)
            source = self.current = None

    def close(self) -> None:
        """Stop reading (from any thread or greenlet); iteration ends quietly."""
        self.closed = True
        source = self.current
        if source is not None:
            source.close()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
