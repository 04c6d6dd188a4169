"""Presence frames: a channel told who joined and who parted (``notify_presence``).

The :class:`~channelstream.chat.state.ChatState` decides when a user's
presence changed (the directory's ``joined`` / ``parted`` say whether it was
the user's first or last connection in the channel, on any process) and
whether the channel wants to know; :class:`Presence` builds the frame and
publishes it to the channel's members but the user. With
``broadcast_presence_with_user_lists`` the frame lists every member and
its public state, as the directory sees them (every process's members).

A user whose process died is parted by the directory's sweep
(:meth:`Presence.parted_elsewhere`). No method yields with the local
directory; with a shared one, the directory's reads wait on the engine.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .frames import presence_frame
from .routing import channel_message

if TYPE_CHECKING:
    from ..hub import Hub
    from .channels import ChatChannel
    from .directory import Directory
    from .users import User

log = logging.getLogger(__name__)


class Presence:
    """Tells channels that users joined or parted.

    :param hub: where every frame is published.
    :param directory: the chat's directory: members and their state (user lists).
    :param channels: the chat's channels (``ChatState.channels``), read only.
    """

    def __init__(
        self, hub: Hub, directory: Directory, channels: dict[str, ChatChannel]
    ) -> None:
        self.hub = hub
        self.directory = directory
        self.channels = channels

    def tell(self, channel: ChatChannel, user: User | str, action: str) -> None:
        """Tell ``channel`` that ``user`` joined or parted (a name: a user of
        another process, whose state is not sent)."""
        name = user if isinstance(user, str) else user.name
        users = (
            self.member_list(channel)
            if channel.settings.broadcast_presence_with_user_lists
            else []
        )
        frame = presence_frame(
            channel=channel.name,
            user=name,
            action=action,
            users=users,
            state=user.public_state if action == "joined" and not isinstance(user, str) else None,
        )
        self.hub.publish(channel_message(channel.name, frame, excluded=frozenset((name,))))

    def parted_elsewhere(self, name: str, users: list[str]) -> None:
        """``users`` left channel ``name`` without saying so (their process died
        and their presence expired): tell the channel, if it wants to know."""
        channel = self.channels.get(name)
        if channel is None or not channel.settings.notify_presence:
            return
        for user in users:
            log.info("user %r parted %r: its process stopped refreshing it", user, name)
            self.tell(channel, user, "parted")

    def member_list(self, channel: ChatChannel, public: bool = True) -> list[dict[str, Any]]:
        """Every member of ``channel`` the directory knows with a state, by name:
        ``{"user", "state"}``, the public keys only if ``public``."""
        members = self.directory.members([channel.name]).get(channel.name, {})
        states = self.directory.states(members)
        listed = []
        for name in sorted(members):
            if name in states:
                state, keys = states[name]
                if public:
                    state = {key: state[key] for key in keys if key in state}
                listed.append({"user": name, "state": state})
        return listed


__all__ = ["Presence"]
