"""A packet's scalar fields as AMQP headers, so the broker can filter on any key.

GATD's formatter put only ``profile_id`` in the headers (ANCHORS.md), so a
streamer bound with ``x-match: all`` and ``{"temperature": 70}`` never got a
packet. Here every scalar field of the packet becomes a header with its
value, typed as the broker compares it:

======================  ==========================================
packet value            AMQP header value
======================  ==========================================
string                  long string (UTF-8)
true / false            boolean
integer                 integer (signed 32 or 64 bits)
integral number (70.0)  integer, so that a binding on 70 matches it
                        as the hub's filter does (JSON equality)
other number (21.5)     double
null                    void
======================  ==========================================

Left out (the packet body still carries them): objects and arrays, keys
that are not strings or longer than 255 bytes (AMQP field names are short
strings), integers beyond 64 bits, strings longer than
:data:`MAX_STRING_BYTES`, and fields past a total of :data:`MAX_HEADERS_BYTES`
(the content header must fit in one AMQP frame).

RabbitMQ compares a binding's value with a header's by type class (all
integer widths are one class) and value. A binding value of *void* matches
any value of that key (presence). Binding keys that start with ``x-`` are
ignored by the broker's ``x-match: all``.

pika 1.4 cannot encode a Python float in a field table, although AMQP 0-9-1
has doubles and pika decodes them: importing this module teaches pika's
encoder doubles (``d``), once, and only if it still lacks them, so that a
float header (or a binding argument) is sent as any other AMQP client would.
Before, every float raised ``UnsupportedAMQPFieldException``; nothing that
worked changes. (pika's decoder truncates doubles to integers, so a pika
consumer reads ``41`` in the header of ``41.5``; the broker compares the
double itself, and the body always holds the exact value.)
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping
from typing import Any

import pika.data
import pika.exceptions

#: Longest string value (UTF-8 bytes) sent as a header.
MAX_STRING_BYTES = 4096
#: Most bytes of encoded headers per packet (a frame is at least 4 KiB, 128 KiB by default).
MAX_HEADERS_BYTES = 64 * 1024

_MAX_KEY_BYTES = 255
_INT64 = 2**63
_SKIP = object()


def _header_value(value: Any) -> Any:
    """The AMQP header value for a packet value, or ``_SKIP``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else _SKIP
    if isinstance(value, float):
        if not math.isfinite(value):
            return _SKIP
        if value.is_integer() and -_INT64 <= value < _INT64:
            return int(value)
        return value
    if isinstance(value, str):
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate
            return _SKIP
        return value if size <= MAX_STRING_BYTES else _SKIP
    return _SKIP


def _encoded_size(key: str, value: Any) -> int:
    size = 1 + len(key.encode("utf-8"))
    if isinstance(value, str):
        return size + 5 + len(value.encode("utf-8"))
    if value is None:
        return size + 1
    if isinstance(value, bool):
        return size + 2
    return size + 9  # integers and doubles, at most


def packet_headers(packet: Mapping[str, Any]) -> dict[str, Any]:
    """The AMQP headers of ``packet``: its scalar fields (see the module doc)."""
    headers: dict[str, Any] = {}
    budget = MAX_HEADERS_BYTES
    for key, value in packet.items():
        if not isinstance(key, str):
            continue
        try:
            if len(key.encode("utf-8")) > _MAX_KEY_BYTES:
                continue
        except UnicodeEncodeError:
            continue
        header = _header_value(value)
        if header is _SKIP:
            continue
        size = _encoded_size(key, header)
        if size > budget:
            continue
        budget -= size
        headers[key] = header
    return headers


def _install_double_encoding() -> None:
    """Teach ``pika.data.encode_value`` AMQP doubles if it does not know them."""
    original: Callable[[list[bytes], Any], int] = pika.data.encode_value
    try:
        original([], 0.5)
    except pika.exceptions.UnsupportedAMQPFieldException:
        pass
    else:
        return  # this pika encodes floats already (or we did)

    def encode_value(pieces: list[bytes], value: Any) -> int:
        if isinstance(value, float):
            pieces.append(struct.pack(">cd", b"d", value))
            return 9
        return original(pieces, value)

    encode_value.__wrapped__ = original  # type: ignore[attr-defined]
    encode_value.__doc__ = original.__doc__
    pika.data.encode_value = encode_value


_install_double_encoding()

__all__ = ["MAX_HEADERS_BYTES", "MAX_STRING_BYTES", "packet_headers"]
