"""A test-only app: the real channelstream app plus a few probe views.

Used from an ini with ``paste.app_factory = tests.support.testapp:make_app``
(the test server helper puts the repository on PYTHONPATH). Never shipped.

Probe views, under ``/test/``:

- ``ws-echo``: echoes websocket frames (proves upgrades through the runner);
- ``stream``: a long-lived chunked response that ends when the runtime stops
  (``?ignore_stop=1``: one that never ends by itself);
- ``crash`` / ``client-error``: an internal error and a client error;
- ``socketio-settings``: the socket.io settings in force;
- ``engine-refuse?channel=<hub channel>``: from now on the engine refuses to
  follow that channel (``POST``; ``DELETE`` without a channel: it refuses
  none again), see :class:`RefusedFollows`;
- ``api/<anything>`` (``auth="api"``) and ``admin/<anything>``
  (``auth="admin"``), any method: echo what the security layer admitted
  (``{"method", "path_qs", "body", "caller": {"role", "scheme"}}``).

The ini key ``test.crashing_door = true`` adds a door that always crashes.
"""

from __future__ import annotations

import dataclasses

import gevent
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from channelstream.errors import BadRequest
from channelstream.hub.bus import Bus, EngineUnavailable
from channelstream.security.gate import require_admin, require_api
from channelstream.security.signing import request_target
from channelstream.serving.doors import LoopDoor
from channelstream.serving.runtime import get_runtime
from channelstream.settings.parsers import as_bool
from channelstream.web.websocket import WebSocket
from channelstream.web.wsframes import TAKEOVER_KEY, FrameReader, HandshakeError, frame
from channelstream.wsgi_app import build_app, load_settings


class CrashingDoor(LoopDoor):
    """A door whose loop raises at once, every time."""

    backoff_initial = 0.2
    backoff_max = 0.4

    def run(self) -> None:
        raise RuntimeError("boom: the probe door crashed")


class EchoWebSocket(WebSocket):
    """Sends every message back as it came (text or binary)."""

    def new_reader(self) -> FrameReader:
        return FrameReader(keep_data=True)

    def on_message(self, opcode: int, payload: bytes) -> None:
        self.send(frame(payload, opcode))


def ws_echo(request: Request) -> Response:
    takeover = request.environ.get(TAKEOVER_KEY)
    if takeover is None:
        raise BadRequest("this endpoint needs a websocket upgrade")
    try:
        sock = takeover()
    except HandshakeError as err:
        raise BadRequest(str(err)) from None
    EchoWebSocket(sock).start_reading()
    return Response()


def stream(request: Request) -> Response:
    stopping = get_runtime(request.registry).stopping
    ignore_stop = request.GET.get("ignore_stop") == "1"

    def chunks():
        yield b"start\n"
        while ignore_stop or not stopping.is_set():
            gevent.sleep(0.05)
            yield b"tick\n"
        yield b"bye\n"

    return Response(app_iter=chunks(), content_type="text/plain")


def crash(request: Request) -> Response:
    raise RuntimeError("a bug in a view")


def client_error(request: Request) -> Response:
    raise BadRequest("count must be a number", field="count")


def socketio_settings(request: Request) -> Response:
    settings = get_runtime(request.registry).settings.socketio
    return Response(json_body=dataclasses.asdict(settings))


class RefusedFollows:
    """The hub's bus made to refuse following some channels, as the Redis
    engine does while Redis cannot take a ``SUBSCRIBE``: its ``watch`` raises
    the engine's own :class:`EngineUnavailable` for those, before asking
    Redis (so the channel is not followed here); every other channel is
    followed as ever. Installed on the first ``engine-refuse`` call only.
    """

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.names: set[str] = set()
        self._watch = bus.watch
        bus.watch = self.watch  # type: ignore[method-assign]

    def watch(self, channel: str) -> None:
        if channel in self.names:
            where = getattr(self.bus, "where", self.bus.name)
            raise EngineUnavailable(
                f"redis at {where} is unavailable: following {channel!r} refused"
                " (test probe engine-refuse)"
            )
        self._watch(channel)


def engine_refuse(request: Request) -> Response:
    registry = request.registry
    refused = registry.get("test.refused_follows")
    if refused is None:
        refused = registry["test.refused_follows"] = RefusedFollows(
            get_runtime(registry).hub.bus
        )
    if request.method == "DELETE":
        refused.names.clear()
    else:
        refused.names.add(request.GET["channel"])
    return Response(json_body=sorted(refused.names))


def echo(request: Request) -> Response:
    admin = request.matchdict["role"] == "admin"
    caller = require_admin(request) if admin else require_api(request)
    return Response(
        json_body={
            "method": request.method,
            "path_qs": request_target(request.environ),
            "body": request.body.decode("utf-8", errors="replace"),
            "caller": dataclasses.asdict(caller),
        }
    )


def includeme(config: Configurator) -> None:
    for role in ("api", "admin"):
        config.add_route(f"test-{role}-echo", f"/test/{{role:{role}}}/*rest")
        config.add_view(echo, route_name=f"test-{role}-echo", auth=role)
    for name, view in (
        ("ws-echo", ws_echo),
        ("stream", stream),
        ("crash", crash),
        ("client-error", client_error),
        ("socketio-settings", socketio_settings),
        ("engine-refuse", engine_refuse),
    ):
        config.add_route(f"test-{name}", f"/test/{name}")
        config.add_view(view, route_name=f"test-{name}")
    get_runtime(config.registry).raw_websocket_paths.add("/test/ws-echo")


def make_app(global_config, **settings):
    crashing = as_bool(settings.pop("test.crashing_door", "false"))
    app = build_app(load_settings(global_config, settings), includes=["tests.support.testapp"])
    if crashing:
        get_runtime(app.registry).doors.add(CrashingDoor("probe"))
    return app
