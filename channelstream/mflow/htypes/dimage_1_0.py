"""``dimage-1.0`` (Dectris Eiger): one image of a series.

Wire format::

    part 0   {"htype": "dimage-1.0", "series": <int>, "frame": <int>, "hash": "<md5>"}
    part 1   {"htype": "dimage_d-1.0", "shape": [x, y], "type": "uint16",
              "encoding": "lz4<" | "bs32-lz4<" | "bs16-lz4<" | "<", "size": <bytes of part 2>}
    part 2   the image data, as encoded (compressed data is not decompressed here)
    part 3   {"htype": "dconfig-1.0", "start_time": <ns>, "stop_time": <ns>, "real_time": <ns>}
    part 4   optional appendix (any string; JSON by convention)

Decoded with mflow's keys: ``{"header", "part_2", "part_3_raw", "part_4",
"appendix"?}``. Malformed: a missing part, parts past the appendix, sub-part
htypes other than the above, a data part whose length differs from
``size``, or, for uncompressed data (an encoding of only "<" or ">", or none),
from ``shape`` x ``type``.

Encoded from the same dict, appendix included (mflow's sender dropped it).
"""

from __future__ import annotations

from typing import Any

from ..errors import MalformedMessage
from ..receiver import Receiver
from ._common import (
    appendix,
    appendix_frame,
    blob,
    blob_frame,
    check_blob,
    header_of,
    json_frame,
    json_object,
    no_appendix,
    require,
)

HTYPE = "dimage-1.0"


def receive(receiver: Receiver) -> dict:
    header = header_of(receiver, HTYPE)
    info = json_object(receiver, HTYPE, "dimage_d-1.0")
    data = blob(receiver, HTYPE)
    size = info.get("size")
    if size is not None and size != len(data):
        raise MalformedMessage(f"part 2 has {len(data)} bytes, its size says {size!r}", HTYPE)
    if info.get("encoding", "") in ("", "<", ">", "=", "|"):
        check_blob(data, info, HTYPE, 2)
    config = json_object(receiver, HTYPE, "dconfig-1.0")
    result = {"header": header, "part_2": info, "part_3_raw": data, "part_4": config}
    extra = appendix(receiver, HTYPE)
    if not no_appendix(extra):
        result["appendix"] = extra
    return result


def encode(message: dict) -> list[Any]:
    require(message, ("header", "part_2", "part_3_raw", "part_4"), HTYPE)
    frames = [
        json_frame(message["header"], HTYPE, "the header"),
        json_frame(message["part_2"], HTYPE, "part_2"),
        blob_frame(message["part_3_raw"], HTYPE, "part_3_raw"),
        json_frame(message["part_4"], HTYPE, "part_4"),
    ]
    if "appendix" in message:
        frames.append(appendix_frame(message["appendix"], HTYPE))
    return frames
