"""Bearer tokens: read from the ``Authorization`` header only, compared in constant time.

Doors that take tokens (loom, ``POST /packets``) refuse a token in the URL
(:func:`token_in_url`: URLs end up in logs), read ``Authorization: Bearer
<token>`` (:func:`bearer_token`) and compare it with every configured token
(:func:`token_matches`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from pyramid.request import Request

#: Query parameters that look like a credential: refused, never read.
URL_TOKEN_PARAMS = ("token", "access_token")


def token_in_url(request: Request) -> str | None:
    """The name of a credential-like query parameter the request carries, if any.

    Doors that take bearer tokens refuse such requests (URLs end up in logs).
    """
    for name in URL_TOKEN_PARAMS:
        if name in request.GET:
            return name
    return None


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None without one)."""
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    return given.strip()


def token_matches(given: str, tokens: Iterable[str]) -> bool:
    """Whether ``given`` is one of ``tokens``, compared in constant time.

    Every token is compared (no early exit) and through its SHA-256, so the
    time says nothing about which token is near nor how long they are.
    """
    wanted = _token_digest(given)
    found = False
    for token in tokens:
        found |= hmac.compare_digest(wanted, _token_digest(token))
    return found and bool(given)


def _token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()

