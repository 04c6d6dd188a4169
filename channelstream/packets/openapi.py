"""``POST /packets`` in ``/openapi.json`` (tag ``packets``). Pure data.

What :mod:`channelstream.packets.ingest` accepts: one JSON object, a JSON
array of objects, or NDJSON; admitted with a bearer token of
``packets.ingest_tokens`` or as a signed server API call.
"""

from __future__ import annotations

from typing import Any

from ..web.openapi import Fragment, error_response, json_content, obj, ref

TAG = {
    "name": "packets",
    "description": "GATD packets in over HTTP, for producers without AMQP; they reach "
    "socket.io `query` and TCP streamer clients like packets from RabbitMQ.",
}

SECURITY_SCHEMES: dict[str, Any] = {
    "packetsBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <token>` with one of `packets.ingest_tokens` "
        "(a token in the URL is refused).",
    }
}

_PACKET = {
    "type": "object",
    "description": "A packet: its scalar fields are what queries match.",
}

PATHS: dict[str, Any] = {
    "/packets": {
        "post": {
            "operationId": "ingestPackets",
            "tags": [TAG["name"]],
            "summary": "Publish packets on the packet channel, all or nothing.",
            "security": [{"packetsBearer": []}, {"signature": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": ref("PacketBody")},
                    "application/x-ndjson": {
                        "schema": {"type": "string", "description": "One packet per line."}
                    },
                },
            },
            "responses": {
                "202": {
                    "description": "Every packet was published (with `amqp.stream`: the "
                    "broker took them all).",
                    "content": json_content(
                        obj({"accepted": {"type": "integer", "minimum": 0}})
                    ),
                },
                "400": error_response(
                    "Not JSON, or a packet that is not an object of scalars (`index` or "
                    "`line` names it); nothing of the body was published."
                ),
                "401": error_response("No known bearer token, nor a valid signature."),
                "403": error_response("A signed call from an address not allowed."),
                "413": error_response(
                    "The body is over `packets.max_ingest_bytes`; or, with `amqp.stream`, a "
                    "packet (`index`) is over `amqp.max_body_size`."
                ),
                "503": error_response(
                    "With `amqp.stream`: the broker (named) cannot take the packets; none "
                    "was published."
                ),
            },
        }
    }
}


SCHEMAS: dict[str, Any] = {
    "PacketBody": {
        "oneOf": [_PACKET, {"type": "array", "items": _PACKET}],
        "description": "One packet, or an array of packets.",
    }
}


def fragment() -> Fragment:
    """The packet ingest's fragment."""
    return Fragment(TAG, PATHS, SCHEMAS, SECURITY_SCHEMES)


__all__ = ["PATHS", "TAG", "fragment"]
