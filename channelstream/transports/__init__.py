"""Client transports of channelstream connections: websocket, long-poll, SSE."""

from pyramid.config import Configurator

from ..serving.runtime import get_runtime

#: Path of the websocket transport; its upgrades are done by the view.
WEBSOCKET_PATH = "/ws"


def includeme(config: Configurator) -> None:
    from .listen import listen_view
    from .sse import sse_view
    from .websocket import HEARTBEATS_KEY, Heartbeats, websocket_view

    runtime = get_runtime(config.registry)
    runtime.raw_websocket_paths.add(WEBSOCKET_PATH)
    config.registry[HEARTBEATS_KEY] = Heartbeats(
        runtime.settings.client_heartbeat
    )
    config.add_route("ws", WEBSOCKET_PATH)
    config.add_view(websocket_view, route_name="ws", request_method="GET")
    config.add_route("listen", "/listen")
    config.add_view(listen_view, route_name="listen", request_method="GET")
    config.add_route("sse", "/sse")
    config.add_view(sse_view, route_name="sse", request_method="GET")
