"""CORS for the origins listed in ``allow_cors`` only (``*`` = any).

A tween (added by :mod:`channelstream.security.gate`'s ``includeme``)
answers preflight ``OPTIONS`` requests on any path with 204, and adds
``Access-Control-Allow-Origin: <origin>`` and ``Vary: Origin`` to every
other response, errors included. Other origins get no CORS header at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response

from ..serving.runtime import get_runtime
from .signing import LEGACY_HEADER, SIGNATURE_HEADER

#: What CORS preflight answers allow.
CORS_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_HEADERS = ("Content-Type", SIGNATURE_HEADER, "Authorization", "Last-Event-ID")
CORS_MAX_AGE = "600"


def cors_tween_factory(handler: Callable[[Request], Response], registry: Registry) -> Any:
    """The CORS tween: preflights and allow-origin headers for ``allow_cors`` origins only."""
    settings = get_runtime(registry).settings
    allowed = frozenset(settings.allow_cors)
    if not allowed:
        return handler
    any_origin = "*" in allowed
    headers = CORS_HEADERS + ((LEGACY_HEADER,) if settings.legacy_secret_header else ())
    allow_headers = ", ".join(headers)

    def cors_tween(request: Request) -> Response:
        origin = request.headers.get("Origin")
        if origin is None or not (any_origin or origin in allowed):
            return handler(request)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response = Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
            response.headers["Access-Control-Allow-Headers"] = allow_headers
            response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
        else:
            response = handler(request)
        response.headers["Access-Control-Allow-Origin"] = origin
        vary = [v.strip() for v in response.headers.get("Vary", "").split(",") if v.strip()]
        if "origin" not in (v.lower() for v in vary):
            response.headers["Vary"] = ", ".join([*vary, "Origin"])
        return response

    return cors_tween

