"""The follower's view of a folder (FollowerStore) and the owner's relay, in process.

The owner's Store writes a folder; a FollowerStore on the same folder is fed
the owner's events (as the link carries them) or reads the folder, and must
say what the owner says: streams, states, sizes, the end of a replaced or
deleted one. The Relay coalesces "grew" events, keeps events while the engine
is down and sends a snapshot when it is back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from channelstream.hub.bus import EngineUnavailable
from loom.errors import NotOwner
from loom.events import event_body
from loom.link import FolderLink, Relay, folder_id, read_owner
from loom.mirror import FollowerStore
from loom.store import ABORTED, FINISHED, LIVE, Store


def pair(root: Path) -> tuple[Store, FollowerStore, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    owner = Store(root, notify=lambda stream, event: events.append(event_body(stream, event)))
    owner.open()
    follower = FollowerStore(root)
    follower.open()
    return owner, follower, events


def feed(follower: FollowerStore, events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    changes = [(s.id, e) for body in events for s, e in follower.apply(body)]
    events.clear()
    return changes


def test_events_keep_the_follower_where_the_owner_is(tmp_path):
    owner, follower, events = pair(tmp_path)
    stream, _ = owner.create("build-1", {"task": 1})
    owner.append(stream, b"abc")
    owner.append(stream, b"de")
    assert feed(follower, events) == [("build-1", "start"), ("build-1", "data"),
                                      ("build-1", "data")]
    mirrored = follower.get("build-1")
    assert (mirrored.state, mirrored.size, mirrored.stored) == (LIVE, 5, 5)
    assert mirrored.metadata == {"task": 1}
    owner.finish(stream)
    assert feed(follower, events) == [("build-1", "end")]
    assert mirrored.state == FINISHED and mirrored.ended == stream.ended
    owner.delete("build-1")
    assert feed(follower, events) == [("build-1", "delete")]
    assert follower.find("build-1") is None


def test_a_replaced_stream_ends_for_its_readers_and_the_new_one_starts(tmp_path):
    owner, follower, events = pair(tmp_path)
    first, _ = owner.create("same", None)
    owner.append(first, b"old")
    feed(follower, events)
    old = follower.get("same")
    owner.create("same", None, force=True)
    changes = feed(follower, events)
    assert ("same", "end") in changes and changes[-1] == ("same", "start")
    assert old.state == ABORTED
    assert follower.get("same") is not old and follower.get("same").live


def test_a_follower_that_missed_events_catches_up_from_the_folder(tmp_path):
    owner, follower, events = pair(tmp_path)
    gone, _ = owner.create("gone", None)
    ended, _ = owner.create("ended", None)
    feed(follower, events)
    owner.append(ended, b"12345")
    owner.finish(ended)
    owner.delete("gone")
    owner.create("new", None)
    events.clear()  # lost on the way
    changes = follower.rescan()
    assert {(s.id, e) for s, e in changes} >= {
        ("gone", "end"), ("gone", "delete"), ("ended", "end"), ("new", "start")
    }
    assert follower.get("ended").state == FINISHED and follower.get("ended").size == 5
    assert gone.state == ABORTED


def test_a_sync_gives_a_new_follower_the_live_streams_sizes(tmp_path):
    owner, _, _ = pair(tmp_path)
    stream, _ = owner.create("early", None)
    owner.append(stream, b"before the follower")
    late = FollowerStore(tmp_path)
    late.open()
    assert late.get("early").stored == 0  # the metadata file knows no size while live
    snapshot = {"event": "sync", "streams": [s.info() for s in owner.live_streams()]}
    assert [(s.id, e) for s, e in late.apply(snapshot)] == [("early", "data")]
    assert late.get("early").stored == len(b"before the follower")


def test_the_follower_refuses_writes_naming_the_owner(tmp_path):
    _, follower, _ = pair(tmp_path)
    (tmp_path / ".lock").write_text("4242 http://10.0.0.5:8000\n")
    with pytest.raises(NotOwner) as refused:
        follower.create("x", None)
    assert refused.value.status == 503
    assert refused.value.as_dict()["owner"] == {"pid": "4242", "url": "http://10.0.0.5:8000"}
    assert refused.value.headers() == {"X-Loom-Owner": "http://10.0.0.5:8000"}
    with pytest.raises(NotOwner):
        follower.delete("x")
    assert follower.purge(max_age=1) == []
    assert read_owner(tmp_path / "nowhere") == {"pid": "?", "url": None}


def test_the_folder_id_is_made_once_and_read_by_everyone(tmp_path):
    first = folder_id(tmp_path)
    assert folder_id(tmp_path) == first and len(first) == 16


class FakeHub:
    """What the link needs of a hub with a shared engine that can be down."""

    def __init__(self) -> None:
        self.published: list[list[dict[str, Any]]] = []
        self.down = False

    def configure_channel(self, name: str, config: Any) -> None:
        pass

    def shared(self, name: str) -> bool:
        return True

    def publish_many(self, messages: list) -> list:
        if self.down:
            raise EngineUnavailable("redis at test is unavailable: down")
        self.published.append([m.body for m in messages])
        return [None] * len(messages)


def test_the_relay_coalesces_growth_keeps_order_and_survives_an_outage(tmp_path):
    hub = FakeHub()
    relay = Relay(FolderLink(hub, tmp_path), lambda: {"owner": {}, "streams": []})  # type: ignore[arg-type]
    relay.offer({"id": "a", "event": "start"})
    for size in (1, 2, 3):
        relay.offer({"id": "a", "event": "data", "size": size})
    relay.offer({"id": "b", "event": "data", "size": 9})
    relay.offer({"id": "a", "event": "end", "size": 3})
    relay.offer({"id": "a", "event": "data", "size": 4})  # after the end: kept apart
    assert relay._flush()
    assert hub.published[-1] == [
        {"id": "a", "event": "start"},
        {"id": "a", "event": "data", "size": 3},
        {"id": "b", "event": "data", "size": 9},
        {"id": "a", "event": "end", "size": 3},
        {"id": "a", "event": "data", "size": 4},
    ]
    assert relay.coalesced == 2
    hub.down = True
    relay.offer({"id": "c", "event": "start"})
    assert not relay._flush()
    relay.offer({"id": "c", "event": "end"})
    assert relay.status()["engine"] == "down" and relay.status()["pending"] == 2
    hub.down = False
    assert relay._flush()
    assert hub.published[-1] == [{"id": "c", "event": "start"}, {"id": "c", "event": "end"}]
    assert relay._flush()  # the snapshot queued when the engine came back
    assert hub.published[-1] == [{"event": "sync", "owner": {}, "streams": []}]
