"""mflow's utilities: :class:`Merge` of streams and throughput statistics.

``Merge(*streams)`` behaves as one receiving stream: each ``receive()``
tries the streams round robin, starting after the one that gave the last
message, so a busy stream cannot starve the others. With nothing waiting it
polls all of them (a ``zmq.green`` poller for green streams) until one has a
message or ``timeout`` ms pass (default: the smallest ``receive_timeout`` of
the streams, or forever). mflow's Merge printed every index it tried and
returned None at once when nothing was waiting.

:class:`ThroughputStatistics` samples a stream's statistics (mflow's
utility of the same name): every ``sampling_interval`` seconds it records
the message rate and data rate of the last interval (in a bounded deque),
and :meth:`~ThroughputStatistics.get_statistics` gives mflow's summary:
total_elapsed_time, average_message_size, total_bytes_received,
average_data_rate, messages_received, average_message_rate (MB = 10^6 bytes).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from .green import flavour
from .receiver import Message, Receiver
from .stream import Stream

MB = 1e6


class RoundRobinStrategy:
    """Which stream to try first: the one after the last one that gave a message."""

    def __init__(self) -> None:
        self.last_stream_read: int | None = None

    def next(self, streams: tuple[Stream, ...]) -> int:
        if self.last_stream_read is None:
            self.last_stream_read = 0
        else:
            self.last_stream_read = (self.last_stream_read + 1) % len(streams)
        return self.last_stream_read


class Merge:
    """Several receiving streams as one; see the module docstring."""

    def __init__(self, *streams: Stream, receive_strategy: RoundRobinStrategy | None = None,
                 timeout: int | None = None) -> None:
        if not streams:
            raise ValueError("Merge needs at least one stream")
        self.streams = streams
        self.receive_strategy = receive_strategy or RoundRobinStrategy()
        timeouts = [s._receive_timeout for s in streams if s._receive_timeout is not None]
        self.timeout = timeout if timeout is not None else (
            int(min(timeouts) * 1000) if timeouts else None)
        self._poller = flavour(streams[0].context).Poller()
        for stream in streams:
            self._poller.register(stream.socket, zmq.POLLIN)

    def receive(self, handler: Callable[[Receiver], Any] | None = None,
                block: bool = True) -> Message | None:
        """The next message of any stream, round robin; None if none came in time.

        :raises MalformedMessage: as :meth:`Stream.receive`.
        """
        deadline = None if self.timeout is None else time.monotonic() + self.timeout / 1000
        while True:
            for _ in self.streams:
                stream = self.streams[self.receive_strategy.next(self.streams)]
                message = stream.receive(handler=handler, block=False)
                if message is not None:
                    return message
            if not block:
                return None
            wait = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
            if not self._poller.poll(wait) and deadline is not None:
                return None

    def disconnect(self) -> None:
        """Disconnect every stream."""
        for stream in self.streams:
            stream.disconnect()

    def __enter__(self) -> Merge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.disconnect()


class ThroughputStatistics:
    """Rates sampled from a stream's statistics; see the module docstring."""

    MB_FACTOR = 1 / MB

    def __init__(self, buffer: deque | None = None, sampling_interval: float = 0.2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sampling_interval = sampling_interval
        self._buffer = deque(maxlen=100) if buffer is None else buffer
        self._clock = clock
        self.initial_time = clock()
        self._sampled = (0, 0, self.initial_time)   # total bytes, messages, time
        self._received = (0, 0, self.initial_time)

    def save_statistics(self, statistics: Any) -> bool:
        """Record ``statistics`` (anything with total_bytes_received and messages_received);
        True when a sampling interval ended and a sample was added."""
        now = self._clock()
        self._received = (statistics.total_bytes_received, statistics.messages_received, now)
        if now - self._sampled[2] > self.sampling_interval:
            self._sample()
            return True
        return False

    def _sample(self) -> None:
        elapsed = self._received[2] - self._sampled[2]
        if elapsed <= 0:
            return
        self._buffer.append({
            "data_rate": (self._received[0] - self._sampled[0]) / elapsed,
            "message_rate": (self._received[1] - self._sampled[1]) / elapsed,
        })
        self._sampled = self._received

    def get_last_sampled_statistics(self) -> dict[str, float] | None:
        return self._buffer[-1] if self._buffer else None

    def get_statistics_raw(self) -> deque:
        return self._buffer

    def flush(self) -> bool:
        """Add a sample for what arrived since the last one, interval or not."""
        if self._received[2] > self._sampled[2]:
            self._sample()
            return True
        return False

    def get_statistics(self) -> dict[str, float]:
        """mflow's summary (sorted keys), or {} when nothing was received."""
        total_bytes, messages, last = self._received
        return summarize(total_bytes, messages, last - self.initial_time)


def summarize(total_bytes: int, messages: int, elapsed: float) -> dict[str, float]:
    """mflow's summary of ``messages`` totalling ``total_bytes`` in ``elapsed`` s; {} if none."""
    if elapsed <= 0 or not messages:
        return {}
    return {
        "average_data_rate": total_bytes / elapsed,
        "average_message_rate": messages / elapsed,
        "average_message_size": total_bytes / messages,
        "messages_received": messages,
        "total_bytes_received": total_bytes,
        "total_elapsed_time": elapsed,
    }


def rate_line(data_rate: float, message_rate: float) -> str:
    """mflow's live line: ``Data rate: ... MB/s    Message rate: ... Hz``."""
    return f"Data rate: {data_rate / MB: >10.3f} MB/s    Message rate: {message_rate: >10.3f} Hz"


def summary_lines(summary: dict[str, float]) -> list[str]:
    """mflow's summary block, or "No messages received."."""
    rule = "_" * 60
    if not summary:
        return ["No messages received.", rule]
    return [
        rule,
        f"Total elapsed time:   {summary['total_elapsed_time']: >10.3f} s",
        f"Average message size: {summary['average_message_size'] / MB: >10.3f} MB",
        f"Total bytes received: {summary['total_bytes_received'] / MB: >10.3f} MB",
        f"Average data rate:    {summary['average_data_rate'] / MB: >10.3f} MB/s",
        f"Messages received:    {summary['messages_received']: >10d} messages",
        f"Average message rate: {summary['average_message_rate']: >10.3f} Hz",
        rule,
    ]


class ThroughputStatisticsPrinter:
    """mflow's printer: a rate line per sample, the summary at :meth:`close`."""

    def __init__(self, sampling_interval: float = 0.2,
                 printer: Callable[[str], Any] = print) -> None:
        self.statistics = ThroughputStatistics(sampling_interval=sampling_interval)
        self._print = printer

    def save_statistics(self, message_statistics: Any) -> None:
        if self.statistics.save_statistics(message_statistics):
            self.print_statistics()

    def print_statistics(self) -> None:
        sample = self.statistics.get_last_sampled_statistics()
        if sample is not None:
            self._print(rate_line(sample["data_rate"], sample["message_rate"]))

    def print_summary(self) -> None:
        for line in summary_lines(self.statistics.get_statistics()):
            self._print(line)

    def close(self, print_summary: bool = True) -> None:
        if self.statistics.flush():
            self.print_statistics()
        if print_summary:
            self.print_summary()
