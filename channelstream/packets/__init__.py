"""GATD packets on the hub: the packet channel, queries, and the NDJSON codec.

A packet is a JSON object (``profile_id``, ``address``, ``port``, ``time``,
sensor fields...). It travels as a hub message on the packet channel
(``packets.channel``) whose fields are the packet's scalar fields, so a query
``{"temperature": 70}`` is a hub filter; its body is the packet itself.
Packets are droppable: a client too slow for them loses the oldest, counted.

The packet channel keeps a time window of history (``packets.history_seconds``,
``packets.history_size``) indexed by the hub's receive time, so a query with
``"time": N`` gets exactly the packets received in the last N ms, then live.
Every door (AMQP and HTTP ingest, TCP streamer, socket.io) uses this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..hub import ChannelConfig, Filter, Hub, Message, Start
from ..serving.runtime import get_runtime
from ..strict_json import dumps, type_name

#: The reserved query key: start that many milliseconds in the past.
TIME_KEY = "time"

#: Most key/value pairs a query may hold.
MAX_QUERY_PAIRS = 64



class BadPacket(ValueError):
    """A packet that is not a JSON object of the accepted shape."""


class BadQuery(ValueError):
    """A query that is not an object of scalar key/value pairs."""


_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


class PacketMessage(Message):
    """A packet's message that may carry the packet's JSON text as received.

    ``line`` is that text as one NDJSON line, which :func:`ndjson` sends as it
    is instead of encoding the packet again (~8 us per packet here).
    """

    __slots__ = ("line",)  # set by packet_message when it has the line


def _one_line(raw: bytes) -> bytes | None:
    """``raw`` (a JSON text that decoded) as one NDJSON line, or None if it spans lines.

    JSON strings cannot hold a raw line break, so one in ``raw`` is
    whitespace between tokens: such a text is encoded again instead.
    """
    line = raw.strip(b" \t\r\n")
    if b"\n" in line or b"\r" in line:
        return None
    return line + b"\n"


def packet_message(
    channel: str, packet: Any, *, size: int = 0, raw: bytes | None = None
) -> Message:
    """The hub message carrying ``packet`` (its scalar fields are filterable).

    :param raw: the UTF-8 JSON text ``packet`` was decoded from (strictly:
        :mod:`channelstream.strict_json`), if the door has it: NDJSON clients
        then get that text (on one line) rather than the packet encoded again.
    :raises BadPacket: if ``packet`` is not a JSON object.
    """
    if not isinstance(packet, dict):
        raise BadPacket(f"a packet must be a JSON object, not {type_name(packet)}")
    scalar = _SCALAR_TYPES
    if all(type(value) in scalar for value in packet.values()):
        fields = packet  # flat, as most packets are: shared, not copied (read-only both)
    else:
        fields = {key: value for key, value in packet.items() if is_scalar(value)}
    line = _one_line(raw) if raw is not None else None
    message = PacketMessage(channel, packet, fields=fields, size=size)
    if line is not None:
        message.line = line
    return message


def ndjson(message: Message) -> bytes:
    """Codec: the packet as one line of newline-delimited JSON."""
    line = getattr(message, "line", None)
    if line is not None:
        return line
    return dumps(message.body) + b"\n"


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed GATD query: the filter, and where it starts."""

    filter: Filter
    start: Start


def parse_query(query: Any) -> Query:
    """``{"key": value, ..., "time": ms}`` into a filter and a start.

    :raises BadQuery: with a message naming the problem.
    """
    if not isinstance(query, dict):
        raise BadQuery(f"a query must be a JSON object, not {type_name(query)}")
    if len(query) > MAX_QUERY_PAIRS:
        raise BadQuery(f"a query may hold at most {MAX_QUERY_PAIRS} pairs")
    pairs = dict(query)
    start = Start.live()
    if TIME_KEY in pairs:
        ms = pairs.pop(TIME_KEY)
        if (
            isinstance(ms, bool)
            or not isinstance(ms, int | float)
            or not math.isfinite(ms)
            or ms < 0
        ):
            raise BadQuery('"time" must be a number of milliseconds >= 0')
        start = Start.ms_ago(int(ms))
    for key, value in pairs.items():
        if not is_scalar(value):
            raise BadQuery(f"the value of {key!r} must be a string, number, boolean or null")
    return Query(Filter(pairs), start)


def configure_packet_channel(
    hub: Hub, channel: str, history_size: int, history_seconds: float
) -> None:
    """Give the packet channel its time window; it is never collected."""
    hub.configure_channel(
        channel,
        ChannelConfig(history_size=history_size, history_seconds=history_seconds, persistent=True),
    )


def includeme(config) -> None:
    """Configure the packet channel of the runtime's hub from ``packets.*``."""

    runtime = get_runtime(config.registry)
    packets = runtime.settings.packets
    configure_packet_channel(
        runtime.hub, packets.channel, packets.history_size, packets.history_seconds
    )


__all__ = [
    "TIME_KEY",
    "BadPacket",
    "BadQuery",
    "PacketMessage",
    "Query",
    "configure_packet_channel",
    "includeme",
    "ndjson",
    "packet_message",
    "parse_query",
]
