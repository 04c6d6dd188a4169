"""Outboxes: the bounded queue between the hub and one connection's writer.

Every connection (a websocket, a TCP streamer client, a G3 client, ...) owns
one outbox. Channels push messages into it without ever blocking; the door
drains what has accumulated and writes it in as few socket writes as the
protocol allows. One outbox may hold subscriptions to several channels (a
channelstream connection joins many channels).

A door consumes an outbox in one of two ways, never both at once:

* a writer greenlet blocks in :meth:`Outbox.wait`, then drains;
* a listener (:meth:`Outbox.listen`) is called from the gevent hub when
  messages arrive and writes without blocking (non-blocking sockets and I/O
  watchers). It costs no greenlet per connection: what makes 10,000 idle
  websockets cheap.

Bounds, checked on every push:

* ``max_queue`` / ``max_bytes`` (soft): when exceeded, the oldest *droppable*
  message is dropped and counted. Sticky messages and messages marked not
  droppable are never dropped.
* ``hard_limit`` / ``hard_bytes``: when the queue still exceeds them (it holds
  only undroppable messages), the outbox is closed with a reason and its queue
  discarded. The connection is then ended by its door; a channelstream client
  resumes by offset and loses nothing.

Replayed history (resume, ``time`` queries) is kept apart from the live queue:
it is a list of references into the channel history, bounded by the history
size, and is always drained before live messages.

All methods run in the hub's single OS thread and never yield, so a push is
atomic with respect to other greenlets.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

from gevent import get_hub, getcurrent

from .message import Message

if TYPE_CHECKING:
    from .subscription import Subscription

log = logging.getLogger(__name__)

#: Reasons given to ``Outbox.close``.
REASON_OVERFLOW = "outbox over its hard limit"
REASON_SHUTDOWN = "server shutting down"
#: The shared engine could not deliver some of a channel's messages to this process.
REASON_LOST = "messages lost on the way: resume"


class _Waker:
    """Wakes writer greenlets in batches, from one callback of the gevent hub.

    A gevent ``Event`` per outbox costs one scheduled callback per wake-up
    (~4.7 us here); this collects the outboxes that became ready during a
    publish burst and switches to their writers from a single callback
    (~1.5 us per wake-up), which matters when one publish wakes 1,000 writers.
    """

    def __init__(self) -> None:
        self.ready: list[Outbox] = []
        self.scheduled = False

    def add(self, outbox: Outbox) -> None:
        self.ready.append(outbox)
        if not self.scheduled:
            self.scheduled = True
            get_hub().loop.run_callback(self.run)

    def run(self) -> None:
        # Runs in the gevent hub greenlet; each writer switches back to the
        # hub when it waits again, which returns here.
        self.scheduled = False
        ready, self.ready = self.ready, []
        for outbox in ready:
            outbox._deliver_wake()


_waker = _Waker()


class Outbox:
    """A bounded, drop-aware queue of messages for one writer.

    :param max_queue: soft bound on queued live messages.
    :param hard_limit: queued messages past which the outbox closes.
    :param max_bytes: soft bound on queued bytes (``Message.size``), 0 = none.
    :param hard_bytes: queued bytes past which the outbox closes, 0 = none.
    :param name: for logs and stats.
    :param on_drop: called with each message dropped or discarded (the hub
        counts it against its channel).
    """

    def __init__(
        self,
        max_queue: int = 1000,
        hard_limit: int = 10000,
        *,
        max_bytes: int = 0,
        hard_bytes: int = 0,
        name: str = "",
        on_drop: Callable[[Message], None] | None = None,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        if hard_limit < max_queue:
            raise ValueError("hard_limit must be >= max_queue")
        if hard_bytes and hard_bytes < max_bytes:
            raise ValueError("hard_bytes must be >= max_bytes")
        self.name = name
        self.max_queue = max_queue
        self.hard_limit = hard_limit
        self.max_bytes = max_bytes
        self.hard_bytes = hard_bytes
        self._subscriptions: dict[str, Subscription] = {}
        #: The live subscriptions by channel name (a read-only view; the
        #: outbox alone changes it, through :meth:`attach` and :meth:`detach`).
        self.subscriptions: Mapping[str, Subscription] = MappingProxyType(self._subscriptions)
        #: Bumped whenever a subscription is added or removed (a door that
        #: told its client the positions of its streams checks it).
        self.subscription_changes = 0
        self.closed = False
        self.close_reason: str | None = None
        #: messages accepted into the queue (after filters and decimation)
        self.delivered = 0
        #: messages handed to the writer by ``drain``
        self.sent = 0
        #: messages dropped because the queue was full, or discarded by close
        self.dropped = 0
        #: how many messages at the head of the last ``drain`` batch came from
        #: replayed history (a door may mark them as catch-up)
        self.last_replayed = 0
        self._on_drop = on_drop
        self._live: deque[Message] = deque()
        # Length of the run of undroppable messages at the head of _live that
        # a drop has already scanned past: each message is scanned once, so a
        # backlog of undroppable messages does not make every put O(n).
        self._kept = 0
        # Created on first replay: most outboxes never replay, and an empty
        # deque costs ~600 bytes per connection.
        self._replay: deque[Message] | None = None
        self._bytes = 0
        self._writer = None  # the greenlet blocked in wait(), if any
        self._listener: Callable[[], None] | None = None
        self._wake_pending = False
        self._close_callbacks: list[Callable[[Outbox], None]] = []

    # -- producer side (channels) -------------------------------------------

    def put(self, message: Message) -> None:
        """Queue ``message``; drop or close if a bound is passed. Never blocks."""
        if self.closed:
            return
        live = self._live
        live.append(message)
        self.delivered += 1
        n = len(live)
        if n == 1 and (self._writer is not None or self._listener is not None):
            self._wake()
        if message.size:
            self._bytes += message.size
            if (self.max_bytes and self._bytes > self.max_bytes) or (
                self.hard_bytes and self._bytes > self.hard_bytes
            ):
                self._overflow()
                return
        if n > self.max_queue:
            self._overflow()

    def put_many(self, messages: Sequence[Message], size: int | None = None) -> int:
        """Queue ``messages`` in order, exactly as a ``put`` of each would.

        When they all fit under the soft bounds they are queued in one step;
        otherwise one by one, so drops and a close happen at the same message.
        ``size`` is their total ``Message.size`` when the caller knows it (a
        fan-out computes it once for all its outboxes).

        :returns: how many were offered before the outbox was (or got) closed:
            the count a ``put`` per message, stopping at the close, would make.
        """
        if self.closed or not messages:
            return 0
        if size is None:
            size = sum(m.size for m in messages)
        live = self._live
        if len(live) + len(messages) > self.max_queue or (
            size
            and (
                (self.max_bytes and self._bytes + size > self.max_bytes)
                or (self.hard_bytes and self._bytes + size > self.hard_bytes)
            )
        ):
            offered = 0
            for message in messages:
                if self.closed:
                    break
                self.put(message)
                offered += 1
            return offered
        was_empty = not live
        live.extend(messages)
        self.delivered += len(messages)
        self._bytes += size
        if was_empty and (self._writer is not None or self._listener is not None):
            self._wake()
        return len(messages)

    def attach(self, subscription: Subscription) -> None:
        """Record ``subscription`` as this outbox's subscription to its channel.

        Called by the channel when it subscribes the outbox; raises
        :class:`ValueError` if the outbox already has one to that channel.
        """
        name = subscription.channel.name
        if name in self._subscriptions:
            raise ValueError(f"outbox is already subscribed to {name!r}")
        self._subscriptions[name] = subscription
        self.subscription_changes += 1

    def detach(self, subscription: Subscription) -> None:
        """Forget ``subscription`` (when it is cancelled); others are left alone."""
        name = subscription.channel.name
        if self._subscriptions.get(name) is subscription:
            del self._subscriptions[name]
            self.subscription_changes += 1

    def positions(self, channels: Iterable[str] | None = None) -> dict[str, tuple[str, int]]:
        """Where the reader of this outbox stands in each subscribed channel.

        ``{channel: (epoch, offset)}``: every message of the channel up to
        ``offset`` that this outbox will ever hold was taken by ``drain``
        already; what it still queues comes after. A client that has taken
        everything drained so far resumes from there (``Start.after``) with
        nothing lost or repeated. ``channels`` limits the answer (default:
        every subscription). Looks at each queued message once: for attach
        time, not for every delivery.
        """
        wanted = self._subscriptions if channels is None else channels
        first: dict[str, int] = {}
        for queue in (self._replay or (), self._live):
            for message in queue:
                if message.channel in wanted and message.channel not in first:
                    sub = self._subscriptions.get(message.channel)
                    if sub is not None and message.epoch == sub.channel.epoch:
                        first[message.channel] = message.offset
        result = {}
        for name in wanted:
            sub = self._subscriptions.get(name)
            if sub is None:
                continue
            channel = sub.channel
            offset = first[name] - 1 if name in first else channel.last_offset
            result[name] = (channel.epoch, offset)
        return result

    def put_replay(self, messages: Iterable[Message]) -> None:
        """Queue history to be drained before any live message."""
        if self.closed:
            return
        if self._replay is None:
            self._replay = deque()
        before = len(self._replay)
        self._replay.extend(messages)
        added = len(self._replay) - before
        if added:
            self.delivered += added
            self._wake()

    def _overflow(self) -> None:
        live = self._live
        while len(live) > self.max_queue or (self.max_bytes and self._bytes > self.max_bytes):
            if not self._drop_oldest_droppable():
                break
        if len(live) > self.hard_limit or (self.hard_bytes and self._bytes > self.hard_bytes):
            self.close(REASON_OVERFLOW, discard=True)

    def _drop_oldest_droppable(self) -> bool:
        live = self._live
        index, end = self._kept, len(live)
        while index < end and not live[index].droppable:
            index += 1
        self._kept = index
        if index == end:
            return False
        victim = live[index]
        del live[index]
        self._count_drop(victim)
        return True

    def _count_drop(self, victim: Message) -> None:
        self._bytes -= victim.size
        self.dropped += 1
        sub = self.subscriptions.get(victim.channel)
        if sub is not None and sub.owns(victim):
            sub.dropped += 1
        if self._on_drop is not None:
            self._on_drop(victim)

    # -- consumer side (the door's writer greenlet) -------------------------

    def __len__(self) -> int:
        return len(self._live) + (len(self._replay) if self._replay else 0)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def wait(self, timeout: float | None = None) -> bool:
        """Block until messages are queued or the outbox is closed.

        Only one greenlet (the writer) may wait on an outbox at a time.

        :returns: False on timeout (e.g. time for a heartbeat), else True.
        """
        if self._live or self._replay or self.closed:
            return True
        if self._writer is not None:
            raise RuntimeError(f"outbox {self.name!r} already has a waiting writer")
        if self._listener is not None:
            raise RuntimeError(f"outbox {self.name!r} has a listener; it cannot also be waited on")
        current = getcurrent()
        hub = get_hub()
        if current is hub:
            raise RuntimeError("Outbox.wait() cannot block the gevent hub")
        timer = None
        if timeout is not None:
            timer = hub.loop.timer(max(timeout, 0.0))
            timer.start(self._on_timeout)
        self._writer = current
        try:
            return hub.switch()
        finally:
            self._writer = None
            if timer is not None:
                timer.close()

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever messages are queued or the outbox closes.

        The call comes from the gevent hub, batched with the wake-ups of other
        outboxes, once per burst rather than once per message: the callback
        must not block, and should drain everything it can write now. If it
        stops early (its socket is full), it must come back by itself (e.g.
        from a write watcher): messages queued meanwhile do not call it again.
        If messages are already queued, the first call is scheduled at once.
        Exceptions it raises are logged. Replaces any previous listener.
        """
        if self._writer is not None:
            raise RuntimeError(f"outbox {self.name!r} has a waiting writer")
        self._listener = callback
        if self._live or self._replay or self.closed:
            self._wake()

    def unlisten(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback`` (if it is still the listener)."""
        if self._listener == callback:
            self._listener = None

    def _wake(self) -> None:
        if (self._writer is not None or self._listener is not None) and not self._wake_pending:
            self._wake_pending = True
            _waker.add(self)

    def _deliver_wake(self) -> None:
        self._wake_pending = False
        listener = self._listener
        if listener is not None:
            try:
                listener()
            except Exception:
                log.exception("listener of outbox %r failed", self.name)
            return
        writer = self._writer
        # The wait this wake was meant for may have timed out in the same loop
        # iteration and a new wait begun: wake that one only if there is news.
        if writer is not None and (self._live or self._replay or self.closed):
            self._writer = None
            writer.switch(True)

    def _on_timeout(self) -> None:
        writer = self._writer
        if writer is not None:
            self._writer = None
            writer.switch(False)

    def drain(self, limit: int = 0) -> list[Message]:
        """Take up to ``limit`` queued messages (0 = all), replay first.

        Returns an empty list when nothing is queued; after ``close`` it still
        returns what was queued unless the close discarded it.
        """
        batch: list[Message] = []
        replay = self._replay
        if replay:
            if limit and len(replay) > limit:
                batch = [replay.popleft() for _ in range(limit)]
            else:
                batch = list(replay)
                self._replay = None
        self.last_replayed = len(batch)
        live = self._live
        room = limit - len(batch) if limit else len(live)
        if live and room > 0:
            if room >= len(live):
                batch.extend(live)
                live.clear()
                self._bytes = 0
                self._kept = 0
            else:
                for _ in range(room):
                    message = live.popleft()
                    self._bytes -= message.size
                    batch.append(message)
                self._kept = max(0, self._kept - room)
        self.sent += len(batch)
        return batch

    def purge(self, channel: str) -> int:
        """Remove every queued message of ``channel`` (live and replayed).

        Used before re-subscribing from an older offset, whose replay holds
        them again. Purged messages are not counted as dropped.

        :returns: how many were removed.
        """
        removed = 0
        if self._live:
            kept = deque(m for m in self._live if m.channel != channel)
            removed = len(self._live) - len(kept)
            if removed:
                self._bytes -= sum(m.size for m in self._live if m.channel == channel)
                self._live = kept
                self._kept = 0
        if self._replay:
            kept_replay = deque(m for m in self._replay if m.channel != channel)
            removed += len(self._replay) - len(kept_replay)
            self._replay = kept_replay or None
        return removed

    # -- lifecycle ------------------------------------------------------------

    def on_close(self, callback: Callable[[Outbox], None]) -> None:
        """Call ``callback(outbox)`` once when the outbox closes."""
        if self.closed:
            callback(self)
        else:
            self._close_callbacks.append(callback)

    def close(self, reason: str, *, discard: bool = False) -> None:
        """Cancel every subscription and wake the writer. Idempotent.

        :param discard: drop what is still queued (the writer is too slow to
            be worth feeding); otherwise the writer may flush it.
        """
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if discard:
            # Counted while the subscriptions still say whose messages these are.
            for message in self._live:
                self._count_drop(message)
            for message in self._replay or ():
                self._count_drop(message)
            self._live.clear()
            self._replay = None
            self._bytes = 0
            self._kept = 0
        for sub in list(self.subscriptions.values()):
            sub.cancel()
        self._wake()
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("on_close callback of outbox %r failed", self.name)

    def stats(self) -> dict:
        return {
            "name": self.name,
            "queued": len(self),
            "queued_bytes": self._bytes,
            "delivered": self.delivered,
            "sent": self.sent,
            "dropped": self.dropped,
            "closed": self.closed,
            "close_reason": self.close_reason,
            "subscriptions": {name: sub.stats() for name, sub in self.subscriptions.items()},
        }
