"""``bsr_m-1.1`` (bsread, PSI's beam-synchronous data): channels of one pulse.

Wire format (as bsread's Sender writes it)::

    part 0   {"htype": "bsr_m-1.1", ["dh_compression": "none"|"lz4"|"bitshuffle_lz4",]
              "hash": "<md5 hex of part 1>", "pulse_id": <int>,
              "global_timestamp": {"sec": <int>, "ns": <int>}}
    part 1   the data header, compressed as dh_compression says:
             {"htype": "bsr_d-1.1", "channels": [{"name": ..., "type": "float64",
              "shape": [n, ...] (fastest dimension first), "encoding": "little"|"big",
              "compression": "none"|"lz4"|"bitshuffle_lz4"}, ...]}
    then, per channel, two parts:
             the value: shape x type in the channel's byte order (a string as UTF-8),
                        compressed as the channel says; empty = no value
             its timestamp: 16 bytes, int64 seconds and int64 nanoseconds in the
                        channel's byte order; empty = none

Types: int8..int64, uint8..uint64, float32, float64, bool, string (no
``type`` means float64). The parsed data header is cached (a few entries,
keyed by its exact bytes), and its md5 is checked against ``hash`` once per
distinct data header.

Decoded: ``{"header", "data_header", "data": [value, ...], "timestamp":
[sec | None, ...], "timestamp_offset": [ns | None, ...]}`` in channel order.
A value is a numpy scalar for one element, a numpy array (numpy order, i.e.
the header's shape reversed) otherwise, a str for strings, None when empty;
the value of a *compressed* channel is left as its raw part (bsread's tools
decompress them). A data header compressed with lz4 or bitshuffle_lz4 needs
the ``lz4`` or ``bitshuffle`` package. Malformed: a wrong part count for
the channels, a hash mismatch, a value whose size does not fit its type and
shape, a timestamp that is not 16 bytes.

Encoded from the same dict: the data header is serialised (and compressed)
again and ``hash`` set to its md5; values are serialised by their channel's
type, shape and byte order, bytes-like values sent as they are; a missing
timestamp is the header's ``global_timestamp``.
"""

from __future__ import annotations

import hashlib
import struct
from math import prod
from typing import Any

import numpy
import zmq

from .. import jsonpart
from ..errors import EncodeError, MalformedMessage
from ..receiver import Receiver
from ._common import blob_frame, header_of, json_frame, require

HTYPE = "bsr_m-1.1"
#: bsread channel types -> numpy type codes (without byte order).
TYPES = {
    "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4",
    "int64": "i8", "uint64": "u8", "float32": "f4", "float64": "f8", "bool": "?", "string": "u1",
}
_CACHE_SIZE = 8
_cache: dict[bytes, tuple[str, dict, list]] = {}


class _Channel:
    __slots__ = ("name", "dtype", "string", "shape", "order", "compressed")

    def __init__(self, spec: dict) -> None:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ValueError("a channel without a name")
        kind = spec.get("type") or "float64"
        if not isinstance(kind, str) or kind.lower() not in TYPES:
            raise ValueError(f"channel {spec['name']!r} has unknown type {kind!r}")
        self.name = spec["name"]
        self.order = ">" if spec.get("encoding") == "big" else "<"
        self.dtype = numpy.dtype(self.order + TYPES[kind.lower()])
        self.string = kind.lower() == "string"
        shape = spec.get("shape")
        if shape is not None and not (isinstance(shape, list)
                                      and all(type(n) is int and n >= 0 for n in shape)):
            raise ValueError(f"channel {self.name!r} has shape {shape!r}")
        self.shape = None if shape in (None, [1]) else tuple(shape[::-1])
        self.compressed = spec.get("compression") not in (None, "none")


def _decompress(raw: bytes, compression: Any) -> bytes:
    if compression in (None, "none"):
        return raw
    if compression == "lz4":
        try:
            import lz4.block
        except ImportError:
            raise ValueError("dh_compression 'lz4' needs the lz4 package") from None
        (size,) = struct.unpack("<I", raw[:4])
        return lz4.block.decompress(raw[4:], uncompressed_size=size)
    if compression == "bitshuffle_lz4":
        try:
            import bitshuffle
        except ImportError:
            raise ValueError("dh_compression 'bitshuffle_lz4' needs the bitshuffle "
                             "package") from None
        (length,) = struct.unpack(">q", raw[:8])
        (block,) = struct.unpack(">i", raw[8:12])
        return bitshuffle.decompress_lz4(numpy.frombuffer(raw[12:], numpy.uint8), (length,),
                                         numpy.dtype(numpy.uint8), block).tobytes()
    raise ValueError(f"unknown dh_compression {compression!r}")


def _compress(raw: bytes, compression: Any) -> bytes:
    if compression in (None, "none"):
        return raw
    if compression == "lz4":
        try:
            import lz4.block
        except ImportError:
            raise EncodeError(f"{HTYPE}: dh_compression 'lz4' needs the lz4 package") from None
        return struct.pack("<I", len(raw)) + lz4.block.compress(raw, store_size=False)
    raise EncodeError(f"{HTYPE}: cannot compress the data header with {compression!r}")


def _data_header(raw: bytes, compression: Any) -> tuple[str, dict, list[_Channel]]:
    """(md5, data header, channels) of a data header part, cached by its bytes."""
    key = raw if compression in (None, "none") else raw + str(compression).encode()
    found = _cache.get(key)
    if found is not None:
        return found
    try:
        value = jsonpart.loads(_decompress(raw, compression))
        if not isinstance(value, dict) or not isinstance(value.get("channels"), list):
            raise ValueError("it is not an object with a channels list")
        channels = [_Channel(spec) for spec in value["channels"]]
    except (ValueError, RecursionError, struct.error) as exc:
        raise MalformedMessage(f"bad data header: {exc}", HTYPE) from None
    result = (hashlib.md5(raw).hexdigest(), value, channels)
    if len(raw) <= 1 << 20:
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = result
    return result


def _value(part: Any, channel: _Channel, index: int) -> Any:
    if not len(part):
        return None
    if channel.compressed:
        return part
    if channel.string:
        try:
            return bytes(part).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessage(f"part {index} ({channel.name}) is not UTF-8", HTYPE) from None
    itemsize = channel.dtype.itemsize
    count = len(part) // itemsize
    if len(part) % itemsize or (channel.shape is not None and count != prod(channel.shape)):
        raise MalformedMessage(f"part {index} ({channel.name}) has {len(part)} bytes, which "
                               f"do not fit {channel.dtype} and shape {channel.shape}", HTYPE)
    array = numpy.frombuffer(part, channel.dtype)
    if channel.shape is not None:
        return array.reshape(channel.shape)
    return array[0] if count == 1 else array


def receive(receiver: Receiver) -> dict:
    header = header_of(receiver, HTYPE)
    frames = receiver.frames
    if len(frames) < 2:
        raise MalformedMessage("missing part 1 (the data header)", HTYPE, len(frames))
    raw = frames[1].bytes if isinstance(frames[1], zmq.Frame) else bytes(frames[1])
    digest, data_header, channels = _data_header(raw, header.get("dh_compression"))
    if header.get("hash") != digest:
        raise MalformedMessage(f"hash {header.get('hash')!r} is not the md5 of the data header",
                               HTYPE)
    if len(frames) != 2 + 2 * len(channels):
        raise MalformedMessage(f"{len(frames)} parts for {len(channels)} channels "
                               f"(needs {2 + 2 * len(channels)})", HTYPE, len(frames))
    parts = receiver.rest()[1:]
    data, seconds, nanoseconds = [], [], []
    for number, channel in enumerate(channels):
        index = 2 + 2 * number
        data.append(_value(parts[2 * number], channel, index))
        stamp = parts[2 * number + 1]
        if not len(stamp):
            seconds.append(None)
            nanoseconds.append(None)
        elif len(stamp) == 16:
            sec, ns = struct.unpack(channel.order + "qq", stamp)
            seconds.append(sec)
            nanoseconds.append(ns)
        else:
            raise MalformedMessage(f"part {index + 1} ({channel.name}) is a timestamp of "
                                   f"{len(stamp)} bytes, not 16", HTYPE)
    return {"header": header, "data_header": data_header, "data": data,
            "timestamp": seconds, "timestamp_offset": nanoseconds}


def encode(message: dict) -> list[Any]:
    require(message, ("header", "data_header", "data"), HTYPE)
    header = dict(message["header"])
    try:
        channels = [_Channel(spec) for spec in message["data_header"].get("channels")]
    except (AttributeError, TypeError, ValueError) as exc:
        raise EncodeError(f"{HTYPE}: bad data header ({exc})") from None
    data = list(message["data"])
    if len(data) != len(channels):
        raise EncodeError(f"{HTYPE}: {len(data)} values for {len(channels)} channels")
    raw = _compress(json_frame(message["data_header"], HTYPE, "the data header"),
                    header.get("dh_compression"))
    header["hash"] = hashlib.md5(raw).hexdigest()
    stamp = header.get("global_timestamp") or {}
    seconds = message.get("timestamp") or [None] * len(channels)
    nanoseconds = message.get("timestamp_offset") or [None] * len(channels)
    frames = [json_frame(header, HTYPE, "the header"), raw]
    for number, (channel, value) in enumerate(zip(channels, data, strict=True)):
        if value is None:
            frames += [b"", b""]
            continue
        if isinstance(value, str):
            frames.append(value.encode("utf-8"))
        elif isinstance(value, bytes | bytearray | memoryview):
            frames.append(value)
        else:
            try:
                array = numpy.asarray(value, dtype=channel.dtype)
            except (TypeError, ValueError) as exc:
                raise EncodeError(f"{HTYPE}: value of {channel.name!r}: {exc}") from None
            frames.append(blob_frame(array, HTYPE, channel.name))
        sec = seconds[number] if seconds[number] is not None else stamp.get("sec", 0)
        ns = nanoseconds[number] if nanoseconds[number] is not None else stamp.get("ns", 0)
        try:
            frames.append(struct.pack(channel.order + "qq", sec, ns))
        except struct.error as exc:
            raise EncodeError(f"{HTYPE}: timestamp of {channel.name!r}: {exc}") from None
    return frames
