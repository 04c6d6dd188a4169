"""Client transports of channelstream connections: websocket, long-poll, SSE.

:mod:`.websocket` (``/ws``, on the server's own watcher-driven websockets),
:mod:`.listen` (``/listen``, long-poll), :mod:`.sse` (``/sse``), and
:mod:`.openapi` (their part of ``/openapi.json``). Each attaches to a
connection of :mod:`channelstream.chat` as a
:class:`~channelstream.chat.transport.Transport`.
"""

from pyramid.config import Configurator

from ..serving.runtime import get_runtime
from ..web.openapi import add_fragment
from . import openapi
from .listen import listen_view
from .sse import sse_view
from .websocket import HEARTBEATS_KEY, WEBSOCKET_PATH, Heartbeats, websocket_view


def includeme(config: Configurator) -> None:
    """Add ``/ws``, ``/listen``, ``/sse``, their heartbeat timer and OpenAPI fragment."""
    runtime = get_runtime(config.registry)
    runtime.raw_websocket_paths.add(WEBSOCKET_PATH)
    config.registry[HEARTBEATS_KEY] = Heartbeats(runtime.settings.client_heartbeat)
    config.add_route("ws", WEBSOCKET_PATH)
    config.add_view(websocket_view, route_name="ws", request_method="GET")
    config.add_route("listen", "/listen")
    config.add_view(listen_view, route_name="listen", request_method="GET")
    config.add_route("sse", "/sse")
    config.add_view(sse_view, route_name="sse", request_method="GET")
    add_fragment(config.registry, openapi.fragment())


__all__ = ["WEBSOCKET_PATH", "includeme"]
