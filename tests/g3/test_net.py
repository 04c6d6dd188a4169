"""tcp:// URLs and sender host names."""

from __future__ import annotations

import pytest

from channelstream.g3.net import TcpAddress, parse_host, parse_url


@pytest.mark.parametrize(
    "url, expected",
    [
        ("tcp://daq.example:4536", TcpAddress("daq.example", 4536, False)),
        ("tcp://127.0.0.1:4536", TcpAddress("127.0.0.1", 4536, False)),
        ("tcp://[::1]:4536", TcpAddress("::1", 4536, False)),
        ("tcp://*:4536", TcpAddress(None, 4536, True)),
        ("tcp://*@127.0.0.1:4536", TcpAddress("127.0.0.1", 4536, True)),
        ("tcp://*@[::1]:0", TcpAddress("::1", 0, True)),
    ],
)
def test_parse_url(url: str, expected: TcpAddress) -> None:
    assert parse_url(url) == expected
    assert str(expected) == url


@pytest.mark.parametrize(
    "url, message",
    [
        ("tcp://host", "no port"),
        ("tcp://[::1]", "no port"),
        ("tcp://host:http", "bad port"),
        ("tcp://host:70000", "out of range"),
        ("tcp://host:0", "port 0"),
        ("tcp://::1:4536", "brackets"),
        ("tcp://:4536", "empty host"),
        ("tcp://*@:4536", "no address"),
        ("udp://host:1", "not a tcp"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_url(url)


def test_sender_host_names() -> None:
    assert parse_host("*") == (None, True)
    assert parse_host("*@10.0.0.1") == ("10.0.0.1", True)
    assert parse_host("name.of.remote.host") == ("name.of.remote.host", False)
