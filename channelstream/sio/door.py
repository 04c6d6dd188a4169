"""The socket.io door: python-socketio (gevent mode) on the app's own port.

:class:`SocketIOMount` is the WSGI entry of the process once this feature is
included: requests under ``/<socketio.path>/`` go to the socket.io server
while the door runs, everything else to the Pyramid app. It keeps the
app's ``registry``, so :func:`channelstream.serving.runtime.find_runtime` works on it.

:class:`SocketIODoor` builds the socket.io server when the runtime starts,
from ``runtime.settings.socketio`` as it is then (the server runner may have
applied the seed's ``[server:main]`` keys): path, transports, ping interval
and timeout, allowed CORS origins (empty = same origin only), maximum
payload. Its websockets are the server's own (:mod:`.websocket`): the door
adds socket.io's path to ``Runtime.raw_websocket_paths`` and replaces the
``websocket`` class of engine.io's gevent driver (on its own server only)
with :class:`~.websocket.TakeoverWSGI`. ``stop`` refuses new clients,
disconnects every session (each gets an ``error`` event saying why), closes
their engine.io sockets without waiting for them, and stops socket.io's
background task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import socketio

from ..chat import ChatState
from ..serving.doors import Door, DoorState
from ..serving.runtime import Runtime
from .codec import NAMESPACE
from .namespace import StreamNamespace
from .session import Session
from .websocket import EngineIOWebSocket, TakeoverWSGI

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
    """The socket.io server of ``/stream`` (see the module doc)."""

    name = DOOR_NAME

    def __init__(self, runtime: Runtime, chat: ChatState) -> None:
        self.runtime = runtime
        self.hub = runtime.hub
        self.chat = chat
        self.namespace = NAMESPACE
        self.packet_channel = runtime.settings.packets.channel
        self.server: socketio.Server | None = None
        #: The WSGI app of the running socket.io server (None when not running).
        self.wsgi: WSGIApp | None = None
        self.app: WSGIApp | None = None
        self.state = DoorState.NEW
        self.sessions: dict[str, Session] = {}
        #: The clients' websockets by engine.io sid (:mod:`.websocket`).
        self.websockets: dict[str, EngineIOWebSocket] = {}
        #: Counters shown in ``/healthz``.
        self.connects = 0
        self.refused = 0
        self.queries = 0
        self.bad_queries = 0
        self.packets_sent = 0
        self.packets_dropped = 0
        #: Batches handed straight to a websocket, and through engine.io's queue.
        self.direct_writes = 0
        self.queued_writes = 0

    @property
    def secret(self) -> str:
        return self.runtime.settings.secret

    def mount(self, app: WSGIApp) -> SocketIOMount:
        """Wrap the Pyramid app (``build_app`` calls this once)."""
        self.app = app
        return SocketIOMount(app, self)

    # -- Door -------------------------------------------------------------------------------------

    def start(self) -> None:
        options = self.runtime.settings.socketio
        origins: Any = list(options.cors_allowed_origins) or None
        if origins == ["*"]:
            origins = "*"
        server = socketio.Server(
            async_mode="gevent",
            async_handlers=False,  # handlers never block; events keep their order
            transports=list(options.transports),
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            max_http_buffer_size=options.max_payload,
            cors_allowed_origins=origins,
            logger=_quiet_logger("socketio.server"),
            engineio_logger=_quiet_logger("engineio.server"),
        )
        server.register_namespace(StreamNamespace(self))
        eio = server.eio
        eio._async = {
            **eio._async,
            "websocket": partial(
                TakeoverWSGI,
                max_message=options.max_payload,
                registry=self.websockets,
                fallback=eio._async["websocket"],
            ),
        }
        self.runtime.raw_websocket_paths.add(socketio_path(options.path))
        self.server = server
        self.wsgi = socketio.WSGIApp(server, self.app, socketio_path=options.path)
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
        server = self.server
        for session in list(self.sessions.values()):
            session.end("server shutting down")
        self.sessions.clear()
        if server is not None:
            for sock in list(server.eio.sockets.values()):
                try:
                    sock.close(wait=False, reason=server.eio.reason.SERVER_DISCONNECT)
                except Exception:  # one broken socket must not stop the shutdown
                    log.exception("closing an engine.io socket failed")
            server.eio.sockets.clear()
            server.shutdown()
        self.wsgi = None
        self.state = DoorState.STOPPED

    def status(self) -> dict[str, Any]:
        options = self.runtime.settings.socketio
        return {
            "state": self.state.value,
            "path": socketio_path(options.path),
            "namespace": NAMESPACE,
            "transports": list(options.transports),
            "clients": len(self.sessions),
            "chat_clients": sum(1 for s in self.sessions.values() if s.connection is not None),
            "query_clients": sum(1 for s in self.sessions.values() if s.packets is not None),
            "connects": self.connects,
            "refused": self.refused,
            "queries": self.queries,
            "bad_queries": self.bad_queries,
            "packets_sent": self.packets_sent,
            "direct_writes": self.direct_writes,
            "queued_writes": self.queued_writes,
            "websockets": len(self.websockets),
            "websockets_blocked": sum(1 for ws in self.websockets.values() if ws.blocked),
            # Closed outboxes' drops are in packets_dropped already (the writer's end).
            "packets_dropped": self.packets_dropped
            + sum(
                s.packets.dropped
                for s in self.sessions.values()
                if s.packets is not None and not s.packets.closed
            ),
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
