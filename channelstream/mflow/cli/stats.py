"""m_stats: measure a stream (mflow's tool).

Usage: ``m_stats source [-m pull|sub] [-i interval]``

Connects to ``source`` (binds for ``tcp://*:port``) and counts every message
whole, without decoding it (any bytes count). Every ``interval`` seconds
(default 0.5) it prints mflow's live line for that interval::

    Data rate:      1.234 MB/s    Message rate:    100.000 Hz

(also while nothing arrives: then the rates are 0), and on Ctrl-C mflow's
summary block: total elapsed time (from start to the last message), average
message size, total bytes, average data rate, messages received, average
message rate (MB = 10^6 bytes; sizes count every part of every message).
"""

from __future__ import annotations

import argparse
import sys
import time

import zmq

from ..split import conn_type_for
from ..stream import PULL, SUB, connect
from ..utils import rate_line, summarize, summary_lines
from ._common import TICK_MS, Stop, run


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="m_stats", description="Stream statistic utility")
    p.add_argument("source", help='Source address - format "tcp://<address>:<port>"')
    p.add_argument("-m", "--mode", default="pull", choices=["pull", "sub"],
                   help="Communication mode - either pull (default) or sub")
    p.add_argument("-i", "--sampling_interval", type=float, default=0.5,
                   help="Interval in seconds at which to print the rates (default 0.5)")
    return p


def _main(args: argparse.Namespace) -> int:
    interval = args.sampling_interval
    if interval <= 0:
        raise ValueError("the sampling interval must be > 0")
    stop = Stop()
    stream = connect(args.source, conn_type=conn_type_for(args.source),
                     mode=SUB if args.mode == "sub" else PULL,
                     receive_timeout=max(1, min(TICK_MS, int(interval * 1000))), copy=False)
    print(f"mflow stats started. Sampling interval is {interval:.2f} seconds.")
    print("_" * 60, flush=True)
    recv = stream.socket.recv_multipart
    total_bytes = messages = 0
    start = last_message = line_time = time.monotonic()
    line_bytes = line_messages = 0
    next_line = start + interval
    try:
        while not stop.requested:
            try:
                frames = recv(copy=False)
            except zmq.Again:
                frames = None
            else:
                for frame in frames:
                    total_bytes += len(frame)
                messages += 1
            now = time.monotonic()
            if frames is not None:
                last_message = now
            if now >= next_line:
                elapsed = now - line_time
                print(rate_line((total_bytes - line_bytes) / elapsed,
                                (messages - line_messages) / elapsed), flush=True)
                line_time, line_bytes, line_messages = now, total_bytes, messages
                next_line = now + interval
    finally:
        stream.disconnect()
    for line in summary_lines(summarize(total_bytes, messages, last_message - start)):
        print(line)
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run("m_stats", lambda: _main(args))


if __name__ == "__main__":
    sys.exit(main())
