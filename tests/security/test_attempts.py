"""FailureLimiter: failures per address in a sliding window, bounded memory."""

from __future__ import annotations

import pytest

from channelstream.errors import TooManyRequests
from channelstream.security.attempts import FailureLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_address_waits_until_its_oldest_failure_is_out_of_the_window():
    clock = Clock()
    limiter = FailureLimiter(2, 60, clock=clock)
    limiter.failed("a")
    clock.now += 10
    limiter.failed("a")
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("a")
    assert refused.value.retry_after == 50
    assert refused.value.headers() == {"Retry-After": "50"}
    limiter.check("b")  # other addresses are not concerned
    clock.now += 50
    limiter.check("a")  # the first failure no longer counts
    assert limiter.refused == 1


def test_a_success_forgets_the_failures():
    limiter = FailureLimiter(1, 60, clock=Clock())
    limiter.failed("a")
    limiter.succeeded("a")
    limiter.check("a")


def test_memory_is_bounded_by_addresses_and_failures():
    limiter = FailureLimiter(3, 60, max_addresses=100, clock=Clock())
    for n in range(1000):
        for _ in range(10):
            limiter.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter._failures) == 100
    assert all(len(times) == 3 for times in limiter._failures.values())


def test_zero_means_no_limit():
    limiter = FailureLimiter(0, 60, clock=Clock())
    for _ in range(100):
        limiter.failed("a")
    limiter.check("a")
