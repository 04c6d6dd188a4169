"""Request bodies read under a bound, once.

:func:`read_body` reads at most ``limit`` bytes and keeps them as
``request.body``: a ``Content-Length`` over the limit is refused (413)
before anything is read, a chunked body as soon as it goes past the limit.
The auth gate reads the body before it checks a signature, so the view
reads the very bytes that were checked and never an unbounded body.
"""

from __future__ import annotations

from typing import Any

from pyramid.request import Request

from ..errors import BadRequest, PayloadTooLarge

#: environ key: "the body was read under the bound" (a second call returns it).
_BODY_READ_KEY = "channelstream.body_read"
_READ_CHUNK = 65536


def read_body(request: Request, limit: int) -> bytes:
    """Read the request body, at most ``limit`` bytes, and keep it as ``request.body``.

    A ``Content-Length`` over the limit is refused (413) before anything is
    read; a chunked body is read until its end and refused as soon as it
    goes past the limit; without either the body is empty. Never holds more
    than ``limit`` bytes. Calling it again returns the same bytes.
    """
    environ = request.environ
    if environ.get(_BODY_READ_KEY):
        return request.body
    stream = environ.get("wsgi.input")
    length_text = (environ.get("CONTENT_LENGTH") or "").strip()
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if length_text:
        if not length_text.isdigit():
            raise BadRequest(f"Content-Length must be a number of bytes, got {length_text!r}")
        length = int(length_text)
        if length > limit:
            raise PayloadTooLarge(
                f"the body is {length} bytes; the limit is {limit} bytes (max_body_size)"
            )
        data = _read_exactly(stream, length)
    elif chunked and stream is not None:
        data = _read_bounded(stream, limit)
    else:
        data = b""
    request.body = data
    environ[_BODY_READ_KEY] = True
    return data


def _read_exactly(stream: Any, length: int) -> bytes:
    parts: list[bytes] = []
    left = length
    while left > 0:
        part = stream.read(min(left, _READ_CHUNK)) if stream is not None else b""
        if not part:
            raise BadRequest(
                f"the body ended after {length - left} of its {length} bytes (Content-Length)"
            )
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _read_bounded(stream: Any, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        part = stream.read(min(_READ_CHUNK, limit + 1 - size))
        if not part:
            return b"".join(parts)
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(
                f"the chunked body is over the limit of {limit} bytes (max_body_size)"
            )
        parts.append(part)

