"""Who a socket.io client of ``/stream`` is: its credentials, checked. No I/O here.

A client passes its credentials in the socket.io ``auth`` object (socket.io
v4 clients) or as query parameters of the handshake URL (the seed's
``/stream?username=...&sig=...``); keys of ``auth`` win:

- ``conn_id``: a connection made by the backend's ``/connect`` (as on ``/ws``);
- ``username``, ``expires``, ``sig``: the seed's signed login, where ``sig``
  is hex HMAC-SHA256(``secret``, ``"<username>\\n<expires>"``) issued by the
  backend and valid until the unix time ``expires``; the server makes a new
  connection for that user (or, with a ``conn_id`` of that user's, reuses it);
- ``resume``: ``{"<channel>": ["<epoch>", <last offset>], ...}`` as on ``/ws``
  (an object in ``auth``, JSON text in the query);
- nothing: an anonymous client, which may only send GATD queries.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from ..chat.resume import parse_resume, validate_resume
from ..errors import BadRequest

#: Longest user name (as ``/connect`` accepts).
MAX_USERNAME = 512
_FIELDS = ("conn_id", "username", "expires", "sig", "resume")


class AuthError(ValueError):
    """Credentials to refuse; ``str()`` is the message the client gets."""


@dataclass(frozen=True)
class Credentials:
    """What a client claims: at most a connection, a signed user, a resume."""

    conn_id: str | None = None
    username: str | None = None
    resume: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: The client passed ``resume`` (even ``{}``): it keeps positions and is
    #: told where it stands in every stream (``positions`` frames).
    resume_aware: bool = False

    @property
    def anonymous(self) -> bool:
        return self.conn_id is None and self.username is None


def user_sig(secret: str, username: str, expires: int) -> str:
    """The seed's login signature: hex HMAC-SHA256(secret, "<username>\\n<expires>")."""
    text = f"{username}\n{expires}".encode()
    return hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()


def credentials(auth: Any, query_string: str, secret: str, now: float | None = None) -> Credentials:
    """Read and check a client's credentials (see the module doc).

    :raises AuthError: malformed values, a bad or expired signature, or a
        signed login while the server has no ``secret``.
    """
    if auth is not None and not isinstance(auth, Mapping):
        raise AuthError("auth must be an object")
    query = parse_qs(query_string or "")
    raw: dict[str, Any] = {key: query[key][0] for key in _FIELDS if key in query}
    raw.update({key: auth[key] for key in _FIELDS if auth and key in auth})
    conn_id = _text(raw, "conn_id", 256)
    username = _text(raw, "username", MAX_USERNAME)
    if username is not None:
        _check_sig(raw, username, secret, time.time() if now is None else now)
    elif "sig" in raw or "expires" in raw:
        raise AuthError("sig and expires go with a username")
    try:
        resume_value = raw.get("resume")
        if isinstance(resume_value, str):
            resume = parse_resume(resume_value)
        elif resume_value is None:
            resume = {}
        else:
            resume = validate_resume(resume_value)
    except BadRequest as err:
        raise AuthError(err.message) from None
    if resume and conn_id is None and username is None:
        raise AuthError("resume needs a conn_id or a signed username")
    return Credentials(
        conn_id=conn_id, username=username, resume=resume, resume_aware="resume" in raw
    )


def _text(raw: Mapping[str, Any], key: str, limit: int) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise AuthError(f"{key} must be a string of at most {limit} characters")
    return value


def _check_sig(raw: Mapping[str, Any], username: str, secret: str, now: float) -> None:
    if not secret:
        raise AuthError("signed logins are off: the server has no secret")
    sig, expires = raw.get("sig"), raw.get("expires")
    if not isinstance(sig, str) or not sig:
        raise AuthError("a username needs sig (and expires)")
    if isinstance(expires, str) and expires.isdigit():
        expires = int(expires)
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise AuthError("expires must be a unix time in seconds")
    if not sig.isascii() or not hmac.compare_digest(
        user_sig(secret, username, expires), sig.lower()
    ):
        raise AuthError("bad signature")
    if expires <= now:
        raise AuthError("signature expired")


__all__ = ["AuthError", "Credentials", "credentials", "user_sig"]
