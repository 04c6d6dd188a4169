"""The ZMQ doors in this process, on a hub of their own: frames, bounds, retries, overflow.

Greenlets and ``zmq.green`` sockets in the test process (gevent's own API: no
monkey-patching needed); the peers are green sockets too, so that waiting on
them lets the doors run.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
import zmq.green

from channelstream import strict_json
from channelstream.chat.frames import live_json, message_frame
from channelstream.chat.routing import channel_message, hub_channel
from channelstream.hub import Hub, HubConfig, Message
from channelstream.mflow.door import (
    Origin,
    ZmqContext,
    ZmqMessage,
    ZmqOutput,
    ZmqSource,
    build_doors,
    iso_time,
    output_parts,
    web_header,
)
from channelstream.serving.doors import HEALTHY_STATES, DoorState
from channelstream.settings import default_settings
from channelstream.settings.endpoints import OUTPUT, SOURCE, parse_endpoints
from tests.support.server import free_port
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(60)


def tcp() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture
def hub() -> Iterator[Hub]:
    hub = Hub(HubConfig(outbox_size=4, outbox_hard_limit=6))
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture
def green() -> Iterator[zmq.green.Context]:
    """A green context for the test's own peers."""
    context = zmq.green.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def doors() -> Iterator[list]:
    """Doors to stop at the end (they share one ZmqContext)."""
    started: list = []
    yield started
    for door in reversed(started):
        door.stop(2.0)


def endpoint(kind: str, **fields: Any):
    return parse_endpoints(kind, [fields])[0]


def subscribe(hub: Hub, channel: str):
    outbox = hub.open_outbox(max_queue=100)
    hub.subscribe(outbox, hub_channel(channel))
    return outbox


# -- the frame web clients get, and what outputs send --------------------------------------


def test_a_zmq_message_builds_its_frame_once_when_first_read():
    parts = [b'{"htype": "raw-1.0", "v": NaN, "ok": [1, 2.5]}', b"abc", b"x" * 5, b""]
    message = ZmqMessage(parts, {"htype": "raw-1.0"}, Origin("det", "cam", 4), size=60)
    assert (message.channel, message.type, message.fields) == ("channel:det", "raw-1.0",
                                                               {"htype": "raw-1.0"})
    assert message.droppable and message.size == 60
    message.time_ms = 1_700_000_000_123
    frame = message.body
    assert frame is message.body  # built once
    assert frame == {
        "channel": "det", "uuid": frame["uuid"], "timestamp": "2023-11-14T22:13:20.123000",
        "user": "zmq:cam",
        "message": {"htype": "raw-1.0", "header": {"htype": "raw-1.0", "v": None, "ok": [1, 2.5]},
                    "parts": [{"size": 3, "base64": "YWJj"}, {"size": 5},
                              {"size": 0, "base64": ""}]},
        "edited": None, "type": "message",
    }
    assert output_parts(message) is parts  # outputs send the parts as received


def test_web_headers_are_standard_json():
    assert web_header(b'{"a": Infinity, "b": [-Infinity, "\\ud800"]}') == {
        "a": None, "b": [None, "?"]}
    deep = web_header(b'{"d": ' + b"[" * 40 + b"]" * 40 + b"}")
    assert strict_json.loads(strict_json.dumps(deep)) == deep  # within MAX_DEPTH now
    assert iso_time(0) == "1970-01-01T00:00:00"


def test_outputs_send_other_frames_as_raw_json_messages():
    frame = message_frame(channel="rest", uuid="u", timestamp="t", user="bob",
                          message={"text": "hé"})
    message = channel_message("rest", frame)
    message.offset, message.epoch = 7, "e1"
    header, payload = output_parts(message)
    assert header == (b'{"htype": "raw-1.0", "type": "json", "channel": "rest", "offset": 7, '
                      b'"epoch": "e1"}')
    assert payload is message.encoded(live_json)  # the bytes /ws clients get, encoded once
    assert json.loads(payload)["message"] == {"text": "hé"}
    raw = Message("channel:b", b"\x00\x01")
    assert output_parts(raw)[1] == b"\x00\x01" and b'"type": "bytes"' in output_parts(raw)[0]


# -- sources ------------------------------------------------------------------------------


def test_a_source_refuses_oversized_parts_and_messages_and_goes_on(hub, green, doors):
    address = tcp()
    source = ZmqSource(endpoint(SOURCE, address=address, channel="big", conn_type="bind"),
                       hub=hub, context=ZmqContext(), max_inline_bytes=2, max_message_bytes=100)
    doors.append(source)
    source.start()
    outbox = subscribe(hub, "big")
    push = green.socket(zmq.PUSH)
    push.connect(address)
    wait_for(lambda: source.peers == 1, what="the sender's connection")
    header = b'{"htype": "raw-1.0"}'
    push.send_multipart([header, b"x" * 101])  # a part over the bound: libzmq refuses it
    wait_for(lambda: source.disconnects == 1, what="libzmq's refusal")
    push.send_multipart([header, b"x" * 60, b"y" * 30])  # parts fit, the whole does not
    push.send_multipart([header, b"ok"])
    wait_for(lambda: len(outbox), what="the small message")
    (message,) = outbox.drain()
    assert message.parts == [header, b"ok"]
    assert message.body["message"]["parts"] == [{"size": 2, "base64": "b2s="}]
    status = source.status()
    assert (status["received"], status["too_large"], status["disconnects"]) == (1, 1, 1)
    assert "over zmq.max_message_bytes" in status["last_malformed"]
    assert status["state"] == "running" and status["peers"] == 1
    push.close(linger=0)


def test_a_connecting_source_waits_for_its_peer_and_is_connected_only_with_one(
    hub, green, doors
):
    """Without its sender a source is ``waiting`` (healthy: nothing is lost); an output
    without its receiver is ``connecting`` (not healthy: its messages go nowhere)."""
    address = tcp()
    source = ZmqSource(endpoint(SOURCE, address=address, channel="c", mode="sub"),
                       hub=hub, context=ZmqContext(), max_inline_bytes=10, max_message_bytes=10**6)
    output = ZmqOutput(endpoint(OUTPUT, address=tcp(), channel="c"), hub=hub,
                       context=ZmqContext())
    doors.extend((source, output))
    source.start()
    output.start()
    wait_for(lambda: source.status()["state"] == "waiting", what="waiting")
    wait_for(lambda: output.status()["state"] == "connecting", what="connecting")
    assert DoorState.WAITING.value in HEALTHY_STATES
    assert DoorState.CONNECTING.value not in HEALTHY_STATES
    outbox = subscribe(hub, "c")
    pub = green.socket(zmq.PUB)
    pub.bind(address)
    wait_for(lambda: source.status()["state"] == "connected", what="connected")

    def published() -> bool:  # a SUB gets nothing until its subscription reached the PUB
        pub.send_multipart([b'{"htype": "raw-1.0"}', b"p"])
        return len(outbox) > 0

    wait_for(published, what="a message through PUB/SUB")
    pub.close(linger=0)
    wait_for(lambda: source.status()["state"] == "waiting", what="the peer's departure")
    assert source.disconnects == 1


def test_a_bind_that_fails_is_retried_with_backoff(hub, doors):
    busy = zmq.green.Context()
    holder = busy.socket(zmq.PULL)
    address = tcp()
    holder.bind(address)
    output = ZmqOutput(endpoint(OUTPUT, address=address, channel="c", conn_type="bind"),
                       hub=hub, context=ZmqContext())
    doors.append(output)
    output.start()
    wait_for(lambda: output.status()["state"] == "retrying", what="retrying")
    status = output.status()
    assert status["retries"] >= 1 and "Address already in use" in status["last_error"]
    holder.close(linger=0)
    busy.term()
    wait_for(lambda: output.status()["state"] == "running", timeout=10, what="bound at last")


# -- outputs ------------------------------------------------------------------------------


def test_an_output_past_the_hard_limit_of_chat_messages_subscribes_again(hub, green, doors):
    address = tcp()
    output = ZmqOutput(endpoint(OUTPUT, address=address, channel="chat", queue_size=2),
                       hub=hub, context=ZmqContext())
    doors.append(output)
    output.start()
    wait_for(lambda: output._outbox is not None, what="subscribed")

    def post(n: int) -> None:
        frame = message_frame(channel="chat", uuid=str(n), timestamp="t", user="u",
                              message={"n": n})
        hub.publish(channel_message("chat", frame))  # chat frames are never dropped

    post(0)
    wait_for(lambda: output.waits == 1, what="the writer waiting with message 0")
    for n in range(1, 8):  # nobody reads: 7 undroppable messages pass the hard limit (6)
        post(n)
    assert output.status()["dropped"] == 7 and output.status()["queued"] == 0
    pull = green.socket(zmq.PULL)
    pull.bind(address)  # the output connects
    wait_for(lambda: output.overflows == 1, what="a new subscription")
    post(8)
    got = [json.loads(pull.recv_multipart()[1])["message"]["n"] for _ in range(2)]
    assert got == [0, 8]  # the one in hand, then the new subscription's
    assert output.status()["sent"] == 2 and output.status()["dropped"] == 7
    pull.close(linger=0)


def test_stopping_an_output_that_cannot_send_ends_its_flush_by_itself(hub, caplog):
    address = tcp()
    output = ZmqOutput(endpoint(OUTPUT, address=address, channel="s", queue_size=10),
                       hub=hub, context=ZmqContext())
    output.start()
    wait_for(lambda: output._outbox is not None, what="subscribed")
    for n in range(5):
        hub.publish(ZmqMessage([b'{"htype": "raw-1.0"}', bytes([n])], {"htype": "raw-1.0"},
                               Origin("s", "x", 10), size=21))
    wait_for(lambda: output.status()["waits"] == 1, what="the writer waiting")
    output.stop(30.0)  # the flush gives up after FLUSH_TIMEOUT: the door is never killed
    assert "killing it" not in caplog.text
    status = output.status()
    assert (status["state"], status["dropped"], status["sent"]) == ("stopped", 5, 0)


def test_build_doors_makes_one_door_per_entry(hub):
    settings = default_settings({
        "zmq.sources": json.dumps([{"address": "tcp://h:1", "channel": "a"},
                                   {"address": "tcp://h:2", "channel": "a"}]),
        "zmq.outputs": json.dumps([{"address": "tcp://*:3", "channel": "a", "modulo": 5}]),
        "zmq.max_inline_bytes": "7",
    })
    built = build_doors(settings, hub)
    assert [door.name for door in built] == ["zmq-source:a", "zmq-source:a-2", "zmq-output:a"]
    assert built[0].origin.max_inline == 7 and built[0].origin.user == "zmq:a"
    assert built[0]._context is built[2]._context  # one ZMQ context for all
    assert [door.status()["state"] for door in built] == ["new"] * 3


def test_base64_in_frames_is_the_parts_bytes():
    blob = bytes(range(256))
    message = ZmqMessage([b'{"htype": "raw-1.0"}', blob], {"htype": "raw-1.0"},
                         Origin("c", "n", 256), size=276)
    (part,) = message.body["message"]["parts"]
    assert base64.b64decode(part["base64"]) == blob and part["size"] == 256
