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


def test_the_reserved_keys_say_how_the_window_is_sent_and_are_never_filter_pairs():
    query = parse_query({"profile_id": "abc", "time": 5000, "_speedup": 2, "_history_only": True})
    assert query.filter.as_dict() == {"profile_id": "abc"}
    assert query.start == Start.ms_ago(5000)
    assert query.speedup == 2.0 and isinstance(query.speedup, float)
    assert query.history_only is True
    assert not query.plain
    plain = parse_query({"profile_id": "abc", "time": 5000, "_history_only": False})
    assert plain.plain and plain.speedup is None and not plain.history_only
    assert parse_query({"_history_only": False}).plain  # false needs no window
    assert parse_query({"time": 0, "_speedup": 0.001}).speedup == 0.001


@pytest.mark.parametrize(
    "query, problem",
    [
        ({"time": 1, "_speedup": 0}, '"_speedup" must be a number > 0'),
        ({"time": 1, "_speedup": -1}, '"_speedup" must be a number > 0'),
        ({"time": 1, "_speedup": "2"}, '"_speedup" must be a number > 0'),
        ({"time": 1, "_speedup": True}, '"_speedup" must be a number > 0'),
        ({"time": 1, "_speedup": None}, '"_speedup" must be a number > 0'),
        ({"time": 1, "_speedup": float("inf")}, '"_speedup" must be a number > 0'),
        ({"time": 1, "_speedup": float("nan")}, '"_speedup" must be a number > 0'),
        ({"time": 1, "_history_only": 1}, '"_history_only" must be true or false'),
        ({"time": 1, "_history_only": "true"}, '"_history_only" must be true or false'),
        ({"time": 1, "_history_only": None}, '"_history_only" must be true or false'),
        ({"_speedup": 2}, '"_speedup" needs "time"'),
        ({"_history_only": True}, '"_history_only" needs "time"'),
    ],
)
def test_bad_reserved_values_are_named(query, problem):
    with pytest.raises(BadQuery, match=problem):
        parse_query(query)


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
