"""ChatState adopts a connection all or nothing (channelstream/chat/adoption.py), in process.

Two ChatStates on one Hub stand for two processes on one shared engine; the
taker's directory hands it the owner's connections and, like the Redis
record, keeps what a handover said (``conn_id``, ``username``, ``channels``,
``granted``) to rebuild the connection from when the owner no longer has it.
The engine refusing a new subscription is the hub raising the engine's own
``EngineUnavailable`` for one hub channel. The Redis side is
tests/engines/test_adoption.py.
"""

from __future__ import annotations

import pytest

from channelstream.chat import ChatConfig, ChatState
from channelstream.chat.channels import ChannelSettings
from channelstream.chat.directory import Directory
from channelstream.hub import Hub
from channelstream.hub.bus import EngineUnavailable

from .test_state import frames


class Recording(Directory):
    """A shared directory whose other process is ``owner`` (see the module
    doc); it notes the channels each connection had at each note."""

    shared = True

    def __init__(self) -> None:
        super().__init__()
        self.owner: ChatState | None = None
        self.record: dict | None = None
        self.notes: list[tuple[str, list[str]]] = []

    def take_over(self, conn_id, adopt):
        if self.owner is not None and conn_id in self.owner.connections:
            state = self.owner.hand_over(conn_id, "taker")
            self.record = {k: state[k] for k in ("conn_id", "username", "channels", "granted")}
            return adopt(state)
        if self.record is not None and self.record["conn_id"] == conn_id:
            return adopt(dict(self.record))  # rebuilt from the record
        return None

    def opened(self, connection):
        self.notes.append(("opened", sorted(connection.channels)))

    def joined(self, channel, user, conn_id):
        self.notes.append(("joined", sorted(self.chat.connections[conn_id].channels)))
        return super().joined(channel, user, conn_id)


@pytest.fixture
def hub():
    return Hub()


@pytest.fixture
def pair(hub):
    config = ChatConfig(gc_conns_after=30, gc_users_after=60, gc_channels_after=120)
    owner = ChatState(hub, config)
    directory = Recording()
    directory.owner = owner
    return owner, ChatState(hub, config, directory=directory)


def refusing(hub, monkeypatch, refused):
    """The hub refuses to subscribe to hub channel ``refused``, as an engine
    that cannot follow a new channel does."""
    subscribe = hub.subscribe

    def refuse(outbox, channel, **options):
        if channel == refused:
            raise EngineUnavailable(f"redis at test is unavailable: following {channel} refused")
        return subscribe(outbox, channel, **options)

    monkeypatch.setattr(hub, "subscribe", refuse)


def post(chat, channel, *numbers):
    chat.post_messages(
        [{"channel": channel, "user": "poster", "message": {"n": n}} for n in numbers]
    )


def test_a_refused_subscription_leaves_nothing_and_a_retry_rebuilds_every_channel(
    pair, hub, monkeypatch
):
    owner, taker = pair
    presence = ChannelSettings(notify_presence=True)
    configs = dict.fromkeys("abc", presence)
    bob = owner.connect("bob", channels=["a", "b", "c"], channel_configs=configs)["conn_id"]
    ann = owner.connect("ann", channels=["a", "b", "c"], channel_configs=configs)["conn_id"]
    frames(owner, bob)
    refusing(hub, monkeypatch, "channel:b")  # the user's channel and a go through
    with pytest.raises(EngineUnavailable, match="channel:b"):
        taker.find_connection(ann)
    assert ann not in owner.connections and ann not in taker.connections  # handed, not made
    assert ann not in taker.users["ann"].connections
    assert all(not channel.members for channel in taker.channels.values())
    assert taker.directory.notes == []  # no record written, no presence note
    assert not any(sub.outbox.name == ann for ch in hub.channels() for sub in ch.subscriptions)
    assert frames(owner, bob) == []  # nobody saw a part
    monkeypatch.undo()
    moved = taker.find_connection(ann)  # rebuilt from the record, every channel
    assert moved.channels == {"a", "b", "c"} and moved.granted == {"a", "b", "c"}
    full = ["a", "b", "c"]  # every note of the record lists every channel
    assert taker.directory.notes == [("opened", full)] + [("joined", full)] * 3
    assert frames(taker, ann) == []
    post(owner, "a", 1)
    post(owner, "b", 2)
    post(owner, "c", 3)
    assert [(f["channel"], f["message"]) for f in frames(taker, ann)] == [
        ("a", {"n": 1}), ("b", {"n": 2}), ("c", {"n": 3})
    ]


def test_an_outbox_closed_while_subscribing_closes_the_connection_made_in_full(
    pair, hub, monkeypatch
):
    owner, taker = pair
    ann = owner.connect("ann", channels=["a", "b"])["conn_id"]
    subscribe = hub.subscribe

    def closing(outbox, channel, **options):  # e.g. past its hard limit at the replay
        subscription = subscribe(outbox, channel, **options)
        if channel == "channel:b":
            outbox.close("too slow", discard=True)
        return subscription

    monkeypatch.setattr(hub, "subscribe", closing)
    moved = taker.find_connection(ann)
    assert moved.closed and ann not in taker.connections
    assert all(not channel.members for channel in taker.channels.values())
