"""ChatState's side of a connection handover, in process: ``hand_over`` on the
owner, ``find_connection`` (through ``Directory.take_over``) on the taker.

Two ChatStates on one Hub stand for two processes on one shared engine (the
same channels, epochs and offsets). The Redis side is tests/engines/test_handover.py.
"""

from __future__ import annotations

import pytest

from channelstream.chat import ChatConfig, ChatState
from channelstream.chat.channels import ChannelSettings
from channelstream.chat.directory import Directory
from channelstream.chat.state import REASON_MOVED
from channelstream.chat.transport import Positions
from channelstream.errors import NotFound
from channelstream.hub import Hub

from .test_state import Recorder, frames


class Peer(Directory):
    """A shared directory whose other process is ``owner``: it hands every
    connection it has over."""

    shared = True

    def __init__(self) -> None:
        super().__init__()
        self.owner: ChatState | None = None

    def take_over(self, conn_id, adopt):
        if self.owner is None or conn_id not in self.owner.connections:
            return None
        return adopt(self.owner.hand_over(conn_id, "taker"))


@pytest.fixture
def pair():
    hub = Hub()
    config = ChatConfig(gc_conns_after=30, gc_users_after=60, gc_channels_after=120)
    owner = ChatState(hub, config)
    directory = Peer()
    directory.owner = owner
    return owner, ChatState(hub, config, directory=directory)


def post(chat, channel, *numbers):
    chat.post_messages(
        [{"channel": channel, "user": "poster", "message": {"n": n}} for n in numbers]
    )


def test_the_taker_goes_on_where_the_owners_reader_stood_and_nobody_sees_a_part(pair):
    owner, taker = pair
    presence = ChannelSettings(notify_presence=True)
    bob = owner.connect("bob", channels=["a"], channel_configs={"a": presence})["conn_id"]
    ann = owner.connect("ann", channels=["a", "b"])["conn_id"]
    owner.subscribe(ann, ["c"], by_backend=False)  # joined by the client itself
    transport = Recorder()
    owner.attach(owner.connections[ann], transport, {}, resume_aware=True)
    frames(owner, bob)
    post(owner, "a", 1, 2, 3)
    Positions(owner.connections[ann]).news()  # as a resume-aware transport does
    owner.connections[ann].outbox.drain(limit=1)  # the client got 1; 2 and 3 wait
    moved = taker.find_connection(ann)
    assert ann not in owner.connections and transport.kicks == [REASON_MOVED]
    assert moved.channels == {"a", "b", "c"} and moved.granted == {"a", "b"}
    assert moved.user.name == "ann" and set(moved.told) == {"", "a", "b", "c"}
    assert [f["message"] for f in frames(taker, ann)] == [{"n": 2}, {"n": 3}]
    post(owner, "b", 4)
    assert [f["message"] for f in frames(taker, ann)] == [{"n": 4}]
    assert [f["type"] for f in frames(owner, bob)] == ["message"] * 3  # no parted frame
    assert owner.channels["a"].members == {"bob": {bob}}  # the owner's view only


def test_a_connection_nobody_has_is_unknown_and_a_local_directory_takes_nothing(pair):
    owner, taker = pair
    with pytest.raises(NotFound):
        taker.find_connection("nope")
    ann = taker.connect("ann", channels=["a"])["conn_id"]
    with pytest.raises(NotFound):
        owner.find_connection(ann)  # hub.engine = local: unknown, as ever
    assert taker.find_connection(ann) is taker.connections[ann]


def test_a_transport_attaching_to_a_connection_that_moved_meanwhile_is_kicked(pair):
    owner, taker = pair
    ann = owner.connect("ann", channels=["a"])["conn_id"]
    found = owner.connections[ann]  # a transport found it, then it moved
    taker.find_connection(ann)
    late = Recorder()
    assert owner.attach(found, late, {}) == []
    assert late.kicks == [REASON_MOVED] and found.transport is None
