"""Concurrency tests of the hub core with real greenlets.

Writers here are what a door runs: a greenlet per outbox that loops on
``outbox.wait()`` / ``outbox.drain()`` and "writes" each batch (a
``gevent.sleep(0)`` stands for the socket write that yields). Every test is
bounded in greenlets and messages and runs well under a few seconds.

Tests asserting on wall-clock speed have no place here: "a slow subscriber
does not slow publishing" is proven by publish never yielding, and by the
work a publish does staying bounded whatever a stalled outbox holds.
"""

from __future__ import annotations

import random
import time

import gevent
import greenlet
import pytest
from gevent.event import Event

from channelstream.hub import (
    REASON_OVERFLOW,
    REASON_SHUTDOWN,
    ChannelConfig,
    Hub,
    HubConfig,
    Message,
    Outbox,
    Start,
)

from .fakes import FakeClock

pytestmark = pytest.mark.timeout(120)


def run_writer(outbox: Outbox, sink: list, *, chunk: int = 0, rng: random.Random | None = None):
    """A door's writer loop: wait, drain, write (yield), until closed and empty."""
    while True:
        outbox.wait()
        batch = outbox.drain(chunk)
        if batch:
            sink.extend(batch)
            gevent.sleep(0)  # the socket write
            if rng is not None and rng.random() < 0.3:
                gevent.sleep(0)
        elif outbox.closed:
            return outbox.close_reason


class SwitchWatch:
    """Records greenlet switches that happen while ``active`` is set."""

    def __init__(self) -> None:
        self.active = False
        self.switches = 0
        self._previous = None

    def __enter__(self):
        self._previous = greenlet.settrace(self._trace)
        return self

    def __exit__(self, *exc):
        greenlet.settrace(self._previous)

    def _trace(self, event, args):
        if self.active and event in ("switch", "throw"):
            self.switches += 1
        if self._previous is not None:
            self._previous(event, args)


# -- (a) a stalled subscriber ----------------------------------------------------


@pytest.mark.parametrize("droppable", [True, False], ids=["droppable", "undroppable"])
def test_a_stalled_subscriber_neither_starves_nor_blocks_the_fifty_others(droppable):
    n_messages, max_queue, hard_limit = 400, 20, 40
    hub = Hub(HubConfig(default_channel=ChannelConfig(history_size=0)))
    readers = []
    for i in range(50):
        outbox = hub.open_outbox(max_queue=1000, hard_limit=1000, name=f"reader{i}")
        hub.subscribe(outbox, "c")
        sink: list[Message] = []
        readers.append((outbox, sink, gevent.spawn(run_writer, outbox, sink)))
    stalled = hub.open_outbox(max_queue=max_queue, hard_limit=hard_limit, name="stalled")
    stalled_sub = hub.subscribe(stalled, "c")
    gevent.sleep(0)  # every writer is now waiting

    with SwitchWatch() as watch:
        for i in range(n_messages):
            message = Message("c", i, droppable=droppable)
            watch.active = True
            hub.publish(message)
            watch.active = False
            assert len(stalled) <= (max_queue if droppable else hard_limit)
            if i % 3 == 0:
                gevent.sleep(0)  # let the writers run between bursts
    assert watch.switches == 0, "publish must never yield to another greenlet"
    channel = hub.channel("c")
    assert channel.subscriber_count == (51 if droppable else 50)

    for outbox, _, _ in readers:
        outbox.close("test over")
    for outbox, sink, writer in readers:
        assert writer.get(timeout=5) == "test over"
        assert [m.offset for m in sink] == list(range(1, n_messages + 1))
        assert outbox.dropped == 0

    if droppable:
        assert not stalled.closed
        assert stalled.dropped == stalled_sub.dropped == channel.dropped == n_messages - max_queue
        kept = stalled.drain()
        assert [m.offset for m in kept] == list(range(n_messages - max_queue + 1, n_messages + 1))
    else:
        assert stalled.closed and stalled.close_reason == REASON_OVERFLOW
        # what the close discarded is counted as dropped
        assert stalled.drain() == [] and stalled.dropped == hard_limit + 1
        assert not stalled_sub.active and stalled_sub.delivered == hard_limit + 1


class CountingMessage(Message):
    """A message that counts how often an outbox asks whether it may be dropped."""

    __slots__ = ("_droppable",)
    inspections = 0

    @property
    def droppable(self):
        CountingMessage.inspections += 1
        return self._droppable

    @droppable.setter
    def droppable(self, value):
        self._droppable = value


def test_a_backlog_of_undroppable_messages_is_scanned_once_not_on_every_publish():
    """Between ``max_queue`` and ``hard_limit`` an outbox holding only
    undroppable messages must not rescan its whole queue on every put (that
    made a publish to one stalled channelstream client cost O(queue))."""
    hub = Hub()
    stalled = hub.open_outbox(max_queue=100, hard_limit=10_000)
    hub.subscribe(stalled, "c")
    CountingMessage.inspections = 0
    for i in range(5_000):
        hub.publish(CountingMessage("c", i, droppable=False))
    assert not stalled.closed and len(stalled) == 5_000
    # A rescan per put would be ~12 million inspections.
    assert CountingMessage.inspections < 3 * 5_000
    # A droppable message behind the backlog is found without a rescan too.
    CountingMessage.inspections = 0
    for i in range(100):
        hub.publish(CountingMessage("c", i, droppable=True))
    assert len(stalled) == 5_000 and stalled.dropped == 100
    assert CountingMessage.inspections < 3 * 100 + 10


# -- (b) the history-to-live boundary under concurrent publishing ------------------


def test_subscribers_joining_at_random_moments_get_a_contiguous_range_to_the_end():
    rng = random.Random(20240601)
    clock = FakeClock()
    hub = Hub(
        HubConfig(default_channel=ChannelConfig(history_size=100_000)),
        clock_ms=clock,
    )
    channels = ("x", "y")
    log: dict[str, list[Message]] = {name: [] for name in channels}

    def publisher(name: str, count: int, seed: int) -> None:
        prng = random.Random(seed)
        for i in range(count):
            clock.ms += prng.choice([0, 0, 1, 3])
            log[name].append(hub.publish(Message(name, i)))
            gevent.sleep(0)

    publishers = [
        gevent.spawn(publisher, name, 250, seed) for seed, name in enumerate(channels * 3)
    ]

    def expected_first(name: str, start: Start) -> int:
        messages = log[name]
        last = len(messages)
        if start.mode == "live":
            return last + 1
        if start.mode == "after":
            return start.offset + 1
        if start.mode == "oldest":
            return 1
        later = [m.offset for m in messages if m.time_ms >= clock.ms - start.ms]
        return later[0] if later else last + 1

    def pick_start(name: str) -> Start:
        channel = hub.channel(name, create=True)
        mode = rng.choice(["after", "ms_ago", "oldest", "live"])
        if mode == "after":
            return Start.after(channel.epoch, rng.randint(0, channel.last_offset))
        if mode == "ms_ago":
            return Start.ms_ago(rng.choice([0, 1, 5, 50, 500]))
        return Start.oldest() if mode == "oldest" else Start.live()

    subscribers = []  # (outbox, sink, writer, {channel: first expected offset})

    def subscriber(index: int) -> None:
        outbox = Outbox(max_queue=100_000, hard_limit=100_000, name=f"sub{index}")
        sink: list[Message] = []
        firsts: dict[str, int] = {}
        writer = gevent.spawn(run_writer, outbox, sink, chunk=rng.randint(0, 7), rng=rng)
        subscribers.append((outbox, sink, writer, firsts))
        for name in rng.sample(channels, len(channels)):
            for _ in range(rng.randint(0, 150)):
                gevent.sleep(0)
            start = pick_start(name)
            # No yield between computing the expectation and subscribing.
            firsts[name] = expected_first(name, start)
            sub = hub.subscribe(outbox, name, start=start)
            assert sub.resume_error is None

    joiners = [gevent.spawn(subscriber, i) for i in range(24)]
    gevent.joinall(publishers + joiners, timeout=20, raise_error=True)
    for outbox, _, _, _ in subscribers:
        outbox.close("test over")
    for outbox, sink, writer, firsts in subscribers:
        assert writer.get(timeout=5) == "test over"
        assert outbox.dropped == 0
        for name in channels:
            got = [m.offset for m in sink if m.channel == name]
            want = list(range(firsts[name], len(log[name]) + 1))
            assert got == want, (outbox.name, name, firsts[name])
    assert {len(log[name]) for name in channels} == {750}
    assert any(firsts[n] not in (1, len(log[n]) + 1) for *_, firsts in subscribers for n in firsts)


# -- (c) Outbox.wait ------------------------------------------------------------


def test_wait_returns_false_when_its_timeout_passes():
    outbox = Outbox()
    started = time.perf_counter()
    assert outbox.wait(0.02) is False
    assert time.perf_counter() - started >= 0.015


def test_wait_returns_true_as_soon_as_a_put_wakes_it():
    outbox = Outbox()
    waiter = gevent.spawn(outbox.wait, 5)
    gevent.sleep(0)
    started = time.perf_counter()
    outbox.put(Message("c", 1))
    assert waiter.get(timeout=1) is True
    assert time.perf_counter() - started < 1
    assert [m.body for m in outbox.drain()] == [1]


def test_wait_returns_at_once_when_something_is_queued_or_the_outbox_is_closed():
    outbox = Outbox()
    outbox.put(Message("c", 1))
    assert outbox.wait(0) is True
    outbox.drain()
    outbox.close("bye")
    assert outbox.wait() is True


def test_a_second_greenlet_waiting_on_the_same_outbox_raises():
    outbox = Outbox(name="one-writer")
    first = gevent.spawn(outbox.wait, 5)
    gevent.sleep(0)
    second = gevent.spawn(outbox.wait, 5)
    with pytest.raises(RuntimeError, match="already has a waiting writer"):
        second.get(timeout=1)
    outbox.put(Message("c", 1))
    assert first.get(timeout=1) is True


def test_close_wakes_the_waiting_writer():
    outbox = Outbox()
    waiter = gevent.spawn(outbox.wait)
    gevent.sleep(0)
    outbox.close("bye")
    assert waiter.get(timeout=1) is True


def test_a_killed_writer_leaves_the_outbox_usable():
    outbox = Outbox()
    for timeout in (None, 5):
        writer = gevent.spawn(outbox.wait, timeout)
        gevent.sleep(0)
        writer.kill(timeout=1)
        assert writer.dead
        replacement = gevent.spawn(outbox.wait, 5)
        gevent.sleep(0)
        outbox.put(Message("c", timeout))
        assert replacement.get(timeout=1) is True
        assert [m.body for m in outbox.drain()] == [timeout]
    gevent.sleep(0.01)  # a timer of a killed wait must not fire into anything
    assert outbox.wait(0.01) is False


def test_a_writer_killed_with_a_wake_up_pending_does_not_swallow_the_next_one():
    outbox = Outbox()
    writer = gevent.spawn(outbox.wait)
    gevent.sleep(0)
    writer.kill(block=False)  # GreenletExit is delivered before the wake-up
    outbox.put(Message("c", 1))  # schedules a wake-up for the dying writer
    gevent.sleep(0)
    assert writer.dead
    assert outbox.wait(0) is True and len(outbox.drain()) == 1
    replacement = gevent.spawn(outbox.wait, 5)
    gevent.sleep(0)
    outbox.put(Message("c", 2))
    assert replacement.get(timeout=1) is True


def test_a_wake_up_that_loses_the_race_with_a_timeout_does_not_end_the_next_wait():
    """A put schedules a batched wake-up; if the writer's timeout fires in the
    same loop iteration first, ``wait`` returns False, and the stale wake-up
    must not end the writer's *next* ``wait`` with nothing queued (a writer
    that sends heartbeats on False would never get its next timeout)."""
    outbox = Outbox()

    def producer():
        gevent.sleep(0.005)
        outbox.put(Message("c", 1))

    def writer():
        outbox.wait(0.01)  # times out in the same iteration as the put
        outbox.drain()
        return outbox.wait(0.05), len(outbox), outbox.closed

    gevent.spawn(producer)
    waiting = gevent.spawn(writer)
    gevent.sleep(0)
    time.sleep(0.02)  # block the loop so both timers expire in one iteration
    assert waiting.get(timeout=1) == (False, 0, False)


def test_one_publish_wakes_many_waiting_writers():
    hub = Hub()
    outboxes = [hub.open_outbox() for _ in range(300)]
    for outbox in outboxes:
        hub.subscribe(outbox, "c")
    waiters = [gevent.spawn(outbox.wait, 5) for outbox in outboxes]
    gevent.sleep(0)
    hub.publish(Message("c", "all"))
    assert [w.get(timeout=2) for w in waiters] == [True] * 300
    assert all(len(outbox) == 1 for outbox in outboxes)


# -- (d) Hub.stop ---------------------------------------------------------------


def test_stop_wakes_every_writer_and_closes_every_outbox_leaving_the_queue_drainable():
    hub = Hub()
    hub.start()
    waiting = []  # writers blocked in wait() with an empty outbox
    for _ in range(10):
        outbox = hub.open_outbox()
        hub.subscribe(outbox, "c")
        sink: list[Message] = []
        waiting.append((outbox, sink, gevent.spawn(run_writer, outbox, sink)))
    release = Event()
    busy = []  # writers busy elsewhere (e.g. a slow socket): messages stay queued

    def busy_writer(outbox, sink):
        release.wait()
        return run_writer(outbox, sink)

    for _ in range(10):
        outbox = hub.open_outbox()
        hub.subscribe(outbox, "c", start=Start.oldest())
        sink = []
        busy.append((outbox, sink, gevent.spawn(busy_writer, outbox, sink)))
    idle = [hub.open_outbox() for _ in range(10)]  # no writer at all
    for outbox in idle:
        hub.subscribe(outbox, "c")
    published = [hub.publish(Message("c", i)) for i in range(5)]
    gevent.sleep(0)
    while any(len(outbox) for outbox, _, _ in waiting):
        gevent.sleep(0)

    hub.stop()

    every = [o for o, _, _ in waiting] + [o for o, _, _ in busy] + idle
    assert all(o.closed and o.close_reason == REASON_SHUTDOWN for o in every)
    assert all(o.subscriptions == {} for o in every)
    assert hub.channel("c").subscriber_count == 0 and hub.stats()["outboxes"] == 0
    for _, sink, writer in waiting:
        assert writer.get(timeout=1) == REASON_SHUTDOWN
        assert sink == published
    hub.publish(Message("c", "after stop"))
    release.set()
    for _, sink, writer in busy:
        assert writer.get(timeout=1) == REASON_SHUTDOWN
        assert sink == published
    for outbox in idle:
        assert outbox.drain() == published
    hub.stop()  # idempotent


# -- re-entrancy ----------------------------------------------------------------


def test_a_publish_from_an_on_close_callback_reaches_later_subscribers_in_order():
    """``Outbox.close`` runs ``on_close`` callbacks inside the fan-out of the
    publish that overflowed the outbox. A door that announces the
    disconnection on the same channel (presence "user left") publishes offset
    n+1 while n is being fanned out; every other subscriber must still get n
    before n+1, and a subscriber made meanwhile must not get it twice."""
    hub = Hub()
    slow = hub.open_outbox(max_queue=1, hard_limit=1)
    hub.subscribe(slow, "room")
    slow.on_close(lambda outbox: hub.publish(Message("room", "left", droppable=False)))
    watcher = hub.open_outbox()
    hub.subscribe(watcher, "room")
    hub.publish(Message("room", "hello", droppable=False))
    hub.publish(Message("room", "overflows", droppable=False))  # closes `slow`
    got = [m.offset for m in watcher.drain()]
    assert got == [1, 2, 3], got
