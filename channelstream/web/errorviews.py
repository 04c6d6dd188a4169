"""The HTTP error edge: every error answer of the Pyramid app is JSON.

Views and doors raise :class:`~channelstream.errors.ClientError` (or a
Pyramid HTTP exception); the exception views registered here turn them into
``{"error": ..., "code": ...}`` answers with the right status, in one place.
Anything else is an internal error: logged with its traceback and answered
``500 {"error": "internal error"}`` without details. A client can never cause
a 500 through input that the app checks.
"""

from __future__ import annotations

import logging

from pyramid.config import Configurator
from pyramid.exceptions import PredicateMismatch, URLDecodeError
from pyramid.httpexceptions import HTTPException, HTTPNotFound
from pyramid.request import Request
from pyramid.response import Response

from ..errors import ClientError
from ..hub.bus import EngineUnavailable
from .responses import json_response

log = logging.getLogger(__name__)


def json_error(status: int, body: dict) -> Response:
    """Return a JSON error response; errors are never cached."""
    return json_response(body, status)


def not_found(exc: HTTPNotFound, request: Request) -> Response:
    """No route matches: 404 naming the path; a route without a view for
    this method: 405 (every predicate of our views is a request method)."""
    if isinstance(exc, PredicateMismatch):
        return json_error(
            405,
            {
                "error": f"method {request.method} is not allowed on {request.path}",
                "code": "method_not_allowed",
            },
        )
    return json_error(404, {"error": f"no such resource: {request.path}", "code": "not_found"})


def client_error(exc: ClientError, request: Request) -> Response:
    """A refused request: its status, message and headers (``Retry-After``...)."""
    response = json_error(exc.status, exc.as_dict())
    response.headers.update(exc.headers())
    return response


def engine_unavailable(exc: EngineUnavailable, request: Request) -> Response:
    """The shared engine is down: 503 saying which and why (nothing was done)."""
    response = json_error(503, {"error": str(exc), "code": "engine_unavailable"})
    response.headers["Retry-After"] = "5"
    return response


def http_exception(exc: HTTPException, request: Request) -> Response:
    """A Pyramid HTTP exception: redirects pass through, errors become JSON."""
    if exc.code < 400:
        return exc
    response = json_error(exc.code, {"error": exc.detail or exc.title, "code": _slug(exc.title)})
    for name in ("Allow", "WWW-Authenticate", "Retry-After"):
        if name in exc.headers:
            response.headers[name] = exc.headers[name]
    return response


def bad_url(exc: URLDecodeError, request: Request) -> Response:
    """A path that is not valid percent-encoded UTF-8."""
    return json_error(400, {"error": "the URL is not valid UTF-8", "code": "bad_request"})


def internal_error(exc: Exception, request: Request) -> Response:
    """A bug or an unexpected failure: log the traceback, tell the client nothing more."""
    log.error("internal error on %s %s", request.method, request.path, exc_info=exc)
    return json_error(500, {"error": "internal error", "code": "internal"})


def _slug(title: str) -> str:
    return title.lower().replace(" ", "_").replace("-", "_")


def includeme(config: Configurator) -> None:
    """Register the JSON not-found view and the exception views."""
    config.add_notfound_view(not_found)
    config.add_exception_view(client_error, context=ClientError)
    config.add_exception_view(engine_unavailable, context=EngineUnavailable)
    config.add_exception_view(http_exception, context=HTTPException)
    config.add_exception_view(bad_url, context=URLDecodeError)
    config.add_exception_view(internal_error, context=Exception)
