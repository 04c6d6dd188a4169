"""The chat directory on Redis: what every process shares about channels, users, connections.

``hub.engine = redis`` gives the :class:`~channelstream.chat.state.ChatState`
a :class:`RedisDirectory` (the contract is :mod:`channelstream.chat.directory`):

- presence is :mod:`.presence` (per channel: members, expiries, user counts;
  joined/parted decided once for all processes), the connection and user
  records are :mod:`.records`, and calls aimed at a connection of another
  process go through that process's control channel (:mod:`.control`);
- :class:`DirectoryService` (``chat-redis`` in ``/healthz``) refreshes, every
  quarter of ``redis.presence_ttl``, what this process owns (its
  connections' records, their presence, its users' and channels' keys) and
  sweeps the presence of its channels: members whose process stopped
  refreshing them expire, and their ``parted`` frames go to the channel
  (reads sweep too, so an expired member is never listed). The users of a
  process killed with SIGKILL thus part within ``redis.presence_ttl``.
  The same refresh carries the settings' part in its pipeline (below);
- channel settings are :mod:`.settings` (:class:`SharedSettings`: a key per
  channel, what a process meeting the channel takes; ``/channel_config`` all
  or nothing, a join's with SET NX, each told to the other processes over the
  control channel). The refresh reads the settings of this process's
  channels and takes those that differ: a ``/channel_config`` broadcast it
  missed (its control channel was down) reaches it within a refresh; and it
  writes back (SET NX) the given settings of its channels that Redis lost, so
  that a process meeting such a channel afterwards still takes them;
- a transport that attaches here to a connection of another process takes it
  over (:meth:`RedisDirectory.take_over`): the owner, asked over its control
  channel (``handover``), records this process as the owner, drops the
  connection without parting it and answers its state; the presence members
  stay as they are (keyed by the connection id, which does not change), so
  nobody sees a part or a join. The owner gone (nobody on its control
  channel), the connection is rebuilt from its record (user, channels) under
  a compare-and-set on the owner: of two processes doing so, the first wins,
  the other answers 409;
- the message history of ``/info`` (``store_history``) is :mod:`.history`: a
  list per channel, written by the process that takes the POST, PATCH or
  DELETE (one pipeline per POST, only for channels that store history), read
  by any; its expiry is refreshed like the channel's settings.

Redis down: reads (``/info``, ``/user_state``, forwarding) raise
:class:`~channelstream.hub.bus.EngineUnavailable` (503 naming Redis) and the
service says ``retrying`` (``/healthz`` degraded); joins and leaves are then
decided locally and the next refresh writes this process's view again. Nothing
needs a restart. A POST whose history entries Redis cannot take answers 503
before anything is published; a ``/channel_config`` whose settings Redis
cannot take answers 503 before any channel changes, here or elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import redis
import redis.exceptions
from gevent.event import Event

from ..chat.channels import ChannelSettings, ChatChannel
from ..chat.connections import Connection
from ..chat.directory import Directory, from_wire
from ..chat.routing import hub_channel
from ..chat.users import User
from ..errors import Conflict, NotFound, Unavailable
from ..hub.bus import EngineUnavailable
from ..serving.doors import DoorState, SupervisedLoop
from .control import DOWN, Control, OwnerGone, Refused
from .history import MessageHistory
from .presence import Presence
from .records import Records, StateConflict, Taken
from .redis import redact
from .settings import SharedSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Channels ``/info`` lists at most from the shared index (all channels).
MAX_LISTED_CHANNELS = 10_000
#: Members of one channel refreshed by one script call.
REFRESH_SLICE = 500


def new_process_id() -> str:
    """An id no other process of the cluster has: host, pid and a random part."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


class RedisDirectory(Directory):
    """The shared directory (see the module doc); nothing connects until the
    service starts (building it in gunicorn's master is free).

    :param url: ``redis.url``.
    :param key_prefix: ``redis.key_prefix``.
    :param presence_ttl: ``redis.presence_ttl`` (seconds).
    :param control_timeout: ``redis.control_timeout`` (seconds).
    :param user_ttl: how long a user record outlives its last connection
        (``gc_users_after``).
    :param settings_ttl: how long channel settings outlive the channel's last
        process (``gc_channels_after``; 0 = kept).
    """

    shared = True

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "cs:",
        presence_ttl: float = 30.0,
        control_timeout: float = 5.0,
        user_ttl: float = 3600.0,
        settings_ttl: float = 3600.0,
    ) -> None:
        super().__init__()
        self.url = url
        self.where = redact(url)
        self.key_prefix = key_prefix
        self.ttl = presence_ttl
        self.settings_ttl_ms = int(max(settings_ttl, presence_ttl) * 1000) if settings_ttl else 0
        self.process_id = new_process_id()
        self.presence = Presence(key_prefix, presence_ttl)
        self.records = Records(key_prefix, presence_ttl, user_ttl)
        self.history = MessageHistory(key_prefix)
        self.control = Control(key_prefix, self.process_id, control_timeout, self.where)
        self.shared_settings = SharedSettings(
            key_prefix, self.settings_ttl_ms, self.control, self._redis, self._quietly
        )
        self.service = DirectoryService(self)
        self._client: redis.Redis | None = None
        self._up = False
        self._last_error: str | None = None
        #: members parted because their process stopped refreshing them
        self.expired = 0
        #: connections taken over here: handed over by their owner, rebuilt from
        #: the record of a dead one; and handed over from here to another process
        self.taken_over = 0
        self.rebuilt = 0
        self.handed_over = 0
        #: conn id -> the process it is being handed over to / was since the
        #: last refresh's snapshot (the refresh must not write it back as ours)
        self._moving: dict[str, str] = {}
        self._handed: dict[str, str] = {}
        #: conn id -> set when this process's take-over of it ends
        self._taking: dict[str, Event] = {}
        for op in ("connect", "subscribe", "unsubscribe", "disconnect", "handover"):
            self.control.handle(op, getattr(self, f"_serve_{op}"))
        self.control.handle("settings", lambda args: self.shared_settings.serve(self._chat, args))

    # -- Redis access ------------------------------------------------------------------

    def open(self) -> None:
        """Connect (reported, not fatal, when Redis is down) and start the control channel.

        The process id is made here, in the process that runs the service: the
        directory may have been built in gunicorn's master, whose workers
        would otherwise all share one id (one owner name, one control channel).
        """
        self.process_id = new_process_id()
        self.control.rename(self.process_id)
        self._client = redis.Redis.from_url(
            self.url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=30
        )
        self.history.register(self._client)
        try:
            self.presence.load(self._client)
            self._up = True
        except DOWN as err:
            self._down(err)
            log.error("chat directory: %s is unreachable at start: %s", self.where, err)
        self.control.start(self._client)

    def close(self) -> None:
        self.control.stop()

    def _redis(self, work: Callable[[redis.Redis], T]) -> T:
        """Run ``work(client)``; scripts loaded again if Redis lost them (the
        presence scripts are idempotent); Redis down -> EngineUnavailable."""
        client = self._client
        if client is None:
            raise EngineUnavailable(f"the chat directory on redis ({self.where}) is not started")
        try:
            if not self.presence.loaded:  # Redis was down when the service started
                self.presence.load(client)
            try:
                answer = work(client)
            except redis.exceptions.NoScriptError:
                self.presence.load(client)
                answer = work(client)
        except DOWN as err:
            raise self._down(err) from None
        except StateConflict as err:
            raise Unavailable(str(err)) from None
        self._up = True
        return answer

    def _down(self, err: BaseException) -> EngineUnavailable:
        self._up = False
        self._last_error = f"{type(err).__name__}: {err}"
        return EngineUnavailable(f"redis at {self.where} is unavailable: {err}")

    def _quietly(self, what: str, work: Callable[[redis.Redis], Any]) -> Any:
        """A write the next refresh repeats: Redis down is logged, not raised."""
        try:
            return self._redis(work)
        except (EngineUnavailable, Unavailable) as err:
            log.warning("chat directory: %s deferred to the next refresh: %s", what, err)
            return None

    @staticmethod
    def _now_ms() -> int:
        return time.time_ns() // 1_000_000

    # -- connections ---------------------------------------------------------------------

    def opened(self, connection: Connection) -> None:
        def record(client: redis.Redis) -> None:
            pipe = client.pipeline(transaction=False)
            self.records.own(pipe, connection.id, connection.user.name, self.process_id)
            self.records.memberships(pipe, connection.id, connection.channels, connection.granted)
            pipe.execute()

        self._quietly("recording a connection", record)

    def _memberships(self, client: Any, conn_id: str) -> None:
        """Record the channels of ``conn_id`` (of this process) if it is still open."""
        connection = self._chat.connections.get(conn_id)
        if connection is not None and not connection.closed:
            self.records.memberships(client, conn_id, connection.channels, connection.granted)

    def closed(self, connection: Connection) -> None:
        self._quietly(
            "forgetting a connection",
            lambda c: self.records.disown(c, connection.id, self.process_id),
        )

    def owner(self, conn_id: str) -> str | None:
        found = self._redis(lambda c: self.records.owner(c, conn_id))
        if found is None or found[0] == self.process_id:
            return None
        return found[0]

    def forward(self, owner: str, op: str, args: dict[str, Any], conn_id: str) -> Any:
        return self.control.call(owner, op, args, f"connection {conn_id}")

    def take_over(
        self, conn_id: str, adopt: Callable[[dict[str, Any]], Connection]
    ) -> Connection | None:
        """See the contract (:meth:`Directory.take_over`) and the module doc.

        Transports of this process attaching to one connection at once take
        it over once: the others wait for that (bounded), then find it here.
        Until ``adopt`` returned, another process asking for it gets a 409.
        """
        pending = self._taking.get(conn_id)
        if pending is not None:
            pending.wait(self.control.timeout + 1.0)
            return None
        done = self._taking[conn_id] = Event()
        try:
            found = self._take_over(conn_id)
            if found is None:
                return None
            state, handed = found
            connection = adopt(state)
            # Counted once the connection is made here (adopt may refuse: 503).
            if handed:
                self.taken_over += 1
            else:
                self.rebuilt += 1
            return connection
        finally:
            del self._taking[conn_id]
            done.set()

    def _take_over(self, conn_id: str) -> tuple[dict[str, Any], bool] | None:
        """The connection's state, and whether its owner handed it over (else
        it is rebuilt from its record); None if nobody has it."""
        found = self._redis(lambda c: self.records.owner(c, conn_id))
        if found is None:
            return None
        owner = found[0]
        if owner != self.process_id:  # (ours but not here: a handover whose taker gave up)
            try:
                state = self.control.call(
                    owner, "handover", {"conn_id": conn_id, "to": self.process_id},
                    f"connection {conn_id}",
                )
                return state, True
            except OwnerGone:
                log.info("connection %s: its process %s is gone; rebuilt here", conn_id, owner)
            except Refused as err:
                if err.status != 404:
                    raise
                # It closed meanwhile (its record is gone: unknown below), or its
                # owner handed it to a process that gave up waiting: rebuilt here.
        try:
            record = self._redis(
                lambda c: self.records.claim(c, conn_id, owner, self.process_id)
            )
        except Taken as err:
            raise Conflict(str(err), field="conn_id") from None
        if record is None:
            return None
        if record["channels"] is None:  # written before records kept channels: not enough
            self._quietly(
                "forgetting a connection",
                lambda c: self.records.disown(c, conn_id, self.process_id),
            )
            return None
        return record, False

    # -- what other processes ask of this one (the control channel) -------------------------

    def _serve_connect(self, args: dict[str, Any]) -> Any:
        kwargs = from_wire(args)
        return self._chat.connect(kwargs.pop("username"), **kwargs)

    def _serve_subscribe(self, args: dict[str, Any]) -> Any:
        kwargs = from_wire(args)
        return self._chat.subscribe(
            self._local(kwargs.pop("conn_id")), kwargs.pop("channels"), **kwargs
        )

    def _serve_unsubscribe(self, args: dict[str, Any]) -> Any:
        kwargs = from_wire(args)
        return self._chat.unsubscribe(
            self._local(kwargs.pop("conn_id")), kwargs.pop("channels"), **kwargs
        )

    def _serve_disconnect(self, args: dict[str, Any]) -> Any:
        conn_id = str(args["conn_id"])
        connection = self._chat.connections.get(conn_id)
        if connection is None:
            return False
        return self._chat.disconnect(conn_id)

    def _serve_handover(self, args: dict[str, Any]) -> Any:
        """Another process took a transport of a connection of this one: hand it over."""
        conn_id, to = str(args["conn_id"]), str(args["to"])
        if conn_id in self._taking:  # its owner named this process: being taken over here
            raise Conflict(
                f"connection {conn_id} is being taken over by process {self.process_id}",
                field="conn_id",
            )
        connection = self._chat.connections.get(conn_id)
        if connection is None or connection.closed:
            raise NotFound(
                f"connection {conn_id} is not on process {self.process_id}", field="conn_id"
            )
        moving = self._moving.get(conn_id)
        if moving is not None:  # two takers: the first asked wins
            raise Conflict(
                f"connection {conn_id} is being handed over to process {moving}", field="conn_id"
            )
        self._moving[conn_id] = to
        try:
            self._redis(lambda c: self.records.own(c, conn_id, connection.user.name, to))
            if self._chat.connections.get(conn_id) is not connection:  # closed meanwhile
                self._quietly(
                    "forgetting a connection", lambda c: self.records.disown(c, conn_id, to)
                )
                raise NotFound(f"connection {conn_id} closed", field="conn_id")
            self._handed[conn_id] = to
            self.handed_over += 1
            return self._chat.hand_over(conn_id, to)
        finally:
            self._moving.pop(conn_id, None)

    def _local(self, conn_id: str) -> str:
        """A forwarded call runs on a connection of this process, never forwards again."""
        self._chat.connection(conn_id)  # 404 if it closed meanwhile
        return conn_id

    # -- presence -------------------------------------------------------------------------

    def joined(self, channel: str, user: str, conn_id: str) -> bool:
        def join(client: redis.Redis) -> bool:
            now = self._now_ms()
            firsts = self.presence.join(client, hub_channel(channel), [(conn_id, user)], now)
            first = user in {_text(name) for name in firsts}
            pipe = client.pipeline(transaction=False)
            pipe.zadd(self._index, {channel: now + self.presence.ttl_ms})
            self._memberships(pipe, conn_id)
            if first:
                self.records.in_channel(pipe, user, channel, True)
                # Its joined frame shows the state: another process may have changed it.
                pipe.hmget(self.records.user_key(user), "state", "keys")
            answers = pipe.execute()
            local = self._chat.users.get(user)
            if first and local is not None and answers[-1][0] is not None:
                local.state = json.loads(answers[-1][0])
                local.public_keys = json.loads(answers[-1][1] or b"[]")
            return first

        first = self._quietly("a join", join)
        return super().joined(channel, user, conn_id) if first is None else first

    def parted(self, channel: str, user: str, conn_id: str) -> bool:
        def leave(client: redis.Redis) -> bool:
            pipe = client.pipeline(transaction=False)
            self.presence.leave(pipe, hub_channel(channel), conn_id)
            self._memberships(pipe, conn_id)
            answer = pipe.execute()[0]
            last = bool(answer) and int(answer[1]) == 1
            if last:
                self.records.in_channel(client, user, channel, False)
            return last

        last = self._quietly("a leave", leave)
        return super().parted(channel, user, conn_id) if last is None else last

    def members(self, channels: Iterable[str]) -> dict[str, dict[str, list[str]]]:
        names = list(channels)
        if not names:
            return {}
        swept = self._sweep(names, read=True)
        return {name: members for name, (_, members) in swept.items() if members}

    def _sweep(
        self, names: list[str], *, read: bool
    ) -> dict[str, tuple[list[str], dict[str, list[str]]]]:
        """Remove the expired members of ``names`` (telling their channels who
        parted); with ``read``, answer the members left."""

        def sweep(client: redis.Redis) -> list:
            pipe = client.pipeline(transaction=False)
            now = self._now_ms()
            for name in names:
                self.presence.sweep(pipe, hub_channel(name), now, read=read)
            return pipe.execute()

        swept = {
            name: self.presence.parse_sweep(answer)
            for name, answer in zip(names, self._redis(sweep), strict=True)
        }
        for name, (parted, _) in swept.items():
            if parted:
                self.expired += len(parted)
                for user in parted:
                    self._quietly(
                        "a user's channels",
                        lambda c, user=user, name=name: self.records.in_channel(
                            c, user, name, False
                        ),
                    )
                self._chat.parted_elsewhere(name, parted)
        return swept

    @property
    def _index(self) -> str:
        """A sorted set: channel name -> until when some process has it."""
        return f"{self.key_prefix}chat:channels"

    def channel_exists(self, name: str) -> bool:
        if name in self._chat.channels:
            return True
        until = self._redis(lambda c: c.zscore(self._index, name))
        return until is not None and until > self._now_ms()

    def channel_names(self) -> list[str]:
        def read(client: redis.Redis) -> list:
            now = self._now_ms()
            client.zremrangebyscore(self._index, "-inf", now)
            return client.zrangebyscore(self._index, now, "+inf", 0, MAX_LISTED_CHANNELS)

        return sorted({_text(name) for name in self._redis(read)} | set(self._chat.channels))

    # -- users ------------------------------------------------------------------------------

    def update_user(
        self,
        user: User,
        *,
        fresh: Mapping[str, Any] | None = None,
        changes: Mapping[str, Any] | None = None,
        public_keys: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        def change(state: dict[str, Any], keys: list[str], created: bool) -> Any:
            shared = User(user.name, 0.0)
            shared.state, shared.public_keys = state, keys
            if created and fresh:
                shared.merge_state(fresh)
            if public_keys is not None:
                shared.set_public_keys(public_keys)
                keys[:] = shared.public_keys
            return shared.merge_state(changes) if changes else []

        def run(client: redis.Redis) -> tuple[list, dict, list]:
            holder: dict[str, Any] = {}

            def keep(state: dict[str, Any], keys: list[str], created: bool) -> Any:
                holder["record"] = (state, keys)
                return change(state, keys, created)

            changed = self.records.change_user(client, user.name, keep)
            state, keys = holder["record"]
            return changed, state, keys

        changed, state, keys = self._redis(run)
        user.state, user.public_keys = state, keys  # this process's copy follows
        return changed

    def states(self, names: Iterable[str]) -> dict[str, tuple[dict[str, Any], list[str]]]:
        names = list(names)
        found = self._redis(lambda c: self.records.users(c, names))
        local = super().states(name for name in names if name not in found)
        return {**local, **found}

    def user_exists(self, name: str) -> bool:
        return name in self._chat.users or self._redis(lambda c: self.records.exists(c, name))

    def channels_of(self, user: User) -> list[str]:
        def read(client: redis.Redis) -> list[str]:
            names = sorted(set(self.records.channels_of(client, user.name)))
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.hexists(self.presence.keys(hub_channel(name))[2], user.name)
            return [name for name, there in zip(names, pipe.execute(), strict=True) if there]

        return sorted(set(self._redis(read)) | set(super().channels_of(user)))

    # -- channel settings (:mod:`.settings`) -------------------------------------------------

    def settings(self, channel: str) -> ChannelSettings | None:
        return self.shared_settings.read(channel)

    def save_settings(self, configs: Mapping[str, ChannelSettings]) -> None:
        """Raises EngineUnavailable, nothing saved nor told (:meth:`SharedSettings.save`)."""
        self.shared_settings.save(configs)

    def save_join_settings(self, channel: str, settings: ChannelSettings) -> None:
        """SET NX, quiet (:meth:`SharedSettings.save_join`)."""
        self.shared_settings.save_join(channel, settings)

    # -- message history (``store_history``) --------------------------------------------------

    def remember(self, entries: Sequence[tuple[ChatChannel, dict[str, Any]]]) -> None:
        """One MULTI pipeline: each channel's entries appended, its list trimmed
        and its expiry set; Redis down -> EngineUnavailable, nothing kept."""
        grouped: dict[str, tuple[ChatChannel, list[dict[str, Any]]]] = {}
        for channel, entry in entries:
            grouped.setdefault(channel.name, (channel, []))[1].append(entry)

        def write(client: redis.Redis) -> None:
            pipe = client.pipeline(transaction=True)
            for name, (channel, kept) in grouped.items():
                limit = channel.settings.history_limit
                self.history.append(pipe, hub_channel(name), kept, limit, self.settings_ttl_ms)
            pipe.execute()

        if grouped:
            self._redis(write)

    def change_history(
        self, changes: Sequence[tuple[ChatChannel, str, dict[str, Any] | None]]
    ) -> None:
        """One pipeline of the edit script, one call per change (each atomic)."""

        def write(client: redis.Redis) -> None:
            pipe = client.pipeline(transaction=False)
            for channel, message_uuid, edit in changes:
                self.history.change(pipe, hub_channel(channel.name), message_uuid, edit)
            pipe.execute()

        if changes:
            self._redis(write)

    def histories(self, channels: Sequence[ChatChannel]) -> list[list[dict[str, Any]]]:
        """One pipeline: the newest ``history_limit`` entries of each channel."""
        if not channels:
            return []

        def read(client: redis.Redis) -> list:
            pipe = client.pipeline(transaction=False)
            for channel in channels:
                self.history.read(pipe, hub_channel(channel.name), channel.settings.history_limit)
            return pipe.execute()

        return [self.history.parse(elements) for elements in self._redis(read)]

    # -- the refresh ------------------------------------------------------------------------

    def refresh(self) -> None:
        """Keep alive what this process owns, then sweep its channels (see the module doc).

        One pipeline: the records, the users, per channel with members here its
        presence, its index entry and the expiry of its settings and history;
        last the settings' part (:meth:`SharedSettings.write_back_and_read`):
        given settings Redis lost written back with SET NX, then every
        channel's read, whose answers :meth:`SharedSettings.refreshed` takes
        (a channel here takes settings that differ: a ``settings`` broadcast
        this process missed is caught up within a refresh).
        """
        chat = self._chat
        held = self.shared_settings.held(chat.channels)
        now = self._now_ms()
        snapshot = {
            name: [(conn_id, user) for user, ids in channel.members.items() for conn_id in ids]
            for name, channel in chat.channels.items()
            if channel.members
        }
        owned = [(c.id, c.user.name, c.channels, c.granted) for c in chat.connections.values()]
        users = sorted({user for _, user, _, _ in owned})
        self._handed.clear()  # handed over before this snapshot: not in it

        def write(client: redis.Redis) -> list:
            pipe = client.pipeline(transaction=False)
            for conn_id, user, channels, granted in owned:
                self.records.own(pipe, conn_id, user, self.process_id)
                self.records.memberships(pipe, conn_id, channels, granted)
            for user in users:
                self.records.refresh_user(pipe, user)
            for name, members in snapshot.items():
                # In slices: one script call holds Redis for as long as it runs.
                for start in range(0, len(members), REFRESH_SLICE):
                    slice_ = members[start : start + REFRESH_SLICE]
                    self.presence.join(pipe, hub_channel(name), slice_, now)
                pipe.zadd(self._index, {name: now + self.presence.ttl_ms})
                if self.settings_ttl_ms:
                    self.shared_settings.expire(pipe, name)
                    self.history.expire(pipe, hub_channel(name), self.settings_ttl_ms)
            queued = self.shared_settings.write_back_and_read(pipe, held)
            answers = pipe.execute()
            return answers[len(answers) - queued :]

        self.shared_settings.refreshed(chat, held, self._redis(write))
        # A connection handed over while the pipeline was on its way was written
        # back as ours: its new owner's again (its presence is the new owner's too).
        handed = dict(self._handed)
        for conn_id, user, _, _ in owned:
            if conn_id in handed:
                self._quietly(
                    "a handover",
                    lambda c, i=conn_id, u=user: self.records.own(c, i, u, handed[i]),
                )
        # A connection that left while the pipeline was on its way was written back: undo.
        for name, members in snapshot.items():
            channel = chat.channels.get(name)
            for conn_id, user in members:
                if conn_id in handed:
                    continue
                if channel is None or conn_id not in channel.members.get(user, ()):
                    self._quietly(
                        "a leave",
                        lambda c, n=name, i=conn_id: self.presence.leave(c, hub_channel(n), i),
                    )
        self._sweep(sorted(chat.channels), read=False)

    def status(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "directory": "redis",
            "redis": "connected" if self._up else "down",
            "url": self.where,
            "presence_ttl": self.ttl,
            "expired_members": self.expired,
            "taken_over": self.taken_over,
            "rebuilt": self.rebuilt,
            "handed_over": self.handed_over,
            "settings_caught_up": self.shared_settings.caught_up,
            "settings_restored": self.shared_settings.restored,
        }
        # Flat, so that /metrics shows the numbers (channelstream_door_control_calls...).
        info.update({f"control_{key}": value for key, value in self.control.status().items()})
        if self._last_error is not None:
            info["last_error"] = self._last_error
        return info


class DirectoryService(SupervisedLoop):
    """The directory's refresh loop and control channel, as a service of the runtime.

    ``connected`` while Redis answers and the control channel listens, else
    ``retrying`` (``/healthz`` degraded).
    """

    def __init__(self, directory: RedisDirectory) -> None:
        super().__init__("chat-redis")
        self.directory = directory
        self.interval = directory.ttl / 4

    def open(self) -> None:
        self.directory.open()

    def run(self) -> None:
        while not self.wait(self.interval):
            try:
                self.directory.refresh()
            except (EngineUnavailable, Unavailable) as err:
                log.warning(
                    "chat directory: refresh failed (%s); again in %.1fs", err, self.interval
                )

    def close(self) -> None:
        self.directory.close()

    def status(self) -> dict[str, Any]:
        info = super().status()
        directory = self.directory
        if info["state"] == DoorState.RUNNING.value:
            healthy = directory._up and directory.control.listening
            info["state"] = (DoorState.CONNECTED if healthy else DoorState.RETRYING).value
        info.update(directory.status())
        return info


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["DirectoryService", "RedisDirectory", "new_process_id"]
