"""``GET /healthz``: the process's health as JSON, for people and probes.

Answers ``{"status": "ok" | "degraded", "state", "version", "pid",
"uptime_seconds", "doors": {name: {"state": ..., ...}}, "hub": {...}}``
(see :meth:`channelstream.serving.runtime.Runtime.status`). ``degraded`` (a door
restarting, or the runtime not running) still answers 200: the process
serves; the body says what is wrong.
"""

from __future__ import annotations

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPMethodNotAllowed
from pyramid.request import Request
from pyramid.response import Response

from ..serving.runtime import get_runtime
from ..web.responses import json_response


def healthz(request: Request) -> Response:
    """Return the runtime's status report."""
    if request.method not in ("GET", "HEAD"):
        raise HTTPMethodNotAllowed(headers={"Allow": "GET, HEAD"})
    return json_response(get_runtime(request.registry).status())


def includeme(config: Configurator) -> None:
    """Add the ``/healthz`` route and view."""
    config.add_route("healthz", "/healthz")
    config.add_view(healthz, route_name="healthz")
