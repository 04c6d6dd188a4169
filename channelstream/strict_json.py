"""The project's JSON: strict reading, compact writing, for every door.

Standard JSON only: no ``NaN``/``Infinity`` and no number that overflows to
infinity (they break encoders and browsers later), strings encodable as
UTF-8 (no lone surrogate escapes), nesting at most :data:`MAX_DEPTH` deep.
Anything else raises :class:`ValueError` with a message a client can read.
The REST views (``read_json``), the packet ingest and the TCP streamer use
it; it imports no framework.

Writing (:func:`dumps`, :func:`dumps_text`): compact (no spaces), UTF-8 as
is (not ``\\u``-escaped), standard JSON only (NaN and the infinities raise
:class:`ValueError` rather than reach a browser). Every door encodes with
these, so a message is written the same way whoever sends it.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Deepest nesting of arrays and objects accepted.
MAX_DEPTH = 32


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


#: A decoder that refuses NaN, Infinity and numbers out of float range.
DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)


def check(value: Any, depth: int = 0) -> None:
    """Refuse what would break a JSON encoder or a browser later: lone
    surrogates (they cannot be encoded as UTF-8) and deep nesting.

    :raises ValueError: naming the problem.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string holds a lone surrogate escape") from None
    elif isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            check(key, depth + 1)
            check(item, depth + 1)


def loads(raw: str | bytes) -> Any:
    """Decode one JSON document strictly (bytes: UTF-8, -16 or -32 as JSON allows).

    :raises ValueError: not JSON, not allowed by the rules above, or nested
        too deeply (also when the decoder itself runs out of recursion).
    """
    try:
        data = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
        check(data)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    return data


def loads_utf8(raw: bytes) -> Any:
    """:func:`loads` of a UTF-8 document, about twice as fast when it can be.

    A text with no backslash and at most :data:`MAX_DEPTH` brackets skips
    :func:`check`: a lone surrogate needs a ``\\u`` escape (UTF-8 decoding
    refuses one written as itself), and that few brackets cannot nest
    deeper. Keep this test in step with what :func:`check` looks for.

    :raises ValueError: as :func:`loads`; :class:`UnicodeDecodeError` (a
        ValueError) when ``raw`` is not UTF-8.
    """
    text = raw.decode("utf-8")
    if b"\\" not in raw and raw.count(b"{") + raw.count(b"[") <= MAX_DEPTH:
        return DECODER.decode(text)
    return loads(text)


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

#: ``dumps_text(value) -> str``: compact standard JSON text (see the module doc).
dumps_text = _ENCODER.encode


def dumps(value: Any) -> bytes:
    """Compact standard JSON as UTF-8 bytes (see the module doc)."""
    return _ENCODER.encode(value).encode()


def type_name(value: Any) -> str:
    """The JSON name of a decoded value's type: object, array, string, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


__all__ = [
    "DECODER", "MAX_DEPTH", "check", "dumps", "dumps_text", "loads", "loads_utf8", "type_name"
]
