"""loom in /openapi.json: every loom route described, and live answers that match it.

The schemathesis run of tests/ops/test_openapi.py fuzzes these routes too (but
the endless ``/spy``); here each answer a client meets is checked on purpose.
"""

from __future__ import annotations

import re

import jsonschema
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from webob import Request

from channelstream.settings import default_settings
from channelstream.wsgi_app import build_app
from loom import get_door
from tests.support.api import openapi_document

DOCUMENT = openapi_document()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def loom_routes(app) -> set[tuple[str, str]]:
    """``(OpenAPI path, method)`` of every loom view the app registered."""
    introspector = app.registry.introspector
    patterns = {
        item["introspectable"]["name"]: item["introspectable"]["pattern"]
        for item in introspector.get_category("routes")
    }
    found = set()
    for item in introspector.get_category("views"):
        view = item["introspectable"]
        route = view["route_name"]
        if route and route.startswith("loom_"):
            path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", patterns[route])
            methods = view["request_methods"]
            for method in (methods,) if isinstance(methods, str) else methods:
                found.add((path, method.lower()))
    return found


def test_every_loom_route_and_method_is_in_the_document():
    routes = loom_routes(build_app(default_settings()))
    assert len(routes) == 7
    for path, method in routes:
        operation = DOCUMENT["paths"][path][method]
        assert operation["tags"] == ["loom"], (path, method)


def test_loom_errors_are_the_shared_error_and_the_bearer_is_optional():
    assert DOCUMENT["components"]["securitySchemes"]["loomBearer"]["scheme"] == "bearer"
    for path in ("/stream", "/stream/{id}", "/streams", "/streams/{id}", "/spy"):
        for method, operation in DOCUMENT["paths"][path].items():
            if method == "parameters":
                continue
            assert operation["security"] == [{"loomBearer": []}, {}], (path, method)
            errors = {s: a for s, a in operation["responses"].items() if s >= "400"}
            assert "401" in errors and "503" in errors, (path, method)
            for answer in errors.values():
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}


def call(method: str, path: str, base_url: str, **fields):
    """Send one documented request; check its answer against the document.

    The answer is schemathesis's: ``headers`` has lower-case names and list values.
    """
    case = SCHEMA[path][method].Case(**fields)
    response = case.call(base_url=base_url, timeout=10)
    case.validate_response(response, checks=CHECKS)
    return response


def header(response, name: str) -> str:
    return response.headers[name.lower()][0]


def test_the_live_loom_answers_match_the_document(loom_server):
    url = loom_server.url
    named = {"path_parameters": {"id": "doc.1"}}
    meta = {"X-Stream-Metadata": '{"job": 7}'}
    created = call("POST", "/stream/{id}", url, **named, headers=meta, body=b"hello")
    assert created.status_code == 201 and header(created, "X-Stream-Id") == "doc.1"
    assert call("POST", "/stream/{id}", url, **named, body=b"x").status_code == 409
    replaced = call(
        "POST", "/stream/{id}", url, **named, query={"force": "true"}, headers=meta, body=b"hi"
    )
    assert header(replaced, "x-stream-replaced") == "true"
    fresh = call("POST", "/stream", url, body=b"anonymous")
    assert header(fresh, "X-Stream-Id").startswith("loom-")
    got = call("GET", "/stream/{id}", url, **named)
    assert got.content == b"hi" and header(got, "X-Stream-State") == "finished"
    assert call("GET", "/stream/{id}", url, **named, query={"notail": ""}).content == b"hi"
    info = call("GET", "/streams/{id}", url, **named).json()
    assert info["metadata"] == {"job": 7} and info["size"] == 2
    assert "doc.1" in {s["id"] for s in call("GET", "/streams", url).json()["streams"]}
    assert call("DELETE", "/stream/{id}", url, **named).json()["deleted"] is True
    assert call("GET", "/stream/{id}", url, **named).status_code == 404
    assert call("GET", "/streams/{id}", url, path_parameters={"id": ".x"}).status_code == 400
    bad_meta = call("POST", "/stream/{id}", url, **named, headers={"X-Stream-Metadata": "{"})
    assert bad_meta.status_code == 400


def test_the_spy_answers_the_documented_text_stream(loom_server):
    documented = DOCUMENT["paths"]["/spy"]["get"]["responses"]["200"]["content"]
    with requests.get(f"{loom_server.url}/spy?color", stream=True, timeout=10) as answer:
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].split(";")[0] in documented


def test_a_refused_token_is_the_documented_401(tmp_path):
    settings = default_settings({"loom.storage_dir": str(tmp_path), "loom.tokens": "s3cret"})
    app = build_app(settings)
    door = get_door(app.registry)
    door.open()
    try:
        answer = Request.blank("/streams").get_response(app)
    finally:
        door.close()
    documented = DOCUMENT["paths"]["/streams"]["get"]["responses"]["401"]
    assert answer.status_int == 401
    assert (
        answer.headers["WWW-Authenticate"]
        == (documented["headers"]["WWW-Authenticate"]["schema"]["const"])
    )
    error = {**DOCUMENT["components"]["schemas"]["Error"]}
    jsonschema.validate(answer.json, error)
    assert answer.json["code"] == "unauthorized"
