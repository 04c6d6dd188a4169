"""ZMQ endpoints of ``zmq.sources`` and ``zmq.outputs``: parsed and checked once.

Each key is a JSON array of objects (values may span indented ini lines)::

    zmq.sources = [{"address": "tcp://detector:9999", "channel": "images"},
                   {"address": "tcp://*:9100", "channel": "spectra", "mode": "sub"}]
    zmq.outputs = [{"address": "tcp://*:9200", "channel": "images", "modulo": 10}]

Keys of an object (any other is refused, so that a typo stops startup):

``address``     required: ``tcp://host:port`` (``tcp://*:port`` binds on every
                interface) or ``ipc://path``
``channel``     required: the channelstream channel it feeds or serves (1-256 characters)
``conn_type``   ``connect`` or ``bind``; default as mflow's tools decide: ``bind`` for
                an address whose host is ``*``, ``connect`` otherwise
``mode``        sources ``pull`` (default) or ``sub``; outputs ``push`` (default) or ``pub``
``queue_size``  ZMQ high-water mark in messages (default 100); for an output also
                the bound of its hub outbox
``modulo``      outputs only: send one message in N (default 1: every one)
``name``        the name in ``/healthz`` (``zmq-source:<name>``) and in frames
                (``"user": "zmq:<name>"``); default the channel, then
                ``<channel>-2``, ``<channel>-3``... in ini order

:func:`zmq_endpoints` returns a tuple of :class:`ZmqEndpoint`, each with every
default filled in. Pure: no I/O, no zmq import.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from .parsers import Parser

SOURCE = "source"
OUTPUT = "output"

CONNECT = "connect"
BIND = "bind"

#: Modes by kind; the first is the default.
MODES = {SOURCE: ("pull", "sub"), OUTPUT: ("push", "pub")}
#: Keys an object may hold, by kind.
KEYS = {
    SOURCE: ("address", "channel", "conn_type", "mode", "queue_size", "name"),
    OUTPUT: ("address", "channel", "conn_type", "mode", "queue_size", "modulo", "name"),
}
DEFAULT_QUEUE_SIZE = 100
#: Largest queue_size accepted (messages; ZMQ and the hub outbox hold that many).
MAX_QUEUE_SIZE = 1_000_000
#: Longest channel name (as the server API accepts) and endpoint name.
MAX_CHANNEL = 256
MAX_NAME = 100

_BIND_RULE = re.compile(r"^[a-z]+://\*")
_TCP = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(\d+)$")
_IPC = re.compile(r"^ipc://\S+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclasses.dataclass(frozen=True)
class ZmqEndpoint(Mapping[str, Any]):
    """One validated entry of ``zmq.sources`` or ``zmq.outputs``.

    Also a read-only mapping of its fields (``entry["channel"]``), as the raw
    JSON objects were.
    """

    kind: str
    address: str
    channel: str
    conn_type: str
    mode: str
    queue_size: int
    name: str
    modulo: int = 1

    @property
    def binds(self) -> bool:
        return self.conn_type == BIND

    @property
    def door_name(self) -> str:
        """``zmq-source:<name>`` or ``zmq-output:<name>``."""
        return f"zmq-{self.kind}:{self.name}"

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_FIELDS)

    def __len__(self) -> int:
        return len(_FIELDS)


_FIELDS = tuple(f.name for f in dataclasses.fields(ZmqEndpoint))


def conn_type_for(address: str) -> str:
    """``bind`` for ``tcp://*:port`` (any ``scheme://*``), ``connect`` otherwise (mflow's rule)."""
    return BIND if _BIND_RULE.match(address) else CONNECT


def check_address(address: Any, conn_type: str | None = None) -> str:
    """``address`` if it is a ``tcp://host:port`` or ``ipc://path`` ZMQ can use.

    :raises ValueError: saying what is wrong.
    """
    if not isinstance(address, str) or not address:
        raise ValueError("needs an 'address' string such as tcp://host:9999 or tcp://*:9999")
    tcp = _TCP.match(address)
    if tcp:
        port = int(tcp.group(2))
        if not 1 <= port <= 65535:
            raise ValueError(f"address {address!r}: port must be 1-65535")
        if tcp.group(1) == "*" and conn_type == CONNECT:
            raise ValueError(f"address {address!r}: a '*' host can only bind")
        return address
    if _IPC.match(address):
        return address
    raise ValueError(
        f"address {address!r}: expected tcp://host:port, tcp://*:port or ipc://path"
    )


def _int(item: Mapping[str, Any], key: str, default: int, minimum: int, maximum: int) -> int:
    value = item.get(key, default)
    if type(value) is not int or not minimum <= value <= maximum:
        raise ValueError(f"{key!r} must be an integer {minimum}-{maximum:,}, got {value!r}")
    return value


def _string(item: Mapping[str, Any], key: str, limit: int) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError(f"needs a {key!r} string of 1-{limit} characters, got {value!r}")
    if _CONTROL.search(value):
        raise ValueError(f"{key!r} holds a control character: {value!r}")
    return value


def _endpoint(kind: str, item: Any) -> tuple[dict[str, Any], str | None]:
    """The fields of one object (but its name) and its explicit name, or None."""
    if not isinstance(item, dict):
        raise ValueError("must be a JSON object")
    article = "a source" if kind == SOURCE else "an output"
    unknown = sorted(set(item) - set(KEYS[kind]))
    if unknown:
        raise ValueError(
            f"unknown key {', '.join(map(repr, unknown))} ({article} takes "
            f"{', '.join(KEYS[kind])})"
        )
    conn_type = item.get("conn_type")
    if conn_type is not None and conn_type not in (CONNECT, BIND):
        raise ValueError(f"'conn_type' must be connect or bind, got {conn_type!r}")
    address = check_address(item.get("address"), conn_type)
    if conn_type is None:
        conn_type = conn_type_for(address)
    modes = MODES[kind]
    mode = item.get("mode", modes[0])
    if not isinstance(mode, str) or mode.lower() not in modes:
        raise ValueError(f"'mode' of {article} must be {' or '.join(modes)}, got {mode!r}")
    fields = {
        "kind": kind,
        "address": address,
        "channel": _string(item, "channel", MAX_CHANNEL),
        "conn_type": conn_type,
        "mode": mode.lower(),
        "queue_size": _int(item, "queue_size", DEFAULT_QUEUE_SIZE, 1, MAX_QUEUE_SIZE),
    }
    if kind == OUTPUT:
        fields["modulo"] = _int(item, "modulo", 1, 1, 2**31 - 1)
    name = _string(item, "name", MAX_NAME) if "name" in item else None
    return fields, name


def parse_endpoints(kind: str, value: Any) -> tuple[ZmqEndpoint, ...]:
    """The endpoints of a decoded JSON array; raises ValueError naming the item."""
    if not isinstance(value, list):
        raise ValueError("expected a JSON array of objects")
    parsed: list[tuple[dict[str, Any], str | None]] = []
    names: dict[str, int] = {}
    for index, item in enumerate(value):
        try:
            fields, name = _endpoint(kind, item)
        except ValueError as err:
            raise ValueError(f"item {index}: {err}") from None
        if name is not None:
            if name in names:
                raise ValueError(f"item {index}: name {name!r} is also item {names[name]}'s")
            names[name] = index
        parsed.append((fields, name))
    result = []
    for index, (fields, name) in enumerate(parsed):
        if name is None:  # derived: the channel, then <channel>-2, -3...
            name, n = fields["channel"][:MAX_NAME], 1
            while name in names:
                n += 1
                name = f"{fields['channel'][: MAX_NAME - 8]}-{n}"
            names[name] = index
        result.append(ZmqEndpoint(name=name, **fields))
    return tuple(result)


def zmq_endpoints(kind: str) -> Parser:
    """A parser of ``zmq.sources`` (``kind`` :data:`SOURCE`) or ``zmq.outputs``
    (:data:`OUTPUT`): empty text is no endpoint."""

    def parse_zmq_endpoints(raw: str) -> tuple[ZmqEndpoint, ...]:
        text = raw.strip()
        if not text:
            return ()
        try:
            value = json.loads(text)
        except ValueError as err:
            raise ValueError(f"expected a JSON array of objects: {err}") from None
        return parse_endpoints(kind, value)

    return parse_zmq_endpoints


def bind_conflict(*groups: tuple[str, tuple[ZmqEndpoint, ...]]) -> tuple[str, str] | None:
    """The first ``(key, message)`` where an address is bound twice, over every group
    (``("zmq.sources", sources), ("zmq.outputs", outputs)``); None if there is none."""
    seen: dict[str, str] = {}
    for key, endpoints in groups:
        for index, endpoint in enumerate(endpoints):
            if not endpoint.binds:
                continue
            where = f"{key} item {index}"
            if endpoint.address in seen:
                return key, (
                    f"item {index}: {endpoint.address} is bound by {seen[endpoint.address]} too"
                )
            seen[endpoint.address] = where
    return None


__all__ = [
    "BIND",
    "CONNECT",
    "OUTPUT",
    "SOURCE",
    "ZmqEndpoint",
    "bind_conflict",
    "check_address",
    "conn_type_for",
    "parse_endpoints",
    "zmq_endpoints",
]
