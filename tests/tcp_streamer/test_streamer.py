"""The TCP streamer through the real server: packets POSTed over HTTP reach the
TCP clients whose query matches, as NDJSON; bad queries get one error line.

Every test filters on its own ``run`` value, so tests sharing the module's
server never see each other's packets. Queries that must not miss a packet
published right after they connect carry ``"time": 60000``: the replay and
the live stream meet with no gap and no duplicate, so the subscription's
timing cannot matter.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.packets import (
    StreamClient,
    door_status,
    ndjson_body,
    new_run,
    post_packets,
    run_packets_server,
)
from tests.support.server import REPO, RunningServer
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(120)

#: A client that takes longer than this to accept one write is closed.
SEND_TIMEOUT = 3


@pytest.fixture(scope="module")
def streamer(tmp_path_factory: pytest.TempPathFactory):
    yield from run_packets_server(
        tmp_path_factory.mktemp("streamer"), **{"tcp_streamer.send_timeout": str(SEND_TIMEOUT)}
    )


def accepted(response, count):
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": count}


def matches(query, packet):
    """The documented rule: every pair equals the packet's field (JSON equality)."""
    for key, value in query.items():
        if key == "time":
            continue
        if key not in packet:
            return False
        field = packet[key]
        if isinstance(field, bool) != isinstance(value, bool) or field != value:
            return False
    return True


def without_fences(packets):
    return [p for p in packets if "fence" not in p]


def wait_idle(server: RunningServer) -> None:
    """Wait until no client of earlier tests is still streaming."""
    wait_for(lambda: door_status(server)["clients"] == 0)


# -- matching -----------------------------------------------------------------------------


def test_packets_reach_exactly_the_clients_whose_query_matches(streamer):
    run = new_run()
    queries = {
        "all": {"run": run},
        "temperature": {"run": run, "temperature": 70},
        "temperature_text": {"run": run, "temperature": "70"},
        "profile": {"run": run, "profile_id": "abcdefghij"},
        "several": {"run": run, "profile_id": "abcdefghij", "room": "b", "public": True},
        "null": {"run": run, "note": None},
        "bool": {"run": run, "public": False},
    }
    packets = [
        {"run": run, "seq": 0, "profile_id": "abcdefghij", "temperature": 70, "room": "a"},
        {"run": run, "seq": 1, "profile_id": "abcdefghij", "temperature": 70.0, "room": "b"},
        {"run": run, "seq": 2, "profile_id": "abcdefghij", "room": "b", "public": True},
        {"run": run, "seq": 3, "profile_id": "zzzzzzzzzz", "room": "b", "public": True},
        {"run": run, "seq": 4, "temperature": "70", "note": None},
        {"run": run, "seq": 5, "temperature": 71, "public": 0},
        {"run": run, "seq": 6, "public": False, "note": "x"},
        {"run": run, "seq": 7, "profile_id": "abcdefghij", "raw": [70], "temperature": [70]},
        {"run": run, "seq": 8, "temperature": 70, "room": "b", "public": True},
        {"run": run, "seq": 9, "profile_id": "abcdefghij", "room": "b", "public": 1},
        {"run": run, "seq": 10, "profile_id": "abcdefghij", "room": "b", "public": True, "x": 1},
        {"run": "another run", "seq": 11, "temperature": 70},
        {"run": run, "seq": 12, "note": None, "public": False, "temperature": 70},
    ]
    clients = {
        name: StreamClient(streamer).send({**query, "time": 60000})
        for name, query in queries.items()
    }
    try:
        # Every body form of the ingest, in order.
        accepted(post_packets(streamer, packets[0]), 1)
        accepted(post_packets(streamer, packets[1:5]), 4)
        body = ndjson_body(packets[5:9])
        accepted(post_packets(streamer, body, content_type="application/x-ndjson"), 4)
        accepted(post_packets(streamer, ndjson_body(packets[9:13])), 4)  # detected
        fences = [{**query, "fence": name} for name, query in queries.items()]
        accepted(post_packets(streamer, fences), len(fences))
        for name, client in clients.items():
            got = client.until(lambda p, name=name: p.get("fence") == name)
            expected = [p for p in packets if matches(queries[name], p)]
            assert without_fences(got) == expected, name
            assert [p["fence"] for p in got if "fence" in p] == [
                f["fence"]
                for f in fences[: list(queries).index(name) + 1]
                if matches(queries[name], f)
            ], name
    finally:
        for client in clients.values():
            client.close()


def test_without_time_a_client_gets_only_live_packets(streamer):
    run = new_run()
    accepted(post_packets(streamer, [{"run": run, "seq": 0}, {"run": run, "seq": 1}]), 2)
    wait_idle(streamer)
    with StreamClient(streamer).send({"run": run}) as client:
        wait_for(lambda: door_status(streamer)["streaming"] == 1)
        accepted(post_packets(streamer, [{"run": run, "seq": 2}, {"run": run, "seq": 3}]), 2)
        assert client.packets(2) == [{"run": run, "seq": 2}, {"run": run, "seq": 3}]


# -- time --------------------------------------------------------------------------------


def test_time_replays_exactly_the_window_then_live(streamer):
    run = new_run()
    old = [{"run": run, "seq": n, "phase": "old"} for n in range(10)]
    new = [{"run": run, "seq": n, "phase": "new"} for n in range(10, 20)]
    live = [{"run": run, "seq": n, "phase": "live"} for n in range(20, 30)]
    accepted(post_packets(streamer, old), 10)
    time.sleep(1)  # time must pass: the old packets are 1 s older than the new ones, at least
    before_new = time.time()
    accepted(post_packets(streamer, new), 10)
    with StreamClient(streamer) as client:
        # The window reaches 0.5 s before the new packets: all of them, none of the old.
        window_ms = int((time.time() - before_new) * 1000) + 500
        client.send({"run": run, "time": window_ms})
        assert client.packets(10) == new
        accepted(post_packets(streamer, live), 10)
        assert client.packets(10) == live
        accepted(post_packets(streamer, {"run": run, "fence": True}), 1)
        assert client.packets(1) == [{"run": run, "fence": True}]


def test_a_time_query_past_the_history_gets_what_is_kept_and_is_counted(tmp_path):
    """No extra line for NDJSON clients: /healthz counts it and the log says it."""
    for server in run_packets_server(tmp_path, **{"packets.history_size": "3"}):
        run = new_run()
        accepted(post_packets(server, [{"run": run, "n": n} for n in range(5)]), 5)
        assert door_status(server)["partial_replays"] == 0
        with StreamClient(server).send({"run": run, "time": 60000}) as client:
            assert client.packets(3) == [{"run": run, "n": n} for n in (2, 3, 4)]
            accepted(post_packets(server, [{"run": run, "n": 5}]), 1)
            assert client.packets(1) == [{"run": run, "n": 5}]
        with StreamClient(server).send({"run": run, "time": 60000}) as client:
            assert len(client.packets(3)) == 3
        time.sleep(0.01)  # time must pass: n=5, stamped in ms, is then over 1 ms old
        with StreamClient(server).send({"run": run, "time": 1}) as client:  # within reach
            wait_for(lambda s=server: door_status(s)["streaming"] == 1)  # subscribed: n=6 is live
            accepted(post_packets(server, [{"run": run, "n": 6}]), 1)
            assert client.packets(1) == [{"run": run, "n": 6}]
        assert door_status(server)["partial_replays"] == 2
        logged = server.stderr.count("replays only what history holds")
        assert logged == 1  # the second within LOG_EVERY is counted, not logged


def test_replay_and_live_meet_with_no_gap_and_no_duplicate(streamer):
    """A client connects while packets flow: it sees each one once, in order."""
    run = new_run()
    total = 600
    some_are_history = threading.Event()

    def publish():
        for start in range(0, total, 20):
            batch = [{"run": run, "seq": n} for n in range(start, start + 20)]
            accepted(post_packets(streamer, batch), 20)
            if start == 100:
                some_are_history.set()
            time.sleep(0.01)  # paced, so that the client connects while packets still flow

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        assert some_are_history.wait(30)  # 120 are history; it connects while the rest flow
        with StreamClient(streamer).send({"run": run, "time": 60000}) as client:
            got = client.packets(total)
    finally:
        publisher.join()
    assert [p["seq"] for p in got] == list(range(total))


# -- how the query arrives -------------------------------------------------------------------


def test_a_query_split_over_several_segments_with_pauses(streamer):
    run = new_run()
    query = json.dumps({"run": run, "name": "caf\u00e9", "time": 60000}, ensure_ascii=False)
    raw = query.encode()
    cut = raw.index("\u00e9".encode()) + 1  # inside the two bytes of é
    pieces = [raw[:3], raw[3:10], raw[10:cut], raw[cut:-1], raw[-1:]]
    with StreamClient(streamer) as client:
        for piece in pieces:
            client.sock.sendall(piece)
            time.sleep(0.2)  # the pause is the point: each piece reaches the server alone
        packets = [
            {"run": run, "name": "caf\u00e9", "seq": 0},
            {"run": run, "name": "cafe", "seq": 1},
            {"run": run, "name": "caf\u00e9", "seq": 2},
        ]
        accepted(post_packets(streamer, packets), 3)
        assert client.packets(2) == [packets[0], packets[2]]


def test_a_query_without_newline(streamer):
    run = new_run()
    with StreamClient(streamer) as client:
        client.send(json.dumps({"run": run, "time": 60000}).encode())  # no newline
        accepted(post_packets(streamer, {"run": run, "seq": 0}), 1)
        assert client.packets(1) == [{"run": run, "seq": 0}]


def test_what_a_client_sends_after_its_query_is_ignored_and_its_eof_ends_the_session(streamer):
    run = new_run()
    wait_idle(streamer)
    with StreamClient(streamer) as client:
        client.send(json.dumps({"run": run, "time": 60000}).encode() + b'\n{"run": "x"}\ngarbage [')
        client.send(b"more garbage" * 1000)
        accepted(post_packets(streamer, {"run": run, "seq": 0}), 1)
        assert client.packets(1) == [{"run": run, "seq": 0}]
        assert door_status(streamer)["streaming"] == 1
        client.sock.shutdown(socket.SHUT_WR)
        assert client.rest() == b""  # the server ends the session: EOF
    wait_for(lambda: door_status(streamer)["clients"] == 0)


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, problem",
    [
        (b"not json\n", "not valid JSON"),
        (b"[1, 2]\n", "a query must be a JSON object, not an array"),
        (b'"profile_id"\n', "a query must be a JSON object, not a string"),
        (b"{'profile_id': 'x'}\n", "not valid JSON"),
        (b'{"profile_id": ["a", "b"]}', "the value of 'profile_id' must be a string"),
        (b'{"profile_id": {"a": 1}}', "the value of 'profile_id' must be a string"),
        (b'{"time": -5}', '"time" must be a number of milliseconds >= 0'),
        (b'{"time": "soon"}', '"time" must be a number of milliseconds >= 0'),
        (b'{"time": NaN}', "NaN is not a JSON number"),
        (b'{"a": 1}garbage', None),  # not refused: what follows a query is ignored
        (b'{"time": 1000, "_speedup": 0}', '"_speedup" must be a number > 0'),
        (b'{"time": 1000, "_speedup": "2"}', '"_speedup" must be a number > 0'),
        (b'{"_speedup": 2}', '"_speedup" needs "time"'),
        (b'{"time": 1000, "_history_only": "yes"}', '"_history_only" must be true or false'),
        (b'{"_history_only": true}', '"_history_only" needs "time"'),
    ],
)
def test_a_bad_query_gets_one_error_line_then_eof(streamer, query, problem):
    with StreamClient(streamer, timeout=10) as client:
        client.send(query)
        if problem is None:
            client.sock.shutdown(socket.SHUT_WR)
            assert client.rest() == b""
            return
        line = client.line()
        error = json.loads(line)
        assert list(error) == ["error"]
        assert problem in error["error"]
        assert client.rest() == b""


def test_a_client_that_sends_no_query_is_closed_after_query_timeout(streamer):
    before = door_status(streamer)["query_timeouts"]
    with StreamClient(streamer, timeout=30) as client:
        error = json.loads(client.line())
        assert "no complete query within 1 s" in error["error"]
        assert client.rest() == b""
    with StreamClient(streamer, timeout=30) as client:
        client.send(b'{"run": "incomplete"')
        error = json.loads(client.line())
        assert error["error"].startswith("no complete query within 1 s: ")
        assert "Expecting ',' delimiter" in error["error"]
        assert client.rest() == b""
    assert door_status(streamer)["query_timeouts"] >= before + 2


def test_a_query_longer_than_max_query_bytes_is_refused(streamer):
    with StreamClient(streamer) as client:
        client.send(b'{"run": "' + b"x" * 70_000 + b'"}')
        error = json.loads(client.line())
        assert "longer than 65536 bytes" in error["error"]
        assert client.rest() == b""


def test_a_query_that_cannot_be_json_is_refused_at_once_not_at_query_timeout(tmp_path):
    """query_timeout is 60 s here and the test's budget far less: refusals come at once."""
    for server in run_packets_server(tmp_path, **{"tcp_streamer.query_timeout": "60"}):
        for raw, problem in [
            (b"{bad json\n", "expected a property name in double quotes at byte 1"),
            (b"{bad json", "expected a property name in double quotes at byte 1"),
            (b'{"run": 1]\n', "expected ',' or '}' at byte 9"),
            (b'{"run": tru\n', "expected 'true' at byte 11"),
            (b'{"run": "caf\xff\n', "not UTF-8"),
        ]:
            with StreamClient(server, timeout=15) as client:
                sent = time.monotonic()
                client.send(raw)
                error = json.loads(client.line())
                assert problem in error["error"], (raw, error)
                assert client.rest() == b""
                assert time.monotonic() - sent < 30  # far from the 60 s query_timeout
        assert door_status(server)["query_timeouts"] == 0
        # A valid query still may take several segments, with pauses, with or without newline.
        run = new_run()
        pretty = json.dumps({"run": run, "time": 60000}, indent=2).encode()
        for pieces in ([pretty[:5], pretty[5:20], pretty[20:]], [pretty[:-1], pretty[-1:] + b"\n"]):
            with StreamClient(server, timeout=15) as client:
                for piece in pieces:
                    client.send(piece)
                    time.sleep(0.2)  # the pause is the point: each piece reaches the server alone
                seq = len(pieces)
                accepted(post_packets(server, {"run": run, "seq": seq}), 1)
                assert client.until(lambda p, seq=seq: p["seq"] == seq)[-1]["run"] == run


# -- history-only and paced replay -----------------------------------------------------------


def test_history_only_sends_the_window_then_closes_cleanly(streamer):
    run = new_run()
    window = [{"run": run, "seq": n} for n in range(3)]
    accepted(post_packets(streamer, window), 3)
    before = door_status(streamer)["history_only_queries"]
    with StreamClient(streamer).send({"run": run, "time": 60000, "_history_only": True}) as client:
        assert client.packets(3) == window
        # EOF after the last packet (a FIN, not a reset: rest() would raise)
        assert client.rest() == b""
    with StreamClient(streamer).send({"run": run, "time": 60000, "_history_only": True}) as client:
        # a packet published after the query is not part of the window
        accepted(post_packets(streamer, {"run": run, "seq": 3}), 1)
        lines = client.rest().splitlines()
    assert [json.loads(line) for line in lines if json.loads(line)["seq"] < 3] == window
    assert after_window_at_most(lines, 3)
    assert door_status(streamer)["history_only_queries"] == before + 2
    wait_for(lambda: door_status(streamer)["clients"] == 0)


def after_window_at_most(lines, seq):
    """The second query may be read before or after the POST: never anything later."""
    return all(json.loads(line)["seq"] <= seq for line in lines)


def test_a_paced_history_only_replay_keeps_the_original_gaps_divided_by_speedup(streamer):
    """Lower bounds only (never earlier than due); measured from the query's sending."""
    run = new_run()
    gaps = (0.5, 0.25)
    accepted(post_packets(streamer, {"run": run, "seq": 0}), 1)
    for seq, gap in enumerate(gaps, start=1):
        time.sleep(gap)  # the point: the server stamps these packets this far apart, at least
        accepted(post_packets(streamer, {"run": run, "seq": seq}), 1)
    speedup = 0.5  # slower than the original: each gap doubles
    query = {"run": run, "time": 60000, "_speedup": speedup, "_history_only": True}
    with StreamClient(streamer) as client:
        sent = time.monotonic()
        client.send(query)
        arrived = []
        for seq in range(3):
            assert client.packets(1) == [{"run": run, "seq": seq}]
            arrived.append(time.monotonic() - sent)
        assert client.rest() == b""
    assert arrived[1] >= gaps[0] / speedup
    assert arrived[2] >= (gaps[0] + gaps[1]) / speedup
    assert door_status(streamer)["paced_replays"] >= 1


def test_packets_that_arrive_during_a_paced_replay_follow_it_then_live(streamer):
    """No gap, no duplicate at the seam: the window paced, then what came meanwhile, then live."""
    run = new_run()
    accepted(post_packets(streamer, {"run": run, "seq": 0, "phase": "window"}), 1)
    time.sleep(0.5)  # the point: a gap the replay stretches to 2 s at a quarter of the speed
    accepted(post_packets(streamer, {"run": run, "seq": 1, "phase": "window"}), 1)
    with StreamClient(streamer).send({"run": run, "time": 60000, "_speedup": 0.25}) as client:
        assert client.packets(1)[0]["seq"] == 0
        during = [{"run": run, "seq": n, "phase": "during"} for n in (2, 3)]
        accepted(post_packets(streamer, during), 2)  # while the replay waits for seq 1
        got = client.packets(3)
        assert [p["seq"] for p in got] == [1, 2, 3]
        accepted(post_packets(streamer, {"run": run, "seq": 4, "phase": "live"}), 1)
        assert client.packets(1) == [{"run": run, "seq": 4, "phase": "live"}]
        # nothing twice: the next line is the next packet
        accepted(post_packets(streamer, {"run": run, "seq": 5, "phase": "live"}), 1)
        assert client.packets(1)[0]["seq"] == 5


def test_a_sleeping_paced_replay_blocks_no_one_and_ends_at_the_clients_eof(streamer):
    run = new_run()
    accepted(post_packets(streamer, {"run": run, "seq": 0}), 1)
    time.sleep(0.1)  # the point: 100 ms apart, replayed at 1/1000 of the speed: 100 s
    accepted(post_packets(streamer, {"run": run, "seq": 1}), 1)
    wait_idle(streamer)
    paced = StreamClient(streamer).send({"run": run, "time": 60000, "_speedup": 0.001})
    assert paced.packets(1) == [{"run": run, "seq": 0}]
    with StreamClient(streamer).send({"run": run}) as live:
        wait_for(lambda: door_status(streamer)["streaming"] == 2)
        accepted(post_packets(streamer, {"run": run, "seq": 2}), 1)
        assert live.packets(1) == [{"run": run, "seq": 2}]
    paced.sock.shutdown(socket.SHUT_WR)  # its EOF wakes the sleeping replay at once
    assert paced.rest() == b""
    paced.close()
    wait_idle(streamer)


# -- many and slow clients ----------------------------------------------------------------


def test_a_slow_client_that_never_reads_does_not_stop_the_others(streamer):
    run = new_run()
    pad = "x" * 4000
    batches, per_batch = 10, 500  # 20 MB of packets, 2 MB per POST
    total = batches * per_batch
    before = door_status(streamer)
    slow = StreamClient(streamer, rcvbuf=4096).send({"run": run, "time": 60000})
    fast = [StreamClient(streamer).send({"run": run, "time": 60000}) for _ in range(2)]
    results: list[list[int]] = [[] for _ in fast]

    def read(index):
        client = fast[index]
        while len(results[index]) < total:
            line = client.line()
            assert line is not None
            results[index].append(json.loads(line)["seq"])

    readers = [threading.Thread(target=read, args=(i,)) for i in range(len(fast))]
    for reader in readers:
        reader.start()
    try:
        for b in range(batches):
            batch = [
                {"run": run, "seq": n, "pad": pad}
                for n in range(b * per_batch, (b + 1) * per_batch)
            ]
            accepted(post_packets(streamer, batch), per_batch)
        for reader in readers:
            reader.join(60)
        for got in results:
            assert got == list(range(total))
        # The slow one lost the oldest packets past its outbox bound, and is
        # closed once a write to it stalls for send_timeout.
        after = wait_for(
            lambda: (
                (s := door_status(streamer))["slow_disconnects"] > before["slow_disconnects"] and s
            )
        )
        assert after["dropped"] > before["dropped"]
    finally:
        slow.close()
        for client in fast:
            client.close()


def test_a_client_idle_for_longer_than_send_timeout_keeps_streaming(streamer):
    """send_timeout bounds writes, not quiet spells (it is the socket's timeout)."""
    run = new_run()
    with StreamClient(streamer).send({"run": run}) as client:
        wait_for(lambda: door_status(streamer)["streaming"] >= 1)
        time.sleep(SEND_TIMEOUT + 1)  # the point: quiet for longer than send_timeout
        accepted(post_packets(streamer, [{"run": run, "n": 1}]), 1)
        assert client.packets(1) == [{"run": run, "n": 1}]


def test_two_hundred_concurrent_clients_each_get_their_packets(streamer):
    run = new_run()
    count = 200
    clients = [
        StreamClient(streamer).send({"run": run, "client": i, "time": 60000}) for i in range(count)
    ]
    try:
        wait_for(lambda: door_status(streamer)["streaming"] >= count)
        packets = [{"run": run, "client": i, "seq": k} for k in range(3) for i in range(count)]
        accepted(post_packets(streamer, packets), len(packets))
        broadcast = [{"run": run, "client": i, "seq": 3, "last": True} for i in range(count)]
        accepted(post_packets(streamer, ndjson_body(broadcast)), count)
        for i, client in enumerate(clients):
            assert client.packets(4) == [
                {"run": run, "client": i, "seq": 0},
                {"run": run, "client": i, "seq": 1},
                {"run": run, "client": i, "seq": 2},
                {"run": run, "client": i, "seq": 3, "last": True},
            ]
    finally:
        for client in clients:
            client.close()


# -- operations ---------------------------------------------------------------------------------


def test_the_door_shows_in_healthz(streamer):
    run = new_run()
    with StreamClient(streamer).send({"run": run, "time": 60000}) as client:
        accepted(post_packets(streamer, {"run": run}), 1)
        client.packets(1)
        body = streamer.get("/healthz").json()
        assert body["status"] == "ok"
        door = body["doors"]["tcp-streamer"]
        assert door["state"] == "running"
        assert door["listen"] == f"127.0.0.1:{streamer.tcp_streamer_port}"
        assert door["clients"] >= 1 and door["streaming"] >= 1
        assert door["packets_sent"] >= 1
        for key in ("connections", "dropped", "bad_queries", "query_timeouts"):
            assert door[key] >= 0


def test_sigterm_with_clients_connected_exits_0_promptly(tmp_path: Path):
    gen = run_packets_server(tmp_path)
    server = next(gen)
    try:
        run = new_run()
        streaming = [StreamClient(server).send({"run": run, "time": 60000}) for _ in range(5)]
        waiting = StreamClient(server)  # sends no query
        slow = new_run()
        accepted(post_packets(server, [{"run": slow, "seq": 0}]), 1)
        time.sleep(0.1)  # the point: replayed at 1/1000 of the speed, the next is 100 s away
        accepted(post_packets(server, [{"run": slow, "seq": 1}]), 1)
        paced = StreamClient(server).send({"run": slow, "time": 60000, "_speedup": 0.001})
        assert paced.packets(1) == [{"run": slow, "seq": 0}]
        accepted(post_packets(server, [{"run": run, "seq": 0}]), 1)
        for client in streaming:
            assert client.packets(1) == [{"run": run, "seq": 0}]
        assert server.stop() == 0
        for client in [*streaming, waiting, paced]:
            assert client.rest() == b""  # closed by the server, nothing else sent
            client.close()
        assert "Traceback" not in server.stderr
        assert "door 'tcp-streamer' stopped" in server.stderr
    finally:
        gen.close()


def test_the_door_is_off_when_listen_is_empty(tmp_path: Path):
    gen = run_packets_server(tmp_path, **{"tcp_streamer.listen": ""})
    server = next(gen)
    try:
        assert "tcp-streamer" not in server.get("/healthz").json()["doors"]
    finally:
        gen.close()


# -- the receiver example --------------------------------------------------------------------------


def start_receiver(server: RunningServer, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(REPO / "examples" / "receiver.py"),
            *args,
            "--port",
            str(server.tcp_streamer_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_the_receiver_example_prints_packets_and_exits_cleanly_on_ctrl_c(streamer):
    run = new_run()
    receiver = start_receiver(streamer, json.dumps({"run": run, "kind": "a", "time": 60000}))
    try:
        packets = [{"run": run, "kind": kind, "seq": n} for n, kind in enumerate("abab")]
        accepted(post_packets(streamer, packets), 4)
        lines = [receiver.stdout.readline() for _ in range(2)]
        assert [json.loads(line) for line in lines] == [packets[0], packets[2]]
        receiver.send_signal(signal.SIGINT)
        assert receiver.wait(30) == 0
        assert receiver.stderr.read() == b""
    finally:
        receiver.kill()
        receiver.wait()


def test_the_receiver_example_reports_a_refused_query(streamer):
    receiver = start_receiver(streamer, '{"run": [1]}')
    out, err = receiver.communicate(timeout=30)
    assert receiver.returncode == 2
    assert out == b""
    assert b"refused the query: the value of 'run' must be a string" in err


def test_the_receiver_example_ends_with_0_after_a_history_only_window(streamer):
    run = new_run()
    packets = [{"run": run, "seq": n} for n in range(3)]
    accepted(post_packets(streamer, packets), 3)
    query = {"run": run, "time": 60000, "_history_only": True}
    receiver = start_receiver(streamer, json.dumps(query))
    out, err = receiver.communicate(timeout=30)
    assert receiver.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == packets
