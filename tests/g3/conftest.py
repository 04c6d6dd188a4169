"""Fixtures of the G3 tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["threads", "greenlets"])
def concurrency(request: pytest.FixtureRequest) -> str:
    """Run the test with the library's threads, then with its greenlets (in a
    process that gevent has not patched: waits must yield, as wait_for does)."""
    return request.param
