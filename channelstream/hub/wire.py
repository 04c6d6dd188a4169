"""Messages as bytes, for engines that carry them between processes.

A shared engine (Redis) stores and forwards a message as one byte string
made here, and every process makes the same :class:`~.message.Message` of it.
The format is JSON (compact, UTF-8), one object::

    {"c": channel, "b": body, "f": fields, "k": kind, "t": type,
     "d": droppable, "a": audience, "x": excluded, "s": size, "m": time_ms,
     "w": wire class, "e": extra}

with a ``bytes`` body written as ``{"$bytes": "<base64>"}``. ``offset`` and
``epoch`` are not in it: the engine assigns them and sends them beside it.
A subclass of Message that carries more than its body (the raw parts of a
ZMQ message...) registers itself with :func:`register` under a short name
and gives ``wire_extra`` / ``from_wire``; what it carries goes in ``"e"``.
Pure functions of the standard library; no I/O.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from .message import Message

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_BYTES = "$bytes"

#: wire name -> rebuild(channel, body, options, extra) -> Message
_CLASSES: dict[str, Callable[..., Message]] = {}
#: Message subclass -> (wire name, extra(message) -> JSON value)
_NAMES: dict[type, tuple[str, Callable[[Message], Any]]] = {}


class WireError(ValueError):
    """Bytes that are not a message of this format."""


def register(
    cls: type,
    name: str,
    extra: Callable[[Message], Any],
    rebuild: Callable[..., Message],
) -> None:
    """Carry ``cls`` messages across processes as ``name``.

    :param extra: what a message of ``cls`` carries besides its body (JSON).
    :param rebuild: ``rebuild(channel, body, options, extra) -> Message``,
        where ``options`` are Message's keyword arguments.
    """
    _CLASSES[name] = rebuild
    _NAMES[cls] = (name, extra)


def pack(message: Message) -> bytes:
    """The bytes of ``message`` (its sequence stamp aside; see the module doc)."""
    body = message.body
    if isinstance(body, bytes | bytearray | memoryview):
        body = {_BYTES: base64.b64encode(bytes(body)).decode("ascii")}
    data: dict[str, Any] = {"c": message.channel, "b": body, "m": message.time_ms}
    if message.fields:
        data["f"] = dict(message.fields)
    if message.kind != "data":
        data["k"] = message.kind
    if message.type is not None:
        data["t"] = message.type
    if not message.droppable:
        data["d"] = False
    if message.audience is not None:
        data["a"] = sorted(message.audience)
    if message.excluded is not None:
        data["x"] = sorted(message.excluded)
    if message.size:
        data["s"] = message.size
    named = _NAMES.get(type(message))
    if named is not None:
        data["w"] = named[0]
        data["e"] = named[1](message)
    return _ENCODER.encode(data).encode()


def unpack(data: bytes | str) -> Message:
    """The message of :func:`pack`'s bytes (offset and epoch still to be set).

    :raises WireError: not bytes of this format.
    """
    try:
        raw = json.loads(data)
        channel = raw["c"]
        body = raw["b"]
    except (ValueError, KeyError, TypeError) as err:
        raise WireError(f"not a packed message: {err}") from None
    if isinstance(body, dict) and len(body) == 1 and _BYTES in body:
        body = base64.b64decode(body[_BYTES])
    options: dict[str, Any] = {
        "fields": raw.get("f"),
        "kind": raw.get("k", "data"),
        "type": raw.get("t"),
        "droppable": raw.get("d", True),
        "audience": frozenset(raw["a"]) if "a" in raw else None,
        "excluded": frozenset(raw["x"]) if "x" in raw else None,
        "size": raw.get("s", 0),
    }
    rebuild = _CLASSES.get(raw.get("w", ""))
    if rebuild is not None:
        message = rebuild(channel, body, options, raw.get("e"))
    else:
        message = Message(channel, body, **options)
    message.time_ms = raw.get("m", 0)
    return message


__all__ = ["WireError", "pack", "register", "unpack"]
