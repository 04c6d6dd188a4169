"""Streams over real sockets: receive, timeouts, malformed messages, send, forward, Merge,
no_client_action, and the same under gevent (zmq.green)."""

from __future__ import annotations

import json
import threading

import pytest
import zmq

from channelstream import mflow
from channelstream.mflow import ConnectError, MalformedMessage, UnknownHtype, encode
from channelstream.mflow.utils import Merge
from tests.mflow import samples
from tests.mflow.support import finish
from tests.support.server import free_port
from tests.support.wait import wait_for


@pytest.fixture
def pair(address):
    """A bound PULL stream and a PUSH stream connected to it."""
    with mflow.connect(address, conn_type=mflow.BIND, receive_timeout=5000) as pull, \
            mflow.connect(address, mode=mflow.PUSH) as push:
        yield pull, push


def send_parts(stream, parts):
    for index, part in enumerate(parts):
        stream.send(part, send_more=index < len(parts) - 1)


def test_constants_are_mflows():
    assert (mflow.CONNECT, mflow.BIND) == ("connect", "bind")
    assert (mflow.PULL, mflow.PUSH, mflow.PUB, mflow.SUB) == (zmq.PULL, zmq.PUSH, zmq.PUB,
                                                              zmq.SUB)


def test_receive_returns_none_on_timeout(address):
    with mflow.connect(address, conn_type=mflow.BIND, receive_timeout=50) as stream:
        assert stream.receive() is None
        assert stream.receive(block=False) is None
        assert stream.statistics.messages_received == 0


def test_statistics_count_every_part_of_good_messages_only(pair):
    pull, push = pair
    good = [bytes(p) for p in encode(samples.raw_message(1, parts=2))]
    send_parts(push, good)
    send_parts(push, [b"{not json", b"12345"])
    send_parts(push, [b'{"htype": "raw-1.0"}'])
    first = pull.receive()
    assert first.statistics.bytes_received == sum(map(len, good))
    with pytest.raises(MalformedMessage, match="not UTF-8 JSON"):
        pull.receive()
    third = pull.receive()
    assert third.data == {"header": {"htype": "raw-1.0"}, "data": []}
    stats = pull.statistics
    assert stats.messages_received == 2 and stats.messages_malformed == 1
    assert stats.bytes_received == len(b'{"htype": "raw-1.0"}')
    assert stats.total_bytes_received == sum(map(len, good)) + len(b'{"htype": "raw-1.0"}')


@pytest.mark.parametrize("bad", [
    [b'{"htype": "array-1.0", "type": "u2", "shape": [2]}', b"\x00" * 3, b"\x00" * 4],
    [b'{"htype": "nope-1.0"}', b"a", b"b", b"c"],
    [b'{"htype": "dimage-1.0"}', b'{"htype": "dimage_d-1.0"}'],
    [b'{"htype": "dseries_end-1.0"}', b"extra"],
    [b"\xff" * 10, b'{"htype": "raw-1.0"}'],
], ids=["size", "unknown", "missing", "extra", "binary"])
def test_a_malformed_message_is_drained_whole_and_the_next_one_is_intact(pair, bad):
    pull, push = pair
    after = encode(samples.dimage_message(9))
    send_parts(push, bad)
    push.forward(samples.dimage_message(9))
    with pytest.raises(MalformedMessage) as caught:
        pull.receive()
    assert caught.value.parts == len(bad)
    message = pull.receive()
    assert [bytes(f) for f in message.frames] == [bytes(p) for p in after]
    assert pull.statistics.messages_received == 1
    assert pull.statistics.messages_malformed == 1
    assert pull.statistics.total_bytes_received == sum(len(p) for p in after)


def test_unknown_htype_names_it(pair):
    pull, push = pair
    send_parts(push, [b'{"htype": "x-1.0"}'])
    with pytest.raises(UnknownHtype, match=r"'x-1\.0'"):
        pull.receive()


def test_custom_handlers_per_stream_and_explicit(pair):
    pull, push = pair

    def mine(receiver):
        header = receiver.next(as_json=True)
        data = []
        while receiver.has_more():
            data.append(receiver.next() or None)
        return {"header": header, "data": data}

    pull.handlers["my_htype-1.0"] = mine
    send_parts(push, [b'{"htype": "my_htype-1.0"}', b"a", b""])
    assert pull.receive().data == {"header": {"htype": "my_htype-1.0"}, "data": [b"a", None]}
    send_parts(push, [b'{"htype": "array-1.0"}', b"zz"])
    assert pull.receive(handler=mine).data["data"] == [b"zz"]
    assert "my_htype-1.0" not in mflow.handlers


def test_receive_raw_takes_any_htype(pair):
    pull, push = pair
    push.forward(samples.dimage_message(1))
    data = pull.receive_raw().data
    assert data["header"]["htype"] == "dimage-1.0" and len(data["data"]) == 3


def test_send_as_json_and_forward_of_a_received_message(address, pair):
    pull, push = pair
    push.send({"htype": "raw-1.0", "n": 1}, send_more=True, as_json=True)
    push.send(b"payload")
    message = pull.receive()
    assert message.data == {"header": {"htype": "raw-1.0", "n": 1}, "data": [b"payload"]}
    other = f"tcp://127.0.0.1:{free_port()}"
    with mflow.connect(other, conn_type=mflow.BIND, receive_timeout=5000) as sink, \
            mflow.connect(other, mode=mflow.PUSH) as out:
        assert out.forward(message) is True
        again = sink.receive()
    assert again.frames == message.frames


def test_a_non_blocking_send_to_a_full_queue_returns_false(address):
    with mflow.connect(address, conn_type=mflow.BIND, mode=mflow.PUSH, queue_size=1) as push:
        assert push.send(b"x", block=False) is False  # no peer: nowhere to queue
        assert push.forward(samples.raw_message(), block=False) is False


def test_a_blocking_send_times_out_with_zmq_again(address):
    with mflow.connect(address, conn_type=mflow.BIND, mode=mflow.PUSH, send_timeout=50) as push:
        with pytest.raises(zmq.Again):
            push.send(b"x")


def test_connect_errors_name_the_address(address):
    with mflow.connect(address, conn_type=mflow.BIND):
        with pytest.raises(ConnectError, match=f"Unable to bind to {address}"):
            mflow.connect(address, conn_type=mflow.BIND)
    with pytest.raises(ValueError, match="unknown mode"):
        mflow.connect(address, mode="sideways")
    with pytest.raises(ValueError, match="conn_type"):
        mflow.connect(address, conn_type="attach")


def test_disconnect_is_idempotent_and_the_context_form_closes(address):
    with mflow.connect(address, conn_type=mflow.BIND) as stream:
        socket = stream.socket
    assert socket.closed and stream.closed
    stream.disconnect()
    mflow.disconnect(stream)


def test_pub_sub_subscribes_to_everything(address):
    with mflow.connect(address, conn_type=mflow.BIND, mode=mflow.PUB) as pub, \
            mflow.connect(address, mode=mflow.SUB, receive_timeout=50) as sub:
        def joined():
            pub.forward({"header": {"htype": "dseries_end-1.0", "series": 0}})
            return sub.receive()

        assert wait_for(joined, what="the subscriber to join").data["header"]["series"] == 0


def test_a_caller_context_is_used_and_not_terminated(address):
    context = zmq.Context()
    with mflow.connect(address, conn_type=mflow.BIND, context=context):
        pass
    assert not context.closed
    context.term()


def test_merge_is_round_robin_and_times_out():
    addresses = [f"tcp://127.0.0.1:{free_port()}" for _ in range(2)]
    pulls = [mflow.connect(a, conn_type=mflow.BIND, receive_timeout=100) for a in addresses]
    pushes = [mflow.connect(a, mode=mflow.PUSH) for a in addresses]
    with Merge(*pulls) as merged:
        for n in range(3):
            for index, push in enumerate(pushes):
                push.forward(samples.raw_message(10 * index + n, parts=0))
        wait_for(lambda: all(p.socket.poll(0) for p in pulls), what="both queues")
        frames = [merged.receive().data["header"]["frame"] for _ in range(6)]
        assert frames == [0, 10, 1, 11, 2, 12]
        assert merged.receive() is None
        pushes[1].forward(samples.raw_message(99, parts=0))
        assert merged.receive().data["header"]["frame"] == 99
    for push in pushes:
        push.disconnect()
    assert all(p.closed for p in pulls)


def test_merge_is_exported_at_the_top():
    assert mflow.Merge is Merge


def test_no_client_action_is_called_without_peers(address):
    called = threading.Event()
    with mflow.connect(address, conn_type=mflow.BIND, mode=mflow.PUSH,
                       no_client_action=called.set, no_client_timeout=0.2):
        assert called.wait(10)


def test_no_client_action_waits_while_a_peer_is_there(address):
    calls = []
    with mflow.connect(address, conn_type=mflow.BIND, mode=mflow.PUSH,
                       no_client_action=lambda: calls.append(1), no_client_timeout=0.3) as push:
        with mflow.connect(address, receive_timeout=5000) as pull:
            push.send(b'{"htype": "raw-1.0"}')
            assert pull.receive() is not None
            count = len(calls)
            wait_for(lambda: push._monitor.clients == 1, what="the peer to be counted")
            push.send(b'{"htype": "raw-1.0"}')
            assert pull.receive() is not None
            assert len(calls) <= count + 1
        wait_for(lambda: len(calls) > count + 1, what="the action after the peer left")


# -- gevent -----------------------------------------------------------------------------------


def test_under_gevent_a_green_context_blocks_only_the_greenlet(address):
    import gevent
    import zmq.green

    context = zmq.green.Context()
    ticks = []

    def ticker():
        while True:
            ticks.append(1)
            gevent.sleep(0.01)

    with mflow.connect(address, conn_type=mflow.BIND, context=context,
                       receive_timeout=300) as pull, \
            mflow.connect(address, mode=mflow.PUSH, context=context) as push:
        tick = gevent.spawn(ticker)
        assert pull.receive() is None  # timed out by gevent.Timeout; others ran meanwhile
        assert len(ticks) >= 5
        waiter = gevent.spawn(pull.receive)
        gevent.sleep(0.05)
        push.forward(samples.array_message(3))
        message = waiter.get(timeout=10)
        assert message.data["header"]["frame"] == 3
        # killing a receiving greenlet loses nothing: the next message comes whole
        waiter = gevent.spawn(pull.receive)
        gevent.sleep(0.05)
        waiter.kill()
        push.forward(samples.array_message(4))
        assert pull.receive().data["header"]["frame"] == 4
        tick.kill()
    context.term()


GEVENT_SCRIPT = """
from gevent import monkey
monkey.patch_all()
import sys
import gevent
import zmq.green
from channelstream import mflow
address = sys.argv[1]
pull = mflow.connect(address, conn_type=mflow.BIND, receive_timeout=200)
push = mflow.connect(address, mode=mflow.PUSH)
assert isinstance(pull.context, zmq.green.Context), type(pull.context)
assert pull.receive() is None
waiter = gevent.spawn(pull.receive)
gevent.sleep(0.05)
push.forward({"header": {"htype": "raw-1.0"}, "data": [b"x"]})
print(waiter.get(timeout=10).data)
push.disconnect()
pull.disconnect()
"""


def test_a_monkey_patched_process_gets_green_streams(procs, address):
    status, out, err = finish(procs.script(GEVENT_SCRIPT, address))
    assert status == 0, err
    assert out.strip() == str({"header": {"htype": "raw-1.0"}, "data": [b"x"]})


def test_a_plain_process_gets_plain_streams(address):
    with mflow.connect(address, conn_type=mflow.BIND) as stream:
        assert type(stream.context) is zmq.Context


def test_a_handler_gets_the_header_as_json(pair):
    pull, push = pair
    calls = []

    def spy(receiver):
        calls.append(receiver.next(as_json=True))
        return calls[-1]

    pull.handlers["raw-1.0"] = spy
    header = {"htype": "raw-1.0", "k": [1, 2]}
    push.send(json.dumps(header).encode())
    assert pull.receive().data == header
