"""Signed server API calls: the request signature, its checks and its replay guard.

Pure standard library (plus :mod:`channelstream.errors`, which is pure too),
so that the server, the Python client and a backend in any language do the
same thing. The wire format, in full::

    X-Channelstream-Signature: t=<unix seconds>,n=<nonce>,v1=<hex>

    hex = lowercase hex of HMAC-SHA256(key = secret as UTF-8, message =
          "<t>\\n<n>\\n<METHOD>\\n<path_qs>\\n<sha256 hex of the body>")

- ``t``: the signer's clock in whole unix seconds (decimal, at most 12 digits);
- ``n``: a nonce, 1 to 128 characters of ``A-Z a-z 0-9 . _ ~ -``, never reused
  by the signer (:func:`sign` uses 16 random bytes in hex);
- ``METHOD``: the HTTP method, upper case (``GET``, ``POST``, ``PATCH``...);
- ``path_qs``: the request target exactly as sent on the HTTP request line:
  the path, then ``?`` and the query string when the target has a ``?``; no
  scheme, host or fragment; percent-escapes exactly as written
  (``/info?channel=a%20b``). The server takes it from the WSGI environ (see
  :func:`request_target`), so a proxy that rewrites paths breaks signatures;
- the body hash: lowercase hex SHA-256 of the exact body bytes (for an empty
  body, of ``b""``: ``e3b0c442...b855``);
- the message is UTF-8; the five parts are joined by ``\\n`` (no trailing one).

The server (:func:`verify`) accepts the three items in any order, with
spaces around them, ignores unknown items (room for a ``v2``), and refuses:
a missing or malformed header; ``t`` more than ``window`` seconds from its
own clock, either way; a wrong ``v1`` (compared in constant time); a
``(t, n)`` pair already accepted within the window (:class:`ReplayCache`).

Compatibility: :func:`verify_legacy_token` checks the token that
channelstream 0.7.1 backends send in ``x-channelstream-secret``
(``itsdangerous.TimestampSigner(secret).sign(anything)``), within the same
window either way. Such a token is bound to nothing (method, path, body) and
two calls in the same second carry the same token, so it cannot be guarded
against replay: the server accepts it only when ``legacy_secret_header`` is on.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import heapq
import hmac
import math
import re
import secrets as _secrets
import time
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from ..errors import Unauthorized, Unavailable

#: The header that carries the signature.
SIGNATURE_HEADER = "X-Channelstream-Signature"
#: The channelstream 0.7.1 header (itsdangerous token), accepted only on opt-in.
LEGACY_HEADER = "X-Channelstream-Secret"

#: SHA-256 hex of an empty body.
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()

_NONCE = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
_TIME = re.compile(r"^[0-9]{1,12}$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_MAX_HEADER = 512
_MAX_LEGACY_TOKEN = 4096
#: Characters of a request path left as they are when rebuilding it from PATH_INFO.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


# -- errors ----------------------------------------------------------------------


class SignatureError(Unauthorized):
    """A request's signature (or legacy token) was refused; 401.

    :attr:`reason` is a stable name of why, also in the JSON body
    (``{"error": ..., "code": "unauthorized", "reason": "expired"}``).
    """

    reason: ClassVar[str] = "bad_signature"

    def as_dict(self) -> dict[str, Any]:
        body = super().as_dict()
        body["reason"] = self.reason
        return body


class MissingSignature(SignatureError):
    """No signature header at all."""

    reason = "missing"


class MalformedSignature(SignatureError):
    """A header that does not follow the format."""

    reason = "malformed"


class ExpiredSignature(SignatureError):
    """``t`` is more than the window away from the server's clock (past or future)."""

    reason = "expired"


class BadSignature(SignatureError):
    """The HMAC does not match what the server received."""

    reason = "bad_signature"


class ReplayedSignature(SignatureError):
    """The ``(t, n)`` pair was already accepted within the window."""

    reason = "replayed"


class ReplayCacheFull(Unavailable):
    """The replay cache is full of live signatures: try again later; 503.

    Only authentic requests reach the cache, so this means the backends
    call faster than ``replay_cache_size`` per window allows.
    :attr:`retry_after` is the number of seconds until room is made.
    """

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


# -- the signature -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SignatureHeader:
    """The parsed items of a signature header."""

    t: int
    n: str
    v1: str


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def body_digest(body: bytes | str | None) -> str:
    """Return the lowercase hex SHA-256 of ``body`` (``None`` is an empty body)."""
    return hashlib.sha256(_bytes(body or b"")).hexdigest()


def string_to_sign(t: int, n: str, method: str, path_qs: str, body: bytes | str | None) -> bytes:
    """Return the exact bytes that are HMAC'd: ``t, n, METHOD, path_qs, body hash`` by ``\\n``."""
    return "\n".join((str(t), n, method.upper(), path_qs, body_digest(body))).encode("utf-8")


def signature_hex(
    secret: str | bytes, t: int, n: str, method: str, path_qs: str, body: bytes | str | None
) -> str:
    """Return the ``v1`` value: lowercase hex HMAC-SHA256 of :func:`string_to_sign`."""
    message = string_to_sign(t, n, method, path_qs, body)
    return hmac.new(_bytes(secret), message, hashlib.sha256).hexdigest()


def new_nonce() -> str:
    """Return a fresh nonce: 16 random bytes in hex."""
    return _secrets.token_hex(16)


def sign(
    secret: str | bytes,
    method: str,
    path_qs: str,
    body: bytes | str | None = b"",
    *,
    now: float | None = None,
    nonce: str | None = None,
) -> str:
    """Return the value of the ``X-Channelstream-Signature`` header for one request.

    :param secret: the shared secret (``secret``, or ``admin_secret`` for admin routes).
    :param path_qs: the request target exactly as it will be sent (``/info?x=1``).
    :param body: the exact body bytes that will be sent (str is UTF-8 encoded).
    :param now: the signing time in unix seconds (default: the clock).
    :param nonce: a unique nonce (default: :func:`new_nonce`).

    Raises :class:`ValueError` for an empty secret or a nonce out of format.
    """
    if not secret:
        raise ValueError("cannot sign with an empty secret")
    t = int(time.time() if now is None else now)
    n = new_nonce() if nonce is None else nonce
    if not _NONCE.match(n):
        raise ValueError(f"a nonce is 1-128 characters of A-Z a-z 0-9 . _ ~ -, got {n!r}")
    return f"t={t},n={n},v1={signature_hex(secret, t, n, method, path_qs, body)}"


def parse_header(value: str | None) -> SignatureHeader:
    """Parse a signature header; raise :class:`MissingSignature` or :class:`MalformedSignature`."""
    if value is None or not value.strip():
        raise MissingSignature(f"missing {SIGNATURE_HEADER} header")
    if len(value) > _MAX_HEADER:
        raise MalformedSignature(f"malformed {SIGNATURE_HEADER} header: longer than {_MAX_HEADER}")
    items: dict[str, str] = {}
    for part in value.split(","):
        name, sep, item = part.strip().partition("=")
        if not sep or not name:
            raise MalformedSignature(
                f"malformed {SIGNATURE_HEADER} header: expected t=<unix seconds>,"
                "n=<nonce>,v1=<hex>"
            )
        if name in items:
            raise MalformedSignature(f"malformed {SIGNATURE_HEADER} header: {name} repeats")
        items[name] = item.strip()
    for name in ("t", "n", "v1"):
        if name not in items:
            raise MalformedSignature(f"malformed {SIGNATURE_HEADER} header: no {name}=")
    if not _TIME.match(items["t"]):
        raise MalformedSignature(
            f"malformed {SIGNATURE_HEADER} header: t must be whole unix seconds"
        )
    if not _NONCE.match(items["n"]):
        raise MalformedSignature(
            f"malformed {SIGNATURE_HEADER} header: n must be 1-128 characters of "
            "A-Z a-z 0-9 . _ ~ -"
        )
    if not _HEX64.match(items["v1"]):
        raise MalformedSignature(
            f"malformed {SIGNATURE_HEADER} header: v1 must be 64 hex digits (HMAC-SHA256)"
        )
    return SignatureHeader(int(items["t"]), items["n"], items["v1"].lower())


def check_fresh(t: int, window: float, now: float | None = None) -> None:
    """Raise :class:`ExpiredSignature` unless ``t`` is within ``window`` seconds of ``now``."""
    now = time.time() if now is None else now
    skew = now - t
    if skew > window:
        raise ExpiredSignature(
            f"expired signature: its time {t} is {skew:.0f} s behind the server's clock "
            f"(allowed: {window:g} s)"
        )
    if -skew > window:
        raise ExpiredSignature(
            f"signature from the future: its time {t} is {-skew:.0f} s ahead of the "
            f"server's clock (allowed: {window:g} s)"
        )


def verify(
    secret: str | bytes,
    method: str,
    path_qs: str,
    body: bytes | str | None,
    header: str | None,
    *,
    window: float,
    now: float | None = None,
    replay_cache: ReplayCache | None = None,
) -> SignatureHeader:
    """Check one request's signature header; return its parsed items.

    Checks in this order, raising the first failure: format
    (:class:`MissingSignature`, :class:`MalformedSignature`), time
    (:class:`ExpiredSignature`), HMAC in constant time
    (:class:`BadSignature`), then, only for an authentic request, the
    replay cache (:class:`ReplayedSignature`, :class:`ReplayCacheFull`),
    which remembers the pair. ``secret`` must not be empty.
    """
    if not secret:
        raise ValueError("cannot verify with an empty secret")
    now = time.time() if now is None else now
    sig = parse_header(header)
    check_fresh(sig.t, window, now)
    expected = signature_hex(secret, sig.t, sig.n, method, path_qs, body)
    if not hmac.compare_digest(expected, sig.v1):
        raise BadSignature(
            f"bad signature for {method.upper()} {path_qs} with a body of "
            f"{len(_bytes(body or b''))} bytes (sha256 {body_digest(body)}): sign exactly "
            "the method, request target and body that are sent, with the right secret"
        )
    if replay_cache is not None:
        replay_cache.remember(sig.t, sig.n, now)
    return sig


# -- the request target ---------------------------------------------------------------


def request_target(environ: Mapping[str, Any]) -> str:
    """Return the ``path_qs`` that a request was signed over, from a WSGI environ.

    ``RAW_URI`` (gunicorn, and this project's own HTTP server) or
    ``REQUEST_URI`` when present: the request target exactly as sent (an
    absolute-form target ``http://host/p?q`` is cut to ``/p?q``). Otherwise
    it is rebuilt from ``SCRIPT_NAME + PATH_INFO``, percent-encoded except
    for ``/`` and RFC 3986 sub-delimiters, plus ``?QUERY_STRING`` when that
    is not empty; a signer that sends paths in that canonical form matches
    either way.
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        if not raw.startswith("/") and "://" in raw:
            rest = raw.split("://", 1)[1]
            cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
            raw = rest[cut:] or "/"
            if raw.startswith("?"):
                raw = "/" + raw
        return raw
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    target = quote(path.encode("latin-1"), safe=_PATH_SAFE) or "/"
    query = environ.get("QUERY_STRING", "")
    return f"{target}?{query}" if query else target


# -- replay -------------------------------------------------------------------------------


class ReplayCache:
    """The ``(t, n)`` pairs accepted within the window, to refuse a second use.

    :param window: ``signature_window``: a pair is kept while its ``t`` is
        within ``window`` seconds of the clock (after that the time check
        refuses it anyway), then evicted.
    :param max_size: hard bound on the pairs kept. When it is full of pairs
        that are all still live, :meth:`remember` raises
        :class:`ReplayCacheFull` (503) instead of growing.

    One per process (the security feature keeps it in the Pyramid
    registry). :meth:`remember` never yields, so it is greenlet-safe.
    """

    def __init__(self, window: float, max_size: int = 100_000) -> None:
        if window <= 0 or max_size < 1:
            raise ValueError("window must be > 0 and max_size >= 1")
        self.window = window
        self.max_size = max_size
        self._seen: set[tuple[int, str]] = set()
        self._by_time: list[tuple[int, str]] = []  # a heap ordered by t

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, pair: object) -> bool:
        return pair in self._seen

    def evict(self, now: float) -> int:
        """Forget every pair whose ``t`` is more than the window before ``now``; return how many."""
        horizon = now - self.window
        heap = self._by_time
        evicted = 0
        while heap and heap[0][0] < horizon:
            self._seen.discard(heapq.heappop(heap))
            evicted += 1
        return evicted

    def remember(self, t: int, n: str, now: float | None = None) -> None:
        """Record an accepted pair; raise :class:`ReplayedSignature` if it was seen.

        Raises :class:`ReplayCacheFull` when ``max_size`` live pairs are kept.
        """
        now = time.time() if now is None else now
        self.evict(now)
        pair = (t, n)
        if pair in self._seen:
            raise ReplayedSignature(
                f"replayed signature: t={t}, n={n} was already used; sign every request anew"
            )
        if len(self._seen) >= self.max_size:
            oldest = self._by_time[0][0]
            # the oldest pair leaves once the clock is past oldest + window
            retry_after = max(1, math.floor(oldest + self.window - now) + 1)
            raise ReplayCacheFull(
                f"too many signed requests within {self.window:g} s "
                f"(replay_cache_size = {self.max_size}); retry in {retry_after} s",
                retry_after=retry_after,
            )
        self._seen.add(pair)
        heapq.heappush(self._by_time, pair)


# -- channelstream 0.7.1 tokens --------------------------------------------------------------

_LEGACY_SALT = b"itsdangerous.Signer"


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_legacy_token(
    secret: str | bytes, token: str | None, *, window: float, now: float | None = None
) -> str:
    """Check a channelstream 0.7.1 ``x-channelstream-secret`` token; return its signed value.

    The token is ``itsdangerous.TimestampSigner(secret).sign(value)`` with
    itsdangerous' defaults (1.x and 2.x alike): ``value.ts.sig`` where ``ts``
    is the unix time as big-endian bytes and ``sig`` the HMAC-SHA1 of
    ``value.ts`` under the key ``sha1("itsdangerous.Signer" "signer" secret)``,
    both URL-safe base64 without padding. The time must be within ``window``
    seconds of ``now`` either way. Raises :class:`SignatureError` subclasses.
    """
    if not secret:
        raise ValueError("cannot verify with an empty secret")
    if not token:
        raise MissingSignature(f"missing {LEGACY_HEADER} header")
    if len(token) > _MAX_LEGACY_TOKEN or not token.isascii():
        raise MalformedSignature(f"malformed {LEGACY_HEADER} token")
    signed, sep, sig = token.rpartition(".")
    value, sep2, ts = signed.rpartition(".")
    if not sep or not sep2 or not ts or not sig:
        raise MalformedSignature(
            f"malformed {LEGACY_HEADER} token: expected an itsdangerous TimestampSigner token"
        )
    key = hashlib.sha1(_LEGACY_SALT + b"signer" + _bytes(secret)).digest()
    expected = hmac.new(key, signed.encode("ascii"), hashlib.sha1).digest()
    try:
        given = _b64decode(sig)
        t = int.from_bytes(_b64decode(ts), "big")
    except (ValueError, TypeError):
        raise MalformedSignature(f"malformed {LEGACY_HEADER} token: bad base64") from None
    if not hmac.compare_digest(expected, given):
        raise BadSignature(f"bad {LEGACY_HEADER} token: not signed with this server's secret")
    check_fresh(t, window, now)
    return value
