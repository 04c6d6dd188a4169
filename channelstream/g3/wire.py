"""The frame bytes: layout, limits and CRC, as pure functions (no I/O, no frame objects).

A frame (spt3g 1.0.2 ``G3Frame::save``, cereal portable binary archive;
frames are simply concatenated, the same in files and on TCP)::

    u8   1                   byte order of the archive: 1 = little-endian, 0 = big
    u32  1                   G3Frame's class version
    u32  n                   number of entries
    u32  type                frame type (G3FrameType: 'T' = 84, ...)
    n x  u64 len, name       entry name (bytes)
         u64 len, blob       the serialized object (see objects.py)
    u32  crc                 CRC-32C of name1|blob1|name2|blob2|...

The CRC is the Castagnoli polynomial with initial register 0 and no final
xor (spt3g's ``crc32c(0, ...)`` chained over every name and blob), which is
``~crc32c(data, 0xFFFFFFFF)`` in the conventional (inverted) form that the
``crc32c`` package computes. Frames are always written little-endian;
big-endian frames (flag 0, from big-endian hosts) are read too.

:class:`FrameScanner` walks a frame's structure as bytes arrive and checks
every length against ``max_frame_size`` *before* waiting for the bytes it
announces, so a length field claiming gigabytes fails at once and nothing
is ever allocated from a length: buffers grow only with bytes received.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from crc32c import crc32c as _crc32c

from .errors import G3FormatError

#: Default largest frame (all its bytes) a decoder accepts.
DEFAULT_MAX_FRAME_SIZE = 512 * 1024 * 1024
#: The version of G3Frame's serialization that spt3g 1.0.2 writes and reads.
FRAME_VERSION = 1

HEADER_LE = struct.Struct("<BIII")
HEADER_BE = struct.Struct(">BIII")
HEADER_SIZE = HEADER_LE.size  # 13
_U64 = {"<": struct.Struct("<Q"), ">": struct.Struct(">Q")}
_U32 = {"<": struct.Struct("<I"), ">": struct.Struct(">I")}
_PACK_U64 = _U64["<"].pack
_PACK_U32 = _U32["<"].pack
#: Bytes of a frame with no entries: header and CRC.
EMPTY_FRAME_SIZE = HEADER_SIZE + 4
#: Bytes of an entry with an empty name and an empty blob: its two lengths.
MIN_ENTRY_SIZE = 16
#: Blobs smaller than this are copied next to their entry's header when encoding.
_SMALL = 4096


def crc_start() -> int:
    """The running value to pass to :func:`crc_update` first."""
    return 0xFFFFFFFF


def crc_update(running: int, data: bytes | bytearray | memoryview) -> int:
    return _crc32c(data, running)


def crc_finish(running: int) -> int:
    """spt3g's CRC from a running value."""
    return running ^ 0xFFFFFFFF


Buffer = bytes | bytearray | memoryview
#: A blob: one buffer, or several to be written one after the other.
Blob = Buffer | tuple[Buffer, ...]


def encode_parts(
    frame_type: int, entries: Sequence[tuple[bytes, Blob]]
) -> tuple[list[Buffer], int]:
    """The buffers of a frame, in order, and their total size (no copy of any blob).

    ``entries`` are ``(name, blob)`` in the order to write them; a blob may
    be a tuple of buffers (e.g. a header and a large payload).
    """
    parts: list[Buffer] = [HEADER_LE.pack(1, FRAME_VERSION, len(entries), frame_type & 0xFFFFFFFF)]
    append = parts.append
    total = HEADER_SIZE + 4
    crc = 0xFFFFFFFF
    for name, blob in entries:
        if type(blob) is bytes and len(blob) < _SMALL:
            # one small piece: a concatenation is cheaper than four list items
            size = len(blob)
            crc = _crc32c(blob, _crc32c(name, crc))
            append(_PACK_U64(len(name)) + name + _PACK_U64(size) + blob)
        elif type(blob) is tuple:
            crc = _crc32c(name, crc)
            size = 0
            for piece in blob:
                size += len(piece)
                crc = _crc32c(piece, crc)
            append(_PACK_U64(len(name)) + name + _PACK_U64(size))
            parts.extend(blob)
        else:
            size = len(blob)
            crc = _crc32c(blob, _crc32c(name, crc))
            append(_PACK_U64(len(name)) + name + _PACK_U64(size))
            append(blob)
        total += 16 + len(name) + size
    append(_PACK_U32(crc ^ 0xFFFFFFFF))
    return parts, total


def encode(frame_type: int, entries: Sequence[tuple[bytes, Blob]]) -> bytes:
    """The bytes of a frame: ``entries`` are ``(name, blob)`` in the order to write them."""
    return b"".join(encode_parts(frame_type, entries)[0])


class FrameScanner:
    """Walks one frame's structure in a growing buffer; reusable for the next frame.

    :meth:`scan` is called with the buffer and the frame's start each time
    more bytes arrived; it resumes where it stopped and returns the frame's
    end offset once the whole frame is there (else None). It raises
    :class:`G3FormatError` as soon as the bytes seen are not a frame or a
    length would take the frame past ``max_frame_size``.
    """

    __slots__ = ("max_frame_size", "_off", "_left", "_stage", "_order", "_name", "entries",
                 "frame_type")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < EMPTY_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be at least {EMPTY_FRAME_SIZE}")
        self.max_frame_size = max_frame_size
        self.reset()

    def reset(self) -> None:
        self._off = 0  # offset in the frame of the next field to read
        self._stage = 0  # 0 header, 1 name length, 2 blob length, 3 crc
        self._left = 0  # entries still to read
        self._order = "<"
        self._name = (0, 0)  # where the current entry's name is
        #: (name start, name end, blob start, blob end) per entry, offsets in the frame
        self.entries: list[tuple[int, int, int, int]] = []
        self.frame_type = 0

    def scan(self, buf: bytes | bytearray | memoryview, start: int, end: int) -> int | None:
        """Resume scanning the frame at ``buf[start:]`` (``end`` = bytes available)."""
        avail = end - start
        off, stage, left = self._off, self._stage, self._left
        name_start, name_end = self._name
        limit = self.max_frame_size
        u64 = _U64[self._order].unpack_from
        entries = self.entries
        while True:
            if stage == 1 or stage == 2:
                if avail < off + 8:
                    break
                (length,) = u64(buf, start + off)
                # What the frame needs at least from here: this field, the rest
                # of this entry, the entries after it, the CRC.
                needed = off + 12 + length + MIN_ENTRY_SIZE * (left - 1) + (8 if stage == 1 else 0)
                if needed > limit:
                    what = "entry name" if stage == 1 else "object"
                    raise G3FormatError(
                        f"{what} length {length} takes the frame past max_frame_size "
                        f"({limit} bytes)",
                        start + off,
                    )
                if stage == 1:
                    name_start = off + 8
                    name_end = off = name_start + length
                    stage = 2
                else:
                    entries.append((name_start, name_end, off + 8, off + 8 + length))
                    off += 8 + length
                    left -= 1
                    stage = 1 if left else 3
            elif stage == 0:
                if avail < HEADER_SIZE:
                    break
                flag = buf[start]
                if flag not in (0, 1):
                    raise G3FormatError(
                        f"not a G3 frame: first byte {flag:#04x}, expected 0x01 (or 0x00)"
                    )
                order = "<" if flag == 1 else ">"
                header = HEADER_LE if flag == 1 else HEADER_BE
                _, version, count, frame_type = header.unpack_from(buf, start)
                if version != FRAME_VERSION:
                    raise G3FormatError(
                        f"G3Frame version {version} is not supported (spt3g writes version 1)"
                    )
                if EMPTY_FRAME_SIZE + MIN_ENTRY_SIZE * count > limit:
                    raise G3FormatError(
                        f"frame header claims {count} entries, more than fit in "
                        f"max_frame_size ({limit} bytes)"
                    )
                self._order = order
                u64 = _U64[order].unpack_from
                self.frame_type = frame_type
                left = count
                off = HEADER_SIZE
                stage = 1 if count else 3
            else:
                if avail < off + 4:
                    break
                self._off, self._stage, self._left = off + 4, 3, 0
                return start + off + 4
        self._off, self._stage, self._left = off, stage, left
        self._name = (name_start, name_end)
        return None

    def check_crc(self, frame: bytes | bytearray | memoryview) -> None:
        """Raise :class:`G3FormatError` unless the scanned frame's CRC is right."""
        view = memoryview(frame)
        crc = 0xFFFFFFFF
        for name_start, name_end, blob_start, blob_end in self.entries:
            crc = _crc32c(view[blob_start:blob_end], _crc32c(view[name_start:name_end], crc))
        (recorded,) = _U32[self._order].unpack_from(frame, len(frame) - 4)
        crc ^= 0xFFFFFFFF
        if recorded != crc:
            raise G3FormatError(
                f"frame CRC mismatch: recorded {recorded:#010x}, computed {crc:#010x}"
            )
