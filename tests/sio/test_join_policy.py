"""What a socket.io client may ``join`` by itself: the backend's join policy and the caps.

Once a signed user could join a channel the backend gave only to another
user and read its messages; three sessions created 3,000 channels kept for
an hour.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.sio.clients import StreamClient
from tests.support.api import API_APP, api_client
from tests.support.server import REPO, RunningServer

pytestmark = pytest.mark.timeout(90)


def serve(tmp_path_factory, **app: str) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("sio-join")
    with RunningServer(REPO / "development.ini", folder, app={**API_APP, **app}) as running:
        yield running


@pytest.fixture(scope="module")
def closed(tmp_path_factory) -> Iterator[RunningServer]:
    yield from serve(tmp_path_factory, **{"socketio.join_policy": "subscribed"})


@pytest.fixture(scope="module")
def joinable(tmp_path_factory) -> Iterator[RunningServer]:
    yield from serve(tmp_path_factory, **{"socketio.join_policy": "joinable"})


@pytest.fixture(scope="module")
def open_server(tmp_path_factory) -> Iterator[RunningServer]:
    yield from serve(
        tmp_path_factory,
        **{
            "socketio.join_policy": "any",
            "socketio.max_client_channels_per_user": "3",
            "socketio.max_client_channels": "5",
        },
    )


@pytest.fixture
def clients() -> Iterator[Callable[..., StreamClient]]:
    opened: list[StreamClient] = []

    def open_client(server: RunningServer, user: str, channels: list[str]) -> StreamClient:
        conn_id = api_client(server).connect(user, channels)["conn_id"]
        client = StreamClient(server.url, auth={"conn_id": conn_id})
        client.next("user_connect")
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def refused(answer: Any, setting: str) -> bool:
    return isinstance(answer, dict) and setting in answer.get("error", "")


def test_closed_a_client_cannot_join_what_the_backend_gave_another(closed, clients):
    secret = fresh("secret")
    owner = clients(closed, "owner", [secret])
    intruder = clients(closed, "intruder", [fresh("own")])
    answer = intruder.call("join", [secret])
    assert refused(answer, "socketio.join_policy = subscribed")
    assert intruder.next("error")[1]["message"] == answer["error"]
    api_client(closed).message([{"channel": secret, "user": "owner", "message": {"t": "x"}}])
    assert owner.frames(1)[0]["message"] == {"t": "x"}
    assert [e for e in intruder.quiet(0.3) if e[0] == "message"] == []


def test_closed_a_client_may_rejoin_a_channel_the_backend_gave_it(closed, clients):
    mine = fresh("mine")
    client = clients(closed, "rejoiner", [mine])
    assert client.call("leave", [mine]) == [mine]
    assert client.call("join", [mine]) == [mine]


def test_joinable_only_channels_marked_joinable(joinable, clients):
    lobby, private = fresh("lobby"), fresh("private")
    api = api_client(joinable)
    api.channel_config({lobby: {"joinable": True}, private: {}})
    client = clients(joinable, "visitor", [fresh("home")])
    assert client.call("join", [lobby]) == [lobby]
    assert refused(client.call("join", [private]), "not joinable")
    assert refused(client.call("join", [fresh("new")]), "not joinable")
    info = api.info(channels=[lobby])["channels"][lobby]
    assert info["settings"]["joinable"] is True


def test_any_creates_channels_within_the_caps(open_server, clients):
    first = clients(open_server, "creator", [])
    made = [fresh("made") for _ in range(3)]
    assert first.call("join", made) == sorted(made)
    over = first.call("join", [fresh("fourth")])
    assert refused(over, "socketio.max_client_channels_per_user")
    # joining channels that exist costs nothing
    other = clients(open_server, "follower", [])
    assert other.call("join", made[:1]) == made[:1]
    # the total cap: 3 made already, 2 more, then no more for anybody
    two = [fresh("more") for _ in range(2)]
    assert other.call("join", two) == sorted(two)
    assert refused(other.call("join", [fresh("sixth")]), "socketio.max_client_channels")
    # all or nothing: a refused join joins none of its channels
    assert refused(other.call("join", [made[1], fresh("seventh")]), "max_client_channels")
    assert made[1] not in api_client(open_server).info(channels=[made[1]])["channels"][made[1]][
        "users"
    ]
