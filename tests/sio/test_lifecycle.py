"""The socket.io door's life: shutdown tells clients, gunicorn workers serve it too."""

from __future__ import annotations

from channelstream.client import ChannelstreamClient
from tests.sio.clients import StreamClient
from tests.support.api import API_APP, api_client

SECRETS = {"CHANNELSTREAM_SECRET": "s3cret", "CHANNELSTREAM_ADMIN_SECRET": "adm1n"}
ONE_WORKER = {"workers": "1", "control_socket_disable": "true"}


def test_shutdown_tells_every_client_and_exits_cleanly(server):
    running = server(app=API_APP)
    api = api_client(running)
    chat = StreamClient(running.url, auth={"conn_id": api.connect("zoe", ["lobby"])["conn_id"]})
    gatd = StreamClient(running.url, transports=["polling"])
    try:
        chat.next("user_connect")
        gatd.call("query", {"any": "thing"})
        assert running.get("/healthz").json()["doors"]["socketio"]["clients"] == 2
        assert running.stop() == 0
        for client in (chat, gatd):
            assert client.next("error")[1] == {"message": "disconnected: server shutting down"}
            client.next("disconnect")
    finally:
        chat.close()
        gatd.close()
    assert "Traceback" not in running.stderr


def test_gunicorn_workers_serve_socketio(server):
    running = server("production.ini", server=ONE_WORKER, env=SECRETS)
    api = ChannelstreamClient(running.url, SECRETS["CHANNELSTREAM_SECRET"])
    conn_id = api.connect("yan", ["lobby"])["conn_id"]
    for transports in (["websocket"], ["polling"]):
        client = StreamClient(running.url, auth={"conn_id": conn_id}, transports=transports)
        try:
            client.next("user_connect")
            api.message([{"channel": "lobby", "user": "x", "message": {"via": transports[0]}}])
            assert client.frames(1)[0]["message"] == {"via": transports[0]}
        finally:
            client.close()
    assert running.stop() == 0
