"""Where ``POST /packets`` sends the packets it accepted: the hub, or a broker.

By default the packets go to the packet channel of this process's hub, so
only this process's clients get them. A door that carries packets between
processes sets another sink in its ``includeme`` (:func:`set_sink`): with
``amqp.stream`` the AMQP door publishes them into the streamer exchange, so
they reach the stream that every process reads (and any other streamer
bound to the exchange), each process's window included.

A sink takes every packet of one request at once, all or nothing: when
``publish`` returns, all are taken; when it raises, none was (or, only when
the broker's connection broke during its commit, the error says it may have
taken them). It raises the HTTP-mapped errors of :mod:`channelstream.errors`:

- :class:`PacketTooLarge` (413) naming the first packet a consumer would
  drop as too large;
- :class:`~channelstream.errors.Unavailable` (503) naming the broker and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..errors import PayloadTooLarge

#: Registry key of the sink (absent: the hub).
SINK_KEY = "channelstream.packet_sink"


class PacketSink(Protocol):
    """Takes the packets of one ``POST /packets``; see the module doc."""

    #: What the sink is, for messages: ``"stream gatd_packets at amqp://guest:***@host/"``.
    name: str

    def publish(self, packets: Sequence[dict[str, Any]]) -> None:
        """Publish ``packets`` all or nothing (blocks the calling greenlet only)."""


class PacketTooLarge(PayloadTooLarge):
    """A packet larger than its consumers take: 413 naming it by ``index``, its
    position among the body's packets (from 0: an array's index, or the
    NDJSON body's n-th packet)."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message, field="body")
        self.index = index

    def as_dict(self) -> dict[str, Any]:
        body = super().as_dict()
        body["index"] = self.index
        return body


def set_sink(registry: Any, sink: PacketSink) -> None:
    """Make ``POST /packets`` publish through ``sink`` (a door's ``includeme`` calls it)."""
    registry[SINK_KEY] = sink


def get_sink(registry: Mapping[str, Any]) -> PacketSink | None:
    """The sink set by a door, or None (the hub's packet channel)."""
    return registry.get(SINK_KEY)


__all__ = ["SINK_KEY", "PacketSink", "PacketTooLarge", "get_sink", "set_sink"]
