"""/admin/admin.json and /admin over real HTTP, against a real server."""

from __future__ import annotations

import base64
import json
import re
import uuid

import pytest
import requests
import websocket
from webob import Request

from channelstream import __version__
from channelstream.chat import CHAT_KEY
from channelstream.chat.channels import ChannelSettings
from channelstream.client import ChannelstreamClient
from channelstream.ops.admin import ADMIN_JSON_PATH, ADMIN_PATH
from channelstream.security.signing import SIGNATURE_HEADER, sign
from channelstream.settings import parse_settings
from channelstream.wsgi_app import build_app
from tests.support.api import ADMIN_SECRET, SECRET
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(60)

UPTIME = re.compile(r"^(\d+ days?, )?\d{1,2}:\d\d:\d\d$")


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def attach(server, conn_id: str) -> websocket.WebSocket:
    """A websocket on the connection, so that the collector keeps it."""
    url = server.url.replace("http://", "ws://") + f"/ws?conn_id={conn_id}"
    return websocket.create_connection(url, timeout=10)


def test_admin_json_shape_and_figures_after_traffic(api_server, client: ChannelstreamClient):
    room, other, nowhere = name("room"), name("other"), name("nowhere")
    ann, bob = name("ann"), name("bob")
    before = client.admin_stats()
    client.channel_config({room: {"store_history": True}})
    ann1 = client.connect(
        ann, [room], fresh_user_state={"mood": "ok", "secret": 1}, state_public_keys=["mood"]
    )["conn_id"]
    # (a /connect without state_public_keys would make every key private again)
    ann2 = client.connect(ann, [room, other], state_public_keys=["mood"])["conn_id"]
    bob1 = client.connect(bob, [room])["conn_id"]
    sockets = [attach(api_server, conn_id) for conn_id in (ann1, ann2, bob1)]
    try:
        wait_for(
            lambda: (
                client.admin_stats()["doors"]["channelstream-gc"]["attached_connections"]
                >= before["doors"]["channelstream-gc"]["attached_connections"] + 3
            )
        )
        client.message(
            [
                {"channel": room, "user": ann, "message": {"text": "hello"}},
                {"channel": nowhere, "user": ann, "message": {"text": "lost"}},
            ]
        )
        after = client.admin_stats()
    finally:
        for ws in sockets:
            ws.close()

    assert after["remembered_user_count"] - before["remembered_user_count"] == 2
    assert after["unique_user_count"] - before["unique_user_count"] == 2
    assert after["total_connections"] - before["total_connections"] == 3
    assert after["total_channels"] - before["total_channels"] == 2
    # both items count as unique messages (0.7.1 counted those to missing channels too) ...
    assert after["total_unique_messages"] - before["total_unique_messages"] == 2
    # ... and the one to the room went to its three connections
    assert after["total_messages"] - before["total_messages"] == 3

    users = {entry["user"]: entry for entry in after["users"]}
    assert users[ann] == {"user": ann, "state": {"mood": "ok"}, "connections": sorted([ann1, ann2])}
    assert users[bob] == {"user": bob, "state": {}, "connections": [bob1]}
    channel = after["channels"][room]
    assert channel["users"] == sorted([ann, bob]) and channel["total_connections"] == 3
    assert [item["message"] for item in channel["history"]] == [{"text": "hello"}]
    assert after["channels"][other]["users"] == [ann]

    assert UPTIME.match(after["uptime"]), after["uptime"]
    assert after["version"] == __version__
    hub = after["hub"]
    assert hub["published"] - before["hub"]["published"] >= 1
    assert {"published", "delivered", "dropped", "channels", "outboxes"} <= set(hub)
    assert after["doors"]["channelstream-gc"]["state"] == "running"
    assert after["slow_disconnects"] is None or isinstance(after["slow_disconnects"], int)


def test_users_lists_only_users_with_a_connection(client: ChannelstreamClient):
    gone = name("gone")
    conn_id = client.connect(gone, [name("room")])["conn_id"]
    client.disconnect(conn_id)
    stats = client.admin_stats()
    assert gone not in {entry["user"] for entry in stats["users"]}
    assert stats["remembered_user_count"] >= stats["unique_user_count"]


def admin_get(server, path: str, **kwargs) -> requests.Response:
    return requests.get(server.url + path, timeout=10, **kwargs)


@pytest.mark.parametrize("path", ["/admin", "/admin/admin.json"])
def test_admin_routes_need_admin_credentials(api_server, path):
    unsigned = admin_get(api_server, path)
    assert unsigned.status_code == 401
    assert unsigned.headers["WWW-Authenticate"].startswith("Basic ")
    assert unsigned.json()["reason"] == "missing"

    api_signed = admin_get(api_server, path, headers={SIGNATURE_HEADER: sign(SECRET, "GET", path)})
    assert api_signed.status_code == 401 and api_signed.json()["reason"] == "bad_signature"

    wrong = admin_get(api_server, path, auth=("admin", SECRET))
    assert wrong.status_code == 401 and wrong.json()["reason"] == "bad_credentials"

    signed = admin_get(
        api_server, path, headers={SIGNATURE_HEADER: sign(ADMIN_SECRET, "GET", path)}
    )
    assert signed.status_code == 200

    basic = admin_get(api_server, path, auth=("anyone", ADMIN_SECRET))
    assert basic.status_code == 200
    assert basic.headers["Content-Type"].startswith("application/json")
    assert basic.headers["Cache-Control"] == "no-store"
    assert {"remembered_user_count", "channels", "users", "uptime", "hub", "doors"} <= set(
        basic.json()
    )


def test_admin_json_answers_post_as_0_7_1_did_with_the_same_credentials(api_server):
    """0.7.1's demo POSTs to /admin/admin.json: the same figures, the same auth."""
    url, path = api_server.url + ADMIN_JSON_PATH, ADMIN_JSON_PATH
    body = b'{"anything": "ignored"}'

    def post(**kwargs) -> requests.Response:
        return requests.post(url, timeout=10, **kwargs)

    missing = post(data=body)
    assert missing.status_code == 401 and missing.json()["reason"] == "missing"
    api_signed = post(data=body, headers={SIGNATURE_HEADER: sign(SECRET, "POST", path, body)})
    assert api_signed.status_code == 401 and api_signed.json()["reason"] == "bad_signature"
    other_body = post(data=body, headers={SIGNATURE_HEADER: sign(ADMIN_SECRET, "POST", path, b"")})
    assert other_body.status_code == 401  # the signature covers the body
    assert post(data=body, auth=("admin", SECRET)).status_code == 401

    signed = post(data=body, headers={SIGNATURE_HEADER: sign(ADMIN_SECRET, "POST", path, body)})
    basic = post(auth=("anyone", ADMIN_SECRET))  # no body at all, as a bare form POST
    got = admin_get(api_server, path, auth=("anyone", ADMIN_SECRET))
    for answer in (signed, basic):
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Type"].startswith("application/json")
        assert answer.headers["Cache-Control"] == "no-store"
        assert set(answer.json()) == set(got.json())
        assert answer.json()["version"] == __version__


def test_admin_is_read_only(api_server):
    answer = requests.post(api_server.url + "/admin", auth=("a", ADMIN_SECRET), timeout=10)
    assert answer.status_code == 405
    put = requests.put(api_server.url + ADMIN_JSON_PATH, auth=("a", ADMIN_SECRET), timeout=10)
    assert put.status_code == 405


def test_openapi_json_lists_the_admin_methods_served(api_server):
    paths = requests.get(api_server.url + "/openapi.json", timeout=10).json()["paths"]
    assert set(paths[ADMIN_JSON_PATH]) == {"get", "post"}
    assert set(paths[ADMIN_PATH]) == {"get"}
    post = paths[ADMIN_JSON_PATH]["post"]
    assert post["responses"] == paths[ADMIN_JSON_PATH]["get"]["responses"]
    assert post["security"] == paths[ADMIN_JSON_PATH]["get"]["security"]


def strict_json(body: bytes):
    def refuse(name: str):
        raise AssertionError(f"{name} is not JSON")

    return json.loads(body, parse_constant=refuse)


def test_admin_json_is_strict_ascii_json_whatever_backends_stored():
    """Python's JSON reader lets backends send a lone surrogate (a valid escape
    with no UTF-8 form), NaN and Infinity. The admin page still answers, in
    JSON that a browser's JSON.parse reads: ASCII, non-finite numbers as null."""
    app = build_app(parse_settings({"secret": SECRET, "admin_secret": ADMIN_SECRET}, {}))
    chat = app.registry[CHAT_KEY]
    chat.channel_config({"room": ChannelSettings(store_history=True)})
    chat.connect("odd", channels=["room"], user_state={"\ud800": "x", "n": float("nan")})
    chat.post_messages([{"channel": "room", "user": "odd", "message": {"big": float("inf")}}])
    credentials = base64.b64encode(f"admin:{ADMIN_SECRET}".encode()).decode()
    request = Request.blank("/admin/admin.json", headers={"Authorization": f"Basic {credentials}"})
    response = request.get_response(app)
    assert response.status_code == 200
    assert response.body.isascii()
    stats = strict_json(response.body)
    room = stats["channels"]["room"]
    assert room["users"] == ["odd"]
    assert room["history"][0]["message"] == {"big": None}
