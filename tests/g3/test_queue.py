"""FrameQueue: drops only droppable frames, byte bounds, blocking puts, wakeups."""

from __future__ import annotations

import threading

from channelstream.g3 import FrameQueue
from channelstream.g3.concurrency import THREADS
from tests.support.wait import wait_for


def test_drops_the_oldest_droppable_frame() -> None:
    queue = FrameQueue(THREADS, max_frames=3)
    for item in [(b"m1", False), (b"d1", True), (b"m2", False), (b"d2", True), (b"d3", True)]:
        queue.put(*item)
    assert queue.drain() == [b"m1", b"m2", b"d3"]
    assert queue.dropped == 2


def test_metadata_is_never_dropped() -> None:
    queue = FrameQueue(THREADS, max_frames=2)
    for i in range(10):
        queue.put(b"m%d" % i, False)
    assert len(queue) == 10 and queue.dropped == 0
    queue.put(b"d", True)  # over the bound, and the only droppable frame: dropped
    assert len(queue) == 10 and queue.dropped == 1
    assert queue.drain() == [b"m%d" % i for i in range(10)]


def test_overflow_closes_and_discards() -> None:
    queue = FrameQueue(THREADS, max_bytes=10)
    assert queue.put(b"12345", False)
    assert not queue.put(b"123456", False)
    assert queue.closed and queue.close_reason == "overflow"
    assert queue.dropped == 2 and queue.drain() == []
    assert not queue.put(b"x", True)


def test_blocking_put_waits_for_room() -> None:
    queue = FrameQueue(THREADS, max_bytes=10, on_full="block")
    queue.put(b"x" * 8, False)
    done = threading.Event()

    def producer() -> None:
        queue.put(b"y" * 8, False)
        done.set()

    threading.Thread(target=producer, daemon=True).start()
    assert not done.wait(0.2)
    assert queue.drain() == [b"x" * 8]
    wait_for(done.is_set, what="the blocked put")
    assert queue.drain() == [b"y" * 8]
    queue.put(b"z" * 100, False)  # bigger than the bound, into an empty queue: goes through
    assert len(queue) == 1


def test_close_wakes_a_blocked_put_and_the_writer() -> None:
    queue = FrameQueue(THREADS, max_bytes=1, on_full="block")
    queue.put(b"ab", False)
    result = []
    thread = threading.Thread(target=lambda: result.append(queue.put(b"c", False)), daemon=True)
    thread.start()
    queue.close("stop", discard=True)
    thread.join(10)
    assert result == [False]
    assert queue.wait(0) and queue.drain() == []


def test_replay_goes_first_and_wait_reports() -> None:
    queue = FrameQueue(THREADS, max_frames=1)
    assert not queue.wait(0)
    queue.put_many([b"a", b"b"])
    assert queue.wait(0)
    assert queue.drain() == [b"a", b"b"]
    assert not queue.wait(0)
