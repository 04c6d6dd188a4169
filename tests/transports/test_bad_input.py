"""Hostile JSON in the client transports' parameters: a clear 400 (or close 1008), never a 500.

A deeply nested ``resume`` once raised RecursionError before the conn_id
was even looked up: no credentials were needed to cause a 500.
"""

from __future__ import annotations

import base64
import json

import pytest
import requests
import websocket

from tests.transports.test_transports import ws_url

pytestmark = pytest.mark.timeout(60)

DEEP = "[" * 1000 + "]" * 1000  # past the JSON decoder's recursion limit, within URL limits
TOO_DEEP = '{"c": ' + "[" * 40 + "]" * 40 + "}"
BAD = ["{not json", DEEP, TOO_DEEP, '{"c": ["e", -1]}', '{"c": NaN}']


@pytest.mark.parametrize("value", BAD, ids=["syntax", "deep", "deeper-than-32", "negative", "nan"])
@pytest.mark.parametrize("path", ["/listen", "/sse"])
def test_a_bad_resume_is_400_naming_it(api_server, client, path, value):
    conn_id = client.connect("hostile", ["x"])["conn_id"]
    answer = requests.get(
        api_server.url + path, params={"conn_id": conn_id, "resume": value}, timeout=10
    )
    assert answer.status_code == 400
    assert answer.json()["field"] == "resume"


@pytest.mark.parametrize("value", BAD, ids=["syntax", "deep", "deeper-than-32", "negative", "nan"])
def test_a_bad_last_event_id_is_400_naming_it(api_server, client, value):
    conn_id = client.connect("hostile", ["x"])["conn_id"]
    token = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
    answer = requests.get(
        api_server.url + "/sse",
        params={"conn_id": conn_id},
        headers={"Last-Event-ID": token},
        timeout=10,
    )
    assert answer.status_code == 400
    assert answer.json()["field"] == "Last-Event-ID"


@pytest.mark.parametrize("value", BAD, ids=["syntax", "deep", "deeper-than-32", "negative", "nan"])
def test_a_bad_resume_closes_the_websocket_with_1008(api_server, client, value):
    conn_id = client.connect("hostile", ["x"])["conn_id"]
    url = ws_url(api_server, conn_id) + "&resume=" + requests.utils.quote(value)
    ws = websocket.create_connection(url, timeout=10)
    try:
        opcode, data = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(data[:2], "big") == 1008
        assert b"resume" in data[2:]
    finally:
        ws.close()


def test_the_server_still_serves_after_hostile_input(api_server, client):
    test_a_bad_resume_is_400_naming_it(api_server, client, "/listen", DEEP)
    assert requests.get(api_server.url + "/healthz", timeout=10).json()["status"] == "ok"
    conn_id = client.connect("fine", ["x"])["conn_id"]
    resume = json.dumps({"x": ["e", 0]})
    answer = requests.get(
        api_server.url + "/listen", params={"conn_id": conn_id, "resume": resume}, timeout=10
    )
    assert answer.status_code == 200
