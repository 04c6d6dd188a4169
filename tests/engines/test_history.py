"""hub.engine = redis: the ``/info`` message history (``store_history``) shared by real processes.

Three servers on one Redis (the fixtures of :mod:`.test_directory`): a
message posted on one shows in ``/info`` on the others, in order, trimmed to
``history_size``, with ``no_history`` items left out; an edit made on one
process and a delete made on another show everywhere. A channel that keeps
no history leaves no history key in Redis. The script's edits keep a body
as it was posted (empty lists, big numbers, newlines).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from channelstream.engines.history import MessageHistory
from tests.support.server import RunningServer

from .sockets import Socket
from .test_directory import api, room, running
from .test_redis import require_redis

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

KEPT = {"store_history": True, "history_size": 3}


@pytest.fixture(scope="module")
def trio(tmp_path_factory) -> Iterator[list[RunningServer]]:
    with running(tmp_path_factory, "cs-hist", 3) as servers:
        yield servers


def listener(server: RunningServer, name: str, configs: dict | None = None) -> Socket:
    """A user in channel ``name`` on ``server`` (``/connect`` there), its websocket there."""
    extra = {"channel_configs": {name: configs}} if configs is not None else {}
    answer = api(server).connect(f"u-{uuid.uuid4().hex[:6]}", [name], **extra)
    return Socket(server, answer["conn_id"])


def history(server: RunningServer, name: str) -> list[dict]:
    return api(server).info(channels=[name])["channels"][name]["history"]


def keys_of(name: str, what: str) -> list[bytes]:
    """The keys of channel ``name`` (rooms are unique: any prefix) ending in ``what``."""
    engine = redis.Redis.from_url(require_redis())
    return list(engine.scan_iter(match=f"*{{channel:{name}}}:{what}"))


BODY = {"text": "line\none", "empty": [], "nested": {"e": {}}, "big": 2**60 + 1, "f": 0.1}


def test_history_posted_on_one_process_is_read_edited_and_deleted_on_the_others(trio):
    first, second, third = trio
    name = room()
    watcher = listener(second, name, KEPT)  # the channel is on the second only
    try:
        posted = api(first).message(
            [{"channel": name, "user": "ann", "message": {"n": n, **BODY}} for n in range(4)]
            + [{"channel": name, "user": "ann", "message": {"n": 9}, "no_history": True}]
        )
        watcher.wait(lambda f: f.get("message", {}).get("n") == 9)
        expected = [{"n": n, **BODY} for n in (1, 2, 3)]  # history_size 3, no_history left out
        for server in trio:
            assert [h["message"] for h in history(server, name)] == expected
        shown = history(third, name)
        assert [h["uuid"] for h in shown] == [p["uuid"] for p in posted[1:4]]
        assert shown[0] == {
            "channel": name,
            "uuid": posted[1]["uuid"],
            "timestamp": posted[1]["timestamp"],
            "user": "ann",
            "message": {"n": 1, **BODY},
            "edited": None,
            "type": "message",
            "pm_users": [],
            "exclude_users": [],
        }
        edit = {"uuid": posted[2]["uuid"], "channel": name, "message": {"n": 20, "l": []}}
        api(second).edit_messages(edit)
        api(second).edit_messages({**edit, "user": "bob"})  # a second edit of the same entry
        api(third).delete_messages({"uuid": posted[1]["uuid"], "channel": name})
        api(third).delete_messages({"uuid": str(uuid.uuid4()), "channel": name})  # none
        watcher.wait(lambda f: f.get("type") == "message:delete")
        for server in trio:
            entries = history(server, name)
            assert [h["message"] for h in entries] == [{"n": 20, "l": []}, {"n": 3, **BODY}]
            assert entries[0]["user"] == "bob" and entries[0]["edited"] is not None
            assert entries[1]["edited"] is None
        assert len(keys_of(name, "history")) == 1
    finally:
        watcher.ws.close()


def test_a_channel_without_store_history_keeps_nothing_in_redis(trio):
    first, second, _ = trio
    name = room()
    watcher = listener(second, name, {"notify_presence": True})  # settings saved, no history
    try:
        api(first).message(
            [{"channel": name, "user": "ann", "message": {"n": n}} for n in range(3)]
        )
        watcher.wait(lambda f: f.get("message") == {"n": 2})
        assert history(first, name) == [] and history(second, name) == []
        assert len(keys_of(name, "settings")) == 1  # (the pattern finds the channel's keys)
        assert keys_of(name, "history") == []
    finally:
        watcher.ws.close()


def test_the_edit_script_keeps_bodies_and_matches_whole_uuids():
    engine = redis.Redis.from_url(require_redis())
    kept = MessageHistory(f"cs-hist-unit-{uuid.uuid4().hex[:8]}:")
    kept.register(engine)
    channel = "channel:c"
    try:
        pipe = engine.pipeline(transaction=True)
        entries = [
            {"uuid": 'a"', "message": {"l": [], "o": {}, "big": 2**63, "x": 1.5e-7}},
            {"uuid": "a", "message": "line\nbreak"},
            {"uuid": "a\n", "message": None},
        ]
        kept.append(pipe, channel, entries, 10, 60_000)
        pipe.execute()
        assert kept.change(engine, channel, "a", {"message": [], "edited": "t"}) == 1
        assert kept.change(engine, channel, 'a"', {"message": {"l": [[]]}}) == 1
        assert kept.change(engine, channel, "a\n", None) == 1
        assert kept.change(engine, channel, "b", None) == 0
        shown = kept.parse(kept.read(engine, channel, 10))
        assert shown == [
            {"uuid": 'a"', "message": {"l": [[]]}},
            {"uuid": "a", "message": [], "edited": "t"},
        ]
        assert 0 < engine.pttl(kept.key(channel)) <= 60_000
        assert kept.parse(kept.read(engine, channel, 1)) == shown[1:]  # the newest
    finally:
        engine.delete(kept.key(channel))
