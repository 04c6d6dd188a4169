"""/metrics: admin only, Prometheus text that parses, figures read at scrape time."""

from __future__ import annotations

import uuid

import pytest
import requests
import websocket
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from channelstream.chat import CHAT_KEY
from channelstream.hub import Hub
from channelstream.ops.metrics import METRICS_REGISTRY_KEY, ChannelstreamCollector
from channelstream.security.signing import SIGNATURE_HEADER, sign
from channelstream.settings import default_settings
from channelstream.wsgi_app import build_app
from tests.support.api import ADMIN_SECRET, SECRET
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(60)

ADMIN = ("prometheus", ADMIN_SECRET)


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def scrape(server, **headers) -> requests.Response:
    answer = requests.get(server.url + "/metrics", auth=ADMIN, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer


def samples(server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(scrape(server).text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(found, metric: str, **labels: str) -> float:
    return found[metric, tuple(sorted(labels.items()))]


def test_metrics_need_admin_credentials(api_server):
    url = api_server.url + "/metrics"
    unsigned = requests.get(url, timeout=10)
    assert unsigned.status_code == 401 and unsigned.headers["WWW-Authenticate"].startswith("Basic")
    api_signed = requests.get(
        url, headers={SIGNATURE_HEADER: sign(SECRET, "GET", "/metrics")}, timeout=10
    )
    assert api_signed.status_code == 401
    assert "channelstream" not in api_signed.text.replace("channelstream admin", "")
    signed = requests.get(
        url, headers={SIGNATURE_HEADER: sign(ADMIN_SECRET, "GET", "/metrics")}, timeout=10
    )
    assert signed.status_code == 200
    assert requests.get(url, auth=ADMIN, timeout=10).status_code == 200


def test_metrics_parse_and_name_every_figure(api_server):
    found = samples(api_server)
    names = {metric for metric, _ in found}
    for expected in (
        "channelstream_info",
        "channelstream_uptime_seconds",
        "channelstream_hub_published_total",
        "channelstream_hub_delivered_total",
        "channelstream_hub_dropped_total",
        "channelstream_hub_channels",
        "channelstream_hub_outboxes",
        "channelstream_chat_users",
        "channelstream_chat_active_users",
        "channelstream_chat_connections",
        "channelstream_chat_attached_connections",
        "channelstream_chat_channels",
        "channelstream_chat_messages_posted_total",
        "process_resident_memory_bytes",
        "python_info",
    ):
        assert expected in names, expected
    assert value(found, "channelstream_runtime_state", state="running") == 1
    assert value(found, "channelstream_runtime_state", state="stopped") == 0
    door_states = {
        labels: v for (metric, labels), v in found.items() if metric == "channelstream_door_state"
    }

    def states(door: str) -> dict[str, float]:
        return {
            dict(labels)["state"]: v
            for labels, v in door_states.items()
            if dict(labels)["door"] == door
        }

    gc_door = states("channelstream-gc")
    assert gc_door["running"] == 1 and sum(gc_door.values()) == 1
    detector = states("zmq-source:detector")  # development.ini's demo feed, nobody sending
    assert detector["waiting"] == 1 and sum(detector.values()) == 1
    assert value(found, "channelstream_door_restarts_total", door="channelstream-gc") == 0


def test_metrics_move_with_traffic(api_server, client):
    room = name("room")
    before = samples(api_server)
    conn_id = client.connect(name("ann"), [room])["conn_id"]
    ws = websocket.create_connection(
        api_server.url.replace("http://", "ws://") + f"/ws?conn_id={conn_id}", timeout=10
    )
    try:
        client.message([{"channel": room, "user": "ann", "message": {"n": i}} for i in range(3)])
        after = wait_for(
            lambda: (s := samples(api_server))["channelstream_chat_attached_connections", ()] >= 1
            and s,
            timeout=10,
            what="the websocket to attach",
        )
    finally:
        ws.close()

    def moved(metric: str) -> float:
        return after[metric, ()] - before[metric, ()]

    assert moved("channelstream_chat_messages_posted_total") == 3
    assert moved("channelstream_hub_published_total") >= 3
    assert moved("channelstream_hub_delivered_total") >= 3
    assert moved("channelstream_chat_connections") >= 1
    assert moved("channelstream_chat_channels") >= 1
    assert after["channelstream_uptime_seconds", ()] > before["channelstream_uptime_seconds", ()]


def test_metrics_content_type_follows_accept(api_server):
    plain = scrape(api_server)
    assert plain.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert plain.headers["Cache-Control"] == "no-store"
    latest = scrape(api_server, Accept="text/plain; version=1.0.0")
    assert latest.headers["Content-Type"].startswith(CONTENT_TYPE_LATEST)
    assert list(text_string_to_metric_families(latest.text))
    openmetrics = scrape(api_server, Accept="application/openmetrics-text; version=1.0.0")
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    families = {family.name for family in openmetrics_families(openmetrics.text)}
    assert "channelstream_chat_messages_posted" in families


def test_each_app_has_its_own_registry_and_the_global_one_stays_clean():
    first, second = build_app(default_settings()), build_app(default_settings())
    registries = [app.registry[METRICS_REGISTRY_KEY] for app in (first, second)]
    assert registries[0] is not registries[1]
    first.registry[CHAT_KEY].connect("only-in-first", channels=["r"])
    assert registries[0].get_sample_value("channelstream_chat_users") == 1
    assert registries[1].get_sample_value("channelstream_chat_users") == 0
    assert REGISTRY.get_sample_value("channelstream_chat_users") is None


class DoorInTrouble:
    """A runtime whose one door reports a state the collector does not know."""

    def status(self) -> dict:
        return {
            "state": "running",
            "uptime_seconds": 1.0,
            "doors": {"odd": {"state": "unknown", "error": "status() failed"}},
            "hub": Hub().stats(),
        }


def test_a_door_in_an_unknown_state_is_still_shown():
    registry = CollectorRegistry()
    registry.register(ChannelstreamCollector(DoorInTrouble(), None))
    assert (
        registry.get_sample_value("channelstream_door_state", {"door": "odd", "state": "unknown"})
        == 1
    )
    assert (
        registry.get_sample_value("channelstream_door_state", {"door": "odd", "state": "running"})
        == 0
    )
    # no restart count in that status: no sample rather than a made-up 0
    assert registry.get_sample_value("channelstream_door_restarts_total", {"door": "odd"}) is None
    # no chat state: no chat figures
    assert registry.get_sample_value("channelstream_chat_users") is None


def test_every_door_figure_and_the_http_server_are_metrics(api_server):
    health = requests.get(api_server.url + "/healthz", timeout=10).json()
    found = samples(api_server)
    # a number each door shows in /healthz is a gauge labelled with the door
    streamer = health["doors"]["tcp-streamer"]
    assert value(found, "channelstream_door_connections", door="tcp-streamer") == streamer[
        "connections"
    ]
    # the HTTP server's counters and its connections
    assert health["http"]["max_connections"] > 0
    assert value(found, "channelstream_http_max_connections") == health["http"]["max_connections"]
    assert value(found, "channelstream_http_accepted_total") >= 2
    assert value(found, "channelstream_http_header_timeouts_total") >= 0
