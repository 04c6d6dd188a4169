"""A small client of the channelstream server API that signs every call.

Standard library only (``http.client`` and JSON), so a Python backend needs
nothing else::

    from channelstream.client import ChannelstreamClient, ChannelstreamError

    with ChannelstreamClient("http://127.0.0.1:8000", SECRET) as hub:
        conn = hub.connect("alice", ["lobby"])
        hub.message([{"channel": "lobby", "user": "alice", "message": {"text": "hi"}}])
        try:
            hub.subscribe("no-such-conn", ["x"])
        except ChannelstreamError as err:
            print(err.status, err.message)  # 404 unknown connection ...

Every call is signed (:mod:`channelstream.security.signing`) over its method, its
request target exactly as sent (the base URL's path prefix, the path, the
query string) and its exact body bytes, with a fresh nonce. Bodies are JSON
(compact, UTF-8); answers are decoded from JSON. An answer of 400 or more
raises :class:`ChannelstreamError` holding the server's JSON.

Connections are kept alive and reused (a few idle ones are pooled, so one
client may be shared by greenlets or threads). When a reused idle
connection turns out to have been closed by the server (it closes idle
keep-alive connections, e.g. when it shuts down), the call is sent again,
with a new signature, on another connection; a new connection that fails
raises.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from . import __version__
from .security.signing import SIGNATURE_HEADER, sign

#: Path of the admin statistics route (channelstream 0.7.1's).
ADMIN_STATS_PATH = "/admin/admin.json"

_MAX_IDLE = 4
_RETRYABLE = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)
#: Characters that are percent-encoded in a request target (all else is sent as written).
_NEEDS_QUOTING = re.compile(r"[^\x21-\x7e]")


class ChannelstreamError(Exception):
    """The server answered with an error status.

    :attr:`status` is the HTTP status, :attr:`body` the decoded JSON answer
    (``{"error": ..., "code": ..., ...}``), or the text when it was not JSON.
    """

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(status, body)

    @property
    def message(self) -> str:
        """The server's ``error`` text (or the whole body)."""
        if isinstance(self.body, Mapping) and "error" in self.body:
            return str(self.body["error"])
        return str(self.body)

    @property
    def code(self) -> str | None:
        """The server's machine-readable ``code`` (``"unauthorized"``...), if any."""
        return self.body.get("code") if isinstance(self.body, Mapping) else None

    @property
    def reason(self) -> str | None:
        """Why a signature was refused (``"expired"``, ``"replayed"``...), if said."""
        return self.body.get("reason") if isinstance(self.body, Mapping) else None

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


class ChannelstreamClient:
    """A signing client of one channelstream server.

    :param base_url: ``http(s)://host:port`` with an optional path prefix
        (``http://10.0.0.5:8000/hub``); the prefix is part of what is signed,
        so it must be the path the server itself sees.
    :param secret: the server's ``secret``.
    :param admin_secret: the server's ``admin_secret``, for :meth:`admin_stats`
        and ``call(..., admin=True)``.
    :param timeout: seconds for connecting and for each read.
    """

    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        admin_secret: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"base_url must have no query or fragment, got {base_url!r}")
        if not secret:
            raise ValueError("secret must not be empty")
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.admin_secret = admin_secret
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._idle: list[http.client.HTTPConnection] = []
        self._ssl_context = ssl.create_default_context() if self._https else None

    # -- the server API ---------------------------------------------------------------

    def connect(self, username: str, channels: Iterable[str] = (), **extra: Any) -> Any:
        """``POST /connect``: a new connection of ``username`` on ``channels``.

        ``extra`` keys go into the body as they are (``conn_id``,
        ``channel_configs``, ``fresh_user_state``, ``user_state``,
        ``state_public_keys``, ``info``...).
        """
        body = {"username": username, "channels": list(channels), **extra}
        return self._json("POST", "/connect", body)

    def subscribe(self, conn_id: str, channels: Iterable[str], **extra: Any) -> Any:
        """``POST /subscribe``: add ``channels`` to a connection."""
        body = {"conn_id": conn_id, "channels": list(channels), **extra}
        return self._json("POST", "/subscribe", body)

    def unsubscribe(self, conn_id: str, channels: Iterable[str], **extra: Any) -> Any:
        """``POST /unsubscribe``: remove ``channels`` from a connection."""
        body = {"conn_id": conn_id, "channels": list(channels), **extra}
        return self._json("POST", "/unsubscribe", body)

    def message(self, messages: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> Any:
        """``POST /message``: publish messages (a list; one dict is sent as a list of one)."""
        return self._json("POST", "/message", _as_list(messages))

    def edit_messages(self, messages: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> Any:
        """``PATCH /message``: edit messages by ``uuid`` (history too)."""
        return self._json("PATCH", "/message", _as_list(messages))

    def delete_messages(self, messages: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> Any:
        """``DELETE /message``: delete messages by ``uuid``."""
        return self._json("DELETE", "/message", _as_list(messages))

    def info(self, **info: Any) -> Any:
        """``POST /info``: channels, users, history (``channels=[...]``, ``include_history``...)."""
        return self._json("POST", "/info", {"info": info})

    def disconnect(self, conn_id: str) -> Any:
        """``POST /disconnect``: mark a connection for collection."""
        return self._json("POST", "/disconnect", {"conn_id": conn_id})

    def user_state(
        self,
        user: str,
        user_state: Mapping[str, Any],
        state_public_keys: Iterable[str] | None = None,
    ) -> Any:
        """``POST /user_state``: change a user's state (and which keys are public)."""
        body: dict[str, Any] = {"user": user, "user_state": dict(user_state)}
        if state_public_keys is not None:
            body["state_public_keys"] = list(state_public_keys)
        return self._json("POST", "/user_state", body)

    def user_status(self, user: str, status: int) -> Any:
        """``POST /user_status``: offline 0, online 1, away 2, hidden 3, busy 4."""
        return self._json("POST", "/user_status", {"user": user, "status": status})

    def channel_config(self, configs: Mapping[str, Mapping[str, Any]]) -> Any:
        """``POST /channel_config``: ``{channel: {notify_presence, store_history, ...}}``."""
        return self._json("POST", "/channel_config", dict(configs))

    def admin_stats(self) -> Any:
        """``GET /admin/admin.json``, signed with ``admin_secret``."""
        return self._json("GET", ADMIN_STATS_PATH, None, admin=True)

    # -- the generic call -----------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        admin: bool = False,
        headers: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> tuple[int, Any]:
        """Send one signed request; return ``(status, decoded answer)``.

        :param path: the path below the base URL, optionally with ``?query``
            (characters outside visible ASCII are percent-encoded).
        :param body: ``None`` (no body), ``bytes`` (sent as they are), or a
            JSON value (encoded compactly as UTF-8).
        :param query: more query parameters, URL-encoded after ``path``'s.
        :param admin: sign with ``admin_secret`` instead of ``secret``.
        :param headers: extra headers (they are not signed).
        :param check: raise :class:`ChannelstreamError` for a status >= 400.

        The answer is the decoded JSON, the text if it is not JSON, or
        ``None`` when empty.
        """
        method = method.upper()
        target = self.target(path, query)
        data = _encode_body(body)
        secret = self._secret(admin)
        send_headers = {
            "Accept": "application/json",
            "User-Agent": f"channelstream-client/{__version__}",
        }
        if body is not None:
            send_headers["Content-Type"] = "application/json"
        send_headers.update(headers or {})
        status, response_headers, raw = self._send(method, target, data, send_headers, secret)
        answer = _decode(raw, response_headers.get("Content-Type", ""))
        if check and status >= 400:
            raise ChannelstreamError(status, answer)
        return status, answer

    def signed_headers(
        self, method: str, path_qs: str, body: bytes = b"", *, admin: bool = False
    ) -> dict[str, str]:
        """Return the signature header for a request sent some other way (``requests``...).

        ``path_qs`` is the full request target as it will be sent (base URL
        prefix included; see :meth:`target`).
        """
        return {SIGNATURE_HEADER: sign(self._secret(admin), method, path_qs, body)}

    def target(
        self, path: str, query: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None
    ) -> str:
        """Return the request target sent (and signed) for ``path`` and ``query``."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        target = self._prefix + _NEEDS_QUOTING.sub(lambda m: quote(m.group(0)), path)
        if query:
            target += ("&" if "?" in target else "?") + urlencode(query, doseq=True)
        return target

    # -- connections -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the idle connections (the client can still be used afterwards)."""
        while self._idle:
            self._idle.pop().close()

    def __enter__(self) -> ChannelstreamClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _json(self, method: str, path: str, body: Any, *, admin: bool = False) -> Any:
        return self.call(method, path, body, admin=admin)[1]

    def _secret(self, admin: bool) -> str:
        if not admin:
            return self.secret
        if not self.admin_secret:
            raise ValueError("this call needs admin_secret= given to ChannelstreamClient")
        return self.admin_secret

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        try:
            return self._idle.pop(), True
        except IndexError:
            pass
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=self._ssl_context
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        return conn, False

    def _send(
        self, method: str, target: str, data: bytes | None, headers: dict[str, str], secret: str
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        while True:
            conn, reused = self._connection()
            signed = {**headers, SIGNATURE_HEADER: sign(secret, method, target, data or b"")}
            try:
                conn.request(method, target, body=data, headers=signed)
                response = conn.getresponse()
                raw = response.read()
            except _RETRYABLE:
                conn.close()
                if reused:
                    continue  # the server closed an idle connection: once more, anew
                raise
            except BaseException:
                conn.close()
                raise
            if response.will_close or len(self._idle) >= _MAX_IDLE:
                conn.close()
            else:
                self._idle.append(conn)
            return response.status, response.headers, raw


def _as_list(messages: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[Any]:
    if isinstance(messages, Mapping):
        return [dict(messages)]
    return [dict(m) for m in messages]


def _encode_body(body: Any) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type or text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text
