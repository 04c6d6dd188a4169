"""``GET /openapi.json``: the server API described in OpenAPI 3.1, built once.

The document is made when the app is built (:func:`includeme`), from the
routes of :mod:`channelstream.rest.views` and the pydantic models of
:mod:`channelstream.rest.schemas`, so a field added to a model shows up
here with nothing else to edit. Request bodies are the models' JSON
Schemas (pydantic emits JSON Schema 2020-12, which is OpenAPI 3.1's
dialect, so they go in unchanged); their ``$defs`` become
``components/schemas``. Answers are described by hand, loosely where their
shape is dynamic (channel history, message echoes). The view serves the
same bytes every time; it needs no credentials: it is documentation.

The operations routes (``/admin/admin.json``, ``/admin``, ``/metrics``,
``/healthz``) are described too, with their own credentials, and so are
loom's byte-stream routes (:mod:`loom.openapi`, tag ``loom``), which every
app serves.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

import loom.openapi

from .. import __version__
from ..rest import schemas
from ..rest.views import ROUTES
from ..security.signing import SIGNATURE_HEADER
from .admin import ADMIN_JSON_PATH, ADMIN_PATH
from .metrics import METRICS_PATH

#: Registry key of the document's encoded bytes.
OPENAPI_KEY = "channelstream.ops.openapi"
OPENAPI_PATH = "/openapi.json"
OPENAPI_VERSION = "3.1.0"

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

ADMIN_SIGNATURE_DOC = (
    f"The same `{SIGNATURE_HEADER}` scheme as the server API, made with `admin_secret`."
)

# -- answers ------------------------------------------------------------------------------

_STRINGS = {"type": "array", "items": {"type": "string"}}
_OBJECT = {"type": "object"}
_SCALAR = {"type": ["string", "number", "integer", "boolean", "null"]}
_STATE = {"type": "object", "additionalProperties": _SCALAR}


def _obj(properties: dict[str, Any], *, optional: Iterable[str] = ()) -> dict[str, Any]:
    """An object with ``properties``, all required but ``optional``; other keys allowed."""
    skipped = set(optional)
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in skipped],
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        **_obj(
            {
                "error": {"type": "string", "description": "what went wrong, for people"},
                "code": {"type": "string", "description": "a stable name: bad_request..."},
                "field": {"type": "string", "description": "the field at fault"},
                "errors": {
                    "type": "array",
                    "description": "every invalid field (422)",
                    "items": _obj({"field": {"type": "string"}, "message": {"type": "string"}}),
                },
                "reason": {
                    "type": "string",
                    "description": "why credentials were refused (401): missing, malformed, "
                    "expired, bad_signature, replayed...",
                },
            },
            optional=("field", "errors", "reason"),
        ),
        "description": "Every error answer.",
    },
    "ChannelSettings": _obj(
        {
            "notify_presence": {"type": "boolean"},
            "store_history": {"type": "boolean"},
            "history_size": {"type": "integer"},
            "broadcast_presence_with_user_lists": {"type": "boolean"},
            "notify_state": {"type": "boolean"},
            "store_frames": {"type": "boolean"},
        }
    ),
    "ChannelInfo": _obj(
        {
            "uuid": {"type": "string"},
            "name": {"type": "string"},
            "long_name": {"type": ["string", "null"]},
            "settings": _ref("ChannelSettings"),
            "history": {"type": "array", "items": _OBJECT},
            "last_active": {"type": "string"},
            "total_connections": {"type": "integer", "minimum": 0},
            "total_users": {"type": "integer", "minimum": 0},
            "users": _STRINGS,
            "epoch": {"type": ["string", "null"]},
            "last_offset": {"type": "integer"},
            "connections": {
                "type": "object",
                "additionalProperties": _STRINGS,
                "description": "user -> connection ids (include_connections)",
            },
        },
        optional=("connections",),
    ),
    "ChannelsInfo": _obj(
        {
            "channels": {"type": "object", "additionalProperties": _ref("ChannelInfo")},
            "users": {
                "type": "array",
                "items": _obj({"user": {"type": "string"}, "state": _STATE}),
            },
        }
    ),
    "ConnectAnswer": _obj(
        {
            "conn_id": {"type": "string", "format": "uuid"},
            "state": _STATE,
            "username": {"type": "string"},
            "public_state": _STATE,
            "channels": _STRINGS,
            "channels_info": _ref("ChannelsInfo"),
        }
    ),
    "SubscribeAnswer": _obj(
        {
            "channels": _STRINGS,
            "channels_info": _ref("ChannelsInfo"),
            "subscribed_to": _STRINGS,
        }
    ),
    "UnsubscribeAnswer": _obj(
        {
            "channels": _STRINGS,
            "channels_info": _ref("ChannelsInfo"),
            "unsubscribed_from": _STRINGS,
        }
    ),
    "UserStateAnswer": _obj(
        {
            "user_state": _STATE,
            "changed_state": {
                "type": "array",
                "items": _obj({"key": {"type": "string"}, "value": _SCALAR}),
            },
            "public_keys": _STRINGS,
        }
    ),
    "UserStatusAnswer": {
        "allOf": [
            _ref("UserStateAnswer"),
            _obj({"user": {"type": "string"}, "status": {"type": "integer"}}),
        ]
    },
    "MessageEcho": {
        **_obj(
            {
                "uuid": {"type": "string"},
                "channel": {"type": ["string", "null"]},
                "pm_users": _STRINGS,
                "exclude_users": _STRINGS,
                "no_history": {"type": "boolean"},
            }
        ),
        "description": "An item as accepted (with its uuid, timestamp, user, message...).",
    },
    "AdminStats": _obj(
        {
            "remembered_user_count": {"type": "integer", "minimum": 0},
            "unique_user_count": {"type": "integer", "minimum": 0},
            "total_connections": {"type": "integer", "minimum": 0},
            "total_channels": {"type": "integer", "minimum": 0},
            "total_messages": {"type": "integer", "minimum": 0},
            "total_unique_messages": {"type": "integer", "minimum": 0},
            "channels": {"type": "object", "additionalProperties": _ref("ChannelInfo")},
            "users": {
                "type": "array",
                "items": _obj(
                    {"user": {"type": "string"}, "state": _STATE, "connections": _STRINGS}
                ),
            },
            "uptime": {"type": "string", "examples": ["1 day, 2:03:04"]},
            "version": {"type": "string"},
            "hub": _OBJECT,
            "doors": {"type": "object", "additionalProperties": _OBJECT},
            "slow_disconnects": {"type": ["integer", "null"]},
        }
    ),
    "Health": _obj(
        {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "state": {"type": "string"},
            "version": {"type": "string"},
            "pid": {"type": "integer"},
            "uptime_seconds": {"type": "number"},
            "doors": {"type": "object", "additionalProperties": _OBJECT},
            "hub": _OBJECT,
        }
    ),
}

_ERRORS = {
    "400": "The body is not JSON, or a header is malformed.",
    "401": "Missing, malformed, expired, wrong or replayed signature.",
    "403": "The caller's address is not in allow_posting_from, or the API is disabled.",
    "404": "Unknown connection or user.",
    "409": "The connection id belongs to another user.",
    "413": "The body is over max_body_size.",
    "422": "A field does not validate; `field` names the first, `errors` lists all.",
    "503": "Too many signed calls within the window (replay cache full); see Retry-After.",
}
_API_ERRORS = ("400", "401", "403", "413", "422", "503")
_ADMIN_ERRORS = ("400", "401", "403", "413", "503")


# -- operations ---------------------------------------------------------------------------

#: route name -> (summary, request model, answer schema, extra error statuses)
API_OPERATIONS: dict[str, tuple[str, type[BaseModel] | None, dict[str, Any], tuple[str, ...]]] = {
    "connect": (
        "Connect a user: a new (or reused) connection, joined to channels.",
        schemas.ConnectBody,
        _ref("ConnectAnswer"),
        ("409",),
    ),
    "subscribe": (
        "Join a connection to channels (created if need be).",
        schemas.SubscribeBody,
        _ref("SubscribeAnswer"),
        ("404",),
    ),
    "unsubscribe": (
        "Take a connection out of channels.",
        schemas.SubscribeBody,
        _ref("UnsubscribeAnswer"),
        ("404",),
    ),
    "user_state": (
        "Merge a user's state; notify_state channels hear of public changes.",
        schemas.UserStateBody,
        _ref("UserStateAnswer"),
        ("404",),
    ),
    "user_status": (
        "Set a user's status (0 offline, 1 online, 2 away, 3 hidden, 4 busy) "
        "as state key `status`.",
        schemas.UserStatusBody,
        _ref("UserStatusAnswer"),
        ("404",),
    ),
    "channel_config": (
        "Set (replace) the settings of channels, creating them.",
        schemas.ChannelConfigRequest,
        _ref("ChannelsInfo"),
        (),
    ),
    "info": (
        "Channels with their settings, history and users.",
        schemas.InfoRequest,
        _ref("ChannelsInfo"),
        (),
    ),
    "disconnect": (
        "Close a connection now; true if it existed.",
        schemas.DisconnectBody,
        {"type": "boolean"},
        (),
    ),
}

#: A route this module does not know yet: documented loosely rather than not at all.
_UNDESCRIBED: tuple[str, type[BaseModel] | None, dict[str, Any], tuple[str, ...]] = (
    "(not described yet)",
    None,
    _OBJECT,
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


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(
    answer: dict[str, Any], errors: Iterable[str], description: str = "Done."
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": description, "content": _json_content(answer)}
    }
    for status in sorted(errors):
        responses[status] = {
            "description": _ERRORS[status],
            "content": _json_content(_ref("Error")),
        }
    return responses


class _Components:
    """Collects model schemas into ``components/schemas``."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = copy.deepcopy(RESPONSE_SCHEMAS)
        for name, schema in loom.openapi.SCHEMAS.items():
            self._add(name, copy.deepcopy(schema))

    def model(self, model: type[BaseModel]) -> dict[str, str]:
        """Add ``model`` (and the models it uses) and return a reference to it."""
        schema = model.model_json_schema(ref_template=_REF)
        for name, definition in schema.pop("$defs", {}).items():
            self._add(name, definition)
        self._add(model.__name__, schema)
        return _ref(model.__name__)

    def _add(self, name: str, schema: dict[str, Any]) -> None:
        known = self.schemas.get(name)
        if known is not None and known != schema:
            raise ValueError(f"two different schemas are called {name!r}")
        self.schemas[name] = schema


def _body(components: _Components, model: type[BaseModel], *, required: bool = True) -> dict:
    return {"required": required, "content": _json_content(components.model(model))}


def build_document(
    routes: Iterable[tuple[str, str, Any, tuple[str, ...]]] = ROUTES,
) -> dict[str, Any]:
    """Return the OpenAPI document of the server API and the operations routes.

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
                "tags": ["server API"],
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
                operation["requestBody"] = {"content": _json_content(_OBJECT)}
            operations[method.lower()] = operation
    messages = paths.setdefault("/message", {})
    for method, operation_id, summary, model in _MESSAGE_OPERATIONS:
        messages[method] = {
            "operationId": operation_id,
            "tags": ["server API"],
            "summary": summary,
            "requestBody": _body(components, model),
            "responses": _responses(
                {"type": "array", "items": _ref("MessageEcho")}, _API_ERRORS, "The items accepted."
            ),
        }
    admin_security = [{"adminSignature": []}, {"adminBasic": []}]
    for path, operation_id in ((ADMIN_JSON_PATH, "adminJson"), (ADMIN_PATH, "admin")):
        paths[path] = {
            "get": {
                "operationId": operation_id,
                "tags": ["operations"],
                "summary": "The process's users, connections, channels and counters.",
                "security": admin_security,
                "responses": _responses(_ref("AdminStats"), _ADMIN_ERRORS),
            }
        }
    metrics_answer = {"description": "Prometheus text (or OpenMetrics, per Accept)."}
    metrics_answer["content"] = {"text/plain": {"schema": {"type": "string"}}}
    paths[METRICS_PATH] = {
        "get": {
            "operationId": "metrics",
            "tags": ["operations"],
            "summary": "Prometheus metrics of the process.",
            "security": admin_security,
            "responses": {
                "200": metrics_answer,
                **{k: v for k, v in _responses({}, _ADMIN_ERRORS).items() if k != "200"},
            },
        }
    }
    paths["/healthz"] = {
        "get": {
            "operationId": "healthz",
            "tags": ["operations"],
            "summary": "The process's health (200 even when degraded).",
            "security": [],
            "responses": _responses(_ref("Health"), ()),
        }
    }
    paths.update(copy.deepcopy(loom.openapi.PATHS))
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "channelstream server API",
            "version": __version__,
            "description": "JSON over HTTP from backends to the hub. Every call is signed; "
            "see the `signature` security scheme. loom's byte streams (tag `loom`) take "
            "bearer tokens instead.",
        },
        "tags": [
            {"name": "server API", "description": "Calls of backends, signed with `secret`."},
            {"name": "operations", "description": "For admins and probes."},
            loom.openapi.TAG,
        ],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "securitySchemes": {
                "signature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": SIGNATURE_HEADER,
                    "description": SIGNATURE_DOC,
                },
                "adminSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": SIGNATURE_HEADER,
                    "description": ADMIN_SIGNATURE_DOC,
                },
                "adminBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "Any user name, `admin_secret` as the password.",
                },
                **loom.openapi.SECURITY_SCHEMES,
            },
        },
        "security": [{"signature": []}],
    }


def openapi_json(request: Request) -> Response:
    """The document, as built at startup."""
    response = Response(body=request.registry[OPENAPI_KEY], content_type="application/json")
    response.cache_control = "no-cache"
    return response


def includeme(config: Configurator) -> None:
    """Build the document once and add ``/openapi.json`` (GET, no credentials)."""
    document = build_document()
    config.registry[OPENAPI_KEY] = json.dumps(document, ensure_ascii=False).encode("utf-8")
    config.add_route("openapi", OPENAPI_PATH)
    config.add_view(openapi_json, route_name="openapi", request_method="GET")
