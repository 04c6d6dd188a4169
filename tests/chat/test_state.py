"""ChatState on a real hub: the channelstream operations and their frames."""

import json

import pytest

from channelstream.chat import PM_RESUME_KEY, ChatConfig, ChatState
from channelstream.chat.channels import ChannelSettings
from channelstream.chat.frames import encode_batch
from channelstream.errors import Conflict, NotFound
from channelstream.hub import ChannelConfig, Hub

from ..hub.fakes import FakeClock

PRESENCE = ChannelSettings(
    notify_presence=True,
    store_history=True,
    history_size=3,
    broadcast_presence_with_user_lists=True,
    notify_state=True,
)


class Recorder:
    """Stands for a transport: records kicks."""

    kind = "test"

    def __init__(self):
        self.kicks = []

    def kick(self, reason):
        self.kicks.append(reason)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def chat(clock):
    return ChatState(
        Hub(),
        ChatConfig(gc_conns_after=30, gc_users_after=60, gc_channels_after=120),
        monotonic=clock.monotonic,
    )


def frames(chat, conn_id):
    outbox = chat.connections[conn_id].outbox
    batch = outbox.drain()
    return json.loads(encode_batch(batch, outbox.last_replayed))


def test_connect_answers_the_0_7_1_shape(chat):
    answer = chat.connect(
        "ann",
        channels=["b", "a", "a"],
        fresh_user_state={"color": "red", "secret": 1},
        state_public_keys=["color"],
    )
    assert set(answer) == {
        "conn_id",
        "state",
        "username",
        "public_state",
        "channels",
        "channels_info",
    }
    assert answer["username"] == "ann"
    assert answer["state"] == {"color": "red", "secret": 1}
    assert answer["public_state"] == {"color": "red"}
    assert answer["channels"] == ["a", "a", "b"]
    info = answer["channels_info"]
    assert sorted(info["channels"]) == ["a", "b"]
    channel = info["channels"]["a"]
    assert channel["users"] == ["ann"] and channel["total_users"] == 1
    assert channel["settings"] == ChannelSettings().as_dict()
    assert info["users"] == [{"user": "ann", "state": {"color": "red", "secret": 1}}]


def test_a_repeated_connect_with_a_live_conn_id_reuses_the_connection(chat):
    first = chat.connect("ann", channels=["a"])
    again = chat.connect("ann", conn_id=first["conn_id"], channels=["a", "b"])
    assert again["conn_id"] == first["conn_id"]
    assert len(chat.connections) == 1
    assert chat.connections[first["conn_id"]].channels == {"a", "b"}
    with pytest.raises(Conflict):
        chat.connect("bob", conn_id=first["conn_id"])


def test_presence_joined_and_parted_with_user_lists(chat):
    chat.channel_config({"room": PRESENCE})
    ann = chat.connect(
        "ann", channels=["room"], state_public_keys=["mood"], fresh_user_state={"mood": "ok"}
    )["conn_id"]
    bob = chat.connect("bob", channels=["room"])["conn_id"]
    joined = frames(chat, ann)
    assert [f["type"] for f in joined] == ["presence"]
    assert joined[0]["message"] == {"action": "joined"} and joined[0]["user"] == "bob"
    assert [u["user"] for u in joined[0]["users"]] == ["ann", "bob"]
    assert frames(chat, bob) == []  # nobody is told of their own arrival
    chat.unsubscribe(bob, ["room"])
    parted = frames(chat, ann)
    assert parted[0]["message"] == {"action": "parted"} and parted[0]["state"] is None
    assert [u["user"] for u in parted[0]["users"]] == ["ann"]


def test_a_second_connection_of_a_user_is_not_a_new_presence(chat):
    chat.channel_config({"room": PRESENCE})
    ann = chat.connect("ann", channels=["room"])["conn_id"]
    chat.connect("bob", channels=["room"])
    frames(chat, ann)
    second = chat.connect("bob", channels=["room"])["conn_id"]
    assert frames(chat, ann) == []
    chat.disconnect(second)
    assert frames(chat, ann) == []


def test_messages_reach_the_channel_with_pm_and_exclusions(chat):
    ids = {name: chat.connect(name, channels=["room"])["conn_id"] for name in ("ann", "bob", "cid")}
    chat.post_messages(
        [
            {"channel": "room", "user": "sys", "message": {"text": "all"}},
            {
                "channel": "room",
                "user": "sys",
                "message": {"text": "pm"},
                "pm_users": ["ann", "bob"],
            },
            {
                "channel": "room",
                "user": "sys",
                "message": {"text": "no bob"},
                "exclude_users": ["bob"],
            },
        ]
    )
    texts = {name: [f["message"]["text"] for f in frames(chat, conn)] for name, conn in ids.items()}
    assert texts == {"ann": ["all", "pm", "no bob"], "bob": ["all", "pm"], "cid": ["all", "no bob"]}


def test_global_private_messages_reach_every_connection_of_the_user(chat):
    a1 = chat.connect("ann")["conn_id"]
    a2 = chat.connect("ann")["conn_id"]
    bob = chat.connect("bob")["conn_id"]
    echo = chat.post_messages([{"pm_users": ["ann", "ghost"], "user": "sys", "message": {"x": 1}}])
    assert echo[0]["pm_users"] == ["ann", "ghost"]
    for conn in (a1, a2):
        (frame,) = frames(chat, conn)
        assert frame["channel"] is None and frame["message"] == {"x": 1}
        assert frame["type"] == "message" and frame["catchup"] is False
    assert frames(chat, bob) == []


def test_message_frames_carry_offset_and_epoch(chat):
    ann = chat.connect("ann", channels=["room"])["conn_id"]
    chat.post_messages([{"channel": "room", "user": "sys", "message": {}}] * 2)
    got = frames(chat, ann)
    assert [f["offset"] for f in got] == [1, 2]
    assert got[0]["epoch"] == chat.hub.channel("channel:room").epoch


def test_items_without_target_or_for_unknown_channels_are_not_delivered(chat):
    ann = chat.connect("ann", channels=["room"])["conn_id"]
    echo = chat.post_messages(
        [
            {"user": "sys", "message": {}},
            {"channel": "nowhere", "user": "sys", "message": {}},
        ]
    )
    assert [e["channel"] for e in echo] == ["nowhere"]
    assert "nowhere" not in chat.channels
    assert frames(chat, ann) == []


def test_history_keeps_messages_with_edits_and_deletes(chat):
    chat.channel_config({"room": PRESENCE})
    ann = chat.connect("ann", channels=["room"])["conn_id"]
    posted = chat.post_messages(
        [{"channel": "room", "user": "ann", "message": {"text": f"m{i}"}} for i in range(4)]
    )
    chat.post_messages(
        [{"channel": "room", "user": "ann", "message": {"t": 1}, "no_history": True}]
    )
    history = chat.channels["room"].history
    assert [h["message"]["text"] for h in history] == ["m1", "m2", "m3"]  # history_size 3
    chat.edit_messages(
        [{"uuid": posted[2]["uuid"], "channel": "room", "message": {"text": "edited"}}]
    )
    chat.delete_messages([{"uuid": posted[1]["uuid"], "channel": "room"}])
    info = chat.channels_info(chat._info_for(["room"], None))
    assert [h["message"]["text"] for h in info["channels"]["room"]["history"]] == ["edited", "m3"]
    assert info["channels"]["room"]["history"][0]["edited"] is not None
    types = [f["type"] for f in frames(chat, ann)]
    assert types[-2:] == ["message:edit", "message:delete"]


def test_user_state_changes_reach_notify_state_channels(chat):
    chat.channel_config({"room": PRESENCE, "quiet": ChannelSettings()})
    ann = chat.connect("ann", channels=["room", "quiet"], state_public_keys=["status"])["conn_id"]
    answer = chat.set_user_state("ann", {"status": "away", "private": 2})
    assert answer["changed_state"] == [
        {"key": "status", "value": "away"},
        {"key": "private", "value": 2},
    ]
    (frame,) = frames(chat, ann)
    assert frame["type"] == "user_state_change" and frame["channel"] == "room"
    assert frame["message"] == {
        "state": {"status": "away"},
        "changed": [{"key": "status", "value": "away"}],
    }
    assert chat.set_user_state("ann", {"status": "away"})["changed_state"] == []
    with pytest.raises(NotFound):
        chat.set_user_state("ghost", {})


def test_channel_config_replaces_all_settings(chat):
    chat.channel_config({"room": PRESENCE})
    info = chat.channel_config({"room": ChannelSettings(history_size=5)})
    assert info["channels"]["room"]["settings"] == ChannelSettings(history_size=5).as_dict()
    assert info["users"] == []


def test_info_filters_channels_and_state(chat):
    chat.connect(
        "ann", channels=["a", "b"], fresh_user_state={"k": 1, "p": 2}, state_public_keys=["p"]
    )
    from channelstream.chat.state import Info

    everything = chat.channels_info(Info())
    assert sorted(everything["channels"]) == ["a", "b"]
    some = chat.channels_info(
        Info(
            channels=("a", "zzz"),
            exclude_channels=("b",),
            include_users=False,
            include_history=False,
        )
    )
    assert list(some["channels"]) == ["a"] and some["users"] == []
    public = chat.channels_info(Info(return_public_state=True))
    assert public["users"] == [{"user": "ann", "state": {"p": 2}}]


def test_idle_connections_users_and_channels_are_collected(chat, clock):
    chat.channel_config({"room": PRESENCE})
    ann = chat.connect("ann", channels=["room"])["conn_id"]
    bob = chat.connect("bob", channels=["room"])["conn_id"]
    transport = Recorder()
    chat.attach(chat.connections[bob], transport, {})
    frames(chat, ann)
    clock.advance(29_000)
    assert chat.collect()["connections"] == 0
    clock.advance(1_000)
    assert chat.collect() == {"connections": 1, "users": 0, "channels": 0}
    assert ann not in chat.connections and bob in chat.connections
    assert chat.connections[bob].outbox.drain()[0].body["message"] == {"action": "parted"}
    clock.advance(60_000)
    assert chat.collect()["users"] == 1 and "ann" not in chat.users
    chat.disconnect(bob)
    assert transport.kicks == ["connection closed"]
    clock.advance(120_000)
    assert chat.collect()["channels"] == 1 and chat.channels == {}


def test_a_collected_channel_leaves_no_hub_config_behind(chat, clock):
    chat.channel_config({"quiet": ChannelSettings(store_frames=False)})
    assert chat.hub.channel_config("channel:quiet").history_size == 0
    clock.advance(120_000)
    assert chat.collect()["channels"] == 1
    assert chat.hub.channel_config("channel:quiet") == chat.hub.config.default_channel
    chat.connect("ann", channels=["quiet"])  # created again, with the default settings
    assert chat.hub.channel_config("channel:quiet").history_size == 100


def test_a_door_s_persistent_channel_stays_persistent_and_local(chat, clock):
    # the G3 door keeps its channel (and its metadata frames) for the process's life
    chat.hub.configure_channel("channel:g3", ChannelConfig(persistent=True, local=True))
    chat.channel_config({"g3": ChannelSettings(store_history=True, history_size=500)})
    config = chat.hub.channel_config("channel:g3")
    assert (config.history_size, config.persistent, config.local) == (500, True, True)
    clock.advance(120_000)
    assert chat.collect()["channels"] == 1
    assert chat.hub.channel_config("channel:g3").persistent  # not forgotten
    chat.connect("ann", channels=["g3"])
    config = chat.hub.channel_config("channel:g3")
    assert (config.history_size, config.persistent, config.local) == (100, True, True)


def test_attach_kicks_the_previous_transport_and_resumes_by_offset(chat):
    ann = chat.connect("ann", channels=["room"])["conn_id"]
    connection = chat.connections[ann]
    first = Recorder()
    chat.attach(connection, first, {})
    chat.post_messages([{"channel": "room", "user": "s", "message": {"n": i}} for i in range(3)])
    seen = frames(chat, ann)  # the client only got the first of these
    chat.post_messages([{"channel": "room", "user": "s", "message": {"n": 3}}])
    second = Recorder()
    failures = chat.attach(connection, second, {"room": (seen[0]["epoch"], seen[0]["offset"])})
    assert failures == [] and first.kicks == ["replaced by a newer transport"]
    got = frames(chat, ann)
    assert [f["message"]["n"] for f in got] == [1, 2, 3]
    assert [f["catchup"] for f in got] == [True, True, True]


def test_a_resume_that_cannot_be_honoured_is_reported_and_keeps_the_queue(chat):
    ann = chat.connect("ann", channels=["room"])["conn_id"]
    chat.post_messages([{"channel": "room", "user": "s", "message": {}}])
    failures = chat.attach(
        chat.connections[ann],
        Recorder(),
        {"room": ("old-epoch", 5), "other": ("e", 1), PM_RESUME_KEY: ("x", 0)},
    )
    assert [channel for channel, _ in failures] == ["room", "other", PM_RESUME_KEY]
    assert len(frames(chat, ann)) == 1


def test_an_overflowing_connection_is_closed_and_its_transport_kicked(clock):
    from channelstream.hub import HubConfig

    chat = ChatState(Hub(HubConfig(outbox_size=2, outbox_hard_limit=3)), monotonic=clock.monotonic)
    chat.channel_config({"room": PRESENCE})
    ann = chat.connect("ann", channels=["room"])["conn_id"]
    transport = Recorder()
    chat.attach(chat.connections[ann], transport, {})
    watcher = chat.connect("bob", channels=["room"])["conn_id"]
    got = []
    for _ in range(4):  # bob reads as it goes; ann never does
        chat.post_messages([{"channel": "room", "user": "s", "message": {}}])
        got += frames(chat, watcher)
    assert ann not in chat.connections and transport.kicks
    assert chat.stats()["slow_disconnects"] == 1
    assert [f["type"] for f in got] == ["message"] * 3 + ["presence", "message"]
    assert [f["offset"] for f in got] == sorted(f["offset"] for f in got)


def test_a_channel_knows_whether_its_settings_were_given_or_are_the_defaults(chat):
    chat.connect("ann", channels=["plain", "joined"], channel_configs={"joined": PRESENCE})
    chat.channel_config({"configured": ChannelSettings()})  # the defaults, given
    chat.connect("ann", channels=["later"])
    given = {name: channel.given for name, channel in chat.channels.items()}
    assert given == {"plain": False, "joined": True, "configured": True, "later": False}
    chat.connect("bob", channels=["plain"], channel_configs={"plain": PRESENCE})  # it exists
    assert not chat.channels["plain"].given
    chat.settings_changed("later", ChannelSettings())  # another process's, equal to these
    chat.channel_config({"plain": PRESENCE})
    assert chat.channels["later"].given and chat.channels["plain"].given
    chat.connect("ann", channels=["kept"])
    chat.channel_config({"kept": ChannelSettings()})  # the defaults it had, now given
    assert chat.channels["kept"].given
