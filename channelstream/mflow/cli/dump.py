"""m_dump: write a stream to files, or to the screen (mflow's tool).

Usage: ``m_dump source [folder] [-m pull|sub] [-s N]``

Connects to ``source`` (binds for ``tcp://*:port``). With a folder, each
part of each message goes to ``folder/{message:06d}_{part:03d}.raw`` (see
:mod:`channelstream.mflow.dumpfiles`: names keep sorting past 999,999), the
folder being created if needed; a folder that already holds a dump is
refused (mflow overwrote it part by part, mixing two dumps). Without a
folder, each part is printed: its number, size and content (JSON as text,
anything else as a bytes literal cut at 200 bytes).

``-s N`` keeps only parts whose 1-based number is below N (mflow's "skip
sub-messages starting from this number"); the others are still received.

Each message is written whole before Ctrl-C is looked at; then a summary
line is printed. On a terminal, a progress line shows messages and bytes.
"""

from __future__ import annotations

import argparse
import os
import sys

import zmq

from ..dumpfiles import count_parts, part_name
from ..split import conn_type_for
from ..stream import PULL, SUB, connect
from ._common import TICK_MS, Progress, Stop, megabytes, run

_SHOW = 200


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="m_dump", description="Stream dump utility")
    p.add_argument("source", help='Source address - format "tcp://<address>:<port>"')
    p.add_argument("folder", nargs="?", default=None, help="Destination folder")
    p.add_argument("-m", "--mode", default="pull", choices=["pull", "sub"],
                   help="Communication mode - either pull (default) or sub")
    p.add_argument("-s", "--skip", default=None, type=int,
                   help="Skip sub-messages starting from this number (including number)")
    return p


def _show(message: int, part: int, data: bytes) -> str:
    text = None
    if data[:1] in (b"{", b"["):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    if text is None or len(data) > 4 * _SHOW:
        text = repr(data[:_SHOW]) + (" ..." if len(data) > _SHOW else "")
    return f"[{message} {part}] {len(data)} bytes: {text}"


def _main(args: argparse.Namespace) -> int:
    folder = args.folder
    if args.skip is not None and args.skip < 0:
        raise ValueError("--skip must be >= 0")
    if folder is not None:
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise ValueError(f"{folder} is not a folder")
        existing = count_parts(folder)
        if existing:
            raise ValueError(f"{folder} already holds a dump ({existing} .raw files); "
                             "choose another folder")
        os.makedirs(folder, exist_ok=True)
    stop = Stop()
    stream = connect(args.source, conn_type=conn_type_for(args.source),
                     mode=SUB if args.mode == "sub" else PULL, receive_timeout=TICK_MS)
    print(f"Dumping {args.source} to {folder if folder is not None else 'the screen'}",
          flush=True)
    keep = args.skip - 1 if args.skip else None  # 0: keep all, as mflow
    progress = Progress()
    messages = parts = files = size = 0
    recv = stream.socket.recv_multipart
    try:
        while not stop.requested:
            try:
                frames = recv()
            except zmq.Again:
                continue
            for number, data in enumerate(frames):
                size += len(data)
                if keep is not None and number >= keep:
                    continue
                if folder is None:
                    print(_show(messages, number, data))
                else:
                    with open(os.path.join(folder, part_name(messages, number)), "wb") as f:
                        f.write(data)
                files += 1
            messages += 1
            parts += len(frames)
            progress.update(messages, size)
    finally:
        stream.disconnect()
        progress.done()
    where = f"to {folder}" if folder is not None else "to the screen"
    print(f"Dumped {messages} messages ({parts} parts, {megabytes(size)}; {files} parts "
          f"written) {where}.", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run("m_dump", lambda: _main(args))


if __name__ == "__main__":
    sys.exit(main())
