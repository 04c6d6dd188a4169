"""bench/packets.py's reader process: one epoll loop over the TCP streamer
clients' raw sockets, lines counted; one client in ``--sample-every`` also reads
each line's ``t`` and ``seq`` for latency and order. Run by bench/packets.py as
``packets.py --reader-process`` (commands are JSON lines on stdin)."""

from __future__ import annotations

import json
import os
import random
import re
import resource
import select
import socket
import time
from typing import Any

from _support import CommandReader

# ----------------------------------------------------------------------------------------
# The reader process: one epoll loop, raw sockets, lines counted.
# ----------------------------------------------------------------------------------------

RECV_SIZE = 262144
LATENCY_CAP = 200_000  # latency samples kept per reader per run (reservoir)
#: The head of each packet line as the server writes it (compact JSON, keys in order).
LINE_HEAD = re.compile(rb'\{"t":(\d+),"pub":(\d+),"seq":(\d+),"profile_id":"([^"]*)"')


class _Client:
    __slots__ = ("index", "sock", "fd", "sample", "lines", "carry", "last_seq", "first",
                 "open")

    def __init__(self, index: int, sock: socket.socket, sample: bool) -> None:
        self.index = index
        self.sock = sock
        self.fd = sock.fileno()
        self.sample = sample
        self.lines = 0
        self.carry = b""
        self.last_seq: dict[tuple[bytes, bytes], int] = {}
        self.first = True
        self.open = True


class Reader(CommandReader):
    """The epoll loop of one reader process; commands are JSON lines on stdin."""

    def __init__(self) -> None:
        self.ep = select.epoll()
        self.clients: dict[int, _Client] = {}
        self.stdin_buf = b""
        self.running = True
        self.reset()

    def reset(self) -> None:
        self.lines = 0
        self.bytes = 0
        self.reads = 0
        self.first_ns = 0
        self.last_ns = 0
        self.latencies: list[int] = []
        self.lat_seen = 0
        self.gaps = 0
        self.dups = 0
        self.eofs = 0
        self.errors = 0
        self.error_samples: list[str] = []
        for client in self.clients.values():
            client.lines = 0
            client.last_seq.clear()  # each run's publishers count from 0 again

    def stats(self, latencies: bool) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result = {
            "open": sum(1 for c in self.clients.values() if c.open),
            "lines": self.lines,
            "bytes": self.bytes,
            "reads": self.reads,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "per_client": {str(c.index): c.lines for c in self.clients.values()},
            "gaps": self.gaps,
            "dups": self.dups,
            "eofs": self.eofs,
            "errors": self.errors,
            "error_samples": self.error_samples[:5],
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "latency_samples": self.lat_seen,
        }
        if latencies:
            result["latencies_us"] = self.latencies
        return result

    def open_clients(self, host: str, port: int, clients: list[dict[str, Any]]) -> dict[str, Any]:
        opened = failed = 0
        errors: list[str] = []
        started = time.monotonic()
        for spec in clients:
            try:
                sock = socket.create_connection((host, port), timeout=10)
                sock.sendall(json.dumps(spec["query"], separators=(",", ":")).encode() + b"\n")
                sock.setblocking(False)
            except OSError as exc:
                failed += 1
                if len(errors) < 5:
                    errors.append(f"client {spec['index']}: {exc}")
                continue
            client = _Client(spec["index"], sock, bool(spec.get("sample")))
            self.clients[client.fd] = client
            self.ep.register(client.fd, select.EPOLLIN)
            opened += 1
        return {"opened": opened, "failed": failed, "errors": errors,
                "seconds": round(time.monotonic() - started, 3)}

    def _drop(self, client: _Client) -> None:
        client.open = False
        if self.clients.pop(client.fd, None) is not None:
            try:
                self.ep.unregister(client.fd)
            except OSError:
                pass
        client.sock.close()

    def close_all(self) -> int:
        count = 0
        for client in list(self.clients.values()):
            count += client.open
            self._drop(client)
        return count

    def _on_data(self, client: _Client, data: bytes, now_ns: int) -> None:
        if client.first:
            client.first = False
            if data.startswith(b'{"error"'):
                self._error(f"client {client.index}: " + data.split(b"\n", 1)[0].decode(
                    "utf-8", "replace")[:200])
        count = data.count(b"\n")
        if count:
            client.lines += count
            self.lines += count
            if not self.first_ns:
                self.first_ns = now_ns
            self.last_ns = now_ns
        if client.sample:
            self._sample(client, data, now_ns)

    def _sample(self, client: _Client, data: bytes, now_ns: int) -> None:
        if client.carry:
            data = client.carry + data
        end = data.rfind(b"\n") + 1
        client.carry = data[end:]
        last_seq = client.last_seq
        for match in LINE_HEAD.finditer(data, 0, end):
            value = (now_ns - int(match.group(1))) // 1000
            self.lat_seen += 1
            if len(self.latencies) < LATENCY_CAP:
                self.latencies.append(value)
            else:
                j = random.randrange(self.lat_seen)
                if j < LATENCY_CAP:
                    self.latencies[j] = value
            key = (match.group(2), match.group(4))
            seq = int(match.group(3))
            last = last_seq.get(key)
            if last is not None:
                if seq > last + 1:
                    self.gaps += seq - last - 1
                elif seq <= last:
                    self.dups += 1
            last_seq[key] = seq

    # -- the loop -------------------------------------------------------------------------

    def _open(self, cmd: dict[str, Any]) -> None:
        self._reply(self.open_clients(cmd["host"], cmd["port"], cmd["clients"]))

    def run(self) -> None:
        os.set_blocking(0, False)
        self.ep.register(0, select.EPOLLIN)
        clients = self.clients
        while self.running:
            for fd, _event in self.ep.poll(-1, 1024):
                if fd == 0:
                    self._on_stdin()
                    continue
                client = clients.get(fd)
                if client is None:
                    continue
                try:
                    data = client.sock.recv(RECV_SIZE)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    self._error(f"client {client.index} recv: {exc}")
                    self._drop(client)
                    continue
                if not data:
                    self.eofs += 1
                    self._drop(client)
                    continue
                self.bytes += len(data)
                self.reads += 1
                self._on_data(client, data, time.time_ns())


def reader_main() -> None:
    Reader().run()
