"""ClientJoins: the rules of clients' own joins, and the count of channels they created."""

from __future__ import annotations

import pytest

from channelstream.chat import ChatConfig, ChatState
from channelstream.chat.joins import ANY, JoinRules
from channelstream.errors import Forbidden
from channelstream.hub import Hub

from ..hub.fakes import FakeClock


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def chat(clock):
    state = ChatState(Hub(), ChatConfig(gc_channels_after=120), monotonic=clock.monotonic)
    state.joins.rules = JoinRules(ANY, max_per_user=1, max_total=10)
    return state


def test_a_collected_channel_no_longer_counts_against_its_creator(chat, clock):
    connection = chat.connections[chat.connect("maker")["conn_id"]]
    chat.joins.join(connection, ["first"])
    with pytest.raises(Forbidden, match="max_client_channels_per_user"):
        chat.joins.join(connection, ["second"])
    chat.unsubscribe(connection.id, ["first"], by_backend=False)
    clock.mono += 121
    assert chat.collect()["channels"] == 1
    assert chat.joins.created == {}
    connection = chat.connections[chat.connect("maker")["conn_id"]]
    chat.joins.join(connection, ["second"])
    assert chat.channels["second"].created_by == "maker"


def test_channels_the_backend_made_are_not_counted(chat):
    chat.connect("backend-user", channels=["made-by-backend"])
    connection = chat.connections[chat.connect("maker")["conn_id"]]
    chat.joins.join(connection, ["made-by-backend"])
    assert chat.joins.created == {}
    assert chat.channels["made-by-backend"].created_by is None
