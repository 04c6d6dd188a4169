"""Fan-out passes of the socket.io door, spaced out when the process is saturated.

A publish to a channel of 1,000 socket.io clients wakes 1,000 transports from
one callback of the hub (a *pass*): each sends its client what its outbox
holds, one websocket write each. A write costs about the same for one
message as for twenty (the system call, TCP on the way through, waking the
reader: ~8 us here, then ~0.4 us per KB), so a pass costs the process about
the same whatever it carries. Passes go out at once, unless the process is
saturated (its event loop waited in ``poll`` less than
:data:`BUSY_THRESHOLD` of the time over the last :data:`LOAD_WINDOW`
seconds, :class:`LoopLoad`): then the publishers (POSTs, ingest) have
little time left between passes, each pass carries little, and a pass
starts no sooner than its predecessor's duration after it ended (passes
take at most half the time); the transports woken meanwhile wait for it.
Each pass then carries what was published while the previous one went out
and during the pause: fewer writes per message, more time for the
publishers, at the cost of up to :data:`MAX_PAUSE` seconds more before a
message goes out, only while the process is saturated. Nothing is dropped
or reordered here: what waits stays in the bounded outboxes, and each
transport drains its own in order.

:class:`Pacer` runs in the gevent hub (from the hub's wake-ups, write
watchers and its own timer) and never blocks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from gevent import get_hub

log = logging.getLogger(__name__)

#: Longest pause between two passes (seconds).
MAX_PAUSE = 0.05

#: A pass may start this many times its predecessor's duration after it ended.
PAUSE_FACTOR = 1.0

#: Share of the time the event loop was busy (not waiting in ``poll``) past which
#: passes are spaced out.
BUSY_THRESHOLD = 0.85

#: Seconds over which that share is taken.
LOAD_WINDOW = 0.2

_MIN_PRIORITY, _MAX_PRIORITY = -2, 2  # libev's EV_MINPRI, EV_MAXPRI


class LoopLoad:
    """The share of time the gevent event loop was busy, over windows of ``window`` s.

    Two watchers note when the loop starts and stops waiting in ``poll``
    (libev's prepare and check: once per loop iteration, a few hundred ns);
    the prepare watcher runs last of its kind (after gevent's, which runs the
    scheduled callbacks, the hub's wake-ups among them), the check watcher
    first of what the poll made pending.
    """

    def __init__(self, window: float = LOAD_WINDOW) -> None:
        self.window = window
        #: The busy share of the last full window (0 to 1).
        self.busy = 0.0
        self._idle = 0.0
        self._since: float | None = None
        self._mark = time.monotonic()
        self._mark_idle = 0.0
        self._watchers: list[Any] = []

    def start(self) -> None:
        if self._watchers:
            return
        loop = get_hub().loop
        before = loop.prepare(ref=False, priority=_MIN_PRIORITY)
        after = loop.check(ref=False, priority=_MAX_PRIORITY)
        before.start(self._before_poll)
        after.start(self._after_poll)
        self._watchers = [before, after]
        self._mark = time.monotonic()
        self._mark_idle = self._idle

    def stop(self) -> None:
        for watcher in self._watchers:
            watcher.stop()
            watcher.close()
        self._watchers = []

    def _before_poll(self) -> None:
        self._since = time.monotonic()

    def _after_poll(self) -> None:
        since = self._since
        if since is not None:
            self._idle += time.monotonic() - since
            self._since = None

    def update(self, now: float) -> float:
        """:attr:`busy`, taken anew if a window has passed since it last was."""
        elapsed = now - self._mark
        if elapsed >= self.window:
            self.busy = max(0.0, 1.0 - (self._idle - self._mark_idle) / elapsed)
            self._mark = now
            self._mark_idle = self._idle
        return self.busy


class Pacer:
    """Runs drains in passes, spaced out under load (see the module doc).

    :param pause_factor: pause after a pass, as a multiple of its duration.
    :param max_pause: the longest pause (seconds).
    :param busy_threshold: the loop's busy share past which passes are spaced out.
    :param load: how busy the loop is (default: a :class:`LoopLoad`, started on
        the first drain).
    """

    def __init__(
        self,
        pause_factor: float = PAUSE_FACTOR,
        max_pause: float = MAX_PAUSE,
        busy_threshold: float = BUSY_THRESHOLD,
        load: LoopLoad | None = None,
    ) -> None:
        self.pause_factor = pause_factor
        self.max_pause = max_pause
        self.busy_threshold = busy_threshold
        self.load = load if load is not None else LoopLoad()
        self.pending: dict[Callable[[], None], None] = {}
        self._started: float | None = None  # the pass under way began then
        self._next = 0.0  # no pass starts before this (time.monotonic())
        self._timer: Any = None
        #: Passes run, and those that waited for the pause to end.
        self.passes = 0
        self.paced = 0

    def ready(self, drain: Callable[[], None]) -> None:
        """Call ``drain()`` now, or in the next pass if the pause after the last
        one is not over (once, however often it is asked for meanwhile)."""
        if self._started is not None:  # a pass is under way: this one belongs to it
            drain()
            return
        now = time.monotonic()
        if self._timer is not None or now < self._next:
            self.pending[drain] = None
            if self._timer is None:
                self._timer = get_hub().loop.timer(self._next - now)
                self._timer.start(self._run_pending)
            return
        self._begin(now)
        drain()

    def discard(self, drain: Callable[[], None]) -> None:
        """Forget a drain waiting for the next pass (its transport ended)."""
        self.pending.pop(drain, None)

    def _begin(self, now: float) -> None:
        if self.passes == 0:
            self.load.start()
        self._started = now
        self.passes += 1
        get_hub().loop.run_callback(self._end)  # after the callback this pass runs in

    def _end(self) -> None:
        started, self._started = self._started, None
        if started is None:  # pragma: no cover - one _end per _begin
            return
        now = time.monotonic()
        if self.load.update(now) >= self.busy_threshold:
            self._next = now + min((now - started) * self.pause_factor, self.max_pause)
        else:
            self._next = now

    def _run_pending(self) -> None:
        self._timer.close()
        self._timer = None
        pending, self.pending = self.pending, {}
        self.paced += 1
        self._begin(time.monotonic())
        for drain in pending:
            try:
                drain()
            except Exception:  # one broken transport must not hold up the others
                log.exception("socket.io drain failed")

    def stop(self) -> None:
        """Run what waits now, and stop the timer and the load watchers (the door stops)."""
        if self._timer is not None:
            self._timer.stop()
            self._run_pending()
        self.load.stop()


__all__ = ["BUSY_THRESHOLD", "LOAD_WINDOW", "MAX_PAUSE", "PAUSE_FACTOR", "LoopLoad", "Pacer"]
