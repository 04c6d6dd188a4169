"""Channel settings: what a channel made here is set to, and its hub channel's history.

A channelstream channel has settings (:class:`~.channels.ChannelSettings`),
the same on every process: given by ``/channel_config``, by a join's
``channel_configs`` for a channel that does not exist yet (as in 0.7.1: one
that exists keeps its settings), or the defaults. The chat's directory keeps
them for every process (``settings``, ``save_settings``,
``save_join_settings``; :mod:`.directory`); another process's change arrives
as :meth:`ChannelConfigs.taken` (``ChatState.settings_changed``).

The settings decide the history of the hub channel ``channel:<name>``: how
far back a reconnecting client can resume (:meth:`ChannelConfigs.configure_hub`).

:class:`ChannelConfigs` is the only maker of the chat's channels; the
:class:`~channelstream.chat.state.ChatState` holds one and delegates to it.
No method yields with the local directory; with a shared one, the
directory's calls wait on the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..hub import ChannelConfig
from .channels import ChannelSettings, ChatChannel
from .routing import hub_channel

if TYPE_CHECKING:
    from ..hub import Hub
    from .directory import Directory


class ChannelConfigs:
    """Makes the chat's channels with their settings and configures their hub channels.

    :param hub: whose channel configuration follows the settings.
    :param directory: the chat's directory: the settings every process sees.
    :param channels: the chat's channels (``ChatState.channels``), which this
        adds to; only the collection (``ChatState.collect``) removes from it.
    :param now: the monotonic clock of channel activity.
    """

    def __init__(
        self,
        hub: Hub,
        directory: Directory,
        channels: dict[str, ChatChannel],
        now: Callable[[], float],
    ) -> None:
        self.hub = hub
        self.directory = directory
        self.channels = channels
        self.now = now

    def channel(self, name: str, settings: ChannelSettings | None, now: float) -> ChatChannel:
        """The channel ``name``, made here if need be: with the settings another
        process gave it, else with ``settings`` (saved for the others, quietly:
        ``save_join_settings``), else the defaults."""
        channel = self.channels.get(name)
        if channel is None:
            # As in 0.7.1, settings given with a join configure a channel that does
            # not exist yet: one that another process has keeps the settings it has.
            known = self.directory.settings(name)
            if known is not None:
                settings = known
            elif settings is not None:
                self.directory.save_join_settings(name, settings)
            channel = self.make(name, settings, now)
        return channel

    def find(self, name: str) -> ChatChannel | None:
        """The channel ``name``: this process's, or, if another process has it,
        made here with the settings that process gave it; None if nobody has it."""
        channel = self.channels.get(name)
        if channel is None and self.directory.channel_exists(name):
            channel = self.channel(name, None, self.now())
        return channel

    def make(self, name: str, settings: ChannelSettings | None, now: float) -> ChatChannel:
        """A new channel here: with ``settings`` (given), else the defaults."""
        channel = ChatChannel(
            name, settings or ChannelSettings(), now, given=settings is not None
        )
        self.channels[name] = channel
        self.configure_hub(channel)
        return channel

    def configure_hub(self, channel: ChatChannel) -> None:
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

    def taken(self, name: str, settings: ChannelSettings) -> None:
        """Another process gave channel ``name`` ``settings``: take them if it is
        here (given settings, even when they equal the defaults it had)."""
        channel = self.channels.get(name)
        if channel is None:
            return
        self._reconfigure(channel, settings)
        channel.given = True

    def set(self, configs: Mapping[str, ChannelSettings]) -> None:
        """Set (replace) the settings of channels, creating them here; with a
        shared directory, on every process that has them.

        All or nothing: the directory saves them first (``save_settings``); if
        the engine cannot take them (``EngineUnavailable``: 503), no channel
        changed, here or elsewhere.
        """
        self.directory.save_settings(configs)
        now = self.now()
        for name, settings in configs.items():
            channel = self.channels.get(name)
            if channel is None:
                self.make(name, settings, now)
            else:
                self._reconfigure(channel, settings)
                channel.given = True  # (even when they equal the defaults it had)

    def _reconfigure(self, channel: ChatChannel, settings: ChannelSettings) -> None:
        if channel.settings != settings:
            channel.configure(settings)
            self.configure_hub(channel)


__all__ = ["ChannelConfigs"]
