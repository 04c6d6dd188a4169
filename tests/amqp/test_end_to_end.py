"""AMQP in, TCP streamer out: packets published to RabbitMQ reach the TCP clients whose
query matches, through the hub of the real server."""

from __future__ import annotations

import json
import uuid

import pytest

from channelstream.amqp.publisher import PacketPublisher
from tests.amqp.conftest import door_status
from tests.support.broker import publish_raw
from tests.support.packets import StreamClient
from tests.support.wait import wait_for

pytestmark = pytest.mark.broker


def streaming(server) -> int:
    return server.get("/healthz").json()["doors"]["tcp-streamer"]["streaming"]


def test_packets_from_amqp_reach_the_tcp_clients_whose_query_matches(
    amqp_server, broker_url, exchange
):
    server = amqp_server()
    run = uuid.uuid4().hex
    queries = {
        "all": {"run": run},
        "seventy": {"run": run, "temperature": 70},
        "kitchen seventy": {"run": run, "temperature": 70, "room": "kitchen"},
        "formatter profile": {"run": run, "profile_id": "klmnopqrst"},
    }
    published = [
        {"run": run, "profile_id": "abcdefghij", "temperature": 70, "room": "kitchen"},
        {"run": run, "profile_id": "abcdefghij", "temperature": 70.0, "room": "hall"},
        {"run": run, "profile_id": "abcdefghij", "temperature": 71, "room": "kitchen"},
    ]
    # As GATD's formatter sent them: only profile_id as a header.
    formatted = [
        {"run": run, "profile_id": "klmnopqrst", "temperature": 70, "n": n} for n in (1, 2)
    ]
    fences = [{**query, "fence": name} for name, query in queries.items()]
    clients = {name: StreamClient(server).send(query) for name, query in queries.items()}
    try:
        wait_for(lambda: streaming(server) == len(clients), what="every client streaming")
        with PacketPublisher(broker_url, exchange) as publisher:
            for packet in published:
                publisher.publish(packet)
        publish_raw(
            broker_url,
            exchange,
            # The second one spread over lines: TCP clients still get it on one.
            [json.dumps(p, indent=2 if p["n"] == 2 else None).encode() for p in formatted]
            + [b"not a packet"],
            headers={"profile_id": "klmnopqrst"},
        )
        with PacketPublisher(broker_url, exchange) as publisher:
            for fence in fences:
                publisher.publish(fence)

        everything = published + formatted
        expected = {
            "all": everything,
            "seventy": [published[0], published[1], *formatted],
            "kitchen seventy": [published[0]],
            "formatter profile": formatted,
        }
        for name, client in clients.items():
            got = client.until(lambda p, name=name: p.get("fence") == name)
            assert [p for p in got if "fence" not in p] == expected[name], name
    finally:
        for client in clients.values():
            client.close()

    door = door_status(server)
    assert door["malformed"] == 1
    assert door["consumed"] == len(everything) + len(fences)

    # The packets are in the packet channel's history: "time" replays them.
    with StreamClient(server).send({"run": run, "temperature": 70, "time": 60000}) as late:
        assert late.packets(4) == [published[0], published[1], *formatted]
