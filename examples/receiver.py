#!/usr/bin/env python3
"""Receive GATD packets from the TCP streamer and print them as they arrive.

The GATD seed's ``receiver`` example, for this server. Standard library
only; run it with any Python 3.10+::

    python examples/receiver.py                                   # every packet, live
    python examples/receiver.py '{"profile_id": "abcdefghij"}'    # only that profile
    python examples/receiver.py '{"temperature": 70, "time": 300000}' --port 22500
    python examples/receiver.py '{}' | jq .                       # one JSON object a line

The query is a JSON object: every key/value pair must equal the packet's
field (any key); ``time`` starts that many milliseconds in the past (the
last 5 minutes above), then goes on live. Each packet is printed as the one
line of JSON the server sent, flushed at once (fit for pipes).

Exit status: 0 after Ctrl-C (or when stdout closes), 1 when the server
closes the connection, 2 when the server refuses the query (its ``error``
line goes to stderr) or cannot be reached. A refusal is the first line
being exactly ``{"error": "..."}``, followed by the end of the connection.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "query",
        nargs="?",
        default="{}",
        help='JSON object of key/value pairs, plus "time" in ms (default: {} = every packet)',
    )
    parser.add_argument("--host", default="127.0.0.1", help="streamer host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=22500, help="streamer port (default 22500)")
    args = parser.parse_args(argv)
    try:
        query = json.loads(args.query)
    except ValueError as err:
        parser.error(f"the query is not JSON: {err}")
    if not isinstance(query, dict):
        parser.error('the query must be a JSON object, e.g. {"profile_id": "abcdefghij"}')
    args.query = query
    return args


def refusal(line: bytes) -> str | None:
    """The server's message if ``line`` (the first one) is its error line."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if isinstance(value, dict) and list(value) == ["error"] and isinstance(value["error"], str):
        return value["error"]
    return None


def receive(host: str, port: int, query: dict) -> int:
    """Send ``query``, print each packet line; return the exit status."""
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError as err:
        print(f"receiver: cannot connect to {host}:{port}: {err}", file=sys.stderr)
        return 2
    with sock:
        sock.settimeout(None)  # packets may be far apart
        sock.sendall(json.dumps(query).encode() + b"\n")
        # Keep our sending side open: the server ends the session at our EOF.
        stream = sock.makefile("rb")
        first = True
        for line in stream:
            if first:
                first = False
                message = refusal(line)
                if message is not None:
                    print(f"receiver: the server refused the query: {message}", file=sys.stderr)
                    return 2
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
    if query.get("_history_only") is True:
        return 0  # the window was sent: the server ends a history-only query so
    print("receiver: the server closed the connection", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return receive(args.host, args.port, args.query)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # piped into `head`, which has had enough
        # Python flushes stdout at exit: point it at /dev/null so that
        # flush does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
