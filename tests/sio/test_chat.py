"""channelstream clients of socket.io ``/stream``, with python-socketio's client."""

from __future__ import annotations

import time
import uuid

import pytest

from channelstream.sio import user_sig
from tests.sio.clients import refusal
from tests.sio.conftest import door_status
from tests.support.api import SECRET

TRANSPORTS = [["websocket"], ["polling"], ["polling", "websocket"]]


def post(api, channel: str, *texts: str, user: str = "bob") -> None:
    api.message([{"channel": channel, "user": user, "message": {"text": t}} for t in texts])


def texts(frames: list) -> list[str]:
    return [frame["message"]["text"] for frame in frames]


@pytest.mark.parametrize("transports", TRANSPORTS, ids=lambda t: "+".join(t))
def test_conn_id_client_joins_receives_and_leaves(api, stream, transports):
    channel = f"room-{uuid.uuid4().hex[:8]}"
    conn_id = api.connect("alice", ["lobby"])["conn_id"]
    client = stream(auth={"conn_id": conn_id}, transports=transports)
    name, hello = client.next()
    assert name == "user_connect"
    assert hello == {"conn_id": conn_id, "username": "alice", "channels": ["lobby"], "state": {}}

    assert client.call("join", [channel, channel]) == [channel]
    assert client.next("join")[1] == [channel]
    assert api.info(channels=[channel])["channels"][channel]["users"] == ["alice"]

    post(api, channel, "one", "two")
    frames = client.frames(2)
    assert texts(frames) == ["one", "two"]
    assert [f["offset"] for f in frames] == [1, 2]
    assert all(f["type"] == "message" and f["channel"] == channel for f in frames)
    assert all(isinstance(f["epoch"], str) and f["catchup"] is False for f in frames)

    assert client.call("leave", [channel]) == [channel]
    assert client.next("leave")[1] == [channel]
    post(api, channel, "after leaving")
    assert client.quiet(0.5) == []


def test_messages_edits_deletes_and_private_messages_are_the_ws_frames(api, stream):
    channel = f"room-{uuid.uuid4().hex[:8]}"
    conn_id = api.connect("carol", [channel])["conn_id"]
    client = stream(auth={"conn_id": conn_id})
    client.next("user_connect")
    posted = api.message([{"channel": channel, "user": "bob", "message": {"text": "v1"}}])
    uid = posted[0]["uuid"]
    api.edit_messages([{"uuid": uid, "channel": channel, "message": {"text": "v2"}}])
    api.delete_messages([{"uuid": uid, "channel": channel}])
    api.message([{"pm_users": ["carol"], "user": "bob", "message": {"text": "psst"}}])
    frames = client.frames(4)
    assert [f["type"] for f in frames] == [
        "message",
        "message:edit",
        "message:delete",
        "message",
    ]
    assert frames[1]["message"] == {"text": "v2"} and frames[2]["uuid"] == uid
    assert frames[3]["channel"] is None and frames[3]["pm_users"] == ["carol"]


def test_signed_username_login_makes_a_connection(api, stream, sio_server):
    channel = f"room-{uuid.uuid4().hex[:8]}"
    expires = int(time.time()) + 60
    sig = user_sig(SECRET, "dave", expires)
    # The seed's style: credentials in the handshake's query string.
    client = stream(query=f"username=dave&expires={expires}&sig={sig}")
    hello = client.next("user_connect")[1]
    assert hello["username"] == "dave" and hello["channels"] == []
    assert client.call("join", [channel]) == [channel]
    post(api, channel, "hello dave")
    assert texts(client.frames(1)) == ["hello dave"]
    # The same in the auth object, reusing that connection.
    again = stream(
        auth={"username": "dave", "expires": expires, "sig": sig, "conn_id": hello["conn_id"]}
    )
    assert again.next("user_connect")[1]["channels"] == [channel]


@pytest.mark.parametrize(
    ("auth", "reason"),
    [
        ({"conn_id": "no-such-connection"}, "unknown connection"),
        ({"username": "eve", "expires": 4102444800, "sig": "00" * 32}, "bad signature"),
        (
            {"username": "eve", "expires": 1000, "sig": user_sig(SECRET, "eve", 1000)},
            "signature expired",
        ),
        ({"username": "eve"}, "a username needs sig"),
        ({"conn_id": 42}, "conn_id must be a string"),
        ({"conn_id": "x", "resume": {"c": ["e"]}}, "resume: position"),
        ("not an object", "auth must be an object"),
    ],
)
def test_bad_credentials_are_refused_with_a_message(sio_server, auth, reason):
    assert reason in refusal(sio_server.url, auth)["message"]


def test_a_connection_of_another_user_is_refused(api, sio_server):
    conn_id = api.connect("frank")["conn_id"]
    expires = int(time.time()) + 60
    auth = {"conn_id": conn_id, "username": "gina", "expires": expires}
    auth["sig"] = user_sig(SECRET, "gina", expires)
    assert "another user" in refusal(sio_server.url, auth)["message"]


def test_bad_join_and_leave_get_an_error_event_and_change_nothing(api, stream):
    anonymous = stream()
    answer = anonymous.call("join", ["x"])
    assert "needs a channelstream connection" in answer["error"]
    assert anonymous.next("error")[1] == {"message": answer["error"]}

    conn_id = api.connect("hank")["conn_id"]
    client = stream(auth={"conn_id": conn_id})
    client.next("user_connect")
    for bad in ([], "lobby", [1], ["x" * 257], {"channels": ["a"]}):
        assert "error" in client.call("join", bad)
        assert client.next("error")[1]["message"].startswith("join: ")
    many = [f"c{i}" for i in range(600)]
    assert client.call("join", many[:500]) == sorted(many[:500])
    assert "at most 1000 channels" in client.call("join", [f"d{i}" for i in range(501)])["error"]
    assert client.next("error")[1]["message"].startswith("join: ")
    assert client.call("leave", many[:500]) == sorted(many[:500])
    assert "error" in client.call("leave", [])
    assert client.next("error")[1]["message"].startswith("leave: ")
    assert api.info(channels=["x"])["channels"] == {}  # nothing was joined


def test_presence_and_user_state_changes_are_their_own_events(api, stream):
    channel = f"room-{uuid.uuid4().hex[:8]}"
    api.channel_config(
        {
            channel: {
                "notify_presence": True,
                "notify_state": True,
                "broadcast_presence_with_user_lists": True,
            }
        }
    )
    ivy = stream(
        auth={"conn_id": api.connect("ivy", [channel], state_public_keys=["mood"])["conn_id"]}
    )
    ivy.next("user_connect")
    jack = stream(auth={"conn_id": api.connect("jack")["conn_id"]})
    jack.next("user_connect")
    assert jack.call("join", [channel]) == [channel]
    presence = ivy.next("presence")[1]
    assert len(presence) == 1
    assert presence[0]["type"] == "presence" and presence[0]["user"] == "jack"
    assert presence[0]["message"] == {"action": "joined"}
    assert [u["user"] for u in presence[0]["users"]] == ["ivy", "jack"]

    api.user_state("ivy", {"mood": "happy"})
    change = jack.next("user_state_change")[1][0]
    assert change["user"] == "ivy" and change["message"]["changed"] == [
        {"key": "mood", "value": "happy"}
    ]

    jack.call("leave", [channel])
    parted = ivy.next("presence")[1][0]
    assert parted["user"] == "jack" and parted["message"] == {"action": "parted"}


def test_resume_by_offsets_sends_exactly_what_was_missed(api, stream):
    channel = f"room-{uuid.uuid4().hex[:8]}"
    conn_id = api.connect("kim", [channel])["conn_id"]
    first = stream(auth={"conn_id": conn_id})
    first.next("user_connect")
    post(api, channel, "m1", "m2")
    got = first.frames(2)
    epoch, last = got[-1]["epoch"], got[-1]["offset"]
    first.close()
    post(api, channel, "m3", "m4", "m5")

    second = stream(auth={"conn_id": conn_id, "resume": {channel: [epoch, last]}})
    second.next("user_connect")
    replay = second.frames(3)
    assert texts(replay) == ["m3", "m4", "m5"]
    assert [f["offset"] for f in replay] == [3, 4, 5]
    assert all(f["catchup"] for f in replay)
    post(api, channel, "m6")
    live = second.frames(1)
    assert texts(live) == ["m6"] and live[0]["catchup"] is False
    assert second.quiet(0.3) == []


def test_resume_with_another_epoch_says_resume_failed_then_goes_live(api, stream):
    channel = f"room-{uuid.uuid4().hex[:8]}"
    conn_id = api.connect("lee", [channel])["conn_id"]
    resume = {channel: ["not-the-epoch", 3], "not-joined": ["e", 1]}
    client = stream(auth={"conn_id": conn_id, "resume": resume}, transports=["polling"])
    client.next("user_connect")
    failed = client.next("message")[1]
    assert {f["type"] for f in failed} == {"resume_failed"}
    assert {f["channel"] for f in failed} == {channel, "not-joined"}
    post(api, channel, "live")
    assert texts(client.frames(1)) == ["live"]


def test_a_newer_transport_of_the_connection_replaces_the_socket(api, stream, sio_server):
    conn_id = api.connect("mia", ["lobby"])["conn_id"]
    old = stream(auth={"conn_id": conn_id})
    old.next("user_connect")
    new = stream(auth={"conn_id": conn_id})
    new.next("user_connect")
    assert "replaced by a newer transport" in old.next("error")[1]["message"]
    old.next("disconnect")
    post(api, "lobby", "to the new one")
    assert texts(new.frames(1)) == ["to the new one"]
    assert door_status(sio_server)["state"] == "running"


def test_api_disconnect_ends_the_socket(api, stream):
    conn_id = api.connect("ned", ["lobby"])["conn_id"]
    client = stream(auth={"conn_id": conn_id})
    client.next("user_connect")
    api.disconnect(conn_id)
    assert "connection closed" in client.next("error")[1]["message"]
    client.next("disconnect")
