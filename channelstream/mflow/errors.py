"""The errors of :mod:`channelstream.mflow`.

A message that cannot be decoded is *reported* by raising
:class:`MalformedMessage` from :meth:`Stream.receive
<channelstream.mflow.stream.Stream.receive>`, never by returning None (None
means "no message before the receive timeout"). By the time it is raised the
whole multipart message has been read off the socket, counted in
``statistics.messages_malformed`` and left out of every other statistic, so
the next ``receive()`` starts cleanly at the next message.
"""

from __future__ import annotations


class MflowError(Exception):
    """Base class of every error this package raises on purpose."""


class MalformedMessage(MflowError, ValueError):
    """A received message that its htype handler refused.

    :ivar htype: the header's ``htype``, or None when the header itself was bad.
    :ivar reason: what is wrong, in a few words (also ``str()``).
    :ivar parts: how many parts the message had.
    """

    def __init__(self, reason: str, htype: str | None = None, parts: int = 0) -> None:
        super().__init__(reason if htype is None else f"{htype}: {reason}")
        self.reason = reason
        self.htype = htype
        self.parts = parts


class UnknownHtype(MalformedMessage):
    """The header names an htype that has no handler in ``stream.handlers``."""


class EncodeError(MflowError, ValueError):
    """A message given to ``forward`` (or an encoder) that cannot be encoded.

    Raised before any part is sent, so no half message ever leaves a socket.
    """


class ConnectError(MflowError, RuntimeError):
    """``connect`` could not bind or connect (mflow raised a RuntimeError, as this does)."""
