"""``raw-1.0``: a JSON header, then any number of opaque parts.

Wire format::

    part 0   {"htype": "raw-1.0", ...}      (UTF-8 JSON object; m_generate adds
                                             "type", "shape" and "frame")
    part 1.. bytes, passed through untouched (none at all is fine)

Decoded: ``{"header": dict, "data": [bytes | memoryview | None, ...]}``, an
empty part being None as in mflow. Encoded from the same dict (None -> an
empty part). mflow's own sender of this htype drops ``send_more`` and splits
each data part into a message of its own; this one does not.
"""

from __future__ import annotations

from typing import Any

from ..errors import MalformedMessage
from ..receiver import Receiver
from ._common import blob_frame, json_frame, require

HTYPE = "raw-1.0"


def receive(receiver: Receiver) -> dict:
    header = receiver.header
    if header is None:
        header = receiver.next(as_json=True)
        if not isinstance(header, dict):
            raise MalformedMessage("the header is not a JSON object", HTYPE)
    else:
        receiver.index = 1
    return {"header": header, "data": [part or None for part in receiver.rest()]}


def encode(message: dict) -> list[Any]:
    require(message, ("header",), HTYPE)
    frames = [json_frame(message["header"], HTYPE, "the header")]
    for index, part in enumerate(message.get("data") or ()):
        frames.append(blob_frame(part, HTYPE, f"data[{index}]"))
    return frames
