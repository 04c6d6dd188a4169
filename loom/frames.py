"""The on-disk data formats of a stream: raw bytes, or zlib frames.

Wire format of a compressed data file (``compression = zlib``): frames simply
concatenated, one per appended chunk::

    u32 big-endian  compressed length C (or, for a stored frame, the CRC-32
                    of its R bytes)
    u32 big-endian  raw length R, top bit set for a stored frame
    C bytes         zlib stream of the R raw bytes (zlib checks them with its
                    Adler-32), or for a stored frame the R raw bytes as is

Data that does not shrink (already compressed, random) is stored as is, and
:func:`encode` tells the store so, which then skips compressing the next
frames of that stream for a while (zlib runs at about 25 MiB/s on such data
here, against 500 MiB/s on build logs).

A frame is written with one ``write`` and only announced to readers after it
is complete, so a reader normally never meets a partial frame. After a crash
the tail of the file may hold one; :func:`scan` finds where the complete
frames end (the store truncates there on startup) and :func:`decode_at`
answers "nothing more yet" for a partial frame and raises
:class:`CorruptData` (never anything else) for a frame that cannot be
decoded, so a partial or damaged file can never crash the process.

An uncompressed data file is the stream's bytes, nothing else.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable

NONE = "none"
ZLIB = "zlib"
COMPRESSIONS = (NONE, ZLIB)

_HEADER = struct.Struct(">II")
HEADER_SIZE = _HEADER.size
#: Top bit of the raw length: the frame holds the raw bytes uncompressed.
STORED = 0x80000000

#: Largest raw chunk the store appends as one frame (larger appends are split).
MAX_FRAME_RAW = 1 << 20
#: Largest compressed length accepted when reading (zlib's worst case plus room).
MAX_FRAME_STORED = MAX_FRAME_RAW + (MAX_FRAME_RAW >> 8) + 1024


class CorruptData(ValueError):
    """A frame of a data file cannot be decoded (damaged file)."""


def encode(data: bytes | memoryview, level: int) -> tuple[bytes, bool]:
    """One frame holding ``data`` (at most :data:`MAX_FRAME_RAW` bytes), and
    whether it compressed (else it holds ``data`` as is)."""
    packed = zlib.compress(data, level)
    if len(packed) >= len(data):
        return encode_stored(data), False
    return _HEADER.pack(len(packed), len(data)) + packed, True


def encode_stored(data: bytes | memoryview) -> bytes:
    """One frame holding ``data`` uncompressed (with its CRC-32)."""
    return _HEADER.pack(zlib.crc32(data), len(data) | STORED) + data


def decode_at(
    fd: int,
    offset: int,
    limit: int,
    decompress: Callable[[bytes], bytes] = zlib.decompress,
) -> tuple[bytes, int] | None:
    """Decode the frame at ``offset`` of ``fd`` if it ends at or before ``limit``.

    :param decompress: inflates a frame's zlib data (a reader passes one
        that sends large frames to a thread pool); raises :class:`zlib.error`.
    :returns: ``(raw bytes, offset of the next frame)``, or None when no
        complete frame starts at ``offset`` below ``limit`` (not written yet).
    :raises CorruptData: the frame's header or zlib data is invalid.
    """
    if offset + HEADER_SIZE > limit:
        return None
    header = os.pread(fd, HEADER_SIZE, offset)
    if len(header) < HEADER_SIZE:
        return None
    stored, raw = _HEADER.unpack(header)
    as_is = bool(raw & STORED)
    raw &= ~STORED
    crc = None
    if as_is:
        crc, stored = stored, raw
    if stored > MAX_FRAME_STORED or raw > MAX_FRAME_RAW:
        raise CorruptData(f"frame at {offset} announces {stored}/{raw} bytes")
    end = offset + HEADER_SIZE + stored
    if end > limit:
        return None
    packed = os.pread(fd, stored, offset + HEADER_SIZE)
    if len(packed) < stored:
        return None
    if crc is not None:
        if zlib.crc32(packed) != crc:
            raise CorruptData(f"stored frame at {offset}: CRC-32 mismatch")
        return packed, end
    try:
        data = decompress(packed)
    except zlib.error as err:
        raise CorruptData(f"frame at {offset}: {err}") from None
    if len(data) != raw:
        raise CorruptData(f"frame at {offset} holds {len(data)} bytes, announced {raw}")
    return data, end


def scan(fd: int, limit: int) -> tuple[int, int]:
    """Walk the complete, valid frames of a file of ``limit`` bytes.

    :returns: ``(stored bytes of the valid frames, raw bytes they hold)``;
        anything after the first partial or invalid frame is not counted.
    """
    offset = raw = 0
    while True:
        try:
            frame = decode_at(fd, offset, limit)
        except CorruptData:
            return offset, raw
        if frame is None:
            return offset, raw
        raw += len(frame[0])
        offset = frame[1]
