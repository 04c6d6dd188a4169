"""``loom-stream`` and ``loom-cat``: a producer and a reader for the command line.

``loom-stream URL ID [--force] [--token T] [--metadata JSON]`` streams its
standard input to ``URL/stream/ID`` in real time: each read of stdin (as
soon as anything arrives) goes out as one HTTP chunk. It waits for the
server's ``201`` before sending anything, and exits non-zero printing the
server's error (``409`` when the id is taken without ``--force``, ``401``,
``400``...) or the connection failure. Exit 0 means the server has stored
everything (its response ended after the last byte).

``loom-cat URL ID [--token T] [--notail]`` writes the stream to stdout as it
arrives and ends when the producer does; it exits 1 if the stream ended
aborted (its producer vanished), saying so on stderr.

The token may also come from the environment variable ``LOOM_TOKEN``, which
keeps it out of process listings; it is only ever sent in the
``Authorization`` header. Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import select
import socket
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

#: Largest read of stdin (one HTTP chunk).
READ_SIZE = 256 * 1024


class CliError(Exception):
    """A failure to report on stderr; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _connect(url: str, timeout: float | None) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"not an http(s) URL: {url!r}", 2)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname, parts.port, timeout=timeout)
    return conn, parts.path.rstrip("/")


def _headers(token: str | None) -> dict[str, str]:
    token = token or os.environ.get("LOOM_TOKEN") or None
    return {"Authorization": f"Bearer {token}"} if token else {}


def _error(response: http.client.HTTPResponse) -> CliError:
    body = response.read(65536)
    try:
        message = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace").strip() or response.reason
    return CliError(f"{response.status} {response.reason}: {message}")


# -- loom-stream ---------------------------------------------------------------------------


def stream(
    url: str,
    stream_id: str,
    source: int,
    *,
    force: bool = False,
    token: str | None = None,
    metadata: str | None = None,
) -> str:
    """Upload everything readable from file descriptor ``source``; return the stream id.

    :raises CliError: the server refused the stream, or the connection failed.
    """
    if metadata is not None:
        try:
            json.loads(metadata)
        except ValueError as err:
            raise CliError(f"--metadata is not valid JSON: {err}", 2) from None
    conn, prefix = _connect(url, timeout=None)
    path = f"{prefix}/stream/{quote(stream_id, safe='')}" + ("?force=true" if force else "")
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in _headers(token).items():
            conn.putheader(name, value)
        if metadata is not None:
            conn.putheader("X-Stream-Metadata", metadata)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        response = conn.getresponse()  # the server answers before reading the body
        if response.status != 201:
            if conn.sock is not None:  # the server kept the connection: end the (empty)
                try:  # body, a clean request
                    conn.sock.sendall(b"0\r\n\r\n")
                except OSError:
                    pass
            raise _error(response)
        created = response.getheader("X-Stream-Id") or stream_id
        sock = conn.sock
        try:
            while True:
                data = os.read(source, READ_SIZE)
                if not data:
                    break
                if _readable(sock):  # the server spoke before the end: it gave up on us
                    break
                sock.sendall(b"%x\r\n%b\r\n" % (len(data), data))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server closed first: its answer says why
        # the answer ends when the server has stored the last byte; its trailer
        # (our server's) says how the stream ended
        with open(os.devnull, "wb") as devnull:
            trailers = _copy_chunked(response.fp, devnull.fileno())
        state = trailers.get("x-stream-state", "finished")
        if state != "finished":
            raise CliError(
                f"the server ended stream {created} as {state}; "
                f"GET {prefix}/streams/{created} says why"
            )
        return created
    except (OSError, http.client.HTTPException) as err:
        raise CliError(f"connection to {url} failed: {err}") from None
    finally:
        conn.close()


def _readable(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def stream_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``loom-stream``."""
    parser = argparse.ArgumentParser(
        prog="loom-stream", description="Stream standard input to a loom server in real time."
    )
    parser.add_argument("url", help="the server, e.g. http://localhost:8000")
    parser.add_argument("id", help="the stream id")
    parser.add_argument("--force", action="store_true", help="replace a stream with that id")
    parser.add_argument("--token", help="bearer token (or the environment variable LOOM_TOKEN)")
    parser.add_argument("--metadata", help="JSON metadata of the stream")
    args = parser.parse_args(argv)
    try:
        stream(
            args.url,
            args.id,
            sys.stdin.fileno(),
            force=args.force,
            token=args.token,
            metadata=args.metadata,
        )
    except CliError as err:
        print(f"loom-stream: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130
    return 0


# -- loom-cat ------------------------------------------------------------------------------


def cat(url: str, stream_id: str, sink: int, *, token: str | None = None, notail: bool = False):
    """Write the stream to file descriptor ``sink`` until it ends; return its final state.

    :raises CliError: the server refused, or the connection failed.
    """
    conn, prefix = _connect(url, timeout=None)
    quoted = quote(stream_id, safe="")
    path = f"{prefix}/stream/{quoted}" + ("?notail" if notail else "")
    try:
        conn.request("GET", path, headers=_headers(token))
        response = conn.getresponse()
        if response.status != 200:
            raise _error(response)
        state = response.getheader("X-Stream-State", "")
        if not response.chunked:  # Content-Length: the stream had ended
            while data := response.read1(READ_SIZE):
                _write(sink, data)
            return state
        trailers = _copy_chunked(response.fp, sink)  # a live tail: its trailer says how it ended
        if "x-stream-state" in trailers:
            return trailers["x-stream-state"]
        response.close()  # a server without trailers: ask
        conn.request("GET", f"{prefix}/streams/{quoted}", headers=_headers(token))
        info = conn.getresponse()
        if info.status != 200:
            raise _error(info)
        return json.loads(info.read()).get("state", "")
    except (OSError, http.client.HTTPException, ValueError) as err:
        if isinstance(err, BrokenPipeError):
            raise
        raise CliError(f"connection to {url} failed: {err!r}") from None
    finally:
        conn.close()


def _write(sink: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(sink, view) :]


def _copy_chunked(fp: Any, sink: int) -> dict[str, str]:
    """Copy a chunked body from ``fp`` to ``sink`` as it comes; return its trailers.

    :raises http.client.IncompleteRead: the connection ended before the last chunk.
    """
    while True:
        line = fp.readline(1024)
        if not line.endswith(b"\n"):
            raise http.client.IncompleteRead(line)
        size = int(line.split(b";", 1)[0].strip() or b"x", 16)
        if size == 0:
            break
        while size:
            data = fp.read1(min(size, READ_SIZE))
            if not data:
                raise http.client.IncompleteRead(b"")
            _write(sink, data)
            size -= len(data)
        if fp.readline(16) not in (b"\r\n", b"\n"):
            raise http.client.IncompleteRead(b"")
    trailers: dict[str, str] = {}
    while (line := fp.readline(8192)) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        trailers[name.strip().lower()] = value.strip()
    return trailers


def cat_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``loom-cat``."""
    parser = argparse.ArgumentParser(
        prog="loom-cat", description="Write a loom stream to standard output, following it live."
    )
    parser.add_argument("url", help="the server, e.g. http://localhost:8000")
    parser.add_argument("id", help="the stream id")
    parser.add_argument("--token", help="bearer token (or the environment variable LOOM_TOKEN)")
    parser.add_argument("--notail", action="store_true", help="only what is stored now")
    args = parser.parse_args(argv)
    try:
        state = cat(args.url, args.id, sys.stdout.fileno(), token=args.token, notail=args.notail)
    except CliError as err:
        print(f"loom-cat: {err}", file=sys.stderr)
        return err.code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    if state == "aborted":
        print(
            f"loom-cat: stream {args.id} was aborted (its producer did not finish)", file=sys.stderr
        )
        return 1
    return 0
