"""GATD packets on the hub: the packet channel, queries, and the NDJSON codec.

A packet is a JSON object (``profile_id``, ``address``, ``port``, ``time``,
sensor fields...). It travels as a hub message on the packet channel
(``packets.channel``) whose fields are the packet's scalar fields, so a query
``{"temperature": 70}`` is a hub filter; its body is the packet itself.
Packets are droppable: a client too slow for them loses the oldest, counted.

The packet channel keeps a time window of history (``packets.history_seconds``,
``packets.history_size``) indexed by the hub's receive time, so a query with
``"time": N`` gets exactly the packets received in the last N ms, then live.
Two more reserved keys act on that window: ``"_history_only": true`` sends
it and ends, ``"_speedup": x`` replays it at its original pace divided by x
(:func:`parse_query`; :mod:`.replay` serves them). Every door (AMQP and HTTP
ingest, TCP streamer, socket.io) uses this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..hub import ChannelConfig, Filter, Hub, Message, Start
from ..serving.runtime import get_runtime
from ..strict_json import dumps, type_name

#: Reserved query key: start that many milliseconds in the past (GATD's own name).
TIME_KEY = "time"
#: Reserved query key: replay the window paced, its gaps divided by this (GATD's replay streamer).
SPEEDUP_KEY = "_speedup"
#: Reserved query key: ``true`` sends the window only, then the stream ends.
HISTORY_ONLY_KEY = "_history_only"
#: The keys a query uses for itself: never filter pairs.
RESERVED_KEYS = (TIME_KEY, SPEEDUP_KEY, HISTORY_ONLY_KEY)

#: Most key/value pairs a query may hold (reserved keys included).
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
    """A parsed GATD query: the filter, where it starts, and how the window is sent.

    :param filter: the pairs every packet must match (reserved keys excluded).
    :param start: ``Start.live()``, or ``Start.ms_ago(time)``.
    :param history_only: send the window (``time`` ms back to the query's
        arrival), then end the stream; no live packets.
    :param speedup: replay the window paced: each packet follows the one
        before it after their original gap (the hub's receive times) divided
        by ``speedup``; None sends the window at once.

    :func:`channelstream.packets.replay.serve_query` serves any query; a
    :attr:`plain` one is just ``hub.subscribe(outbox, channel, start=..., filter=...)``.
    """

    filter: Filter
    start: Start
    history_only: bool = False
    speedup: float | None = None

    @property
    def plain(self) -> bool:
        """Neither history-only nor paced: the window at once, then live."""
        return not self.history_only and self.speedup is None


def parse_query(query: Any) -> Query:
    """``{"key": value, ..., "time": ms, "_speedup": x, "_history_only": b}`` into a Query.

    The reserved keys (:data:`RESERVED_KEYS`) are taken out; every other pair
    is a filter pair and must have a scalar value. ``time``: a number of
    milliseconds >= 0. ``_speedup``: a number > 0 (1 is the original pace).
    ``_history_only``: ``true`` or ``false``. Both of the latter need ``time``
    (the window they act on).

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
        if not _is_number(ms) or ms < 0:
            raise BadQuery(f'"{TIME_KEY}" must be a number of milliseconds >= 0')
        start = Start.ms_ago(int(ms))
    speedup = None
    if SPEEDUP_KEY in pairs:
        speedup = pairs.pop(SPEEDUP_KEY)
        if not _is_number(speedup) or speedup <= 0:
            raise BadQuery(
                f'"{SPEEDUP_KEY}" must be a number > 0 (the replay\'s speed-up, 1 = original pace)'
            )
        speedup = float(speedup)
    history_only = pairs.pop(HISTORY_ONLY_KEY, False)
    if not isinstance(history_only, bool):
        raise BadQuery(f'"{HISTORY_ONLY_KEY}" must be true or false')
    for key in (SPEEDUP_KEY, HISTORY_ONLY_KEY):
        if key in query and query[key] is not False and TIME_KEY not in query:
            raise BadQuery(f'"{key}" needs "{TIME_KEY}": the window (ms back) it applies to')
    for key, value in pairs.items():
        if not is_scalar(value):
            raise BadQuery(f"the value of {key!r} must be a string, number, boolean or null")
    return Query(Filter(pairs), start, history_only=history_only, speedup=speedup)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def configure_packet_channel(
    hub: Hub, channel: str, history_size: int, history_seconds: float
) -> None:
    """Give the packet channel its time window; it is never collected, and it
    stays in this process with a shared engine (packets reach every process)."""
    hub.configure_channel(
        channel,
        ChannelConfig(
            history_size=history_size,
            history_seconds=history_seconds,
            persistent=True,
            local=True,
        ),
    )


def includeme(config) -> None:
    """Configure the packet channel of the runtime's hub from ``packets.*``."""

    runtime = get_runtime(config.registry)
    packets = runtime.settings.packets
    configure_packet_channel(
        runtime.hub, packets.channel, packets.history_size, packets.history_seconds
    )


__all__ = [
    "HISTORY_ONLY_KEY",
    "RESERVED_KEYS",
    "SPEEDUP_KEY",
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
