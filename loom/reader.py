"""Reading a stream's bytes back from its data file, and the body of an upload.

:class:`StreamReader` reads a stream from its start, never past what the
store has announced (``stream.stored``), so it only ever sees complete
writes; it serves the stored part, the live tail (woken by the door) and the
spy alike. The file stays open while reading: a stream replaced or deleted
meanwhile is still read to its end from the unlinked file. A large zlib
frame is inflated in gevent's thread pool (:func:`_decompress`), so
:meth:`StreamReader.read` may yield; readers of one stream decode each frame
once between them (``Stream.decoded``, ``Stream.decoding``).

:func:`read_some` reads an upload incrementally: whatever part of the body
has arrived, at once, so that a producer's bytes reach the disk (and the
tailing readers) as they come, not when a buffer fills.
"""

from __future__ import annotations

import logging
import os
import zlib
from typing import Any

from . import frames
from .disk import in_pool
from .store import Stream, open_data

log = logging.getLogger(__name__)

#: Most bytes one read returns (one write to a reader's socket).
READ_SIZE = 256 * 1024
#: Decoded frames kept per compressed stream for the other readers.
DECODED_FRAMES = 16
#: Frames with at least this much zlib data are inflated in the thread pool.
POOL_DECOMPRESS = 16 * 1024


class StreamReader:
    """Reads one stream's raw bytes in order; see the module doc.

    :raises OSError: from the constructor if the data file is gone.
    """

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.fd: int | None = open_data(stream)
        #: offset in the data file of the next unread byte
        self.offset = 0
        #: set when the data file turned out damaged (the reader stops there)
        self.corrupt: str | None = None

    def read(self, limit: int | None = None, max_bytes: int = READ_SIZE) -> bytes:
        """The next raw bytes stored before file offset ``limit`` (default: all
        announced so far), at most about ``max_bytes``; ``b""`` when none yet."""
        if self.fd is None or self.corrupt:
            return b""
        end = self.stream.stored if limit is None else min(limit, self.stream.stored)
        if self.stream.compression == frames.NONE:
            count = min(end - self.offset, max_bytes)
            if count <= 0:
                return b""
            last = self.stream.last_read
            if last is not None and last[0] == self.offset and last[1] == self.offset + count:
                data = last[2]  # an append-only file: those bytes never change
            else:
                data = os.pread(self.fd, count, self.offset)
                self.stream.last_read = (self.offset, self.offset + len(data), data)
            self.offset += len(data)
        else:
            data = self._read_frames(end, max_bytes)
        return data

    def _read_frames(self, end: int, max_bytes: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        stream = self.stream
        while total < max_bytes:
            frame = stream.decoded.get(self.offset)
            if frame is None:
                with stream.decoding:  # another reader may be decoding this very frame
                    frame = stream.decoded.get(self.offset) or self._decode(end)
            # a frame decoded by a reader allowed further (notail) is not ours yet
            if frame is None or frame[1] > end:
                break
            parts.append(frame[0])
            total += len(frame[0])
            self.offset = frame[1]
        return b"".join(parts)

    def _decode(self, end: int) -> tuple[bytes, int] | None:
        """Decode the frame at :attr:`offset` into the stream's cache; None if
        there is none before ``end`` yet, or the file is damaged (:attr:`corrupt`)."""
        try:
            frame = frames.decode_at(self.fd, self.offset, end, _decompress)  # type: ignore[arg-type]
        except frames.CorruptData as err:
            self.corrupt = str(err)
            log.warning("loom: stream %s: damaged data file: %s", self.stream.id, err)
            return None
        if frame is not None:
            cache = self.stream.decoded
            cache[self.offset] = frame
            if len(cache) > DECODED_FRAMES:
                del cache[next(iter(cache))]
        return frame

    @property
    def done(self) -> bool:
        """Everything is read and the stream will not grow any more."""
        return self.corrupt is not None or (
            not self.stream.live and self.offset >= self.stream.stored
        )

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _decompress(packed: bytes) -> bytes:
    """Inflate a frame; a large one in the thread pool (the calling greenlet waits).

    Inline, a 1 MiB frame of log text takes 3-4 ms, and a GET to a fast
    client decodes frame after frame without yielding (its sends do not
    block), so the loop stalled for whole responses; zlib releases the GIL,
    so in the pool other greenlets run meanwhile and the other core inflates.
    """
    if len(packed) >= POOL_DECOMPRESS:
        return in_pool(zlib.decompress, packed)
    return zlib.decompress(packed)


class UploadReader:
    """Incremental reads of a request body (``wsgi.input``).

    Under pywsgi (whose ``Input.read(n)`` waits until ``n`` bytes or the end)
    it returns, per call, the rest of the current chunk of a chunked body or
    whatever has arrived of a Content-Length body; under another server it
    falls back to ``read(n)``. ``start()`` sends ``100 Continue`` if the
    client asked for it; call it before sending any response header.
    """

    def __init__(self, wsgi_input: Any) -> None:
        self.input = wsgi_input
        self._pywsgi = all(
            hasattr(wsgi_input, name)
            for name in ("rfile", "position", "content_length", "chunked_input", "chunk_length")
        )
        self._buffer: memoryview | None = None  # reused by Content-Length reads

    def give_up(self) -> None:
        """Read no more of this body: the connection cannot serve another request.

        Under pywsgi the rest of a chunked body is then not drained (the
        connection ends); a Content-Length body is bounded by its length.
        """
        if self._pywsgi and self.input.chunked_input:
            self.input._chunked_input_error = True

    def start(self) -> None:
        """Answer ``Expect: 100-continue`` now (a read of 0 bytes does that)."""
        self.input.read(0)

    def read(self, max_bytes: int = 1 << 20) -> bytes | memoryview:
        """The next part of the body (empty at its end), valid until the next call.

        :raises OSError: the connection broke before the end of the body.
        :raises ValueError: the body's chunked framing is invalid.
        """
        if not self._pywsgi:
            data = self.input.read(max_bytes)
        elif self.input.chunked_input:
            data = self._chunk(max_bytes)
        else:
            data = self._sized(max_bytes)
        return data

    def _chunk(self, max_bytes: int) -> bytes:
        inp = self.input
        if inp.chunk_length == 0:
            return b""
        left = inp.chunk_length - inp.position
        if inp.chunk_length > 0 and left > 0:
            return inp.read(min(left, max_bytes))
        first = inp.read(1)  # parses the next chunk's size line
        if not first:
            return b""
        left = inp.chunk_length - inp.position
        if left > 0 and max_bytes > 1:
            return first + inp.read(min(left, max_bytes - 1))
        return first

    def _sized(self, max_bytes: int) -> memoryview | bytes:
        inp = self.input
        left = (inp.content_length or 0) - inp.position
        if left <= 0:
            return b""
        # into one reused buffer: a fresh 1 MiB bytes object per read costs
        # an mmap and page faults each time (a third of the ingest's CPU)
        if self._buffer is None or len(self._buffer) < max_bytes:
            self._buffer = memoryview(bytearray(max_bytes))
        count = inp.rfile.readinto1(self._buffer[: min(left, max_bytes)])
        if not count:
            raise OSError(f"the connection closed {left} bytes before the end of the body")
        inp.position += count
        return self._buffer[:count]
