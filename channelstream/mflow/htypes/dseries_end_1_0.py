"""``dseries_end-1.0`` (Dectris Eiger): the end of a series, one part only.

Wire format::

    part 0   {"htype": "dseries_end-1.0", "series": <int>}

Decoded: ``{"header": dict}``; a second part makes the message malformed.
"""

from __future__ import annotations

from typing import Any

from ..receiver import Receiver
from ._common import expect_end, header_of, json_frame, require

HTYPE = "dseries_end-1.0"


def receive(receiver: Receiver) -> dict:
    header = header_of(receiver, HTYPE)
    expect_end(receiver, HTYPE)
    return {"header": header}


def encode(message: dict) -> list[Any]:
    require(message, ("header",), HTYPE)
    return [json_frame(message["header"], HTYPE, "the header")]
