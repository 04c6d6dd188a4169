"""loom's routes in ``/openapi.json``: what :mod:`loom.views` answers, for clients.

:func:`fragment` is what loom adds to the document (registered by
``loom.includeme``): :data:`PATHS`, :data:`SCHEMAS`, :data:`TAG` and
:data:`SECURITY_SCHEMES`. Pure data; no framework. Error answers use the
document's shared ``Error`` schema (the JSON error views render loom's
refusals like every other client error).
Keep it beside :mod:`loom.views`: a route, parameter or status changed there
is changed here.
"""

from __future__ import annotations

from typing import Any

from channelstream.web.openapi import Fragment

from .ids import ID_PATTERN, MAX_ID_LENGTH

TAG = {
    "name": "loom",
    "description": "Live byte streams: a producer POSTs one, readers GET what is stored "
    "and then the live tail. Bearer tokens (`loom.tokens`) instead of signatures.",
}

SECURITY_SCHEMES: dict[str, Any] = {
    "loomBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <token>` with one of `loom.tokens`; needed "
        "only when `loom.tokens` is set. A token in the URL is always refused (401).",
    }
}

#: every loom route: a bearer token when ``loom.tokens`` is set, else nothing
_SECURITY = [{"loomBearer": []}, {}]

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}

_ERRORS = {
    "400": "A bad stream id (`field`: `id`), or X-Stream-Metadata that is not JSON "
    "or is over 65536 characters.",
    "401": "`loom.tokens` is set and the request has no known bearer token "
    "(or put one in the URL).",
    "404": "`The stream with ID <id> does not exist`.",
    "409": "`The stream with ID <id> already exists. Specify force=true query param to override.`",
    "413": "The body's Content-Length is over `loom.max_stream_bytes`.",
    "503": "`loom.max_streams` streams are live already, the process is short of file "
    "descriptors (`loom.fd_reserve` of RLIMIT_NOFILE kept free), or the storage is not "
    "open (starting, stopping, or another process serves this folder on the local bus); "
    "on a process that follows the folder's owner, a write (`POST`, `DELETE`) gets code "
    "`not_owner` with `owner` {pid, url} and `X-Loom-Owner`.",
}


def _errors(*statuses: str) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status in statuses:
        answers[status] = {"description": _ERRORS[status], "content": _ERROR}
        if status == "401":
            answers[status]["headers"] = {
                "WWW-Authenticate": {"schema": {"type": "string", "const": 'Bearer realm="loom"'}}
            }
    return answers


def _header(description: str, **schema: Any) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string", **schema}}


def _flag(name: str, description: str) -> dict[str, Any]:
    """A query flag that counts by its presence (``?notail``), whatever its value."""
    return {
        "name": name,
        "in": "query",
        "description": description,
        "allowEmptyValue": True,
        "schema": {"type": "string"},
    }


_ID_PARAMETER = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The stream id: letters, digits, `.`, `_` and `-`, starting with a "
    "letter or digit.",
    "schema": {"type": "string", "pattern": ID_PATTERN, "maxLength": MAX_ID_LENGTH},
}
_FORCE = {
    "name": "force",
    "in": "query",
    "description": "`true`: replace a stream of that id (a live one is aborted); the answer "
    "then has `x-stream-replaced: true`.",
    "schema": {"type": "boolean"},
}
_METADATA = {
    "name": "X-Stream-Metadata",
    "in": "header",
    "description": "The stream's metadata, any JSON value (UTF-8), at most 65536 characters; "
    "readers get it back as a header and in the stream's description.",
    "schema": {"type": "string"},
}
_UPLOAD = {
    "description": "The stream's bytes, as they come (chunked or with a Content-Length); "
    "the stream is live until the body ends.",
    "required": False,
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}
_STATE = {"type": "string", "enum": ["live", "finished", "aborted"]}

_CREATED = {
    "description": "Created: the headers come at once, before the upload is read; the "
    "empty chunked body ends when the upload is stored, with the trailer "
    "`X-Stream-State` (`finished`, or `aborted`).",
    "headers": {
        "X-Stream-Id": _header("The stream's id (a fresh `loom-...` one when none was given)."),
        "x-stream-replaced": _header("Present when an existing stream was replaced.", const="true"),
    },
}

SCHEMAS: dict[str, Any] = {
    "StreamInfo": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "metadata": {"description": "The X-Stream-Metadata JSON, or null."},
            "state": _STATE,
            "created": {"type": "number", "description": "unix seconds"},
            "ended": {"type": ["number", "null"], "description": "unix seconds"},
            "size": {"type": "integer", "minimum": 0, "description": "bytes of the stream"},
            "stored": {"type": "integer", "minimum": 0, "description": "bytes on disk"},
            "compression": {"type": "string", "enum": ["none", "zlib"]},
            "reason": {"type": ["string", "null"], "description": "why it was aborted"},
        },
        "required": [
            "id",
            "metadata",
            "state",
            "created",
            "ended",
            "size",
            "stored",
            "compression",
            "reason",
        ],
    },
    "StreamList": {
        "type": "object",
        "properties": {
            "streams": {"type": "array", "items": {"$ref": "#/components/schemas/StreamInfo"}}
        },
        "required": ["streams"],
    },
    "DeletedStream": {
        "allOf": [
            {"$ref": "#/components/schemas/StreamInfo"},
            {
                "type": "object",
                "properties": {"deleted": {"const": True}},
                "required": ["deleted"],
            },
        ]
    },
}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _operation(operation_id: str, summary: str, **fields: Any) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "tags": ["loom"],
        "summary": summary,
        "security": _SECURITY,
        **fields,
    }


PATHS: dict[str, Any] = {
    "/stream": {
        "post": _operation(
            "createStream",
            "Create a live stream with a fresh id and upload its bytes.",
            parameters=[_METADATA],
            requestBody=_UPLOAD,
            responses={"201": _CREATED, **_errors("400", "401", "413", "503")},
        )
    },
    "/stream/{id}": {
        "parameters": [_ID_PARAMETER],
        "post": _operation(
            "createNamedStream",
            "Create a live stream of that id (or replace one, with force) and upload its bytes.",
            parameters=[_FORCE, _METADATA],
            requestBody=_UPLOAD,
            responses={"201": _CREATED, **_errors("400", "401", "409", "413", "503")},
        ),
        "get": _operation(
            "readStream",
            "The stored bytes, then the live tail until the stream ends.",
            parameters=[
                _flag("notail", "Present (`?notail`): only what is stored now, no live tail.")
            ],
            responses={
                "200": {
                    "description": "The raw bytes. A stream that is not live (or `?notail`) "
                    "has a Content-Length; a live one is chunked, and its trailer "
                    "`X-Stream-State` tells how it ended.",
                    "headers": {
                        "X-Stream-Id": _header("The stream's id."),
                        "X-Stream-Metadata": _header("The stream's metadata, as JSON."),
                        "X-Stream-State": _header(
                            "The state when the answer began.", enum=_STATE["enum"]
                        ),
                    },
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
                **_errors("400", "401", "404", "503"),
            },
        ),
        "delete": _operation(
            "deleteStream",
            "Remove a stream (a live one is aborted first).",
            responses={
                "200": _json("DeletedStream", "Deleted; its last description."),
                **_errors("400", "401", "404", "503"),
            },
        ),
    },
    "/streams": {
        "get": _operation(
            "listStreams",
            "Every stream, oldest first.",
            responses={"200": _json("StreamList", "The streams."), **_errors("401", "503")},
        )
    },
    "/streams/{id}": {
        "parameters": [_ID_PARAMETER],
        "get": _operation(
            "describeStream",
            "One stream's description (how it ended, once it has).",
            responses={
                "200": _json("StreamInfo", "The stream."),
                **_errors("400", "401", "404", "503"),
            },
        ),
    },
    "/spy": {
        "get": _operation(
            "spy",
            "Every live stream and every later one, multiplexed, until the client leaves: "
            "`START: <id>`, `<id>:` when the output switches stream, `END: <id>`.",
            parameters=[_flag("color", "Present (`?color`): each stream in its ANSI colour.")],
            responses={
                "200": {
                    "description": "An endless chunked text body.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors("401", "503"),
            },
        )
    },
}


def fragment() -> Fragment:
    """loom's part of ``/openapi.json``."""
    return Fragment(TAG, PATHS, SCHEMAS, SECURITY_SCHEMES)
