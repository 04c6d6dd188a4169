"""The htypes: one module each, with ``receive(receiver) -> dict`` and ``encode(dict) -> parts``.

``receive`` is an mflow handler: it reads one message from a
:class:`~channelstream.mflow.receiver.Receiver` and returns what
``message.data`` holds, or raises
:class:`~channelstream.mflow.errors.MalformedMessage`. ``encode`` turns the
same dict back into the list of parts (bytes-like), or raises
:class:`~channelstream.mflow.errors.EncodeError` before anything is sent.
The wire format of each htype is in its module's docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import array_1_0, bsr_m_1_1, dheader_1_0, dimage_1_0, dseries_end_1_0, raw_1_0

MODULES = (array_1_0, raw_1_0, dheader_1_0, dimage_1_0, dseries_end_1_0, bsr_m_1_1)

#: htype -> handler, as mflow's ``receive_handlers``.
receive_handlers: dict[str, Callable[..., Any]] = {m.HTYPE: m.receive for m in MODULES}
#: htype -> encoder (message dict -> list of parts).
encoders: dict[str, Callable[[dict], list[Any]]] = {m.HTYPE: m.encode for m in MODULES}


def encode(message: dict) -> list[Any]:
    """The parts of ``message`` (a decoded dict), by its header's htype."""
    from ..errors import EncodeError

    try:
        htype = message["header"]["htype"]
    except (KeyError, TypeError):
        raise EncodeError("the message has no header with an htype") from None
    try:
        encoder = encoders[htype]
    except (KeyError, TypeError):
        raise EncodeError(f"no encoder for htype {htype!r}") from None
    return encoder(message)
