"""The amqp-ingest door in the real server (pserve development.ini) against RabbitMQ.

The hub side is checked through what the server itself reports: the door's
counters and the hub's published count in /healthz.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from urllib.parse import urlsplit

import pika
import pytest

from channelstream.amqp.ingest import limit_reads
from channelstream.amqp.publisher import PacketPublisher
from tests.amqp.conftest import DOOR, door_status, wait_for_door
from tests.support.broker import BoundQueue, broker_target, in_ci, publish_raw, url_via
from tests.support.server import free_port
from tests.support.tcp_proxy import TcpProxy
from tests.support.wait import wait_for

pytestmark = pytest.mark.broker


def healthz(server):
    # production.ini shows the details to admins only; adm1n is its tests' admin_secret
    return server.get("/healthz", auth=("ops", "adm1n")).json()


def hub_published(server) -> int:
    return healthz(server)["hub"]["published"]


def consumed(server) -> int:
    return door_status(server)["consumed"]


class PacedPublisher(threading.Thread):
    """Publishes numbered packets straight to the broker until stopped."""

    def __init__(self, url: str, exchange: str) -> None:
        super().__init__(name="paced-publisher", daemon=True)
        self.url, self.exchange = url, exchange
        self.sent = 0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            with PacketPublisher(self.url, self.exchange) as publisher:
                while not self._stop_event.wait(0.01):
                    publisher.publish({"profile_id": "pacedpaced", "n": self.sent})
                    self.sent += 1
        except BaseException as err:  # reported by the test
            self.error = err

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)
        assert self.error is None, self.error


def test_packets_from_the_publisher_and_from_a_gatd_formatter_reach_the_hub(
    amqp_server, broker_url, exchange
):
    server = amqp_server()
    status = healthz(server)
    door = status["doors"][DOOR]
    assert status["status"] == "ok"
    assert door["queue"].startswith("amq.gen-")
    assert (door["consumed"], door["malformed"], door["reconnects"]) == (0, 0, 0)
    before = status["hub"]["published"]

    with PacketPublisher(broker_url, exchange) as publisher:
        for n in range(5):
            publisher.publish({"profile_id": "abcdefghij", "temperature": 70, "n": n})
    # The original formatter: JSON body, only profile_id as a header.
    publish_raw(
        broker_url,
        exchange,
        [json.dumps({"profile_id": "klmnopqrst", "n": n}).encode() for n in range(3)],
        headers={"profile_id": "klmnopqrst"},
    )

    wait_for(lambda: consumed(server) == 8, what="8 packets consumed")
    wait_for(lambda: hub_published(server) == before + 8, what="8 packets on the hub")
    assert door_status(server)["malformed"] == 0


def test_the_broker_filters_for_a_query_while_the_door_takes_everything(
    amqp_server, broker_url, exchange
):
    server = amqp_server()
    packets = [
        {"profile_id": "aaaaaaaaaa", "temperature": 70, "room": "kitchen"},
        {"profile_id": "aaaaaaaaaa", "temperature": 69, "room": "kitchen"},
        {"profile_id": "bbbbbbbbbb", "temperature": 70, "room": "hall"},
    ]
    query = {"x-match": "all", "temperature": 70, "room": "kitchen"}
    with BoundQueue(broker_url, exchange, query) as mine:
        with PacketPublisher(broker_url, exchange) as publisher:
            for packet in packets:
                publisher.publish(packet)
        assert mine.rest() == [packets[0]]
    wait_for(lambda: consumed(server) == 3, what="every packet consumed by the door")


def test_healthz_answers_while_the_consumer_waits_and_while_packets_flow(
    amqp_server, broker_url, exchange
):
    """The door waits in pika with no time limit: only a cooperative wait lets HTTP in."""
    server = amqp_server()
    for _ in range(20):  # the consumer is idle, parked in process_data_events()
        assert server.get("/healthz", timeout=5).status_code == 200
    publisher = PacedPublisher(broker_url, exchange)
    publisher.start()
    try:
        wait_for(lambda: consumed(server) > 0, what="packets flowing")
        for _ in range(20):
            assert server.get("/healthz", timeout=5).status_code == 200
    finally:
        publisher.stop()
    wait_for(lambda: consumed(server) == publisher.sent, what="every packet consumed")


def test_malformed_bodies_are_counted_acked_and_logged_without_a_flood(
    amqp_server, broker_url, exchange
):
    server = amqp_server(**{"amqp.max_body_size": "4096", "amqp.prefetch": "10"})
    bad = [
        b"not json",
        b"",
        b"[1, 2, 3]",
        b'"a string"',
        b'{"t": NaN}',
        b"\xff\xfe\x00",
        b'{"a": ' * 40 + b"1" + b"}" * 40,
        json.dumps({"big": "x" * 5000}).encode(),
    ] * 5
    good = [json.dumps({"profile_id": "goodgoodgo", "n": n}).encode() for n in range(3)]
    # The good ones come last: with a prefetch of 10, the broker sends them
    # only if the 40 bad ones before them were acknowledged.
    publish_raw(broker_url, exchange, bad + good)

    wait_for(lambda: consumed(server) == 3, what="the good packets after the bad ones")
    door = wait_for_door(server, lambda d: d["malformed"] == len(bad), "malformed counted")
    assert door["state"] == "connected"
    logged = server.stderr.count("dropped a malformed packet")
    assert 1 <= logged < len(bad)


def unacknowledged(queue: str) -> int | None:
    """The broker's count of delivered, unacknowledged messages of ``queue``."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        if in_ci():
            pytest.fail("rabbitmqctl is needed in CI to see the broker's unacked count")
        pytest.skip("rabbitmqctl not found")
    out = subprocess.run(
        [ctl, "-q", "list_queues", "name", "messages_unacknowledged"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    for line in out.splitlines():
        name, _, count = line.partition("\t")
        if name == queue:
            return int(count)
    return None


def test_a_few_packets_are_acknowledged_soon_without_waiting_for_more(
    amqp_server, broker_url, exchange
):
    server = amqp_server()  # prefetch 1000: an ack per 256 packets while they flow
    door = wait_for_door(server, lambda d: d["state"] == "connected", "connected")
    publish_raw(broker_url, exchange, [json.dumps({"n": n}).encode() for n in range(5)])
    wait_for(lambda: consumed(server) == 5, what="5 packets consumed")
    wait_for(lambda: unacknowledged(door["queue"]) == 0, timeout=10, what="the 5 acked")


def test_the_door_rides_out_a_broker_outage(amqp_server, broker_url, exchange):
    with TcpProxy(broker_target(broker_url)) as proxy:
        server = amqp_server(url=url_via(broker_url, proxy.port))
        publisher = PacedPublisher(broker_url, exchange)  # straight to the broker
        publisher.start()
        try:
            wait_for(lambda: consumed(server) > 5, what="packets flowing")

            proxy.cut()
            door = wait_for_door(server, lambda d: d["state"] == "retrying", "retrying")
            assert healthz(server)["status"] == "degraded"
            assert door["last_error"]
            assert door["queue"] is None
            for _ in range(5):  # the process keeps serving HTTP meanwhile
                assert server.get("/healthz", timeout=5).status_code == 200
            wait_for(lambda: proxy.refused > 0, what="a reconnection attempt while cut")
            at_cut = consumed(server)

            proxy.resume()
            door = wait_for_door(server, lambda d: d["state"] == "connected", "connected again")
            assert door["reconnects"] >= 1
            wait_for(lambda: consumed(server) > at_cut + 5, what="packets flowing again")
            assert healthz(server)["status"] == "ok"
        finally:
            publisher.stop()
    log = server.stderr
    assert "lost the connection to" in log
    assert "retrying in 1 s" in log
    assert log.count("connected to") >= 2
    password = urlsplit(broker_url).password
    if password:
        assert f":{password}@" not in log


def test_an_absent_broker_never_stops_the_server(amqp_server):
    port = free_port()
    server = amqp_server(url=f"amqp://guest:hunter22@127.0.0.1:{port}/", connected=False)
    door = wait_for_door(server, lambda d: d["state"] == "retrying", "retrying")
    assert "Connection refused" in door["last_error"]
    assert door["broker"] == f"amqp://guest:***@127.0.0.1:{port}/"
    status = healthz(server)
    assert status["status"] == "degraded"
    assert "hunter22" not in json.dumps(status)
    assert f"cannot connect to amqp://guest:***@127.0.0.1:{port}/" in server.stderr
    assert "hunter22" not in server.stderr
    assert server.stop() == 0


def test_an_exchange_of_another_type_is_reported_and_retried(amqp_server, broker_url, exchange):
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    connection.channel().exchange_declare(exchange, exchange_type="fanout")
    connection.close()
    server = amqp_server(connected=False)
    door = wait_for_door(server, lambda d: d["state"] == "retrying", "retrying")
    assert "not a headers exchange" in door["last_error"]


def test_stopping_the_server_closes_the_door_and_its_queue(amqp_server, broker_url):
    server = amqp_server()
    queue = door_status(server)["queue"]
    assert server.stop() == 0
    assert "door 'amqp-ingest' stopped" in server.stderr
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
            connection.channel().queue_declare(queue, passive=True)
    finally:
        if connection.is_open:
            connection.close()


def test_pika_still_lets_the_door_limit_its_reads(broker_url):
    """A canary for pika upgrades: the door tunes a private pika attribute."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        assert limit_reads(connection, 4096)
        assert connection._impl._transport._MAX_CONSUME_BYTES == 4096
    finally:
        connection.close()


def test_each_gunicorn_worker_consumes_every_packet_through_its_own_queue(
    server, broker_url, exchange
):
    running = server(
        "production.ini",
        server={"workers": "2", "control_socket_disable": "true"},
        app={"amqp.url": broker_url, "amqp.exchange": exchange},
        env={"CHANNELSTREAM_SECRET": "s3cret", "CHANNELSTREAM_ADMIN_SECRET": "adm1n"},
    )
    workers: dict[int, dict] = {}

    def both_connected() -> bool:
        body = healthz(running)
        if body["doors"][DOOR]["state"] == "connected":
            workers[body["pid"]] = body["doors"][DOOR]
        return len(workers) == 2

    wait_for(both_connected, what="a connected door in each of the 2 workers")
    assert running.process.pid not in workers  # the master built the app, never connected
    assert len({door["queue"] for door in workers.values()}) == 2

    with PacketPublisher(broker_url, exchange) as publisher:
        for n in range(10):
            publisher.publish({"profile_id": "workerswor", "n": n})
    done: set[int] = set()

    def each_consumed_all() -> bool:
        body = healthz(running)
        if body["doors"][DOOR]["consumed"] == 10:
            done.add(body["pid"])
        return done == set(workers)

    wait_for(each_consumed_all, what="10 packets consumed by each worker")
    assert running.stop() == 0
