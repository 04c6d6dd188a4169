import pytest

from channelstream.hub import Hub, Start
from channelstream.packets import (
    BadPacket,
    BadQuery,
    configure_packet_channel,
    ndjson,
    packet_message,
    parse_query,
)

from ..hub.fakes import FakeClock, make_hub


def test_a_packets_scalar_fields_are_what_queries_match():
    message = packet_message("packets", {"profile_id": "abc", "temperature": 70, "raw": [1]})
    assert message.fields == {"profile_id": "abc", "temperature": 70}
    assert parse_query({"temperature": 70}).filter.matches(message)
    assert not parse_query({"temperature": 71}).filter.matches(message)
    assert not parse_query({"raw": 1}).filter.matches(message)


@pytest.mark.parametrize("packet", [[1], "x", 3, None])
def test_a_packet_must_be_an_object(packet):
    with pytest.raises(BadPacket, match="JSON object"):
        packet_message("packets", packet)


def test_time_is_the_start_and_not_a_filter():
    query = parse_query({"profile_id": "abc", "time": 5000})
    assert query.start == Start.ms_ago(5000)
    assert query.filter.as_dict() == {"profile_id": "abc"}
    assert parse_query({}).start == Start.live()


@pytest.mark.parametrize(
    "query, problem",
    [
        ([], "JSON object"),
        ({"time": -1}, "time"),
        ({"time": "5"}, "time"),
        ({"time": True}, "time"),
        ({"time": float("inf")}, "time"),
        ({"time": float("nan")}, "time"),
        ({"k": [1]}, "'k'"),
        ({"k": {"a": 1}}, "'k'"),
        ({str(i): i for i in range(65)}, "at most"),
    ],
)
def test_bad_queries_say_what_is_wrong(query, problem):
    with pytest.raises(BadQuery, match=problem):
        parse_query(query)


def test_ndjson_is_one_line_per_packet():
    hub = Hub()
    message = hub.publish(packet_message("packets", {"a": "é", "n": 1}))
    assert message.encoded(ndjson) == '{"a":"é","n":1}\n'.encode()


def test_the_packet_channel_replays_exactly_the_window_and_is_never_collected():
    clock = FakeClock()
    hub = make_hub(clock)
    configure_packet_channel(hub, "packets", history_size=1000, history_seconds=60)
    for n in range(10):
        hub.publish(packet_message("packets", {"n": n}))
        clock.advance(1000)
    query = parse_query({"time": 3000})
    outbox = hub.open_outbox()
    hub.subscribe(outbox, "packets", start=query.start, filter=query.filter)
    hub.publish(packet_message("packets", {"n": 10}))
    assert [m.body["n"] for m in outbox.drain()] == [7, 8, 9, 10]
    clock.advance(10_000_000)
    outbox.close("done")
    assert hub.collect() == 0 and hub.channel("packets") is not None


@pytest.mark.parametrize(
    "raw, line",
    [
        (b'{"a":"\xc3\xa9","n":1}', b'{"a":"\xc3\xa9","n":1}\n'),  # as received
        (b' {"n": 1, "a": "\\u00e9"}\r\n', b'{"n": 1, "a": "\\u00e9"}\n'),  # one line, trimmed
        (b'{\n  "n": 1\n}', b'{"n":1}\n'),  # spread over lines: encoded again
        (None, b'{"n":1}\n'),
    ],
)
def test_ndjson_sends_the_text_received_when_it_fits_on_one_line(raw, line):
    import json

    packet = json.loads(raw) if raw is not None else {"n": 1}
    message = Hub().publish(packet_message("packets", packet, raw=raw))
    assert message.encoded(ndjson) == line
    assert json.loads(line) == packet
