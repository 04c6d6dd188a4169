"""Stream ids: which are valid (no id can name a path), and fresh ones.

A valid id holds letters, digits, ``.``, ``_`` and ``-``, starts with a
letter or digit, and has at most :data:`MAX_ID_LENGTH` characters, so it is
always one plain file name (never ``..``, a hidden name, or a path). A fresh
id is ``loom-<time in ms, hex>-<64 random bits>``: sortable by creation, and
no two collide in practice (the store also checks).
"""

from __future__ import annotations

import re
import secrets
import time

from .errors import BadStreamId

MAX_ID_LENGTH = 128
#: What a valid id looks like (also the OpenAPI pattern of ``{id}``).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_ID = re.compile(ID_PATTERN)


def check_id(stream_id: str) -> str:
    """Return ``stream_id`` if it is a valid id, else raise :class:`BadStreamId`."""
    if not isinstance(stream_id, str) or not stream_id:
        raise BadStreamId("a stream id must not be empty")
    if len(stream_id) > MAX_ID_LENGTH:
        raise BadStreamId(f"a stream id has at most {MAX_ID_LENGTH} characters")
    if not _ID.fullmatch(stream_id):
        raise BadStreamId(
            "a stream id holds letters, digits, '.', '_' and '-' only, "
            "and starts with a letter or digit"
        )
    return stream_id


def new_id() -> str:
    """A fresh id: ``loom-`` + the time in ms (hex, sortable) + 64 random bits."""
    return f"loom-{time.time_ns() // 1_000_000:011x}-{secrets.token_hex(8)}"
