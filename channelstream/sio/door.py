"""The socket.io door: python-socketio (gevent mode) on the app's own port.

:class:`SocketIOMount` is the WSGI entry of the process once this feature is
included: requests under ``/<socketio.path>/`` go to the socket.io server
while the door runs, everything else to the Pyramid app. It keeps the
app's ``registry``, so :func:`channelstream.serving.runtime.find_runtime` works on it.

:class:`SocketIODoor` builds the socket.io server when the runtime starts,
from its ``socketio.*`` settings as they are then (the server runner may have
applied the seed's ``[server:main]`` keys): path, transports, ping interval
and timeout, allowed CORS origins (empty = same origin only), maximum
payload. Its engine.io sessions run on the server's own websockets, driven
by watchers, with no greenlet per client (:mod:`.engine`): the door adds
socket.io's path to the runtime's ``raw_websocket_paths``, so the HTTP
server lets engine.io take those upgrades over. ``stop`` refuses new clients,
disconnects every session (each gets an ``error`` event saying why), closes
their engine.io sockets without waiting for them, and stops socket.io's
background task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import socketio

from ..chat import ChatState
from ..chat.joins import JoinRules
from ..hub import Hub
from ..serving.doors import Door, DoorState
from ..settings import Settings, SocketIOSettings
from .codec import NAMESPACE
from .namespace import StreamNamespace
from .server import StreamServer
from .sessions import Sessions
from .websocket import EngineIOWebSocket

log = logging.getLogger(__name__)

#: The door's name in the registry and in ``/healthz``.
DOOR_NAME = "socketio"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _quiet_logger(name: str) -> logging.Logger:
    """socket.io's and engine.io's logger, at WARNING unless the ini sets its level.

    They log every packet at INFO, and the ini's root logger is at INFO.
    """
    logger = logging.getLogger(name)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    return logger


class SocketIODoor(Door):
    """The socket.io server of ``/stream`` (see the module doc).

    :param options: the ``socketio.*`` settings (replaced by
        :meth:`settings_changed` before start, when the server runner applies
        the seed's ``[server:main]`` keys).
    :param secret: the ``secret`` that signs the seed's ``username`` logins.
    :param packet_channel: the hub channel of GATD packets (``packets.channel``).
    :param hub: the process's hub.
    :param chat: the process's channelstream state.
    :param websocket_paths: the runtime's ``raw_websocket_paths`` (the door
        adds socket.io's path when it starts).
    """

    name = DOOR_NAME

    def __init__(
        self,
        options: SocketIOSettings,
        *,
        secret: str,
        packet_channel: str,
        hub: Hub,
        chat: ChatState,
        websocket_paths: set[str],
    ) -> None:
        self.options = options
        self.secret = secret
        self.websocket_paths = websocket_paths
        self.sessions = Sessions(hub, chat, packet_channel, NAMESPACE)
        self.server: socketio.Server | None = None
        #: The WSGI app of the running socket.io server (None when not running).
        self.wsgi: WSGIApp | None = None
        self.app: WSGIApp | None = None
        self.state = DoorState.NEW

    def mount(self, app: WSGIApp) -> SocketIOMount:
        """Wrap the Pyramid app (``build_app`` calls this once)."""
        self.app = app
        return SocketIOMount(app, self)

    # -- Door -------------------------------------------------------------------------------------

    def settings_changed(self, settings: Settings) -> None:
        """Take the socket.io settings the server runner set (before start only)."""
        if self.state is not DoorState.NEW:
            raise RuntimeError("socket.io settings can only change before the door starts")
        self.options = settings.socketio

    def start(self) -> None:
        options = self.options
        origins: Any = list(options.cors_allowed_origins) or None
        if origins == ["*"]:
            origins = "*"
        server = StreamServer(
            async_mode="gevent",
            async_handlers=False,  # handlers never block; events keep their order
            transports=list(options.transports),
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            max_http_buffer_size=options.max_payload,
            cors_allowed_origins=origins,
            logger=_quiet_logger("socketio.server"),
            engineio_logger=_quiet_logger("engineio.server"),
            websockets=self.sessions.websockets,
        )
        server.register_namespace(StreamNamespace(self.sessions, self.secret))
        server.on_connected = self.sessions.connected
        self.sessions.chat.joins.rules = JoinRules(
            options.join_policy,
            options.max_client_channels_per_user,
            options.max_client_channels,
        )
        self.websocket_paths.add(socketio_path(options.path))
        self.server = self.sessions.server = server
        self.wsgi = socketio.WSGIApp(server, self.app, socketio_path=options.path)
        self.sessions.accepting = True
        self.state = DoorState.RUNNING
        log.info(
            "socket.io at /%s/ (namespace %s, %s)",
            options.path.strip("/"),
            NAMESPACE,
            ", ".join(options.transports),
        )

    def stop(self, timeout: float) -> None:
        if self.state is not DoorState.RUNNING:
            return
        self.state = DoorState.STOPPING
        self.sessions.accepting = False
        server = self.server
        self.sessions.end_all("server shutting down")
        if server is not None:
            for sock in list(server.eio.sockets.values()):
                try:
                    sock.close(wait=False, reason=server.eio.reason.SERVER_DISCONNECT)
                except Exception:  # one broken socket must not stop the shutdown
                    log.exception("closing an engine.io socket failed")
            server.eio.sockets.clear()
            server.shutdown()
        self.sessions.pacer.stop()
        self.wsgi = None
        self.state = DoorState.STOPPED

    def status(self) -> dict[str, Any]:
        options = self.options
        return {
            "state": self.state.value,
            "path": socketio_path(options.path),
            "namespace": NAMESPACE,
            "transports": list(options.transports),
            **self.sessions.stats(),
            "bad_packets": self.server.bad_packets if self.server is not None else 0,
            "websocket_overflows": EngineIOWebSocket.overflows,
            "join_policy": options.join_policy,
            "joins_refused": self.sessions.chat.joins.refused,
            "client_channels": sum(self.sessions.chat.joins.created.values()),
        }


def socketio_path(path: str) -> str:
    """The URL path of socket.io's requests (``socketio.path`` between slashes)."""
    return "/" + path.strip("/") + "/"


class SocketIOMount:
    """The process's WSGI app: socket.io's path to the door while it runs, the rest to Pyramid."""

    def __init__(self, app: Any, door: SocketIODoor) -> None:
        self.app = app
        self.door = door
        #: The Pyramid registry (``find_runtime`` and ``get_runtime`` look here).
        self.registry = app.registry

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        handler = self.door.wsgi
        if handler is not None:
            return handler(environ, start_response)
        return self.app(environ, start_response)


__all__ = ["DOOR_NAME", "SocketIODoor", "SocketIOMount"]
