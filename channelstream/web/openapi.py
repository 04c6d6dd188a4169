"""OpenAPI fragments: each HTTP door describes its own routes; one document joins them.

A door's ``includeme`` registers a :class:`Fragment` (its tag, paths,
component schemas and security schemes) with :func:`add_fragment`; the
``/openapi.json`` feature (:mod:`channelstream.ops.openapi`, included after
every door) joins the fragments of the doors that are on with
:func:`assemble`. A fragment is pure data built once at startup; two
fragments that give one schema or path different contents are a startup
error, never a silently wrong document.

Shared pieces every fragment may use: the ``Error`` schema
(:data:`ERROR_SCHEMA`, what :mod:`.errorviews` answers), :func:`ref`,
:func:`obj`, :func:`json_content` and :func:`error_response`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

OPENAPI_VERSION = "3.1.0"

#: Registry key of the fragments registered so far (a list, in include order).
FRAGMENTS_KEY = "channelstream.openapi.fragments"

_REF = "#/components/schemas/{model}"

#: Every error answer of the app (:mod:`channelstream.web.errorviews`).
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "what went wrong, for people"},
        "code": {"type": "string", "description": "a stable name: bad_request..."},
        "field": {"type": "string", "description": "the field at fault"},
        "errors": {
            "type": "array",
            "description": "every invalid field (422)",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                "required": ["field", "message"],
            },
        },
        "reason": {
            "type": "string",
            "description": "why credentials were refused (401): missing, malformed, "
            "expired, bad_signature, replayed...",
        },
    },
    "required": ["error", "code"],
    "description": "Every error answer.",
}


#: Small schemas fragments share: a list of strings, any object, a JSON scalar,
#: and a state (scalar values by key, as users' states are).
STRINGS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
OBJECT: dict[str, Any] = {"type": "object"}
SCALAR: dict[str, Any] = {"type": ["string", "number", "integer", "boolean", "null"]}
STATE: dict[str, Any] = {"type": "object", "additionalProperties": SCALAR}


@dataclasses.dataclass(frozen=True)
class Fragment:
    """What one door adds to the document.

    :param tag: ``{"name": ..., "description": ...}``; every operation of the
        fragment should carry the tag's name.
    :param paths: OpenAPI path items by path.
    :param schemas: component schemas by name (referenced as
        ``#/components/schemas/<name>``).
    :param security_schemes: component security schemes by name.
    """

    tag: Mapping[str, str]
    paths: Mapping[str, Any]
    schemas: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    security_schemes: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": _REF.format(model=name)}


def obj(properties: dict[str, Any], *, optional: Iterable[str] = ()) -> dict[str, Any]:
    """An object with ``properties``, all required but ``optional``; other keys allowed."""
    skipped = set(optional)
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in skipped],
    }


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    """A ``content`` map holding ``schema`` as ``application/json``."""
    return {"application/json": {"schema": schema}}


def error_response(description: str) -> dict[str, Any]:
    """An error answer: ``description`` and the shared ``Error`` schema."""
    return {"description": description, "content": json_content(ref("Error"))}


def add_fragment(registry: Any, fragment: Fragment) -> None:
    """Register a door's fragment (from its ``includeme``)."""
    registry.setdefault(FRAGMENTS_KEY, []).append(fragment)


def fragments(registry: Any) -> list[Fragment]:
    """The fragments registered so far, in include order."""
    return list(registry.get(FRAGMENTS_KEY, ()))


def assemble(
    parts: Iterable[Fragment],
    *,
    info: Mapping[str, Any],
    security: list[dict[str, list[str]]] | None = None,
) -> dict[str, Any]:
    """Join ``parts`` into one OpenAPI 3.1 document.

    Schemas and security schemes are merged by name, paths by path and
    method; the same name or operation with two different contents raises
    :class:`ValueError` naming it. Components come out sorted by name; the
    ``Error`` schema is always there.
    """
    tags: list[dict[str, str]] = []
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": copy.deepcopy(ERROR_SCHEMA)}
    schemes: dict[str, Any] = {}
    for part in parts:
        if dict(part.tag) not in tags:
            tags.append(dict(part.tag))
        for path, item in part.paths.items():
            merged = paths.setdefault(path, {})
            for key, value in item.items():
                _merge_one(merged, key, value, f"path {path} {key}")
        for name, schema in part.schemas.items():
            _merge_one(schemas, name, schema, f"schema {name!r}")
        for name, scheme in part.security_schemes.items():
            _merge_one(schemes, name, scheme, f"security scheme {name!r}")
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": dict(info),
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": dict(sorted(schemes.items())),
        },
    }
    if security is not None:
        document["security"] = security
    return document


def _merge_one(into: dict[str, Any], key: str, value: Any, what: str) -> None:
    known = into.get(key)
    if known is not None and known != value:
        raise ValueError(f"two OpenAPI fragments describe {what} differently")
    into[key] = copy.deepcopy(value)


__all__ = [
    "ERROR_SCHEMA",
    "OBJECT",
    "SCALAR",
    "STATE",
    "STRINGS",
    "FRAGMENTS_KEY",
    "OPENAPI_VERSION",
    "Fragment",
    "add_fragment",
    "assemble",
    "error_response",
    "fragments",
    "json_content",
    "obj",
    "ref",
]
