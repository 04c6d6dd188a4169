"""The client transports' part of ``/openapi.json`` (tag ``client transports``).

``/ws``, ``/listen`` and ``/sse`` carry one connection's frames (made by
``/connect``) to a browser or an app; the ``conn_id`` is the credential, so
they take no signature. With ``hub.engine = redis`` a transport that reaches
a process that does not hold its connection takes it over first (409, 503,
504 when it cannot). Frames are JSON arrays of message objects; see the
README ("Client transports") for each frame's fields. Pure data.
"""

from __future__ import annotations

from typing import Any

from ..web.openapi import Fragment, error_response

TAG = {
    "name": "client transports",
    "description": "A connection's frames (JSON arrays of messages, presence, edits, "
    "deletes, resume_failed) over websocket, long-poll or Server-Sent Events. The "
    "conn_id made by /connect is the credential.",
}

_FRAMES = {
    "type": "array",
    "items": {"type": "object"},
    "description": "Frames: `message`, `message:edit`, `message:delete`, `presence`, "
    "`user_state_change`, `resume_failed`; each `message` of a channel carries its "
    "`offset` and `epoch`.",
}

_CONN_ID = {
    "name": "conn_id",
    "in": "query",
    "required": True,
    "description": "The connection (from /connect).",
    "schema": {"type": "string"},
}
_RESUME = {
    "name": "resume",
    "in": "query",
    "description": 'JSON `{"<channel>": ["<epoch>", <last offset received>]}`: first '
    "every message missed on those channels, then live; `resume_failed` frames where "
    "history no longer reaches back.",
    "schema": {"type": "string"},
}

_UNKNOWN = error_response("Unknown connection (`field`: `conn_id`).")
_BAD = error_response("A malformed parameter (`resume`, `callback`, `Last-Event-ID`).")
#: hub.engine = redis: a connection of another process is taken over first.
_TAKEN = error_response(
    "hub.engine = redis: another transport of this connection took it over on another "
    "process at the same time (the message names the process)."
)
_MOVE_UNAVAILABLE = error_response(
    "hub.engine = redis: the connection is another process's and could not be taken "
    "over: Redis unavailable (named), or its process is too busy."
)
_MOVE_TIMEOUT = error_response(
    "hub.engine = redis: the process that owns the connection did not hand it over "
    "within `redis.control_timeout`."
)
_MOVES = {"409": _TAKEN, "503": _MOVE_UNAVAILABLE, "504": _MOVE_TIMEOUT}


def _operation(operation_id: str, summary: str, **fields: Any) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "tags": [TAG["name"]],
        "summary": summary,
        "security": [],
        **fields,
    }


PATHS: dict[str, Any] = {
    "/ws": {
        "get": _operation(
            "websocket",
            "A websocket carrying the connection's frames (one JSON array per text frame; "
            "`[]` as a heartbeat). Close codes: 4000 replaced or closed, 4404 unknown "
            "connection, 1008 bad parameters.",
            parameters=[_CONN_ID, _RESUME],
            responses={
                "101": {"description": "Switching to the websocket protocol."},
                "400": error_response("Not a websocket upgrade."),
                **_MOVES,
            },
        )
    },
    "/listen": {
        "get": _operation(
            "listen",
            "Long-poll: waits up to `listen_timeout` for a first frame, then answers "
            "everything queued (JSONP with `callback`).",
            parameters=[
                _CONN_ID,
                _RESUME,
                {
                    "name": "callback",
                    "in": "query",
                    "description": "A JavaScript function name: the answer is JSONP.",
                    "schema": {"type": "string", "maxLength": 128},
                },
            ],
            responses={
                "200": {
                    "description": "The frames queued (`[]` when none came in time).",
                    "content": {
                        "application/json": {"schema": _FRAMES},
                        "application/javascript": {"schema": {"type": "string"}},
                    },
                },
                "400": _BAD,
                "404": _UNKNOWN,
                **_MOVES,
            },
        )
    },
    "/sse": {
        "get": _operation(
            "sse",
            "Server-Sent Events: each event's data is a JSON array of frames and its id "
            "encodes the connection's positions, so an EventSource resumes by itself "
            "(`Last-Event-ID`).",
            parameters=[
                _CONN_ID,
                _RESUME,
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "description": "The last event id received (sent by EventSource).",
                    "schema": {"type": "string"},
                },
            ],
            responses={
                "200": {
                    "description": "An endless event stream (`data: []` as a heartbeat).",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "400": _BAD,
                "404": _UNKNOWN,
                **_MOVES,
            },
        )
    },
}


def fragment() -> Fragment:
    """The client transports' fragment."""
    return Fragment(TAG, PATHS)


__all__ = ["PATHS", "TAG", "fragment"]
