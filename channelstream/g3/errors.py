"""The errors of the G3 library, one tree rooted at :class:`G3Error`.

* :class:`G3FormatError`: bytes that are not a valid frame (bad header, a
  length past the frame size limit, a bad CRC); :class:`G3TruncatedError`
  when a stream ends (EOF, or a timeout) inside a frame.
* :class:`G3ConnectionError`: a network peer could not be reached or went
  away where the caller needed it (a sender's reader, a source to connect to).

Every message names what was wrong and where (byte offset, URL, file).
"""

from __future__ import annotations


class G3Error(RuntimeError):
    """Anything the G3 library refuses or fails at (a RuntimeError, as spt3g's errors are)."""


class G3FormatError(G3Error, ValueError):
    """Bytes that are not a valid G3 frame.

    :param offset: where in the frame (or stream) the problem was found, if known.
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at byte {offset})")
        self.offset = offset


class G3TruncatedError(G3FormatError):
    """A stream ended inside a frame."""


class G3ConnectionError(G3Error, ConnectionError):
    """A network peer could not be reached, or went away.

    :param refused: the peer's host answered that nothing listens there (every
        address refused the connection): the peer is off, not out of reach.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused
