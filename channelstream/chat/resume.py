"""Resume positions: what a reconnecting client says it last received.

The wire form (DESIGN.md "Resume") is a JSON object
``{"<channel>": ["<epoch>", <last offset received>], ...}``: a ``resume``
query parameter on ``/ws``, ``/listen`` and ``/sse``, the ``resume`` of the
socket.io auth object, or an SSE event id (:func:`resume_token`, base64url
of the same JSON) that ``Last-Event-ID`` brings back. Every function here
validates and raises :class:`~channelstream.errors.BadRequest` naming the
parameter; none does I/O.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from .. import strict_json
from ..errors import BadRequest

#: Most channels a resume may name.
MAX_RESUME_CHANNELS = 1000


def parse_resume(value: str | None, field: str = "resume") -> dict[str, tuple[str, int]]:
    """``{"<channel>": ["<epoch>", <offset>], ...}`` from JSON text, or 400 naming ``field``.

    Read strictly (:func:`channelstream.strict_json.loads`): deep nesting is a
    400 like any other malformed value, never a crash.
    """
    if not value:
        return {}
    try:
        data = strict_json.loads(value)
    except ValueError as err:
        raise BadRequest(f"{field}: not valid JSON ({err})", field=field) from None
    return validate_resume(data, field)


def validate_resume(data: object, field: str = "resume") -> dict[str, tuple[str, int]]:
    """Positions from decoded JSON, or 400 naming ``field``."""
    if not isinstance(data, Mapping):
        raise BadRequest(f'{field}: expected {{"<channel>": ["<epoch>", <offset>]}}', field=field)
    if len(data) > MAX_RESUME_CHANNELS:
        raise BadRequest(f"{field}: at most {MAX_RESUME_CHANNELS} channels", field=field)
    positions = {}
    for channel, position in data.items():
        if (
            not isinstance(position, list | tuple)
            or len(position) != 2
            or not isinstance(position[0], str)
            or not isinstance(position[1], int)
            or isinstance(position[1], bool)
            or position[1] < 0
        ):
            raise BadRequest(
                f'{field}: position of {channel!r} must be ["<epoch>", <offset >= 0>]',
                field=field,
            )
        positions[str(channel)] = (position[0], position[1])
    return positions


def resume_token(positions: Mapping[str, tuple[str, int]]) -> str:
    """An SSE event id that encodes every channel's position (base64url JSON)."""
    raw = strict_json.dumps({k: list(v) for k, v in positions.items()})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_resume_token(token: str | None) -> dict[str, tuple[str, int]]:
    if not token:
        return {}
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = strict_json.loads(raw)
    except (ValueError, binascii.Error):
        raise BadRequest(
            "Last-Event-ID: not an event id of this server", field="Last-Event-ID"
        ) from None
    return validate_resume(data, "Last-Event-ID")

