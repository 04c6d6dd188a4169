"""The directory: what ChatState asks about users, presence and connections beyond itself.

:class:`ChatState` keeps its own users, connections and channels (those this
process serves). What must be the same on every process goes through its
directory:

- presence: whether a join is the user's first connection in the channel
  (``joined``), whether a leave is its last (``parted``), who is in a channel
  (``members``) and which channels exist (``channel_names``);
- user state: changes (``update_user``), reads (``states``), whether a user
  exists (``user_exists``), the channels a user is in (``channels_of``);
- connections: which process owns a connection (``owner``), running an
  operation there (``forward``), and taking it over for a transport that
  attached here (``take_over``: the owner hands it over, or, the owner dead,
  it is rebuilt from what the engine recorded);
- channel settings, so that a process that meets a channel for the first
  time takes the settings another gave it (``settings``; ``save_settings``
  for ``/channel_config``, ``save_join_settings`` for those given with a join);
- the message history ``/info`` shows (``store_history``): the entries of a
  ``POST /message`` (``remember``), its edits and deletes
  (``change_history``), the histories of the channels listed (``histories``).

:class:`LocalDirectory` (``hub.engine = local``) answers all of it from the
ChatState itself, in process, without I/O: nothing changes for one process.
:class:`channelstream.engines.directory.RedisDirectory` (``hub.engine =
redis``) keeps it in Redis and reaches other processes over their control
channel.

Contract: a directory is bound to one ChatState (``bind``) before use. Reads
raise :class:`~channelstream.hub.bus.EngineUnavailable` when the shared
engine cannot answer; the notes of a join or leave (``joined``/``parted``,
called after the ChatState changed its own view) never raise: when the engine
cannot take them they are decided locally and the engine catches up on the
directory's next refresh; so do the settings given with a join
(``save_join_settings``). ``remember`` and ``change_history`` raise
EngineUnavailable too, before anything is published: a POST, PATCH or DELETE
whose history the engine cannot take answers 503 and sends nothing; so does
``save_settings``, before anything is saved or told: a ``/channel_config``
the engine cannot take answers 503 and changes nothing. The local directory
never raises.
``forward`` raises what the owner refused with
(:class:`~channelstream.errors.ClientError`) or why it could not be asked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .channels import ChannelSettings
from .info import Info

if TYPE_CHECKING:
    from .channels import ChatChannel
    from .connections import Connection
    from .state import ChatState
    from .users import User


class Directory:
    """The contract (see the module doc), answered in process: the local directory."""

    #: True when other processes share what this directory says.
    shared = False

    def __init__(self) -> None:
        self.chat: ChatState | None = None

    def bind(self, chat: ChatState) -> None:
        """Called once by the ChatState that uses this directory."""
        if self.chat is not None:
            raise RuntimeError("a directory serves one ChatState")
        self.chat = chat

    @property
    def _chat(self) -> ChatState:
        if self.chat is None:
            raise RuntimeError("the directory is not bound to a ChatState")
        return self.chat

    # -- connections ------------------------------------------------------------------

    def opened(self, connection: Connection) -> None:
        """``connection`` was made here."""

    def closed(self, connection: Connection) -> None:
        """``connection`` (made here) is gone."""

    def owner(self, conn_id: str) -> str | None:
        """The process that owns ``conn_id`` if another one does, else None."""
        return None

    def forward(self, owner: str, op: str, args: dict[str, Any], conn_id: str) -> Any:
        """Run ``op`` (``connect``, ``subscribe``, ``unsubscribe``, ``disconnect``)
        with ``args`` on process ``owner``, which has ``conn_id``; its answer."""
        raise RuntimeError("a local directory has no other process")

    def take_over(
        self, conn_id: str, adopt: Callable[[dict[str, Any]], Connection]
    ) -> Connection | None:
        """Move ``conn_id`` of another process here: ``adopt(state)`` makes
        it; None if no process has it (or another greenlet here took it).

        ``state`` is the connection's as :meth:`ChatState.hand_over
        <channelstream.chat.state.ChatState.hand_over>` gives it (its owner
        handed it over and dropped it without parting its channels), or as the
        engine recorded it when the owner is gone (``conn_id``, ``username``,
        ``channels``, ``granted`` only). The directory records this process
        as the owner first, and hands the connection to nobody else until
        ``adopt`` returned. Two processes taking one connection: one gets it,
        the other a :class:`~channelstream.errors.Conflict`. May wait
        (bounded); raises as :meth:`forward` does.
        """
        return None

    # -- presence ---------------------------------------------------------------------

    def joined(self, channel: str, user: str, conn_id: str) -> bool:
        """``conn_id`` of ``user`` joined ``channel``: is it the user's first one there?"""
        return len(self._chat.channels[channel].members.get(user, ())) == 1

    def parted(self, channel: str, user: str, conn_id: str) -> bool:
        """``conn_id`` left ``channel``: was it the user's last one there?"""
        chat_channel = self._chat.channels.get(channel)
        return chat_channel is None or user not in chat_channel.members

    def members(self, channels: Iterable[str]) -> dict[str, dict[str, list[str]]]:
        """For each of ``channels`` that exists: user -> its connection ids there."""
        found = {}
        for name in channels:
            channel = self._chat.channels.get(name)
            if channel is not None:
                found[name] = {user: sorted(ids) for user, ids in channel.members.items()}
        return found

    def channel_exists(self, name: str) -> bool:
        """Whether some process has channel ``name``."""
        return name in self._chat.channels

    def channel_names(self) -> list[str]:
        """Every channel known (``/info`` without a list of channels)."""
        return sorted(self._chat.channels)

    # -- users ------------------------------------------------------------------------

    def update_user(
        self,
        user: User,
        *,
        fresh: Mapping[str, Any] | None = None,
        changes: Mapping[str, Any] | None = None,
        public_keys: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Apply to ``user``'s state: ``fresh`` (given for a user this process
        just made) if the user is new everywhere, then ``public_keys`` (if not
        None), then ``changes``; answers the ``[{"key", "value"}]`` that changed.
        ``user`` (this process's copy) ends up with the resulting state and keys."""
        if fresh:  # the ChatState passes it only for a user it just made
            user.merge_state(fresh)
        if public_keys is not None:
            user.set_public_keys(public_keys)
        return user.merge_state(changes) if changes else []

    def states(self, names: Iterable[str]) -> dict[str, tuple[dict[str, Any], list[str]]]:
        """(state, public keys) of each of ``names`` that exists."""
        users = self._chat.users
        return {
            name: (dict(users[name].state), list(users[name].public_keys))
            for name in names
            if name in users
        }

    def user_exists(self, name: str) -> bool:
        return name in self._chat.users

    def channels_of(self, user: User) -> list[str]:
        """The channels ``user`` is in (through any connection)."""
        names: set[str] = set()
        for connection in user.connections.values():
            names.update(connection.channels)
        return sorted(name for name in names if name in self._chat.channels)

    # -- channel settings -------------------------------------------------------------

    def settings(self, channel: str) -> ChannelSettings | None:
        """Settings another process gave ``channel``, if any."""
        return None

    def save_settings(self, configs: Mapping[str, ChannelSettings]) -> None:
        """``/channel_config`` gives each channel of ``configs`` its settings:
        kept for every process and told to those that have the channel.

        All or nothing: raises :class:`~channelstream.hub.bus.EngineUnavailable`
        when the engine cannot take them, having saved and told nothing. The
        caller (:meth:`ChatState.channel_config
        <channelstream.chat.state.ChatState.channel_config>`) calls it before
        it changes any channel, so that a refusal changes nothing anywhere.
        The local directory keeps nothing and never fails.
        """

    def save_join_settings(self, channel: str, settings: ChannelSettings) -> None:
        """A join made ``channel`` here with the ``settings`` given with it (no
        process had settings for it): kept and told like :meth:`save_settings`
        unless another process gave it settings meanwhile (those win, as in
        0.7.1: this process takes them), and, as the other notes of a join,
        never raises: settings the engine cannot take now are written by the
        directory's next refresh, on the same condition."""
        self.save_settings({channel: settings})

    # -- message history (``store_history``, shown by ``/info``) -------------------------

    def remember(self, entries: Sequence[tuple[ChatChannel, dict[str, Any]]]) -> None:
        """Keep the entries of one ``POST /message`` in their channels' histories,
        in order, each history trimmed to its channel's ``history_limit``.

        The caller (:class:`~channelstream.chat.messages.MessageRouter`) passes
        only entries of channels whose settings have ``store_history`` (a POST
        to other channels never calls it), before it publishes anything.
        """
        for channel, entry in entries:
            channel.remember(entry)

    def change_history(
        self, changes: Sequence[tuple[ChatChannel, str, dict[str, Any] | None]]
    ) -> None:
        """Apply one ``PATCH`` or ``DELETE /message``, in order: for each
        ``(channel, uuid, changes)`` the first entry of ``uuid`` in the
        channel's history takes ``changes`` (``dict.update``), or is removed
        when ``changes`` is None; a uuid not there is skipped."""
        for channel, message_uuid, edit in changes:
            if edit is None:
                channel.delete(message_uuid)
            else:
                channel.edit(message_uuid, edit)

    def histories(self, channels: Sequence[ChatChannel]) -> list[list[dict[str, Any]]]:
        """The history of each of ``channels``, oldest entry first (``/info``)."""
        return [list(channel.history) for channel in channels]

    def status(self) -> dict[str, Any]:
        return {"directory": "local"}


def to_wire(**args: Any) -> dict[str, Any]:
    """Keyword arguments of a ChatState call as JSON, for ``Directory.forward``."""
    wire: dict[str, Any] = {}
    for key, value in args.items():
        if isinstance(value, Info):
            value = dataclasses.asdict(value)
        elif key == "channel_configs":
            value = {name: settings.as_dict() for name, settings in (value or {}).items()}
        elif isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, (list, tuple, set, frozenset)):
            value = list(value)
        wire[key] = value
    return wire


def from_wire(args: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`to_wire`'s JSON back as keyword arguments (settings and Info typed)."""
    kwargs = dict(args)
    configs = kwargs.get("channel_configs")
    if "channel_configs" in kwargs:
        kwargs["channel_configs"] = {
            name: ChannelSettings(**values) for name, values in (configs or {}).items()
        } or None
    info = kwargs.get("info")
    if info is not None:
        values = dict(info)
        for key in ("channels", "exclude_channels"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        kwargs["info"] = Info(**values)
    return kwargs


#: The in-process directory of ``hub.engine = local``.
LocalDirectory = Directory

__all__ = ["Directory", "LocalDirectory", "from_wire", "to_wire"]
