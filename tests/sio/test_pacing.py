"""The socket.io door's fan-out passes (channelstream/sio/pacing.py), in process: at once
while the process is not saturated, after a pause when it is; each drain once, in the
order asked, nothing lost."""

from __future__ import annotations

import time

import gevent

from channelstream.sio.pacing import LoopLoad, Pacer
from tests.support.wait import wait_for


class Load:
    """A :class:`LoopLoad` that says how busy the loop is told to be."""

    def __init__(self, busy: float) -> None:
        self.busy = busy

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def update(self, now: float) -> float:
        return self.busy


def saturated(**options: float) -> Pacer:
    return Pacer(load=Load(1.0), **options)


def long_pass(pacer: Pacer, calls: list[str], seconds: float = 0.02) -> None:
    """A pass that takes ``seconds`` (as 1,000 writes would), then its end."""

    def slow() -> None:
        time.sleep(seconds)  # the process is busy: nothing else runs
        calls.append("slow")

    pacer.ready(slow)
    gevent.sleep(0)  # the pass ends (its callback runs)


def test_drains_run_at_once_while_the_process_is_not_saturated():
    pacer = Pacer(load=Load(0.5))
    calls: list[str] = []
    long_pass(pacer, calls)
    pacer.ready(lambda: calls.append("a"))
    assert calls == ["slow", "a"]
    gevent.sleep(0.01)
    pacer.ready(lambda: calls.append("b"))
    assert calls == ["slow", "a", "b"]
    assert (pacer.passes, pacer.paced) == (3, 0)


def test_a_drain_asked_for_during_a_pass_belongs_to_it():
    pacer = saturated()
    calls: list[str] = []

    def first() -> None:
        calls.append("first")
        pacer.ready(lambda: calls.append("second"))  # e.g. a write watcher within it

    pacer.ready(first)
    assert calls == ["first", "second"]
    assert pacer.passes == 1


def test_after_a_long_pass_the_next_waits_and_runs_each_drain_once_in_order():
    pacer = saturated(pause_factor=1.0, max_pause=0.5)
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
    pacer = saturated(pause_factor=1.0, max_pause=0.5)
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
    pacer = saturated(pause_factor=1.0, max_pause=30.0)
    calls: list[str] = []
    long_pass(pacer, calls, seconds=0.05)

    def broken() -> None:
        raise RuntimeError("a bug in one transport")

    pacer.ready(broken)
    pacer.ready(lambda: calls.append("after"))
    pacer.stop()
    assert calls == ["slow", "after"]


def test_the_loop_load_is_the_share_of_time_not_spent_waiting_in_poll():
    load = LoopLoad(window=0.05)
    load.start()
    try:
        gevent.sleep(0.001)  # started from a callback: its watchers run from the next loop
        gevent.sleep(0.06)  # waiting: idle
        assert load.update(time.monotonic()) < 0.5
        started = time.monotonic()
        while time.monotonic() - started < 0.06:
            pass  # working, the loop never polls
        gevent.sleep(0)
        assert load.update(time.monotonic()) > 0.5

        def work() -> None:  # a callback of the loop, as the hub's wake-ups are
            began = time.monotonic()
            while time.monotonic() - began < 0.06:
                pass

        gevent.get_hub().loop.run_callback(work)
        gevent.sleep(0.001)
        assert load.update(time.monotonic()) > 0.5
    finally:
        load.stop()
