"""G3 files: frames concatenated, optionally compressed; a writer.

As spt3g 1.0.2 (``dataio.cxx``), the compression follows the file name:
``.gz`` gzip, ``.bz2`` bzip2, ``.xz`` xz/LZMA, anything else raw frames.
spt3g also insists on a ``.g3`` before that suffix; this library reads and
writes any name (a raw file named ``/path/to/cal/data`` is fine).
Appending is allowed only to raw files (spt3g's rule).

:class:`FrameWriter` writes frames through a buffer (``buffersize``,
1 MiB by default, as spt3g) and optionally only some frame types
(spt3g's ``streams``). Reading is :class:`~.sources.FileSource`.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
from collections.abc import Iterable
from typing import IO, Any

from .frame import G3Frame

_COMPRESSED = {".gz": gzip, ".bz2": bz2, ".xz": lzma}


def compression_of(path: str | os.PathLike[str]) -> str | None:
    """``"gz"``, ``"bz2"``, ``"xz"`` or None (raw frames), by the file name."""
    suffix = os.path.splitext(os.fspath(path))[1]
    return suffix[1:] if suffix in _COMPRESSED else None


def open_input(path: str | os.PathLike[str], buffersize: int = 1 << 20) -> IO[bytes]:
    """The file's frame bytes (decompressed). FileNotFoundError etc. as ``open`` raises them."""
    module = _COMPRESSED.get(os.path.splitext(os.fspath(path))[1])
    if module is None:
        return open(path, "rb", buffering=0)
    return module.open(path, "rb")


def open_output(
    path: str | os.PathLike[str], append: bool = False, buffersize: int = 1 << 20
) -> IO[bytes]:
    module = _COMPRESSED.get(os.path.splitext(os.fspath(path))[1])
    if module is None:
        return open(path, "ab" if append else "wb", buffering=buffersize)
    if append:
        raise ValueError(f"cannot append to a compressed file: {os.fspath(path)!r}")
    raw = module.open(path, "wb")
    return io.BufferedWriter(raw, buffer_size=buffersize)  # type: ignore[arg-type]


class FrameWriter:
    """Write frames to a file.

    :param streams: frame types to write (empty or None: all of them).
    :param append: add to an existing raw file instead of replacing it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        streams: Iterable[Any] | None = None,
        append: bool = False,
        buffersize: int = 1 << 20,
    ) -> None:
        self.path = os.fspath(path)
        self.streams = frozenset(int(t) for t in streams or ())
        self._file: IO[bytes] | None = open_output(path, append, buffersize)
        self._written = self._file.tell() if append else 0
        self.frames = 0

    def write(self, frame: G3Frame) -> None:
        """Write ``frame`` (unless ``streams`` excludes its type)."""
        if self._file is None:
            raise ValueError(f"{self.path}: the writer is closed")
        if self.streams and int(frame.type) not in self.streams:
            return
        data = frame.encode()
        self._file.write(data)
        self._written += len(data)
        self.frames += 1

    def write_bytes(self, data: bytes) -> None:
        """Write already encoded frames."""
        if self._file is None:
            raise ValueError(f"{self.path}: the writer is closed")
        self._file.write(data)
        self._written += len(data)

    def tell(self) -> int:
        """Bytes of frames in the file (before compression)."""
        return self._written

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    @property
    def closed(self) -> bool:
        return self._file is None

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
