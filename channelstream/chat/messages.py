"""The message operations of the server API: post, edit, delete.

A message item goes to its channel's members through the hub channel
``channel:<name>`` (only to ``pm_users`` if given, never to
``exclude_users``), or, without a channel, to every connection of each of
its ``pm_users`` through their ``user:<name>`` channels. Edits and deletes
follow the same routes as ``message:edit`` and ``message:delete`` frames and
change the channel's ``/info`` history.

:class:`MessageRouter` does it with explicit collaborators (the hub, a
read-only view of the chat's channels, and who exists); it owns one counter,
:attr:`MessageRouter.posted`. :class:`~channelstream.chat.state.ChatState`
holds one and delegates ``/message`` to it. No method yields.
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .frames import delete_frame, edit_frame, message_frame, utcnow_iso
from .routing import channel_message, user_message

if TYPE_CHECKING:
    from ..hub import Hub, Message
    from .channels import ChatChannel


class MessageRouter:
    """Posts, edits and deletes channelstream messages through the hub.

    :param hub: where every frame is published.
    :param find_channel: the chat's channel of a name, or None if no process
        has it (its history and counters are updated).
    :param known_user: whether a user exists (a global private message goes
        only to users that exist; with a shared directory, on any process).
    :param now: the monotonic clock of channel activity.
    """

    def __init__(
        self,
        hub: Hub,
        find_channel: Callable[[str], ChatChannel | None],
        known_user: Callable[[str], bool],
        now: Callable[[], float],
    ) -> None:
        self.hub = hub
        self.find_channel = find_channel
        self.known_user = known_user
        self.now = now
        #: Items accepted by ``POST /message`` (0.7.1's ``total_unique_messages``).
        self.posted = 0

    def post(self, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``POST /message``: deliver each item; return them as accepted.

        An item has ``user``, ``message`` (optional), ``channel`` and/or
        ``pm_users``, ``exclude_users``, ``no_history``, ``uuid``,
        ``timestamp``. With a channel it goes to the channel's members (only
        to ``pm_users`` if given, never to ``exclude_users``); with only
        ``pm_users``, to every connection of those users. Items with neither,
        or for a channel that does not exist, are echoed and not delivered,
        as channelstream 0.7.1 did.
        """
        accepted = []
        # Published together at the end: the hub fans a run of messages to one
        # channel out at once (one put per connection, not one per message).
        outgoing: list[Message] = []
        for item in items:
            channel_name = item.get("channel")
            pm_users = list(item.get("pm_users") or ())
            exclude = list(item.get("exclude_users") or ())
            echo = {
                "pm_users": pm_users,
                "exclude_users": exclude,
                "channel": channel_name,
                "no_history": bool(item.get("no_history", False)),
                "uuid": item.get("uuid") or str(uuid_module.uuid4()),
                "timestamp": item.get("timestamp") or utcnow_iso(),
                "user": item["user"],
            }
            if "message" in item:
                echo["message"] = item["message"]
            echo["edited"] = None
            if not channel_name and not pm_users:
                continue
            accepted.append(echo)
            self.posted += 1
            frame = message_frame(
                channel=channel_name,
                uuid=echo["uuid"],
                timestamp=echo["timestamp"],
                user=echo["user"],
                message=echo.get("message"),
                has_message="message" in echo,
                pm_users=pm_users,
            )
            if channel_name:
                channel = self.find_channel(channel_name)
                if channel is None:
                    continue
                channel.messages += 1
                channel.touch(self.now())
                if not echo["no_history"]:
                    channel.remember({**frame, "pm_users": pm_users, "exclude_users": exclude})
            outgoing.extend(self._route(channel_name, pm_users, exclude, frame))
        self.hub.publish_many(outgoing)
        return accepted


    def edit(self, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``PATCH /message``: change stored messages and broadcast ``message:edit``."""
        accepted = []
        for item in items:
            changes = {"uuid": item["uuid"]}
            for key in ("timestamp", "user", "message"):
                if key in item:
                    changes[key] = item[key]
            changes["edited"] = item.get("edited") or utcnow_iso()
            echo = self._delivery_echo(item) | changes
            accepted.append(echo)
            self._route_change(item, edit_frame(item.get("channel"), changes), changes)
        return accepted


    def delete(self, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``DELETE /message``: remove stored messages and broadcast ``message:delete``."""
        accepted = []
        for item in items:
            accepted.append(self._delivery_echo(item) | {"uuid": item["uuid"]})
            self._route_change(item, delete_frame(item.get("channel"), item["uuid"]), None)
        return accepted


    @staticmethod
    def _delivery_echo(item: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "pm_users": list(item.get("pm_users") or ()),
            "exclude_users": list(item.get("exclude_users") or ()),
            "channel": item.get("channel"),
            "no_history": bool(item.get("no_history", False)),
        }


    def _route_change(
        self, item: Mapping[str, Any], frame: dict[str, Any], changes: dict[str, Any] | None
    ) -> None:
        channel_name = item.get("channel")
        pm_users = list(item.get("pm_users") or ())
        exclude = list(item.get("exclude_users") or ())
        if channel_name:
            channel = self.find_channel(channel_name)
            if channel is None:
                return
            if changes is None:
                channel.delete(item["uuid"])
            else:
                channel.edit(item["uuid"], changes)
            channel.touch(self.now())
        self.hub.publish_many(self._route(channel_name, pm_users, exclude, frame))


    def _route(
        self,
        channel_name: str | None,
        pm_users: list[str],
        exclude: list[str],
        frame: dict[str, Any],
    ) -> list[Message]:
        """The hub messages that carry ``frame``: one to its channel (the hub
        enforces ``pm_users`` and ``exclude_users``), or without a channel one to
        each existing pm user."""
        if channel_name:
            return [
                channel_message(
                    channel_name,
                    frame,
                    audience=frozenset(pm_users) if pm_users else None,
                    excluded=frozenset(exclude) if exclude else None,
                )
            ]
        names = dict.fromkeys(pm_users)
        return [user_message(name, frame) for name in names if self.known_user(name)]
