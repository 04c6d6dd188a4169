"""Channels a client joins by itself (socket.io ``join``), under the backend's rules.

The backend puts connections in channels (``/connect``, ``/subscribe``);
those are the connection's *granted* channels. A client that asks to join a
channel itself gets it only if :class:`JoinRules` allow it:

- ``subscribed``: only its granted channels (e.g. one it left and wants back);
- ``joinable``: those, and channels the backend marked ``joinable`` in
  ``/channel_config``;
- ``any``: any channel, creating it if need be (the seed's open demo), within
  two caps on channels created by clients: per user, and in total.

A refusal is a :class:`~channelstream.errors.Forbidden` naming the channel
and the setting that decides. :class:`ClientJoins` belongs to a
:class:`~channelstream.chat.state.ChatState` (which forgets a collected
channel's creator through :meth:`ClientJoins.forget`); no method yields.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import Forbidden

if TYPE_CHECKING:
    from .channels import ChatChannel
    from .connections import Connection
    from .state import ChatState

SUBSCRIBED = "subscribed"
JOINABLE = "joinable"
ANY = "any"


@dataclasses.dataclass(frozen=True)
class JoinRules:
    """What clients may join (``socketio.join_policy`` and the two caps)."""

    policy: str = SUBSCRIBED
    max_per_user: int = 100
    max_total: int = 10_000


class ClientJoins:
    """Checks and performs clients' own joins; counts the channels they created."""

    def __init__(self, chat: ChatState, rules: JoinRules | None = None) -> None:
        self.chat = chat
        self.rules = rules or JoinRules()
        #: channels created by clients' joins, by the user whose client did
        self.created: Counter[str] = Counter()
        #: joins refused
        self.refused = 0

    def join(self, connection: Connection, names: Sequence[str]) -> dict[str, Any]:
        """Join ``names`` for the client of ``connection`` (``/subscribe``'s answer).

        All or nothing: every channel is checked before any is joined.

        :raises Forbidden: a channel the rules do not open to this client, or
            a new channel past a cap.
        """
        rules = self.rules
        user = connection.user.name
        new = []
        for name in names:
            if name in connection.channels or name in connection.granted:
                continue
            channel = self.chat.channels.get(name)
            if rules.policy == ANY:
                if channel is None:
                    new.append(name)
            elif rules.policy == JOINABLE:
                if channel is None or not channel.settings.joinable:
                    self._refuse(
                        f"join: channel {name!r} is not joinable "
                        "(the backend marks channels joinable in /channel_config; "
                        "socketio.join_policy = joinable)"
                    )
            else:
                self._refuse(
                    f"join: channel {name!r} was not given to this connection by the backend "
                    "(socketio.join_policy = subscribed)"
                )
        if new:
            if self.created[user] + len(new) > rules.max_per_user:
                self._refuse(
                    f"join: {user!r} may create at most {rules.max_per_user} channels by joining "
                    "(socketio.max_client_channels_per_user)"
                )
            if sum(self.created.values()) + len(new) > rules.max_total:
                self._refuse(
                    f"join: clients may create at most {rules.max_total} channels "
                    "(socketio.max_client_channels)"
                )
        answer = self.chat.subscribe(connection.id, names, by_backend=False)
        for name in new:
            channel = self.chat.channels.get(name)
            if channel is not None and channel.created_by is None:
                channel.created_by = user
                self.created[user] += 1
        return answer

    def forget(self, channel: ChatChannel) -> None:
        """``channel`` was collected: it no longer counts against its creator."""
        if channel.created_by is not None:
            self.created[channel.created_by] -= 1
            if self.created[channel.created_by] <= 0:
                del self.created[channel.created_by]

    def _refuse(self, message: str) -> None:
        self.refused += 1
        raise Forbidden(message, field="channels")


__all__ = ["ANY", "JOINABLE", "SUBSCRIBED", "ClientJoins", "JoinRules"]
