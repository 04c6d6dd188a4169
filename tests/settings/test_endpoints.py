"""zmq.sources and zmq.outputs: every entry checked at startup, defaults filled in."""

from __future__ import annotations

import json

import pytest

from channelstream.settings import SettingsError, default_settings
from channelstream.settings.endpoints import (
    BIND,
    CONNECT,
    OUTPUT,
    SOURCE,
    ZmqEndpoint,
    conn_type_for,
    parse_endpoints,
)


def sources(*items: dict) -> dict[str, str]:
    return {"zmq.sources": json.dumps(list(items))}


def test_defaults_follow_mflow():
    (source,) = parse_endpoints(SOURCE, [{"address": "tcp://detector:9999", "channel": "img"}])
    assert source == ZmqEndpoint(kind=SOURCE, address="tcp://detector:9999", channel="img",
                                 conn_type=CONNECT, mode="pull", queue_size=100, name="img")
    (output,) = parse_endpoints(OUTPUT, [{"address": "tcp://*:9000", "channel": "img"}])
    assert (output.conn_type, output.mode, output.modulo, output.queue_size) == (BIND, "push", 1,
                                                                                 100)
    assert (source.door_name, output.door_name) == ("zmq-source:img", "zmq-output:img")
    assert conn_type_for("ipc:///tmp/x") == CONNECT and conn_type_for("tcp://*:1") == BIND


def test_an_endpoint_reads_as_a_mapping_too():
    (entry,) = default_settings(sources({"address": "ipc:///tmp/s", "channel": "c"})).zmq.sources
    assert entry["channel"] == "c" and entry["mode"] == "pull" and dict(entry)["name"] == "c"
    with pytest.raises(KeyError):
        entry["nope"]


def test_names_are_derived_unique_and_explicit_ones_win():
    got = parse_endpoints(SOURCE, [
        {"address": "tcp://a:1", "channel": "img"},
        {"address": "tcp://a:2", "channel": "img", "name": "img-2"},
        {"address": "tcp://a:3", "channel": "img"},
        {"address": "tcp://a:4", "channel": "img", "mode": "SUB", "conn_type": "bind"},
    ])
    assert [e.name for e in got] == ["img", "img-2", "img-3", "img-4"]
    assert (got[3].mode, got[3].conn_type) == ("sub", BIND)


@pytest.mark.parametrize("item, said", [
    ({"channel": "c"}, "item 0: needs an 'address' string"),
    ({"address": "udp://h:1", "channel": "c"}, "expected tcp://host:port, tcp://*:port or ipc"),
    ({"address": "tcp://h:0", "channel": "c"}, "port must be 1-65535"),
    ({"address": "tcp://h", "channel": "c"}, "expected tcp://host:port"),
    ({"address": "tcp://*:9", "channel": "c", "conn_type": "connect"}, "a '*' host can only bind"),
    ({"address": "tcp://h:9", "channel": "c", "conn_type": "listen"},
     "'conn_type' must be connect or bind"),
    ({"address": "tcp://h:9", "channel": ""}, "needs a 'channel' string of 1-256 characters"),
    ({"address": "tcp://h:9", "channel": "x" * 257}, "of 1-256 characters"),
    ({"address": "tcp://h:9", "channel": "a\nb"}, "'channel' holds a control character"),
    ({"address": "tcp://h:9", "channel": "c", "mode": "push"},
     "'mode' of a source must be pull or sub, got 'push'"),
    ({"address": "tcp://h:9", "channel": "c", "queue_size": 0}, "'queue_size' must be an integer"),
    ({"address": "tcp://h:9", "channel": "c", "queue_size": True}, "'queue_size' must be"),
    ({"address": "tcp://h:9", "channel": "c", "queue_size": "100"}, "'queue_size' must be"),
    ({"address": "tcp://h:9", "channel": "c", "modulo": 2}, "unknown key 'modulo'"),
    ({"address": "tcp://h:9", "chanel": "c"}, "unknown key 'chanel' (a source takes address,"),
    ({"address": "tcp://h:9", "channel": "c", "name": ""}, "'name' string of 1-100"),
    ("tcp://h:9", "item 0: must be a JSON object"),
])
def test_a_bad_source_stops_startup_naming_the_key_and_the_item(item, said):
    with pytest.raises(SettingsError) as caught:
        default_settings(sources(item))
    assert caught.value.key == "zmq.sources"
    assert said in str(caught.value), str(caught.value)


@pytest.mark.parametrize("raw, said", [
    ('{"address": "tcp://h:9"}', "expected a JSON array of objects"),
    ("[{", "expected a JSON array of objects:"),
    ('[{"address": "tcp://h:9", "channel": "c", "mode": "pull"}]',
     "'mode' of an output must be push or pub"),
    ('[{"address": "tcp://h:9", "channel": "c", "modulo": 0}]', "'modulo' must be an integer"),
    ('[{"address": "tcp://h:9", "channel": "c", "name": "x"}, '
     '{"address": "tcp://h:8", "channel": "d", "name": "x"}]', "item 1: name 'x' is also item 0's"),
])
def test_a_bad_output_stops_startup_naming_the_key(raw, said):
    with pytest.raises(SettingsError) as caught:
        default_settings({"zmq.outputs": raw})
    assert caught.value.key == "zmq.outputs"
    assert said in str(caught.value), str(caught.value)


def test_an_address_bound_twice_is_refused():
    raw = {**sources({"address": "tcp://*:9000", "channel": "a"}),
           "zmq.outputs": json.dumps([{"address": "tcp://*:9000", "channel": "a"}])}
    with pytest.raises(SettingsError, match=r"zmq\.outputs: item 0: tcp://\*:9000 is bound by "
                                            r"zmq\.sources item 0 too"):
        default_settings(raw)
    connecting = {**sources({"address": "tcp://h:9000", "channel": "a"},
                            {"address": "tcp://h:9000", "channel": "b"})}
    assert len(default_settings(connecting).zmq.sources) == 2  # two connects are fine


def test_the_byte_bounds():
    settings = default_settings()
    assert (settings.zmq.max_inline_bytes, settings.zmq.max_message_bytes) == (65536, 64 << 20)
    assert default_settings({"zmq.max_inline_bytes": "0"}).zmq.max_inline_bytes == 0
    with pytest.raises(SettingsError, match=r"zmq\.max_message_bytes: must be >= 1"):
        default_settings({"zmq.max_message_bytes": "0"})
