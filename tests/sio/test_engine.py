"""engine.io sessions without greenlets of their own (channelstream/sio/engine.py), against
the real server: websockets driven by watchers, pings from one timer, upgrades, bad input."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator

import pytest
import websocket

from tests.sio.clients import StreamClient
from tests.sio.conftest import door_status
from tests.support.api import api_client
from tests.support.packets import run_packets_server
from tests.support.server import RunningServer
from tests.support.wait import wait_for

pytestmark = pytest.mark.timeout(120)

#: Connections one address may hold at once: socket.io websockets must not count.
PER_ADDRESS = 8


@pytest.fixture(scope="module")
def engine_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from run_packets_server(
        tmp_path_factory.mktemp("sio-engine"),
        **{
            "socketio.ping_interval": "1",
            "socketio.ping_timeout": "5",
            "http.max_connections_per_address": str(PER_ADDRESS),
        },
    )


class RawClient:
    """An engine.io websocket joined to ``/stream`` that answers pings and counts them."""

    def __init__(self, server: RunningServer, auth: str = "{}") -> None:
        self.ws = websocket.create_connection(
            server.url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket",
            timeout=10,
        )
        assert self.ws.recv().startswith("0{")  # engine.io OPEN
        self.ws.send("40/stream," + auth)
        assert self.ws.recv().startswith("40/stream,")  # socket.io CONNECT
        self.pings = 0

    def packets(self, count: int) -> list[str]:
        """The next ``count`` packets other than pings (which are answered)."""
        got = []
        while len(got) < count:
            text = self.ws.recv()
            if text == "2":
                self.pings += 1
                self.ws.send("3")
            else:
                got.append(text)
        return got

    def read_pings(self, count: int) -> None:
        """Answer pings until ``count`` have come (nothing else is expected)."""
        while self.pings < count:
            text = self.ws.recv()
            assert text == "2", text
            self.pings += 1
            self.ws.send("3")

    def close(self) -> None:
        self.ws.close()


def test_websocket_sessions_hold_no_http_connection(engine_server):
    """The upgrade request ends once the websocket is taken over: many more socket.io
    clients than ``http.max_connections_per_address`` from one address, all served."""
    clients = [RawClient(engine_server) for _ in range(4 * PER_ADDRESS)]
    try:
        assert door_status(engine_server)["websockets"] >= len(clients)
        for n, client in enumerate(clients):
            client.ws.send(f'42/stream,{n}["query",{{"n":{n}}}]')
        for n, client in enumerate(clients):
            assert client.packets(1) == [f'43/stream,{n}[{{"ok":true}}]']
        assert engine_server.get("/healthz").status_code == 200
    finally:
        for client in clients:
            client.close()
    wait_for(lambda: door_status(engine_server)["clients"] == 0)


def test_pings_from_one_timer_keep_every_client(engine_server):
    """Each session is pinged about every ``ping_interval`` (1 s here) from the server's
    one timer; clients that answer stay, over websockets and long-polling alike."""
    clients = [RawClient(engine_server) for _ in range(20)]
    polling = StreamClient(engine_server.url, transports=["polling"])
    try:
        readers = [threading.Thread(target=c.read_pings, args=(3,), daemon=True) for c in clients]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(60)
        assert [c.pings for c in clients] == [3] * len(clients)
        assert polling.call("query", {"still": "here"}) == {"ok": True}
        door = door_status(engine_server)
        assert door["clients"] >= 21 and door["websockets"] >= 20
    finally:
        for client in clients:
            client.close()
        polling.close()


def test_a_client_that_sends_faster_than_it_is_served_gets_every_answer_in_order(engine_server):
    """Packets wait for their greenlet (reading pauses past a few); none is lost."""
    client = RawClient(engine_server)
    try:
        count = 200
        client.ws.sock.sendall(
            b"".join(
                websocket.ABNF.create_frame(
                    f'42/stream,{n}["query",{{"n":{n}}}]', websocket.ABNF.OPCODE_TEXT
                ).format()
                for n in range(count)
            )
        )
        assert client.packets(count) == [f'43/stream,{n}[{{"ok":true}}]' for n in range(count)]
    finally:
        client.close()


@pytest.mark.parametrize("packet", ["x", "4" + "[" * 5000], ids=["not-a-type", "deep-json"])
def test_an_engineio_packet_that_does_not_decode_ends_the_session(engine_server, packet):
    before = door_status(engine_server)["bad_packets"]
    log_before = len(engine_server.stderr)
    client = RawClient(engine_server)
    try:
        client.ws.send(packet)
        while True:  # engine.io's CLOSE or the websocket's close, nothing else
            try:
                opcode, data = client.ws.recv_data(control_frame=True)
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            assert data == b"2", data  # a ping at most
    finally:
        client.close()
    wait_for(lambda: door_status(engine_server)["bad_packets"] == before + 1)
    assert "Traceback" not in engine_server.stderr[log_before:]


def test_an_upgrade_while_messages_flow_loses_and_repeats_nothing(engine_server):
    """A long-polling client upgrades to a websocket while messages keep coming: what
    engine.io's queue held goes first on the websocket, then the rest, in order."""
    api = api_client(engine_server)
    channel = f"room-{uuid.uuid4().hex[:8]}"
    conn_id = api.connect("ulla", [channel])["conn_id"]
    stop = threading.Event()
    sent: list[int] = []

    def publish() -> None:
        while not stop.is_set() and len(sent) < 400:
            n = len(sent)
            api.message([{"channel": channel, "user": "bot", "message": {"n": n}}])
            sent.append(n)

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    try:
        client = StreamClient(
            engine_server.url, auth={"conn_id": conn_id}, transports=["polling", "websocket"]
        )
        try:
            wait_for(lambda: client.sio.transport() == "websocket", timeout=20)
            upgraded_at = len(sent)
            wait_for(lambda: len(sent) > upgraded_at + 20, timeout=20)  # some after it too
            stop.set()
            publisher.join(30)
            frames = client.frames(len(sent), timeout=30)
            assert [f["message"]["n"] for f in frames] == sent
            offsets = [f["offset"] for f in frames]
            assert offsets == list(range(offsets[0], offsets[0] + len(frames)))
        finally:
            client.close()
    finally:
        stop.set()
        publisher.join(30)


def test_an_unfinished_upgrade_leaves_the_polling_session_as_it_was(engine_server):
    """A websocket that never sends the probe (or sends garbage) is closed; the
    long-polling session goes on."""
    import requests

    base = f"{engine_server.url}/socket.io/?EIO=4&transport=polling"
    with requests.Session() as http:
        sid = json.loads(http.get(base, timeout=10).text[1:])["sid"]
        ws = websocket.create_connection(
            engine_server.url.replace("http", "ws", 1)
            + f"/socket.io/?EIO=4&transport=websocket&sid={sid}",
            timeout=10,
        )
        try:
            ws.send("2nope")
            opcode, _ = ws.recv_data(control_frame=True)
            assert opcode == websocket.ABNF.OPCODE_CLOSE
        finally:
            ws.close()
        assert http.post(f"{base}&sid={sid}", data="40/stream,{}", timeout=10).text == "OK"
        assert http.get(f"{base}&sid={sid}", timeout=10).text.startswith("40/stream,{")


def test_a_burst_from_several_publishers_reaches_every_client_whole_and_in_order(
    engine_server,
):
    """Publishers flat out: passes follow each other closely, so the door spaces them
    out (channelstream/sio/pacing.py); every client still gets every message, once, in
    order."""
    api = api_client(engine_server)
    channel = f"room-{uuid.uuid4().hex[:8]}"
    conn_ids = [api.connect(f"burst{n}", [channel])["conn_id"] for n in range(40)]
    clients = [RawClient(engine_server, json.dumps({"conn_id": c})) for c in conn_ids]
    try:
        for client in clients:
            assert json.loads(client.packets(1)[0].partition(",")[2])[0] == "user_connect"

        def publish(worker: int) -> None:
            poster = api_client(engine_server)
            for n in range(60):
                items = [{"channel": channel, "user": "bot", "message": {"w": worker, "n": n,
                          "k": k}} for k in range(3)]
                poster.message(items)

        publishers = [threading.Thread(target=publish, args=(w,)) for w in range(4)]
        for thread in publishers:
            thread.start()
        for thread in publishers:
            thread.join(60)
        total = 4 * 60 * 3
        for client in clients:
            frames: list[dict] = []
            while len(frames) < total:
                (text,) = client.packets(1)
                event, data = json.loads(text.partition(",")[2])
                assert event == "message"
                frames += data
            offsets = [f["offset"] for f in frames]
            assert offsets == list(range(offsets[0], offsets[0] + total))
            for worker in range(4):  # each publisher's messages in the order it sent them
                mine = [(f["message"]["n"], f["message"]["k"]) for f in frames
                        if f["message"]["w"] == worker]
                assert mine == [(n, k) for n in range(60) for k in range(3)]
    finally:
        for client in clients:
            client.close()
