"""Settings: every parser, every named-key error, env overrides, the seed's ini."""

from __future__ import annotations

import ipaddress
import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paste.deploy import loadapp

from channelstream.serving.runtime import find_runtime
from channelstream.settings import (
    KNOWN_PREFIXES,
    SettingsError,
    default_settings,
    env_name,
    iter_settings,
    parse_settings,
    parse_value,
    parsers,
    replace_group,
)
from tests.support.server import REPO


def error_of(raw: dict[str, str], environ: dict[str, str] | None = None) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        parse_settings(raw, environ=environ or {})
    return info.value


# -- parsers -------------------------------------------------------------------


@pytest.mark.parametrize("text", ["true", "True", " yes", "on", "1", "y", "t"])
def test_bool_true(text):
    assert parsers.as_bool(text) is True


@pytest.mark.parametrize("text", ["false", "FALSE", "no", "off", "0", "n", "f "])
def test_bool_false(text):
    assert parsers.as_bool(text) is False


@pytest.mark.parametrize("text", ["", "maybe", "2", "truthy"])
def test_bool_refuses_anything_else(text):
    with pytest.raises(ValueError, match="expected a boolean"):
        parsers.as_bool(text)


def test_integer_bounds():
    parse = parsers.integer(1, 10)
    assert parse(" 7 ") == 7
    with pytest.raises(ValueError, match="must be >= 1, got 0"):
        parse("0")
    with pytest.raises(ValueError, match="must be <= 10, got 11"):
        parse("11")
    with pytest.raises(ValueError, match=r"expected an integer, got '1\.5'"):
        parse("1.5")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60", 60.0),
        ("60s", 60.0),
        ("500ms", 0.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("0", 0.0),
        (" 2 M ", 120.0),
    ],
)
def test_duration(text, seconds):
    assert parsers.duration()(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "5 minutes", "-1", "1d", "ms", "1.2.3s"])
def test_duration_refuses(text):
    with pytest.raises(ValueError, match="expected a duration"):
        parsers.duration()(text)


def test_duration_positive_refuses_zero():
    with pytest.raises(ValueError, match="more than 0"):
        parsers.duration(positive=True)("0ms")


@given(st.integers(0, 10**6), st.sampled_from([("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]))
def test_duration_units(number, unit):
    suffix, factor = unit
    assert parsers.duration()(f"{number}{suffix}") == pytest.approx(number * factor)


item = st.text(
    alphabet=st.characters(blacklist_characters=",\n\r", blacklist_categories=("Cs", "Zs", "Cc")),
    min_size=1,
    max_size=12,
)


@given(st.lists(item, max_size=6), st.lists(st.sampled_from([",", "\n", ",\n    ", " , "])))
def test_list_splits_on_commas_and_newlines(items, separators):
    text = ""
    for index, value in enumerate(items):
        text += value + (separators[index % len(separators)] if separators else ",")
    assert parsers.as_list(text) == tuple(items)


def test_list_of_the_seed():
    assert parsers.as_list("127.0.0.1,\n    192.168.1.1") == ("127.0.0.1", "192.168.1.1")
    assert parsers.as_list("  ") == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:22500", ("127.0.0.1", 22500)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:8000", ("::1", 8000)),
    ],
)
def test_host_port(text, expected):
    assert parsers.host_port(text) == expected


@pytest.mark.parametrize("text", ["abc", ":80", "host:", "host:http", "::1:80", "[::1]80", "a:-1"])
def test_host_port_refuses(text):
    with pytest.raises(ValueError, match="expected host:port"):
        parsers.host_port(text)


def test_host_port_refuses_big_port():
    with pytest.raises(ValueError, match="port must be 0-65535, got 65536"):
        parsers.host_port("h:65536")


def test_url():
    parse = parsers.url("amqp", "amqps")
    assert parse("") == ""
    assert parse(" amqp://guest:guest@127.0.0.1:5672/ ") == "amqp://guest:guest@127.0.0.1:5672/"
    with pytest.raises(ValueError, match="expected a amqp or amqps URL"):
        parse("http://broker/")
    with pytest.raises(ValueError) as info:
        parse("http://user:hunter2@broker/")
    assert "hunter2" not in str(info.value)


def test_json_objects():
    parse = parsers.json_objects("address", "channel")
    value = parse('[{"address": "tcp://127.0.0.1:9999", "channel": "det", "mode": "PULL"}]')
    assert value[0]["mode"] == "PULL"
    assert parse("") == ()
    with pytest.raises(ValueError, match="expected a JSON array of objects"):
        parse("{")
    with pytest.raises(ValueError, match="expected a JSON array of objects"):
        parse('{"address": "x"}')
    with pytest.raises(ValueError, match="item 0 needs a string 'channel'"):
        parse('[{"address": "x"}]')


def test_choices():
    parse = parsers.choices(("websocket", "polling"))
    assert parse("polling, websocket") == ("polling", "websocket")
    with pytest.raises(ValueError, match="unknown value 'comet'"):
        parse("websocket, comet")
    with pytest.raises(ValueError, match="repeat"):
        parse("polling, polling")
    with pytest.raises(ValueError, match="needs at least 1"):
        parse("")


def test_one_of_takes_exactly_one_allowed_value():
    parse = parsers.one_of(("never", "finish", "always"))
    assert parse(" always ") == "always"
    with pytest.raises(ValueError, match="expected one of never, finish, always, got 'sometimes'"):
        parse("sometimes")
    with pytest.raises(ValueError, match="got 'never, always'"):
        parse("never, always")
    with pytest.raises(ValueError, match="got ''"):
        parse("")


def test_ip_networks():
    parse = parsers.ip_networks
    assert parse("127.0.0.1, ::1,\n 10.0.0.0/8") == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("10.0.0.0/8"),
    )
    assert parse("") == ()
    assert parse("0.0.0.0") == parsers.ANY_ADDRESS == parse("::")
    assert parse("127.0.0.1, 127.0.0.1") == (ipaddress.ip_network("127.0.0.1"),)
    with pytest.raises(ValueError, match=re.escape("did you mean '10.0.0.0/8'")):
        parse("10.0.0.1/8")
    with pytest.raises(ValueError, match="got 'localhost'"):
        parse("127.0.0.1, localhost")


def test_origins():
    parse = parsers.origins
    assert parse("HTTPS://App.Example:443, http://127.0.0.1:8080, http://[::1]:80") == (
        "https://app.example",
        "http://127.0.0.1:8080",
        "http://[::1]",
    )
    assert parse("*") == ("*",)
    assert parse("") == ()
    with pytest.raises(ValueError, match=re.escape("did you mean 'https://app.example'")):
        parse("https://app.example/")
    for bad in ("app.example", "https://user@app.example", "https://x:99999", "null", "*.x"):
        with pytest.raises(ValueError, match="expected an origin"):
            parse(bad)


# -- the settings and their named-key errors -------------------------------------


def test_defaults():
    settings = default_settings()
    assert settings.secret == ""
    assert settings.allow_posting_from == ()
    assert settings.signature_window == 60.0
    assert settings.require_secrets is False
    assert settings.packets.channel == "packets"
    assert settings.packets.history_seconds == 300.0
    assert settings.packets.history_size == 100000
    assert settings.amqp.url == ""
    assert settings.amqp.exchange == "streamer_exchange"
    assert settings.amqp.prefetch == 1000
    assert settings.amqp.reconnect_max == 30.0
    assert settings.amqp.max_body_size == 1048576
    assert settings.tcp_streamer.listen == ("127.0.0.1", 22500)
    assert settings.g3.listen is None
    assert settings.demo.enabled is True
    assert settings.hub.history_size == 100
    assert settings.hub.history_seconds == 0.0
    assert settings.hub.outbox_size == 1000
    assert settings.hub.outbox_hard_limit == 10000
    assert settings.hub.gc_interval == 30.0
    assert settings.gc_channels_after == 3600.0
    assert settings.socketio.path == "socket.io"
    assert settings.socketio.transports == ("websocket", "polling")
    assert settings.socketio.ping_interval == 25.0
    assert settings.socketio.ping_timeout == 20.0
    assert settings.socketio.cors_allowed_origins == ()
    assert settings.socketio.max_payload == 1000000
    assert settings.legacy_secret_header is False
    assert settings.replay_cache_size == 100000
    assert settings.max_body_size == 1048576
    assert settings.allow_cors == ()
    assert settings.gc_conns_after == 30.0
    assert settings.gc_users_after == 3600.0
    assert settings.listen_timeout == 5.0
    assert settings.client_heartbeat == 5.0


def test_settings_are_frozen():
    settings = default_settings()
    with pytest.raises(AttributeError):
        settings.secret = "x"  # type: ignore[misc]


def test_every_key_is_documented_and_its_default_parses():
    keys = [info.key for info in iter_settings()]
    assert len(keys) == len(set(keys))
    for info in iter_settings():
        assert info.doc, info.key
        assert info.env == env_name(info.key)
        parse_value(info.key, info.default)


def test_every_key_is_shown_in_development_ini():
    text = (REPO / "development.ini").read_text()
    app_section = text[text.index("[app:main]") : text.index("[server:main]")]
    shown = set(re.findall(r"^#? ?([\w.]+) =", app_section, flags=re.MULTILINE))
    missing = [info.key for info in iter_settings() if info.key not in shown]
    assert missing == ["port"]  # the seed's informational key; [server:main] port binds


def test_bad_port_names_the_key():
    assert str(error_of({"port": "70000"})) == "port: must be <= 65535, got 70000"


def test_bad_duration_names_the_key():
    err = error_of({"signature_window": "5 minutes"})
    assert err.key == "signature_window"
    assert str(err).startswith("signature_window: expected a duration")


def test_bad_amqp_values_name_the_key():
    assert str(error_of({"amqp.prefetch": "0"})) == "amqp.prefetch: must be >= 1, got 0"
    assert str(error_of({"amqp.prefetch": "70000"})) == (
        "amqp.prefetch: must be <= 65535, got 70000"
    )
    assert error_of({"amqp.reconnect_max": "0"}).key == "amqp.reconnect_max"
    assert error_of({"amqp.max_body_size": "big"}).key == "amqp.max_body_size"
    settings = default_settings({"amqp.reconnect_max": "5m", "amqp.prefetch": "10"})
    assert (settings.amqp.reconnect_max, settings.amqp.prefetch) == (300.0, 10)


def test_bad_address_names_the_key():
    err = error_of({"allow_posting_from": "127.0.0.1, 10.0.0.300"})
    assert str(err) == (
        "allow_posting_from: expected IP addresses or networks such as 127.0.0.1, ::1 "
        "or 10.0.0.0/8, got '10.0.0.300'"
    )


def test_bad_origin_names_the_key():
    err = error_of({"allow_cors": "https://ok.example, ftp//bad"})
    assert err.key == "allow_cors"
    assert "got 'ftp//bad'" in str(err)


def test_bad_host_port_names_the_key():
    assert str(error_of({"tcp_streamer.listen": "abc"})) == (
        "tcp_streamer.listen: expected host:port, got 'abc'"
    )


def test_bad_list_names_the_key():
    err = error_of({"socketio.transports": "websocket, carrier-pigeon"})
    assert str(err).startswith("socketio.transports: unknown value 'carrier-pigeon'")


def test_unknown_door_option_stops_with_a_suggestion():
    assert str(error_of({"tcp_streamer.lisen": "127.0.0.1:1"})) == (
        "tcp_streamer.lisen: unknown setting 'tcp_streamer.lisen'; "
        "did you mean 'tcp_streamer.listen'?"
    )


@pytest.mark.parametrize("prefix", KNOWN_PREFIXES)
def test_every_known_prefix_is_strict(prefix):
    assert error_of({f"{prefix}no_such_option": "1"}).key == f"{prefix}no_such_option"


def test_hard_limit_below_outbox_size():
    err = error_of({"hub.outbox_size": "500", "hub.outbox_hard_limit": "100"})
    assert str(err) == "hub.outbox_hard_limit: must be >= hub.outbox_size (500), got 100"


def test_require_secrets_names_the_missing_key_and_its_variable():
    err = error_of({"require_secrets": "true", "admin_secret": "a"})
    assert err.key == "secret"
    assert "CHANNELSTREAM_SECRET" in str(err)
    err = error_of({"require_secrets": "true", "secret": "s"})
    assert err.key == "admin_secret"
    assert "CHANNELSTREAM_ADMIN_SECRET" in str(err)
    settings = parse_settings({"require_secrets": "true", "secret": "s", "admin_secret": "a"}, {})
    assert settings.require_secrets


def test_environment_overrides_the_ini():
    environ = {
        "CHANNELSTREAM_SECRET": "from-env",
        "CHANNELSTREAM_AMQP_URL": "amqp://broker:5672/",
        "CHANNELSTREAM_TCP_STREAMER_LISTEN": "0.0.0.0:1234",
        "CHANNELSTREAM_HUB_OUTBOX_SIZE": "7",
    }
    settings = parse_settings({"secret": "from-ini", "hub.outbox_size": "9"}, environ)
    assert settings.secret == "from-env"
    assert settings.amqp.url == "amqp://broker:5672/"
    assert settings.tcp_streamer.listen == ("0.0.0.0", 1234)
    assert settings.hub.outbox_size == 7


def test_environment_satisfies_require_secrets():
    environ = {"CHANNELSTREAM_SECRET": "s", "CHANNELSTREAM_ADMIN_SECRET": "a"}
    settings = parse_settings({"require_secrets": "true"}, environ)
    assert (settings.secret, settings.admin_secret) == ("s", "a")


def test_bad_environment_value_names_key_and_variable():
    err = error_of({}, {"CHANNELSTREAM_TCP_STREAMER_LISTEN": "nope"})
    assert err.key == "tcp_streamer.listen"
    assert "CHANNELSTREAM_TCP_STREAMER_LISTEN" in str(err)


def test_env_names():
    assert env_name("secret") == "CHANNELSTREAM_SECRET"
    assert env_name("amqp.url") == "CHANNELSTREAM_AMQP_URL"
    assert env_name("socketio.max_payload") == "CHANNELSTREAM_SOCKETIO_MAX_PAYLOAD"


def test_pyramid_keys_pass_through_and_here_is_ignored():
    settings = parse_settings(
        {"pyramid.reload_templates": "true", "here": "/srv", "__file__": "/srv/x.ini"}, {}
    )
    assert dict(settings.pyramid) == {"pyramid.reload_templates": "true"}


def test_unknown_unprefixed_key_warns_once_naming_it(caplog):
    with caplog.at_level(logging.WARNING, logger="channelstream.settings"):
        parse_settings({"secrte": "x", "whatever_else": "1"}, {})
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "'secrte'" in messages[0] and "did you mean 'secret'?" in messages[0]
    assert "'whatever_else'" in messages[1]


def test_storage_dir_is_relative_to_here(tmp_path):
    settings = parse_settings({"here": str(tmp_path)}, {})
    assert settings.loom.storage_dir == tmp_path / "var" / "loom"
    settings = parse_settings({"here": str(tmp_path), "loom.storage_dir": "/abs/streams"}, {})
    assert settings.loom.storage_dir == Path("/abs/streams")


def test_multiline_json_value():
    raw = {"zmq.sources": '[{"address": "tcp://127.0.0.1:9000",\n "channel": "images"}]'}
    assert parse_settings(raw, {}).zmq.sources[0]["channel"] == "images"


def test_replace_group_revalidates():
    settings = default_settings()
    changed = replace_group(settings, "socketio", ping_interval=5.0, path="io")
    assert (changed.socketio.ping_interval, changed.socketio.path) == (5.0, "io")
    assert settings.socketio.ping_interval == 25.0
    with pytest.raises(SettingsError, match=r"hub\.outbox_hard_limit"):
        replace_group(settings, "hub", outbox_size=20000)


def test_the_seeds_app_section_loads_verbatim(tmp_path):
    seed_ini = tmp_path / "seed.ini"
    seed_ini.write_text(
        textwrap.dedent(
            """\
            [app:main]
            paste.app_factory = channelstream.wsgi_app:make_app
            admin_secret = admin_secret
            secret = secret
            port = 8000
            allow_posting_from = 127.0.0.1,
                                 192.168.1.1

            [server:main]
            use = egg:gevent-socketio#paster
            host = 0.0.0.0
            port = 8000
            resource = socket.io
            transports = websocket, xhr-polling
            policy_server = True
            policy_listener_host = 0.0.0.0
            policy_listener_port = 10843
            heartbeat_interval = 5
            heartbeat_timeout = 60
            """
        )
    )
    app = loadapp(f"config:{seed_ini}")
    settings = find_runtime(app).settings
    assert settings.secret == "secret"
    assert settings.admin_secret == "admin_secret"
    assert settings.port == 8000
    assert settings.allow_posting_from == (
        ipaddress.ip_network("127.0.0.1"),
        ipaddress.ip_network("192.168.1.1"),
    )
    assert settings.loom.storage_dir == tmp_path / "var" / "loom"


def test_the_reference_printer_lists_every_key():
    out = subprocess.run(
        [sys.executable, "-m", "channelstream.settings"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout
    for info in iter_settings():
        assert f"\n{info.key} =" in "\n" + out, info.key
        assert info.env in out
