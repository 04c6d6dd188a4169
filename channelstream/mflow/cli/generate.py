"""m_generate: send a stream of raw-1.0 messages as fast as the peers take them (mflow's tool).

Usage: ``m_generate [-a tcp://*:9999] [-s MB] [-m push|pub] [-n count]``

Binds ``address`` and sends two-part ``raw-1.0`` messages::

    part 0   {"htype": "raw-1.0", "type": "int32", "shape": [1, n], "frame": <counter>}
    part 1   4 * n zero bytes, n = int(size * 1024 * 1024) // 4

(mflow put a float in ``shape`` and sent a part that did not always match
it; here ``shape`` holds integers that describe the part exactly.) Prints
mflow's rate line every 0.5 s and, on Ctrl-C or after ``-n`` messages, the
summary (which counts both parts).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import zmq

from .. import jsonpart
from ..stream import BIND, PUB, PUSH, connect
from ..utils import rate_line, summarize, summary_lines
from ._common import TICK_MS, Stop, run

INTERVAL = 0.5


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="m_generate", description="Stream generation utility")
    p.add_argument("-a", "--address", default="tcp://*:9999",
                   help='Address - format "tcp://<address>:<port>" (default tcp://*:9999)')
    p.add_argument("-s", "--size", default=1, type=float, help="Size of data to send (MB)")
    p.add_argument("-m", "--mode", default="push", choices=["push", "pub"],
                   help="Communication mode - either push (default) or pub")
    p.add_argument("-n", "--count", default=None, type=int,
                   help="Stop after this many messages (default: until Ctrl-C)")
    return p


def _main(args: argparse.Namespace) -> int:
    if args.size < 0:
        raise ValueError("the size must be >= 0")
    stop = Stop()
    stream = connect(args.address, conn_type=BIND, mode=PUB if args.mode == "pub" else PUSH,
                     send_timeout=TICK_MS)
    elements = int(args.size * 1024 * 1024) // 4
    data = bytes(4 * elements)
    header = {"htype": "raw-1.0", "type": "int32", "shape": [1, elements], "frame": 0}
    print(f"Sending messages of size {len(data) / 1e6:f} MB", flush=True)
    send = stream.socket.send_multipart
    sent = total_bytes = 0
    start = last = line_time = time.monotonic()
    line_bytes = line_sent = 0
    next_line = start + INTERVAL
    try:
        while not stop.requested and (args.count is None or sent < args.count):
            header["frame"] = sent
            parts = [jsonpart.dumps(header), data]
            if not send_whole(send, parts, stop):
                break
            sent += 1
            total_bytes += len(parts[0]) + len(data)
            now = last = time.monotonic()
            if now >= next_line:
                elapsed = now - line_time
                print(rate_line((total_bytes - line_bytes) / elapsed,
                                (sent - line_sent) / elapsed), flush=True)
                line_time, line_bytes, line_sent = now, total_bytes, sent
                next_line = now + INTERVAL
    finally:
        stream.disconnect()
    if stop.requested:
        print("Terminated by user.")
    for line in summary_lines(summarize(total_bytes, sent, last - start)):
        print(line)
    sys.stdout.flush()
    return 0


def send_whole(send: Callable[[list], object], parts: list, stop: Stop) -> bool:
    """Send ``parts`` (the socket has a send timeout); False if stopped before it went."""
    while True:
        try:
            send(parts)
            return True
        except zmq.Again:
            if stop.requested:
                return False


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run("m_generate", lambda: _main(args))


if __name__ == "__main__":
    sys.exit(main())
