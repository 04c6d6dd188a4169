"""GATD across processes: two real servers (development.ini) read one RabbitMQ stream.

Each test has its own exchange and stream; every server of a test shares
them (``amqp.stream``). Packets come from the publisher (``PacketPublisher``,
``gatd-publish``) and from ``POST /packets``; they go out to the TCP streamer
and socket.io ``/stream`` clients of both processes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time

import pika
import pytest
import requests

from channelstream.amqp.broker import stream_arguments
from channelstream.amqp.publisher import PacketPublisher, PublishError
from tests.amqp.conftest import caught_up, door_status, wait_for_door
from tests.amqp.test_cli import gatd_publish
from tests.sio.clients import StreamClient as SioClient
from tests.support.broker import broker_target, in_ci, url_via
from tests.support.packets import StreamClient, new_run, post_packets
from tests.support.server import ServerFailed, free_port
from tests.support.tcp_proxy import TcpProxy
from tests.support.wait import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]


def streaming(server) -> int:
    return server.get("/healthz").json()["doors"]["tcp-streamer"]["streaming"]


def numbers(packets: list[dict]) -> list[int]:
    return [p["n"] for p in packets]


def window(server, query: dict) -> list[int]:
    """What a history-only ``time`` query gives now (the window, then EOF)."""
    with StreamClient(server).send({**query, "_history_only": True}) as client:
        lines = client.rest().splitlines()
    return [json.loads(line)["n"] for line in lines]


class NumberedPublisher(threading.Thread):
    """Publishes ``{"run": run, "n": 0, 1, ...}`` straight to the broker until stopped;
    a publish the broker refused is tried again (never skipped, never counted twice)."""

    def __init__(self, url: str, exchange: str, run: str, pause: float = 0.005) -> None:
        super().__init__(name="numbered-publisher", daemon=True)
        self.url, self.exchange, self.run_id, self.pause = url, exchange, run, pause
        self.sent = 0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        publisher = PacketPublisher(self.url, self.exchange)
        try:
            while not self._stop_event.wait(self.pause):
                try:
                    publisher.publish({"run": self.run_id, "n": self.sent})
                except PublishError:
                    continue  # nothing was confirmed: the same n again
                self.sent += 1
        except BaseException as err:  # reported by the test
            self.error = err
        finally:
            publisher.close()

    def stop(self) -> int:
        self._stop_event.set()
        self.join(10)
        assert self.error is None, self.error
        return self.sent


def test_a_packet_published_to_the_exchange_reaches_the_clients_of_every_process(
    stream_server, broker_url, exchange
):
    servers = [stream_server(), stream_server()]
    run = new_run()
    tcp = [StreamClient(s).send({"run": run, "temperature": 70}) for s in servers]
    sio = [SioClient(s.url) for s in servers]
    try:
        for client in sio:
            assert client.call("query", {"run": run, "temperature": 70}) == {"ok": True}
        wait_for(lambda: all(streaming(s) == 1 for s in servers), what="TCP clients streaming")
        with PacketPublisher(broker_url, exchange) as publisher:
            for n in range(4):
                publisher.publish({"run": run, "n": n, "temperature": 70 if n != 2 else 71})
        done = gatd_publish(
            "--url", broker_url, "--exchange", exchange,
            json.dumps({"run": run, "n": 4, "temperature": 70.0}),
        )
        assert done.returncode == 0, done.stderr
        for client in tcp:
            assert numbers(client.packets(4)) == [0, 1, 3, 4]
        for client in sio:
            assert numbers(client.data(4)) == [0, 1, 3, 4]
    finally:
        for client in tcp:
            client.close()
        for client in sio:
            client.close()
    for running in servers:
        door = door_status(running)
        assert door["stream"] == door["queue"]
        assert door["consumed"] == 5 and door["malformed"] == 0


def test_post_packets_on_one_process_reaches_the_clients_of_the_other(stream_server):
    a, b = stream_server(), stream_server()
    run = new_run()
    with StreamClient(b).send({"run": run}) as tcp_b, SioClient(b.url) as sio_b:
        assert sio_b.call("query", {"run": run}) == {"ok": True}
        wait_for(lambda: streaming(b) == 1, what="the TCP client streaming")
        answer = post_packets(a, [{"run": run, "n": 0}, {"run": run, "n": 1}])
        assert (answer.status_code, answer.json()) == (202, {"accepted": 2})
        post_packets(b, {"run": run, "n": 2}).raise_for_status()
        assert numbers(tcp_b.packets(3)) == [0, 1, 2]
        assert numbers(sio_b.data(3)) == [0, 1, 2]
    # ... and a's own clients get them from the stream too, in the same order
    assert window(a, {"run": run, "time": 60_000}) == [0, 1, 2]
    assert door_status(a)["posted"] == 2 and door_status(b)["posted"] == 1


def test_posts_to_both_processes_come_out_in_one_order_everywhere(stream_server):
    servers = [stream_server(), stream_server()]
    run = new_run()
    clients = [StreamClient(s).send({"run": run}) for s in servers]
    try:
        wait_for(lambda: all(streaming(s) == 1 for s in servers), what="TCP clients streaming")

        def post_many(server, first: int) -> None:
            for n in range(first, first + 60, 2):
                answer = post_packets(server, [{"run": run, "n": n}, {"run": run, "n": n + 1}])
                assert answer.status_code == 202, answer.text

        posters = [
            threading.Thread(target=post_many, args=(s, first))
            for s, first in zip(servers, (0, 1000), strict=True)
        ]
        for poster in posters:
            poster.start()
        for poster in posters:
            poster.join(60)
        seen = [numbers(client.packets(120)) for client in clients]
    finally:
        for client in clients:
            client.close()
    assert seen[0] == seen[1]  # one log, one order
    assert sorted(seen[0]) == [*range(60), *range(1000, 1060)]
    for n in (0, 1000):  # a POST's packets are next to each other in the log
        assert seen[0].index(n + 1) == seen[0].index(n) + 1


def test_a_process_started_later_answers_time_queries_with_the_same_packets(
    stream_server, broker_url, exchange
):
    a = stream_server()
    run = new_run()
    with PacketPublisher(broker_url, exchange) as publisher:
        for n in range(10):
            publisher.publish({"run": run, "n": n})
        post_packets(a, [{"run": run, "n": n} for n in range(10, 15)]).raise_for_status()
        wait_for_door(a, lambda d: d["consumed"] == 15, "the first 15 consumed")
        time.sleep(2.0)  # a quiet gap, so that a window can start between the two batches
        middle = time.time() - 1.0
        for n in range(15, 25):
            publisher.publish({"run": run, "n": n})
    wait_for_door(a, lambda d: d["consumed"] == 25, "all 25 consumed")

    b = stream_server()  # refills its window from the stream
    door = caught_up(b)
    assert door["refilled"] == 25 and door["duplicates"] == 0 and door["lost"] == 0
    everything = {"run": run, "time": 60_000}
    assert window(a, everything) == window(b, everything) == list(range(25))
    # A window that starts in the gap: the second batch only, on both. The
    # refilled packets kept the times they entered the log, not b's start.
    recent = {"run": run, "time": int((time.time() - middle) * 1000)}
    assert window(a, recent) == window(b, recent) == list(range(15, 25))
    with SioClient(b.url) as client:
        assert client.call("query", {**recent, "time": recent["time"] + 50}) == {"ok": True}
        assert numbers(client.data(10)) == list(range(15, 25))
        assert client.quiet(0.3) == []

    # What comes next reaches both the same way: b went live after its refill.
    post_packets(b, {"run": run, "n": 25}).raise_for_status()
    wait_for(lambda: window(a, everything) == window(b, everything) == list(range(26)))


def connections_of(pid: int) -> list[str]:
    """RabbitMQ's ids of the amqp-ingest connections of server process ``pid``."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        if in_ci():
            pytest.fail("rabbitmqctl is needed in CI to close the server's connections")
        pytest.skip("rabbitmqctl not found")
    out = subprocess.run(
        [ctl, "-q", "--no-table-headers", "list_connections", "pid", "client_properties"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    name = f'"channelstream amqp-ingest (pid {pid})"'
    return [line.split("\t", 1)[0] for line in out.splitlines() if name in line]


def close_connections(pid: int) -> int:
    """Close the amqp-ingest connections of ``pid`` from the broker's side, as a
    restarting broker does (only those: other tests may share the broker)."""
    ids = connections_of(pid)
    for ident in ids:
        subprocess.run(
            ["rabbitmqctl", "-q", "close_connection", ident, "test: broker going away"],
            capture_output=True, timeout=60, check=True,
        )
    return len(ids)


def test_tcp_clients_see_no_gap_and_no_duplicate_when_the_broker_goes_away(
    stream_server, broker_url, exchange
):
    with TcpProxy(broker_target(broker_url)) as proxy:
        a = stream_server()
        b = stream_server(url=url_via(broker_url, proxy.port))
        run = new_run()
        clients = {s: StreamClient(s).send({"run": run}) for s in (a, b)}
        publisher = NumberedPublisher(broker_url, exchange, run)
        try:
            wait_for(lambda: streaming(a) == streaming(b) == 1, what="TCP clients streaming")
            publisher.start()
            wait_for(lambda: publisher.sent > 50, what="packets flowing")

            # a: the broker closes its connection; it reconnects at once.
            pid = a.get("/healthz").json()["pid"]
            wait_for(lambda: close_connections(pid) > 0, what="a's connection closed")
            wait_for_door(a, lambda d: d["reconnects"] >= 1 and d["state"] == "connected", "a")

            # b: the broker is unreachable for a while; packets go on into the stream.
            proxy.cut()
            wait_for_door(b, lambda d: d["state"] == "retrying", "b retrying")
            at_cut = publisher.sent
            wait_for(lambda: publisher.sent > at_cut + 100, what="packets published meanwhile")
            proxy.resume()
            door = caught_up(b)
            assert door["reconnects"] >= 1
            wait_for(lambda: publisher.sent > at_cut + 200, what="packets after the outage")
        finally:
            sent = publisher.stop()
        try:
            for server, client in clients.items():
                got = numbers(client.until(lambda p: p["n"] == sent - 1))
                assert got == list(range(sent)), server.url
        finally:
            for client in clients.values():
                client.close()
        for server in (a, b):
            door = door_status(server)
            assert door["lost"] == 0 and door["failed"] == 0
        assert door_status(b)["refilled"] >= 100  # the outage's packets, refilled in order
        assert window(a, {"run": run, "time": 60_000}) == list(range(sent))
        assert window(b, {"run": run, "time": 60_000}) == list(range(sent))


def test_post_packets_answers_503_naming_the_broker_and_publishes_nothing(stream_server):
    port = free_port()  # nothing listens there
    server = stream_server(url=f"amqp://guest:s3cr3tpw@127.0.0.1:{port}/", wait=False)
    answer = post_packets(server, [{"run": "x", "n": 0}, {"run": "x", "n": 1}])
    assert answer.status_code == 503
    body = answer.json()
    assert body["code"] == "unavailable"
    assert f"amqp://guest:***@127.0.0.1:{port}/" in body["error"]
    assert "s3cr3tpw" not in answer.text
    assert door_status(server)["post_failures"] == 1


def test_a_post_refused_while_the_broker_is_away_leaves_nothing_behind(
    stream_server, broker_url
):
    run = new_run()
    with TcpProxy(broker_target(broker_url)) as proxy:
        server = stream_server(url=url_via(broker_url, proxy.port))
        post_packets(server, {"run": run, "n": 0}).raise_for_status()  # connects the sink
        proxy.cut()
        refused = post_packets(server, [{"run": run, "n": n} for n in (1, 2, 3)])
        assert refused.status_code == 503, refused.text
        assert "nothing was published" in refused.json()["error"]
        proxy.resume()
        post_packets(server, {"run": run, "n": 4}).raise_for_status()
        caught_up(server)
    wait_for(lambda: window(server, {"run": run, "time": 60_000}) == [0, 4])


def test_a_packet_larger_than_the_consumers_take_is_refused_with_413(stream_server):
    server = stream_server(**{"amqp.max_body_size": "200"})
    run = new_run()
    answer = post_packets(server, [{"run": run, "n": 0}, {"run": run, "n": 1, "pad": "x" * 300}])
    assert answer.status_code == 413
    assert answer.json()["index"] == 1 and "amqp.max_body_size" in answer.json()["error"]
    post_packets(server, {"run": run, "n": 2}).raise_for_status()
    wait_for(lambda: window(server, {"run": run, "time": 60_000}) == [2])


def test_a_stream_deleted_and_made_again_is_read_from_its_start(
    stream_server, broker_url, exchange, stream_name
):
    server = stream_server()
    run = new_run()
    post_packets(server, [{"run": run, "n": n} for n in range(5)]).raise_for_status()
    wait_for_door(server, lambda d: d["consumed"] == 5, "5 consumed")
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        connection.channel().queue_delete(stream_name)  # the consumer is cancelled
    finally:
        connection.close()
    door = wait_for_door(server, lambda d: d["stream_resets"] == 1, "the reset seen")
    caught_up(server)
    with StreamClient(server).send({"run": run}) as client:
        wait_for(lambda: streaming(server) == 1, what="streaming")
        with PacketPublisher(broker_url, exchange) as publisher:
            publisher.publish({"run": run, "n": 5})
        assert numbers(client.packets(1)) == [5]  # not skipped as "consumed before"
    assert door["lost"] == 0
    assert "was made again" in server.stderr


def test_an_existing_stream_is_used_as_it_is_and_a_classic_queue_is_refused(
    stream_server, broker_url, stream_name
):
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        connection.channel().queue_declare(
            stream_name, durable=True, arguments={"x-queue-type": "stream", "x-max-age": "1h"}
        )
    finally:
        connection.close()
    server = stream_server()  # another max-age: a warning, and the stream as it is
    assert "exists with other arguments; used as it is" in server.stderr
    post_packets(server, {"run": "r", "n": 0}).raise_for_status()
    assert server.stop() == 0

    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        channel.queue_delete(stream_name)
        channel.queue_declare(stream_name, durable=True)
    finally:
        connection.close()
    server = stream_server(wait=False)
    door = wait_for_door(server, lambda d: d["state"] == "retrying", "retrying")
    assert "is not a stream" in door["last_error"]
    refused = post_packets(server, {"run": "r", "n": 1})
    assert refused.status_code == 503 and "is not a stream" in refused.json()["error"]


def test_a_bad_stream_name_stops_startup_naming_the_key(server):
    with pytest.raises(ServerFailed, match=r"amqp\.stream: 'amq\.packets': names starting"):
        server(app={"amqp.url": "amqp://127.0.0.1:1/", "amqp.stream": "amq.packets"})


def test_healthz_and_requests_answer_while_a_large_window_is_refilled(
    stream_server, broker_url, exchange, stream_name
):
    run = new_run()
    stream = (stream_name, stream_arguments(300, 1 << 30))  # as the servers declare it
    with PacketPublisher(broker_url, exchange, transactional=True, stream=stream) as publisher:
        for start in range(0, 20_000, 1000):
            publisher.publish_many([{"run": run, "n": n} for n in range(start, start + 1000)])
    server = stream_server(wait=False)
    for _ in range(10):
        assert server.get("/healthz", timeout=5).status_code == 200
    door = caught_up(server)
    assert door["refilled"] == 20_000, (door, server.stderr)
    assert window(server, {"run": run, "time": 60_000}) == list(range(20_000))


def test_without_the_stream_post_packets_stays_in_its_process(server, broker_url, exchange):
    keys = {"amqp.url": broker_url, "amqp.exchange": exchange, "packets.ingest_tokens": "tok"}
    a, b = server(app=keys), server(app=keys)
    run = new_run()
    answer = requests.post(
        a.url + "/packets", json={"run": run, "n": 0},
        headers={"Authorization": "Bearer tok"}, timeout=10,
    )
    assert answer.status_code == 202
    assert window(a, {"run": run, "time": 60_000}) == [0]
    assert window(b, {"run": run, "time": 60_000}) == []


def test_every_gunicorn_worker_reads_the_one_stream_and_gets_every_post(
    server, broker_url, exchange, stream_name
):
    running = server(
        "production.ini",
        server={"workers": "2", "control_socket_disable": "true"},
        app={
            "amqp.url": broker_url,
            "amqp.exchange": exchange,
            "amqp.stream": stream_name,
            "packets.ingest_tokens": "tok",
        },
        env={"CHANNELSTREAM_SECRET": "s3cret", "CHANNELSTREAM_ADMIN_SECRET": "adm1n"},
    )
    workers: dict[int, dict] = {}

    def seen(check) -> bool:
        body = running.get("/healthz", auth=("ops", "adm1n")).json()
        door = body["doors"]["amqp-ingest"]
        if check(door):
            workers[body["pid"]] = door
        else:
            workers.pop(body["pid"], None)
        return len(workers) == 2

    wait_for(
        lambda: seen(lambda d: d["state"] == "connected" and not d["catching_up"]),
        what="both workers caught up",
    )
    workers.clear()
    run = new_run()
    for n in range(10):  # each POST lands on either worker
        answer = requests.post(
            running.url + "/packets", json={"run": run, "n": n},
            headers={"Authorization": "Bearer tok"}, timeout=10,
        )
        assert answer.status_code == 202, answer.text
    wait_for(lambda: seen(lambda d: d["consumed"] == 10), what="10 packets in each worker")
    assert sum(door["posted"] for door in workers.values()) == 10
    assert running.stop() == 0


def test_checking_a_stream_while_packets_flow_into_it_leaves_the_connection_open(
    broker_url, exchange, stream_name
):
    """declare_stream's probe consumer is cancelled at once; pika rejects what it got
    meanwhile, and a stream answers a reject by closing the connection: the probe has
    a connection of its own, so the caller's stays open (POST /packets got 503s)."""
    from channelstream.amqp.broker import declare_exchange, declare_stream

    arguments = stream_arguments(60_000, 1 << 30)
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = declare_exchange(connection, connection.channel(), exchange)
        declare_stream(connection, channel, stream_name, exchange, arguments)
        publisher = NumberedPublisher(broker_url, exchange, new_run(), pause=0)
        publisher.start()
        try:
            wait_for(lambda: publisher.sent >= 20, what="packets flowing")
            for _ in range(30):
                declare_stream(connection, connection.channel(), stream_name, exchange, arguments)
                assert connection.is_open
        finally:
            assert publisher.stop() > 20
    finally:
        connection.close()
