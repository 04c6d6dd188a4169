"""Responses an app writes itself on the socket: sendfile, chunked bodies with trailers.

``environ[RAW_RESPONSE](status, headers)`` (set by
:class:`~channelstream.web.httpserver.Handler`) sends the status line and
headers in one write and returns a :class:`RawResponse`, through which the
app writes the body; pywsgi has no ``wsgi.file_wrapper``. :func:`header_block`
builds a status line and headers (also the handler's one-write responses).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from gevent.socket import wait_write

if TYPE_CHECKING:
    from .httpserver import Handler

#: Largest first body chunk sent in the same write as the headers.
COMBINED_WRITE_MAX = 65536


#: environ key of :meth:`Handler.start_raw_response` (absent under other servers).
RAW_RESPONSE = "channelstream.raw_response"


def header_block(status: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytearray:
    """A response's status line and header lines, with the blank line that ends them."""
    block = bytearray(b"HTTP/1.1 ")
    block += status
    block += b"\r\n"
    for name, value in headers:
        block += name
        block += b": "
        block += value
        block += b"\r\n"
    block += b"\r\n"
    return block


class RawResponse:
    """The body side of a response whose status and headers already went out.

    Returned by ``environ[RAW_RESPONSE](status, headers)``. The app writes the
    whole body itself (framing included: it chose Content-Length or chunked
    in its headers), then returns an empty iterable; pywsgi adds nothing.
    Socket errors propagate (a vanished peer is ``EPIPE``/``ECONNRESET``,
    which pywsgi ignores). Bytes sent count in the access log.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    def sendall(self, data: bytes) -> None:
        """Send ``data`` (cooperatively)."""
        self._handler._sendall(data)

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Send ``count`` bytes of file ``fd`` from ``offset`` with ``os.sendfile``.

        Waits cooperatively while the socket buffer is full. Returns the
        bytes sent (fewer only if the file is shorter).
        """
        handler = self._handler
        out = handler.socket.fileno()
        sent = 0
        while sent < count:
            try:
                n = os.sendfile(out, fd, offset + sent, count - sent)
            except BlockingIOError:
                wait_write(out)
                continue
            except OSError as err:
                if err.errno == errno.EINTR:
                    continue
                handler.status = f"socket error: {err}".encode()
                raise
            if n == 0:
                break
            sent += n
            handler.response_length += n
        return sent

    def close_connection(self) -> None:
        """Close the connection after this response (no keep-alive)."""
        self._handler.close_connection = True
