"""Reading a TCP streamer query: bytes in, one JSON object out. No I/O here.

Wire format (client to server): one JSON object, UTF-8, optionally
preceded by whitespace, possibly split over any number of TCP segments,
with or without a newline after it. The object ends the query: whatever
follows it is ignored. The object is found by scanning for its closing
brace (string- and escape-aware), so an incomplete object waits for more
bytes while a complete one is answered at once, newline or not; only then
is it decoded, strictly (:mod:`channelstream.strict_json`), and turned
into a :class:`~channelstream.packets.Query`.

A query that cannot be an object (its first byte is not ``{``) is refused
as soon as that byte arrives. An object that never completes is refused by
the door at EOF, at ``tcp_streamer.query_timeout`` or past
``tcp_streamer.max_query_bytes``, with :meth:`QueryBuffer.incomplete`
naming what is wrong with what arrived.

The original read the query with one ``recv`` (a query split over two
segments failed) and did not say what was wrong; see ANCHORS.md.
"""

from __future__ import annotations

import re

from .. import strict_json
from ..packets import BadQuery, Query, parse_query

_WHITESPACE = b" \t\r\n"
#: Outside a string: what changes the scan's state.
_OUTSIDE = re.compile(rb'["{}\[\]]')
#: Inside a string: its end, or an escape (whose next byte is skipped).
_INSIDE = re.compile(rb'["\\]')


class QueryError(ValueError):
    """A query to refuse; ``str()`` is the message for the client's error line."""


class QueryBuffer:
    """Collects a client's bytes until they hold one complete JSON object.

    :param max_bytes: the most bytes the query (leading whitespace included)
        may take; the door never feeds more than ``max_bytes + 1``.

    Scanning is incremental: each byte is looked at once, however the query
    is split.
    """

    __slots__ = ("max_bytes", "_buf", "_pos", "_start", "_depth", "_in_string")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._pos = 0
        self._start: int | None = None
        self._depth = 0
        self._in_string = False

    def __len__(self) -> int:
        return len(self._buf)

    @property
    def room(self) -> int:
        """How many more bytes may be fed (the one past the limit included)."""
        return max(self.max_bytes + 1 - len(self._buf), 0)

    @property
    def empty(self) -> bool:
        """True while nothing but whitespace arrived."""
        return self._start is None

    def feed(self, data: bytes) -> Query | None:
        """Add ``data``; return the query once its object is complete.

        :raises QueryError: the bytes cannot be a valid query (not an object,
            not JSON, not UTF-8, a bad pair, too long, nested too deeply).
        """
        buf = self._buf
        buf += data
        if self._start is None:
            pos = self._pos
            while pos < len(buf) and buf[pos] in _WHITESPACE:
                pos += 1
            self._pos = pos
            if pos == len(buf):
                self._check_length()
                return None
            self._start = pos
            if buf[pos] != 0x7B:  # "{"
                raise QueryError(self._not_an_object())
        end = self._scan()
        if end is None:
            self._check_length()
            return None
        if end > self.max_bytes:
            raise QueryError(self._too_long())
        return _parse(bytes(buf[self._start : end]))

    def incomplete(self, what: str) -> str:
        """The error line's message for a query that never completed.

        ``what`` says how the wait ended (EOF, timeout); the decoder's
        complaint about the bytes received so far is added when there are
        some, so a client sees e.g. ``Expecting ',' delimiter`` for a typo.
        """
        if self._start is None:
            return f'{what}; send a JSON object such as {{"profile_id": "..."}}'
        text = bytes(self._buf[self._start :]).decode("utf-8", "replace")
        try:
            strict_json.loads(text)
        except ValueError as err:
            return f"{what}: the query is not a complete JSON object ({err})"
        return f"{what}: the query is not a complete JSON object"

    # -- internals -----------------------------------------------------------------

    def _scan(self) -> int | None:
        """Advance over the buffer; return the end of the object when it closes."""
        buf = self._buf
        pos = self._pos
        while True:
            if self._in_string:
                match = _INSIDE.search(buf, pos)
                if match is None:
                    self._pos = max(pos, len(buf))
                    return None
                if match.group() == b"\\":
                    pos = match.end() + 1  # skip the escaped byte (it may not be here yet)
                    continue
                self._in_string = False
                pos = match.end()
                continue
            match = _OUTSIDE.search(buf, pos)
            if match is None:
                self._pos = len(buf)
                return None
            pos = match.end()
            char = match.group()
            if char == b'"':
                self._in_string = True
            elif char in (b"{", b"["):
                self._depth += 1
                if self._depth > strict_json.MAX_DEPTH:
                    raise QueryError(
                        f"the query is nested deeper than {strict_json.MAX_DEPTH} levels"
                    )
            else:
                self._depth -= 1
                if self._depth <= 0:
                    self._pos = pos
                    return pos

    def _check_length(self) -> None:
        if len(self._buf) > self.max_bytes:
            raise QueryError(self._too_long())

    def _too_long(self) -> str:
        return f"the query is longer than {self.max_bytes} bytes (tcp_streamer.max_query_bytes)"

    def _not_an_object(self) -> str:
        text = bytes(self._buf[self._start :]).decode("utf-8", "replace")
        if text.startswith("["):
            kind = "an array"
        else:
            try:
                value, _ = strict_json.DECODER.raw_decode(text)
            except ValueError as err:
                return (
                    f"the query is not valid JSON ({err}); "
                    'send a JSON object such as {"profile_id": "..."}'
                )
            kind = strict_json.type_name(value)
        return f"a query must be a JSON object, not {kind}"


def _parse(raw: bytes) -> Query:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise QueryError(f"the query is not UTF-8 (byte {err.start})") from None
    try:
        value = strict_json.loads(text)
    except ValueError as err:
        raise QueryError(f"the query is not valid JSON: {err}") from None
    try:
        return parse_query(value)
    except BadQuery as err:
        raise QueryError(str(err)) from None


__all__ = ["QueryBuffer", "QueryError"]
