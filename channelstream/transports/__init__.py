"""Client transports of channelstream connections: websocket, long-poll, SSE."""

from pyramid.config import Configurator


def includeme(config: Configurator) -> None:
    from .listen import listen_view
    from .sse import sse_view
    from .websocket import websocket_view

    config.add_route("ws", "/ws")
    config.add_view(websocket_view, route_name="ws", request_method="GET")
    config.add_route("listen", "/listen")
    config.add_view(listen_view, route_name="listen", request_method="GET")
    config.add_route("sse", "/sse")
    config.add_view(sse_view, route_name="sse", request_method="GET")
