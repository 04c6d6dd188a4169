"""``GET /healthz``: the process's health as JSON, for people and probes.

Answers ``{"status": "ok" | "degraded", "state", "version", "pid",
"uptime_seconds", "doors": {name: {"state": ..., ...}}, "hub": {...}}``
(see :meth:`channelstream.serving.runtime.Runtime.status`). ``degraded`` (a door
restarting, or the runtime not running) still answers 200: the process
serves; the body says what is wrong.

With ``healthz_details = admin`` (production.ini) only admins (a signature
made with ``admin_secret``, or basic auth) get the details; anyone else gets
``{"status", "state"}``, enough for a probe and nothing about the doors.
"""

from __future__ import annotations

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPMethodNotAllowed
from pyramid.request import Request
from pyramid.response import Response

from ..errors import ClientError
from ..security.gate import require_admin
from ..security.signing import SIGNATURE_HEADER
from ..serving.runtime import get_runtime
from ..web.httpserver import HTTP_SERVER_KEY
from ..web.responses import json_response
from ..web.websocket import WebSocket


def healthz(request: Request) -> Response:
    """Return the runtime's status report."""
    if request.method not in ("GET", "HEAD"):
        raise HTTPMethodNotAllowed(headers={"Allow": "GET, HEAD"})
    runtime = get_runtime(request.registry)
    report = runtime.status()
    server = request.environ.get(HTTP_SERVER_KEY)
    if server is not None:  # this process's HTTP server: connections, refusals, timeouts
        report["http"] = {
            **server.stats(),
            # websockets closed (1008) because their client did not read what it asked for
            "websocket_overflows": sum(WebSocket.overflows_by_class().values()),
        }
    if runtime.settings.healthz_details == "admin" and not _is_admin(request):
        report = {"status": report["status"], "state": report["state"]}
    return json_response(report)


def _is_admin(request: Request) -> bool:
    """Whether the request carries admin credentials (none is no error here)."""
    if SIGNATURE_HEADER not in request.headers and "Authorization" not in request.headers:
        return False
    try:
        require_admin(request)
    except ClientError:
        return False
    return True


def includeme(config: Configurator) -> None:
    """Add the ``/healthz`` route and view."""
    config.add_route("healthz", "/healthz")
    config.add_view(healthz, route_name="healthz")
