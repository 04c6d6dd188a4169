"""PacketPublisher against RabbitMQ: headers let the broker filter on any key."""

from __future__ import annotations

import json
import time

import pika
import pytest

from channelstream.amqp.deliveries import TIME_HEADER
from channelstream.amqp.publisher import CONTENT_TYPE, PacketPublisher, PublishError
from channelstream.packets import BadPacket
from tests.support.broker import BoundQueue, broker_target, publish_raw, url_via
from tests.support.server import free_port
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.broker

PACKETS = [
    {"profile_id": "aaaaaaaaaa", "temperature": 70, "room": "kitchen", "public": True},
    {"profile_id": "aaaaaaaaaa", "temperature": 71, "room": "kitchen", "public": True},
    {"profile_id": "bbbbbbbbbb", "temperature": 70, "room": "hall", "public": False},
    {"profile_id": "bbbbbbbbbb", "temperature": 70.0, "room": "kitchen", "humidity": 41.5},
    {"profile_id": "cccccccccc", "humidity": 41.5, "nested": {"temperature": 70}},
]


def bind(broker_url, exchange, query):
    return BoundQueue(broker_url, exchange, {"x-match": "all", **query})


def test_the_broker_filters_packets_on_any_key(broker_url, exchange):
    queries = {
        "temperature 70": {"temperature": 70},
        "temperature 70 in the kitchen": {"temperature": 70, "room": "kitchen"},
        "profile b, kitchen": {"profile_id": "bbbbbbbbbb", "room": "kitchen"},
        "public": {"public": True},
        "humidity 41.5": {"humidity": 41.5},
        "temperature 72": {"temperature": 72},
    }
    expected = {
        "temperature 70": [0, 2, 3],
        "temperature 70 in the kitchen": [0, 3],
        "profile b, kitchen": [3],
        "public": [0, 1],
        "humidity 41.5": [3, 4],
        "temperature 72": [],
    }
    queues = {name: bind(broker_url, exchange, query) for name, query in queries.items()}
    try:
        with PacketPublisher(broker_url, exchange) as publisher:
            for packet in PACKETS:
                publisher.publish(packet)
        for name, queue in queues.items():
            assert queue.rest() == [PACKETS[i] for i in expected[name]], name
    finally:
        for queue in queues.values():
            queue.close()


def test_a_packet_goes_out_as_json_with_its_scalar_fields_as_headers(broker_url, exchange):
    with BoundQueue(broker_url, exchange, None) as queue:
        with PacketPublisher(broker_url, exchange) as publisher:
            before = time.time_ns() // 1_000_000
            publisher.publish(PACKETS[0])
            publisher.publish(PACKETS[4])
            after = time.time_ns() // 1_000_000
        (first, body), (second, _) = queue.get(2)
    assert json.loads(body) == PACKETS[0]
    assert first.content_type == CONTENT_TYPE
    # stamped: the time it was published, in ms (a header) and in s (AMQP's property)
    stamp = first.headers.pop(TIME_HEADER)
    assert before <= stamp <= after and first.timestamp == stamp // 1000
    assert first.headers == PACKETS[0]
    second.headers.pop(TIME_HEADER)
    assert second.headers == {"profile_id": "cccccccccc", "humidity": 41}  # pika truncates doubles


def test_a_packet_field_named_like_the_time_header_is_left_as_it_is(broker_url, exchange):
    packet = {"profile_id": "dddddddddd", TIME_HEADER: 12345}
    with BoundQueue(broker_url, exchange, {"x-match": "all", TIME_HEADER: 12345}) as queue:
        with PacketPublisher(broker_url, exchange) as publisher:
            publisher.publish(packet)
        assert queue.rest() == [packet]


def test_a_transactional_publisher_publishes_a_list_all_or_nothing(broker_url, exchange):
    with BoundQueue(broker_url, exchange, None) as queue:
        with PacketPublisher(broker_url, exchange, transactional=True) as publisher:
            publisher.publish_many([{"n": 1}, {"n": 2}])

            def refuse_the_third(index: int, body: bytes) -> None:
                if index == 2:
                    raise ValueError("too large")

            with pytest.raises(ValueError, match="too large"):
                publisher.publish_many([{"n": 3}, {"n": 4}, {"n": 5}], check=refuse_the_third)
            with pytest.raises(BadPacket):
                publisher.publish_many([{"n": 6}, {"n": float("nan")}])
            publisher.publish({"n": 7})
            publisher._connection.close()  # as if the broker had closed it while idle
            publisher.publish_many([{"n": 8}])
        assert queue.packets(4) == [{"n": 1}, {"n": 2}, {"n": 7}, {"n": 8}]
        assert queue.rest() == []


def test_an_unbound_packet_is_dropped_quietly_as_in_gatd(broker_url, exchange):
    with PacketPublisher(broker_url, exchange) as publisher:
        publisher.publish({"profile_id": "nobody"})  # no queue bound: no error
        # and the publisher goes on: the next packet, bound this time, arrives (alone)
        with bind(broker_url, exchange, {"profile_id": "somebody1"}) as bound:
            publisher.publish({"profile_id": "somebody1", "n": 1})
            assert bound.rest() == [{"profile_id": "somebody1", "n": 1}]


def test_the_original_formatters_profile_id_header_still_routes(broker_url, exchange):
    with bind(broker_url, exchange, {"profile_id": "aaaaaaaaaa"}) as by_profile:
        publish_raw(
            broker_url,
            exchange,
            [json.dumps(packet).encode() for packet in PACKETS],
            headers=[{"profile_id": packet["profile_id"]} for packet in PACKETS],
        )
        assert by_profile.rest() == PACKETS[:2]


def test_publish_refuses_what_is_not_a_packet_before_connecting():
    publisher = PacketPublisher(f"amqp://guest:guest@127.0.0.1:{free_port()}/", "x")
    with pytest.raises(BadPacket):
        publisher.publish([1, 2])  # type: ignore[arg-type]
    with pytest.raises(BadPacket):
        publisher.publish({"t": float("inf")})


def test_an_unreachable_broker_is_named_without_its_password():
    port = free_port()
    publisher = PacketPublisher(f"amqp://guest:hunter22@127.0.0.1:{port}/", "x")
    with pytest.raises(PublishError) as caught:
        publisher.publish({"a": 1})
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "Connection refused" in message
    assert "hunter22" not in message


def test_a_publisher_connects_again_after_its_connection_was_closed(broker_url, exchange):
    with BoundQueue(broker_url, exchange, None) as queue:
        publisher = PacketPublisher(broker_url, exchange)
        publisher.publish({"n": 1})
        publisher._connection.close()  # as if the broker had closed it
        publisher.publish({"n": 2})
        publisher.close()
        assert queue.packets(2) == [{"n": 1}, {"n": 2}]


def test_an_existing_non_durable_headers_exchange_is_used_as_it_is(broker_url, exchange):
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    connection.channel().exchange_declare(exchange, exchange_type="headers", durable=False)
    connection.close()
    with BoundQueue(broker_url, exchange, None) as queue:
        with PacketPublisher(broker_url, exchange) as publisher:
            publisher.publish({"n": 1})
        assert queue.packets(1) == [{"n": 1}]


def test_an_exchange_of_another_type_is_an_error_that_says_so(broker_url, exchange):
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    connection.channel().exchange_declare(exchange, exchange_type="fanout")
    connection.close()
    with pytest.raises(PublishError, match="not a headers exchange"):
        PacketPublisher(broker_url, exchange).connect()


def test_a_publisher_whose_idle_connection_died_publishes_on_a_new_one(broker_url, exchange):
    with TcpProxy(broker_target(broker_url)) as proxy:
        via_proxy = url_via(broker_url, proxy.port)
        with BoundQueue(broker_url, exchange, None) as queue:
            with PacketPublisher(via_proxy, exchange) as publisher:
                publisher.publish({"n": 1})
                proxy.cut()  # as when the broker drops an idle client
                proxy.resume()
                publisher.publish({"n": 2})
            assert queue.packets(2) == [{"n": 1}, {"n": 2}]
        assert proxy.forwarded == 2


def test_a_broker_that_stays_away_fails_the_publish_after_one_retry(broker_url, exchange):
    with TcpProxy(broker_target(broker_url)) as proxy:
        via_proxy = url_via(broker_url, proxy.port)
        with PacketPublisher(via_proxy, exchange) as publisher:
            publisher.publish({"n": 1})
            proxy.cut()
            with pytest.raises(PublishError, match=f"127.0.0.1:{proxy.port}"):
                publisher.publish({"n": 2})
