"""The message operations of the server API: post, edit, delete.

A message item goes to its channel's members through the hub channel
``channel:<name>`` (only to ``pm_users`` if given, never to
``exclude_users``), or, without a channel, to every connection of each of
its ``pm_users`` through their ``user:<name>`` channels. Edits and deletes
follow the same routes as ``message:edit`` and ``message:delete`` frames and
change the channel's ``/info`` history, which the directory keeps (in the
channel for one process, in the engine when it is shared).

:class:`MessageRouter` does it with explicit collaborators (the hub, a
read-only view of the chat's channels, and the chat's directory: the
``/info`` history and who exists); it owns one counter,
:attr:`MessageRouter.posted`. :class:`~channelstream.chat.state.ChatState`
holds one and delegates ``/message`` to it. No method yields with the local
directory; with a shared one, the directory's calls wait on the engine.
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
    from .directory import Directory


class MessageRouter:
    """Posts, edits and deletes channelstream messages through the hub.

    :param hub: where every frame is published.
    :param find_channel: the chat's channel of a name, or None if no process
        has it (its counters are updated).
    :param directory: the chat's directory: the channels' ``/info`` history
        (``remember``, ``change_history``, raising EngineUnavailable before
        anything is published), and whether a user exists (a global private
        message goes only to users that exist; with a shared directory, on
        any process).
    :param now: the monotonic clock of channel activity.
    """

    def __init__(
        self,
        hub: Hub,
        find_channel: Callable[[str], ChatChannel | None],
        directory: Directory,
        now: Callable[[], float],
    ) -> None:
        self.hub = hub
        self.find_channel = find_channel
        self.directory = directory
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

        The history entries (items of ``store_history`` channels without
        ``no_history``) go to the directory in one call before anything is
        published or counted: if it raises, nothing of the POST happened.
        A POST to channels that keep no history never calls it.
        """
        accepted = []
        # Published together at the end: the hub fans a run of messages to one
        # channel out at once (one put per connection, not one per message).
        outgoing: list[Message] = []
        kept: list[tuple[ChatChannel, dict[str, Any]]] = []
        touched: dict[ChatChannel, int] = {}
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
                touched[channel] = touched.get(channel, 0) + 1
                if channel.settings.store_history and not echo["no_history"]:
                    entry = {**frame, "pm_users": pm_users, "exclude_users": exclude}
                    kept.append((channel, entry))
            outgoing.extend(self._route(channel_name, pm_users, exclude, frame))
        if kept:
            self.directory.remember(kept)
        self.posted += len(accepted)
        self._touch(touched)
        self.hub.publish_many(outgoing)
        return accepted

    def edit(self, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``PATCH /message``: change stored messages and broadcast ``message:edit``."""
        accepted = []
        routed = []
        for item in items:
            changes = {"uuid": item["uuid"]}
            for key in ("timestamp", "user", "message"):
                if key in item:
                    changes[key] = item[key]
            changes["edited"] = item.get("edited") or utcnow_iso()
            echo = self._delivery_echo(item) | changes
            accepted.append(echo)
            routed.append((item, edit_frame(item.get("channel"), changes), changes))
        self._route_changes(routed)
        return accepted

    def delete(self, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``DELETE /message``: remove stored messages and broadcast ``message:delete``."""
        accepted = []
        routed = []
        for item in items:
            accepted.append(self._delivery_echo(item) | {"uuid": item["uuid"]})
            routed.append((item, delete_frame(item.get("channel"), item["uuid"]), None))
        self._route_changes(routed)
        return accepted

    @staticmethod
    def _delivery_echo(item: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "pm_users": list(item.get("pm_users") or ()),
            "exclude_users": list(item.get("exclude_users") or ()),
            "channel": item.get("channel"),
            "no_history": bool(item.get("no_history", False)),
        }

    def _route_changes(
        self, routed: list[tuple[Mapping[str, Any], dict[str, Any], dict[str, Any] | None]]
    ) -> None:
        """Edits (changes) or deletes (None): the histories first, in one
        directory call, then the frames; nothing is published if it raises."""
        history: list[tuple[ChatChannel, str, dict[str, Any] | None]] = []
        touched: dict[ChatChannel, int] = {}
        outgoing: list[Message] = []
        for item, frame, changes in routed:
            channel_name = item.get("channel")
            pm_users = list(item.get("pm_users") or ())
            exclude = list(item.get("exclude_users") or ())
            if channel_name:
                channel = self.find_channel(channel_name)
                if channel is None:
                    continue
                history.append((channel, item["uuid"], changes))
                touched[channel] = 0
            outgoing.extend(self._route(channel_name, pm_users, exclude, frame))
        if history:
            self.directory.change_history(history)
        self._touch(touched)
        self.hub.publish_many(outgoing)

    def _touch(self, touched: Mapping[ChatChannel, int]) -> None:
        """Channels were active now; each counts its messages posted."""
        if touched:
            now = self.now()
            for channel, posted in touched.items():
                channel.messages += posted
                channel.touch(now)

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
        known = self.directory.user_exists
        return [user_message(name, frame) for name in names if known(name)]
