"""Throughput statistics and the summary block (Merge is tested with sockets in test_stream)."""

from __future__ import annotations

from types import SimpleNamespace

from channelstream.mflow.utils import (
    ThroughputStatistics,
    ThroughputStatisticsPrinter,
    rate_line,
    summarize,
    summary_lines,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def stats(total: int, messages: int) -> SimpleNamespace:
    return SimpleNamespace(total_bytes_received=total, messages_received=messages)


def test_sampling_every_interval_and_the_summary():
    clock = Clock()
    sampler = ThroughputStatistics(sampling_interval=1.0, clock=clock)
    clock.now = 100.5
    assert sampler.save_statistics(stats(1000, 10)) is False
    clock.now = 101.5
    assert sampler.save_statistics(stats(3000, 30)) is True
    assert sampler.get_last_sampled_statistics() == {"data_rate": 2000.0, "message_rate": 20.0}
    clock.now = 102.0
    sampler.save_statistics(stats(4000, 40))
    assert sampler.flush() is True
    assert sampler.get_last_sampled_statistics() == {"data_rate": 2000.0, "message_rate": 20.0}
    assert sampler.flush() is False
    assert sampler.get_statistics() == {
        "average_data_rate": 2000.0, "average_message_rate": 20.0, "average_message_size": 100.0,
        "messages_received": 40, "total_bytes_received": 4000, "total_elapsed_time": 2.0,
    }
    assert len(sampler.get_statistics_raw()) == 2


def test_the_sample_buffer_is_bounded():
    clock = Clock()
    sampler = ThroughputStatistics(sampling_interval=0.1, clock=clock)
    for n in range(1, 500):
        clock.now += 1
        sampler.save_statistics(stats(n, n))
    assert len(sampler.get_statistics_raw()) == 100


def test_summary_lines_are_mflows():
    assert summary_lines({}) == ["No messages received.", "_" * 60]
    lines = summary_lines(summarize(3_000_000, 3, 2.0))
    assert lines[1:-1] == [
        "Total elapsed time:        2.000 s",
        "Average message size:      1.000 MB",
        "Total bytes received:      3.000 MB",
        "Average data rate:         1.500 MB/s",
        "Messages received:             3 messages",
        "Average message rate:      1.500 Hz",
    ]
    assert rate_line(2e6, 10) == "Data rate:      2.000 MB/s    Message rate:     10.000 Hz"


def test_printer():
    printed = []
    printer = ThroughputStatisticsPrinter(sampling_interval=0, printer=printed.append)
    printer.statistics._clock = clock = Clock()
    printer.statistics.initial_time = clock.now
    printer.statistics._sampled = (0, 0, clock.now)
    clock.now += 1
    printer.save_statistics(stats(1e6, 5))
    printer.close()
    assert printed[0] == rate_line(1e6, 5)
    assert "Messages received:             5 messages" in printed
