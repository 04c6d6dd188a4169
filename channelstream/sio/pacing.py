"""Fan-out passes of the socket.io door, spaced out when they would fill the process.

A publish to a channel of 1,000 socket.io clients wakes 1,000 transports from
one callback of the hub (a *pass*): each sends its client what its outbox
holds, one websocket write each. A write costs about the same for one
message as for twenty (the system call, TCP on the way through, waking the
reader: ~8 us here, and ~0.4 us per KB), so a pass costs the process about
the same whatever it carries. While passes take little of the process's
time they go out at once. When one pass follows another closely, the
publishers (POSTs, ingest) have no time left between them, and each pass
carries little: then a pass starts no sooner than its predecessor's
duration after it ended (passes take at most half the process's time), and
the transports woken meanwhile wait for it. Each then carries what was
published while the previous one went out and during the pause:
fewer writes per message, more time for the publishers, at the cost of up
to :data:`MAX_PAUSE` seconds more before a message goes out. Nothing is
dropped or reordered here: what waits stays in the bounded outboxes, and
each transport drains its own in order.

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


class Pacer:
    """Runs drains in passes, spaced out under load (see the module doc).

    :param pause_factor: pause after a pass, as a multiple of its duration.
    :param max_pause: the longest pause (seconds).
    """

    def __init__(self, pause_factor: float = PAUSE_FACTOR, max_pause: float = MAX_PAUSE) -> None:
        self.pause_factor = pause_factor
        self.max_pause = max_pause
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
        self._started = now
        self.passes += 1
        get_hub().loop.run_callback(self._end)  # after the callback this pass runs in

    def _end(self) -> None:
        started, self._started = self._started, None
        if started is None:  # pragma: no cover - one _end per _begin
            return
        now = time.monotonic()
        self._next = now + min((now - started) * self.pause_factor, self.max_pause)

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
        """Run what waits now, and stop the timer (the door stops)."""
        if self._timer is not None:
            self._timer.stop()
            self._run_pending()


__all__ = ["MAX_PAUSE", "PAUSE_FACTOR", "Pacer"]
