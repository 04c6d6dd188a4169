"""``g3-frames``: print G3 frames, or serve them as a streaming server.

::

    g3-frames print run.g3.gz                        # spt3g's frame printout
    g3-frames print tcp://daq:4536 --json --count 10   # one JSON object per line
    g3-frames serve cal.g3 tcp://daq:4536 --listen 127.0.0.1:4536 --max-queue-size 10
    g3-frames serve run.g3 --rate 100 --linger --decimate Timepoint=10

Sources are files (``.gz``, ``.bz2``, ``.xz`` by name) and ``tcp://`` URLs
(``tcp://host:port`` connects, ``tcp://*:port`` and ``tcp://*@ADDR:port``
listen for one sender), read in order. ``print`` writes each frame's type,
names and scalar values (``--json``: ``{"type": ..., "objects": {...}}``,
non-scalar objects as their class and size). ``serve`` publishes each frame
to the clients of a streaming server on ``--listen`` (default
``127.0.0.1:4536``; ``*:PORT`` for every interface), which gives new
clients the latest metadata frames, then live ones; with ``--linger`` it
keeps serving after the sources end, until SIGINT or SIGTERM.

Exit status: 0 when the sources were read to their end (or the command was
interrupted); 1 when a source failed (bad frames, unreachable); 2 for a bad
command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from . import net
from .errors import G3Error
from .frame import G3Frame, describe
from .frametype import G3FrameType
from .server import StreamServer
from .sources import FrameReader

PROG = "g3-frames"
DEFAULT_LISTEN = "127.0.0.1:4536"


def _frame_type(text: str) -> G3FrameType:
    try:
        return G3FrameType[text]
    except KeyError:
        names = ", ".join(t.name for t in G3FrameType)
        raise argparse.ArgumentTypeError(f"unknown frame type {text!r} ({names})") from None


def _decimation(text: str) -> tuple[G3FrameType, int]:
    name, sep, every = text.partition("=")
    if not sep or not every.isdigit():
        raise argparse.ArgumentTypeError(f"expected TYPE=N, got {text!r}")
    return _frame_type(name), int(every)


def _listen(text: str) -> tuple[str | None, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    try:
        parsed_host, _ = net.parse_host("*" if host == "*" else host or "127.0.0.1")
        return parsed_host, net.parse_port(port, text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Print G3 frames, or serve them as a streaming server."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("sources", nargs="+", metavar="SOURCE",
                         help="files and tcp:// URLs, read in order")
        sub.add_argument("--timeout", type=float, default=None,
                         help="seconds of silence that end a tcp:// source (default: none)")

    show = commands.add_parser("print", help="print frames")
    common(show)
    show.add_argument("--json", action="store_true", help="one JSON object per frame")
    show.add_argument("--count", type=int, default=0, help="stop after N frames")
    show.add_argument("--type", dest="types", type=_frame_type, action="append",
                      help="print only frames of this type (repeatable)")

    serve = commands.add_parser("serve", help="serve frames as a streaming server")
    common(serve)
    serve.add_argument("--listen", type=_listen, default=_listen(DEFAULT_LISTEN),
                       help=f"HOST:PORT, *:PORT for every interface (default {DEFAULT_LISTEN})")
    serve.add_argument("--max-queue-size", type=int, default=0,
                       help="frames a client may lag before Timepoint/Scan frames are dropped")
    serve.add_argument("--decimate", type=_decimation, action="append", default=[],
                       metavar="TYPE=N", help="send every Nth frame of TYPE (0: none)")
    serve.add_argument("--rate", type=float, default=0.0,
                       help="frames per second at most (default: as fast as read)")
    serve.add_argument("--linger", action="store_true",
                       help="keep serving after the sources end, until interrupted")
    serve.add_argument("--drain-timeout", type=float, default=10.0,
                       help="seconds clients get to receive what is queued at the end")
    return parser


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def _print(args: argparse.Namespace, reader: FrameReader) -> None:
    shown = 0
    out = sys.stdout
    for frame in reader:
        if args.types and frame.type not in args.types:
            continue
        if args.json:
            out.write(json.dumps(_json_safe(describe(frame)), ensure_ascii=False) + "\n")
        else:
            out.write(str(frame) + "\n")
        out.flush()
        shown += 1
        if args.count and shown >= args.count:
            return


class _Decimator:
    def __init__(self, rules: list[tuple[G3FrameType, int]]) -> None:
        self.every = dict(rules)
        self.seen = dict.fromkeys(self.every, 0)

    def passes(self, frame: G3Frame) -> bool:
        every = self.every.get(frame.type)
        if every is None:
            return True
        if every == 0:
            return False
        self.seen[frame.type] += 1
        return self.seen[frame.type] % every == 0


def _serve(args: argparse.Namespace, reader: FrameReader, stopping: threading.Event) -> None:
    host, port = args.listen
    server = StreamServer(host, port, max_queue_size=args.max_queue_size,
                          drain_timeout=args.drain_timeout).start()
    print(f"{PROG}: serving on {server.url}", file=sys.stderr, flush=True)
    decimator = _Decimator(args.decimate)
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    next_at = time.monotonic()
    try:
        for frame in reader:
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0 and stopping.wait(delay):
                    break
                next_at = max(next_at + interval, time.monotonic() - 1.0)
            if decimator.passes(frame):
                server.publish(frame)
        if args.linger and not stopping.is_set():
            print(f"{PROG}: sources ended; serving until interrupted", file=sys.stderr, flush=True)
            while not stopping.wait(3600):
                pass
    finally:
        server.stop()
        stats = server.stats()
        print(f"{PROG}: {stats['published']} frames published, {stats['accepted']} clients, "
              f"{stats['dropped']} frames dropped", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(message)s")
    try:
        reader = FrameReader(args.sources, timeout=args.timeout)
    except (G3Error, ValueError) as error:
        parser.error(str(error))
    stopping = threading.Event()

    def interrupt(signum: int, _frame: Any) -> None:
        stopping.set()
        reader.close()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)
    try:
        if args.command == "print":
            _print(args, reader)
        else:
            _serve(args, reader, stopping)
    except G3Error as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    finally:
        reader.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
