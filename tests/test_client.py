"""channelstream.client against the real server (the probe app's echo views) and a fake peer."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from channelstream.client import ADMIN_STATS_PATH, ChannelstreamClient, ChannelstreamError
from channelstream.security.signing import parse_header

SECRET = "dev-secret-change-me"
ADMIN_SECRET = "dev-admin-secret-change-me"


@pytest.fixture
def api(probe_server) -> Iterator[ChannelstreamClient]:
    """A client whose base URL puts every server API path under the probe's api echo."""
    with ChannelstreamClient(probe_server.url + "/test/api", SECRET) as client:
        yield client


def echoed(answer: dict) -> tuple[str, str, object]:
    body = json.loads(answer["body"]) if answer["body"] else None
    return answer["method"], answer["path_qs"], body


# -- every method of the server API ----------------------------------------------------------


def test_connect(api):
    answer = api.connect("alice", ["lobby", "news"], conn_id="c-1", user_state={"color": "red"})
    assert echoed(answer) == (
        "POST",
        "/test/api/connect",
        {
            "username": "alice",
            "channels": ["lobby", "news"],
            "conn_id": "c-1",
            "user_state": {"color": "red"},
        },
    )


def test_subscribe_and_unsubscribe(api):
    answer = api.subscribe("c-1", ("a", "b"), channel_configs={"a": {"notify_presence": True}})
    assert echoed(answer) == (
        "POST",
        "/test/api/subscribe",
        {
            "conn_id": "c-1",
            "channels": ["a", "b"],
            "channel_configs": {"a": {"notify_presence": True}},
        },
    )
    assert echoed(api.unsubscribe("c-1", ["a"])) == (
        "POST",
        "/test/api/unsubscribe",
        {"conn_id": "c-1", "channels": ["a"]},
    )


def test_message_edit_delete(api):
    message = {"channel": "lobby", "user": "alice", "message": {"text": "h\u00e9"}}
    assert echoed(api.message([message])) == ("POST", "/test/api/message", [message])
    assert echoed(api.message(message)) == ("POST", "/test/api/message", [message])
    edit = {"uuid": "u-1", "channel": "lobby", "user": "alice", "message": {"text": "edited"}}
    assert echoed(api.edit_messages([edit])) == ("PATCH", "/test/api/message", [edit])
    removal = {"uuid": "u-1", "channel": "lobby"}
    assert echoed(api.delete_messages([removal])) == ("DELETE", "/test/api/message", [removal])


def test_info_disconnect_user_state_user_status_channel_config(api):
    assert echoed(api.info(channels=["lobby"], include_history=False)) == (
        "POST",
        "/test/api/info",
        {"info": {"channels": ["lobby"], "include_history": False}},
    )
    assert echoed(api.disconnect("c-1")) == ("POST", "/test/api/disconnect", {"conn_id": "c-1"})
    assert echoed(api.user_state("alice", {"x": 1}, ["x"])) == (
        "POST",
        "/test/api/user_state",
        {"user": "alice", "user_state": {"x": 1}, "state_public_keys": ["x"]},
    )
    assert echoed(api.user_state("alice", {"x": 1}))[2] == {"user": "alice", "user_state": {"x": 1}}
    assert echoed(api.user_status("alice", 2)) == (
        "POST",
        "/test/api/user_status",
        {"user": "alice", "status": 2},
    )
    configs = {"lobby": {"notify_presence": True, "history_size": 5}}
    assert echoed(api.channel_config(configs)) == ("POST", "/test/api/channel_config", configs)


def test_admin_stats_is_signed_with_the_admin_secret(probe_server):
    # base URL /test: the admin stats path lands on the probe's admin echo
    client = ChannelstreamClient(probe_server.url + "/test", SECRET, admin_secret=ADMIN_SECRET)
    answer = client.admin_stats()
    assert answer["path_qs"] == "/test" + ADMIN_STATS_PATH
    assert answer["caller"] == {"role": "admin", "scheme": "signature"}
    with pytest.raises(ValueError, match="admin_secret"):
        ChannelstreamClient(probe_server.url, SECRET).admin_stats()


# -- the generic call ----------------------------------------------------------------------------


def test_call_returns_status_and_json_and_merges_query(probe_server):
    client = ChannelstreamClient(probe_server.url, SECRET)
    status, answer = client.call("GET", "/test/api/x?a=1", query={"b": "two words", "c": [1, 2]})
    assert status == 200
    assert answer["path_qs"] == "/test/api/x?a=1&b=two+words&c=1&c=2"
    status, answer = client.call("PUT", "/test/api/raw", b"\x00not json")
    assert answer["body"] == "\x00not json"


def test_call_percent_encodes_what_cannot_go_on_the_request_line(probe_server):
    client = ChannelstreamClient(probe_server.url, SECRET)
    quoted = "/test/api/caf%C3%A9%20au%20lait?q=a%20b"
    assert client.target("/test/api/caf\u00e9 au lait?q=a b") == quoted
    _, answer = client.call("GET", "/test/api/caf\u00e9 au lait?q=a b")
    assert answer["path_qs"] == quoted


def test_errors_raise_with_the_servers_json(probe_server):
    client = ChannelstreamClient(probe_server.url, "wrong-secret")
    with pytest.raises(ChannelstreamError) as info:
        client.call("GET", "/test/api/x")
    err = info.value
    assert err.status == 401
    assert err.code == "unauthorized" and err.reason == "bad_signature"
    assert err.message.startswith("bad signature for GET /test/api/x")
    assert str(err) == f"401: {err.message}"
    status, body = client.call("GET", "/test/api/x", check=False)
    assert status == 401 and body["reason"] == "bad_signature"
    with pytest.raises(ChannelstreamError) as info:
        ChannelstreamClient(probe_server.url, SECRET).call("GET", "/no/such/route")
    assert info.value.status == 404 and info.value.code == "not_found"


def test_signed_headers_for_other_http_libraries(probe_server):
    client = ChannelstreamClient(probe_server.url, SECRET)
    body = b'{"user":"alice","status":1}'
    headers = client.signed_headers("POST", "/test/api/user_status", body)
    response = requests.post(
        probe_server.url + "/test/api/user_status", data=body, headers=headers, timeout=10
    )
    assert response.status_code == 200
    assert response.json()["body"] == body.decode()


def test_one_connection_is_reused_for_successive_calls(probe_server):
    client = ChannelstreamClient(probe_server.url, SECRET)
    ports = set()
    for _ in range(5):
        client.call("GET", "/test/api/x")
        ports.update(conn.sock.getsockname()[1] for conn in client._idle)
    assert len(ports) == 1
    client.close()
    assert client._idle == []


def test_constructor_checks():
    with pytest.raises(ValueError, match="http"):
        ChannelstreamClient("ftp://host", SECRET)
    with pytest.raises(ValueError, match="query"):
        ChannelstreamClient("http://host/?x=1", SECRET)
    with pytest.raises(ValueError, match="secret"):
        ChannelstreamClient("http://host", "")
    with pytest.raises(ValueError, match="start with"):
        ChannelstreamClient("http://host", SECRET).target("relative")


# -- a peer that closes kept-alive connections -------------------------------------------


class ClosingPeer:
    """Answers one request per connection (as keep-alive), then closes; records requests."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    part = conn.recv(65536)
                    if not part:
                        break
                    data += part
                if not data:
                    continue
                self.requests.append(data)
                body = b'{"ok":true}'
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )

    def close(self) -> None:
        self.listener.close()


def test_a_call_on_a_connection_the_server_closed_is_sent_again_signed_anew():
    peer = ClosingPeer()
    try:
        client = ChannelstreamClient(f"http://127.0.0.1:{peer.port}", SECRET)
        assert client.call("GET", "/info") == (200, {"ok": True})
        assert client.call("GET", "/info") == (200, {"ok": True})
    finally:
        peer.close()
    assert len(peer.requests) == 2
    nonces = set()
    for raw in peer.requests:
        headers = dict(
            line.split(": ", 1) for line in raw.decode().split("\r\n")[1:] if ": " in line
        )
        nonces.add(parse_header(headers["X-Channelstream-Signature"]).n)
    assert len(nonces) == 2
