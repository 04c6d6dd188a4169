"""``dheader-1.0`` (Dectris Eiger): the header of a series, at three levels of detail.

Wire format (parts in order; the header's ``header_detail`` says which exist)::

    part 0   {"htype": "dheader-1.0", "series": <int>, "header_detail": "all"|"basic"|"none"}
    part 1   basic, all:  the detector configuration (JSON object)
    part 2   all:  {"htype": "dflatfield-1.0", "shape": [x, y], "type": "float32"}
    part 3   all:  the flatfield, a blob of that shape and type
    part 4   all:  {"htype": "dpixelmask-1.0", "shape": [x, y], "type": "uint32"}
    part 5   all:  the pixel mask blob
    part 6   all:  {"htype": "dcountrate_table-1.0", "shape": [x, y], "type": "float32"}
    part 7   all:  the countrate table blob
    last     optional appendix (any string; JSON by convention)

Decoded with mflow's keys: ``{"header", "part_2" (config), "part_3",
"part_4_raw", "part_5", "part_6_raw", "part_7", "part_8_raw", "appendix"}``,
each present only at the levels above. The appendix is its JSON value when it
parses, else the raw part. A blob whose size does not match its descriptor's
shape and type, a missing part, or parts past the appendix make the message
malformed.

Encoded from the same dict at every level (mflow's sender always sent
``part_2`` and so failed half way through a ``header_detail: none`` message).
"""

from __future__ import annotations

from typing import Any

from ..errors import EncodeError, MalformedMessage
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

HTYPE = "dheader-1.0"
DETAILS = ("all", "basic", "none")
#: (descriptor key, blob key, descriptor htype) of the three tables of ``all``.
TABLES = (
    ("part_3", "part_4_raw", "dflatfield-1.0"),
    ("part_5", "part_6_raw", "dpixelmask-1.0"),
    ("part_7", "part_8_raw", "dcountrate_table-1.0"),
)


def receive(receiver: Receiver) -> dict:
    header = header_of(receiver, HTYPE)
    detail = header.get("header_detail")
    if detail not in DETAILS:
        raise MalformedMessage(f"header_detail {detail!r} is not one of all, basic, none", HTYPE)
    result: dict[str, Any] = {"header": header}
    if detail != "none":
        result["part_2"] = json_object(receiver, HTYPE)
    if detail == "all":
        for spec_key, blob_key, sub_htype in TABLES:
            spec = json_object(receiver, HTYPE, sub_htype)
            part = blob(receiver, HTYPE)
            check_blob(part, spec, HTYPE, receiver.index - 1)
            result[spec_key] = spec
            result[blob_key] = part
    extra = appendix(receiver, HTYPE)
    if not no_appendix(extra):
        result["appendix"] = extra
    return result


def encode(message: dict) -> list[Any]:
    require(message, ("header",), HTYPE)
    detail = message["header"].get("header_detail")
    if detail not in DETAILS:
        raise EncodeError(f"{HTYPE}: header_detail {detail!r} is not one of all, basic, none")
    keys = ["part_2"] if detail != "none" else []
    if detail == "all":
        keys += [key for table in TABLES for key in table[:2]]
    require(message, tuple(keys), HTYPE)
    frames = [json_frame(message["header"], HTYPE, "the header")]
    for key in keys:
        if key.endswith("_raw"):
            frames.append(blob_frame(message[key], HTYPE, key))
        else:
            frames.append(json_frame(message[key], HTYPE, key))
    if "appendix" in message:
        frames.append(appendix_frame(message["appendix"], HTYPE))
    return frames
