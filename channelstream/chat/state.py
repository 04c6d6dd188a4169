"""ChatState: the operations of the channelstream server API, on the hub.

Every method takes validated Python values (the REST door validates) and
returns the JSON-able answers of channelstream 0.7.1. Every frame goes
through the hub: the channel's frames on ``channel:<name>``, a user's global
private messages on ``user:<name>``. Each connection's outbox subscribes to
both with the user as principal, so ``pm_users`` and ``exclude_users`` are
enforced by the hub for live delivery and for resume alike.

What must be the same on every process (presence, user state, who owns a
connection, channel settings) goes through the state's directory
(:mod:`.directory`): in process for ``hub.engine = local``, where methods
never yield and each is atomic with respect to other greenlets; in Redis for
``hub.engine = redis``, where they may wait on Redis, and a call aimed at a
connection of another process runs there (``Directory.forward``).
"""

from __future__ import annotations

import logging
import time
import uuid as uuid_module
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Conflict, NotFound
from ..hub import REASON_OVERFLOW, Hub, Start, Subscription
from .channels import ChannelSettings, ChatChannel
from .configs import ChannelConfigs
from .connections import Connection, Transport
from .directory import Directory, LocalDirectory, to_wire
from .frames import PM_RESUME_KEY, user_state_frame
from .handover import REASON_MOVED, adopt, forward, hand_over
from .info import Info, channels_info
from .joins import ClientJoins
from .messages import MessageRouter
from .presence import Presence
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


class ChatState:
    """Users, connections and channels of one process; see the module doc."""

    def __init__(
        self,
        hub: Hub,
        config: ChatConfig | None = None,
        *,
        directory: Directory | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub = hub
        self.config = config or ChatConfig()
        self._monotonic = monotonic
        self.users: dict[str, User] = {}
        self.connections: dict[str, Connection] = {}
        self.channels: dict[str, ChatChannel] = {}
        self.started = time.time()
        #: presence, user state and connections as every process sees them
        self.directory = directory or LocalDirectory()
        self.directory.bind(self)
        #: the channels' settings and their hub channels (:mod:`.configs`)
        self.configs = ChannelConfigs(hub, self.directory, self.channels, self.now)
        #: joined and parted frames (:mod:`.presence`)
        self.presence = Presence(hub, self.directory, self.channels)
        #: ``POST``/``PATCH``/``DELETE /message`` (:mod:`.messages`)
        self.messages = MessageRouter(hub, self.find_channel, self.directory, self.now)
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
        existing = self.connections.get(conn_id) if conn_id else None
        if conn_id and existing is None:
            owner = self.directory.owner(conn_id)
            if owner is not None:  # a live connection of another process: reused there
                args = to_wire(
                    username=username,
                    conn_id=conn_id,
                    channels=channels,
                    fresh_user_state=fresh_user_state,
                    user_state=user_state,
                    state_public_keys=state_public_keys,
                    channel_configs=channel_configs,
                    info=info,
                )
                return self.directory.forward(owner, "connect", args, conn_id)
        conn_id = conn_id or str(uuid_module.uuid4())
        if existing is not None and existing.user.name != username:
            raise Conflict(f"connection {conn_id} belongs to another user", field="conn_id")
        user = self.users.get(username)
        created = user is None
        if user is None:
            user = self.users[username] = User(username, now)
        user.last_active = now
        self.directory.update_user(
            user,
            fresh=fresh_user_state if created else None,
            changes=user_state,
            public_keys=state_public_keys,
        )
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
        self.directory.opened(connection)
        return connection

    def connection(self, conn_id: str) -> Connection:
        """The live connection ``conn_id``, or 404."""
        connection = self.connections.get(conn_id)
        if connection is None:
            raise NotFound(f"unknown connection {conn_id}", field="conn_id")
        return connection

    def find_connection(self, conn_id: str) -> Connection:
        """The connection a transport attaches to: this process's, else taken
        over from the process that has it (``Directory.take_over``), or 404.

        Only a shared directory takes over (it may wait, bounded, and raise
        409, 503 or 504); with ``hub.engine = local`` this is :meth:`connection`.
        """
        connection = self.connections.get(conn_id)
        if connection is None and conn_id and self.directory.shared:
            connection = self.directory.take_over(conn_id, lambda state: adopt(self, state))
            if connection is None:  # another transport of this process took it meanwhile
                connection = self.connections.get(conn_id)
        if connection is None:
            raise NotFound(f"unknown connection {conn_id}", field="conn_id")
        return connection

    def hand_over(self, conn_id: str, to: str) -> dict[str, Any]:
        """Give connection ``conn_id`` (404 if not here) to process ``to``; its
        state, as JSON (:func:`.handover.hand_over`). Never yields."""
        return hand_over(self.connection(conn_id), to)

    def user(self, name: str) -> User:
        user = self.users.get(name)
        if user is None:
            raise NotFound(f"unknown user {name!r}", field="user")
        return user

    def disconnect(self, conn_id: str) -> bool:
        """``/disconnect``: close the connection now (on the process that has
        it). False if unknown."""
        connection = self.connections.get(conn_id)
        if connection is None:
            owner = self.directory.owner(conn_id)
            if owner is None:
                return False
            return bool(self.directory.forward(owner, "disconnect", {"conn_id": conn_id}, conn_id))
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
        moved = connection.moved_to is not None  # still in its channels, over there
        for name in sorted(connection.channels):
            self._leave(connection, name, now, quiet=moved)
        self.connections.pop(connection.id, None)
        user = connection.user
        user.connections.pop(connection.id, None)
        user.last_active = now
        if not moved:
            self.directory.closed(connection)
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
        what it was told. A connection that closed (or moved to another
        process) since the transport found it kicks the transport at once.
        """
        if connection.closed:  # it closed or moved away while the transport was on its way
            transport.kick(connection.outbox.close_reason or REASON_GONE)
            return []
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
        A connection of another process is subscribed there.
        """
        if conn_id not in self.connections:
            args = to_wire(
                conn_id=conn_id, channels=channels, channel_configs=channel_configs, info=info
            )
            return forward(self.directory, "subscribe", args, conn_id)
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
        itself may join them again). A connection of another process leaves there.
        """
        if conn_id not in self.connections:
            args = to_wire(conn_id=conn_id, channels=channels, info=info)
            return forward(self.directory, "unsubscribe", args, conn_id)
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

    def find_channel(self, name: str) -> ChatChannel | None:
        """The channel ``name``: this process's, or, if another process has it,
        made here with the settings that process gave it; None if nobody has it."""
        return self.configs.find(name)

    def _channel(self, name: str, settings: ChannelSettings | None, now: float) -> ChatChannel:
        """The channel ``name``, made here if need be (:meth:`ChannelConfigs.channel
        <channelstream.chat.configs.ChannelConfigs.channel>`)."""
        return self.configs.channel(name, settings, now)

    def _join(
        self,
        connection: Connection,
        name: str,
        settings: ChannelSettings | None,
        now: float,
    ) -> None:
        channel = self._channel(name, settings, now)
        if name in connection.channels:
            return
        self.hub.subscribe(connection.outbox, hub_channel(name), principal=connection.user.name)
        connection.channels.add(name)
        self._enter(connection, channel, now)

    def _enter(self, connection: Connection, channel: ChatChannel, now: float) -> None:
        """The bookkeeping of a join: ``connection`` (its outbox subscribed, its
        ``channels`` naming ``channel``) becomes a member; presence told."""
        name = channel.name
        user = connection.user.name
        channel.members.setdefault(user, set()).add(connection.id)
        channel.touch(now)
        first = self.directory.joined(name, user, connection.id)
        if first and channel.settings.notify_presence:
            self.presence.tell(channel, connection.user, "joined")

    def _leave(
        self, connection: Connection, name: str, now: float, *, quiet: bool = False
    ) -> None:
        """``quiet``: the connection went to another process; it leaves this
        process's view only (no parted frame, shared presence untouched)."""
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
        if quiet:
            return
        if self.directory.parted(name, user, connection.id) and channel.settings.notify_presence:
            self.presence.tell(channel, connection.user, "parted")

    def parted_elsewhere(self, name: str, users: list[str]) -> None:
        """``users`` left channel ``name`` without saying so (their process died
        and their presence expired): tell the channel, if it wants to know
        (:meth:`.presence.Presence.parted_elsewhere`)."""
        self.presence.parted_elsewhere(name, users)

    def publish_frame(
        self,
        channel: str,
        frame: dict[str, Any],
        *,
        audience: frozenset[str] | None = None,
        excluded: frozenset[str] | None = None,
    ) -> None:
        self.hub.publish(channel_message(channel, frame, audience=audience, excluded=excluded))

    def settings_changed(self, name: str, settings: ChannelSettings) -> None:
        """Another process gave channel ``name`` ``settings``: take them if it is
        here (:meth:`ChannelConfigs.taken <channelstream.chat.configs.ChannelConfigs.taken>`)."""
        self.configs.taken(name, settings)

    def channel_config(self, configs: Mapping[str, ChannelSettings]) -> dict[str, Any]:
        """``/channel_config``: set (replace) the settings of channels, creating
        them; with a shared directory, on every process that has them.

        All or nothing (:meth:`ChannelConfigs.set
        <channelstream.chat.configs.ChannelConfigs.set>`): if the engine cannot
        take them (``EngineUnavailable``: 503), no channel changed, here or elsewhere.
        """
        self.configs.set(configs)
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
        """``/user_state``: merge state; tell ``notify_state`` channels what changed.

        With a shared directory, on any process for any user that exists."""
        user = self.users.get(username)
        if user is None:
            if not self.directory.user_exists(username):
                raise NotFound(f"unknown user {username!r}", field="user")
            user = self.users[username] = User(username, self._monotonic())  # this process's copy
        user.last_active = self._monotonic()
        changed = self.directory.update_user(
            user, changes=user_state, public_keys=state_public_keys
        )
        if changed:
            public = user.public_changes(changed)
            for name in self.directory.channels_of(user):
                channel = self._channel(name, None, self._monotonic())
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
        """``channels_info``: ``{"channels": {name: ...}, "users": [...]}``
        (:func:`.info.channels_info`)."""
        return channels_info(self, info)

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


__all__ = ["REASON_GONE", "REASON_MOVED", "ChatConfig", "ChatState", "Info"]
