"""``POST /packets``: HTTP ingest of GATD packets, for producers without AMQP.

The body is one of:

- one JSON object: one packet;
- a JSON array of objects: one packet each;
- NDJSON, one object per line: sent as ``Content-Type: application/x-ndjson``
  (or ``application/ndjson``, ``application/jsonl``), or detected when a
  body of several lines is not one JSON document but its first line is.

A request is admitted with ``Authorization: Bearer <token>`` naming one of
``packets.ingest_tokens`` (compared in constant time; a token is never
taken from the URL, and a ``token``/``access_token`` query parameter is
refused), or else as a signed server API call (``auth="api"`` rules of
:mod:`channelstream.security.gate`: ``allow_posting_from`` and a signature with
``secret``). A Bearer header decides alone: a wrong token is a 401 even if
the request is also signed.

The body is read at most ``packets.max_ingest_bytes`` bytes (413 from
``Content-Length`` before reading, or as soon as a chunked body passes it),
for both kinds of caller, and only after the credentials' cheap checks.

All or nothing: every packet is decoded and checked (strict JSON, see
:mod:`channelstream.strict_json`) before any is published, so a 400 means
nothing of that body was published. Answers: ``202 {"accepted": N}``;
``400`` naming the array index (``"index": i``) or NDJSON line (``"line": n``,
from 1) at fault; ``401``; ``403`` (a signed call from an address not
allowed); ``413``.

Where the packets go: the packet channel of this process's hub, unless a
door set a sink (:mod:`.sink`): with ``amqp.stream`` they are published into
the streamer exchange in one transaction, so that every process gets them
from the stream; ``202`` then means the broker took them all, ``503``
(naming the broker) that it took none, ``413`` (``"index": i``) that a
packet is larger than ``amqp.max_body_size``.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from .. import strict_json
from ..errors import BadRequest, Unauthorized
from ..security import signing
from ..security.gate import require_api
from ..security.tokens import bearer_token, token_in_url, token_matches
from ..serving.runtime import get_runtime
from ..settings import Settings
from ..web.bodies import read_body
from ..web.openapi import add_fragment
from ..web.responses import json_response
from . import openapi, packet_message
from .sink import get_sink

#: Route path of the ingest.
INGEST_PATH = "/packets"

#: Content types that announce NDJSON.
NDJSON_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)

#: Packets published between two yields to the event loop, so that the
#: subscribers' writers drain a large body as it is published instead of
#: finding it all queued at once (and dropping the oldest past their bound).
PUBLISH_YIELD_EVERY = 100


class BadPacketItem(BadRequest):
    """A packet of the body is not a JSON object: 400 naming where it is.

    :param where: ``{"index": i}`` (array) or ``{"line": n}`` (NDJSON).
    """

    def __init__(self, message: str, where: dict[str, int]) -> None:
        super().__init__(message, field="body")
        self.where = where

    def as_dict(self) -> dict[str, Any]:
        body = super().as_dict()
        body.update(self.where)
        return body


# -- admission --------------------------------------------------------------------------


def admit(request: Request, settings: Settings) -> str:
    """Admit the caller and read the body (bounded); return ``"token"`` or ``"signature"``.

    :raises Unauthorized: a bad or missing credential (401).
    :raises Forbidden: a signed call from an address not allowed (403).
    :raises PayloadTooLarge: a body over ``packets.max_ingest_bytes`` (413).
    """
    limit = settings.packets.max_ingest_bytes
    name = token_in_url(request)
    if name is not None:
        raise Unauthorized(
            f"a token in the URL ({name}=) is never accepted (URLs end up in logs); "
            "send Authorization: Bearer <token>"
        )
    scheme = request.headers.get("Authorization", "").strip().partition(" ")[0]
    if scheme.lower() == "bearer":
        if not settings.packets.ingest_tokens:
            raise Unauthorized(
                "bearer tokens are not accepted here (packets.ingest_tokens is empty); "
                "sign the request instead"
            )
        if not token_matches(bearer_token(request) or "", settings.packets.ingest_tokens):
            raise Unauthorized("unknown bearer token")
        read_body(request, limit)
        return "token"
    header = request.headers.get(signing.SIGNATURE_HEADER)
    if header is not None:
        # Format and time first, as require_api does: nothing is read for a
        # malformed or stale signature. Then the body under the ingest bound
        # (require_api alone would apply max_body_size), then the full check.
        signing.check_fresh(signing.parse_header(header).t, settings.signature_window, time.time())
        read_body(request, limit)
    require_api(request)
    return "signature"


# -- body forms ---------------------------------------------------------------------------


def parse_packets(body: bytes, content_type: str) -> list[dict[str, Any]]:
    """The packets of a body in any accepted form; raise 400 naming the item at fault."""
    if not body.strip():
        raise BadRequest(
            "the body is empty; send a JSON object, an array of objects, or NDJSON",
            field="body",
        )
    if content_type in NDJSON_TYPES:
        return _ndjson(body)
    try:
        data = strict_json.loads(body)
    except ValueError as err:
        if _looks_like_ndjson(body):
            return _ndjson(body)
        raise BadRequest(f"the body is not valid JSON: {err}", field="body") from None
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                raise BadPacketItem(
                    f"item {index} of the array is not a JSON object "
                    f"(it is {strict_json.type_name(item)})",
                    {"index": index},
                )
        return data
    raise BadRequest(
        "the body must be a JSON object, an array of objects, or NDJSON; "
        f"it is {strict_json.type_name(data)}",
        field="body",
    )


def _lines(body: bytes) -> list[tuple[int, bytes]]:
    """Non-blank lines with their 1-based numbers."""
    return [(number, line) for number, line in enumerate(body.split(b"\n"), 1) if line.strip()]


def _looks_like_ndjson(body: bytes) -> bool:
    lines = _lines(body)
    if len(lines) < 2:
        return False
    try:
        strict_json.loads(lines[0][1])
    except ValueError:
        return False
    return True


def _ndjson(body: bytes) -> list[dict[str, Any]]:
    packets = []
    for number, line in _lines(body):
        try:
            packet = strict_json.loads_utf8(line)
        except ValueError as err:  # UnicodeDecodeError included
            raise BadPacketItem(
                f"line {number} is not valid JSON: {err}", {"line": number}
            ) from None
        if not isinstance(packet, dict):
            raise BadPacketItem(
                f"line {number} is not a JSON object (it is {strict_json.type_name(packet)})",
                {"line": number},
            )
        packets.append(packet)
    return packets


# -- the view --------------------------------------------------------------------------------


def ingest(request: Request) -> Response:
    """Publish the body's packets (to the packet channel, or the sink); 202 ``{"accepted": N}``."""
    runtime = get_runtime(request.registry)
    settings = runtime.settings
    admit(request, settings)
    packets = parse_packets(request.body, (request.content_type or "").lower())
    sink = get_sink(request.registry)
    if sink is not None:
        sink.publish(packets)
        return json_response({"accepted": len(packets)}, 202)
    channel = settings.packets.channel
    hub = runtime.hub
    for start in range(0, len(packets), PUBLISH_YIELD_EVERY):
        if start:
            gevent.sleep(0)
        hub.publish_many(
            [packet_message(channel, p) for p in packets[start : start + PUBLISH_YIELD_EVERY]]
        )
    return json_response({"accepted": len(packets)}, 202)


def includeme(config: Configurator) -> None:
    """Add ``POST /packets`` and its OpenAPI fragment."""
    add_fragment(config.registry, openapi.fragment())
    config.add_route("packets_ingest", INGEST_PATH)
    config.add_view(ingest, route_name="packets_ingest", request_method="POST")
