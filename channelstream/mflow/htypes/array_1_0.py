"""``array-1.0``: a JSON header describing an array, then one array per part.

Wire format::

    part 0   {"htype": "array-1.0", "type": "<numpy dtype>", "shape": [n, ...], ...}
             (mflow senders may add "frame", "endianness", "source", "encoding", "tags")
    part 1.. one blob per array: exactly prod(shape) * itemsize bytes, C order,
             or an empty part (no array)

Decoded: ``{"header": dict, "data": [numpy.ndarray | None, ...]}``. Each array
is ``numpy.frombuffer`` over the received part, reshaped: no copy beyond the
one pyzmq makes with ``copy=True``, and none at all with ``copy=False``
(the arrays are then read-only views of the ZMQ frames). A part whose size
does not match ``type`` and ``shape`` makes the message malformed (mflow
raised from numpy and dropped the message silently).

Encoded from the same dict: arrays (of that dtype and size) or bytes-like
parts; None is sent as an empty part.
"""

from __future__ import annotations

from typing import Any

import numpy

from ..errors import EncodeError, MalformedMessage
from ..receiver import Receiver
from ._common import blob_frame, dtype_of, header_of, json_frame, nbytes, require, shape_of

HTYPE = "array-1.0"


def receive(receiver: Receiver) -> dict:
    header = header_of(receiver, HTYPE)
    if "type" not in header or "shape" not in header:
        raise MalformedMessage("the header lacks type or shape", HTYPE)
    dtype = dtype_of(header["type"], HTYPE, "the header's")
    shape = shape_of(header["shape"], HTYPE, "the header's")
    expected = nbytes(shape, dtype)
    data: list[numpy.ndarray | None] = []
    for index, part in enumerate(receiver.rest(), 1):
        if not len(part):
            data.append(None)
            continue
        if len(part) != expected:
            raise MalformedMessage(f"part {index} has {len(part)} bytes, shape {list(shape)} "
                                   f"of {header['type']} needs {expected}", HTYPE)
        data.append(numpy.frombuffer(part, dtype).reshape(shape))
    return {"header": header, "data": data}


def encode(message: dict) -> list[Any]:
    require(message, ("header",), HTYPE)
    header = message["header"]
    try:
        dtype = dtype_of(header["type"], HTYPE, "the header's")
        expected = nbytes(shape_of(header["shape"], HTYPE, "the header's"), dtype)
    except (KeyError, MalformedMessage) as exc:
        raise EncodeError(f"{HTYPE}: bad header type/shape ({exc})") from None
    frames = [json_frame(header, HTYPE, "the header")]
    for index, part in enumerate(message.get("data") or ()):
        if isinstance(part, numpy.ndarray) and part.dtype != dtype:
            raise EncodeError(f"{HTYPE}: data[{index}] is {part.dtype}, the header says {dtype}")
        frame = blob_frame(part, HTYPE, f"data[{index}]")
        size = frame.nbytes if isinstance(frame, memoryview) else len(frame)
        if part is not None and size != expected:
            raise EncodeError(f"{HTYPE}: data[{index}] has {size} bytes, the header's type "
                              f"and shape need {expected}")
        frames.append(frame)
    return frames
