"""The chat's directory: the in-process answer, and the wire form of forwarded calls."""

from __future__ import annotations

import pytest

from channelstream.chat import ChatState
from channelstream.chat.channels import ChannelSettings
from channelstream.chat.directory import LocalDirectory, from_wire, to_wire
from channelstream.chat.info import Info
from channelstream.hub import Hub
from channelstream.hub.bus import EngineUnavailable


def test_forwarded_arguments_survive_the_wire_typed():
    args = to_wire(
        conn_id="c",
        channels=("a", "b"),
        channel_configs={"a": ChannelSettings(notify_presence=True)},
        info=Info(channels=("a",), include_connections=True),
        user_state={"k": 1},
    )
    import json

    back = from_wire(json.loads(json.dumps(args)))
    assert back["channels"] == ["a", "b"] and back["user_state"] == {"k": 1}
    assert back["channel_configs"] == {"a": ChannelSettings(notify_presence=True)}
    assert back["info"] == Info(channels=("a",), include_connections=True)
    assert from_wire(to_wire(channel_configs=None))["channel_configs"] is None


def test_the_local_directory_answers_from_the_chat_itself():
    chat = ChatState(Hub())
    assert isinstance(chat.directory, LocalDirectory) and not chat.directory.shared
    first = chat.connect("ann", channels=["r"])
    chat.connect("ann", channels=["r"])
    assert chat.directory.members(["r", "none"]) == {"r": {"ann": sorted(chat.connections)}}
    assert chat.directory.owner(first["conn_id"]) is None
    assert chat.directory.user_exists("ann") and not chat.directory.user_exists("bob")
    assert chat.directory.channel_names() == ["r"] and chat.directory.channel_exists("r")


def test_the_local_engine_loads_no_engine():
    import subprocess
    import sys

    probe = (
        "import sys; from channelstream.settings import default_settings; "
        "from channelstream.wsgi_app import build_app; "
        "from channelstream.chat import CHAT_KEY; "
        "chat = build_app(default_settings()).registry[CHAT_KEY]; "
        "print(type(chat.directory).__name__, "
        "sorted(m for m in sys.modules if m.startswith('channelstream.engines.')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.split() == ["Directory", "[]"]  # (socket.io itself imports redis-py)


class HistorySpy(LocalDirectory):
    """The local directory, recording its history calls; ``down`` makes them raise."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.down = False

    def remember(self, entries):
        self.calls.append(("remember", [(c.name, e["uuid"]) for c, e in entries]))
        if self.down:
            raise EngineUnavailable("redis at test is unavailable")
        super().remember(entries)

    def change_history(self, changes):
        self.calls.append(("change", [(c.name, u, e is None) for c, u, e in changes]))
        if self.down:
            raise EngineUnavailable("redis at test is unavailable")
        super().change_history(changes)


def history_of(chat, name):
    info = chat.channels_info(Info(channels=(name,), include_users=False))
    return info["channels"][name]["history"]


def test_the_local_directory_keeps_history_in_the_channel_trimmed_with_edits_and_deletes():
    spy = HistorySpy()
    chat = ChatState(Hub(), directory=spy)
    chat.channel_config({"kept": ChannelSettings(store_history=True, history_size=3)})
    chat.channel_config({"plain": ChannelSettings()})
    posted = chat.post_messages(
        [{"channel": "kept", "user": "ann", "message": {"n": n, "l": []}} for n in range(4)]
        + [{"channel": "kept", "user": "ann", "message": {"n": 9}, "no_history": True}]
        + [{"channel": "plain", "user": "ann", "message": {"n": 5}}]
    )
    # One call for the POST, only the kept channel's items without no_history.
    assert spy.calls == [("remember", [("kept", item["uuid"]) for item in posted[:4]])]
    assert [h["message"] for h in history_of(chat, "kept")] == [
        {"n": n, "l": []} for n in (1, 2, 3)  # history_size 3
    ]
    assert history_of(chat, "plain") == [] and list(chat.channels["plain"].history) == []
    chat.edit_messages([{"uuid": posted[2]["uuid"], "channel": "kept", "message": {"n": 20}}])
    chat.delete_messages(
        [{"uuid": posted[1]["uuid"], "channel": "kept"}, {"uuid": "none", "channel": "kept"}]
    )
    assert spy.calls[-1] == (
        "change",
        [("kept", posted[1]["uuid"], True), ("kept", "none", True)],  # one call per DELETE
    )
    history = history_of(chat, "kept")
    assert [h["message"] for h in history] == [{"n": 20}, {"n": 3, "l": []}]
    assert history[0]["edited"] is not None and history[1]["edited"] is None
    assert set(history[1]) == {
        "channel", "uuid", "timestamp", "user", "message", "edited", "type",
        "pm_users", "exclude_users",
    }  # fmt: skip
    assert chat.channels["kept"].messages == 5 and chat.messages_posted == 6


def test_a_post_to_channels_without_history_never_asks_the_directory():
    spy = HistorySpy()
    chat = ChatState(Hub(), directory=spy)
    chat.connect("ann", channels=["plain"])
    chat.post_messages([{"channel": "plain", "user": "ann", "message": {"n": n}} for n in range(3)])
    chat.post_messages([{"pm_users": ["ann"], "user": "sys", "message": {}}])
    assert spy.calls == []


def test_history_the_directory_cannot_take_stops_the_post_before_anything_is_sent():
    spy = HistorySpy()
    chat = ChatState(Hub(), directory=spy)
    chat.channel_config({"kept": ChannelSettings(store_history=True)})
    conn_id = chat.connect("ann", channels=["kept"])["conn_id"]
    outbox = chat.connections[conn_id].outbox
    outbox.drain()
    kept = {"channel": "kept", "user": "ann", "message": {"n": 1}}
    posted = chat.post_messages([kept])
    assert len(outbox.drain()) == 1
    spy.down = True
    with pytest.raises(EngineUnavailable):
        chat.post_messages([{"channel": "kept", "user": "ann", "message": {"n": 2}}])
    with pytest.raises(EngineUnavailable):
        chat.delete_messages([{"uuid": posted[0]["uuid"], "channel": "kept"}])
    assert outbox.drain() == []  # nothing published
    assert chat.messages_posted == 1 and chat.channels["kept"].messages == 1
    assert [h["message"] for h in history_of(chat, "kept")] == [{"n": 1}]


class SettingsSpy(LocalDirectory):
    """The local directory, recording ``save_settings``; ``down`` makes it raise."""

    def __init__(self):
        super().__init__()
        self.saved = []
        self.down = False

    def save_settings(self, configs):
        if self.down:
            raise EngineUnavailable("redis at test is unavailable")
        self.saved.append(dict(configs))


def test_a_channel_config_the_directory_cannot_take_changes_no_channel():
    spy = SettingsSpy()
    chat = ChatState(Hub(), directory=spy)
    old = ChannelSettings(notify_presence=True)
    chat.channel_config({"room": old})
    hub_config = chat.hub.channel_config("channel:room")
    spy.down = True
    new = ChannelSettings(store_history=True, history_size=500)
    with pytest.raises(EngineUnavailable):
        chat.channel_config({"room": new, "fresh": new})
    assert chat.channels["room"].settings is old and "fresh" not in chat.channels
    assert chat.hub.channel_config("channel:room") == hub_config  # its frames' history too
    spy.down = False
    chat.channel_config({"room": new, "fresh": new})  # one call for all the channels
    assert spy.saved == [{"room": old}, {"room": new, "fresh": new}]
    assert chat.channels["room"].settings == new == chat.channels["fresh"].settings
    assert chat.hub.channel_config("channel:room").history_size == 500
