"""Channels: sequencing, history, sticky state and fan-out.

A channel stamps each message it receives with the next offset, its epoch and
a receive time (UTC ms, never decreasing), stores it in its history, records
it as the latest of its type if it is sticky, and offers it to every
subscription. Publishing and subscribing never yield to another greenlet, so
a new subscription that replays history and then goes live can neither miss
nor repeat a message published concurrently.

The epoch is a random string chosen when the channel is created. A channel
re-created after collection or a restart has a new epoch, which is how a
resuming client learns that the offsets it holds mean nothing here.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .filters import Decimation, Filter, fields_match, match_key
from .history import History
from .message import Message
from .outbox import Outbox
from .subscription import AFTER, LIVE, MS_AGO, OLDEST, Start, Subscription

_ABSENT = object()  # a field the message does not have


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """How a channel keeps its past.

    :param history_size: messages kept for resume and replay (0 = none).
    :param history_seconds: age limit of the history (0 = none).
    :param persistent: never collected when idle (e.g. the packet channel,
        whose history is its point).
    :param local: kept in this process even when the hub has a shared engine
        (the packet channel: every process gets every packet from the broker
        and keeps its own time window).
    """

    history_size: int = 100
    history_seconds: float = 0.0
    persistent: bool = False
    local: bool = False

    def __post_init__(self) -> None:
        if self.history_size < 0:
            raise ValueError("history_size must be >= 0")
        if self.history_seconds < 0:
            raise ValueError("history_seconds must be >= 0")


def new_epoch() -> str:
    return secrets.token_hex(4)


class _Group:
    """Subscriptions with the same filter: it is evaluated once for them all."""

    __slots__ = ("rest", "subs")

    def __init__(self, rest: tuple[tuple[str, object], ...]) -> None:
        #: the filter's pairs but the one it is indexed by (original values)
        self.rest = rest
        self.subs: list[Subscription] = []


class _FanOut:
    """A channel's subscriptions arranged so that a publish costs in
    proportion to the subscriptions it reaches, not to all of them.

    - ``plain``: no filter, no decimation: every (public) message;
    - ``index``: subscriptions with a filter and no decimation, grouped by
      identical filter (:meth:`Filter.index_pairs`), each group filed under
      one of its pairs: ``{key: {match_key(value): [groups]}}``. A message
      looks up its own value of each indexed key, and only the groups found
      evaluate their other pairs (as :meth:`Filter.matches` does);
    - ``evaluated``: the rest (decimation counts every message it sees, a
      NaN filter value): ``Subscription.accepts`` as before.

    Private and deferred messages do not come here: the channel offers them
    to every subscription in turn. Kept up to date by ``add``/``remove``
    (O(1) but for list removals), except while a fan-out walks it: the
    channel then drops it and builds a new one for the next publish, so a
    subscription cancelled during a fan-out cannot upset the walk.
    """

    __slots__ = ("plain", "evaluated", "index", "groups")

    def __init__(self, subs: list[Subscription]) -> None:
        self.plain: list[Subscription] = []
        self.evaluated: list[Subscription] = []
        self.index: dict[str, dict[object, list[_Group]]] = {}
        self.groups: dict[tuple, _Group] = {}
        for sub in subs:
            self.add(sub)

    @staticmethod
    def _pairs(sub: Subscription) -> tuple | None:
        if sub.decimation is not None or sub.filter is None:
            return None
        return sub.filter.index_pairs()

    def add(self, sub: Subscription) -> None:
        pairs = self._pairs(sub)
        if pairs is None:
            if sub.decimation is None and sub.filter is None:
                self.plain.append(sub)
            else:
                self.evaluated.append(sub)
            return
        group = self.groups.get(pairs)
        if group is None:
            original = dict(sub.filter.pairs)  # type: ignore[union-attr]
            group = self.groups[pairs] = _Group(tuple((k, original[k]) for k, _ in pairs[1:]))
            key, value = pairs[0]
            self.index.setdefault(key, {}).setdefault(value, []).append(group)
        group.subs.append(sub)

    def remove(self, sub: Subscription) -> None:
        pairs = self._pairs(sub)
        if pairs is None:
            plain = sub.decimation is None and sub.filter is None
            (self.plain if plain else self.evaluated).remove(sub)
            return
        group = self.groups[pairs]
        group.subs.remove(sub)
        if not group.subs:
            del self.groups[pairs]
            key, value = pairs[0]
            table = self.index[key]
            table[value].remove(group)
            if not table[value]:
                del table[value]
                if not table:
                    del self.index[key]

    def deliver(self, message: Message) -> int:
        """Queue a public message to every subscription that accepts it."""
        delivered = len(self.plain)
        for sub in self.plain:
            sub.delivered += 1
            sub.outbox.put(message)
        return delivered + self._deliver_filtered(message)

    def deliver_many(self, messages: list[Message]) -> int:
        """``deliver`` each of ``messages`` in order; an unfiltered subscription
        gets them all in one ``put_many``: a POST of 50 messages to 1,000
        websockets is 1,000 puts, not 50,000."""
        size = sum(m.size for m in messages)
        delivered = 0
        for sub in self.plain:
            offered = sub.outbox.put_many(messages, size)
            sub.delivered += offered
            delivered += offered
        if self.evaluated or self.index:
            for message in messages:
                delivered += self._deliver_filtered(message)
        return delivered

    def _deliver_filtered(self, message: Message) -> int:
        delivered = 0
        for sub in self.evaluated:
            if sub.accepts(message):
                sub.delivered += 1
                sub.outbox.put(message)
                delivered += 1
        fields = message.fields
        for key, table in self.index.items():
            value = fields.get(key, _ABSENT)
            if value is _ABSENT:
                continue
            try:
                groups = table.get(match_key(value))
            except TypeError:  # unhashable: equal to no scalar
                continue
            if groups is None:
                continue
            for group in groups:
                if group.rest and not fields_match(fields, group.rest):
                    continue
                for sub in group.subs:
                    sub.delivered += 1
                    sub.outbox.put(message)
                delivered += len(group.subs)
        return delivered


class Channel:
    """One named stream of messages. Created by the hub on first use.

    :param clock_ms: returns the current UTC time in ms.
    :param monotonic: returns a monotonic time in seconds (for idleness).
    """

    def __init__(
        self,
        name: str,
        config: ChannelConfig,
        *,
        clock_ms: Callable[[], int],
        monotonic: Callable[[], float],
    ) -> None:
        self.name = name
        self.epoch = new_epoch()
        self.config = config
        self.history = History(config.history_size, int(config.history_seconds * 1000))
        self.last_offset = 0
        self.last_time_ms = 0
        self.published = 0
        self.delivered = 0
        self.dropped = 0
        self._sticky: dict[str, Message] = {}
        self._subs: list[Subscription] = []
        # _subs arranged for fan-out (None: to build at the next publish), and
        # a snapshot of _subs for private and deferred messages (None: to
        # take). Neither changes while a fan-out walks it: a subscription
        # cancelled during a fan-out (its outbox overflowed) cannot upset it.
        self._fanout: _FanOut | None = None
        self._snapshot: tuple[Subscription, ...] | None = None
        # Messages published while a fan-out is running (by an outbox's
        # on_close callback, say) wait for it to end, so that every outbox
        # still receives the channel's messages in offset order.
        self._fanning_out = False
        self._deferred: deque[Message] = deque()
        # At least the newest ``since_ms`` of any subscription (never lowered):
        # a dated message at or after it is offered to every subscription.
        self._since_high = 0
        self._clock_ms = clock_ms
        self._monotonic = monotonic
        self.last_active = monotonic()

    # -- configuration --------------------------------------------------------

    def reconfigure(self, config: ChannelConfig) -> None:
        """Apply new history bounds; messages over them are dropped now."""
        self.config = config
        self.history.size = config.history_size
        self.history.max_age_ms = int(config.history_seconds * 1000)
        self.history.trim(self._clock_ms())

    # -- publishing -------------------------------------------------------------

    def publish(self, message: Message) -> Message:
        """Sequence ``message``, keep it, and offer it to every subscription."""
        if message.sequenced:
            raise ValueError(f"{message!r} was already published")
        self._sequence(message)
        if self._fanning_out:
            self._deferred.append(message)
            return message
        self._fanning_out = True
        try:
            self._fan_out(message)
            self._fan_out_deferred()
        finally:
            self._fanning_out = False
        return message

    def publish_many(self, messages: list[Message]) -> list[Message]:
        """``publish`` each of ``messages`` in order, in fewer steps.

        Each run of public messages is sequenced, then fanned out at once
        (``_FanOut.deliver_many``); private ones go one by one. Every
        subscription gets exactly what the same publishes one at a time would
        give it, in the same order.
        """
        for message in messages:
            if message.sequenced:
                raise ValueError(f"{message!r} was already published")
        if len({id(message) for message in messages}) < len(messages):
            raise ValueError("a message cannot be published twice in one batch")
        return self._publish_many(messages)

    def publish_dated(self, messages: list[Message]) -> list[Message]:
        """Publish messages that happened before now, each at its own time.

        For a door that reads a log back (the AMQP stream door refilling the
        packet window after a start or a reconnect): each message's
        ``time_ms`` (UTC ms, > 0) is the time it first happened. It is
        sequenced with that time, raised to the channel's last time (times
        never decrease) and lowered to now (never in the future), kept in
        history, and offered only to the subscriptions whose window covers
        it (``Subscription.since_ms``): one made live at T gets it when its
        time is T or later, one made ``Start.ms_ago(n)`` at T when it is
        ``T - n`` or later, a resume or ``Start.oldest`` always. A client
        connected meanwhile so gets what a time query would have given it,
        never older messages as live ones.

        Public messages only; not from inside a fan-out (an outbox callback).

        :raises ValueError: a message already sequenced, private, or without
            a time; nothing is published then.
        """
        for message in messages:
            if message.sequenced:
                raise ValueError(f"{message!r} was already published")
            if message.audience is not None or message.excluded is not None:
                raise ValueError(f"{message!r} is private: only public messages can be dated")
            if message.time_ms <= 0:
                raise ValueError(f"{message!r} has no time_ms to publish it at")
        if len({id(message) for message in messages}) < len(messages):
            raise ValueError("a message cannot be published twice in one batch")
        if self._fanning_out:
            raise RuntimeError("publish_dated cannot run inside a fan-out")
        self._fanning_out = True
        try:
            for message in messages:
                self._sequence(message, at=message.time_ms)
                self._fan_out_dated(message)
                self._fan_out_deferred()
        finally:
            self._fanning_out = False
        return messages

    def _fan_out_dated(self, message: Message) -> None:
        if message.time_ms >= self._since_high:  # every window covers it
            self.delivered += self._current_fanout().deliver(message)
            return
        subs = self._snapshot
        if subs is None:
            subs = self._snapshot = tuple(self._subs)
        delivered = 0
        for sub in subs:
            if message.time_ms < sub.since_ms or not sub.accepts(message):
                continue
            sub.delivered += 1
            sub.outbox.put(message)
            delivered += 1
        self.delivered += delivered

    def receive_sequenced(self, messages: list[Message]) -> list[Message]:
        """Keep and fan out messages an engine sequenced (``offset``, ``epoch`` set).

        For a channel whose offsets an engine assigns (Redis): the engine's
        bus hands them in offset order with no gap, each the next offset of
        this channel's epoch (:meth:`adopt` set it); anything else is a bug
        of the bus and raises :class:`ValueError` before anything is kept.
        """
        expected = self.last_offset
        for message in messages:
            expected += 1
            if message.epoch != self.epoch or message.offset != expected:
                raise ValueError(
                    f"{message!r} of epoch {message.epoch!r} is not the next of {self.name!r}"
                    f" (offset {expected} of epoch {self.epoch!r})"
                )
        return self._publish_many(messages)

    def adopt(self, epoch: str, last_offset: int) -> None:
        """Take the engine's epoch and last offset (a process starts following
        the channel). History kept from an earlier following no longer joins on:
        it is dropped unless the epoch and the offset are where it left off."""
        if epoch != self.epoch or last_offset != self.last_offset:
            self.history.clear()
            self._sticky.clear()
        self.epoch = epoch
        self.last_offset = last_offset

    def backfill(self, messages: list[Message]) -> int:
        """Put older messages (read from an engine's history) before those kept.

        ``messages`` are in offset order, of this channel's epoch; those that
        end right before the oldest kept (or at the last offset, when nothing
        is kept) are taken. Resume then finds them. Returns how many were taken.
        """
        first = self.history.first_offset
        end = (first - 1) if first is not None else self.last_offset
        run = [m for m in messages if m.epoch == self.epoch and m.offset <= end]
        if not run or run[-1].offset != end:
            return 0
        start = len(run) - 1  # history's offsets are contiguous: the last unbroken run
        while start and run[start - 1].offset == run[start].offset - 1:
            start -= 1
        return self.history.prepend(run[start:])

    def _publish_many(self, messages: list[Message]) -> list[Message]:
        if self._fanning_out:  # from a callback of a running fan-out: wait for it
            for message in messages:
                self._sequence(message)
                self._deferred.append(message)
            return messages
        self._fanning_out = True
        try:
            start = 0
            for end, message in enumerate(messages):
                if message.audience is not None or message.excluded is not None:
                    self._fan_out_run(messages[start:end])
                    self._sequence(message)
                    self._fan_out(message)
                    self._fan_out_deferred()
                    start = end + 1
            self._fan_out_run(messages[start:])
        finally:
            self._fanning_out = False
        return messages

    def _fan_out_run(self, run: list[Message]) -> None:
        # Sequenced only now, not with the whole batch: a subscription made
        # during a run's fan-out (from an outbox's close callback) replays
        # that run from history, and gets the next runs live, once each.
        if not run:
            return
        for message in run:
            self._sequence(message)
        self.delivered += self._current_fanout().deliver_many(run)
        # Published by callbacks during this run: before the next run, so
        # that every outbox still gets the channel's messages in offset order.
        self._fan_out_deferred()

    def _current_fanout(self) -> _FanOut:
        if self._fanout is None:
            self._fanout = _FanOut(self._subs)
        return self._fanout

    def _fan_out_deferred(self) -> None:
        while self._deferred:
            self._fan_out(self._deferred.popleft(), deferred=True)

    def _sequence(self, message: Message, at: int | None = None) -> None:
        if message.sequenced:  # by an engine (receive_sequenced checked it)
            now = message.time_ms or self._clock_ms()
            if now < self.last_time_ms:
                now = self.last_time_ms  # another process's clock is behind: keep order
            self.last_offset = message.offset
            message.time_ms = self.last_time_ms = now
            self.published += 1
            self.last_active = self._monotonic()
            self.history.append(message, now)
            if message.sticky:
                self._sticky[message.type] = message  # type: ignore[index]
            return
        clock = self._clock_ms()
        now = at if at is not None and at < clock else clock  # dated: its own time, not ahead
        if now < self.last_time_ms:
            now = self.last_time_ms  # the wall clock stepped back: keep order
        self.last_offset += 1
        message.offset = self.last_offset
        message.epoch = self.epoch
        message.time_ms = self.last_time_ms = now
        self.published += 1
        self.last_active = self._monotonic()
        self.history.append(message, max(clock, now))
        if message.sticky:
            self._sticky[message.type] = message  # type: ignore[index]

    def _fan_out(self, message: Message, deferred: bool = False) -> None:
        private = message.audience is not None or message.excluded is not None
        if not private and not deferred:
            self.delivered += self._current_fanout().deliver(message)
            return
        subs = self._snapshot
        if subs is None:
            subs = self._snapshot = tuple(self._subs)
        delivered = 0
        for sub in subs:
            # A subscription made after a deferred message was sequenced has
            # had it through its replay (or started after it) already.
            if deferred and message.offset <= sub.since:
                continue
            if private or sub.filter is not None or sub.decimation is not None:
                if not sub.accepts(message):
                    continue
            sub.delivered += 1
            sub.outbox.put(message)
            delivered += 1
        self.delivered += delivered

    def replace(self, message: Message) -> bool:
        """Swap a stored message for an edited copy (``Message.replaced``)."""
        if message.channel != self.name or message.epoch != self.epoch:
            return False
        current = self._sticky.get(message.type) if message.sticky else None  # type: ignore[arg-type]
        if current is not None and current.offset == message.offset:
            self._sticky[message.type] = message  # type: ignore[index]
        return self.history.replace(message)

    # -- subscribing ------------------------------------------------------------

    def subscribe(
        self,
        outbox: Outbox,
        *,
        start: Start | None = None,
        filter: Filter | None = None,
        decimation: Decimation | None = None,
        principal: str | None = None,
    ) -> Subscription:
        """Replay what ``start`` asks for into ``outbox``, then go live.

        :raises ValueError: if ``outbox`` is closed or already subscribed here.
        """
        if outbox.closed:
            raise ValueError("cannot subscribe a closed outbox")
        if self.name in outbox.subscriptions:
            raise ValueError(f"outbox is already subscribed to {self.name!r}")
        start = start or Start.live()
        sub = Subscription(
            self, outbox, filter=filter, decimation=decimation, principal=principal
        )
        replay = self._replay_for(sub, start)
        if sub.since_ms > self._since_high:
            self._since_high = sub.since_ms
        if replay:
            accepted = [m for m in replay if sub.accepts(m)]
            sub.delivered += len(accepted)
            self.delivered += len(accepted)
            outbox.put_replay(accepted)
        outbox.attach(sub)
        self._subs.append(sub)
        self._changed(sub, added=True)
        self.last_active = self._monotonic()
        return sub

    def _replay_for(self, sub: Subscription, start: Start) -> list[Message]:
        now = self._clock_ms()
        self.history.trim(now)
        sub.since_ms = now  # live; widened below for a window, a resume, the oldest
        if start.mode == LIVE:
            return self._sticky_before(None)
        if start.mode == AFTER:
            error = self._resume_error(start)
            if error is not None:
                sub.resume_error = error
                return self._sticky_before(None)
            sub.since_ms = 0
            # The client saw everything up to its offset, stickies included.
            return self.history.after(start.offset)
        if start.mode == MS_AGO:
            since_ms = sub.since_ms = now - start.ms
            past = self.history.since(since_ms)
            lost = self.history.last_trimmed_ms
            if lost is not None and lost >= since_ms:
                sub.resume_error = (
                    f"history no longer reaches back {start.ms} ms: "
                    f"messages up to {now - lost} ms ago were dropped"
                )
        elif start.mode == OLDEST:
            sub.since_ms = 0
            past = self.history.all()
        else:  # pragma: no cover - Start's constructors prevent it
            raise ValueError(f"unknown start mode {start.mode!r}")
        first = past[0].offset if past else None
        return self._sticky_before(first) + past

    def resume_error(self, start: Start) -> str | None:
        """Why ``Start.after`` cannot be honoured now, or None if it can."""
        self.history.trim(self._clock_ms())
        return self._resume_error(start)

    def _resume_error(self, start: Start) -> str | None:
        if start.epoch != self.epoch:
            return "channel epoch changed: its history was lost"
        if start.offset > self.last_offset:
            return f"offset {start.offset} is ahead of the channel ({self.last_offset})"
        if start.offset == self.last_offset:
            return None
        first = self.history.first_offset
        if first is None or start.offset + 1 < first:
            oldest = "nothing" if first is None else f"offset {first}"
            return (
                f"history no longer reaches back to offset {start.offset + 1}"
                f" (oldest kept: {oldest})"
            )
        return None

    def _sticky_before(self, offset: int | None) -> list[Message]:
        """Latest sticky message of each type, in first-seen type order.

        With ``offset``, only those older than it: newer ones are part of the
        replayed history already.
        """
        if offset is None:
            return list(self._sticky.values())
        return [m for m in self._sticky.values() if m.offset < offset]

    def remove(self, sub: Subscription) -> None:
        try:
            self._subs.remove(sub)
        except ValueError:
            return
        self._changed(sub, added=False)
        self.last_active = self._monotonic()

    def _changed(self, sub: Subscription, *, added: bool) -> None:
        self._snapshot = None
        if self._fanout is None:
            return
        if self._fanning_out:  # the walk goes on with it unchanged; a new one next time
            self._fanout = None
        elif added:
            self._fanout.add(sub)
        else:
            self._fanout.remove(sub)

    # -- introspection ---------------------------------------------------------

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subs)

    def sticky_messages(self) -> list[Message]:
        return list(self._sticky.values())

    def idle_for(self, now: float) -> float:
        return now - self.last_active

    def stats(self) -> dict:
        return {
            "name": self.name,
            "epoch": self.epoch,
            "last_offset": self.last_offset,
            "history": len(self.history),
            "subscribers": len(self._subs),
            "published": self.published,
            "delivered": self.delivered,
            "dropped": self.dropped,
        }
