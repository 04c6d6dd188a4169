"""Failed credential attempts per address, and the pause they earn.

An address that fails ``max_failures`` times within ``window`` seconds is
refused (429 with ``Retry-After``) until the oldest of those failures is
``window`` seconds old; a success forgets its failures. Guessing an admin
password by basic auth is then a few tries a minute, not thousands a second.
Memory is bounded: at most ``max_addresses`` addresses are remembered (the
least recently failing are forgotten first) and ``max_failures`` times each.
Pure Python, no I/O; no method yields.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from ..errors import TooManyRequests


class FailureLimiter:
    """Counts failures per address within a sliding window (see the module doc).

    :param max_failures: failures allowed within ``window`` (0 = never refuse).
    :param window: seconds a failure counts.
    :param what: what the failures are of, for the refusal's message.
    """

    def __init__(
        self,
        max_failures: int,
        window: float,
        *,
        what: str = "credentials",
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.what = what
        self.max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        #: attempts refused because their address failed too often
        self.refused = 0

    def check(self, address: str) -> None:
        """Raise :class:`TooManyRequests` if ``address`` must wait; else nothing."""
        if not self.max_failures:
            return
        times = self._failures.get(address)
        if times is None:
            return
        now = self._clock()
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[address]
            return
        if len(times) >= self.max_failures:
            self.refused += 1
            wait = max(1, math.ceil(self.window - (now - times[0])))
            raise TooManyRequests(
                f"too many failed {self.what} from {address}: try again in {wait} s",
                retry_after=wait,
            )

    def failed(self, address: str) -> None:
        """Count a failure of ``address``."""
        if not self.max_failures:
            return
        times = self._failures.get(address)
        if times is None:
            times = self._failures[address] = deque(maxlen=self.max_failures)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(address)
        times.append(self._clock())

    def succeeded(self, address: str) -> None:
        """``address`` got in: its failures no longer count."""
        self._failures.pop(address, None)


__all__ = ["FailureLimiter"]
