"""The DeliveryReader: frames as pika writes them, cut anywhere, read as pika would.

The byte-level tests feed frames made by pika's own encoder to a reader
whose "connection" records what pika would have been handed; the broker
tests install it on a real pika connection to RabbitMQ.
"""

from __future__ import annotations

import datetime
import random
import time
import uuid

import pika
import pika.exceptions
import pytest
from pika import frame, spec

from channelstream.amqp.deliveries import (
    MARKER_HEADER,
    TIME_HEADER,
    BodyTooLarge,
    DeliveryReader,
    StreamMeta,
    install,
    meta_of,
    stream_properties,
)

CHANNEL = 1
TAG = "ctag-test"


def deliver(
    tag: int, body: bytes, *, channel: int = CHANNEL, consumer: str = TAG, frame_max: int = 4096
) -> bytes:
    """One message as the broker sends it: method, header, body frames."""
    parts = [
        frame.Method(channel, spec.Basic.Deliver(consumer, tag, False, "ex", "")).marshal(),
        frame.Header(
            channel, len(body), spec.BasicProperties(headers={"profile_id": "x", "n": tag})
        ).marshal(),
    ]
    step = frame_max - 8
    for start in range(0, len(body), step):
        parts.append(frame.Body(channel, body[start : start + step]).marshal())
    return b"".join(parts)


class PikaSide:
    """What the reader leaves to pika: its frame buffer, counters, and the
    frames it is handed, logged in one list with the reader's batches."""

    def __init__(self, log: list) -> None:
        self._frame_buffer = b""
        self.bytes_received = 0
        self.frames_received = 0
        self.log = log

    def _process_frame(self, value: frame.Frame) -> None:
        self.frames_received += 1
        self.log.append(("pika", value))


def make_reader(max_body: int = 1 << 20) -> tuple[DeliveryReader, PikaSide, list]:
    log: list = []
    side = PikaSide(log)
    reader = DeliveryReader(
        side, CHANNEL, TAG, lambda batch: log.append(("batch", list(batch))), max_body=max_body
    )
    return reader, side, log


def flatten(log: list) -> list:
    """The log as one sequence: ("msg", tag, body) and ("pika", frame name)."""
    out = []
    for kind, value in log:
        if kind == "batch":
            out += [("msg", tag, body) for tag, body in value]
        else:
            out.append(
                (
                    "pika",
                    type(value).__name__,
                    getattr(getattr(value, "method", None), "NAME", None),
                )
            )
    return out


def stream() -> tuple[bytes, list]:
    """A mix of deliveries (empty, small, multi-frame), heartbeats, other methods."""
    rng = random.Random(7)
    data, expected = [], []
    for tag in range(1, 41):
        size = rng.choice([0, 1, 150, 4088, 4089, 9000])
        body = bytes(rng.randrange(256) for _ in range(size))
        data.append(deliver(tag, body))
        expected.append(("msg", tag, body))
        if tag % 7 == 0:
            data.append(frame.Heartbeat().marshal())
            expected.append(("pika", "Heartbeat", None))
        if tag % 11 == 0:
            data.append(frame.Method(CHANNEL, spec.Basic.QosOk()).marshal())
            expected.append(("pika", "Method", "Basic.QosOk"))
    return b"".join(data), expected


def test_a_stream_read_in_one_chunk_gives_every_message_in_order_and_the_rest_to_pika():
    data, expected = stream()
    reader, side, log = make_reader()
    reader.feed(data)
    assert flatten(log) == expected
    assert side._frame_buffer == b""
    assert side.bytes_received == len(data)


@pytest.mark.parametrize("seed", range(6))
def test_the_same_stream_cut_anywhere_gives_the_same_result(seed):
    data, expected = stream()
    reader, side, log = make_reader()
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 2, 7, 8, 9, 100, 4096, 20000])
        reader.feed(data[pos : pos + step])
        pos += step
    assert flatten(log) == expected
    assert side._frame_buffer == b""
    assert side.bytes_received == len(data)


def test_a_message_is_handed_on_only_when_its_last_body_frame_came():
    body = b"x" * 10000
    data = deliver(1, body)
    reader, side, log = make_reader()
    reader.feed(data[:-1])
    assert log == []
    assert side._frame_buffer == data[:-1]
    reader.feed(data[-1:])
    assert flatten(log) == [("msg", 1, body)]


def test_one_batch_per_chunk_and_pika_frames_split_batches():
    data = deliver(1, b"a") + deliver(2, b"b") + frame.Heartbeat().marshal() + deliver(3, b"c")
    reader, _side, log = make_reader()
    reader.feed(data)
    assert [(kind, len(value) if kind == "batch" else None) for kind, value in log] == [
        ("batch", 2),
        ("pika", None),
        ("batch", 1),
    ]


def test_a_body_over_the_limit_is_skipped_as_it_comes_and_handed_on_as_too_large():
    big = b"y" * 50000
    data = deliver(1, b"small") + deliver(2, big) + deliver(3, b"after")
    reader, side, log = make_reader(max_body=20000)
    for start in range(0, len(data), 3000):
        reader.feed(data[start : start + 3000])
        assert len(side._frame_buffer) < 4096 + 3000  # a frame and a chunk, never the body
    got = flatten(log)
    assert got[0] == ("msg", 1, b"small")
    assert got[1][:2] == ("msg", 2) and isinstance(got[1][2], BodyTooLarge)
    assert got[1][2].size == 50000
    assert got[2] == ("msg", 3, b"after")


def test_deliveries_of_another_consumer_or_channel_go_to_pika():
    data = deliver(1, b"other", consumer="someone-else") + deliver(2, b"chan", channel=2)
    reader, _side, log = make_reader()
    reader.feed(data)
    assert [entry[0] for entry in flatten(log)] == ["pika"] * 6


def test_a_broken_frame_end_is_left_to_pika_which_refuses_it():
    data = bytearray(deliver(1, b"z"))
    method_end = 7 + int.from_bytes(data[3:7], "big")
    data[method_end] = 0
    reader, _side, _log = make_reader()
    with pytest.raises(pika.exceptions.InvalidFrameError):
        reader.feed(bytes(data))


# -- against RabbitMQ -------------------------------------------------------------------------


def test_on_a_real_connection_every_message_arrives_once_in_order_and_is_acked(broker_url):
    params = pika.URLParameters(broker_url)
    publisher = pika.BlockingConnection(params)
    consumer = pika.BlockingConnection(params)
    try:
        pub = publisher.channel()
        queue = pub.queue_declare(f"test-deliveries-{uuid.uuid4().hex}").method.queue
        sizes = [10, 0, 300_000, 2_000_000, 170, 131_072, 5]
        bodies = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
        for body in bodies:
            pub.basic_publish("", queue, body, pika.BasicProperties(headers={"k": 1}))
        channel = consumer.channel()
        channel.basic_qos(prefetch_count=3)
        got: list = []

        def on_batch(batch):
            got.extend(batch)
            channel._impl.basic_ack(delivery_tag=batch[-1][0], multiple=True)

        reader = install(
            consumer._impl,
            channel.channel_number,
            "c1",
            on_batch,
            max_body=1 << 20,
            read_size=65536,
        )
        assert reader is not None
        channel.basic_consume(queue, lambda *args: got.append(("pika", args)), consumer_tag="c1")
        deadline = time.monotonic() + 20
        while len(got) < len(bodies) and time.monotonic() < deadline:
            consumer.process_data_events(time_limit=0.1)
        assert [tag for tag, _ in got] == list(range(1, len(bodies) + 1))
        for (_tag, body), sent in zip(got, bodies, strict=True):
            if len(sent) > 1 << 20:
                assert isinstance(body, BodyTooLarge) and body.size == len(sent)
            else:
                assert body == sent
        assert consumer._impl.bytes_received > sum(len(b) for b in bodies) - 2_000_000
        consumer.process_data_events(time_limit=0.2)  # the last ack goes out
        consumer.close()  # anything not acked would go back to the queue now
        assert pub.queue_declare(queue, passive=True).method.message_count == 0
        pub.queue_delete(queue)
    finally:
        for connection in (consumer, publisher):
            if connection.is_open:
                connection.close()


def test_pika_still_has_what_the_reader_needs(broker_url):
    """A canary for pika upgrades: without these internals the door falls back to pika."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        assert (
            install(
                connection._impl, channel.channel_number, "t", print, max_body=10, read_size=65536
            )
            is not None
        )
        assert connection._impl._transport._MAX_RECV_BYTES == 65536
    finally:
        connection.close()


# -- stream deliveries: the offset, the time and the marker from the properties --------------


def stream_deliver(tag: int, body: bytes, properties: spec.BasicProperties) -> bytes:
    return b"".join(
        [
            frame.Method(CHANNEL, spec.Basic.Deliver(TAG, tag, False, "", "s")).marshal(),
            frame.Header(CHANNEL, len(body), properties).marshal(),
            frame.Body(CHANNEL, body).marshal() if body else b"",
        ]
    )


def stream_reader() -> tuple[DeliveryReader, list]:
    log: list = []
    reader = DeliveryReader(
        PikaSide(log), CHANNEL, TAG, lambda batch: log.extend(batch),
        max_body=1000, properties=True,
    )
    return reader, log


HEADERS_OF_EVERY_KIND = {
    "profile_id": "abcdefghij",
    "temperature": 70,
    "big": 2**40,
    "ratio": 0.5,
    "flag": True,
    "none": None,
    "list": [1, "a"],
    "table": {"a": 1},
    "when": datetime.datetime(2026, 1, 1),
    "raw": b"\x00\x01",
}


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        (
            spec.BasicProperties(
                content_type="application/json",
                headers={
                    **HEADERS_OF_EVERY_KIND, "x-stream-offset": 41, TIME_HEADER: 1_700_000_000_123
                },
                timestamp=1_700_000_000,
                delivery_mode=2,
                message_id="m",
            ),
            StreamMeta(41, 1_700_000_000_123, None),
        ),
        (  # only AMQP's timestamp property: seconds
            spec.BasicProperties(headers={"x-stream-offset": 2**33}, timestamp=1_700_000_001),
            StreamMeta(2**33, 1_700_000_001_000, None),
        ),
        (  # a GATD formatter's packet: no time at all
            spec.BasicProperties(headers={"profile_id": "p", "x-stream-offset": 0}),
            StreamMeta(0, None, None),
        ),
        (
            spec.BasicProperties(headers={MARKER_HEADER: "abc", "x-stream-offset": 7}),
            StreamMeta(7, None, "abc"),
        ),
        (spec.BasicProperties(), StreamMeta(None, None, None)),
    ],
)
def test_stream_deliveries_carry_offset_time_and_marker(properties, expected):
    reader, got = stream_reader()
    data = stream_deliver(5, b'{"a": 1}', properties) + stream_deliver(6, b"x" * 2000, properties)
    for cut in range(0, len(data), 37):  # in pieces, as the socket gives them
        reader.feed(data[cut : cut + 37])
    assert got[0] == (5, b'{"a": 1}', expected)
    tag, too_large, meta = got[1]
    assert (tag, meta, too_large.size) == (6, expected, 2000)
    # pika's decoding of the same properties gives the same
    assert meta_of(properties.headers, properties.timestamp) == expected


def test_a_header_of_a_kind_the_walk_does_not_know_falls_back_to_pika():
    properties = spec.BasicProperties(headers={"x-stream-offset": 3, TIME_HEADER: 99})
    header = frame.Header(CHANNEL, 0, properties).marshal()
    payload = bytearray(header[7:-1])
    assert stream_properties(bytes(payload), 0, len(payload)) == StreamMeta(3, 99, None)
    kind = payload.index(b"x-stream-offset") + len(b"x-stream-offset")
    payload[kind] = ord("?")  # no such field type
    assert stream_properties(bytes(payload), 0, len(payload)) is None
