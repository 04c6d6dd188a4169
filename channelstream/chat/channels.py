"""Channelstream channels: settings, message history for ``/info``, members.

The hub channel ``channel:<name>`` carries every frame and keeps the recent
frames for resume (``store_frames``). This object keeps what channelstream
0.7.1 showed backends: the settings, the ``message`` history (``store_history``,
``history_size``) with edits and deletes applied, and who is in the channel.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from .frames import utcnow_iso

#: history_size 0 meant "unlimited" in channelstream 0.7.1; here it means this.
MAX_HISTORY = 10_000


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """A channel's settings, as ``/channel_config`` sets them (0.7.1 defaults)."""

    notify_presence: bool = False
    store_history: bool = False
    history_size: int = 10
    broadcast_presence_with_user_lists: bool = False
    notify_state: bool = False
    store_frames: bool = True
    #: Clients may join it themselves (socket.io ``join``) under ``socketio.join_policy
    #: = joinable``; without it only the backend puts connections in.
    joinable: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def history_limit(self) -> int:
        return self.history_size if 0 < self.history_size <= MAX_HISTORY else MAX_HISTORY


class ChatChannel:
    """One channelstream channel."""

    def __init__(
        self, name: str, settings: ChannelSettings, now: float, *, given: bool = False
    ) -> None:
        self.name = name
        self.uuid = str(uuid.uuid4())
        self.settings = settings
        #: The settings were given (``/channel_config``, a join's ``channel_configs``,
        #: or another process's, taken from it); False while only the defaults.
        #: A shared directory writes given settings back if its engine lost them.
        self.given = given
        self.history: deque[dict[str, Any]] = deque(maxlen=settings.history_limit)
        #: user name -> ids of that user's connections in the channel
        self.members: dict[str, set[str]] = {}
        self.last_active_iso = utcnow_iso()
        self.last_active = now
        #: The user whose client created the channel by joining it (None: the backend).
        self.created_by: str | None = None
        #: messages posted to the channel
        self.messages = 0

    def configure(self, settings: ChannelSettings) -> None:
        self.settings = settings
        self.given = True
        if self.history.maxlen != settings.history_limit:
            self.history = deque(self.history, maxlen=settings.history_limit)

    def touch(self, now: float) -> None:
        self.last_active = now
        self.last_active_iso = utcnow_iso()

    @property
    def connection_count(self) -> int:
        return sum(len(ids) for ids in self.members.values())

    def remember(self, entry: dict[str, Any]) -> None:
        """Add a posted message to the history shown by ``/info``."""
        if self.settings.store_history:
            self.history.append(entry)

    def edit(self, message_uuid: str, changes: dict[str, Any]) -> bool:
        for entry in self.history:
            if entry.get("uuid") == message_uuid:
                entry.update(changes)
                return True
        return False

    def delete(self, message_uuid: str) -> bool:
        for entry in self.history:
            if entry.get("uuid") == message_uuid:
                self.history.remove(entry)
                return True
        return False
