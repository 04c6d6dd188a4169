"""Test doubles for the hub: a clock that tests step by hand."""

from __future__ import annotations

from channelstream.hub import ChannelConfig, Hub, HubConfig


class FakeClock:
    """A wall clock in ms that tests may step either way, and a monotonic clock.

    Call it for the wall clock (``Hub(clock_ms=clock)``); ``monotonic`` is the
    hub's idleness clock. ``advance`` moves both forward.
    """

    def __init__(self, ms: int = 1_000_000) -> None:
        self.ms = ms
        self.mono = 0.0

    def __call__(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.mono

    def advance(self, ms: int) -> None:
        self.ms += ms
        self.mono += ms / 1000


def make_hub(clock: FakeClock, *, history_size=100, history_seconds=0.0, **config) -> Hub:
    """A hub on ``clock`` whose channels keep the given history."""
    channel_config = ChannelConfig(history_size=history_size, history_seconds=history_seconds)
    return Hub(
        HubConfig(default_channel=channel_config, **config),
        clock_ms=clock,
        monotonic=clock.monotonic,
    )
