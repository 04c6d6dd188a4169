"""GATD clients of socket.io ``/stream``: ``query`` in, one ``data`` event per packet out.

Packets enter through the HTTP door (``POST /packets``) and the AMQP door.
"""

from __future__ import annotations

import threading
import time

import pytest

from channelstream.amqp.publisher import PacketPublisher
from tests.amqp.conftest import amqp_server, broker_url, exchange  # noqa: F401 (fixtures)
from tests.sio.clients import StreamClient
from tests.sio.conftest import door_status
from tests.support.packets import new_run, post_packets
from tests.support.wait import wait_for


def packets(run: str, *numbers: int, **fields) -> list[dict]:
    return [{"run": run, "n": n, "profile_id": "abcdefghij", **fields} for n in numbers]


def query_clients(server) -> int:
    return door_status(server)["query_clients"]


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]], ids="+".join)
def test_live_query_gets_each_matching_packet_as_one_data_event(sio_server, stream, transports):
    run = new_run()
    client = stream(transports=transports)
    assert client.call("query", {"run": run, "temperature": 70}) == {"ok": True}
    post_packets(sio_server, packets(run, 1, temperature=70)).raise_for_status()
    post_packets(sio_server, packets(run, 2, temperature=71)).raise_for_status()
    post_packets(sio_server, packets(run, 3, 4, temperature=70.0)).raise_for_status()
    got = client.data(3)
    assert [p["n"] for p in got] == [1, 3, 4]
    assert got[0] == packets(run, 1, temperature=70)[0]
    assert client.quiet(0.3) == []


def test_time_query_gets_the_window_then_live_without_gap_or_duplicate(sio_server, stream):
    run = new_run()
    post_packets(sio_server, packets(run, 1, 2, 3)).raise_for_status()
    stop = threading.Event()
    posted = [3]

    def keep_posting() -> None:
        n = 4
        while not stop.is_set() and n < 400:
            post_packets(sio_server, packets(run, n)).raise_for_status()
            posted.append(n)
            n += 1
            time.sleep(0.002)  # paced, so that packets still flow while the query starts

    poster = threading.Thread(target=keep_posting)
    poster.start()
    try:
        wait_for(lambda: len(posted) > 10)  # packets flow while the query starts
        client = stream()
        assert client.call("query", {"run": run, "time": 60_000}) == {"ok": True}
        at_query = len(posted)
        wait_for(lambda: len(posted) > at_query + 20 or not poster.is_alive())  # and after it
    finally:
        stop.set()
        poster.join()
    got = [p["n"] for p in client.data(posted[-1])]
    assert got == list(range(1, posted[-1] + 1))
    assert client.quiet(0.3) == []


def test_time_zero_and_an_old_window(sio_server, stream):
    run = new_run()
    post_packets(sio_server, packets(run, 1)).raise_for_status()
    time.sleep(0.3)  # time must pass: packet 1 is to be older than the 100 ms window
    recent = stream()
    recent.call("query", {"run": run, "time": 100})  # 100 ms: packet 1 is older
    everything = stream()
    everything.call("query", {"run": run, "time": 60_000})
    assert [p["n"] for p in everything.data(1)] == [1]
    post_packets(sio_server, packets(run, 2)).raise_for_status()
    assert [p["n"] for p in recent.data(1)] == [2]
    assert [p["n"] for p in everything.data(1)] == [2]


def test_a_new_query_replaces_the_previous_one(sio_server, stream):
    run = new_run()
    client = stream()
    queries = door_status(sio_server)["queries"]
    client.call("query", {"run": run, "room": "kitchen"})
    post_packets(sio_server, packets(run, 1, room="kitchen")).raise_for_status()
    assert [p["n"] for p in client.data(1)] == [1]
    client.call("query", {"run": run, "room": "hall", "time": 60_000})
    post_packets(sio_server, packets(run, 2, room="kitchen")).raise_for_status()
    post_packets(sio_server, packets(run, 3, room="hall")).raise_for_status()
    assert [p["n"] for p in client.data(1)] == [3]
    assert client.quiet(0.3) == []
    assert door_status(sio_server)["queries"] == queries + 2


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("temperature", "must be a JSON object"),
        ([1, 2], "must be a JSON object"),
        ({"time": -5}, '"time" must be a number'),
        ({"time": "yesterday"}, '"time" must be a number'),
        ({"room": {"nested": 1}}, "must be a string, number, boolean or null"),
        ({f"k{i}": i for i in range(65)}, "at most 64 pairs"),
    ],
)
def test_a_bad_query_gets_an_error_event_and_keeps_the_previous_query(
    sio_server, stream, query, message
):
    run = new_run()
    client = stream()
    client.call("query", {"run": run})
    answer = client.call("query", query)
    assert message in answer["error"]
    assert client.next("error")[1] == {"message": answer["error"]}
    post_packets(sio_server, packets(run, 1)).raise_for_status()
    assert [p["n"] for p in client.data(1)] == [1]


def test_a_query_with_no_argument_is_an_error(stream):
    client = stream()
    client.emit("query")
    assert "expected one object" in client.next("error")[1]["message"]


def test_chat_clients_may_query_too_and_clients_are_counted(sio_server, stream, api):
    run = new_run()
    conn_id = api.connect("olga")["conn_id"]
    client = stream(auth={"conn_id": conn_id})
    client.next("user_connect")
    client.call("query", {"run": run})
    assert query_clients(sio_server) >= 1
    post_packets(sio_server, packets(run, 1)).raise_for_status()
    assert [p["n"] for p in client.data(1)] == [1]
    before = query_clients(sio_server)
    client.close()
    wait_for(lambda: query_clients(sio_server) == before - 1, timeout=10)


@pytest.mark.broker
def test_packets_from_amqp_reach_socketio_queries(amqp_server, broker_url, exchange):  # noqa: F811
    server = amqp_server()
    run = new_run()
    with StreamClient(server.url) as live, StreamClient(server.url) as kitchen:
        live.call("query", {"run": run})
        kitchen.call("query", {"run": run, "room": "kitchen"})
        with PacketPublisher(broker_url, exchange) as publisher:
            for packet in packets(run, 1, 2, room="kitchen") + packets(run, 3, room="hall"):
                publisher.publish(packet)
        assert [p["n"] for p in live.data(3)] == [1, 2, 3]
        assert [p["n"] for p in kitchen.data(2)] == [1, 2]
    with StreamClient(server.url, transports=["polling"]) as late:
        late.call("query", {"run": run, "room": "hall", "time": 60_000})
        assert [p["n"] for p in late.data(1)] == [3]


def test_a_history_only_query_gets_the_window_then_query_end(sio_server, stream):
    run = new_run()
    post_packets(sio_server, packets(run, 1, 2, 3)).raise_for_status()
    client = stream()
    query = {"run": run, "time": 60_000, "_history_only": True}
    assert client.call("query", query) == {"ok": True}
    assert [p["n"] for p in client.data(3)] == [1, 2, 3]
    assert client.next("query_end")[1] == {"reason": "history sent"}
    post_packets(sio_server, packets(run, 4)).raise_for_status()
    assert [e for e in client.quiet(0.3) if e[0] == "data"] == []  # nothing live follows


def test_a_paced_query_replays_at_its_pace_then_goes_live(sio_server, stream):
    run = new_run()
    post_packets(sio_server, packets(run, 1)).raise_for_status()
    time.sleep(0.3)  # the point: the server stamps these two 0.3 s apart, at least
    post_packets(sio_server, packets(run, 2)).raise_for_status()
    client = stream()
    began = time.monotonic()
    assert client.call("query", {"run": run, "time": 60_000, "_speedup": 0.5}) == {"ok": True}
    assert [p["n"] for p in client.data(1)] == [1]
    assert [p["n"] for p in client.data(1)] == [2]
    assert time.monotonic() - began >= 0.6  # 0.3 s at half the speed, at least
    post_packets(sio_server, packets(run, 3)).raise_for_status()
    assert [p["n"] for p in client.data(1)] == [3]  # then live


def test_a_new_query_replaces_a_paced_one_and_nothing_of_it_follows(sio_server, stream):
    run = new_run()
    post_packets(sio_server, packets(run, 1)).raise_for_status()
    time.sleep(0.1)  # the point: 0.1 s apart, replayed at 1/1000 of the speed: 100 s
    post_packets(sio_server, packets(run, 2)).raise_for_status()
    client = stream()
    assert client.call("query", {"run": run, "time": 60_000, "_speedup": 0.001}) == {"ok": True}
    assert [p["n"] for p in client.data(1)] == [1]  # the second is 100 s away
    assert client.call("query", {"run": run, "other": "x"}) == {"ok": True}
    post_packets(sio_server, packets(run, 3, other="x")).raise_for_status()
    assert [p["n"] for p in client.data(1)] == [3]
    assert [e for e in client.quiet(0.3) if e[0] == "data"] == []
