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

from ..errors import EncodeError, MalformedMessage, UnknownHtype
from ..receiver import Receiver, json_part
from . import array_1_0, bsr_m_1_1, dheader_1_0, dimage_1_0, dseries_end_1_0, raw_1_0

MODULES = (array_1_0, raw_1_0, dheader_1_0, dimage_1_0, dseries_end_1_0, bsr_m_1_1)

#: htype -> handler, as mflow's ``receive_handlers``.
receive_handlers: dict[str, Callable[..., Any]] = {m.HTYPE: m.receive for m in MODULES}
#: htype -> encoder (message dict -> list of parts).
encoders: dict[str, Callable[[dict], list[Any]]] = {m.HTYPE: m.encode for m in MODULES}


def dispatch(receiver: Receiver, handlers: dict[str, Callable[..., Any]],
             handler: Callable[..., Any] | None = None) -> Any:
    """Decode the message in ``receiver`` with ``handler``, or the handler of its htype.

    :raises MalformedMessage: any failure, a handler's own exceptions included
        (chained); its ``htype`` and ``parts`` are filled in.
    """
    frames = receiver.frames
    htype = None
    try:
        if handler is None:
            if not frames:
                raise MalformedMessage("an empty message")
            header = json_part(frames[0], 0)
            if not isinstance(header, dict):
                raise MalformedMessage("the header is not a JSON object")
            receiver.header = header
            htype = header.get("htype")
            handler = handlers.get(htype) if isinstance(htype, str) else None
            if handler is None:
                raise UnknownHtype(f"no handler for htype {htype!r}")
        return handler(receiver)
    except MalformedMessage as exc:
        if exc.htype is None and htype is not None:
            exc.htype = htype
        exc.parts = len(frames)
        raise
    except Exception as exc:
        raise MalformedMessage(f"the handler failed: {exc!r}", htype, len(frames)) from exc
    finally:
        receiver.header = None


def decode(frames: list, handlers: dict[str, Callable[..., Any]] | None = None,
           copy: bool = True) -> Any:
    """Decode one message given as its list of parts (what ``receive()`` puts in ``data``)."""
    receiver = Receiver(copy)
    receiver.reset(frames)
    return dispatch(receiver, receive_handlers if handlers is None else handlers)


def encode(message: dict) -> list[Any]:
    """The parts of ``message`` (a decoded dict), by its header's htype."""
    try:
        htype = message["header"]["htype"]
    except (KeyError, TypeError):
        raise EncodeError("the message has no header with an htype") from None
    try:
        encoder = encoders[htype]
    except (KeyError, TypeError):
        raise EncodeError(f"no encoder for htype {htype!r}") from None
    return encoder(message)
