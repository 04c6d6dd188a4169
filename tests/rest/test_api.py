"""The server API over real HTTP, called by the package's signing client."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from channelstream.client import ChannelstreamError

pytestmark = pytest.mark.timeout(60)


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_connect_subscribe_unsubscribe_shapes(client):
    room, other = name("room"), name("other")
    answer = client.connect(
        "ann", channels=[room], fresh_user_state={"mood": "ok"}, state_public_keys=["mood"]
    )
    conn_id = answer["conn_id"]
    assert uuid.UUID(conn_id)
    assert answer["username"] == "ann" and answer["public_state"] == {"mood": "ok"}
    assert answer["channels"] == [room]
    assert answer["channels_info"]["channels"][room]["users"] == ["ann"]

    subscribed = client.subscribe(conn_id, [other, room])
    assert subscribed["channels"] == sorted([room, other])
    assert subscribed["subscribed_to"] == [other]
    unsubscribed = client.unsubscribe(conn_id, [room])
    assert unsubscribed["channels"] == [other] and unsubscribed["unsubscribed_from"] == [room]


def test_the_seeds_connect_with_user_instead_of_username(client):
    status, body = client.call("POST", "/connect", {"user": "seed-user", "channels": ["x"]})
    assert status == 200 and body["username"] == "seed-user"


def test_message_post_edit_delete_and_info_history(client):
    room = name("room")
    client.channel_config({room: {"store_history": True, "history_size": 5}})
    client.connect("ann", channels=[room])
    posted = client.message([{"channel": room, "user": "ann", "message": {"text": "helo"}}])
    assert posted[0]["channel"] == room and posted[0]["edited"] is None
    message_id = posted[0]["uuid"]
    edited = client.edit_messages(
        [{"uuid": message_id, "channel": room, "message": {"text": "hello"}}]
    )
    assert edited[0]["message"] == {"text": "hello"}
    info = client.info(channels=[room])
    history = info["channels"][room]["history"]
    assert [h["message"] for h in history] == [{"text": "hello"}]
    client.delete_messages([{"uuid": message_id, "channel": room}])
    assert client.info(channels=[room])["channels"][room]["history"] == []


def test_user_state_and_user_status(client):
    client.connect("stateful", state_public_keys=["status"])
    answer = client.user_state("stateful", {"status": "away", "x": 1})
    assert answer["changed_state"] == [
        {"key": "status", "value": "away"},
        {"key": "x", "value": 1},
    ]
    status, body = client.call("POST", "/user_status", {"user": "stateful", "status": 4})
    assert status == 200 and body["user_state"]["status"] == "busy"


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/connect", {"channels": ["a"]}, "username"),
        ("/connect", {"username": "x" * 513}, "username"),
        ("/connect", {"username": "u", "channels": [""]}, "channels.0"),
        ("/connect", {"username": "u", "user_state": {"k": [1]}}, "user_state.k"),
        ("/subscribe", {"conn_id": "not-a-uuid", "channels": ["a"]}, "conn_id"),
        ("/subscribe", {"conn_id": str(uuid.uuid4()), "channels": []}, "channels"),
        ("/message", [{"channel": "a"}], "0.user"),
        ("/message", {"user": "u"}, "body"),
        ("/channel_config", {"a": {"history_size": -1}}, "a.history_size"),
        ("/user_status", {"user": "u", "status": 9}, "status"),
    ],
)
def test_bad_fields_get_422_naming_the_field(client, path, body, field):
    with pytest.raises(ChannelstreamError) as caught:
        client.call("POST", path, body)
    assert caught.value.status == 422
    assert caught.value.body["field"] == field or caught.value.body["field"].startswith(field)


def test_malformed_json_gets_400(api_server):
    from channelstream.security.signing import sign
    from tests.support.api import SECRET

    body = b"{not json"
    response = requests.post(
        api_server.url + "/connect",
        data=body,
        headers={"X-Channelstream-Signature": sign(SECRET, "POST", "/connect", body)},
        timeout=10,
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_unknown_connection_and_user_get_404(client):
    for call in (
        lambda: client.subscribe(str(uuid.uuid4()), ["a"]),
        lambda: client.user_state("nobody-" + uuid.uuid4().hex, {"a": 1}),
    ):
        with pytest.raises(ChannelstreamError) as caught:
            call()
        assert caught.value.status == 404


def test_an_unsigned_call_is_refused(api_server):
    response = requests.post(api_server.url + "/connect", json={"username": "u"}, timeout=10)
    assert response.status_code == 401
    assert json.loads(response.text)["code"] == "unauthorized"


def test_disconnect_closes_the_connection(client):
    conn_id = client.connect("leaver")["conn_id"]
    assert client.disconnect(conn_id) is True
    assert client.disconnect(conn_id) is False


def test_a_route_called_with_another_method_gets_405(api_server):
    response = requests.get(api_server.url + "/message", timeout=10)
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b'[{"user":"ann","channel":"lobby","message":{"k":"\\ud800"}}]', "lone surrogate"),
        (b'{"username":"bob","user_state":{"\\ud800":1}}', "lone surrogate"),
        (b'[{"user":"ann","channel":"lobby","message":{"k":NaN}}]', "NaN"),
        (b'[{"user":"ann","channel":"lobby","message":{"k":1e999}}]', "out of range"),
        (b'{"username":"bob","user_state":{"f":-Infinity}}', "Infinity"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b'[{"user":"ann","message":' + b'{"a":' * 40 + b"1" + b"}" * 41 + b"]", "nested"),
    ],
)
def test_json_that_would_break_encoders_or_browsers_is_refused(api_server, raw, reason):
    from channelstream.security.signing import sign
    from tests.support.api import SECRET

    path = "/message" if raw.startswith(b"[") else "/connect"
    response = requests.post(
        api_server.url + path,
        data=raw,
        headers={"X-Channelstream-Signature": sign(SECRET, "POST", path, raw)},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    assert reason in response.json()["error"]
