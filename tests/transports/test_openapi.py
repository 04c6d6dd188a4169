"""The client transports' part of /openapi.json describes what /listen, /sse and /ws answer."""

from __future__ import annotations

import jsonschema
import requests
from openapi_spec_validator import validate

from tests.support.api import openapi_document

DOCUMENT = openapi_document()


def schema_of(operation: dict, status: str, media: str) -> dict:
    """The response schema, with the document's components for its references."""
    schema = operation["responses"][status]["content"][media]["schema"]
    return {**schema, "components": DOCUMENT["components"]}


def test_the_three_transports_are_described_without_signature():
    validate(DOCUMENT)
    for path in ("/ws", "/listen", "/sse"):
        operation = DOCUMENT["paths"][path]["get"]
        assert operation["tags"] == ["client transports"]
        assert operation["security"] == []
        assert "conn_id" in {p["name"] for p in operation["parameters"]}


def test_a_long_poll_answer_is_what_the_document_says(api_server, client):
    conn = client.connect("openapi-alice", ["doc"])
    client.message([{"channel": "doc", "user": "openapi-alice", "message": {"text": "hi"}}])
    answer = requests.get(
        api_server.url + "/listen", params={"conn_id": conn["conn_id"]}, timeout=10
    )
    assert answer.status_code == 200
    frames = answer.json()
    assert frames and frames[0]["type"] == "message"
    listen = DOCUMENT["paths"]["/listen"]["get"]
    jsonschema.validate(frames, schema_of(listen, "200", "application/json"))


def test_an_unknown_connection_is_the_documented_404(api_server):
    for path in ("/listen", "/sse"):
        answer = requests.get(api_server.url + path, params={"conn_id": "nobody"}, timeout=10)
        assert answer.status_code == 404
        operation = DOCUMENT["paths"][path]["get"]
        jsonschema.validate(answer.json(), schema_of(operation, "404", "application/json"))
        assert answer.json()["field"] == "conn_id"


def test_ws_without_an_upgrade_is_the_documented_400(api_server):
    answer = requests.get(api_server.url + "/ws", params={"conn_id": "x"}, timeout=10)
    assert answer.status_code == 400
    assert "400" in DOCUMENT["paths"]["/ws"]["get"]["responses"]
