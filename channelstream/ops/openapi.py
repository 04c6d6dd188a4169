"""``GET /openapi.json``: the app's routes in OpenAPI 3.1, joined once from the doors.

Every HTTP door registers its own fragment while the app is built
(:func:`channelstream.web.openapi.add_fragment`: the server API in
:mod:`channelstream.rest.openapi`, the client transports in
:mod:`channelstream.transports.openapi`, packet ingest in
:mod:`channelstream.packets.openapi`, loom in :mod:`loom.openapi`); this
feature adds the operations routes (``/admin/admin.json``, ``/admin``,
``/metrics``, ``/healthz``) and, included after every door, joins the
fragments of the doors that are on into one document. The view serves the
same bytes every time; it needs no credentials: it is documentation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from .. import __version__
from ..security.signing import SIGNATURE_HEADER
from ..web.openapi import (
    OBJECT,
    STATE,
    STRINGS,
    Fragment,
    add_fragment,
    assemble,
    error_response,
    fragments,
)
from ..web.openapi import json_content as _json_content
from ..web.openapi import obj as _obj
from ..web.openapi import ref as _ref
from .admin import ADMIN_JSON_PATH, ADMIN_PATH
from .metrics import METRICS_PATH

#: Registry key of the document's encoded bytes.
OPENAPI_KEY = "channelstream.ops.openapi"
OPENAPI_PATH = "/openapi.json"

TAG = {"name": "operations", "description": "For admins and probes."}

INFO = {
    "title": "channelstream server API",
    "version": __version__,
    "description": "JSON over HTTP from backends to the hub. Every call is signed; "
    "see the `signature` security scheme. loom's byte streams (tag `loom`) take "
    "bearer tokens instead.",
}

ADMIN_SIGNATURE_DOC = (
    f"The same `{SIGNATURE_HEADER}` scheme as the server API, made with `admin_secret`."
)

SECURITY_SCHEMES: dict[str, Any] = {
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
}


SCHEMAS: dict[str, dict[str, Any]] = {
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
                    {"user": {"type": "string"}, "state": STATE, "connections": STRINGS}
                ),
            },
            "uptime": {"type": "string", "examples": ["1 day, 2:03:04"]},
            "version": {"type": "string"},
            "hub": OBJECT,
            "doors": {"type": "object", "additionalProperties": OBJECT},
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
            "doors": {"type": "object", "additionalProperties": OBJECT},
            "hub": OBJECT,
            "http": OBJECT,
        },
        # healthz_details = admin: the others see only status and state
        optional=("version", "pid", "uptime_seconds", "doors", "hub", "http"),
    ),
}

_ADMIN_ERRORS = {
    "400": "The body is not JSON, or a header is malformed.",
    "401": "Missing or wrong admin credentials.",
    "403": "The caller's address is not in allow_posting_from, or admin is disabled.",
    "413": "The body is over max_body_size.",
    "503": "Too many signed calls within the window (replay cache full); see Retry-After.",
}


def _responses(answer: dict[str, Any], errors: Iterable[str]) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "Done.", "content": _json_content(answer)}}
    for status in sorted(errors):
        responses[status] = error_response(_ADMIN_ERRORS[status])
    return responses


def fragment() -> Fragment:
    """The operations routes' fragment."""
    admin_security = [{"adminSignature": []}, {"adminBasic": []}]
    paths: dict[str, Any] = {}
    for path, operation_id in ((ADMIN_JSON_PATH, "adminJson"), (ADMIN_PATH, "admin")):
        paths[path] = {
            "get": {
                "operationId": operation_id,
                "tags": [TAG["name"]],
                "summary": "The process's users, connections, channels and counters.",
                "security": admin_security,
                "responses": _responses(_ref("AdminStats"), _ADMIN_ERRORS),
            }
        }
    # 0.7.1's demo POSTs to admin.json: the same answer; the body is ignored.
    paths[ADMIN_JSON_PATH]["post"] = {
        **paths[ADMIN_JSON_PATH]["get"],
        "operationId": "adminJsonPost",
        "description": "As GET (channelstream 0.7.1 clients POST); any body is ignored.",
    }
    metrics_answer = {
        "description": "Prometheus text (or OpenMetrics, per Accept).",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    paths[METRICS_PATH] = {
        "get": {
            "operationId": "metrics",
            "tags": [TAG["name"]],
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
            "tags": [TAG["name"]],
            "summary": "The process's health (200 even when degraded).",
            "security": [],
            "responses": _responses(_ref("Health"), ()),
        }
    }
    return Fragment(TAG, paths, SCHEMAS, SECURITY_SCHEMES)


def build_document(parts: Iterable[Fragment]) -> dict[str, Any]:
    """The document of ``parts`` (the fragments of the doors that are on)."""
    return assemble(parts, info=INFO, security=[{"signature": []}])


def openapi_json(request: Request) -> Response:
    """The document, as built at startup."""
    body = request.registry[OPENAPI_KEY]
    return Response(body=body, content_type="application/json", cache_control="no-cache")


def includeme(config: Configurator) -> None:
    """Add the operations fragment, join every fragment, and add ``/openapi.json``.

    Included after every door (:data:`channelstream.wsgi_app.FEATURES`): the
    document holds what the features before it registered.
    """
    add_fragment(config.registry, fragment())
    document = build_document(fragments(config.registry))
    config.registry[OPENAPI_KEY] = json.dumps(document, ensure_ascii=False).encode("utf-8")
    config.add_route("openapi", OPENAPI_PATH)
    config.add_view(openapi_json, route_name="openapi", request_method="GET")
