"""Channel settings in Redis: what a process meeting a channel takes, kept alive by the refresh.

Per channel ``C`` (the hub channel's name; the key under the engine's prefix,
hash-tagged ``{C}`` like the channel's presence and history, so they share
its Redis Cluster slot) one string, ``{C}:settings``: the channel's
:class:`~channelstream.chat.channels.ChannelSettings` as JSON. Each write
sets its expiry, ``gc_channels_after`` (at least ``redis.presence_ttl``;
0: kept), and every refresh of a process that has the channel pushes it back.

- ``/channel_config`` (:meth:`SharedSettings.save`): one MULTI of SETs, every
  channel's key at once; Redis down -> EngineUnavailable, nothing saved nor
  told. Then a ``settings`` broadcast per channel over the control channel
  (:mod:`.control`); a broadcast that fails is logged, not raised: the
  processes that missed it take the settings from Redis at their next refresh.
- settings given with a join that made a channel here
  (:meth:`SharedSettings.save_join`): SET NX, so that, as in 0.7.1, a
  channel that exists keeps its settings (this process then takes them at its
  next refresh); broadcast only when written. Redis down is logged, never
  raised: the refresh writes them the same way (the channel's settings are
  given).
- :meth:`SharedSettings.read` (a process meeting a channel): GET; Redis down
  is logged and answers None, as does a key that does not parse.
- a ``settings`` broadcast of another process (:meth:`SharedSettings.serve`):
  the channel here, if any, takes them (``ChatState.settings_changed``).
- the refresh, in its one pipeline: :meth:`SharedSettings.expire` (PEXPIRE)
  for each channel with members here; then, after everything else the refresh
  queues, :meth:`SharedSettings.write_back_and_read`: SET NX of the given
  settings (``ChatChannel.given``) of every channel here (a key Redis lost:
  a restart without persistence, FLUSHALL; or one a join could not write,
  Redis down: of processes doing so at once the first wins, and the read
  shows the others what it wrote; channels with the defaults only get no key,
  so a later join's ``channel_configs`` still sets them), then GET of every
  channel's key.
  :meth:`SharedSettings.refreshed` reads those last answers: each write-back
  counts in ``restored``; a channel whose settings in Redis differ takes them
  (``caught_up``: a broadcast it missed, or another process's write-back that
  won), unless its settings changed here while the pipeline was on its way
  (left to the next refresh).

The Redis work runs through the directory's ``run`` (Redis down ->
:class:`~channelstream.hub.bus.EngineUnavailable`) and ``quietly`` (logged,
None); queued commands go on the pipeline the refresh gives.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..chat.channels import ChannelSettings
from ..chat.routing import hub_channel
from ..hub.bus import EngineUnavailable
from ..strict_json import dumps

if TYPE_CHECKING:
    import redis

    from ..chat.channels import ChatChannel
    from ..chat.state import ChatState
    from .control import Control

log = logging.getLogger(__name__)


class Held(NamedTuple):
    """The settings of this process's channels when a refresh began."""

    #: channel -> its settings then
    settings: dict[str, ChannelSettings]
    #: the channels whose settings were given (written back if Redis lost them)
    given: list[str]


class SharedSettings:
    """The settings keys of channels under ``key_prefix`` (see the module doc).

    :param key_prefix: the engine's prefix (``redis.key_prefix``).
    :param ttl_ms: the keys' expiry (0: kept).
    :param control: this process's control channel (the ``settings`` broadcast).
    :param run: runs ``work(client)``; Redis down -> EngineUnavailable.
    :param quietly: runs ``work(client)``; Redis down is logged as ``what``
        (deferred to the next refresh) and answers None.
    """

    def __init__(
        self,
        key_prefix: str,
        ttl_ms: int,
        control: Control,
        run: Callable[[Callable[[redis.Redis], Any]], Any],
        quietly: Callable[[str, Callable[[redis.Redis], Any]], Any],
    ) -> None:
        self.key_prefix = key_prefix
        self.ttl_ms = ttl_ms
        self.control = control
        self._run = run
        self._quietly = quietly
        #: settings of this process's channels taken from Redis by the refresh (a
        #: broadcast this process missed)
        self.caught_up = 0
        #: given settings of this process's channels written back by the refresh
        #: (Redis had lost them)
        self.restored = 0

    def key(self, channel: str) -> str:
        return f"{self.key_prefix}{{{hub_channel(channel)}}}:settings"

    @staticmethod
    def parse(raw: bytes) -> ChannelSettings | None:
        known = {f.name for f in dataclasses.fields(ChannelSettings)}
        try:
            return ChannelSettings(**{k: v for k, v in json.loads(raw).items() if k in known})
        except (ValueError, TypeError, AttributeError) as err:
            log.error("chat directory: channel settings unreadable: %s", err)
            return None

    # -- what the directory's contract asks ------------------------------------------------

    def read(self, channel: str) -> ChannelSettings | None:
        key = self.key(channel)
        raw = self._quietly("reading channel settings", lambda c: c.get(key))
        if raw is None:
            return None
        return self.parse(raw)

    def save(self, configs: Mapping[str, ChannelSettings]) -> None:
        """One MULTI sets every channel's key; Redis down -> EngineUnavailable,
        nothing saved nor told. Then each is broadcast: a process that misses
        it takes the settings from Redis on its next refresh."""
        ttl = self.ttl_ms or None

        def write(client: redis.Redis) -> None:
            pipe = client.pipeline(transaction=True)
            for name, settings in configs.items():
                pipe.set(self.key(name), dumps(settings.as_dict()), px=ttl)
            pipe.execute()

        if not configs:
            return
        self._run(write)
        for name, settings in configs.items():
            self._tell(name, settings)

    def save_join(self, channel: str, settings: ChannelSettings) -> None:
        """Written only if no process gave ``channel`` settings meanwhile (SET NX:
        as in 0.7.1, a channel that exists keeps its settings; this process then
        takes them at its next refresh). Not written now (Redis down): the
        refresh writes them the same way (the channel's settings are given)."""
        raw = dumps(settings.as_dict())
        ttl = self.ttl_ms or None
        written = self._quietly(
            "saving channel settings",
            lambda c: c.set(self.key(channel), raw, nx=True, px=ttl),
        )
        if written:
            self._tell(channel, settings)

    def _tell(self, channel: str, settings: ChannelSettings) -> None:
        """Processes that have ``channel`` take ``settings`` now (those not
        listening: from Redis, on their next refresh)."""
        try:
            self.control.broadcast("settings", {"channel": channel, "settings": settings.as_dict()})
        except EngineUnavailable as err:
            log.warning("chat directory: settings of %r not told to others: %s", channel, err)

    def serve(self, chat: ChatState, args: dict[str, Any]) -> Any:
        """Another process gave a channel settings: a channel here takes them too."""
        settings = self.parse(dumps(args["settings"]))
        if settings is not None:
            chat.settings_changed(str(args["channel"]), settings)
        return None

    # -- the refresh's part ------------------------------------------------------------------

    @staticmethod
    def held(channels: Mapping[str, ChatChannel]) -> Held:
        """What :meth:`refreshed` compares with; taken when the refresh begins."""
        settings = {name: channel.settings for name, channel in channels.items()}
        return Held(settings, [name for name in settings if channels[name].given])

    def expire(self, pipe: Any, channel: str) -> Any:
        return pipe.pexpire(self.key(channel), self.ttl_ms)

    def write_back_and_read(self, pipe: Any, held: Held) -> int:
        """Queue SET NX of each given settings, then GET of each channel's;
        answers how many answers they add (the pipeline's last ones)."""
        for name in held.given:  # back if Redis lost them (a process writing first wins)
            raw = dumps(held.settings[name].as_dict())
            pipe.set(self.key(name), raw, nx=True, px=self.ttl_ms or None)
        for name in held.settings:
            pipe.get(self.key(name))
        return len(held.given) + len(held.settings)

    def refreshed(self, chat: ChatState, held: Held, answers: Sequence[Any]) -> None:
        """Take :meth:`write_back_and_read`'s answers: count the settings
        written back, catch up with those Redis has."""
        restored, stored = answers[: len(held.given)], answers[len(held.given) :]
        for name, written in zip(held.given, restored, strict=True):
            if written:
                log.info("chat directory: settings of %r written back to redis", name)
                self.restored += 1
        self._catch_up(chat, dict(zip(held.settings, stored, strict=True)), held.settings)

    def _catch_up(
        self,
        chat: ChatState,
        stored: Mapping[str, bytes | None],
        held: Mapping[str, ChannelSettings],
    ) -> None:
        """Channels here take the settings Redis has for them (read by the
        refresh) where they differ, unless theirs changed since they were read;
        either way their settings count as given from then on."""
        for name, raw in stored.items():
            channel = chat.channels.get(name)
            if raw is None or channel is None or channel.settings is not held[name]:
                continue
            settings = self.parse(raw)
            if settings is None:
                continue
            if settings != channel.settings:
                log.info("chat directory: channel %r takes the settings found in redis", name)
                self.caught_up += 1
            chat.settings_changed(name, settings)


__all__ = ["Held", "SharedSettings"]
