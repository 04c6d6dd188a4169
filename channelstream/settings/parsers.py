"""Parsers of ini text into typed setting values.

A parser is a plain callable ``(raw: str) -> value`` that raises
:class:`ValueError` with a message that does not repeat the key (the caller,
:func:`channelstream.settings.parse_value`, names it). Factories such as
:func:`integer` and :func:`duration` return parsers with bounds built in.
Pure functions; no I/O.
"""

from __future__ import annotations

import ipaddress
import json
import re
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

Parser = Callable[[str], Any]

#: One entry of an address list: a network (a single address is a /32 or /128).
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: What the "any address" entry ``0.0.0.0`` (or ``::``) of :func:`ip_networks` becomes.
ANY_ADDRESS: tuple[IPNetwork, ...] = (
    ipaddress.IPv4Network("0.0.0.0/0"),
    ipaddress.IPv6Network("::/0"),
)

_TRUE = frozenset({"true", "yes", "on", "y", "t", "1"})
_FALSE = frozenset({"false", "no", "off", "n", "f", "0"})


def as_str(raw: str) -> str:
    """Return the text with surrounding whitespace removed."""
    return raw.strip()


def non_empty(raw: str) -> str:
    """Return the stripped text; an empty value is an error."""
    text = raw.strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def as_bool(raw: str) -> bool:
    """Parse a boolean the way Pyramid's ``asbool`` does, but strictly.

    ``true/yes/on/y/t/1`` and ``false/no/off/n/f/0`` (any case); anything else
    is an error instead of silently meaning false.
    """
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected a boolean (true or false), got {raw.strip()!r}")


def integer(minimum: int | None = None, maximum: int | None = None) -> Parser:
    """Return a parser of a decimal integer within ``[minimum, maximum]``."""

    def parse_int(raw: str) -> int:
        text = raw.strip()
        try:
            value = int(text, 10)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be <= {maximum}, got {value}")
        return value

    return parse_int


_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(minimum: float = 0.0, *, positive: bool = False) -> Parser:
    """Return a parser of a duration into float seconds.

    Accepts a number with an optional unit: ``60`` and ``60s`` (seconds),
    ``500ms``, ``5m``, ``1h``, ``1.5s``. With ``positive`` zero is refused.
    """

    def parse_duration(raw: str) -> float:
        text = raw.strip().lower()
        match = _DURATION.match(text)
        if not match:
            raise ValueError(
                f"expected a duration such as 60, 60s, 500ms, 5m or 1h, got {raw.strip()!r}"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if positive and seconds <= 0:
            raise ValueError(f"must be more than 0 seconds, got {raw.strip()!r}")
        if seconds < minimum:
            raise ValueError(f"must be at least {minimum:g} seconds, got {raw.strip()!r}")
        return seconds

    return parse_duration


def as_list(raw: str) -> tuple[str, ...]:
    """Split on commas and newlines; blanks are dropped.

    ``"127.0.0.1,\\n    192.168.1.1"`` gives ``("127.0.0.1", "192.168.1.1")``.
    """
    return tuple(item.strip() for item in re.split(r"[,\n]", raw) if item.strip())


def one_of(allowed: tuple[str, ...]) -> Parser:
    """Return a parser of exactly one value among ``allowed`` (``always``, not a list)."""

    def parse_one_of(raw: str) -> str:
        text = raw.strip()
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {text!r}")
        return text

    return parse_one_of


def choices(allowed: tuple[str, ...], *, min_items: int = 1) -> Parser:
    """Return a list parser whose items must be among ``allowed`` (no repeats)."""

    def parse_choices(raw: str) -> tuple[str, ...]:
        items = as_list(raw)
        for item in items:
            if item not in allowed:
                raise ValueError(f"unknown value {item!r}; expected some of {', '.join(allowed)}")
        if len(set(items)) != len(items):
            raise ValueError(f"values repeat in {raw.strip()!r}")
        if len(items) < min_items:
            raise ValueError(f"needs at least {min_items} of {', '.join(allowed)}")
        return items

    return parse_choices


def host_port(raw: str) -> tuple[str, int]:
    """Parse ``host:port`` (IPv6 as ``[::1]:port``) into ``(host, port)``.

    The port is 0-65535 (0 asks the OS for a free port).
    """
    text = raw.strip()
    bad = ValueError(f"expected host:port, got {text!r}")
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
    else:
        host, sep, port_text = text.rpartition(":")
        if ":" in host:  # a bare IPv6 address is ambiguous
            raise bad
    if not sep or not host or not port_text.isdigit():
        raise bad
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port must be 0-65535, got {port}")
    return host, port


def url(*schemes: str) -> Parser:
    """Return a parser of an absolute URL with one of ``schemes``; empty is allowed."""

    def parse_url(raw: str) -> str:
        text = raw.strip()
        if not text:
            return ""
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.netloc:
            raise ValueError(f"expected a {' or '.join(schemes)} URL, got {_redact_url(text)!r}")
        return text

    return parse_url


def _redact_url(text: str) -> str:
    """Hide a password in a URL before it is shown in an error message."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", text)


def json_objects(*required: str) -> Parser:
    """Return a parser of a JSON array of objects, each holding string ``required`` keys.

    Empty text is an empty tuple. Values may span several (indented) ini lines.
    """

    def parse_json_objects(raw: str) -> tuple[Mapping[str, Any], ...]:
        text = raw.strip()
        if not text:
            return ()
        try:
            value = json.loads(text)
        except ValueError as err:
            raise ValueError(f"expected a JSON array of objects: {err}") from None
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ValueError("expected a JSON array of objects")
        for index, item in enumerate(value):
            for key in required:
                if not isinstance(item.get(key), str) or not item[key]:
                    raise ValueError(f"item {index} needs a string {key!r}")
        return tuple(types.MappingProxyType(item) for item in value)

    return parse_json_objects


def optional(parser: Parser) -> Parser:
    """Return a parser that maps empty text to ``None`` and defers to ``parser``."""

    def parse_optional(raw: str) -> Any:
        return None if not raw.strip() else parser(raw)

    return parse_optional


def as_path(raw: str) -> Path:
    """Parse a filesystem path; a relative one is later resolved against the ini's folder."""
    text = raw.strip()
    if not text:
        raise ValueError("expected a path")
    return Path(text).expanduser()


def ip_networks(raw: str) -> tuple[IPNetwork, ...]:
    """Parse a list of IP addresses and networks (comma or newline separated).

    ``"127.0.0.1, ::1, 10.0.0.0/8"`` gives three networks; a single address
    becomes a one-address network (``127.0.0.1/32``). The bare entry
    ``0.0.0.0`` (as the original channelstream wrote it) or ``::`` means any
    address, IPv4 and IPv6: it becomes :data:`ANY_ADDRESS`. A network with
    host bits set (``10.0.0.1/8``) is refused as a likely typo. Empty text is
    an empty tuple (the caller decides what that means).
    """
    networks: list[IPNetwork] = []
    for item in as_list(raw):
        if item in ("0.0.0.0", "::"):
            networks.extend(ANY_ADDRESS)
            continue
        try:
            network = ipaddress.ip_network(item, strict=True)
        except ValueError as err:
            if "has host bits set" in str(err):
                loose = ipaddress.ip_network(item, strict=False)
                raise ValueError(
                    f"{item!r} has host bits set; did you mean {str(loose)!r}?"
                ) from None
            raise ValueError(
                f"expected IP addresses or networks such as 127.0.0.1, ::1 or 10.0.0.0/8, "
                f"got {item!r}"
            ) from None
        if network not in networks:
            networks.append(network)
    return tuple(networks)


_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def origins(raw: str) -> tuple[str, ...]:
    """Parse a list of web origins (``scheme://host[:port]``) for CORS.

    Each origin is normalised the way browsers send the ``Origin`` header:
    scheme and host in lower case, the default port dropped
    (``HTTPS://App.Example:443`` -> ``https://app.example``). An origin has no
    path, query, fragment or user info. ``*`` (any origin) is accepted only
    when written as such. Empty text is an empty tuple.
    """
    result: list[str] = []
    for item in as_list(raw):
        origin = item if item == "*" else _origin(item)
        if origin not in result:
            result.append(origin)
    return tuple(result)


def _origin(item: str) -> str:
    bad = f"expected an origin such as https://app.example or http://127.0.0.1:8080, got {item!r}"
    try:
        parts = urlsplit(item)
        port = parts.port
    except ValueError:
        raise ValueError(bad) from None
    scheme = parts.scheme.lower()
    if not _SCHEME.match(scheme) or not parts.hostname or parts.username is not None:
        raise ValueError(bad)
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or _DEFAULT_PORTS.get(scheme) == port:
        origin = f"{scheme}://{host}"
    else:
        origin = f"{scheme}://{host}:{port}"
    if parts.path or parts.query or parts.fragment or item.endswith(("?", "#")):
        raise ValueError(
            f"an origin has no path, query or fragment, got {item!r}; did you mean {origin!r}?"
        )
    return origin
