"""/openapi.json: a valid document of every API route, and the live API honours it.

The schemathesis run generates requests from the document (valid ones and,
in negative mode, invalid ones), signs each over the exact bytes it sends,
and checks that the server never answers 5xx and that every answer is one
the document describes (status, content type, JSON schema). The run covers
loom's routes too (the server serves them, open: no ``loom.tokens``) but
for the endless ``/spy``.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from webob import Request

from channelstream.ops.admin import ADMIN_JSON_PATH, ADMIN_PATH
from channelstream.ops.metrics import METRICS_PATH
from channelstream.ops.openapi import OPENAPI_KEY, build_document
from channelstream.rest import openapi as rest_openapi
from channelstream.rest.openapi import API_OPERATIONS
from channelstream.rest.views import ROUTES
from channelstream.security.signing import SIGNATURE_HEADER, sign
from channelstream.settings import default_settings
from channelstream.wsgi_app import build_app
from tests.support.api import ADMIN_SECRET, SECRET, openapi_document

pytestmark = pytest.mark.timeout(60)

ADMIN_PATHS = frozenset((ADMIN_JSON_PATH, ADMIN_PATH, METRICS_PATH))
#: Examples per operation, for each generation phase.
MAX_EXAMPLES = int(os.environ.get("CHANNELSTREAM_FUZZ_EXAMPLES", "40"))


def test_openapi_json_is_a_valid_document_of_every_api_route(api_server):
    answer = requests.get(api_server.url + "/openapi.json", timeout=10)  # no credentials
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    document = answer.json()
    validate(document)
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    for _name, path, _view, methods in ROUTES:
        assert {m.lower() for m in methods} <= set(paths[path]), path
    assert {"post", "patch", "delete"} <= set(paths["/message"])
    assert {ADMIN_JSON_PATH, ADMIN_PATH, METRICS_PATH, "/healthz"} <= set(paths)
    assert {"/stream", "/stream/{id}", "/streams", "/streams/{id}", "/spy"} <= set(paths)
    for path, operations in paths.items():
        for method, operation in operations.items():
            if method == "parameters" or {"loom", "client transports"} & set(operation["tags"]):
                # loom's byte streams and bearer tokens: tests/loom/test_openapi.py;
                # the conn_id transports: tests/transports/test_openapi.py
                continue
            body = operation.get("requestBody")
            if body is not None:
                ref = body["content"]["application/json"]["schema"]["$ref"]
                assert (
                    ref.removeprefix("#/components/schemas/") in document["components"]["schemas"]
                )
            for status in ("400", "401", "403", "413"):
                if path != "/healthz":
                    error = operation["responses"][status]["content"]["application/json"]
                    assert error["schema"] == {"$ref": "#/components/schemas/Error"}


def test_the_live_document_is_the_one_built_here(api_server):
    served = requests.get(api_server.url + "/openapi.json", timeout=10).json()
    assert served == openapi_document()


def test_the_document_says_how_to_sign(api_server):
    document = requests.get(api_server.url + "/openapi.json", timeout=10).json()
    scheme = document["components"]["securitySchemes"]["signature"]
    assert scheme["type"] == "apiKey" and scheme["in"] == "header"
    assert scheme["name"] == SIGNATURE_HEADER
    assert "t=<unix seconds>,n=<nonce>,v1=<hex>" in scheme["description"]
    assert (
        '"<t>\\n<n>\\n<METHOD>\\n<path with query string>\\n<sha256 hex of the body>"'
        in scheme["description"]
    )
    assert document["security"] == [{"signature": []}]
    assert document["paths"]["/healthz"]["get"]["security"] == []


def test_every_api_route_is_described():
    assert {name for name, *_ in ROUTES} <= set(API_OPERATIONS)


def test_a_route_not_described_yet_is_still_listed():
    document = build_document([rest_openapi.fragment([("shiny", "/shiny", None, ("POST",))])])
    operation = document["paths"]["/shiny"]["post"]
    assert operation["summary"] == "(not described yet)"
    validate(document)


def test_request_bodies_come_from_the_pydantic_models():
    schemas = openapi_document()["components"]["schemas"]
    connect = schemas["ConnectBody"]
    assert connect["required"] == ["username"]
    assert connect["properties"]["username"]["maxLength"] == 512
    assert connect["properties"]["channel_configs"]["additionalProperties"] == {
        "$ref": "#/components/schemas/ChannelConfigBody"
    }
    assert schemas["MessageList"]["items"] == {"$ref": "#/components/schemas/MessageItem"}
    assert "$defs" not in connect


def test_the_document_is_built_once_per_app():
    app = build_app(default_settings())
    built = app.registry[OPENAPI_KEY]
    assert isinstance(built, bytes)
    assert Request.blank("/openapi.json").get_response(app).body is built


# -- schemathesis ---------------------------------------------------------------------------


class Signed(requests.auth.AuthBase):
    """Sign each prepared request over the method, target and body bytes it will send."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        assert isinstance(body, bytes), f"cannot sign a streamed body: {type(body)}"
        target = request.path_url
        secret = ADMIN_SECRET if target.split("?", 1)[0] in ADMIN_PATHS else SECRET
        request.headers[SIGNATURE_HEADER] = sign(secret, request.method, target, body)
        return request


@schemathesis.serializer("application/x-ndjson")
def _ndjson(context: object, value: object) -> bytes:
    """NDJSON bodies of ``POST /packets``: the generated text as it is."""
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else b"{}"


def load_schema() -> schemathesis.BaseSchema:
    """The document as this code builds it (the live one is the same: see above).

    Loaded at import, because schemathesis makes one test per operation at
    collection time, when no server runs yet; every request goes to the
    live ``api_server``. (Its lazy loader, ``schemathesis.pytest.from_fixture``,
    fails on pytest 9.2: it sets ``Function._nodeid``, which pytest 9.2 dropped.)
    """
    # /spy never ends (a client reads it until it leaves): tests/loom/test_openapi.py
    schema = schemathesis.openapi.from_dict(openapi_document()).exclude(path="/spy")
    schema.config.generation.update(
        modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        with_security_parameters=False,
    )
    return schema


schema = load_schema()


@pytest.fixture(scope="module")
def tally(request) -> Iterator[collections.Counter]:
    """Requests sent per operation and answers per status; printed at the end."""
    counts: collections.Counter = collections.Counter()
    began = time.monotonic()
    yield counts
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    operations = {key[1] for key in counts if key[0] == "operation"}
    sent = sum(n for key, n in counts.items() if key[0] == "operation")
    statuses = sorted((key[1], n) for key, n in counts.items() if key[0] == "status")
    line = (
        f"schemathesis: {len(operations)} operations, {sent} requests in "
        f"{time.monotonic() - began:.1f} s; statuses {dict(statuses)}"
    )
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_live_api_never_answers_5xx_and_honours_the_document(case, api_server, tally):
    response = case.call(base_url=api_server.url, auth=Signed(), timeout=10)
    tally["operation", case.operation.label] += 1
    tally["status", response.status_code] += 1
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
