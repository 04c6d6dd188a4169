"""G3 frames, interoperable with spt3g 1.0.2: codec, files, TCP readers, senders, a
streaming server and a pipeline; ``channelstream.g3.core`` stands in for ``spt3g.core``.

This package imports nothing from the rest of channelstream, but for
:mod:`.door` (``g3.sources`` and ``g3.listen`` on the hub), which adapts it to
the hub and which none of the library's modules imports. Modules, bottom up:

* :mod:`.wire`: the frame bytes (layout, CRC-32C, limits) as pure functions;
* :mod:`.frametype`, :mod:`.objects`, :mod:`.frame`: ``G3FrameType``, the
  scalar objects (others opaque), ``G3Frame``;
* :mod:`.codec`: the incremental decoder (any chunking, bounded memory);
* :mod:`.files`, :mod:`.sources`: files (gz/bz2/xz by name) and
  ``tcp://`` sources, read in order by :class:`~.sources.FrameReader`;
* :mod:`.queue`, :mod:`.writer`: bounded, drop-aware per-connection queues
  and the coalescing write loop;
* :mod:`.server`, :mod:`.sender`: the streaming server and the sender to a
  listening reader;
* :mod:`.concurrency`: threads, or greenlets under gevent;
* :mod:`.pipeline`, :mod:`.core`: spt3g's G3Pipeline and module names;
* :mod:`.cli`: the ``g3-frames`` console script.

Wire format (little-endian; frames concatenated, the same in files and on
TCP)::

    u8 1 | u32 1 | u32 n_entries | u32 frame type | n x (u64 len, name, u64 len, blob) | u32 crc

with the CRC-32C (initial 0, no final xor) of name1|blob1|name2|blob2...
(details in :mod:`.wire` and :mod:`.objects`).
"""

from __future__ import annotations

from .codec import FrameDecoder, decode_frame, decode_frames, encode_frame
from .concurrency import GREENLETS, THREADS, Concurrency
from .errors import G3ConnectionError, G3Error, G3FormatError, G3TruncatedError
from .files import FrameWriter
from .frame import G3Frame, G3KeyExistsError, describe
from .frametype import DATA_TYPES, G3FrameType, is_data
from .objects import G3Bool, G3Double, G3FrameObject, G3Int, G3String, OpaqueObject
from .queue import FrameQueue
from .sender import FrameSender
from .server import ClientStats, StreamServer
from .sources import FileSource, FrameReader, TcpSource
from .wire import DEFAULT_MAX_FRAME_SIZE

__all__ = [
    "G3Frame", "G3FrameType", "G3FrameObject", "G3Int", "G3Double", "G3Bool", "G3String",
    "OpaqueObject", "DATA_TYPES", "is_data", "describe",
    "FrameDecoder", "decode_frame", "decode_frames", "encode_frame", "DEFAULT_MAX_FRAME_SIZE",
    "FrameReader", "FileSource", "TcpSource", "FrameWriter",
    "StreamServer", "ClientStats", "FrameSender", "FrameQueue",
    "Concurrency", "THREADS", "GREENLETS",
    "G3Error", "G3FormatError", "G3TruncatedError", "G3ConnectionError", "G3KeyExistsError",
]
