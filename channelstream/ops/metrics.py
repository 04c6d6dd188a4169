"""``GET /metrics``: the process's figures for Prometheus, for admins only.

Each app has its own :class:`~prometheus_client.CollectorRegistry` (kept in
the Pyramid registry, never the global one) holding a
:class:`ChannelstreamCollector`, which reads the current figures at scrape
time (no counter is kept in two places), and prometheus-client's process
and platform collectors. Under gunicorn each worker answers for itself.

Metrics (counters get ``_total``)::

    channelstream_info{version}                          1
    channelstream_uptime_seconds                         gauge
    channelstream_runtime_state{state}                   1 for the current state
    channelstream_door_state{door, state}                1 for each door's current state
    channelstream_door_restarts_total{door}              counter
    channelstream_hub_published_total                    counter
    channelstream_hub_delivered_total                    counter
    channelstream_hub_dropped_total                      counter
    channelstream_hub_channels_collected_total           counter
    channelstream_hub_channels                           gauge
    channelstream_hub_outboxes                           gauge
    channelstream_chat_users                             gauge (remembered)
    channelstream_chat_active_users                      gauge (with a connection)
    channelstream_chat_connections                       gauge
    channelstream_chat_attached_connections              gauge (a transport attached)
    channelstream_chat_channels                          gauge
    channelstream_chat_messages_posted_total             counter
    channelstream_chat_slow_disconnects_total            counter (once the chat counts them)

The answer's format follows the scraper's ``Accept`` header as
prometheus-client's own handler does: OpenMetrics when asked for, the text
format 1.0.0 (``CONTENT_TYPE_LATEST``) when asked for, else text 0.0.4.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from .. import __version__
from ..chat import CHAT_KEY, ChatState
from ..serving.doors import DoorState
from ..serving.runtime import Runtime, RuntimeState, get_runtime
from ..web.httpserver import HTTP_SERVER_KEY
from ..web.websocket import WebSocket

#: Registry key of the app's :class:`~prometheus_client.CollectorRegistry`.
METRICS_REGISTRY_KEY = "channelstream.ops.metrics"
METRICS_PATH = "/metrics"
#: Registry key of the app's :class:`ChannelstreamCollector`.
METRICS_COLLECTOR_KEY = "channelstream.metrics.collector"

_DOOR_STATES = tuple(state.value for state in DoorState)
_RUNTIME_STATES = tuple(state.value for state in RuntimeState)

_HUB_COUNTERS = (
    ("published", "Messages published on the hub (collected channels included)."),
    ("delivered", "Messages delivered to outboxes (collected channels included)."),
    ("dropped", "Droppable messages dropped from full outboxes."),
    ("channels_collected", "Idle hub channels collected."),
)
_HUB_GAUGES = (
    ("channels", "Hub channels alive."),
    ("outboxes", "Open outboxes (one per connection or subscriber)."),
)
_CHAT_GAUGES = (
    ("users", "Channelstream users in memory."),
    ("active_users", "Channelstream users with at least one connection."),
    ("connections", "Channelstream connections."),
    ("attached_connections", "Channelstream connections with a transport attached."),
    ("channels", "Channelstream channels."),
)


_HTTP_GAUGES = {
    "connections": "HTTP connections being served.",
    "max_connections": "The cap on HTTP connections served at once (http.max_connections).",
}
#: What a door's status key must look like to become a metric name.
_METRIC_NAME = re.compile(r"[a-z][a-z0-9_]*")


class ChannelstreamCollector(Collector):
    """Reads the runtime's and the chat state's figures at each scrape.

    Called by prometheus-client from the request's greenlet; every read
    is of plain attributes and never yields.
    """

    def __init__(self, runtime: Runtime, chat: ChatState | None) -> None:
        self.runtime = runtime
        self.chat = chat
        #: The HTTP server of this process, once a scrape came through it.
        self.http_server: Any = None

    def collect(self) -> Iterator[Metric]:
        status = self.runtime.status()
        info = InfoMetricFamily("channelstream", "The channelstream version serving.")
        info.add_metric([], {"version": __version__})
        yield info
        yield GaugeMetricFamily(
            "channelstream_uptime_seconds",
            "Seconds since the runtime started (0 before).",
            value=status["uptime_seconds"],
        )
        yield _state_family(
            "channelstream_runtime_state",
            "The runtime's state: 1 for the current one.",
            [],
            [([], status["state"])],
            _RUNTIME_STATES,
        )
        yield from self._doors(status["doors"])
        yield from self._door_figures(status["doors"])
        yield from self._hub(status["hub"])
        if self.chat is not None:
            yield from self._chat(self.chat.stats())
        if self.http_server is not None:
            overflows = sum(WebSocket.overflows_by_class().values())
            yield from self._http({**self.http_server.stats(), "websocket_overflows": overflows})

    @staticmethod
    def _doors(doors: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        yield _state_family(
            "channelstream_door_state",
            "Each door's state: 1 for its current one.",
            ["door"],
            [([name], door.get("state", "unknown")) for name, door in sorted(doors.items())],
            _DOOR_STATES,
        )
        restarts = CounterMetricFamily(
            "channelstream_door_restarts",
            "Restarts of each supervised door after its loop crashed.",
            labels=["door"],
        )
        for name, door in sorted(doors.items()):
            if isinstance(door.get("restarts"), int):
                restarts.add_metric([name], door["restarts"])
        yield restarts

    @staticmethod
    def _door_figures(doors: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        """Every number a door shows in ``/healthz`` (its counters and sizes), one
        gauge family per name: ``channelstream_door_<name>{door}``."""
        figures: dict[str, list[tuple[str, float]]] = {}
        for door_name, door in sorted(doors.items()):
            for key, value in door.items():
                if key == "restarts" or isinstance(value, bool):
                    continue
                if isinstance(value, int | float) and _METRIC_NAME.fullmatch(key):
                    figures.setdefault(key, []).append((door_name, value))
        for key, rows in sorted(figures.items()):
            family = GaugeMetricFamily(
                f"channelstream_door_{key}", f"The {key} figure of each door that has one.",
                labels=["door"],
            )
            for door_name, value in rows:
                family.add_metric([door_name], value)
            yield family

    @staticmethod
    def _http(stats: dict[str, Any]) -> Iterator[Metric]:
        for key, value in sorted(stats.items()):
            if key in _HTTP_GAUGES:
                yield GaugeMetricFamily(f"channelstream_http_{key}", _HTTP_GAUGES[key], value=value)
            elif isinstance(value, int):
                yield CounterMetricFamily(
                    f"channelstream_http_{key}", f"HTTP server: {key.replace('_', ' ')}.",
                    value=value,
                )

    @staticmethod
    def _hub(hub: dict[str, Any]) -> Iterator[Metric]:
        for key, doc in _HUB_COUNTERS:
            yield CounterMetricFamily(f"channelstream_hub_{key}", doc, value=hub[key])
        for key, doc in _HUB_GAUGES:
            yield GaugeMetricFamily(f"channelstream_hub_{key}", doc, value=hub[key])

    @staticmethod
    def _chat(stats: dict[str, Any]) -> Iterator[Metric]:
        for key, doc in _CHAT_GAUGES:
            yield GaugeMetricFamily(f"channelstream_chat_{key}", doc, value=stats[key])
        yield CounterMetricFamily(
            "channelstream_chat_messages_posted",
            "Items accepted by POST /message.",
            value=stats["messages_posted"],
        )
        slow = stats.get("slow_disconnects")
        if slow is not None:
            yield CounterMetricFamily(
                "channelstream_chat_slow_disconnects",
                "Connections closed because they fell too far behind.",
                value=slow,
            )


def _state_family(
    name: str,
    doc: str,
    labels: list[str],
    rows: list[tuple[list[str], str]],
    known: tuple[str, ...],
) -> GaugeMetricFamily:
    """An enum-style gauge: one sample per known state (and an unknown current one)."""
    family = GaugeMetricFamily(name, doc, labels=[*labels, "state"])
    for values, current in rows:
        states = known if current in known else (*known, current)
        for state in states:
            family.add_metric([*values, state], 1.0 if state == current else 0.0)
    return family


def make_registry(collector: ChannelstreamCollector) -> CollectorRegistry:
    """A new registry with the channelstream, process and platform collectors."""
    registry = CollectorRegistry()
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def metrics(request: Request) -> Response:
    """The current figures in the format the scraper accepts."""
    registry: CollectorRegistry = request.registry[METRICS_REGISTRY_KEY]
    request.registry[METRICS_COLLECTOR_KEY].http_server = request.environ.get(HTTP_SERVER_KEY)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = Response(body=encoder(registry), cache_control="no-store")
    response.headers["Content-Type"] = content_type
    return response


def includeme(config: Configurator) -> None:
    """Make the app's metrics registry and add ``/metrics`` (GET, admin auth)."""
    chat = config.registry.get(CHAT_KEY)
    collector = ChannelstreamCollector(get_runtime(config.registry), chat)
    config.registry[METRICS_COLLECTOR_KEY] = collector
    config.registry[METRICS_REGISTRY_KEY] = make_registry(collector)
    config.add_route("metrics", METRICS_PATH)
    config.add_view(metrics, route_name="metrics", request_method="GET", auth="admin")
