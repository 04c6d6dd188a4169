"""socket.io fan-out of the real server: deliveries/s, POST-to-receive latency, RSS per connection.

The same measurement as ``bench/fanout_ws.py`` (whose server handling,
posters, phases and checks this script reuses), with socket.io clients of
namespace ``/stream`` instead of ``/ws`` websockets:

- the readers: ``--readers`` processes of this script (``--reader-process``),
  each a single-threaded epoll loop over raw non-blocking sockets speaking
  engine.io v4 over websocket by hand: the upgrade on
  ``/socket.io/?EIO=4&transport=websocket``, ``40/stream,{"conn_id": ...}``
  to join the namespace with a connection made by ``/connect``, ``3`` for
  each engine.io ping ``2``; each ``42/stream,["message",[...]]`` event is
  counted by its ``"type":"message"`` frames, and one client in
  ``--sample-every`` decodes every event (offsets, latency);
- the server: ``pserve`` on a temporary copy of development.ini (local bus,
  access log on), or ``--url``/``--pid``;
- the posters: signed keep-alive clients in this process.

Each fan-out run also reports the server's ``direct_writes`` and
``queued_writes`` (``/healthz``): batches written straight to the websockets
and through engine.io's queue during the run.

Phases: ``fanout`` (``--clients`` on one channel, ``--batches`` messages per
POST, flat out then paced at ``--paced-fraction``), ``single`` (one message
per POST to ``--single-listeners``), ``memory`` (RSS per idle socket.io
connection over ``--idle-conns``).

Usage: python bench/fanout_socketio.py [--clients 1000] [--batches 10,50]
       [--single-listeners 100] [--posters 4] [--duration 8] [--idle-conns 5000]
       [--phases fanout,single,memory] [--json]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import socket
import sys
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fanout_ws
from _support import ReaderProcs, raise_nofile

READER_FLAG = "--reader-process"
NAMESPACE = b"/stream"
EVENT = b"42" + NAMESPACE + b","
MESSAGE_EVENT = EVENT + b'["message",'
CONNECTED = b"40" + NAMESPACE + b","
REFUSED = b"44" + NAMESPACE + b","
PONG = fanout_ws._masked_frame(0x1, b"3")


class SioReader(fanout_ws.Reader):
    """The websocket reader of fanout_ws, speaking engine.io/socket.io on top."""

    def reset(self) -> None:
        super().reset()
        self.pings = 0
        self.refused = 0

    def stats(self, latencies: bool) -> dict[str, Any]:
        result = super().stats(latencies)
        result["heartbeats"] = self.pings  # engine.io pings answered
        if self.refused:
            self.server_closes["namespace refused"] = self.refused
        return result

    def _on_writable(self, conn: fanout_ws._Conn) -> None:
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._open_failed(conn, f"connect: {os.strerror(err)}")
            return
        op = self.opening
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
            f"Host: {op['host']}:{op['port']}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        try:
            conn.sock.send(request)
        except OSError as exc:
            self._open_failed(conn, f"send handshake: {exc}")
            return
        conn.state = fanout_ws.HANDSHAKE
        self.ep.modify(conn.fd, select.EPOLLIN)

    def _on_handshake(self, conn: fanout_ws._Conn, data: bytes) -> None:
        super()._on_handshake(conn, data)
        if conn.state == fanout_ws.OPEN:
            auth = json.dumps({"conn_id": conn.conn_id}).encode()
            try:
                conn.sock.send(fanout_ws._masked_frame(0x1, CONNECTED + auth))
            except OSError as exc:
                self._error(f"namespace connect: {exc}")

    def _on_data(self, conn: fanout_ws._Conn, data: bytes, now_ns: int) -> None:
        if conn.buf:
            data = conn.buf + data
        n = len(data)
        pos = 0
        messages = frames = 0
        while n - pos >= 2:
            length = data[pos + 1] & 0x7F
            header = 2
            if length == 126:
                if n - pos < 4:
                    break
                length, header = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, header = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
            start, end = pos + header, pos + header + length
            if end > n:
                break
            opcode = data[pos] & 0x0F
            frames += 1
            pos = end
            if opcode == 0x8:
                self.server_closes["websocket close"] = (
                    self.server_closes.get("websocket close", 0) + 1
                )
                self._drop(conn)
                break
            if opcode != 0x1:
                self.other_frames += 1
            elif data.startswith(EVENT, start):
                count = data.count(fanout_ws.MESSAGE_MARK, start, end)
                messages += count
                if conn.sample and count and data.startswith(MESSAGE_EVENT, start):
                    self._sample(conn, data[start + len(MESSAGE_EVENT) : end - 1], now_ns)
            elif length == 1 and data[start] == 0x32:  # engine.io ping "2"
                self.pings += 1
                try:
                    conn.sock.send(PONG)
                except OSError as exc:
                    self._error(f"pong: {exc}")
            elif data.startswith(REFUSED, start):
                self.refused += 1
            else:
                self.other_frames += 1  # OPEN, CONNECT, join acks...
        conn.buf = data[pos:] if pos < n else b""
        self.frames += frames
        if messages:
            conn.count += messages
            self.messages += messages
            if not self.first_ns:
                self.first_ns = now_ns
            self.last_ns = now_ns


class SioBench(fanout_ws.Bench):
    """fanout_ws's bench with socket.io readers."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.readers.close()  # fanout_ws's own readers: replaced by socket.io ones
        self.readers = ReaderProcs(args.readers, __file__, READER_FLAG)

    def run_load(
        self, label: str, channel: str, clients: int, batch: int, msg_rate: float | None
    ) -> dict[str, Any]:
        """fanout_ws's run; ``--paced-deliveries`` fixes the paced run's rate."""
        if msg_rate and self.args.paced_deliveries:
            msg_rate = self.args.paced_deliveries / clients
            label = f"{label.split(' paced')[0]} paced {self.args.paced_deliveries:,}/s"
        before = self.door()
        result = super().run_load(label, channel, clients, batch, msg_rate)
        after = self.door()
        # batches written straight to the websockets vs through engine.io's queue
        for key in ("direct_writes", "queued_writes"):
            if key in after:
                result[f"server_{key}"] = after[key] - before.get(key, 0)
        return result

    def door(self) -> dict[str, Any]:
        """The server's socket.io door in /healthz ({} if it cannot be read)."""
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=10) as response:
                return json.load(response)["doors"]["socketio"]
        except (OSError, ValueError, KeyError):
            return {}


def reader_main() -> None:
    raise_nofile()
    SioReader().run()


def main() -> None:
    parser = fanout_ws.build_parser(__doc__.splitlines()[0], clients="socket.io clients",
                                    idle_conns=5000, memory_cycles=1)
    parser.add_argument("--paced-deliveries", type=int, default=0,
                        help="paced run at this many deliveries/s")
    args = fanout_ws.parse_args(parser)
    fanout_ws.run_and_report(
        SioBench(args),
        args,
        title="socket.io fan-out through the server (namespace /stream, websocket transport)",
        kind="socket.io",
    )


if __name__ == "__main__":
    if READER_FLAG in sys.argv[1:]:
        reader_main()
    else:
        main()
