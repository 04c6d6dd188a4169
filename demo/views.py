"""The demo's routes: the page, its static files, and its small JSON API.

Served only when ``demo.enabled`` (see :func:`demo.includeme`).

``GET /demo``
    The page (``static/index.html``), with a Content-Security-Policy that
    allows nothing but this origin: the page works offline, and anything it
    would load from elsewhere is refused (and shows as a console error).
``GET /demo/static/...``, ``GET /demo/angular/...``
    Its scripts and styles; AngularJS from the ``XStatic-Angular`` package.

The JSON API (the page's own backend, :class:`demo.backend.DemoBackend`).
Requests are JSON objects sent with ``Content-Type: application/json`` from
the page's own origin (an ``Origin`` header of another origin is refused,
403), at most :data:`MAX_BODY` bytes. Answers are JSON; errors are the
app's ``{"error", "code", "field"?}``:

``GET /demo/api/config``
    ``{"chat": {"available", "reason", "default_channels", "statuses",
    "bot"}, "packets": {"channel", "history_seconds", "socketio_path",
    "namespace"}, "loom": {"available", "reason"}, "frames": [{"channel",
    "title", "door", "url"}], "stats": {"available", "reason"}}``.
``POST /demo/api/session`` ``{"username", "channels"?, "conn_id"?}``
    sign in (or again, after a restart): see :meth:`DemoBackend.session`.
``POST /demo/api/subscribe``, ``POST /demo/api/unsubscribe`` ``{"conn_id", "channel"}``
``POST /demo/api/message`` ``{"conn_id", "channel", "text", "to"?}``;
``PATCH`` ``{"conn_id", "uuid", "text"}``; ``DELETE`` ``{"conn_id", "uuid"}``
``POST /demo/api/status`` ``{"conn_id", "status"}``
``GET /demo/api/stats``
    ``{"available", "reason", "admin": {totals and the hub's counters}, "demo":
    {what the demo keeps}}``: the figures of ``/admin/admin.json`` that are
    counts (no user, channel or connection is named), read with
    ``admin_secret`` server-side.
``GET /demo/api/frames/<channel>``
    Server-Sent Events of a frame channel (:mod:`demo.frames`).

Every chat route answers 503 when the server has no ``secret``: the demo
calls the server API as a backend does, and a server without a secret
cannot be called. These routes are not in ``/openapi.json``: that document
is the hub's API for backends and clients; these are one sample backend's
private routes for its own page, present only in development.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import FileResponse, Response

from channelstream import strict_json
from channelstream.client import ChannelstreamClient, ChannelstreamError
from channelstream.errors import BadRequest, Forbidden, NotFound, Unavailable
from channelstream.serving.runtime import get_runtime
from channelstream.web.bodies import read_body
from channelstream.web.httpserver import HTTP_SERVER_KEY
from channelstream.web.responses import json_response

from .backend import BOT_USER, DEFAULT_CHANNELS, STATUSES, DemoBackend
from .frames import FrameTaps

#: Registry keys of the demo's backend and frame taps.
BACKEND_KEY = "demo.backend"
TAPS_KEY = "demo.frame_taps"
LINK_KEY = "demo.link"

#: Largest request body of the demo API.
MAX_BODY = 16384

STATIC = Path(__file__).parent / "static"

#: Nothing but this origin; websockets to it; no inline script, no eval (ng-csp).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: ``/admin/admin.json`` figures the page may show (counts only).
ADMIN_FIGURES = (
    "total_connections",
    "total_channels",
    "total_messages",
    "total_unique_messages",
    "unique_user_count",
    "remembered_user_count",
    "slow_disconnects",
    "uptime",
)


class HubLink:
    """The signing client of the server this process serves.

    The server's own address is taken from the listener that accepted the
    first demo request (never from the ``Host`` header, which the client
    chooses); a wildcard bind is called on loopback.
    """

    def __init__(self, secret: str, admin_secret: str) -> None:
        self.secret = secret
        self.admin_secret = admin_secret
        self.url: str | None = None
        self._client: ChannelstreamClient | None = None

    @property
    def available(self) -> bool:
        return bool(self.secret)

    def bind(self, request: Request) -> None:
        """Learn the server's address from ``request``; 503 without a secret."""
        if not self.secret:
            raise Unavailable(
                "the demo chat calls the server API as a backend does: set secret "
                "(or CHANNELSTREAM_SECRET) to use it"
            )
        if self._client is None:
            self.url = own_url(request.environ)
            self._client = ChannelstreamClient(
                self.url, self.secret, admin_secret=self.admin_secret or None
            )

    def __call__(self) -> ChannelstreamClient:
        if self._client is None:
            raise Unavailable("the demo has not learnt the server's address yet")
        return self._client


def own_url(environ: Mapping[str, Any]) -> str:
    """``http://host:port`` of the listener that serves ``environ``'s request."""
    server = environ.get(HTTP_SERVER_KEY)
    host = getattr(server, "server_host", None) or "127.0.0.1"
    port = getattr(server, "server_port", None) or int(environ.get("SERVER_PORT") or 80)
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


# -- request helpers ------------------------------------------------------------------


def read_object(request: Request) -> dict[str, Any]:
    """The request's JSON object body, from this page's origin, else 400/403/413."""
    origin = request.headers.get("Origin")
    if origin is not None and not same_origin(origin, request):
        raise Forbidden("the demo API answers only its own page", field="Origin")
    if request.content_type != "application/json":
        raise BadRequest("send the body as Content-Type: application/json", field="Content-Type")
    raw = read_body(request, MAX_BODY)
    try:
        data = strict_json.loads(raw)
    except ValueError as err:
        raise BadRequest(f"the request body is not valid JSON: {err}", field="body") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object", field="body")
    return data


def same_origin(origin: str, request: Request) -> bool:
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == request.host


def backend(request: Request) -> DemoBackend:
    request.registry[LINK_KEY].bind(request)
    return request.registry[BACKEND_KEY]


def api_view(work: Callable[[DemoBackend, dict[str, Any]], Any]) -> Callable[[Request], Response]:
    """A JSON view: read the body, bind the hub link, run ``work``, answer its value."""

    def view(request: Request) -> Response:
        data = read_object(request)
        return json_response(work(backend(request), data))

    view.__doc__ = work.__doc__
    return view


# -- views ----------------------------------------------------------------------------------


def page(request: Request) -> Response:
    response = FileResponse(str(STATIC / "index.html"), request, content_type="text/html")
    response.cache_control = "no-store"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def config_view(request: Request) -> Response:
    settings = get_runtime(request.registry).settings
    link: HubLink = request.registry[LINK_KEY]
    taps: FrameTaps = request.registry[TAPS_KEY]
    loom_reason = None
    if settings.loom.tokens:
        loom_reason = "loom takes bearer tokens here (loom.tokens); the demo shows open loom only"
    elif settings.require_secrets:
        loom_reason = "loom is closed on this server (require_secrets)"
    frames = [
        {**entry.as_dict(), "url": request.route_path("demo_frames", channel=name)}
        for name, entry in taps.channels.items()
    ]
    return json_response(
        {
            "chat": {
                "available": link.available,
                "reason": None if link.available else "the server has no secret",
                "default_channels": list(DEFAULT_CHANNELS),
                "statuses": list(STATUSES),
                "bot": BOT_USER,
            },
            "packets": {
                "channel": settings.packets.channel,
                "history_seconds": settings.packets.history_seconds,
                "socketio_path": "/" + settings.socketio.path.strip("/"),
                "namespace": "/stream",
            },
            "loom": {"available": loom_reason is None, "reason": loom_reason},
            "frames": frames,
            "stats": {
                "available": bool(link.available and link.admin_secret),
                "reason": None if link.admin_secret else "the server has no admin_secret",
            },
        }
    )


def session_work(demo: DemoBackend, data: dict[str, Any]) -> Any:
    return demo.session(data.get("username"), data.get("channels"), data.get("conn_id"))


def subscribe_work(demo: DemoBackend, data: dict[str, Any]) -> Any:
    return demo.subscribe(data.get("conn_id"), data.get("channel"))


def unsubscribe_work(demo: DemoBackend, data: dict[str, Any]) -> Any:
    return demo.unsubscribe(data.get("conn_id"), data.get("channel"))


def post_work(demo: DemoBackend, data: dict[str, Any]) -> Any:
    return demo.post(data.get("conn_id"), data.get("channel"), data.get("text"), data.get("to"))


def edit_work(demo: DemoBackend, data: dict[str, Any]) -> Any:
    return demo.edit(data.get("conn_id"), data.get("uuid"), data.get("text"))


def delete_work(demo: DemoBackend, data: dict[str, Any]) -> Any:
    return demo.delete(data.get("conn_id"), data.get("uuid"))


def status_work(demo: DemoBackend, data: dict[str, Any]) -> Any:
    return demo.set_status(data.get("conn_id"), data.get("status"))


def stats_view(request: Request) -> Response:
    link: HubLink = request.registry[LINK_KEY]
    demo: DemoBackend = request.registry[BACKEND_KEY]
    answer: dict[str, Any] = {"available": False, "reason": None, "demo": demo.stats()}
    if not link.available or not link.admin_secret:
        answer["reason"] = "the server has no admin_secret"
        return json_response(answer)
    link.bind(request)
    try:
        stats = link().admin_stats()
    except (ChannelstreamError, OSError) as err:
        answer["reason"] = f"admin stats: {err}"
        return json_response(answer)
    figures = {key: stats.get(key) for key in ADMIN_FIGURES}
    figures["hub"] = {k: v for k, v in stats.get("hub", {}).items() if not isinstance(v, dict)}
    answer.update(available=True, admin=figures)
    return json_response(answer)


def frames_view(request: Request) -> Response:
    taps: FrameTaps = request.registry[TAPS_KEY]
    channel = request.matchdict["channel"]
    if channel not in taps.channels:
        raise NotFound(f"{channel} is not a frame channel of this server", field="channel")
    if taps.full():
        raise Unavailable("too many frame taps are open; close a demo page")
    response = Response(app_iter=taps.stream(channel), content_type="text/event-stream")
    response.cache_control = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def add_routes(config: Configurator) -> None:
    """The routes of the module doc (the caller checked ``demo.enabled``)."""
    import xstatic.pkg.angular

    config.add_route("demo_page", "/demo")
    config.add_route("demo_page_slash", "/demo/")
    config.add_view(page, route_name="demo_page", request_method="GET")
    config.add_view(page, route_name="demo_page_slash", request_method="GET")
    config.add_static_view("demo/static", "demo:static", cache_max_age=0)
    config.add_static_view("demo/angular", xstatic.pkg.angular.BASE_DIR, cache_max_age=3600)
    config.add_route("demo_config", "/demo/api/config")
    config.add_view(config_view, route_name="demo_config", request_method="GET")
    json_routes = (
        ("demo_session", "/demo/api/session", (("POST", session_work),)),
        ("demo_subscribe", "/demo/api/subscribe", (("POST", subscribe_work),)),
        ("demo_unsubscribe", "/demo/api/unsubscribe", (("POST", unsubscribe_work),)),
        (
            "demo_message",
            "/demo/api/message",
            (("POST", post_work), ("PATCH", edit_work), ("DELETE", delete_work)),
        ),
        ("demo_status", "/demo/api/status", (("POST", status_work),)),
    )
    for name, path, methods in json_routes:
        config.add_route(name, path)
        for method, work in methods:
            config.add_view(api_view(work), route_name=name, request_method=method)
    config.add_route("demo_stats", "/demo/api/stats")
    config.add_view(stats_view, route_name="demo_stats", request_method="GET")
    config.add_route("demo_frames", "/demo/api/frames/{channel}")
    config.add_view(frames_view, route_name="demo_frames", request_method="GET")
