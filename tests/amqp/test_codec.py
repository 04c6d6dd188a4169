"""No broker needed: headers, the double encoding, decoding, redaction, building the door."""

from __future__ import annotations

import json
import struct

import pika.data
import pika.exceptions
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channelstream import strict_json
from channelstream.amqp.broker import (
    BadBrokerUrl,
    broker_address,
    connection_parameters,
    describe_error,
    redact_text,
    redact_url,
)
from channelstream.amqp.headers import MAX_HEADERS_BYTES, MAX_STRING_BYTES, packet_headers
from channelstream.amqp.ingest import AmqpIngestDoor, decode_packet
from channelstream.amqp.publisher import encode_packet
from channelstream.packets import BadPacket
from channelstream.serving.doors import DoorStartError
from channelstream.serving.runtime import Runtime, find_runtime
from channelstream.settings import default_settings
from channelstream.wsgi_app import build_app
from tests.support.broker import require_broker
from tests.support.server import free_port

# -- headers ------------------------------------------------------------------------


def test_every_scalar_field_is_a_header_and_nothing_else():
    packet = {
        "profile_id": "abcdefghij",
        "temperature": 70,
        "humidity": 41.5,
        "rounded": 70.0,
        "public": True,
        "note": None,
        "nested": {"a": 1},
        "list": [1, 2],
    }
    assert packet_headers(packet) == {
        "profile_id": "abcdefghij",
        "temperature": 70,
        "humidity": 41.5,
        "rounded": 70,
        "public": True,
        "note": None,
    }
    assert type(packet_headers(packet)["rounded"]) is int


def test_values_amqp_cannot_carry_are_left_out():
    packet = {
        "huge": 2**70,
        "long": "x" * (MAX_STRING_BYTES + 1),
        "k" * 256: 1,
        "surrogate": "\ud800",
        "fine": "y" * MAX_STRING_BYTES,
        1: "not a string key",
    }
    assert list(packet_headers(packet)) == ["fine"]


def test_headers_stay_within_their_budget():
    packet = {f"field{i}": "z" * 4000 for i in range(40)}
    headers = packet_headers(packet)
    size = sum(1 + len(key) + 5 + len(value) for key, value in headers.items())
    assert 0 < len(headers) < 40
    assert size <= MAX_HEADERS_BYTES


def test_the_headers_of_a_packet_encode_with_pika_floats_as_doubles():
    headers = packet_headers({"t": 70, "h": 41.5, "b": False, "n": None, "s": "é"})
    pieces: list[bytes] = []
    pika.data.encode_table(pieces, headers)
    decoded, _ = pika.data.decode_table(b"".join(pieces), 0)
    assert decoded == {"t": 70, "h": 41, "b": False, "n": None, "s": "é"}  # pika truncates "d"
    double: list[bytes] = []
    assert pika.data.encode_value(double, 41.5) == 9
    assert double == [struct.pack(">cd", b"d", 41.5)]


def test_pika_still_refuses_what_it_refused_apart_from_floats():
    with pytest.raises(pika.exceptions.UnsupportedAMQPFieldException):
        pika.data.encode_value([], object())


# -- decoding and encoding packets ----------------------------------------------------


def test_decode_packet_accepts_a_utf8_json_object():
    assert decode_packet(b'{"profile_id": "abc", "t": 70.5, "ok": true}') == {
        "profile_id": "abc",
        "t": 70.5,
        "ok": True,
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "not an array"),
        (b'"text"', "not a string"),
        (b"70", "not a number"),
        (b"null", "not null"),
        (b'{"t": NaN}', "NaN is not a JSON number"),
        (b'{"t": 1e999}', "out of range"),
        (b'{"t": "\\ud800"}', "lone surrogate"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"a": ' * 40 + b"1" + b"}" * 40, "nested deeper"),
        (b"[" * 100000 + b"]" * 100000, "nested deeper"),
    ],
)
def test_decode_packet_names_what_is_wrong(body, reason):
    with pytest.raises(BadPacket, match=reason):
        decode_packet(body)


def test_decode_packet_refuses_a_body_over_the_limit():
    with pytest.raises(BadPacket, match="more than the limit of 10"):
        decode_packet(b'{"a": "0123456789"}', max_size=10)


def test_encode_packet_is_compact_utf8_and_refuses_what_json_cannot_carry():
    assert encode_packet({"t": 70, "s": "é"}) == '{"t":70,"s":"é"}'.encode()
    for bad in ([1], {"t": float("nan")}, {"s": "\ud800"}, {"o": object()}):
        with pytest.raises(BadPacket):
            encode_packet(bad)


# -- URLs and errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://guest:s3cret@host:5672/vh", "amqp://guest:***@host:5672/vh"),
        ("amqps://u:p%40ss@[::1]:5671/", "amqps://u:***@[::1]:5671/"),
        ("amqp://host/", "amqp://host/"),
        ("amqp://user@host/", "amqp://user@host/"),
        ("amqp://u:pw@host:99999999/", "amqp://u:***@host:99999999/"),
    ],
)
def test_redact_url_hides_the_password_only(url, shown):
    assert redact_url(url) == shown


def test_redact_text_hides_the_password_anywhere():
    url = "amqp://guest:hunter22@h:1/"
    text = redact_text(f"failed: {url} said hunter22", url)
    assert "hunter22" not in text
    assert "amqp://guest:***@h:1/" in text


def test_broker_address():
    assert broker_address("amqp://u:p@rabbit.example/") == "rabbit.example:5672"
    assert broker_address("amqps://u:p@rabbit.example/") == "rabbit.example:5671"
    assert broker_address("amqp://[::1]:5673/") == "[::1]:5673"


def test_connection_parameters_name_the_connection_and_refuse_bad_urls():
    parameters = connection_parameters("amqp://u:p@h:5673/v?heartbeat=7", name="door")
    assert (parameters.host, parameters.port, parameters.virtual_host) == ("h", 5673, "v")
    assert parameters.heartbeat == 7
    assert parameters.client_properties["connection_name"] == "door"
    with pytest.raises(BadBrokerUrl) as caught:
        connection_parameters("amqp://u:hunter22@h:notaport/", name="door")
    assert "hunter22" not in str(caught.value)
    with pytest.raises(BadBrokerUrl, match="amqp:// or amqps://"):
        connection_parameters("http://h/", name="door")


def test_describe_error_reaches_the_socket_error():
    inner = ConnectionRefusedError(111, "Connection refused")
    err = pika.exceptions.AMQPConnectionError(inner)
    assert describe_error(err, "amqp://h/") == "ConnectionRefusedError: Connection refused"


# -- building the door --------------------------------------------------------------


def test_no_url_no_door():
    app = build_app(default_settings())
    assert "amqp-ingest" not in [door.name for door in find_runtime(app).doors]


def test_the_door_is_added_but_nothing_connects_while_the_app_is_built():
    settings = default_settings(
        {"amqp.url": "amqp://guest:hunter22@127.0.0.1:1/", "amqp.exchange": "x"}
    )
    runtime = find_runtime(build_app(settings))
    door = runtime.doors.get("amqp-ingest")
    status = door.status()
    assert status["state"] == "new"
    assert status["broker"] == "amqp://guest:***@127.0.0.1:1/"
    assert (status["exchange"], status["prefetch"]) == ("x", 1000)
    assert "hunter22" not in repr(status)


def test_the_door_refuses_to_start_in_a_process_that_is_not_monkey_patched():
    runtime = Runtime(default_settings())
    runtime.doors.add(
        AmqpIngestDoor(
            default_settings({"amqp.url": "amqp://h/", "amqp.exchange": "x"}).amqp,
            hub=runtime.hub,
            packet_channel="packets",
        )
    )
    with pytest.raises(DoorStartError, match="monkey-patched"):
        runtime.start()


# -- the broker tests' own rule ------------------------------------------------------


@pytest.mark.parametrize(("ci", "outcome"), [(None, "skip"), ("", "skip"), ("true", "fail")])
def test_broker_tests_skip_only_outside_ci(monkeypatch, ci, outcome):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    unreachable = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    expected = pytest.skip.Exception if outcome == "skip" else pytest.fail.Exception
    with pytest.raises(expected, match="RabbitMQ is not reachable"):
        require_broker(unreachable)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(categories=["L", "N", "P", "Cs", "Cc"]), max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(value=json_values, depth=st.integers(0, 40), ascii=st.booleans(), indent=st.booleans())
def test_decode_packet_agrees_with_the_strict_reader_on_any_json(value, depth, ascii, indent):
    """strict_json.loads_utf8, under it, skips check() only where check() cannot find anything."""
    for _ in range(depth):
        value = [value]
    text = json.dumps({"v": value}, ensure_ascii=ascii, indent=2 if indent else None)
    try:
        body = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate written as itself: not UTF-8
        return
    try:
        expected = strict_json.loads(body.decode("utf-8"))
    except ValueError:
        with pytest.raises(BadPacket):
            decode_packet(body)
    else:
        assert json.dumps(decode_packet(body)) == json.dumps(expected)
