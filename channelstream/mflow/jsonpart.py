"""JSON parts of mflow messages: decode fast, encode exactly as PSI's mflow does.

Decoding: one part (bytes, or any buffer) of UTF-8 JSON into a Python value.
``json.loads`` spends most of its time outside the C scanner (encoding
detection, the whitespace regex, its Python frames); :func:`loads` calls the
C scanner directly and falls back to ``json.loads`` (for leading whitespace,
and to produce the error message) only when that fails. Same results, about
a quarter of the time for the small headers of every message.

Encoding: ``json.dumps(value).encode()`` with the default separators
(``", "`` and ``": "``), because that is what mflow's and bsread's senders
put on the wire: a header decoded and encoded again is byte for byte the one
a Python sender sent.
"""

from __future__ import annotations

import json
from typing import Any

_scan_once = json.JSONDecoder().scan_once
_dumps = json.JSONEncoder().encode


def loads(raw: Any) -> Any:
    """Decode one JSON part; raises ``ValueError`` (also for bad UTF-8)."""
    if not isinstance(raw, str):
        raw = bytes(raw).decode("utf-8") if not isinstance(raw, bytes) else raw.decode("utf-8")
    try:
        value, end = _scan_once(raw, 0)
    except StopIteration:
        return json.loads(raw)
    if end != len(raw) and raw[end:].strip():
        return json.loads(raw)  # raises "Extra data"
    return value


def header_or_none(raw: bytes) -> dict | None:
    """The JSON object in ``raw`` (UTF-8 bytes), or None for anything else or any doubt.

    The hot path of ``receive()``: no exception leaves it; on None the caller
    decodes again with :func:`loads` to learn what is wrong.
    """
    try:
        text = raw.decode("utf-8")
        value, end = _scan_once(text, 0)
    except (StopIteration, ValueError, RecursionError):
        return None
    if end != len(text) or type(value) is not dict:
        return None
    return value


def dumps(value: Any) -> bytes:
    """Encode ``value`` as a JSON part, exactly like ``json.dumps(value).encode()``."""
    return _dumps(value).encode("utf-8")
