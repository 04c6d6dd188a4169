"""POST /packets in /openapi.json: the answers the ingest gives are the documented ones."""

from __future__ import annotations

import jsonschema
import pytest
import requests
from openapi_spec_validator import validate

from tests.support.api import openapi_document
from tests.support.packets import TOKEN, run_packets_server

DOCUMENT = openapi_document()
OPERATION = DOCUMENT["paths"]["/packets"]["post"]


@pytest.fixture(scope="module")
def ingest_server(tmp_path_factory: pytest.TempPathFactory):
    yield from run_packets_server(tmp_path_factory.mktemp("ingest-doc"))


def schema_of(status: str) -> dict:
    schema = OPERATION["responses"][status]["content"]["application/json"]["schema"]
    return {**schema, "components": DOCUMENT["components"]}


def test_the_ingest_is_described_with_both_credentials():
    validate(DOCUMENT)
    assert OPERATION["tags"] == ["packets"]
    assert {"packetsBearer", "signature"} == {k for s in OPERATION["security"] for k in s}
    body = DOCUMENT["components"]["schemas"]["PacketBody"]
    jsonschema.validate({"profile_id": "abc"}, body)
    jsonschema.validate([{"a": 1}, {"b": 2}], body)


def test_accepted_and_refused_answers_follow_the_document(ingest_server):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = ingest_server.url + "/packets"
    ok = requests.post(url, json=[{"profile_id": "doc", "n": 1}], headers=auth, timeout=10)
    assert ok.status_code == 202
    jsonschema.validate(ok.json(), schema_of("202"))
    bad = requests.post(url, data=b"[1]", headers=auth, timeout=10)
    assert bad.status_code == 400
    jsonschema.validate(bad.json(), schema_of("400"))
    unknown = requests.post(url, json={"a": 1}, headers={"Authorization": "Bearer no"}, timeout=10)
    assert unknown.status_code == 401
    jsonschema.validate(unknown.json(), schema_of("401"))
