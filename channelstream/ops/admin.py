"""``GET /admin/admin.json`` and ``GET /admin``: the process's figures, for admins.

``/admin/admin.json`` answers ``POST`` too, as channelstream 0.7.1 did (its
demo and admin page POST to it): the same answer, the same credentials (a
signature covers the body like any signed call); the body is read under
``max_body_size`` by the gate and otherwise ignored. Nothing changes state.

Both need admin credentials (``auth="admin"``, :mod:`channelstream.security.gate`):
a signature made with ``admin_secret``, or HTTP basic auth with
``admin_secret`` as the password, so a person gets the JSON in a browser.
There is no HTML page: ``/admin`` answers the same JSON.

The answer keeps channelstream 0.7.1's shape::

    {"remembered_user_count", "unique_user_count", "total_connections",
     "total_channels", "total_messages", "total_unique_messages",
     "channels": {name: channel info with history and users},
     "users": [{"user", "state" (public), "connections": [conn ids]}],
     "uptime": "1 day, 2:03:04", "version"}

- ``remembered_user_count``: every user in memory; ``unique_user_count``:
  users with at least one connection; ``users`` lists only those, sorted.
- ``total_connections``: the connections of those users.
- ``total_unique_messages``: items accepted by ``POST /message`` (also those
  for channels that do not exist); ``total_messages``: deliveries of frames
  to connections, counted by the hub on the live ``channel:*`` and
  ``user:*`` channels (a collected channel takes its count with it).
- ``uptime``: since the runtime started, whole seconds, ``str(timedelta)``.

plus this project's own: ``hub`` (:meth:`~channelstream.hub.Hub.stats`),
``doors`` (each door's status) and ``slow_disconnects`` (connections closed
for falling behind; ``null`` while the chat state does not count them).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from .. import __version__
from ..chat import CHAT_KEY, ChatState
from ..chat.routing import CHANNEL_PREFIX, USER_PREFIX
from ..chat.state import Info
from ..serving.runtime import Runtime, get_runtime
from ..web.responses import json_response

#: Path of the admin statistics route (the client's ``admin_stats()`` calls it).
ADMIN_JSON_PATH = "/admin/admin.json"
ADMIN_PATH = "/admin"


def admin_stats(chat: ChatState, runtime: Runtime) -> dict[str, Any]:
    """Return the admin statistics of ``chat`` and ``runtime`` (see the module doc).

    Reads only; never yields, so the figures are one consistent snapshot.
    """
    status = runtime.status()
    active = [chat.users[name] for name in sorted(chat.users) if chat.users[name].connections]
    channels = chat.channels_info(Info(include_history=True, include_users=True))["channels"]
    return {
        "remembered_user_count": len(chat.users),
        "unique_user_count": len(active),
        "total_connections": sum(len(user.connections) for user in active),
        "total_channels": len(chat.channels),
        "total_messages": chat_deliveries(runtime),
        "total_unique_messages": chat.messages_posted,
        "channels": channels,
        "users": [
            {
                "user": user.name,
                "state": user.public_state,
                "connections": sorted(user.connections),
            }
            for user in active
        ],
        "uptime": uptime_text(status["uptime_seconds"]),
        "version": __version__,
        "hub": status["hub"],
        "doors": status["doors"],
        "slow_disconnects": chat.stats().get("slow_disconnects"),
    }


def chat_deliveries(runtime: Runtime) -> int:
    """Frames the hub delivered to connections on the chat's live hub channels."""
    return sum(
        channel.delivered
        for channel in runtime.hub.channels()
        if channel.name.startswith((CHANNEL_PREFIX, USER_PREFIX))
    )


def uptime_text(seconds: float) -> str:
    """``str(timedelta)`` of whole seconds, as 0.7.1 showed it (``"1 day, 2:03:04"``)."""
    return str(datetime.timedelta(seconds=int(seconds)))


def admin_json(request: Request) -> Response:
    """The admin statistics as JSON (``/admin/admin.json`` and ``/admin``)."""
    chat: ChatState = request.registry[CHAT_KEY]
    data = admin_stats(chat, get_runtime(request.registry))
    return json_response(data, encode=encode_json)


def encode_json(data: Any) -> bytes:
    """Strict JSON, ASCII, whatever backends put in states and histories.

    Escapes everything outside ASCII, so a lone surrogate (a valid JSON
    escape with no UTF-8 form) is shown, not a 500; and writes NaN and the
    infinities (which Python's JSON reader accepts from backends, but
    browsers' ``JSON.parse`` refuses) as ``null``.
    """
    options: dict[str, Any] = {"separators": (",", ":"), "ensure_ascii": True}
    try:
        text = json.dumps(data, allow_nan=False, **options)
    except ValueError:
        loose = json.loads(json.dumps(data, **options), parse_constant=lambda _name: None)
        text = json.dumps(loose, allow_nan=False, **options)
    return text.encode("ascii")


#: Methods of each admin route (GET implies HEAD); 0.7.1 served admin.json to both.
ADMIN_METHODS = {"admin_json": ("GET", "POST"), "admin": ("GET",)}


def includeme(config: Configurator) -> None:
    """Add ``/admin/admin.json`` (GET, HEAD, POST) and ``/admin`` (GET, HEAD), with admin auth."""
    config.add_route("admin_json", ADMIN_JSON_PATH)
    config.add_route("admin", ADMIN_PATH)
    for route, methods in ADMIN_METHODS.items():
        config.add_view(admin_json, route_name=route, request_method=methods, auth="admin")
