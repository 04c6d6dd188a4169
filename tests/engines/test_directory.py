"""hub.engine = redis: presence, user state and connections shared by real server processes.

Three servers share one Redis (their own key prefix, a short
``redis.presence_ttl``). Users and websockets live on different processes;
the server API is called on any of them: ``/info`` lists everyone,
``/user_state`` changes a user of another process, ``/subscribe``,
``/unsubscribe`` and ``/disconnect`` reach a connection's own process over
its control channel. A process SIGKILLed: its users part within the ttl and
nobody else stalls. Redis stopped and started again: 503s naming Redis, then
everything back without a restart.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
import requests

from channelstream.chat import ChatState
from channelstream.chat.channels import ChannelSettings
from channelstream.client import ChannelstreamClient, ChannelstreamError
from channelstream.engines.directory import RedisDirectory
from channelstream.hub import Hub
from channelstream.hub.bus import EngineUnavailable
from tests.support.api import API_APP, SECRET
from tests.support.server import REPO, RunningServer
from tests.support.wait import wait_for

from .sockets import Socket
from .test_redis import REDIS_URL, own_redis, require_redis  # noqa: F401 (own_redis: a fixture)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]

#: Seconds a dead process's presence lasts in these tests.
TTL = 3.0


def directory_app(url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {
        **API_APP,
        "hub.engine": "redis",
        "redis.url": url,
        "redis.key_prefix": prefix,
        "redis.presence_ttl": str(TTL),
        "redis.control_timeout": "1",
        **extra,
    }


def start_servers(
    tmp_path_factory, url: str, prefix: str, count: int, **extra: str
) -> list[RunningServer]:
    servers = []
    for index in range(count):
        folder = tmp_path_factory.mktemp(f"p{index}")
        app = directory_app(url, prefix, **extra)
        servers.append(RunningServer(REPO / "development.ini", folder, app=app))
    for server in servers:
        server.start()
    return servers


def delete_keys(url: str, prefix: str) -> None:
    engine = redis.Redis.from_url(url)
    keys = engine.keys(prefix + "*")
    if keys:
        engine.delete(*keys)


@contextmanager
def running(tmp_path_factory, stem: str, count: int, **extra: str) -> Iterator[list[RunningServer]]:
    """``count`` servers on the shared Redis under a prefix of their own
    (``<stem>-<random>:``, deleted after), with ``extra`` app keys."""
    url = require_redis()
    prefix = f"{stem}-{uuid.uuid4().hex[:8]}:"
    servers = start_servers(tmp_path_factory, url, prefix, count, **extra)
    try:
        yield servers
    finally:
        for server in servers:
            server.__exit__(None, None, None)
        delete_keys(url, prefix)


@pytest.fixture(scope="module")
def trio(tmp_path_factory) -> Iterator[list[RunningServer]]:
    with running(tmp_path_factory, "cs-dir", 3) as servers:
        yield servers


def api(server: RunningServer) -> ChannelstreamClient:
    return ChannelstreamClient(server.url, SECRET)


def room() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


PRESENCE = {
    "notify_presence": True,
    "broadcast_presence_with_user_lists": True,
    "notify_state": True,
}


class Client(Socket):
    """A user connected on ``server`` (``/connect`` there) with a websocket there."""

    def __init__(self, server: RunningServer, name: str, channels: list[str], **extra) -> None:
        self.name = name
        configs = dict.fromkeys(channels, PRESENCE)
        answer = api(server).connect(name, channels, channel_configs=configs, **extra)
        self.conn_id = answer["conn_id"]
        super().__init__(server, self.conn_id)


def presence(user: str, action: str):
    return lambda f: (
        f.get("type") == "presence" and f["user"] == user and f["message"]["action"] == action
    )


def test_presence_and_info_of_a_channel_whose_users_are_on_different_processes(trio):
    first, second, third = trio
    name = room()
    bob = Client(second, f"bob-{name}", [name], user_state={"mood": "calm"})
    alice = Client(first, f"alice-{name}", [name], state_public_keys=["color"])
    try:
        joined = bob.wait(presence(alice.name, "joined"))  # alice joined on another process
        assert {u["user"] for u in joined["users"]} == {alice.name, bob.name}
        info = api(third).info(channels=[name], include_connections=True)
        entry = info["channels"][name]
        assert entry["users"] == sorted([alice.name, bob.name])
        assert entry["total_connections"] == 2 and entry["settings"]["notify_presence"]
        assert entry["connections"] == {alice.name: [alice.conn_id], bob.name: [bob.conn_id]}
        states = {u["user"]: u["state"] for u in info["users"]}
        assert states[bob.name] == {"mood": "calm"}
        everything = api(third).info()  # no channel list: every channel of every process
        assert name in everything["channels"]
    finally:
        alice.close()
        bob.close()
    # Closing alice's socket closes her connection (gc_conns_after = 1): bob sees her part.
    # (bob's socket is closed too; the /info check below is enough.)
    wait_for(
        lambda: _users(third, name) in (None, []),
        timeout=15,
        what="both users gone",
    )


def test_user_state_set_on_one_process_is_read_on_another(trio):
    first, second, third = trio
    name = room()
    carol = Client(first, f"carol-{name}", [name], state_public_keys=["status"])
    dave = Client(second, f"dave-{name}", [name])
    try:
        answer = api(third).user_state(carol.name, {"status": "away", "secret": 1})
        assert answer["changed_state"] == [
            {"key": "status", "value": "away"},
            {"key": "secret", "value": 1},
        ]
        change = dave.wait(lambda f: f.get("type") == "user_state_change")
        assert change["user"] == carol.name
        assert change["message"]["changed"] == [{"key": "status", "value": "away"}]
        info = api(second).info(channels=[name], return_public_state=True)
        states = {u["user"]: u["state"] for u in info["users"]}
        assert states[carol.name] == {"status": "away"}
        full = api(first).info(channels=[name])
        assert {u["user"]: u["state"] for u in full["users"]}[carol.name] == {
            "status": "away",
            "secret": 1,
        }
        with pytest.raises(ChannelstreamError) as unknown:
            api(third).user_state(f"nobody-{name}", {"a": 1})
        assert unknown.value.status == 404 and unknown.value.body["field"] == "user"
    finally:
        carol.close()
        dave.close()


def test_subscribe_unsubscribe_and_disconnect_reach_a_connection_of_another_process(trio):
    first, second, third = trio
    name, other = room(), room()
    erin = Client(first, f"erin-{name}", [name])
    try:
        answer = api(second).subscribe(erin.conn_id, [other])  # erin lives on the first
        assert answer["subscribed_to"] == [other]
        assert answer["channels"] == sorted([name, other])
        api(third).message({"channel": other, "user": "poster", "message": {"n": 1}})
        frame = erin.wait(lambda f: f.get("type") == "message")
        assert frame["channel"] == other and frame["message"] == {"n": 1}
        api(third).message({"pm_users": [erin.name], "user": "poster", "message": {"pm": 1}})
        private = erin.wait(lambda f: f.get("message") == {"pm": 1})  # a user of another process
        assert private["channel"] is None and private["pm_users"] == [erin.name]
        left = api(third).unsubscribe(erin.conn_id, [other])
        assert left["unsubscribed_from"] == [other] and left["channels"] == [name]
        with pytest.raises(ChannelstreamError) as unknown:
            api(second).subscribe(str(uuid.uuid4()), [other])
        assert unknown.value.status == 404 and unknown.value.body["field"] == "conn_id"
        assert api(third).disconnect(str(uuid.uuid4())) is False
        assert api(third).disconnect(erin.conn_id) is True
        assert erin.closed()  # the socket on the first process was closed
        info = api(second).info(channels=[name])
        assert info["channels"].get(name, {}).get("users", []) == []
    finally:
        erin.close()


def test_a_connect_with_a_live_conn_id_of_another_process_reuses_that_connection(trio):
    first, second, _ = trio
    name = room()
    frank = Client(first, f"frank-{name}", [name])
    try:
        again = api(second).connect(frank.name, [name], conn_id=frank.conn_id)
        assert again["conn_id"] == frank.conn_id
        info = api(second).info(channels=[name], include_connections=True)
        assert info["channels"][name]["connections"] == {frank.name: [frank.conn_id]}
        with pytest.raises(ChannelstreamError) as taken:
            api(second).connect(f"other-{name}", [name], conn_id=frank.conn_id)
        assert taken.value.status == 409
    finally:
        frank.close()


def test_a_killed_process_parts_its_users_within_the_ttl_and_nobody_stalls(tmp_path_factory):
    url = require_redis()
    prefix = f"cs-kill-{uuid.uuid4().hex[:8]}:"
    doomed, survivor = start_servers(tmp_path_factory, url, prefix, 2)
    try:
        name = room()
        watcher = Client(survivor, f"watcher-{name}", [name])
        goner = Client(doomed, f"goner-{name}", [name])
        watcher.wait(presence(goner.name, "joined"))
        doomed.process.send_signal(signal.SIGSTOP)  # hung: calls to it time out
        began = time.monotonic()
        with pytest.raises(ChannelstreamError) as hung:
            api(survivor).subscribe(goner.conn_id, [room()])
        assert hung.value.status == 504 and goner.conn_id in hung.value.message
        assert time.monotonic() - began < 5
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(10)
        killed = time.monotonic()
        try:  # the owner no longer listens: said at once, not after a timeout
            answered = api(survivor).disconnect(goner.conn_id)
        except ChannelstreamError as err:
            assert err.status == 503 and "no longer listens" in err.message
        else:
            assert answered is False  # its record had expired already
        assert time.monotonic() - killed < 2
        parted = watcher.wait(presence(goner.name, "parted"), timeout=TTL * 3)
        assert time.monotonic() - killed < TTL + 1.0  # within the ttl (plus a second of slack)
        assert [u["user"] for u in parted["users"]] == [watcher.name]
        info = api(survivor).info(channels=[name])
        assert info["channels"][name]["users"] == [watcher.name]
        began = time.monotonic()
        api(survivor).message({"channel": name, "user": "poster", "message": {"still": "here"}})
        watcher.wait(lambda f: f.get("message") == {"still": "here"})
        assert time.monotonic() - began < 2  # the survivor never stalled
        wait_for(lambda: _status(lambda: api(survivor).subscribe(goner.conn_id, [name])) == 404,
                 timeout=TTL, what="the dead process's connection records gone")
        watcher.close()
    finally:
        for server in (doomed, survivor):
            server.__exit__(None, None, None)
        delete_keys(url, prefix)


def test_redis_stopped_and_started_again(own_redis, tmp_path_factory):  # noqa: F811
    url, start, stop = own_redis
    one, two = start_servers(tmp_path_factory, url, "cs-dir-down:", 2)
    try:
        name = room()
        gina = Client(one, f"gina-{name}", [name])
        hank = Client(two, f"hank-{name}", [name])
        assert api(two).info(channels=[name])["channels"][name]["users"] == sorted(
            [gina.name, hank.name]
        )
        stop()
        with pytest.raises(ChannelstreamError) as refused:
            api(two).info(channels=[name])
        assert refused.value.status == 503 and "redis" in refused.value.message
        health = requests.get(two.url + "/healthz", timeout=10).json()
        assert health["status"] == "degraded"
        assert health["doors"]["chat-redis"]["state"] == "retrying"
        start()  # an empty Redis: each process writes its own view back on its next refresh
        wait_for(
            lambda: _users(two, name) == sorted([gina.name, hank.name]),
            timeout=30,
            what="presence back after the restart",
        )
        assert api(one).subscribe(hank.conn_id, [room()])["subscribed_to"]  # control back too
        wait_for(
            lambda: requests.get(two.url + "/healthz", timeout=10).json()["status"] == "ok",
            timeout=30,
            what="healthz ok",
        )
        gina.close()
        hank.close()
    finally:
        for server in (one, two):
            server.__exit__(None, None, None)


def _status(call) -> int:
    try:
        call()
    except ChannelstreamError as err:
        return err.status
    return 200


def _users(server: RunningServer, name: str) -> list[str] | None:
    try:
        return api(server).info(channels=[name])["channels"].get(name, {}).get("users")
    except ChannelstreamError:
        return None


def test_channel_config_on_one_process_reaches_the_channel_on_the_others(trio):
    first, second, third = trio
    name = room()
    plain = {"channel_configs": {name: {"notify_presence": False}}}
    ivan = api(first).connect(f"ivan-{name}", [name], **plain)  # the channel exists on the first
    judy = Client(second, f"judy-{name}", [name])  # and on the second (its settings kept)
    try:
        assert judy.frames == [] or all(f.get("type") != "presence" for f in judy.frames)
        api(third).channel_config({name: {"notify_presence": True}})
        wait_for(
            lambda: api(second).info(channels=[name])["channels"][name]["settings"][
                "notify_presence"
            ],
            timeout=10,
            what="the second process took the new settings",
        )
        api(first).subscribe(ivan["conn_id"], [name])  # nothing new: already in
        kate = api(first).connect(f"kate-{name}", [name])  # a join on the first
        judy.wait(presence(f"kate-{name}", "joined"))
        assert kate["channels"] == [name]
    finally:
        judy.close()


def test_a_process_started_while_redis_is_down_joins_in_when_it_is_up(own_redis, tmp_path):  # noqa: F811
    url, start, stop = own_redis
    stop()
    (tmp_path / "srv").mkdir()
    app = directory_app(url, "cs-dir-late:")
    with RunningServer(REPO / "development.ini", tmp_path / "srv", app=app) as server:
        health = requests.get(server.url + "/healthz", timeout=10).json()
        assert health["doors"]["chat-redis"]["state"] == "retrying"
        with pytest.raises(ChannelstreamError) as refused:
            api(server).info()
        assert refused.value.status == 503 and "redis" in refused.value.message
        start()
        name = room()
        wait_for(lambda: _status(lambda: Client(server, f"lee-{name}", [name])) == 200, timeout=30)
        assert _users(server, name) == [f"lee-{name}"]


def test_settings_a_process_missed_are_taken_from_redis_by_its_refresh(trio):
    first, second, _ = trio
    name = room()
    for server in (first, second):  # both hold the channel (no members: kept, gc 1 h)
        api(server).channel_config({name: {"notify_presence": False}})
    engine = redis.Redis.from_url(require_redis())
    (key,) = engine.scan_iter(match=f"*{{channel:{name}}}:settings")
    # What a broadcast nobody heard leaves: the settings in Redis, the channels unchanged.
    changed = {"notify_presence": True, "store_history": True, "history_size": 7}
    assert engine.set(key, json.dumps(changed), keepttl=True)

    def settings(server: RunningServer) -> dict:
        return api(server).info(channels=[name])["channels"][name]["settings"]

    for server in (first, second):
        wait_for(
            lambda server=server: all(settings(server)[k] == v for k, v in changed.items()),
            timeout=TTL * 2,  # refreshed every TTL / 4
            what=f"{server.url} took the settings in redis",
        )
        door = requests.get(server.url + "/healthz", timeout=10).json()["doors"]["chat-redis"]
        assert door["settings_caught_up"] >= 1
    api(first).channel_config({name: {"notify_presence": False}})  # one given here stays
    wait_for(lambda: not settings(second)["notify_presence"], timeout=TTL * 2)
    assert not settings(first)["notify_presence"]


@pytest.fixture
def lone_chat() -> Iterator[tuple[redis.Redis, RedisDirectory, ChatState]]:
    """A ChatState in this process on a Redis directory of its own prefix (no
    control channel: not opened), its client, and the prefix's keys deleted after."""
    url = require_redis()
    directory = RedisDirectory(url, key_prefix=f"cs-dir-one-{uuid.uuid4().hex[:8]}:")
    chat = ChatState(Hub(), directory=directory)
    good = directory._client = redis.Redis.from_url(url)
    try:
        yield good, directory, chat
    finally:
        delete_keys(url, directory.key_prefix)


def test_the_refresh_writes_join_settings_redis_missed_and_never_undoes_a_change_made_meanwhile(
    lone_chat,
):
    good, directory, chat = lone_chat
    key = directory.shared_settings.key("r")
    chat.channel_config({"r": ChannelSettings()})
    given = ChannelSettings(notify_presence=True)
    directory._client = redis.Redis.from_url("redis://127.0.0.1:1/0")  # Redis unreachable
    del chat.channels["r"]  # (collected here, another process has it:) a join makes it
    chat._channel("r", given, 0.0)  # with settings Redis cannot take: deferred
    good.delete(key)  # (no process has settings for it: the join's are written)
    directory._client = good
    directory.refresh()
    assert chat.channels["r"].settings == given  # written, not undone by the old ones
    assert stored_settings(good, directory, "r") == given
    good.set(key, json.dumps(ChannelSettings(history_size=5).as_dict()))
    real, raced = directory._redis, []

    def racing(work):  # /channel_config here while the refresh's pipeline is on its way
        answer = real(work)
        if not raced:
            raced.append(True)
            chat.channel_config({"r": ChannelSettings(history_size=6)})
        return answer

    directory._redis = racing
    directory.refresh()
    assert chat.channels["r"].settings.history_size == 6  # read before: not taken
    directory.refresh()
    assert chat.channels["r"].settings.history_size == 6
    assert directory.shared_settings.caught_up == 0
    good.set(key, json.dumps(ChannelSettings(history_size=5).as_dict()))  # a missed one
    directory.refresh()
    assert chat.channels["r"].settings.history_size == 5
    assert directory.shared_settings.caught_up == 1


def test_a_channel_config_redis_cannot_take_changes_nothing_and_leaves_nothing_to_the_refresh(
    lone_chat,
):
    good, directory, chat = lone_chat
    old, new = ChannelSettings(notify_presence=True), ChannelSettings(history_size=3)
    chat.channel_config({"r": old})
    directory._client = redis.Redis.from_url("redis://127.0.0.1:1/0")  # Redis unreachable
    with pytest.raises(EngineUnavailable) as refused:
        chat.channel_config({"r": new, "s": new})
    assert "redis at" in str(refused.value)
    assert chat.channels["r"].settings is old and "s" not in chat.channels
    directory._client = good
    directory.refresh()
    assert chat.channels["r"].settings is old
    assert stored_settings(good, directory, "r") == old
    assert good.get(directory.shared_settings.key("s")) is None
    chat.channel_config({"r": new, "s": new})
    assert chat.channels["r"].settings == new == chat.channels["s"].settings
    assert stored_settings(good, directory, "r") == new


def test_a_channel_config_while_redis_is_down_is_refused_and_applied_nowhere(
    own_redis,  # noqa: F811
    tmp_path_factory,
):
    url, start, stop = own_redis
    one, two = start_servers(tmp_path_factory, url, "cs-dir-cfg:", 2)
    try:
        name = room()
        # The channel on both processes, with members (whose presence shows the refreshes).
        mona = Client(one, f"mona-{name}", [name])  # its join gives the channel PRESENCE
        ned = Client(two, f"ned-{name}", [name])
        changed = {"notify_presence": False, "store_history": True, "history_size": 4}

        def settings(server: RunningServer) -> dict:
            return api(server).info(channels=[name])["channels"][name]["settings"]

        assert settings(one) == settings(two) == {**settings(one), **PRESENCE}
        stop()
        with pytest.raises(ChannelstreamError) as refused:
            api(one).channel_config({name: changed})
        assert refused.value.status == 503 and "redis" in refused.value.message
        other = room()  # a join that would make a channel with settings: refused too
        with pytest.raises(ChannelstreamError) as joining:
            api(one).connect(f"otto-{other}", [other], channel_configs={other: changed})
        assert joining.value.status == 503 and "redis" in joining.value.message
        start()  # an empty Redis
        wait_for(
            lambda: all(_users(s, name) == sorted([mona.name, ned.name]) for s in (one, two)),
            timeout=30,
            what="both processes refreshed after the restart",
        )
        for server in (one, two):  # the refused settings applied nowhere, written nowhere
            assert settings(server) == {**settings(server), **PRESENCE}
            assert not settings(server)["store_history"]
            assert other not in api(server).info()["channels"]
        engine = redis.Redis.from_url(url)
        for key in engine.scan_iter(match=f"*{{channel:{name}}}:settings"):
            assert json.loads(engine.get(key))["store_history"] is False
        api(one).channel_config({name: changed})  # Redis up: as ever
        for server in (one, two):
            wait_for(
                lambda server=server: all(settings(server)[k] == v for k, v in changed.items()),
                timeout=10,
                what=f"{server.url} took the new settings",
            )
        mona.close()
        ned.close()
    finally:
        for server in (one, two):
            server.__exit__(None, None, None)


def test_settings_redis_lost_are_written_back_and_a_process_meeting_the_channel_takes_them(trio):
    first, _, third = trio
    name, plain = room(), room()
    kept = {"store_history": True, "history_size": 5}
    api(first).channel_config({name: kept})
    api(first).connect(f"olga-{plain}", [plain])  # a channel with the defaults only
    url = require_redis()
    engine = redis.Redis.from_url(url)
    (key,) = engine.scan_iter(match=f"*{{channel:{name}}}:settings")
    prefix = key.decode()[: key.decode().index("{channel:")]
    plain_key = f"{prefix}{{channel:{plain}}}:settings"
    assert engine.get(plain_key) is None
    delete_keys(url, prefix)  # Redis lost this cluster's data (a restart, FLUSHALL)
    wait_for(lambda: engine.get(key) is not None, timeout=TTL * 2, what="the settings written back")
    assert {k: json.loads(engine.get(key))[k] for k in kept} == kept
    assert engine.get(plain_key) is None  # the same refresh left the default channel's alone
    door = requests.get(first.url + "/healthz", timeout=10).json()["doors"]["chat-redis"]
    assert door["settings_restored"] >= 1
    api(third).connect(f"pia-{name}", [name])  # the third meets the channel for the first time
    info = api(third).info(channels=[name])["channels"][name]["settings"]
    assert {k: info[k] for k in kept} == kept


TwoChats = tuple[redis.Redis, RedisDirectory, RedisDirectory, ChatState, ChatState]


@pytest.fixture
def two_chats() -> Iterator[TwoChats]:
    """Two ChatStates in this process on one Redis prefix, as two processes would be
    (no control channels: nothing is broadcast); the prefix's keys deleted after."""
    url = require_redis()
    prefix = f"cs-dir-two-{uuid.uuid4().hex[:8]}:"
    engine = redis.Redis.from_url(url)
    one, two = RedisDirectory(url, key_prefix=prefix), RedisDirectory(url, key_prefix=prefix)
    a, b = ChatState(Hub(), directory=one), ChatState(Hub(), directory=two)
    one._client, two._client = engine, redis.Redis.from_url(url)
    try:
        yield engine, one, two, a, b
    finally:
        delete_keys(url, prefix)


def stored_settings(engine: redis.Redis, directory: RedisDirectory, name: str) -> ChannelSettings:
    return ChannelSettings(**json.loads(engine.get(directory.shared_settings.key(name))))


def test_the_refresh_writes_back_given_settings_with_set_nx_and_never_a_default_channels(
    two_chats,
):
    engine, one, two, a, b = two_chats
    kept, joined = ChannelSettings(store_history=True, history_size=5), ChannelSettings(True)
    a.channel_config({"cfg": kept})
    a.connect("ann", channels=["joined"], channel_configs={"joined": joined})
    a.connect("ann", channels=["plain"])
    b.connect("bob", channels=["cfg"])  # takes them from Redis
    assert a.channels["cfg"].given and a.channels["joined"].given and b.channels["cfg"].given
    assert not a.channels["plain"].given
    b.channels["cfg"].configure(ChannelSettings(history_size=7))  # (a broadcast it missed)
    delete_keys(require_redis(), one.key_prefix)  # Redis lost everything
    one.refresh()
    assert one.shared_settings.restored == 2
    for name, settings in (("cfg", kept), ("joined", joined)):
        assert stored_settings(engine, one, name) == settings
    assert engine.get(one.shared_settings.key("plain")) is None
    two.refresh()  # too late: its NX wrote nothing, it takes what the first wrote
    assert two.shared_settings.restored == 0 and two.shared_settings.caught_up == 1
    assert b.channels["cfg"].settings == kept == stored_settings(engine, one, "cfg")
    one.refresh()
    assert one.shared_settings.restored == 2
    assert engine.get(one.shared_settings.key("plain")) is None
    # The default channel's settings are still for a join to give, as in 0.7.1.
    b.connect("bob", channels=["plain"], channel_configs={"plain": joined})
    assert b.channels["plain"].settings == joined and b.channels["plain"].given
    assert stored_settings(engine, one, "plain") == joined


def test_settings_given_with_a_join_never_replace_those_another_process_gave(two_chats):
    engine, one, two, a, b = two_chats
    url = require_redis()
    first, late = ChannelSettings(store_history=True, history_size=4), ChannelSettings(True)
    # Two joins make the channel at once: each found no settings before writing.
    a._channel("r", first, 0.0)
    b.directory.settings = lambda name: None  # (its read came before the other's write)
    b._channel("r", late, 0.0)
    del b.directory.settings
    assert stored_settings(engine, one, "r") == first
    two.refresh()  # the second takes the first's, as in 0.7.1
    assert b.channels["r"].settings == first and two.shared_settings.caught_up == 1
    # A join while Redis was down, another process's settings given meanwhile.
    two._client = redis.Redis.from_url("redis://127.0.0.1:1/0")  # Redis unreachable
    b._channel("s", late, 0.0)
    a.channel_config({"s": first})
    two._client = redis.Redis.from_url(url)
    two.refresh()  # its NX writes nothing; it takes what is there
    assert b.channels["s"].settings == first
    assert stored_settings(engine, one, "s") == first
