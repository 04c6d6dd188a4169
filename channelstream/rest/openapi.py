"""The server API's part of ``/openapi.json`` (tag ``server API``), built once.

Made from the routes of :mod:`channelstream.rest.views` and the pydantic
models of :mod:`channelstream.rest.schemas`, so a field added to a model
shows up here with nothing else to edit. Request bodies are the models'
JSON Schemas (pydantic emits JSON Schema 2020-12, which is OpenAPI 3.1's
dialect, so they go in unchanged); their ``$defs`` become component
schemas. Answers are described by hand, loosely where their shape is
dynamic (channel history, message echoes). A route not described here yet
is still listed, loosely.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from ..security.signing import SIGNATURE_HEADER
from ..web.openapi import (
    OBJECT,
    SCALAR,
    STATE,
    STRINGS,
    Fragment,
    error_response,
    json_content,
    obj,
    ref,
)
from . import schemas
from .views import ROUTES

TAG = {"name": "server API", "description": "Calls of backends, signed with `secret`."}

_REF = "#/components/schemas/{model}"

SIGNATURE_DOC = f"""\
Every server API call carries a signature made with the server's `secret`:

    {SIGNATURE_HEADER}: t=<unix seconds>,n=<nonce>,v1=<hex>

where `hex` is the lowercase hex HMAC-SHA256 (key: `secret` as UTF-8) of

    "<t>\\n<n>\\n<METHOD>\\n<path with query string>\\n<sha256 hex of the body>"

- `t`: the signer's clock, whole unix seconds; it must be within
  `signature_window` seconds (default 60) of the server's clock, either way;
- `n`: a nonce of 1 to 128 characters `A-Z a-z 0-9 . _ ~ -`; a `(t, n)` pair
  seen before inside the window is refused (replay);
- `METHOD`: upper case; the path with its query string exactly as sent on the
  request line (`/info?x=1`); the SHA-256 of the exact body bytes (of `b""`
  when there is no body).

Any change of method, path, query or body is refused. The signature is
checked in constant time. Calls must also come from an address of
`allow_posting_from` (else 403). `channelstream.security.signing.sign()` computes it;
`channelstream.client.ChannelstreamClient` signs every call.
"""

SECURITY_SCHEMES: dict[str, Any] = {
    "signature": {
        "type": "apiKey",
        "in": "header",
        "name": SIGNATURE_HEADER,
        "description": SIGNATURE_DOC,
    }
}


#: The answers' schemas (the request bodies come from the pydantic models).
RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "ChannelSettings": obj(
        {
            "notify_presence": {"type": "boolean"},
            "store_history": {"type": "boolean"},
            "history_size": {"type": "integer"},
            "broadcast_presence_with_user_lists": {"type": "boolean"},
            "notify_state": {"type": "boolean"},
            "store_frames": {"type": "boolean"},
            "joinable": {"type": "boolean"},
        }
    ),
    "ChannelInfo": obj(
        {
            "uuid": {"type": "string"},
            "name": {"type": "string"},
            "long_name": {"type": ["string", "null"]},
            "settings": ref("ChannelSettings"),
            "history": {"type": "array", "items": OBJECT},
            "last_active": {"type": "string"},
            "total_connections": {"type": "integer", "minimum": 0},
            "total_users": {"type": "integer", "minimum": 0},
            "users": STRINGS,
            "epoch": {"type": ["string", "null"]},
            "last_offset": {"type": "integer"},
            "connections": {
                "type": "object",
                "additionalProperties": STRINGS,
                "description": "user -> connection ids (include_connections)",
            },
        },
        optional=("connections",),
    ),
    "ChannelsInfo": obj(
        {
            "channels": {"type": "object", "additionalProperties": ref("ChannelInfo")},
            "users": {
                "type": "array",
                "items": obj({"user": {"type": "string"}, "state": STATE}),
            },
        }
    ),
    "ConnectAnswer": obj(
        {
            "conn_id": {"type": "string", "format": "uuid"},
            "state": STATE,
            "username": {"type": "string"},
            "public_state": STATE,
            "channels": STRINGS,
            "channels_info": ref("ChannelsInfo"),
        }
    ),
    "SubscribeAnswer": obj(
        {
            "channels": STRINGS,
            "channels_info": ref("ChannelsInfo"),
            "subscribed_to": STRINGS,
        }
    ),
    "UnsubscribeAnswer": obj(
        {
            "channels": STRINGS,
            "channels_info": ref("ChannelsInfo"),
            "unsubscribed_from": STRINGS,
        }
    ),
    "UserStateAnswer": obj(
        {
            "user_state": STATE,
            "changed_state": {
                "type": "array",
                "items": obj({"key": {"type": "string"}, "value": SCALAR}),
            },
            "public_keys": STRINGS,
        }
    ),
    "UserStatusAnswer": {
        "allOf": [
            ref("UserStateAnswer"),
            obj({"user": {"type": "string"}, "status": {"type": "integer"}}),
        ]
    },
    "MessageEcho": {
        **obj(
            {
                "uuid": {"type": "string"},
                "channel": {"type": ["string", "null"]},
                "pm_users": STRINGS,
                "exclude_users": STRINGS,
                "no_history": {"type": "boolean"},
            }
        ),
        "description": "An item as accepted (with its uuid, timestamp, user, message...).",
    },
}

_ERRORS = {
    "400": "The body is not JSON, or a header is malformed.",
    "401": "Missing, malformed, expired, wrong or replayed signature.",
    "403": "The caller's address is not in allow_posting_from, or the API is disabled.",
    "404": "Unknown connection or user.",
    "409": "The connection id belongs to another user.",
    "413": "The body is over max_body_size.",
    "422": "A field does not validate; `field` names the first, `errors` lists all.",
    "503": "Too many signed calls within the window (replay cache full); see Retry-After."
    " With hub.engine = redis also: Redis is unavailable, or the process that owns the"
    " connection no longer listens (stopped or died).",
    "504": "hub.engine = redis: the process that owns the connection did not answer within"
    " redis.control_timeout.",
}
_API_ERRORS = ("400", "401", "403", "413", "422", "503")


# -- operations ---------------------------------------------------------------------------

#: route name -> (summary, request model, answer schema, extra error statuses)
API_OPERATIONS: dict[str, tuple[str, type[BaseModel] | None, dict[str, Any], tuple[str, ...]]] = {
    "connect": (
        "Connect a user: a new (or reused) connection, joined to channels.",
        schemas.ConnectBody,
        ref("ConnectAnswer"),
        ("409", "504"),
    ),
    "subscribe": (
        "Join a connection to channels (created if need be).",
        schemas.SubscribeBody,
        ref("SubscribeAnswer"),
        ("404", "504"),
    ),
    "unsubscribe": (
        "Take a connection out of channels.",
        schemas.SubscribeBody,
        ref("UnsubscribeAnswer"),
        ("404", "504"),
    ),
    "user_state": (
        "Merge a user's state; notify_state channels hear of public changes.",
        schemas.UserStateBody,
        ref("UserStateAnswer"),
        ("404",),
    ),
    "user_status": (
        "Set a user's status (0 offline, 1 online, 2 away, 3 hidden, 4 busy) "
        "as state key `status`.",
        schemas.UserStatusBody,
        ref("UserStatusAnswer"),
        ("404",),
    ),
    "channel_config": (
        "Set (replace) the settings of channels, creating them.",
        schemas.ChannelConfigRequest,
        ref("ChannelsInfo"),
        (),
    ),
    "info": (
        "Channels with their settings, history and users.",
        schemas.InfoRequest,
        ref("ChannelsInfo"),
        (),
    ),
    "disconnect": (
        "Close a connection now; true if it existed.",
        schemas.DisconnectBody,
        {"type": "boolean"},
        ("504",),
    ),
}

#: A route this module does not know yet: documented loosely rather than not at all.
_UNDESCRIBED: tuple[str, type[BaseModel] | None, dict[str, Any], tuple[str, ...]] = (
    "(not described yet)",
    None,
    OBJECT,
    ("404", "409"),
)

_MESSAGE_OPERATIONS = (
    ("post", "postMessages", "Publish messages to channels and/or users.", schemas.MessageList),
    ("patch", "editMessages", "Edit messages (history too), by uuid.", schemas.MessageEditList),
    (
        "delete",
        "deleteMessages",
        "Delete messages (history too), by uuid.",
        schemas.MessageDeleteList,
    ),
)


def _responses(
    answer: dict[str, Any], errors: Iterable[str], description: str = "Done."
) -> dict[str, Any]:
    ok = {"description": description, "content": json_content(answer)}
    responses: dict[str, Any] = {"200": ok}
    for status in sorted(errors):
        responses[status] = error_response(_ERRORS[status])
    return responses


class _Components:
    """Collects model schemas into component schemas."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = dict(RESPONSE_SCHEMAS)

    def model(self, model: type[BaseModel]) -> dict[str, str]:
        """Add ``model`` (and the models it uses) and return a reference to it."""
        schema = model.model_json_schema(ref_template=_REF)
        for name, definition in schema.pop("$defs", {}).items():
            self._add(name, definition)
        self._add(model.__name__, schema)
        return ref(model.__name__)

    def _add(self, name: str, schema: dict[str, Any]) -> None:
        known = self.schemas.get(name)
        if known is not None and known != schema:
            raise ValueError(f"two different schemas are called {name!r}")
        self.schemas[name] = schema


def _body(components: _Components, model: type[BaseModel], *, required: bool = True) -> dict:
    return {"required": required, "content": json_content(components.model(model))}


def fragment(routes: Iterable[tuple[str, str, Any, tuple[str, ...]]] = ROUTES) -> Fragment:
    """The server API's fragment.

    :param routes: the server API routes, ``(name, path, view, methods)`` as
        in :data:`channelstream.rest.views.ROUTES`. A route this module does
        not describe yet is listed with a loose body and answer (the tests
        require every route to be described).
    """
    components = _Components()
    paths: dict[str, dict[str, Any]] = {}
    for name, path, _view, methods in routes:
        summary, model, answer, extra = API_OPERATIONS.get(name, _UNDESCRIBED)
        operations = paths.setdefault(path, {})
        for method in methods:
            operation: dict[str, Any] = {
                "operationId": name if len(methods) == 1 else f"{name}_{method.lower()}",
                "tags": [TAG["name"]],
                "summary": summary,
                "responses": _responses(answer, (*_API_ERRORS, *extra)),
            }
            if method == "GET":
                if name == "info":
                    operation["summary"] += " (GET: every channel, full state.)"
            elif model is not None:
                # an empty POST /info means "everything", as a GET does
                operation["requestBody"] = _body(components, model, required=name != "info")
            else:
                operation["requestBody"] = {"content": json_content(OBJECT)}
            operations[method.lower()] = operation
    messages = paths.setdefault("/message", {})
    for method, operation_id, summary, model in _MESSAGE_OPERATIONS:
        messages[method] = {
            "operationId": operation_id,
            "tags": [TAG["name"]],
            "summary": summary,
            "requestBody": _body(components, model),
            "responses": _responses(
                {"type": "array", "items": ref("MessageEcho")}, _API_ERRORS, "The items accepted."
            ),
        }
    return Fragment(TAG, paths, components.schemas, SECURITY_SCHEMES)


__all__ = ["API_OPERATIONS", "SECURITY_SCHEMES", "SIGNATURE_DOC", "TAG", "fragment"]
