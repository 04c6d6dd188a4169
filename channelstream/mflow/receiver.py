"""What a handler reads from, and what ``receive()`` hands back.

A stream reads each multipart message whole (``recv_multipart``) before any
handler sees it. ZMQ delivers multipart messages atomically (all parts or
none), so this costs no waiting and no memory that ZMQ did not already hold,
and it makes two guarantees that mflow itself lacked:

* a handler that stops early, fails, or reads too far can never leave parts
  of *this* message to be mistaken for the start of the next one;
* the statistics of a message are counted after its handler succeeded, all
  at once, so a failed decode never leaks into the next message's counts.

:class:`Receiver` is the ``receiver`` argument of htype handlers, with the
mflow interface (``next(as_json=False)``, ``has_more()``) over the parts of
the current message. ``next()`` past the last part raises
:class:`~channelstream.mflow.errors.MalformedMessage` ("missing part")
instead of blocking on the next message as mflow's did.

Statistics (one object per stream, updated in place, like mflow's):

``bytes_received``        size of the last message, all parts (mflow reset it to 0)
``total_bytes_received``  sum of the sizes of all messages received
``messages_received``     messages a handler accepted
``messages_malformed``    messages refused (counted in nothing else)
"""

from __future__ import annotations

from typing import Any

import zmq

from . import jsonpart
from .errors import MalformedMessage


class Statistics:
    """Counters of one stream; see the module docstring."""

    __slots__ = ("bytes_received", "total_bytes_received", "messages_received",
                 "messages_malformed")

    def __init__(self) -> None:
        self.bytes_received = 0
        self.total_bytes_received = 0
        self.messages_received = 0
        self.messages_malformed = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"Statistics({self.as_dict()})"


class Message:
    """One received message.

    :ivar statistics: the stream's :class:`Statistics` (the live object, as in mflow).
    :ivar data: what the htype handler returned.
    :ivar frames: the parts as received (``bytes``, or ``zmq.Frame`` with
        ``copy=False``); ``Stream.forward(message)`` sends them unchanged.
    """

    __slots__ = ("statistics", "data", "frames")

    def __init__(self, statistics: Statistics, data: Any, frames: list | None = None) -> None:
        self.statistics = statistics
        self.data = data
        self.frames = frames

    def __repr__(self) -> str:
        return f"Message(parts={len(self.frames or ())}, data={self.data!r:.80})"


class Receiver:
    """The parts of the message being handled (one instance per stream, reused).

    ``frames`` is the list of parts; handlers of this package index it
    directly, custom handlers use :meth:`next` and :meth:`has_more`.
    ``copy`` is the stream's: with ``copy=False`` parts are ``zmq.Frame`` and
    :meth:`next` returns read-only ``memoryview``\\s of them (no copy).
    """

    __slots__ = ("frames", "index", "copy", "statistics", "header")

    def __init__(self, copy: bool = True, statistics: Statistics | None = None) -> None:
        self.frames: list = []
        self.index = 0
        #: part 0 already decoded (by the htype dispatch), or None.
        self.header: Any = None
        self.copy = copy
        self.statistics = statistics if statistics is not None else Statistics()

    def reset(self, frames: list) -> None:
        self.frames = frames
        self.index = 0

    def has_more(self) -> bool:
        """True while parts of the current message are left to read."""
        return self.index < len(self.frames)

    def next(self, as_json: bool = False) -> Any:
        """The next part: bytes (or a memoryview), or its JSON value with ``as_json``.

        :raises MalformedMessage: no part is left, or ``as_json`` and it is not JSON.
        """
        index = self.index
        if index >= len(self.frames):
            raise MalformedMessage(f"missing part {index}", parts=len(self.frames))
        self.index = index + 1
        part = self.frames[index]
        if as_json:
            if index == 0 and self.header is not None:
                return self.header
            return json_part(part, index)
        if isinstance(part, zmq.Frame):
            return part.buffer
        return part

    def rest(self) -> list:
        """Every part not read yet (as :meth:`next` would return them); marks them read."""
        parts = self.frames[self.index:]
        self.index = len(self.frames)
        if parts and isinstance(parts[0], zmq.Frame):
            return [part.buffer for part in parts]
        return parts


def json_part(part: Any, index: int) -> Any:
    """Decode part ``index`` as JSON or raise :class:`MalformedMessage` saying so."""
    try:
        return jsonpart.loads(part.bytes if isinstance(part, zmq.Frame) else part)
    except (ValueError, RecursionError) as exc:
        raise MalformedMessage(f"part {index} is not UTF-8 JSON ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 80 else text[:77] + "..."
