"""m_replay: send a dump (m_dump's folder) again (mflow's tool).

Usage: ``m_replay folder [-a tcp://*:9999] [-m push|pub] [-w N] [--wait-timeout S]
[--linger MS]``

Binds ``address`` and sends each message of the dump as one multipart
message, its part files in order (mflow's layout and this package's wider
names alike, see :mod:`channelstream.mflow.dumpfiles`; other files are
ignored).

``-w N`` (``--subscribers``) waits, before sending, until N peers are there:
for ``pub``, N subscriptions have arrived (an XPUB socket sees them), so no
subscriber misses the start as mflow's replay let slow joiners do; for
``push``, N peers connected (a PUSH socket holds messages until one
connects anyway, then deals them round robin among those connected).
``--wait-timeout`` gives up after that many seconds (exit status 1).

At the end, unsent messages are given ``--linger`` ms (default 10000) to
leave. Ctrl-C stops after the current message, prints the summary, exit 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..dumpfiles import read_dump
from ..errors import ConnectError
from ._common import TICK_MS, Progress, Stop, megabytes, run


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="m_replay", description="Stream replay utility")
    p.add_argument("folder", help="Folder written by m_dump")
    p.add_argument("-a", "--address", default="tcp://*:9999",
                   help='Address - format "tcp://<address>:<port>" (default: "tcp://*:9999")')
    p.add_argument("-m", "--mode", default="push", choices=["push", "pub"],
                   help="Communication mode - either push (default) or pub")
    p.add_argument("-w", "--subscribers", default=0, type=int,
                   help="Wait for this many subscribers (pub) or peers (push) before sending")
    p.add_argument("--wait-timeout", default=None, type=float,
                   help="Give up waiting for subscribers after this many seconds")
    p.add_argument("--linger", default=10000, type=int,
                   help="ms to let unsent messages leave at the end (default 10000, -1: forever)")
    return p


def wait_for_peers(socket: zmq.Socket, monitor: zmq.Socket | None, count: int, stop: Stop,
                   timeout: float | None) -> bool:
    """Wait until ``count`` subscriptions (XPUB) or connections (``monitor``) arrived."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = 0
    source = monitor if monitor is not None else socket
    while seen < count:
        if stop.requested or (deadline is not None and time.monotonic() > deadline):
            return False
        if not source.poll(TICK_MS):
            continue
        if monitor is not None:
            event = parse_monitor_message(monitor.recv_multipart())
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                seen += 1
        elif socket.recv()[:1] == b"\x01":  # XPUB: a subscription (b"\x00": unsubscribe)
            seen += 1
    return True


def _send(socket: zmq.Socket, parts: list[bytes], stop: Stop) -> bool:
    while True:
        try:
            socket.send_multipart(parts)
            return True
        except zmq.Again:
            if stop.requested:
                return False


def _main(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.folder):
        raise ValueError(f"Specified folder '{args.folder}' does not exist.")
    stop = Stop()
    context = zmq.Context()
    pub = args.mode == "pub"
    socket = context.socket(zmq.XPUB if pub else zmq.PUSH)
    monitor = None
    messages = parts = size = 0
    progress = Progress()
    try:
        socket.setsockopt(zmq.SNDTIMEO, TICK_MS)
        socket.set_hwm(1000)
        if pub:
            socket.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscription, not only new topics
        if args.subscribers and not pub:
            monitor = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        try:
            socket.bind(args.address)
        except zmq.ZMQError as exc:
            raise ConnectError(f"Unable to bind to {args.address}: {exc}") from None
        if args.subscribers:
            print(f"Waiting for {args.subscribers} "
                  f"{'subscriber' if pub else 'peer'}(s) on {args.address}", flush=True)
            if not wait_for_peers(socket, monitor, args.subscribers, stop, args.wait_timeout):
                if stop.requested:
                    print("Stopped while waiting for subscribers; nothing sent.")
                    return 0
                raise ValueError(f"fewer than {args.subscribers} subscribers came in "
                                 f"{args.wait_timeout} s")
        print(f"Replaying {args.folder} on {args.address}", flush=True)
        start = time.monotonic()
        for _number, paths in read_dump(args.folder):
            if stop.requested:
                break
            message = []
            for path in paths:
                with open(path, "rb") as f:
                    message.append(f.read())
            if not _send(socket, message, stop):
                break
            messages += 1
            parts += len(message)
            size += sum(map(len, message))
            progress.update(messages, size)
        elapsed = time.monotonic() - start
    finally:
        progress.done()
        if monitor is not None:
            socket.disable_monitor()
            monitor.close(linger=0)
        socket.close(linger=0 if stop.requested else args.linger)
        context.term()
    print(f"Replayed {messages} messages ({parts} parts, {megabytes(size)}) from "
          f"{args.folder} in {elapsed:.3f} s.", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run("m_replay", lambda: _main(args))


if __name__ == "__main__":
    sys.exit(main())
