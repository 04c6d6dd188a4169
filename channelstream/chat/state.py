"""ChatState: the operations of the channelstream server API, on the hub.

Every method takes validated Python values (the REST door validates) and
returns the JSON-able answers of channelstream 0.7.1. Every frame goes
through the hub: the channel's frames on ``channel:<name>``, a user's global
private messages on ``user:<name>``. Each connection's outbox subscribes to
both with the user as principal, so ``pm_users`` and ``exclude_users`` are
enforced by the hub for live delivery and for resume alike.

Methods never yield: each is atomic with respect to other greenlets.
"""

from __future__ import annotations

import logging
import time
import uuid as uuid_module
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Conflict, NotFound
from ..hub import REASON_OVERFLOW, ChannelConfig, Hub, Start, Subscription
from .channels import ChannelSettings, ChatChannel
from .connections import Connection, Transport
from .frames import PM_RESUME_KEY, presence_frame, user_state_frame
from .joins import ClientJoins
from .messages import MessageRouter
from .routing import channel_message, hub_channel, user_channel
from .users import User

log = logging.getLogger(__name__)

#: Reason given to transports of a connection that was collected or closed.
REASON_GONE = "connection closed"


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """Timings of the channelstream state (ini keys of the same names)."""

    gc_conns_after: float = 30.0
    gc_users_after: float = 3600.0
    gc_channels_after: float = 3600.0


@dataclass(frozen=True, slots=True)
class Info:
    """What ``channels_info`` includes (0.7.1's InfoResolution)."""

    channels: tuple[str, ...] | None = None  # None = all channels
    include_history: bool = True
    include_users: bool = True
    exclude_channels: tuple[str, ...] = ()
    include_connections: bool = False
    return_public_state: bool = False


class ChatState:
    """Users, connections and channels of one process; see the module doc."""

    def __init__(
        self,
        hub: Hub,
        config: ChatConfig | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub = hub
        self.config = config or ChatConfig()
        self._monotonic = monotonic
        self.users: dict[str, User] = {}
        self.connections: dict[str, Connection] = {}
        self.channels: dict[str, ChatChannel] = {}
        self.started = time.time()
        #: ``POST``/``PATCH``/``DELETE /message`` (:mod:`.messages`)
        self.messages = MessageRouter(hub, self.channels, self.users, self.now)
        #: what clients may join themselves (:mod:`.joins`); a door sets its rules
        self.joins = ClientJoins(self)
        #: connections closed because their outbox passed its hard limit
        self.slow_disconnects = 0

    def now(self) -> float:
        """The monotonic clock of collection and activity."""
        return self._monotonic()

    # -- users and connections ----------------------------------------------------

    def connect(
        self,
        username: str,
        *,
        conn_id: str | None = None,
        channels: Sequence[str] = (),
        fresh_user_state: Mapping[str, Any] | None = None,
        user_state: Mapping[str, Any] | None = None,
        state_public_keys: Sequence[str] | None = (),
        channel_configs: Mapping[str, ChannelSettings] | None = None,
        info: Info | None = None,
    ) -> dict[str, Any]:
        """``/connect``: the user (created if new), a connection, its channels.

        A ``conn_id`` of a live connection of the same user reuses that
        connection (no duplicate); one of another user is refused (409).
        """
        now = self._monotonic()
        conn_id = conn_id or str(uuid_module.uuid4())
        existing = self.connections.get(conn_id)
        if existing is not None and existing.user.name != username:
            raise Conflict(f"connection {conn_id} belongs to another user", field="conn_id")
        user = self.users.get(username)
        if user is None:
            user = self.users[username] = User(username, now)
            if fresh_user_state:
                user.merge_state(fresh_user_state)
        user.last_active = now
        if state_public_keys is not None:
            user.set_public_keys(state_public_keys)
        if user_state:
            user.merge_state(user_state)
        connection = existing or self._new_connection(conn_id, user, now)
        connection.granted.update(channels)
        for name in sorted(set(channels)):
            self._join(connection, name, (channel_configs or {}).get(name), now)
        names = sorted(channels)
        return {
            "conn_id": connection.id,
            "state": dict(user.state),
            "username": user.name,
            "public_state": user.public_state,
            "channels": names,
            "channels_info": self.channels_info(self._info_for(names, info)),
        }

    def _new_connection(self, conn_id: str, user: User, now: float) -> Connection:
        outbox = self.hub.open_outbox(name=conn_id)
        connection = Connection(conn_id, user, outbox, now)
        self.hub.subscribe(outbox, user_channel(user.name), principal=user.name)
        # The hub closes the outbox past its hard limit or at shutdown: the
        # connection goes with it (its client resumes by offset elsewhere).
        outbox.on_close(lambda _outbox: self._forget_connection(connection))
        self.connections[conn_id] = connection
        user.connections[conn_id] = connection
        return connection

    def connection(self, conn_id: str) -> Connection:
        """The live connection ``conn_id``, or 404."""
        connection = self.connections.get(conn_id)
        if connection is None:
            raise NotFound(f"unknown connection {conn_id}", field="conn_id")
        return connection

    def user(self, name: str) -> User:
        user = self.users.get(name)
        if user is None:
            raise NotFound(f"unknown user {name!r}", field="user")
        return user

    def disconnect(self, conn_id: str) -> bool:
        """``/disconnect``: close the connection now. False if unknown."""
        connection = self.connections.get(conn_id)
        if connection is None:
            return False
        self.close_connection(connection, REASON_GONE)
        return True

    def close_connection(self, connection: Connection, reason: str) -> None:
        """Leave every channel (presence parted), close the outbox, kick the transport."""
        if connection.closed:
            return
        connection.outbox.close(reason, discard=True)  # calls _forget_connection

    def _forget_connection(self, connection: Connection) -> None:
        if connection.closed:
            return
        connection.closed = True
        if connection.outbox.close_reason == REASON_OVERFLOW:
            self.slow_disconnects += 1
            log.info("connection %s was too slow: closed", connection.id)
        now = self._monotonic()
        for name in sorted(connection.channels):
            self._leave(connection, name, now)
        self.connections.pop(connection.id, None)
        user = connection.user
        user.connections.pop(connection.id, None)
        user.last_active = now
        transport = connection.transport
        if transport is not None:
            transport.kick(connection.outbox.close_reason or REASON_GONE)

    # -- transports ------------------------------------------------------------------

    def attach(
        self,
        connection: Connection,
        transport: Transport,
        resume: Mapping[str, tuple[str, int]],
        *,
        resume_aware: bool = False,
    ) -> list[tuple[str, str]]:
        """Attach ``transport`` (kicking the previous one) and apply ``resume``.

        ``resume`` maps channel names (``PM_RESUME_KEY`` for global private
        messages) to the (epoch, offset) the client last received. Returns the
        ``(channel, reason)`` of every resume that could not be honoured; those
        channels go on from what the connection still had queued. A
        ``resume_aware`` client that does not name a stream it was told of
        (``Connection.told``: the frame telling it was lost) resumes it from
        what it was told.
        """
        previous = connection.attach(transport)
        if previous is not None and previous is not transport:
            previous.kick("replaced by a newer transport")
        if not resume_aware:
            connection.told.clear()  # nobody keeps positions: remembered ones go stale
        elif connection.told:
            resume = {**connection.told, **resume}
        failures = []
        outbox = connection.outbox
        for key, (epoch, offset) in resume.items():
            name = user_channel(connection.user.name) if key == PM_RESUME_KEY else hub_channel(key)
            subscription = outbox.subscriptions.get(name)
            if subscription is None:
                failures.append((key, "the connection is not subscribed to this channel"))
                continue
            resumed = self.hub.resume(subscription, Start.after(epoch, offset))
            if resumed.resume_error is not None:
                failures.append((key, resumed.resume_error))
                resumed.resume_error = None
        return failures

    def detach(self, connection: Connection, transport: Transport) -> None:
        connection.detach(transport, self._monotonic())

    # -- channels ------------------------------------------------------------------------

    def subscribe(
        self,
        conn_id: str,
        channels: Sequence[str],
        *,
        channel_configs: Mapping[str, ChannelSettings] | None = None,
        info: Info | None = None,
        by_backend: bool = True,
    ) -> dict[str, Any]:
        """``/subscribe``: join channels (created if need be).

        ``by_backend``: the backend grants them to the connection (else a
        client joins by itself, see :class:`~channelstream.chat.joins.ClientJoins`).
        """
        connection = self.connection(conn_id)
        if by_backend:
            connection.granted.update(channels)
        now = self._monotonic()
        joined = []
        for name in sorted(set(channels)):
            if name not in connection.channels:
                self._join(connection, name, (channel_configs or {}).get(name), now)
                joined.append(name)
        names = sorted(connection.channels)
        return {
            "channels": names,
            "channels_info": self.channels_info(self._info_for(names, info)),
            "subscribed_to": joined,
        }

    def unsubscribe(
        self,
        conn_id: str,
        channels: Sequence[str],
        *,
        info: Info | None = None,
        by_backend: bool = True,
    ) -> dict[str, Any]:
        """``/unsubscribe``: leave channels.

        ``by_backend``: the backend takes them back (a client that leaves by
        itself may join them again).
        """
        connection = self.connection(conn_id)
        if by_backend:
            connection.granted.difference_update(channels)
        now = self._monotonic()
        left = []
        for name in sorted(set(channels)):
            if name in connection.channels:
                self._leave(connection, name, now)
                left.append(name)
        names = sorted(connection.channels)
        return {
            "channels": names,
            "channels_info": self.channels_info(self._info_for(names, info)),
            "unsubscribed_from": left,
        }

    def _channel(self, name: str, settings: ChannelSettings | None, now: float) -> ChatChannel:
        channel = self.channels.get(name)
        if channel is None:
            channel = self.channels[name] = ChatChannel(name, settings or ChannelSettings(), now)
            self._configure_hub_channel(channel)
        return channel

    def _configure_hub_channel(self, channel: ChatChannel) -> None:
        """The hub channel's history: what a reconnecting client can resume from.

        At least ``hub.history_size`` frames; more when the channel is set to
        keep a longer history (``history_size`` of ``/channel_config``, with
        ``store_history``): a client may resume as far back as ``/info`` shows.
        None with ``store_frames = false``. A channel a door made persistent
        (or local) stays so: the G3 door's channel keeps its metadata frames.
        """
        default = self.hub.config.default_channel
        settings = channel.settings
        frames = default.history_size
        if settings.store_history:
            frames = max(frames, settings.history_limit)
        if not settings.store_frames:
            frames = 0
        name = hub_channel(channel.name)
        current = self.hub.channel_config(name)
        self.hub.configure_channel(
            name,
            ChannelConfig(
                history_size=frames,
                history_seconds=default.history_seconds,
                persistent=current.persistent,
                local=current.local,
            ),
        )

    def _join(
        self, connection: Connection, name: str, settings: ChannelSettings | None, now: float
    ) -> None:
        channel = self._channel(name, settings, now)
        if name in connection.channels:
            return
        self.hub.subscribe(connection.outbox, hub_channel(name), principal=connection.user.name)
        connection.channels.add(name)
        user = connection.user.name
        first = user not in channel.members
        channel.members.setdefault(user, set()).add(connection.id)
        channel.touch(now)
        if first and channel.settings.notify_presence:
            self._presence(channel, connection.user, "joined")

    def _leave(self, connection: Connection, name: str, now: float) -> None:
        connection.channels.discard(name)
        subscription: Subscription | None = connection.outbox.subscriptions.get(hub_channel(name))
        if subscription is not None:
            subscription.cancel()
        channel = self.channels.get(name)
        if channel is None:
            return
        user = connection.user.name
        ids = channel.members.get(user)
        if ids is None:
            return
        ids.discard(connection.id)
        channel.touch(now)
        if not ids:
            del channel.members[user]
            if channel.settings.notify_presence:
                self._presence(channel, connection.user, "parted")

    def _presence(self, channel: ChatChannel, user: User, action: str) -> None:
        users = (
            self._member_list(channel)
            if channel.settings.broadcast_presence_with_user_lists
            else []
        )
        frame = presence_frame(
            channel=channel.name,
            user=user.name,
            action=action,
            users=users,
            state=user.public_state if action == "joined" else None,
        )
        self.publish_frame(channel.name, frame, excluded=frozenset((user.name,)))

    def _member_list(self, channel: ChatChannel, public: bool = True) -> list[dict[str, Any]]:
        listed = []
        for name in sorted(channel.members):
            user = self.users.get(name)
            if user is not None:
                state = user.public_state if public else dict(user.state)
                listed.append({"user": name, "state": state})
        return listed

    def publish_frame(
        self,
        channel: str,
        frame: dict[str, Any],
        *,
        audience: frozenset[str] | None = None,
        excluded: frozenset[str] | None = None,
    ) -> None:
        self.hub.publish(channel_message(channel, frame, audience=audience, excluded=excluded))

    def channel_config(self, configs: Mapping[str, ChannelSettings]) -> dict[str, Any]:
        """``/channel_config``: set (replace) the settings of channels, creating them."""
        now = self._monotonic()
        for name, settings in configs.items():
            channel = self.channels.get(name)
            if channel is None:
                self._channel(name, settings, now)
            else:
                channel.configure(settings)
                self._configure_hub_channel(channel)
        return self.channels_info(
            Info(channels=tuple(configs), include_history=False, include_users=False)
        )

    # -- user state --------------------------------------------------------------------

    def set_user_state(
        self,
        username: str,
        user_state: Mapping[str, Any],
        state_public_keys: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """``/user_state``: merge state; tell ``notify_state`` channels what changed."""
        user = self.user(username)
        user.last_active = self._monotonic()
        if state_public_keys is not None:
            user.set_public_keys(state_public_keys)
        changed = user.merge_state(user_state)
        if changed:
            public = user.public_changes(changed)
            for name in self._channels_of(user):
                channel = self.channels[name]
                if channel.settings.notify_state:
                    frame = user_state_frame(
                        channel=name, user=user.name, state=user.public_state, changed=public
                    )
                    self.publish_frame(name, frame)
        return {
            "user_state": dict(user.state),
            "changed_state": changed,
            "public_keys": list(user.public_keys),
        }

    def _channels_of(self, user: User) -> list[str]:
        names: set[str] = set()
        for connection in user.connections.values():
            names.update(connection.channels)
        return sorted(name for name in names if name in self.channels)

    # -- messages (see messages.py) ----------------------------------------------------

    @property
    def messages_posted(self) -> int:
        """Items accepted by ``POST /message`` (0.7.1's ``total_unique_messages``)."""
        return self.messages.posted

    def post_messages(self, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``POST /message``; see :meth:`MessageRouter.post`."""
        return self.messages.post(items)

    def edit_messages(self, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``PATCH /message``; see :meth:`MessageRouter.edit`."""
        return self.messages.edit(items)

    def delete_messages(self, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``DELETE /message``; see :meth:`MessageRouter.delete`."""
        return self.messages.delete(items)

    # -- info ----------------------------------------------------------------------------

    def _info_for(self, names: Sequence[str], info: Info | None) -> Info:
        base = info or Info()
        return Info(
            channels=tuple(names),
            include_history=base.include_history,
            include_users=base.include_users,
            exclude_channels=base.exclude_channels,
            include_connections=base.include_connections,
            return_public_state=base.return_public_state,
        )

    def channels_info(self, info: Info) -> dict[str, Any]:
        """``channels_info``: ``{"channels": {name: ...}, "users": [...]}``."""
        names = sorted(self.channels) if info.channels is None else sorted(set(info.channels))
        excluded = set(info.exclude_channels)
        channels: dict[str, Any] = {}
        users: set[str] = set()
        for name in names:
            channel = self.channels.get(name)
            if channel is None or name in excluded:
                continue
            members = sorted(channel.members) if info.include_users else []
            users.update(members)
            hub_state = self.hub.channel(hub_channel(name))
            entry: dict[str, Any] = {
                "uuid": channel.uuid,
                "name": name,
                "long_name": None,
                "settings": channel.settings.as_dict(),
                "history": list(channel.history) if info.include_history else [],
                "last_active": channel.last_active_iso,
                "total_connections": channel.connection_count,
                "total_users": len(members),
                "users": members,
                "epoch": hub_state.epoch if hub_state is not None else None,
                "last_offset": hub_state.last_offset if hub_state is not None else 0,
            }
            if info.include_connections:
                entry["connections"] = {
                    user: sorted(ids) for user, ids in sorted(channel.members.items())
                }
            channels[name] = entry
        listed = []
        for name in sorted(users):
            user = self.users.get(name)
            if user is not None:
                state = user.public_state if info.return_public_state else dict(user.state)
                listed.append({"user": name, "state": state})
        return {"channels": channels, "users": listed}

    # -- collection ----------------------------------------------------------------------

    def collect(self) -> dict[str, int]:
        """Collect connections without a transport, then idle users and channels."""
        now = self._monotonic()
        config = self.config
        dropped_conns = 0
        for connection in list(self.connections.values()):
            if connection.transport is None and connection.idle_for(now) >= config.gc_conns_after:
                self.close_connection(connection, "no transport attached for too long")
                dropped_conns += 1
        dropped_users = 0
        for name, user in list(self.users.items()):
            if not user.connections and now - user.last_active >= config.gc_users_after:
                del self.users[name]
                dropped_users += 1
        dropped_channels = 0
        if config.gc_channels_after:
            for name, channel in list(self.channels.items()):
                if not channel.members and now - channel.last_active >= config.gc_channels_after:
                    del self.channels[name]
                    self.joins.forget(channel)
                    if not self.hub.channel_config(hub_channel(name)).persistent:
                        self.hub.forget_channel_config(hub_channel(name))
                    dropped_channels += 1
        return {"connections": dropped_conns, "users": dropped_users, "channels": dropped_channels}

    def stats(self) -> dict[str, Any]:
        return {
            "users": len(self.users),
            "active_users": sum(1 for user in self.users.values() if user.connections),
            "connections": len(self.connections),
            "attached_connections": sum(
                1 for c in self.connections.values() if c.transport is not None
            ),
            "channels": len(self.channels),
            "messages_posted": self.messages_posted,
            "slow_disconnects": self.slow_disconnects,
        }
