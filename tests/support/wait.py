"""``wait_for``: the one way tests wait for a condition instead of sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import gevent

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``predicate()`` until it is truthy; return that value, or fail after ``timeout``.

    Sleeps with ``gevent.sleep`` so that greenlets of an in-process server or
    door run meanwhile; with no greenlets around it is a plain sleep.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        gevent.sleep(interval)
