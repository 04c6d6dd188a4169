"""Bytes to frames and back: the incremental :class:`FrameDecoder` and one-shot helpers.

``FrameDecoder.feed(data)`` accepts bytes in any chunking and returns the
frames completed by them, each a :class:`~.frame.G3Frame` whose
``encode()`` gives back exactly the bytes it was read from. ``close()``
says whether the stream ended between frames.

Memory bound: the decoder holds at most the current frame's bytes received
so far plus the rest of the last chunk fed, and never more than
``max_frame_size`` of any frame: every length field is checked against that
limit (see :class:`~.wire.FrameScanner`) before the bytes it announces are
awaited, and buffers only grow with bytes actually fed. Frames are copied
out of the buffer once (a frame ends up owning its bytes, so a small frame
does not keep a large read buffer alive).

Errors: :class:`~.errors.G3FormatError` for bytes that are not frames (the
decoder is then unusable: the stream has no resynchronization point),
:class:`~.errors.G3TruncatedError` from ``close()`` for a stream that ended
inside a frame.
"""

from __future__ import annotations

from typing import Any

from .errors import G3FormatError, G3TruncatedError
from .frame import G3Frame
from .wire import DEFAULT_MAX_FRAME_SIZE, FrameScanner


class FrameDecoder:
    """Incremental decoder of a stream of concatenated frames.

    :param max_frame_size: largest frame accepted, in bytes.
    :param verify_crc: check each frame's CRC (on by default).
    """

    __slots__ = ("_buf", "_scanner", "_failed", "verify_crc", "frames", "bytes")

    def __init__(
        self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, *, verify_crc: bool = True
    ) -> None:
        self._buf = bytearray()
        self._scanner = FrameScanner(max_frame_size)
        self._failed: G3FormatError | None = None
        self.verify_crc = verify_crc
        #: frames and bytes decoded so far
        self.frames = 0
        self.bytes = 0

    @property
    def max_frame_size(self) -> int:
        return self._scanner.max_frame_size

    @property
    def pending(self) -> int:
        """Bytes received of a frame not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[G3Frame]:
        """Consume ``data``; return the frames it completed, in order."""
        if self._failed is not None:
            raise G3FormatError(f"the stream is already broken: {self._failed}")
        frames: list[G3Frame] = []
        if not data:
            return frames
        try:
            if self._buf:
                self._buf += data
                buf: Any = self._buf
            else:
                buf = data  # nothing pending: frames are cut straight out of data
            consumed = self._cut(buf, frames)
            rest = len(buf) - consumed
            if buf is self._buf:
                if consumed:
                    del self._buf[:consumed]
            elif rest:
                self._buf += memoryview(buf)[consumed:]
        except G3FormatError as error:
            self._failed = error
            self._buf = bytearray()
            raise
        return frames

    def _cut(self, buf: Any, frames: list[G3Frame]) -> int:
        scanner = self._scanner
        start, end = 0, len(buf)
        view = memoryview(buf)
        try:
            while start < end:
                stop = scanner.scan(buf, start, end)
                if stop is None:
                    break
                raw = bytes(view[start:stop])
                frames.append(self._frame(raw))
                start = stop
        finally:
            view.release()
        return start

    def _frame(self, raw: bytes) -> G3Frame:
        scanner = self._scanner
        try:
            if self.verify_crc:
                scanner.check_crc(raw)
            view = memoryview(raw)
            items: dict[str, Any] = {}
            for name_start, name_end, blob_start, blob_end in scanner.entries:
                name = raw[name_start:name_end].decode("utf-8", "surrogateescape")
                if name in items:
                    raise G3FormatError(f"frame holds the name {name!r} twice")
                items[name] = view[blob_start:blob_end]
            frame_type = scanner.frame_type
        finally:
            scanner.reset()
        self.frames += 1
        self.bytes += len(raw)
        return G3Frame._from_wire(frame_type, items, raw)

    def close(self) -> None:
        """The stream ended: raise :class:`G3TruncatedError` if it ended inside a frame."""
        if self._buf:
            pending = len(self._buf)
            self._buf = bytearray()
            self._scanner.reset()
            raise G3TruncatedError(f"the stream ended inside a frame ({pending} bytes of it)")


def decode_frame(data: bytes | bytearray | memoryview, **options: Any) -> G3Frame:
    """The one frame ``data`` holds (exactly: no byte missing, none left over)."""
    decoder = FrameDecoder(**options)
    frames = decoder.feed(data)
    if len(frames) != 1 or decoder.pending:
        if not frames:
            decoder.close()
        raise G3FormatError(f"expected one frame, got {len(frames)} and {decoder.pending} bytes")
    return frames[0]


def decode_frames(data: bytes | bytearray | memoryview, **options: Any) -> list[G3Frame]:
    """Every frame of ``data`` (a whole stream: a partial frame at the end is an error)."""
    decoder = FrameDecoder(**options)
    frames = decoder.feed(data)
    decoder.close()
    return frames


def encode_frame(frame: G3Frame) -> bytes:
    """The frame's bytes (:meth:`G3Frame.encode`)."""
    return frame.encode()
