"""Helpers shared by the htype modules (reading parts, checking sizes, encoding blobs)."""

from __future__ import annotations

from math import prod
from typing import Any

import numpy
import zmq

from .. import jsonpart
from ..errors import EncodeError, MalformedMessage
from ..receiver import Receiver, json_part

#: numpy dtypes by the type strings seen in headers ("uint16", "<f4", ...).
_DTYPES: dict[str, numpy.dtype] = {}


def dtype_of(name: Any, htype: str, where: str) -> numpy.dtype:
    """The numpy dtype a header's ``type`` names, or MalformedMessage."""
    try:
        return _DTYPES[name]
    except (KeyError, TypeError):
        pass
    try:
        dtype = numpy.dtype(name)
    except (TypeError, ValueError):
        raise MalformedMessage(f"{where} type {name!r} is not a numpy dtype", htype) from None
    if dtype.hasobject or dtype.itemsize == 0:
        raise MalformedMessage(f"{where} type {name!r} is not a fixed-size dtype", htype)
    if isinstance(name, str) and len(_DTYPES) < 256:
        _DTYPES[name] = dtype
    return dtype


def shape_of(value: Any, htype: str, where: str) -> tuple[int, ...]:
    """A header's ``shape`` as a tuple of non-negative ints, or MalformedMessage."""
    if isinstance(value, list) and all(type(n) is int and n >= 0 for n in value):
        return tuple(value)
    raise MalformedMessage(f"{where} shape {value!r} is not a list of non-negative integers",
                           htype)


def nbytes(shape: tuple[int, ...], dtype: numpy.dtype) -> int:
    return prod(shape) * dtype.itemsize


def header_of(receiver: Receiver, htype: str) -> dict:
    """Part 0 as a JSON object."""
    header = receiver.next(as_json=True)
    if not isinstance(header, dict):
        raise MalformedMessage("the header is not a JSON object", htype)
    return header


def json_object(receiver: Receiver, htype: str, sub_htype: str | None = None) -> dict:
    """The next part as a JSON object (whose ``htype``, if any, must be ``sub_htype``)."""
    index = receiver.index
    if index >= len(receiver.frames):
        raise MalformedMessage(f"missing part {index}", htype, len(receiver.frames))
    receiver.index = index + 1
    try:
        value = json_part(receiver.frames[index], index)
    except MalformedMessage as exc:
        raise MalformedMessage(exc.reason, htype) from None
    if not isinstance(value, dict):
        raise MalformedMessage(f"part {index} is not a JSON object", htype)
    if sub_htype is not None and value.get("htype", sub_htype) != sub_htype:
        raise MalformedMessage(
            f"part {index} has htype {value.get('htype')!r}, expected {sub_htype!r}", htype)
    return value


def blob(receiver: Receiver, htype: str) -> Any:
    """The next part as bytes (or a read-only memoryview with ``copy=False``)."""
    index = receiver.index
    if index >= len(receiver.frames):
        raise MalformedMessage(f"missing part {index}", htype, len(receiver.frames))
    return receiver.next()


def check_blob(part: Any, spec: dict, htype: str, index: int) -> None:
    """If ``spec`` has ``shape`` and ``type``, ``part`` must hold exactly that array."""
    if "shape" not in spec or "type" not in spec:
        return
    dtype = dtype_of(spec["type"], htype, f"part {index - 1}")
    shape = shape_of(spec["shape"], htype, f"part {index - 1}")
    if len(part) != nbytes(shape, dtype):
        raise MalformedMessage(f"part {index} has {len(part)} bytes, shape {list(shape)} of "
                               f"{spec['type']} needs {nbytes(shape, dtype)}", htype)


def appendix(receiver: Receiver, htype: str) -> Any:
    """The optional appendix after the fixed parts: JSON if it parses, else the raw part.

    Then the message must end; more parts make it malformed.
    """
    if receiver.index >= len(receiver.frames):
        return _NONE
    part = receiver.frames[receiver.index]
    receiver.index += 1
    if receiver.index < len(receiver.frames):
        raise MalformedMessage(f"{len(receiver.frames) - receiver.index} extra part(s) after "
                               "the appendix", htype, len(receiver.frames))
    raw = part.bytes if isinstance(part, zmq.Frame) else part
    try:
        return jsonpart.loads(raw)
    except (ValueError, RecursionError):
        return raw


def expect_end(receiver: Receiver, htype: str) -> None:
    extra = len(receiver.frames) - receiver.index
    if extra:
        raise MalformedMessage(f"{extra} extra part(s)", htype, len(receiver.frames))


#: ``appendix()`` found none.
_NONE = object()


def no_appendix(value: Any) -> bool:
    return value is _NONE


# -- encoding -----------------------------------------------------------------------------


def require(message: Any, keys: tuple[str, ...], htype: str) -> None:
    if not isinstance(message, dict):
        raise EncodeError(f"{htype}: the message must be a dict, not {type(message).__name__}")
    missing = [key for key in keys if key not in message]
    if missing:
        raise EncodeError(f"{htype}: the message lacks {', '.join(missing)}")
    if not isinstance(message["header"], dict):
        raise EncodeError(f"{htype}: the header must be a dict")


def json_frame(value: Any, htype: str, what: str) -> bytes:
    try:
        return jsonpart.dumps(value)
    except (TypeError, ValueError) as exc:
        raise EncodeError(f"{htype}: {what} is not JSON-serialisable ({exc})") from None


def blob_frame(value: Any, htype: str, what: str) -> Any:
    """A binary part: bytes-like as it is, a numpy array's C-order bytes, None as b""."""
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return value
    if isinstance(value, numpy.ndarray):
        return memoryview(numpy.ascontiguousarray(value).reshape(-1).view(numpy.uint8))
    if isinstance(value, zmq.Frame):
        return value.buffer
    raise EncodeError(f"{htype}: {what} must be bytes-like or a numpy array, "
                      f"not {type(value).__name__}")


def appendix_frame(value: Any, htype: str) -> Any:
    """An appendix: bytes-like as it is, anything else as JSON."""
    if isinstance(value, bytes | bytearray | memoryview):
        return value
    return json_frame(value, htype, "the appendix")
