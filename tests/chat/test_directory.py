"""The chat's directory: the in-process answer, and the wire form of forwarded calls."""

from __future__ import annotations

from channelstream.chat import ChatState
from channelstream.chat.channels import ChannelSettings
from channelstream.chat.directory import LocalDirectory, from_wire, to_wire
from channelstream.chat.info import Info
from channelstream.hub import Hub


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
