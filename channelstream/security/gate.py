"""The server API's gate: caller addresses, signatures, body bounds and CORS.

A feature (``includeme``) included before the API features. It gives views
one option, ``auth``, checked before the view runs::

    config.add_view(connect, route_name="connect", request_method="POST", auth="api")
    config.add_view(stats, route_name="admin_json", auth="admin")

- ``auth="api"``: REMOTE_ADDR must be in ``allow_posting_from`` (no proxy
  header is trusted), else 403; then the request must carry an
  ``X-Channelstream-Signature`` made with ``secret`` over its method,
  request target and exact body bytes (:mod:`channelstream.security.signing`), fresh
  within ``signature_window`` and never seen before, else 401 naming the
  reason. With ``legacy_secret_header = true`` a fresh channelstream 0.7.1
  ``x-channelstream-secret`` token is accepted instead (from the header
  only).
- ``auth="admin"``: the same address check, then a signature made with
  ``admin_secret``, or HTTP basic auth whose password is ``admin_secret``
  (any user name), else 401 with ``WWW-Authenticate: Basic``.
- ``auth=None`` (or no option): no check.

For both, the body is read here under ``max_body_size``
(:func:`channelstream.web.bodies.read_body`: 413 before reading a
``Content-Length`` over it) and put back as ``request.body``, so the view
reads the very bytes that were checked. A ``secret`` query parameter is
refused outright (its value is never logged or echoed), as is a server
whose ``secret``/``admin_secret`` is empty (403: API disabled).

Code paths that are not plain views (a websocket door) call
:func:`require_api` / :func:`require_admin` themselves; both return a
:class:`Caller` and are idempotent within a request.

``includeme`` also adds the CORS tween (:mod:`.cors`) and the error answers
that carry headers (401 with a basic-auth challenge, 503 with Retry-After).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.tweens import INGRESS

from ..errors import Forbidden, Unauthorized
from ..serving.runtime import get_runtime
from ..settings import Settings
from ..settings.parsers import IPNetwork
from ..web.bodies import read_body
from . import signing
from .attempts import FailureLimiter
from .signing import LEGACY_HEADER, SIGNATURE_HEADER, ReplayCache

log = logging.getLogger(__name__)

#: Registry key of the process's :class:`~channelstream.security.signing.ReplayCache`.
REPLAY_CACHE_KEY = "channelstream.replay_cache"
#: Registry key of the admin routes' :class:`~.attempts.FailureLimiter`.
ADMIN_ATTEMPTS_KEY = "channelstream.admin_attempts"
#: environ keys: the callers already admitted, and "the body was read under the bound".
_CALLERS_KEY = "channelstream.callers"

#: Values of the ``auth`` view option.
AUTH_VALUES = ("api", "admin")
ADMIN_REALM = "channelstream admin"


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who a request was admitted as.

    ``role``: ``"api"`` or ``"admin"``; ``scheme``: ``"signature"``,
    ``"legacy"`` (a 0.7.1 token) or ``"basic"`` (admin basic auth).
    """

    role: str
    scheme: str


class AdminUnauthorized(Unauthorized):
    """An admin route refused its credentials: 401 with a basic-auth challenge."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason

    def as_dict(self) -> dict[str, Any]:
        body = super().as_dict()
        body["reason"] = self.reason
        return body

    def headers(self) -> dict[str, str]:
        """The basic-auth challenge, so that a browser asks a person."""
        return {"WWW-Authenticate": f'Basic realm="{ADMIN_REALM}", charset="UTF-8"'}


class LegacyTokenRefused(signing.SignatureError):
    """A 0.7.1 ``x-channelstream-secret`` token while ``legacy_secret_header`` is off."""

    reason = "legacy_disabled"


class SecretInUrl(signing.SignatureError):
    """A ``secret`` query parameter: never accepted, whatever its value."""

    reason = "secret_in_url"


# -- helpers for views and doors -----------------------------------------------------


def require_api(request: Request) -> Caller:
    """Admit a server API call or raise (403 address, 401 signature, 413 body, 503 busy).

    See the module doc for the rules. Reads the body (bounded) before the
    signature check; afterwards ``request.body`` holds it. Idempotent: a
    second call in the same request returns the same :class:`Caller`
    without checking (a signature may be used once only).
    """
    admitted = request.environ.get(_CALLERS_KEY, {})
    if "api" in admitted:
        return admitted["api"]
    settings = _settings(request)
    _check_address(request, settings)
    _refuse_secret_in_url(request)
    if not settings.secret:
        raise Forbidden("the server API is disabled: the server has no secret set")
    header = request.headers.get(SIGNATURE_HEADER)
    legacy = request.headers.get(LEGACY_HEADER)
    if header is None and legacy is not None:
        if not settings.legacy_secret_header:
            raise LegacyTokenRefused(
                f"the {LEGACY_HEADER} header is not accepted (legacy_secret_header = false); "
                f"sign the request with {SIGNATURE_HEADER}"
            )
        signing.verify_legacy_token(settings.secret, legacy, window=settings.signature_window)
        read_body(request, settings.max_body_size)
        return _admit(request, Caller("api", "legacy"))
    _verify_signature(request, settings, settings.secret)
    return _admit(request, Caller("api", "signature"))


def require_admin(request: Request) -> Caller:
    """Admit an admin call or raise (403 address, 401 with a basic-auth challenge, 413).

    A signature made with ``admin_secret``, or HTTP basic auth with
    ``admin_secret`` as password (any user name). Idempotent like
    :func:`require_api`.
    """
    admitted = request.environ.get(_CALLERS_KEY, {})
    if "admin" in admitted:
        return admitted["admin"]
    settings = _settings(request)
    _check_address(request, settings)
    _refuse_secret_in_url(request)
    if not settings.admin_secret:
        raise Forbidden("the admin routes are disabled: the server has no admin_secret set")
    address = request.environ.get("REMOTE_ADDR") or "(unknown)"
    attempts: FailureLimiter = request.registry[ADMIN_ATTEMPTS_KEY]
    attempts.check(address)
    if request.headers.get(SIGNATURE_HEADER) is not None:
        try:
            _verify_signature(request, settings, settings.admin_secret)
        except signing.SignatureError as err:
            attempts.failed(address)
            raise AdminUnauthorized(err.message, reason=err.reason) from None
        attempts.succeeded(address)
        return _admit(request, Caller("admin", "signature"))
    authorization = request.headers.get("Authorization")
    if authorization is None:
        raise AdminUnauthorized(
            "admin credentials required: sign the request with admin_secret, "
            "or use HTTP basic auth with admin_secret as the password",
            reason="missing",
        )
    if not _basic_password_matches(authorization, settings.admin_secret):
        attempts.failed(address)
        raise AdminUnauthorized("wrong admin credentials", reason="bad_credentials")
    attempts.succeeded(address)
    read_body(request, settings.max_body_size)
    return _admit(request, Caller("admin", "basic"))


def address_allowed(allowed: Iterable[IPNetwork], remote_addr: str | None) -> bool:
    """Return whether ``remote_addr`` is in one of ``allowed`` (empty = any address).

    An IPv4-mapped IPv6 address (``::ffff:10.1.2.3``, from a dual-stack
    listener) is also checked as its IPv4 address. Anything that is not an
    IP address (a UNIX socket peer, nothing) is allowed only when the list
    is empty.
    """
    networks = tuple(allowed)
    if not networks:
        return True
    return _address_allowed(networks, remote_addr)


@functools.lru_cache(maxsize=4096)
def _address_allowed(networks: tuple[IPNetwork, ...], remote_addr: str | None) -> bool:
    # Cached: parsing the peer's address was ~1% of every server API call,
    # and backends call from a handful of addresses.
    try:
        address = ipaddress.ip_address((remote_addr or "").split("%", 1)[0])
    except ValueError:
        return False
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(
        candidate in network
        for candidate in candidates
        for network in networks
        if candidate.version == network.version
    )


def get_replay_cache(registry: Registry) -> ReplayCache:
    """Return the process's replay cache (made by :func:`includeme`)."""
    return registry[REPLAY_CACHE_KEY]


# -- the checks ---------------------------------------------------------------------


def _settings(request: Request) -> Settings:
    return get_runtime(request.registry).settings


def _admit(request: Request, caller: Caller) -> Caller:
    request.environ.setdefault(_CALLERS_KEY, {})[caller.role] = caller
    return caller


def _check_address(request: Request, settings: Settings) -> None:
    remote_addr = request.environ.get("REMOTE_ADDR") or "(unknown)"
    if not address_allowed(settings.allow_posting_from, remote_addr):
        raise Forbidden(f"address {remote_addr} is not allowed to call the server API")


def _refuse_secret_in_url(request: Request) -> None:
    if "secret" in request.GET:
        raise SecretInUrl(
            "a secret in the URL is never accepted (URLs end up in logs); "
            f"sign the request with the {SIGNATURE_HEADER} header"
        )


def _verify_signature(request: Request, settings: Settings, secret: str) -> None:
    """Format and time first (no body read for a stale or absent signature), then the rest."""
    header = request.headers.get(SIGNATURE_HEADER)
    now = time.time()
    sig = signing.parse_header(header)
    signing.check_fresh(sig.t, settings.signature_window, now)
    body = read_body(request, settings.max_body_size)
    signing.verify(
        secret,
        request.method,
        signing.request_target(request.environ),
        body,
        header,
        window=settings.signature_window,
        now=now,
        replay_cache=get_replay_cache(request.registry),
    )


def _basic_password_matches(authorization: str, secret: str) -> bool:
    """Constant time over SHA-256 digests: the time tells nothing of the length."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    _, sep, password = decoded.partition(b":")
    given = hashlib.sha256(password).digest()
    wanted = hashlib.sha256(secret.encode("utf-8")).digest()
    return hmac.compare_digest(given, wanted) and bool(sep)


# -- the view option ---------------------------------------------------------------------


def auth_view(view: Callable[..., Any], info: Any) -> Callable[..., Any]:
    """View deriver of the ``auth`` option: check the caller before the view runs."""
    auth = info.options.get("auth")
    if auth is None:
        return view
    if auth not in AUTH_VALUES:
        raise ConfigurationError(
            f"auth={auth!r} is not a known view auth; use one of {AUTH_VALUES} or None"
        )
    check = require_api if auth == "api" else require_admin

    def checked_view(context: Any, request: Request) -> Any:
        check(request)
        return view(context, request)

    return checked_view


auth_view.options = ("auth",)  # type: ignore[attr-defined]


# -- CORS ------------------------------------------------------------------------------------


def includeme(config: Configurator) -> None:
    """Add the ``auth`` view option, the replay cache, the CORS tween and error answers."""
    settings = get_runtime(config.registry).settings
    config.registry[REPLAY_CACHE_KEY] = ReplayCache(
        settings.signature_window, settings.replay_cache_size
    )
    config.registry[ADMIN_ATTEMPTS_KEY] = FailureLimiter(
        settings.admin_max_failures, settings.admin_failure_window, what="admin logins"
    )
    config.add_view_deriver(auth_view, "channelstream_auth", under=INGRESS, over="secured_view")
    config.add_tween("channelstream.security.cors.cors_tween_factory", under=INGRESS)

