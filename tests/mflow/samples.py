"""Sample messages of every htype, and a JSON transport for them between processes.

This module imports only numpy and the standard library, so the peer
scripts that run PSI's mflow (and bsread) in a separate process can use it
to build the same messages and to print what they received.

Transport: ``pack(value)`` turns bytes, numpy arrays and numpy scalars into
tagged JSON objects (``{"$b": base64}``, ``{"$a": base64, "dtype", "shape"}``,
``{"$s": value, "dtype"}``); ``unpack`` reverses it.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import numpy


def pack(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, numpy.ndarray):
        return {"$a": base64.b64encode(value.tobytes()).decode(), "dtype": value.dtype.str,
                "shape": list(value.shape)}
    if isinstance(value, numpy.generic):
        return {"$s": value.item(), "dtype": value.dtype.str}
    if isinstance(value, dict):
        return {key: pack(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [pack(item) for item in value]
    return value


def unpack(value: Any) -> Any:
    if isinstance(value, dict):
        if "$b" in value:
            return base64.b64decode(value["$b"])
        if "$a" in value:
            return numpy.frombuffer(base64.b64decode(value["$a"]),
                                    value["dtype"]).reshape(value["shape"])
        if "$s" in value:
            return numpy.dtype(value["dtype"]).type(value["$s"])
        return {key: unpack(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unpack(item) for item in value]
    return value


def dumps(value: Any) -> str:
    return json.dumps(pack(value))


def loads(text: str) -> Any:
    return unpack(json.loads(text))


def same(a: Any, b: Any) -> bool:
    """Deep equality where arrays compare by dtype, shape and content, bytes-likes by bytes."""
    if isinstance(a, numpy.ndarray) or isinstance(b, numpy.ndarray):
        return (isinstance(a, numpy.ndarray) and isinstance(b, numpy.ndarray)
                and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, bytes | bytearray | memoryview) and isinstance(b, bytes | bytearray |
                                                                     memoryview):
        return bytes(a) == bytes(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _blob(size: int, seed: int) -> bytes:
    return bytes((seed + 7 * i) % 256 for i in range(size))


def array_message(frame: int = 0) -> dict:
    data = numpy.arange(12, dtype="<u2").reshape(3, 4) + frame
    return {"header": {"htype": "array-1.0", "type": "uint16", "shape": [3, 4], "frame": frame},
            "data": [data, data * 2]}


def raw_message(frame: int = 0, parts: int = 2) -> dict:
    return {"header": {"htype": "raw-1.0", "frame": frame},
            "data": [_blob(10 + i, frame + i) for i in range(parts)]}


def dheader_message(detail: str, appendix: Any = None) -> dict:
    message: dict[str, Any] = {"header": {"htype": "dheader-1.0", "series": 3,
                                          "header_detail": detail}}
    if detail != "none":
        message["part_2"] = {"beam_center_x": 512.5, "count_time": 0.001, "nimages": 10,
                             "description": "Dectris EIGER 1M", "x_pixels_in_detector": 4}
    if detail == "all":
        message["part_3"] = {"htype": "dflatfield-1.0", "shape": [4, 2], "type": "float32"}
        message["part_4_raw"] = numpy.linspace(0.5, 1.5, 8, dtype="<f4").tobytes()
        message["part_5"] = {"htype": "dpixelmask-1.0", "shape": [4, 2], "type": "uint32"}
        message["part_6_raw"] = numpy.arange(8, dtype="<u4").tobytes()
        message["part_7"] = {"htype": "dcountrate_table-1.0", "shape": [2, 3],
                             "type": "float32"}
        message["part_8_raw"] = numpy.ones(6, dtype="<f4").tobytes()
    if appendix is not None:
        message["appendix"] = appendix
    return message


def dimage_message(frame: int = 0, appendix: Any = None) -> dict:
    blob = _blob(37, frame)
    message: dict[str, Any] = {
        "header": {"htype": "dimage-1.0", "series": 3, "frame": frame,
                   "hash": "6a8a2c4e1ce7f5d1b2b6e7c3b0b8d7a1"},
        "part_2": {"htype": "dimage_d-1.0", "shape": [4, 4], "type": "uint16",
                   "encoding": "lz4<", "size": len(blob)},
        "part_3_raw": blob,
        "part_4": {"htype": "dconfig-1.0", "start_time": 1000 * frame,
                   "stop_time": 1000 * frame + 500, "real_time": 500},
    }
    if appendix is not None:
        message["appendix"] = appendix
    return message


def dseries_end_message() -> dict:
    return {"header": {"htype": "dseries_end-1.0", "series": 3}}


def everything() -> list[tuple[str, dict]]:
    """(name, message) of every sample of the PSI htypes."""
    return [
        ("array", array_message(1)),
        ("raw", raw_message(2, parts=1)),
        ("raw-3-parts", raw_message(3, parts=3)),
        ("raw-no-parts", raw_message(4, parts=0)),
        ("dheader-all", dheader_message("all")),
        ("dheader-all-appendix", dheader_message("all", {"user": "appendix"})),
        ("dheader-basic", dheader_message("basic")),
        ("dheader-none", dheader_message("none")),
        ("dheader-none-appendix", dheader_message("none", {"n": 1})),
        ("dimage", dimage_message(5)),
        ("dimage-appendix", dimage_message(6, {"pulse": 123})),
        ("dseries-end", dseries_end_message()),
    ]


if __name__ == "__main__":  # pragma: no cover - a quick look at the samples
    for name, message in everything():
        print(name, dumps(message)[:120], file=sys.stderr)
