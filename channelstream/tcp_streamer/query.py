"""Reading a TCP streamer query: bytes in, one JSON object out. No I/O here.

Wire format (client to server): one JSON object, UTF-8, optionally
preceded by whitespace, possibly split over any number of TCP segments,
with or without a newline after it (the object may span lines). The object
ends the query: whatever follows it is ignored. Once it is complete it is
decoded, strictly (:mod:`channelstream.strict_json`), and turned into a
:class:`~channelstream.packets.Query`.

The bytes are checked as they arrive by an incremental JSON syntax scanner
(a pushdown automaton over tokens, each byte looked at once however the
query is split): a query is refused as soon as its bytes cannot be the
start of a valid JSON object, at the first byte that is wrong (``{bad``,
``{"a": 1]``, ``{"a": tru,``, a raw control character in a string, bytes
that are not UTF-8, ``NaN``), newline or not; only a valid beginning waits
for more. An object that never completes is refused by the door at EOF, at
``tcp_streamer.query_timeout`` or past ``tcp_streamer.max_query_bytes``,
with :meth:`QueryBuffer.incomplete` naming what is missing.

The original read the query with one ``recv`` (a query split over two
segments failed) and did not say what was wrong; see ANCHORS.md.
"""

from __future__ import annotations

import codecs
import re

from .. import strict_json
from ..packets import BadQuery, Query, parse_query

_WHITESPACE = b" \t\r\n"
_SPACES = re.compile(rb"[ \t\r\n]*")
#: Inside a string: a run of bytes that need no attention.
_STRING_RUN = re.compile(rb'[^"\\\x00-\x1f]*')
_DIGITS = re.compile(rb"[0-9]*")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = frozenset(b'"\\/bfnrt')
_DIGIT = frozenset(b"0123456789")
_EXPONENT = frozenset(b"eE")
#: Literals by their first byte; NaN and Infinity are scanned only to be named.
_LITERALS = {
    ord("t"): b"true",
    ord("f"): b"false",
    ord("n"): b"null",
    ord("N"): b"NaN",
    ord("I"): b"Infinity",
}
_NOT_NUMBERS = (b"NaN", b"Infinity")
_CLOSE_OF = {ord("{"): ord("}"), ord("["): ord("]")}

# What the scanner expects next, outside a token.
_KEY_OR_CLOSE = 0  # after "{"
_KEY = 1  # after "," in an object
_COLON = 2  # after a key
_VALUE = 3  # after ":" or "," in an array
_VALUE_OR_CLOSE = 4  # after "["
_AFTER = 5  # after a value: "," or the container's end

# The token being scanned (it may be cut by the end of a segment).
_NONE, _STRING, _NUMBER, _LITERAL = range(4)

# Number states (JSON's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?).
_N_MINUS, _N_ZERO, _N_INT, _N_DOT, _N_FRAC, _N_E, _N_ESIGN, _N_EXP = range(8)
_N_DIGIT_RUNS = (_N_INT, _N_FRAC, _N_EXP)


class QueryError(ValueError):
    """A query to refuse; ``str()`` is the message for the client's error line."""


class _SyntaxError(QueryError):
    """The scanner's refusal, at byte ``at`` of the buffer."""

    def __init__(self, message: str, at: int) -> None:
        super().__init__(message)
        self.at = at


class QueryBuffer:
    """Collects a client's bytes until they hold one complete JSON object.

    :param max_bytes: the most bytes the query (leading whitespace included)
        may take; the door never feeds more than ``max_bytes + 1``.

    Scanning is incremental: each byte is looked at once, however the query
    is split (at most the six bytes of a ``\\uXXXX`` escape or the five of
    a literal are looked at again when a segment ends inside them).
    """

    __slots__ = (
        "max_bytes",
        "_buf",
        "_pos",
        "_start",
        "_stack",
        "_expect",
        "_token",
        "_key",
        "_number",
        "_literal",
        "_literal_at",
        "_negative",
        "_utf8",
        "_checked",
    )

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._pos = 0
        self._start: int | None = None
        self._stack = bytearray()  # the open containers' brackets
        self._expect = _KEY_OR_CLOSE
        self._token = _NONE
        self._key = False  # the string being scanned is an object key
        self._number = _N_MINUS
        self._literal = b""
        self._literal_at = 0
        self._negative = False  # the literal followed a "-" (-Infinity)
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._checked = 0  # bytes before this were UTF-8 checked

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
            not JSON, not UTF-8, a bad pair, too long, nested too deeply),
            as soon as the first byte that makes them so arrives.
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
            self._stack.append(0x7B)
            self._pos = self._checked = pos + 1
        try:
            end = self._scan()
        except _SyntaxError as err:
            self._check_utf8(err.at, final=False)  # bad UTF-8 before it is named first
            raise
        if end is None:
            self._check_utf8(self._pos, final=False)
            self._check_length()
            return None
        self._check_utf8(end, final=True)
        if end > self.max_bytes:
            raise QueryError(self._too_long())
        return _parse(bytes(buf[self._start : end]))

    def incomplete(self, what: str) -> str:
        """The error line's message for a query that never completed.

        ``what`` says how the wait ended (EOF, timeout); the decoder's
        complaint about the bytes received so far is added when there are
        some, so a client sees e.g. ``Expecting ',' delimiter`` for a
        missing ``}``.
        """
        if self._start is None:
            return f'{what}; send a JSON object such as {{"profile_id": "..."}}'
        text = bytes(self._buf[self._start :]).decode("utf-8", "replace")
        try:
            strict_json.loads(text)
        except ValueError as err:
            return f"{what}: the query is not a complete JSON object ({err})"
        return f"{what}: the query is not a complete JSON object"

    # -- the scanner ---------------------------------------------------------------

    def _scan(self) -> int | None:
        """Advance over the buffer; return the end of the object when it closes.

        :raises QueryError: at the first byte that cannot follow what came before.
        """
        buf = self._buf
        n = len(buf)
        pos = self._pos
        try:
            while pos < n:
                token = self._token
                if token == _STRING:
                    pos = self._scan_string(pos)
                elif token == _NUMBER:
                    pos = self._scan_number(pos)
                elif token == _LITERAL:
                    pos = self._scan_literal(pos)
                else:
                    pos = _SPACES.match(buf, pos).end()  # type: ignore[union-attr]
                    if pos == n:
                        break
                    pos, done = self._structure(pos)
                    if done:
                        self._pos = pos
                        return pos
                if pos < 0:  # the token goes on past the bytes received
                    pos = -pos - 1
                    break
        finally:
            self._pos = pos if pos >= 0 else -pos - 1
        return None

    def _structure(self, pos: int) -> tuple[int, bool]:
        """One structural byte or the first byte of a token; (next pos, object closed)."""
        char = self._buf[pos]
        expect = self._expect
        if expect in (_VALUE, _VALUE_OR_CLOSE):
            if char == 0x22:  # '"'
                self._token, self._key = _STRING, False
                return pos + 1, False
            if char in _CLOSE_OF:
                if len(self._stack) >= strict_json.MAX_DEPTH:
                    raise QueryError(
                        f"the query is nested deeper than {strict_json.MAX_DEPTH} levels"
                    )
                self._stack.append(char)
                self._expect = _KEY_OR_CLOSE if char == 0x7B else _VALUE_OR_CLOSE
                return pos + 1, False
            if char == 0x2D or char in _DIGIT:  # "-" or a digit
                self._token = _NUMBER
                self._number = _N_MINUS if char == 0x2D else _N_ZERO if char == 0x30 else _N_INT
                return pos + 1, False
            if char in _LITERALS:
                self._start_literal(char, negative=False)
                return pos + 1, False
            if expect == _VALUE_OR_CLOSE and char == 0x5D:  # "]"
                return self._close(pos)
            raise self._syntax(pos, "a value")
        if expect in (_KEY_OR_CLOSE, _KEY):
            if char == 0x22:
                self._token, self._key = _STRING, True
                return pos + 1, False
            if expect == _KEY_OR_CLOSE and char == 0x7D:  # "}"
                return self._close(pos)
            raise self._syntax(pos, "a property name in double quotes")
        if expect == _COLON:
            if char == 0x3A:  # ":"
                self._expect = _VALUE
                return pos + 1, False
            raise self._syntax(pos, "':' after the property name")
        # _AFTER: "," or the end of the open container
        top = self._stack[-1]
        if char == 0x2C:  # ","
            self._expect = _KEY if top == 0x7B else _VALUE
            return pos + 1, False
        if char == _CLOSE_OF[top]:
            return self._close(pos)
        raise self._syntax(pos, f"',' or '{chr(_CLOSE_OF[top])}'")

    def _close(self, pos: int) -> tuple[int, bool]:
        self._stack.pop()
        self._expect = _AFTER
        return pos + 1, not self._stack

    def _scan_string(self, pos: int) -> int:
        """Past the string's end, or ``-(resume position) - 1`` when it is cut."""
        buf = self._buf
        n = len(buf)
        while True:
            pos = _STRING_RUN.match(buf, pos).end()  # type: ignore[union-attr]
            if pos == n:
                return -pos - 1
            char = buf[pos]
            if char == 0x22:
                self._token = _NONE
                self._expect = _COLON if self._key else _AFTER
                return pos + 1
            if char != 0x5C:  # a raw control character
                raise self._syntax(pos, "no raw control character in a string (escape it)")
            if pos + 1 == n:
                return -pos - 1  # resume at the backslash
            escape = buf[pos + 1]
            if escape in _ESCAPES:
                pos += 2
                continue
            if escape != 0x75:  # "u"
                raise self._syntax(pos + 1, "a valid escape after the backslash")
            digits = buf[pos + 2 : pos + 6]
            for index, digit in enumerate(digits):
                if digit not in _HEX:
                    raise self._syntax(pos + 2 + index, "four hex digits after \\u")
            if len(digits) < 4:
                return -pos - 1
            pos += 6

    def _scan_number(self, pos: int) -> int:
        """Past the number, or ``-(resume position) - 1`` when it may go on."""
        buf = self._buf
        n = len(buf)
        state = self._number
        try:
            while True:
                if state in _N_DIGIT_RUNS:
                    pos = _DIGITS.match(buf, pos).end()  # type: ignore[union-attr]
                if pos == n:
                    return -pos - 1
                char = buf[pos]
                if state == _N_MINUS:
                    if char == 0x49:  # "I": -Infinity
                        self._start_literal(char, negative=True)
                        return pos + 1
                    if char not in _DIGIT:
                        raise self._syntax(pos, "a digit after '-'")
                    state = _N_ZERO if char == 0x30 else _N_INT
                elif state in (_N_ZERO, _N_INT, _N_FRAC):
                    if char == 0x2E and state != _N_FRAC:  # "."
                        state = _N_DOT
                    elif char in _EXPONENT:
                        state = _N_E
                    elif char in _DIGIT:  # only after a leading zero
                        raise self._syntax(pos, "no digit after a leading zero")
                    else:
                        self._token = _NONE
                        self._expect = _AFTER
                        return pos
                elif state == _N_DOT:
                    if char not in _DIGIT:
                        raise self._syntax(pos, "a digit after the decimal point")
                    state = _N_FRAC
                elif state == _N_E:
                    if char in b"+-":
                        state = _N_ESIGN
                    elif char in _DIGIT:
                        state = _N_EXP
                    else:
                        raise self._syntax(pos, "a digit in the exponent")
                elif state == _N_ESIGN:
                    if char not in _DIGIT:
                        raise self._syntax(pos, "a digit in the exponent")
                    state = _N_EXP
                else:  # _N_EXP, after its digits
                    self._token = _NONE
                    self._expect = _AFTER
                    return pos
                pos += 1
        finally:
            self._number = state

    def _start_literal(self, char: int, *, negative: bool) -> None:
        self._token = _LITERAL
        self._literal = _LITERALS[char]
        self._literal_at = 1
        self._negative = negative

    def _scan_literal(self, pos: int) -> int:
        buf = self._buf
        literal = self._literal
        while self._literal_at < len(literal):
            if pos == len(buf):
                return -pos - 1
            if buf[pos] != literal[self._literal_at]:
                raise self._syntax(pos, f"{literal.decode()!r}" if self._literal_at else "a value")
            self._literal_at += 1
            pos += 1
        if literal in _NOT_NUMBERS:
            name = ("-" if self._negative else "") + literal.decode()
            raise QueryError(f"{name} is not a JSON number")
        self._token = _NONE
        self._expect = _AFTER
        return pos

    def _syntax(self, pos: int, expected: str) -> _SyntaxError:
        char = self._buf[pos]
        found = repr(chr(char)) if 0x20 <= char < 0x7F else f"byte 0x{char:02x}"
        return _SyntaxError(
            f"the query is not valid JSON: expected {expected} at byte {pos}, found {found}", pos
        )

    def _check_utf8(self, end: int, *, final: bool) -> None:
        """Decode the bytes scanned so far, incrementally: refuse bad UTF-8 at once."""
        if end <= self._checked and not final:
            return
        pending = len(self._utf8.getstate()[0])
        try:
            self._utf8.decode(bytes(self._buf[self._checked : end]), final)
        except UnicodeDecodeError as err:
            raise QueryError(
                f"the query is not UTF-8 (byte {self._checked - pending + err.start})"
            ) from None
        self._checked = max(end, self._checked)

    # -- other refusals ------------------------------------------------------------

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
