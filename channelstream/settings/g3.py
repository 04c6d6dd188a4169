"""Parsers of the ``g3.*`` keys: sources, decimation, the channel name.

``g3.sources`` is a list (commas or lines) of::

    tcp://host:port         connect to a G3 streaming server (spt3g's G3NetworkSender '*')
    tcp://*:port            listen on every interface for one sender at a time
    tcp://*@ADDR:port       listen on ADDR only (e.g. tcp://*@127.0.0.1:4537)
    path/to/file.g3         a file (.gz, .bz2, .xz too), read once

URLs are checked with :func:`channelstream.g3.net.parse_url` (the library's
own grammar, imported only when a URL is given); a file is a
:class:`~pathlib.Path`, resolved against the ini's folder by
:func:`channelstream.settings.parse_value` and checked to exist by
:func:`channelstream.settings.validate`. ``g3.decimation`` is
``Type=N, Type=N`` with spt3g's frame type names (``Timepoint=10, Scan=0``).
Pure: no I/O.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from pathlib import Path

from .parsers import as_list

#: Longest channel name (as the server API accepts).
MAX_CHANNEL = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: A ``g3.sources`` entry: a ``tcp://`` URL, or a file.
G3Source = str | Path


def g3_sources(raw: str) -> tuple[G3Source, ...]:
    """Parse ``g3.sources`` (see the module doc); each entry at most once."""
    entries: list[G3Source] = []
    for item in as_list(raw):
        if item.startswith("tcp://"):
            from channelstream.g3.net import parse_url  # the library's grammar

            try:
                parse_url(item)
            except ValueError as err:
                raise ValueError(f"{err}; a source is tcp://host:port, tcp://*:port, "
                                 "tcp://*@ADDR:port or a file") from None
            entry: G3Source = item
        elif "://" in item:
            raise ValueError(f"{item!r}: a source is tcp://host:port, tcp://*:port, "
                             "tcp://*@ADDR:port or a file")
        else:
            entry = Path(item).expanduser()
        if entry in entries:
            raise ValueError(f"{item!r} is listed twice")
        entries.append(entry)
    return tuple(entries)


def listen_port(entry: G3Source) -> tuple[str | None, int] | None:
    """``(host, port)`` a listening ``tcp://*...`` source binds (host None: every
    interface), or None for a connecting source or a file."""
    if not isinstance(entry, str):
        return None
    from channelstream.g3.net import parse_url

    address = parse_url(entry)
    return (address.host, address.port) if address.listen else None


def frame_decimation(raw: str) -> Mapping[str, int]:
    """Parse ``Timepoint=10, Scan=0`` into ``{"Timepoint": 10, "Scan": 0}``.

    Names are spt3g's frame types (any case); N >= 0 (0 drops the type, 1
    keeps every frame). Empty text is no decimation.
    """
    items = as_list(raw)
    if not items:
        return types.MappingProxyType({})
    from channelstream.g3.frametype import G3FrameType

    names = {t.name.lower(): t.name for t in G3FrameType if t.name != "none"}
    result: dict[str, int] = {}
    for item in items:
        name, sep, count = (part.strip() for part in item.partition("="))
        known = names.get(name.lower())
        if not sep or known is None:
            raise ValueError(
                f"expected Type=N with a frame type among {', '.join(names.values())}, "
                f"got {item!r}"
            )
        if not count.isdigit():
            raise ValueError(f"{item!r}: N must be an integer >= 0 (0 drops the type)")
        if known in result:
            raise ValueError(f"{known} is given twice")
        result[known] = int(count)
    return types.MappingProxyType(result)


def channel_name(raw: str) -> str:
    """A channelstream channel name: 1 to 256 characters, no control character."""
    text = raw.strip()
    if not text:
        raise ValueError("must not be empty")
    if len(text) > MAX_CHANNEL:
        raise ValueError(f"must be at most {MAX_CHANNEL} characters, got {len(text)}")
    if _CONTROL.search(text):
        raise ValueError("must not hold control characters")
    return text


__all__ = ["G3Source", "MAX_CHANNEL", "channel_name", "frame_decimation", "g3_sources",
           "listen_port"]
