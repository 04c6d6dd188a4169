"""serve_query: plain, history-only and paced queries on a real hub, in process.

The hub stamps packets with a clock the test steps (so the gaps between
receive times are known exactly); the pacing runs on real time, so the
tests assert lower bounds (a packet never goes out before it is due,
measured from before the call) and only generous upper bounds.
"""

from __future__ import annotations

import time

import gevent
import pytest

from channelstream.packets import configure_packet_channel, packet_message, parse_query
from channelstream.packets.replay import REASON_HISTORY_END, serve_query
from tests.support.wait import wait_for

from ..hub.fakes import FakeClock, make_hub

pytestmark = pytest.mark.timeout(60)

CHANNEL = "packets"


class Recorder:
    """The door's ``write``: keeps each batch's packet numbers and when it came."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, list[int]]] = []

    def __call__(self, batch) -> None:
        self.batches.append((time.monotonic(), [m.body["n"] for m in batch]))

    @property
    def numbers(self) -> list[int]:
        return [n for _, batch in self.batches for n in batch]

    def when(self, n: int) -> float:
        return next(at for at, batch in self.batches if n in batch)


def packet_hub(clock: FakeClock, history_size: int = 1000):
    hub = make_hub(clock)
    configure_packet_channel(hub, CHANNEL, history_size=history_size, history_seconds=0)
    return hub


def publish(hub, *numbers: int, gap_ms: int = 0, clock: FakeClock, **fields) -> None:
    for n in numbers:
        hub.publish(packet_message(CHANNEL, {"n": n, **fields}))
        clock.advance(gap_ms)


def serve(hub, query: dict, **options):
    outbox = hub.open_outbox(name="test")
    record = Recorder()
    partial: list[str] = []
    started = time.monotonic()
    greenlet = gevent.spawn(
        serve_query,
        hub,
        CHANNEL,
        outbox,
        parse_query(query),
        record,
        on_partial=partial.append,
        **options,
    )
    gevent.sleep(0)  # it subscribes now: what is published next is live
    return outbox, record, greenlet, partial, started


def test_a_plain_query_is_the_window_then_live():
    clock = FakeClock()
    hub = packet_hub(clock)
    publish(hub, 0, 1, gap_ms=1000, clock=clock)
    outbox, record, greenlet, partial, _ = serve(hub, {"time": 1500})
    publish(hub, 2, clock=clock)
    wait_for(lambda: record.numbers == [1, 2])
    outbox.close("done")
    assert greenlet.get(timeout=5) == "done"
    assert partial == []


def test_history_only_sends_the_window_then_ends_and_nothing_live():
    clock = FakeClock()
    hub = packet_hub(clock)
    publish(hub, 0, 1, 2, gap_ms=1000, clock=clock)
    publish(hub, 3, clock=clock, other=True)
    # "other": None matches no packet here: the filter applies to the window.
    query = {"time": 2500, "other": None, "_history_only": True}
    outbox, record, greenlet, _, _ = serve(hub, query)
    assert greenlet.get(timeout=5) == REASON_HISTORY_END
    assert record.numbers == []
    outbox, record, greenlet, _, _ = serve(hub, {"time": 2500, "_history_only": True})
    publish(hub, 4, clock=clock)
    assert greenlet.get(timeout=5) == REASON_HISTORY_END
    assert record.numbers == [1, 2, 3]
    assert outbox.closed and outbox.close_reason == REASON_HISTORY_END
    assert not outbox.subscriptions  # nothing more will come


def test_history_only_writes_in_batches_of_the_limit():
    clock = FakeClock()
    hub = packet_hub(clock)
    publish(hub, *range(10), clock=clock)
    _, record, greenlet, _, _ = serve(hub, {"time": 0, "_history_only": True}, batch_limit=4)
    assert greenlet.get(timeout=5) == REASON_HISTORY_END
    assert [batch for _, batch in record.batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_paced_replay_keeps_the_gaps_divided_by_the_speedup():
    clock = FakeClock()
    hub = packet_hub(clock)
    publish(hub, 0, clock=clock, gap_ms=600)
    publish(hub, 1, clock=clock, gap_ms=1200)
    publish(hub, 2, clock=clock)
    # Receive times 0, 600, 1800 ms; at speed 4: due 0, 0.15, 0.45 s after the start.
    _, record, greenlet, _, started = serve(
        hub, {"time": 10_000, "_speedup": 4, "_history_only": True}
    )
    assert greenlet.get(timeout=10) == REASON_HISTORY_END
    assert record.numbers == [0, 1, 2]
    assert record.when(1) - started >= 0.15
    assert record.when(2) - started >= 0.45
    assert record.when(2) - started < 0.45 + 5  # generous: paced, not stuck


def test_a_replay_slower_than_the_original_takes_longer():
    clock = FakeClock()
    hub = packet_hub(clock)
    publish(hub, 0, 1, gap_ms=100, clock=clock)
    _, record, greenlet, _, started = serve(
        hub, {"time": 10_000, "_speedup": 0.25, "_history_only": True}
    )
    assert greenlet.get(timeout=10) == REASON_HISTORY_END
    assert record.when(1) - started >= 0.4  # 100 ms at a quarter of the speed


def test_packets_that_arrive_during_a_paced_replay_follow_it_then_live_no_gap_no_duplicate():
    clock = FakeClock()
    hub = packet_hub(clock)
    publish(hub, 0, 1, 2, gap_ms=100, clock=clock, run="r")
    publish(hub, 100, clock=clock, run="other")  # filtered out everywhere
    outbox, record, greenlet, partial, _ = serve(hub, {"run": "r", "time": 10_000, "_speedup": 1})
    # The window takes 0.2 s; these arrive while it plays.
    publish(hub, 3, 4, clock=clock, run="r")
    publish(hub, 101, clock=clock, run="other")
    assert record.numbers[:1] == [0] and 3 not in record.numbers
    wait_for(lambda: record.numbers == [0, 1, 2, 3, 4])
    # after the window: what came meanwhile in one write, before anything live
    assert [3, 4] in [batch for _, batch in record.batches]
    publish(hub, 5, clock=clock, run="r")
    wait_for(lambda: record.numbers == [0, 1, 2, 3, 4, 5])
    outbox.close("done")
    assert greenlet.get(timeout=5) == "done"
    assert partial == []


def test_a_paced_replay_that_outlasts_the_history_says_so_and_repeats_nothing():
    clock = FakeClock()
    hub = packet_hub(clock, history_size=3)
    publish(hub, 0, 1, gap_ms=300, clock=clock)
    outbox, record, greenlet, partial, _ = serve(hub, {"time": 10_000, "_speedup": 1})
    publish(hub, *range(2, 8), clock=clock)  # history keeps 5, 6, 7: 2, 3, 4 are lost
    wait_for(lambda: record.numbers == [0, 1, 5, 6, 7])
    publish(hub, 8, clock=clock)
    wait_for(lambda: record.numbers == [0, 1, 5, 6, 7, 8])
    outbox.close("done")
    greenlet.get(timeout=5)
    assert len(partial) == 1 and "arrived during the replay were lost" in partial[0]


def test_closing_the_outbox_ends_a_paced_sleep_at_once():
    clock = FakeClock()
    hub = packet_hub(clock)
    publish(hub, 0, 1, gap_ms=3_600_000, clock=clock)  # an hour apart: the replay sleeps
    outbox, record, greenlet, _, _ = serve(hub, {"time": 7_200_000, "_speedup": 1})
    wait_for(lambda: record.numbers == [0])
    outbox.close("client closed the connection", discard=True)
    assert greenlet.get(timeout=5) == "client closed the connection"
    assert record.numbers == [0]


def test_a_slow_write_lets_the_pace_slip_and_late_packets_go_together():
    """Nothing is dropped from the window: packets due during a slow write follow it at once."""
    clock = FakeClock()
    hub = packet_hub(clock)
    publish(hub, *range(6), gap_ms=10, clock=clock)
    outbox = hub.open_outbox()
    batches: list[list[int]] = []

    def slow_write(batch) -> None:
        batches.append([m.body["n"] for m in batch])
        gevent.sleep(0.2)  # the point: the client takes longer than the gaps

    query = parse_query({"time": 10_000, "_speedup": 1, "_history_only": True})
    assert serve_query(hub, CHANNEL, outbox, query, slow_write) == REASON_HISTORY_END
    assert batches == [[0], [1, 2, 3, 4, 5]]


def test_a_failing_write_closes_the_outbox_and_propagates():
    clock = FakeClock()
    hub = packet_hub(clock)
    publish(hub, 0, 1, clock=clock)
    outbox = hub.open_outbox()

    def broken(batch) -> None:
        raise ConnectionResetError("peer reset")

    query = parse_query({"time": 10_000, "_speedup": 2})
    with pytest.raises(ConnectionResetError):
        serve_query(hub, CHANNEL, outbox, query, broken)
    assert outbox.closed and "ConnectionResetError" in outbox.close_reason
    assert hub.channel(CHANNEL).subscriber_count == 0
