"""Errors a client can cause, as one typed tree.

Doors and views raise these; they are turned into a wire answer at one edge
per protocol (for HTTP: the exception views of :mod:`channelstream.web.errorviews`,
which answer ``{"error": message, "field": field}`` with :attr:`status`).
This module imports nothing from a framework so that the hub, the doors and
a signing client can share it.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ClientError(Exception):
    """A request was refused because of what the client sent or asked for.

    :param message: a clear, client-safe explanation (never a traceback).
    :param field: the request field at fault, when there is one.

    Subclasses fix :attr:`status` (the HTTP status) and :attr:`code` (a
    stable machine-readable name).
    """

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON body that describes this error."""
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.field is not None:
            body["field"] = self.field
        return body

    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries besides the body (none by default)."""
        return {}


class BadRequest(ClientError):
    """Malformed input: not JSON, wrong type, missing field."""


class Unauthorized(ClientError):
    """Missing or bad signature, token or credentials."""

    status = 401
    code = "unauthorized"


class Forbidden(ClientError):
    """The caller is known but not allowed (e.g. not in allow_posting_from)."""

    status = 403
    code = "forbidden"


class NotFound(ClientError):
    """An unknown connection, user, channel or stream."""

    status = 404
    code = "not_found"


class Conflict(ClientError):
    """The thing already exists (e.g. a stream id in use)."""

    status = 409
    code = "conflict"


class PayloadTooLarge(ClientError):
    """A body or frame over its configured bound."""

    status = 413
    code = "too_large"


class Unavailable(ClientError):
    """The service cannot take this now (e.g. loom's live streams at their bound)."""

    status = 503
    code = "unavailable"


class TooManyRequests(ClientError):
    """Too many attempts from one caller: try again after :attr:`retry_after` seconds."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Unprocessable(ClientError):
    """Well-formed input whose values are not acceptable."""

    status = 422
    code = "unprocessable"
