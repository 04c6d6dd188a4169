"""The hub: channels by name, outboxes, the bus, and channel collection.

Doors talk to the hub only:

* a door that receives messages builds a ``Message`` and calls ``publish``;
* a door that serves a connection calls ``open_outbox`` once, ``subscribe``
  per channel, and runs one writer greenlet that loops on ``outbox.wait()`` /
  ``outbox.drain()`` and writes each batch to its socket.

The hub lives in one OS thread; every method is called from greenlets of that
thread and none of them yields, so each call is atomic for the others.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent

from .bus import Bus, EngineUnavailable, LocalBus
from .channel import Channel, ChannelConfig
from .filters import Decimation, Filter
from .message import Message
from .outbox import REASON_LOST, REASON_SHUTDOWN, Outbox
from .subscription import AFTER, Start, Subscription

log = logging.getLogger(__name__)

MAX_CHANNEL_NAME = 1024


def _clock_ms() -> int:
    return time.time_ns() // 1_000_000


class HubState(str, enum.Enum):
    """Where a hub is in its life: ``new -> running -> stopped`` (no restart)."""

    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class HubConfig:
    """Hub-wide defaults.

    :param default_channel: config of channels not configured by name.
    :param outbox_size: soft bound of an outbox (drop oldest droppable).
    :param outbox_hard_limit: outbox length past which it is closed.
    :param channel_idle_after: seconds after which a channel with no
        subscriber and no publish is collected (0 = never).
    :param gc_interval: seconds between collection passes.
    """

    default_channel: ChannelConfig = field(default_factory=ChannelConfig)
    outbox_size: int = 1000
    outbox_hard_limit: int = 10000
    channel_idle_after: float = 3600.0
    gc_interval: float = 30.0

    def __post_init__(self) -> None:
        if self.outbox_size < 1:
            raise ValueError("outbox_size must be >= 1")
        if self.outbox_hard_limit < self.outbox_size:
            raise ValueError("outbox_hard_limit must be >= outbox_size")
        if self.channel_idle_after < 0 or self.gc_interval <= 0:
            raise ValueError("channel_idle_after must be >= 0 and gc_interval > 0")


class Hub:
    """Channels, outboxes and the bus of one process.

    :param bus: defaults to a ``LocalBus``.
    :param clock_ms: UTC time in ms (tests may pass a fake clock).
    :param monotonic: monotonic seconds, for channel idleness.
    """

    def __init__(
        self,
        config: HubConfig | None = None,
        bus: Bus | None = None,
        *,
        clock_ms: Callable[[], int] = _clock_ms,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or HubConfig()
        self.bus = bus or LocalBus()
        self.bus.attach(self._receive, self._receive_many)
        if self.bus.sequences:
            self.bus.attach_engine(self._deliver_sequenced, self._adopt)
        self._clock_ms = clock_ms
        self._monotonic = monotonic
        self._channels: dict[str, Channel] = {}
        self._configs: dict[str, ChannelConfig] = {}
        self._outboxes: set[Outbox] = set()
        #: channel name -> greenlets inside ``_follow`` for it (collection skips those)
        self._following: dict[str, int] = {}
        self._collected = {"channels": 0, "published": 0, "delivered": 0, "dropped": 0}
        self._gc: gevent.Greenlet | None = None
        self.state = HubState.NEW

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self.state is HubState.RUNNING

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Start the bus and the collection greenlet. Idempotent."""
        if self.state is HubState.STOPPED:
            raise RuntimeError("a stopped hub cannot start again")
        if self.state is HubState.RUNNING:
            return
        self.state = HubState.RUNNING
        self.bus.start()
        self._gc = gevent.spawn(self._gc_loop)

    def stop(self) -> None:
        """Close every outbox (``server shutting down``), stop GC and bus.

        Writers may still flush what their outbox holds. Idempotent, and
        valid before ``start``.
        """
        if self.state is HubState.STOPPED:
            return
        was_running = self.state is HubState.RUNNING
        self.state = HubState.STOPPED
        for outbox in list(self._outboxes):
            outbox.close(REASON_SHUTDOWN)
        if self._gc is not None:
            self._gc.kill()
            self._gc = None
        if was_running:
            self.bus.stop()

    # -- channels -------------------------------------------------------------

    def channel(self, name: str, *, create: bool = False) -> Channel | None:
        """The channel called ``name``; created if ``create``, else None."""
        channel = self._channels.get(name)
        if channel is None and create:
            if not isinstance(name, str) or not name or len(name) > MAX_CHANNEL_NAME:
                raise ValueError(
                    "channel name must be a non-empty string of at most "
                    f"{MAX_CHANNEL_NAME} characters"
                )
            channel = Channel(
                name,
                self._configs.get(name, self.config.default_channel),
                clock_ms=self._clock_ms,
                monotonic=self._monotonic,
            )
            self._channels[name] = channel
            if not self.bus.sequences:  # an engine bus follows on subscribe (_follow)
                self.bus.watch(name)
        return channel

    def channels(self) -> list[Channel]:
        return list(self._channels.values())

    def configure_channel(self, name: str, config: ChannelConfig) -> None:
        """Set the config of ``name``, now and whenever it is (re)created."""
        self._configs[name] = config
        channel = self._channels.get(name)
        if channel is not None:
            channel.reconfigure(config)

    def forget_channel_config(self, name: str) -> None:
        """Drop the config set for ``name``: created again, it gets the default.

        A door calls it when it forgets the channel itself (e.g. a collected
        chat channel), so that configs do not pile up with every name ever
        used. A channel that exists keeps its config until it is collected.
        """
        self._configs.pop(name, None)

    def channel_config(self, name: str) -> ChannelConfig:
        return self._configs.get(name, self.config.default_channel)

    # -- publishing -------------------------------------------------------------

    def publish(self, message: Message) -> Message | None:
        """Publish through the bus; never blocks on a subscriber.

        :returns: the sequenced message when the bus delivered it locally at
            once (the local bus always does), else None.
        :raises EngineUnavailable: an engine bus cannot reach its engine.
        """
        if self.bus.sequences and self.shared(message.channel):
            return self.bus.publish(message)
        if self.bus.sequences:
            return self._receive(message)
        return self.bus.publish(message)

    def publish_many(self, messages: list[Message]) -> list[Message | None]:
        """``publish`` each of ``messages``, in order, in fewer steps: a run of
        messages to one channel is fanned out together (``Channel.publish_many``).
        """
        if not self.bus.sequences:
            return self.bus.publish_many(messages)
        results: list[Message | None] = []
        start = 0
        for end in range(1, len(messages) + 1):  # runs of shared / local channels, in order
            if end == len(messages) or self.shared(messages[end].channel) != self.shared(
                messages[start].channel
            ):
                run = messages[start:end]
                if self.shared(run[0].channel):
                    results.extend(self.bus.publish_many(run))
                else:
                    results.extend(self._receive_many(run))
                start = end
        return results

    def publish_dated(self, messages: list[Message]) -> list[Message]:
        """Publish messages that happened before now, each at its ``time_ms``
        (``Channel.publish_dated``: kept at that time, offered only to the
        subscriptions whose window covers it), in order. For channels kept in
        this process (not through an engine): a door refilling one from a log.

        :raises ValueError: a channel shared through an engine, or a message
            ``Channel.publish_dated`` refuses.
        """
        for message in messages:
            if self.shared(message.channel):
                raise ValueError(
                    f"{message.channel!r} goes through the engine: only a local channel"
                    " takes dated messages"
                )
        start = 0
        for end in range(1, len(messages) + 1):
            if end == len(messages) or messages[end].channel != messages[start].channel:
                channel = self.channel(messages[start].channel, create=True)
                channel.publish_dated(messages[start:end])  # type: ignore[union-attr]
                start = end
        return messages

    def shared(self, channel: str) -> bool:
        """Whether ``channel`` goes through the engine (an engine bus, and not ``local``)."""
        return self.bus.sequences and not self.channel_config(channel).local

    def _count_drop(self, message: Message) -> None:
        channel = self._channels.get(message.channel)
        if channel is not None and channel.epoch == message.epoch:
            channel.dropped += 1
        else:  # its channel was collected meanwhile
            self._collected["dropped"] += 1

    def _receive(self, message: Message) -> Message:
        channel = self.channel(message.channel, create=True)
        return channel.publish(message)  # type: ignore[union-attr]

    def _receive_many(self, messages: list[Message]) -> list[Message]:
        start = 0
        for end in range(1, len(messages) + 1):
            if end == len(messages) or messages[end].channel != messages[start].channel:
                channel = self.channel(messages[start].channel, create=True)
                channel.publish_many(messages[start:end])  # type: ignore[union-attr]
                start = end
        return messages

    # -- subscribing --------------------------------------------------------------

    def open_outbox(
        self,
        *,
        max_queue: int | None = None,
        hard_limit: int | None = None,
        max_bytes: int = 0,
        hard_bytes: int = 0,
        name: str = "",
    ) -> Outbox:
        """A new outbox with the hub's default bounds, closed by ``stop``."""
        max_queue = max_queue or self.config.outbox_size
        hard_limit = hard_limit or max(self.config.outbox_hard_limit, max_queue)
        outbox = Outbox(
            max_queue,
            hard_limit,
            max_bytes=max_bytes,
            hard_bytes=hard_bytes,
            name=name,
            on_drop=self._count_drop,
        )
        self._outboxes.add(outbox)
        outbox.on_close(self._outboxes.discard)
        return outbox

    def subscribe(
        self,
        outbox: Outbox,
        channel: str,
        *,
        start: Start | None = None,
        filter: Filter | dict | None = None,
        decimation: Decimation | None = None,
        principal: str | None = None,
    ) -> Subscription:
        """Subscribe ``outbox`` to ``channel`` (created if need be).

        History asked for by ``start`` is queued first, then live messages,
        with no gap and no duplicate. If a resume cannot be honoured the
        subscription starts live and says why in ``resume_error``.

        :raises ValueError: bad channel name, bad filter, closed outbox, or an
            outbox already subscribed to that channel.
        """
        if isinstance(filter, dict):
            filter = Filter(filter)
        target = self.channel(channel, create=True)
        if self.shared(channel):
            # Following may block on the engine; the channel must still be the
            # hub's when it returns, or the subscription would sit on an object
            # nobody publishes to. Collection skips a channel being followed, so
            # this is a second guard (e.g. a collection forced by a test or a
            # future caller): make the channel again and follow it once more.
            for attempt in (1, 2):
                self._follow(target, start)  # raises EngineUnavailable
                if self._channels.get(channel) is target:
                    break
                if attempt == 2:
                    raise EngineUnavailable(
                        f"channel {channel!r} was let go twice while following it on the engine"
                    )
                target = self.channel(channel, create=True)
        return target.subscribe(  # type: ignore[union-attr]
            outbox, start=start, filter=filter, decimation=decimation, principal=principal
        )

    def resume(self, subscription: Subscription, start: Start) -> Subscription:
        """Restart ``subscription`` from ``start`` (a ``Start.after``), atomically.

        If the channel can replay from there, the outbox's queued messages of
        that channel are purged, the subscription is replaced by one that
        replays from ``start`` and goes on live, and the new one is returned:
        nothing is lost or repeated. If it cannot (epoch changed, history too
        short), nothing changes: the old subscription is returned with
        ``resume_error`` set, and its queued messages stay.
        """
        channel = subscription.channel
        if self.shared(channel.name):
            self._follow(channel, start)
        error = channel.resume_error(start)
        if error is not None:
            subscription.resume_error = error
            return subscription
        outbox = subscription.outbox
        outbox.purge(channel.name)
        subscription.cancel()
        return channel.subscribe(
            outbox,
            start=start,
            filter=subscription.filter,
            decimation=subscription.decimation,
            principal=subscription.principal,
        )

    # -- an engine bus -------------------------------------------------------------

    def _follow(self, channel: Channel, start: Start | None) -> None:
        """Follow ``channel`` on the engine; for a resume, fill the history it
        needs from the engine's (a process that just started following it, or
        a client that comes back to another process than before).

        While it runs (it may block on the engine) the channel is marked as
        being followed: :meth:`collect` leaves it alone, so the engine is not
        told to let it go under the subscriber that is arriving."""
        name = channel.name
        self._following[name] = self._following.get(name, 0) + 1
        try:
            self._follow_now(channel, start)
        finally:
            left = self._following[name] - 1
            if left:
                self._following[name] = left
            else:
                del self._following[name]

    def _follow_now(self, channel: Channel, start: Start | None) -> None:
        self.bus.watch(channel.name)
        if start is None or start.mode != AFTER or start.epoch != channel.epoch:
            return
        first = channel.history.first_offset
        end = first if first is not None else channel.last_offset + 1
        if start.offset + 1 < end:
            channel.backfill(self.bus.history(channel.name, start.offset, end))

    def _deliver_sequenced(self, name: str, messages: list[Message]) -> None:
        channel = self._channels.get(name)
        if channel is not None:  # else no longer followed here: nobody needs it
            channel.receive_sequenced(messages)

    def _adopt(self, name: str, epoch: str, last_offset: int, lost: bool = False) -> None:
        channel = self._channels.get(name)
        if channel is not None:
            channel.adopt(epoch, last_offset)
            if lost:  # its subscribers here missed messages: they must resume and be told
                for sub in channel.subscriptions:
                    sub.outbox.close(REASON_LOST)

    # -- collection -----------------------------------------------------------------

    def collect(self) -> int:
        """Collect channels idle and without subscribers; trim aged history.

        :returns: the number of channels collected.
        """
        idle_after = self.config.channel_idle_after
        now = self._monotonic()
        now_ms = self._clock_ms()
        collected = 0
        for name, channel in list(self._channels.items()):
            channel.history.trim(now_ms)
            if name in self._following:  # its first subscriber is on the way (see _follow)
                continue
            # Followed on an engine, a channel nobody here reads is let go at once:
            # the engine keeps its history, and following it costs every publish.
            unread = channel.subscriber_count == 0 and self.shared(name)
            if unread or (
                idle_after
                and not channel.config.persistent
                and channel.subscriber_count == 0
                and channel.idle_for(now) >= idle_after
            ):
                del self._channels[name]
                if not self.bus.sequences or self.shared(name):
                    self.bus.unwatch(name)
                totals = self._collected
                totals["channels"] += 1
                totals["published"] += channel.published
                totals["delivered"] += channel.delivered
                totals["dropped"] += channel.dropped
                collected += 1
        if collected:
            log.debug("collected %d idle channels", collected)
        return collected

    def _gc_loop(self) -> None:
        while True:
            gevent.sleep(self.config.gc_interval)
            try:
                self.collect()
            except Exception:
                log.exception("channel collection failed; retrying next interval")

    # -- stats ------------------------------------------------------------------------

    def stats(self) -> dict:
        """JSON-able counters of the hub (totals include collected channels)."""
        totals = dict(self._collected)
        for channel in self._channels.values():
            totals["published"] += channel.published
            totals["delivered"] += channel.delivered
            totals["dropped"] += channel.dropped
        return {
            "state": self.state.value,
            "running": self.running,
            "bus": self.bus.status(),
            "channels": len(self._channels),
            "channels_collected": totals["channels"],
            "outboxes": len(self._outboxes),
            "published": totals["published"],
            "delivered": totals["delivered"],
            "dropped": totals["dropped"],
        }
