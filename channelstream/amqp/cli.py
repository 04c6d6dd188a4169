"""``gatd-publish``: publish GATD packets to the streamer exchange from a shell.

::

    gatd-publish --url amqp://guest:guest@127.0.0.1:5672/ '{"profile_id": "x1", "temperature": 70}'
    sensor-reader | gatd-publish --exchange streamer_exchange     # NDJSON on stdin

Packets are the arguments (one JSON object each) or, without arguments, the
lines of stdin (NDJSON; blank lines are skipped), each published as soon as
its line arrives, with its scalar fields as AMQP headers
(:class:`~channelstream.amqp.publisher.PacketPublisher`). ``--url``
defaults to ``$CHANNELSTREAM_AMQP_URL``, else RabbitMQ's local default.

Exit status: 0 when every packet was published; 1 when the broker is
unreachable or refuses (at once, with a message naming the broker without
its password) or when some input was not a packet (each reported with its
line number and skipped); 2 for a bad command line (a bad URL, say).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..packets import BadPacket
from .broker import BadBrokerUrl
from .ingest import decode_packet
from .publisher import PacketPublisher, PublishError

PROG = "gatd-publish"
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
URL_ENV = "CHANNELSTREAM_AMQP_URL"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Publish GATD packets (JSON objects) to the streamer exchange, each with "
        "its scalar fields as AMQP headers. Packets are the arguments, else the lines of "
        "stdin (NDJSON).",
    )
    parser.add_argument(
        "packets", nargs="*", metavar="PACKET", help="a packet as a JSON object (default: stdin)"
    )
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV) or DEFAULT_URL,
        help=f"broker URL (default: ${URL_ENV}, else amqp://guest:***@127.0.0.1:5672/)",
    )
    parser.add_argument(
        "--exchange", default="streamer_exchange", help="headers exchange (default: %(default)s)"
    )
    parser.add_argument(
        "--no-confirm",
        action="store_true",
        help="do not wait for the broker to confirm each packet (faster, less safe)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    return parser


def _inputs(arguments: Sequence[str], stdin: Iterable[bytes]) -> Iterator[tuple[str, bytes]]:
    """(where, text) of each packet to publish: an argument or a non-blank stdin line."""
    if arguments:
        for index, text in enumerate(arguments, 1):
            yield f"argument {index}", text.encode("utf-8", "surrogateescape")
        return
    for number, line in enumerate(stdin, 1):
        if line.strip():
            yield f"line {number}", line.strip()


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None, stdin: Iterable[bytes] | None = None) -> int:
    """Run the command; return its exit status (see the module doc)."""
    options = _parser().parse_args(argv)
    # pika logs each failed connection at ERROR with a traceback; we say it in one line.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    try:
        publisher = PacketPublisher(options.url, options.exchange, confirm=not options.no_confirm)
    except BadBrokerUrl as err:
        _say(f"bad --url: {err}")
        return 2
    published = bad = 0
    try:
        publisher.connect()
        lines = stdin if stdin is not None else sys.stdin.buffer
        for where, text in _inputs(options.packets, lines):
            try:
                packet: Any = decode_packet(text)
            except BadPacket as err:
                bad += 1
                _say(f"{where}: skipped: {err}")
                continue
            publisher.publish(packet)
            published += 1
    except PublishError as err:
        _say(str(err))
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        publisher.close()
    if not options.quiet:
        _say(
            f"published {published} packet{'s' if published != 1 else ''} to exchange "
            f"{options.exchange!r} at {publisher.broker}"
        )
    return 1 if bad else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
