"""The socket.io door's fan-out passes (channelstream/sio/pacing.py), in process: at once
while passes are rare, after a pause when one follows another closely; each drain once,
in the order asked, nothing lost."""

from __future__ import annotations

import time

import gevent

from channelstream.sio.pacing import Pacer
from tests.support.wait import wait_for


def long_pass(pacer: Pacer, calls: list[str], seconds: float = 0.02) -> None:
    """A pass that takes ``seconds`` (as 1,000 writes would), then its end."""

    def slow() -> None:
        time.sleep(seconds)  # the process is busy: nothing else runs
        calls.append("slow")

    pacer.ready(slow)
    gevent.sleep(0)  # the pass ends (its callback runs)


def test_drains_run_at_once_while_passes_are_rare():
    pacer = Pacer()
    calls: list[str] = []
    pacer.ready(lambda: calls.append("a"))
    assert calls == ["a"]
    gevent.sleep(0.01)
    pacer.ready(lambda: calls.append("b"))
    assert calls == ["a", "b"]
    assert (pacer.passes, pacer.paced) == (2, 0)


def test_a_drain_asked_for_during_a_pass_belongs_to_it():
    pacer = Pacer()
    calls: list[str] = []

    def first() -> None:
        calls.append("first")
        pacer.ready(lambda: calls.append("second"))  # e.g. a write watcher within it

    pacer.ready(first)
    assert calls == ["first", "second"]
    assert pacer.passes == 1


def test_after_a_long_pass_the_next_waits_and_runs_each_drain_once_in_order():
    pacer = Pacer(pause_factor=1.0, max_pause=0.5)
    calls: list[str] = []
    long_pass(pacer, calls)

    def drain_a() -> None:
        calls.append("a")

    def drain_b() -> None:
        calls.append("b")

    pacer.ready(drain_a)
    pacer.ready(drain_b)
    pacer.ready(drain_a)  # asked again before the pass: once
    assert calls == ["slow"]  # the pause after the long pass is not over
    wait_for(lambda: len(calls) == 3, timeout=5)
    assert calls == ["slow", "a", "b"]
    assert (pacer.passes, pacer.paced) == (2, 1)


def test_a_drain_discarded_before_its_pass_does_not_run():
    pacer = Pacer(pause_factor=1.0, max_pause=0.5)
    calls: list[str] = []
    long_pass(pacer, calls)

    def gone() -> None:
        calls.append("gone")

    def kept() -> None:
        calls.append("kept")

    pacer.ready(gone)
    pacer.ready(kept)
    pacer.discard(gone)
    wait_for(lambda: len(calls) == 2, timeout=5)
    assert calls == ["slow", "kept"]


def test_stop_runs_what_waits_and_a_failing_drain_does_not_hold_up_the_rest():
    pacer = Pacer(pause_factor=1.0, max_pause=30.0)
    calls: list[str] = []
    long_pass(pacer, calls, seconds=0.05)

    def broken() -> None:
        raise RuntimeError("a bug in one transport")

    pacer.ready(broken)
    pacer.ready(lambda: calls.append("after"))
    pacer.stop()
    assert calls == ["slow", "after"]
