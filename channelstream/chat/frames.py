"""Frames: the JSON objects channelstream clients receive, and their codecs.

Every frame is a JSON object; a transport sends a batch of them as one JSON
array. The body of a hub message is the frame without its delivery stamp;
the codecs add ``offset`` and ``epoch`` (the hub's, for resume) and
``catchup`` (true for replayed history). Each codec runs once per message,
whatever the number of recipients (``Message.encoded``).

Frame types (channelstream 0.7.1's, plus ``resume_failed``):
``message``, ``message:edit``, ``message:delete``, ``presence``,
``user_state_change``, ``resume_failed``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from ..hub import Message
from ..strict_json import dumps

#: The resume key of a connection's global private messages (channel names
#: are never empty, so it cannot clash with one).
PM_RESUME_KEY = ""



def utcnow_iso() -> str:
    """Naive UTC ISO 8601 time, as channelstream 0.7.1 stamped its frames."""
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat()


def iso_from_ms(ms: int) -> str:
    """UTC milliseconds (a hub message's ``time_ms``) as :func:`utcnow_iso` writes times."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).replace(tzinfo=None).isoformat()


def new_uuid() -> str:
    return str(uuid.uuid4())


def _stamped(message: Message, catchup: bool) -> bytes:
    frame = dict(message.body)
    frame["catchup"] = catchup
    frame["offset"] = message.offset
    frame["epoch"] = message.epoch
    return dumps(frame)


def live_json(message: Message) -> bytes:
    """Codec: the frame as a live delivery."""
    return _stamped(message, False)


def catchup_json(message: Message) -> bytes:
    """Codec: the frame as replayed history (``catchup: true``)."""
    return _stamped(message, True)


def encode_batch(
    messages: Sequence[Message], replayed: int = 0, extra: Iterable[bytes] = ()
) -> bytes:
    """One JSON array of frames; the first ``replayed`` are catch-up.

    ``extra`` frames (already encoded) go first: e.g. ``resume_failed``.
    """
    parts = list(extra)
    for index, message in enumerate(messages):
        parts.append(message.encoded(catchup_json if index < replayed else live_json))
    return b"[" + b",".join(parts) + b"]"


def encode_frame(frame: Mapping[str, Any]) -> bytes:
    return dumps(frame)


def resume_failed(channel: str, reason: str) -> bytes:
    return encode_frame({"type": "resume_failed", "channel": channel, "reason": reason})


def message_frame(
    *,
    channel: str | None,
    uuid: str,
    timestamp: str,
    user: str,
    message: Any,
    pm_users: Sequence[str] = (),
    has_message: bool = True,
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "channel": channel,
        "uuid": uuid,
        "timestamp": timestamp,
        "user": user,
    }
    if has_message:
        frame["message"] = message
    frame["edited"] = None
    frame["type"] = "message"
    if pm_users:
        frame["pm_users"] = list(pm_users)
    return frame


def edit_frame(channel: str | None, changes: Mapping[str, Any]) -> dict[str, Any]:
    frame: dict[str, Any] = {"channel": channel}
    frame.update(changes)
    frame["type"] = "message:edit"
    return frame


def delete_frame(channel: str | None, uuid: str) -> dict[str, Any]:
    return {"channel": channel, "uuid": uuid, "type": "message:delete"}


def presence_frame(
    *,
    channel: str,
    user: str,
    action: str,
    users: list[dict[str, Any]],
    state: Mapping[str, Any] | None,
) -> dict[str, Any]:
    return {
        "uuid": new_uuid(),
        "type": "presence",
        "user": user,
        "users": users,
        "timestamp": utcnow_iso(),
        "channel": channel,
        "message": {"action": action},
        "state": dict(state) if state is not None else None,
    }


def user_state_frame(
    *, channel: str, user: str, state: Mapping[str, Any], changed: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "uuid": new_uuid(),
        "type": "user_state_change",
        "user": user,
        "timestamp": utcnow_iso(),
        "channel": channel,
        "message": {"state": dict(state), "changed": changed},
    }
