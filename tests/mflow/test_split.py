"""m_split's configuration and its core over real sockets (inproc), without the CLI."""

from __future__ import annotations

import pytest
import zmq

from channelstream.mflow import split
from channelstream.mflow.split import ConfigError, Endpoint, Output, Splitter, parse_config


def test_config_defaults_and_bind_rule():
    source, outputs = parse_config({
        "source": {"address": "tcp://localhost:7777"},
        "streams": [{"address": "tcp://*:8888"}, {"address": "tcp://h:1", "mode": "PUB",
                                                  "queue_size": "5", "modulo": 1000}],
    })
    assert source == Endpoint("tcp://localhost:7777", zmq.PULL, 100, "connect", 1)
    assert outputs == [Endpoint("tcp://*:8888", zmq.PUSH, 100, "bind", 1),
                       Endpoint("tcp://h:1", zmq.PUB, 5, "connect", 1000)]


@pytest.mark.parametrize(("config", "reason"), [
    ([], "must be a JSON object"),
    ({"source": "x", "streams": [{}]}, "source must be an object"),
    ({"source": {"address": "tcp://a:1", "queue_size": 0}, "streams": [{}]},
     "source.queue_size must be an integer >= 1"),
    ({"source": {"address": "tcp://a:1", "modulo": 2}, "streams": [{}]},
     "source: unknown key(s) modulo"),
    ({"source": {"address": "tcp://a:1"}, "streams": [{"address": "tcp://b:1", "mode": "SUB"}]},
     "streams[0].mode must be PUSH or PUB"),
    ({"source": {"address": "tcp://a:1"}, "streams": [{"address": "tcp://b:1",
                                                       "modulo": 2.5}]},
     "streams[0].modulo must be an integer"),
])
def test_config_errors_name_the_key(config, reason):
    with pytest.raises(ConfigError) as caught:
        parse_config(config)
    assert reason in str(caught.value)


@pytest.fixture
def wiring():
    context = zmq.Context()
    feed = context.socket(zmq.PUSH)
    feed.bind("inproc://source")
    source = split.open_socket(context, Endpoint("inproc://source", zmq.PULL))
    source.setsockopt(zmq.RCVTIMEO, 50)
    made = [feed, source]

    def output(name: str, modulo: int = 1, queue_size: int = 100, reader: bool = True):
        endpoint = Endpoint(f"inproc://{name}", zmq.PUSH, queue_size, "bind", modulo)
        socket = split.open_socket(context, endpoint)
        made.append(socket)
        sink = None
        if reader:
            sink = context.socket(zmq.PULL)
            sink.set_hwm(queue_size)
            sink.connect(f"inproc://{name}")
            made.append(sink)
        return Output(endpoint, socket), sink

    yield feed, source, output
    for socket in made:
        socket.close(linger=0)
    context.term()


def test_modulo_counts_whole_messages(wiring):
    feed, source, output = wiring
    every, sink_every = output("every")
    third, sink_third = output("third", modulo=3)
    for n in range(1, 8):
        feed.send_multipart([b"%d" % n, b"b", b"c"])
    Splitter(source, [every, third]).run(lambda: False, limit=7)
    assert [sink_every.recv_multipart()[0] for _ in range(7)] == [b"%d" % n for n in range(1, 8)]
    assert [sink_third.recv_multipart() for _ in range(2)] == [[b"3", b"b", b"c"],
                                                               [b"6", b"b", b"c"]]
    assert (every.sent, third.sent, third.dropped) == (7, 2, 0)


def test_a_full_output_keeps_queue_size_pending_then_drops_the_oldest(wiring):
    feed, source, output = wiring
    live, sink = output("live")
    stuck, _ = output("stuck", queue_size=3, reader=False)  # no peer: never has room
    for n in range(10):
        feed.send_multipart([b"%d" % n])
    pending = []
    splitter = Splitter(source, [live, stuck])

    def look() -> bool:
        pending.append([frames[0].bytes for frames in stuck.pending])
        return False

    splitter.run(look, limit=10)
    assert pending[-1] == [b"7", b"8", b"9"]
    assert all(len(seen) <= 3 for seen in pending)
    assert live.sent == 10 and len([sink.recv() for _ in range(10)]) == 10
    # the run ended: what was still pending counts as dropped
    assert (stuck.sent, stuck.dropped, len(stuck.pending)) == (0, 10, 0)


def test_a_single_full_output_pauses_the_source_and_loses_nothing(wiring):
    feed, source, output = wiring
    only, sink = output("only", queue_size=2)
    for n in range(50):
        feed.send_multipart([b"%d" % n])
    splitter = Splitter(source, [only])
    got = []

    def read_slowly() -> bool:
        # the reader catches up only when the output is full (the splitter then waits)
        if len(only.pending) >= 2 or splitter.received == 50:
            while sink.poll(0):
                got.append(sink.recv())
        return len(got) == 50

    splitter.run(read_slowly)
    assert got == [b"%d" % n for n in range(50)]
    assert (only.sent, only.dropped) == (50, 0)
