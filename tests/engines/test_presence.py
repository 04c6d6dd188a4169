"""The presence scripts and records on a real Redis (no server): joined and parted
are decided once, expired members are swept (and reported once), state changes
under WATCH keep every key."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from channelstream.engines.presence import Presence
from channelstream.engines.records import Records

from .test_redis import REDIS_URL, require_redis

pytestmark = [pytest.mark.broker, pytest.mark.timeout(30)]


@pytest.fixture
def engine() -> Iterator[tuple[redis.Redis, str]]:
    require_redis()
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"cs-presence-{uuid.uuid4().hex[:8]}:"
    yield client, prefix
    keys = client.keys(prefix + "*")
    if keys:
        client.delete(*keys)


def test_first_and_last_connection_of_a_user_are_decided_once(engine):
    client, prefix = engine
    presence = Presence(prefix, ttl=30)
    presence.load(client)
    now = int(time.time() * 1000)  # keys expire at absolute times: a real clock
    assert presence.join(client, "channel:r", [("c1", "ann")], now) == [b"ann"]
    assert presence.join(client, "channel:r", [("c2", "ann"), ("c3", "bob")], now) == [b"bob"]
    assert presence.join(client, "channel:r", [("c1", "ann")], now) == []  # a refresh
    assert presence.leave(client, "channel:r", "c1") == [b"ann", 0]  # c2 is still there
    assert presence.leave(client, "channel:r", "c1") == []  # twice: nothing
    assert presence.leave(client, "channel:r", "c2") == [b"ann", 1]
    parted, members = presence.parse_sweep(presence.sweep(client, "channel:r", now, read=True))
    assert parted == [] and members == {"bob": ["c3"]}


def test_expired_members_are_swept_once_and_never_listed(engine):
    client, prefix = engine
    presence = Presence(prefix, ttl=4)  # members expire 3 s after their last refresh
    presence.load(client)
    now = int(time.time() * 1000)
    presence.join(client, "channel:r", [("dead1", "zed"), ("dead2", "zed")], now - 3_500)
    presence.join(client, "channel:r", [("live", "amy")], now)
    first = presence.parse_sweep(presence.sweep(client, "channel:r", now, read=True))
    assert first == (["zed"], {"amy": ["live"]})
    assert presence.parse_sweep(presence.sweep(client, "channel:r", now, read=True)) == (
        [],
        {"amy": ["live"]},
    )
    keys = presence.keys("channel:r")
    assert client.pttl(keys[0]) > 0  # the keys themselves expire too


def test_user_state_changes_under_watch_and_connection_records(engine):
    client, prefix = engine
    records = Records(prefix, ttl=30, user_ttl=60)

    def set_key(key, value):
        def change(state, keys, created):
            state[key] = value
            return created

        return change

    assert records.change_user(client, "ann", set_key("a", 1)) is True
    assert records.change_user(client, "ann", set_key("b", 2)) is False
    assert records.users(client, ["ann", "nobody"]) == {"ann": ({"a": 1, "b": 2}, [])}
    records.own(client, "c1", "ann", "proc-1")
    assert records.owner(client, "c1") == ("proc-1", "ann")
    records.disown(client, "c1", "proc-2")  # not its owner: kept
    assert records.owner(client, "c1") == ("proc-1", "ann")
    records.disown(client, "c1", "proc-1")
    assert records.owner(client, "c1") is None
