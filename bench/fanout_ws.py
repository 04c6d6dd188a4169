"""Websocket fan-out of the real server: deliveries/s, POST-to-receive latency, RSS per connection.

Everything runs on 127.0.0.1 of this machine, as separate processes:

- the server: ``pserve`` on a temporary copy of development.ini (local bus),
  started here (or an already running one: ``--url`` and ``--pid``);
- the websocket readers: ``--readers`` processes of this same script
  (``--reader-process``), each a single-threaded epoll loop over raw
  non-blocking sockets (no gevent, no websocket library): it does the
  handshake, parses the server's unmasked frames, and counts the messages
  of a frame by counting ``"type":"message"`` in its bytes. One client in
  ``--sample-every`` decodes its frames fully: it checks the channel
  offsets (gaps, duplicates) and takes the latency of every message;
- the posters: threads of this process, each with its own keep-alive
  signed :class:`channelstream.client.ChannelstreamClient`.

Each message body is ``{"t": <time.time_ns() before the POST>, "p": "xxx..."}``,
``--message-bytes`` long as compact JSON; the latency is the reader's
``time.time_ns()`` when the frame arrived minus ``t`` (same machine, same clock).

Phases (``--phases``, each bounded in time):

- ``fanout``: ``--clients`` websockets on one channel, messages POSTed in
  batches of each size of ``--batches`` by ``--posters`` concurrent posters,
  as fast as the server answers, for ``--duration`` seconds; then paced at
  ``--paced-fraction`` of the peak message rate for ``--duration`` seconds;
- ``single``: the same with one message per POST to ``--single-listeners``;
- ``memory``: server RSS (psutil, by pid) before and after ``--idle-conns``
  /connects without a websocket (``kib_per_connect_state``), then after
  opening a websocket on each of them and ``--idle-seconds`` of idling
  (``kib_per_websocket_own``; the sum is ``kib_per_idle_ws_conn_total``),
  then after closing them and after /disconnect; ``--memory-cycles`` repeats
  it with the same user names, so steady growth would show a leak. What
  stays after /disconnect is the users (kept ``gc_users_after``), objects
  awaiting the cyclic garbage collector, and memory the allocator keeps. A
  server started here is a fresh one for this phase.

CPU use of the server, the readers and this process is printed for every
run, so a reader can see whether the load clients saturated.

Every run checks that each client got every message (per-client counts,
offsets), and lists as ``problems`` any POST error, missing or extra
delivery, websocket closed by the server, or ERROR line in the server's log;
``machine_contended`` marks runs where other processes took CPU.

Usage: python bench/fanout_ws.py [--clients 1000] [--batches 10,50]
       [--single-listeners 100] [--posters 4] [--duration 8]
       [--idle-conns 10000] [--memory-cycles 2] [--readers 1] [--json]
       [--phases fanout,single,memory]
       [--url http://127.0.0.1:8000 --pid PID --secret S]
"""

from __future__ import annotations

import argparse
import base64
import errno
import json
import os
import random
import resource
import select
import socket
import struct
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import (
    REPO,
    CommandReader,
    CpuWatch,
    ReaderProcs,
    git_state,
    machine_info,
    mb,
    percentile,
    quiet_access_log,
    raise_nofile,
    rss_of,
)

READER_FLAG = "--reader-process"

# ----------------------------------------------------------------------------------------
# The reader process: one epoll loop, raw sockets, a minimal websocket client.
# ----------------------------------------------------------------------------------------

MESSAGE_MARK = b'"type":"message"'
RECV_SIZE = 65536
LATENCY_CAP = 200_000  # latency samples kept per reader per run (reservoir)

CONNECTING, HANDSHAKE, OPEN, CLOSED = range(4)


class _Conn:
    __slots__ = ("sock", "fd", "conn_id", "sample", "state", "buf", "count", "offsets", "started")

    def __init__(self, sock: socket.socket, conn_id: str, sample: bool) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.conn_id = conn_id
        self.sample = sample
        self.state = CONNECTING
        self.buf = b""
        self.count = 0
        self.offsets: dict[str, int] = {}
        self.started = time.monotonic()


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask; payloads here are tiny)."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


class Reader(CommandReader):
    """The epoll loop of one reader process; commands are JSON lines on stdin."""

    def __init__(self) -> None:
        self.ep = select.epoll()
        self.conns: dict[int, _Conn] = {}
        self.pending: deque[_Conn] = deque()
        self.inflight = 0
        self.opening: dict[str, Any] | None = None
        self.stdin_buf = b""
        self.running = True
        self.reset()

    # -- counters -----------------------------------------------------------------

    def reset(self) -> None:
        self.messages = 0
        self.frames = 0
        self.heartbeats = 0
        self.other_frames = 0
        self.bytes = 0
        self.first_ns = 0
        self.last_ns = 0
        self.latencies: list[int] = []
        self.lat_seen = 0
        self.gaps = 0
        self.dups = 0
        self.server_closes: dict[str, int] = {}
        self.eofs = 0
        self.errors = 0
        self.error_samples: list[str] = []
        for conn in self.conns.values():
            conn.count = 0

    def stats(self, latencies: bool) -> dict[str, Any]:
        counts = [c.count for c in self.conns.values() if c.state == OPEN]
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result = {
            "open": len(counts),
            "messages": self.messages,
            "frames": self.frames,
            "heartbeats": self.heartbeats,
            "other_frames": self.other_frames,
            "bytes": self.bytes,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "min_per_conn": min(counts) if counts else 0,
            "max_per_conn": max(counts) if counts else 0,
            "gaps": self.gaps,
            "dups": self.dups,
            "server_closes": self.server_closes,
            "eofs": self.eofs,
            "errors": self.errors,
            "error_samples": self.error_samples[:5],
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "latency_samples": self.lat_seen,
        }
        if latencies:
            result["latencies_us"] = self.latencies
        return result

    # -- connections ----------------------------------------------------------------

    def open_many(self, host: str, port: int, conn_ids: list[str], samplers: list[int],
                  concurrency: int, timeout: float) -> None:
        sample = set(samplers)
        self.opening = {"total": len(conn_ids), "opened": 0, "failed": 0, "errors": [],
                        "host": host, "port": port, "concurrency": concurrency,
                        "started": time.monotonic(), "deadline": time.monotonic() + timeout}
        for index, conn_id in enumerate(conn_ids):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            self.pending.append(_Conn(sock, conn_id, index in sample))
        self._start_pending()
        self._check_opened()

    def _start_pending(self) -> None:
        op = self.opening
        while self.pending and self.inflight < op["concurrency"]:
            conn = self.pending.popleft()
            self.inflight += 1
            conn.started = time.monotonic()
            err = conn.sock.connect_ex((op["host"], op["port"]))
            if err not in (0, errno.EINPROGRESS):
                self._open_failed(conn, f"connect: {os.strerror(err)}")
                continue
            self.conns[conn.fd] = conn
            self.ep.register(conn.fd, select.EPOLLOUT)

    def _open_failed(self, conn: _Conn, why: str) -> None:
        self.inflight -= 1
        self.opening["failed"] += 1
        if len(self.opening["errors"]) < 5:
            self.opening["errors"].append(why)
        self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        conn.state = CLOSED
        if self.conns.pop(conn.fd, None) is not None:
            try:
                self.ep.unregister(conn.fd)
            except OSError:
                pass
        conn.sock.close()

    def _check_opened(self) -> None:
        op = self.opening
        if op is None or op["opened"] + op["failed"] < op["total"]:
            return
        self.opening = None
        self._reply({"opened": op["opened"], "failed": op["failed"], "errors": op["errors"],
                     "seconds": round(time.monotonic() - op["started"], 3)})

    def _on_writable(self, conn: _Conn) -> None:
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._open_failed(conn, f"connect: {os.strerror(err)}")
            return
        op = self.opening
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws?conn_id={conn.conn_id} HTTP/1.1\r\n"
            f"Host: {op['host']}:{op['port']}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        try:
            conn.sock.send(request)  # a few hundred bytes into an empty socket buffer
        except OSError as exc:
            self._open_failed(conn, f"send handshake: {exc}")
            return
        conn.state = HANDSHAKE
        self.ep.modify(conn.fd, select.EPOLLIN)

    def _on_handshake(self, conn: _Conn, data: bytes) -> None:
        conn.buf += data
        head, sep, rest = conn.buf.partition(b"\r\n\r\n")
        if not sep:
            if len(conn.buf) > 16384:
                self._open_failed(conn, "handshake: response headers too long")
            return
        if not head.startswith(b"HTTP/1.1 101"):
            self._open_failed(conn, "handshake: " + head.split(b"\r\n", 1)[0].decode("latin-1"))
            return
        conn.state = OPEN
        conn.buf = b""
        self.inflight -= 1
        self.opening["opened"] += 1
        if rest:
            self._on_data(conn, rest, time.time_ns())
        self._start_pending()
        self._check_opened()

    def close_all(self) -> int:
        closing = [c for c in self.conns.values() if c.state == OPEN]
        frame = _masked_frame(0x8, struct.pack("!H", 1000))
        for conn in closing:
            try:
                conn.sock.send(frame)
            except OSError:
                pass
            self._drop(conn)
        return len(closing)

    # -- frames ---------------------------------------------------------------------------

    def _on_data(self, conn: _Conn, data: bytes, now_ns: int) -> None:
        if conn.buf:
            data = conn.buf + data
        n = len(data)
        pos = 0
        messages = 0
        frames = 0
        while n - pos >= 2:
            length = data[pos + 1] & 0x7F  # server frames are unmasked
            if length < 126:
                header = 2
            elif length == 126:
                if n - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                header = 4
            else:
                if n - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2:pos + 10], "big")
                header = 10
            start = pos + header
            end = start + length
            if end > n:
                break
            opcode = data[pos] & 0x0F
            frames += 1
            if opcode == 0x1:
                if length == 2:
                    self.heartbeats += 1  # "[]"
                else:
                    count = data.count(MESSAGE_MARK, start, end)
                    messages += count
                    if conn.sample and count:
                        self._sample(conn, data[start:end], now_ns)
            elif opcode == 0x8:
                code = struct.unpack("!H", data[start:start + 2])[0] if length >= 2 else 1005
                reason = data[start + 2:end].decode("utf-8", "replace")
                key = f"{code} {reason}".strip()
                self.server_closes[key] = self.server_closes.get(key, 0) + 1
                self._drop(conn)
                break
            elif opcode == 0x9:
                try:
                    conn.sock.send(_masked_frame(0xA, data[start:end][:125]))
                except OSError:
                    pass
                self.other_frames += 1
            else:
                self.other_frames += 1
            pos = end
        conn.buf = data[pos:] if pos < n else b""
        self.frames += frames
        if messages:
            conn.count += messages
            self.messages += messages
            if not self.first_ns:
                self.first_ns = now_ns
            self.last_ns = now_ns

    def _sample(self, conn: _Conn, payload: bytes, now_ns: int) -> None:
        for frame in json.loads(payload):
            if frame.get("type") != "message":
                continue
            body = frame.get("message")
            if isinstance(body, dict) and isinstance(body.get("t"), int):
                value = (now_ns - body["t"]) // 1000
                self.lat_seen += 1
                if len(self.latencies) < LATENCY_CAP:
                    self.latencies.append(value)
                else:
                    j = random.randrange(self.lat_seen)
                    if j < LATENCY_CAP:
                        self.latencies[j] = value
            offset = frame.get("offset")
            if isinstance(offset, int):
                channel = frame.get("channel") or ""
                last = conn.offsets.get(channel)
                if last is not None:
                    if offset > last + 1:
                        self.gaps += offset - last - 1
                    elif offset <= last:
                        self.dups += 1
                conn.offsets[channel] = offset

    # -- the loop ---------------------------------------------------------------------------

    def _open(self, cmd: dict[str, Any]) -> None:
        self.open_many(cmd["host"], cmd["port"], cmd["conn_ids"], cmd.get("samplers", []),
                       cmd.get("concurrency", 200), cmd.get("timeout", 120.0))

    def run(self) -> None:
        os.set_blocking(0, False)
        self.ep.register(0, select.EPOLLIN)
        conns = self.conns
        while self.running:
            events = self.ep.poll(0.5 if self.opening else -1, 1024)
            for fd, _event in events:
                if fd == 0:
                    self._on_stdin()
                    continue
                conn = conns.get(fd)
                if conn is None:
                    continue
                if conn.state == OPEN:
                    try:
                        data = conn.sock.recv(RECV_SIZE)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        self._error(f"recv: {exc}")
                        self._drop(conn)
                        continue
                    if not data:
                        self.eofs += 1
                        self._drop(conn)
                        continue
                    self.bytes += len(data)
                    self._on_data(conn, data, time.time_ns())
                elif conn.state == CONNECTING:
                    self._on_writable(conn)
                elif conn.state == HANDSHAKE:
                    try:
                        data = conn.sock.recv(RECV_SIZE)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        self._open_failed(conn, f"handshake recv: {exc}")
                        continue
                    if not data:
                        self._open_failed(conn, "handshake: connection closed")
                        continue
                    self._on_handshake(conn, data)
            if self.opening is not None:
                self._expire_handshakes()

    def _expire_handshakes(self) -> None:
        now = time.monotonic()
        limit = now - 30.0
        for conn in list(self.conns.values()):
            if conn.state in (CONNECTING, HANDSHAKE) and conn.started < limit:
                self._open_failed(conn, "handshake: no answer within 30 s")
        if self.opening is not None and now > self.opening["deadline"]:
            for conn in list(self.conns.values()):  # the whole open took too long: give up
                if conn.state in (CONNECTING, HANDSHAKE):
                    self._open_failed(conn, "handshake: open timeout")
            while self.pending:
                self.inflight += 1
                self._open_failed(self.pending.popleft(), "not started: open timeout")
        self._check_opened()


def reader_main() -> None:
    raise_nofile()
    Reader().run()


# ----------------------------------------------------------------------------------------
# The bench process: server, posters, phases.
# ----------------------------------------------------------------------------------------


def resolve_pid(pid: int, port: int) -> int:
    """The process listening on ``port``: ``pid`` itself or one of its children."""
    import psutil

    proc = psutil.Process(pid)
    for candidate in [proc, *proc.children(recursive=True)]:
        try:
            conns = candidate.net_connections(kind="tcp")
        except (psutil.Error, AttributeError):
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
            return candidate.pid
    raise SystemExit(f"--pid {pid}: neither it nor a child listens on port {port}")


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.nofile = raise_nofile()
        self.tmp = tempfile.TemporaryDirectory(prefix="fanout_ws-")
        self.server = None
        self.server_log_offset = 0
        self.servers_started = 0
        if args.url:
            self.url = args.url.rstrip("/")
            self.pid = resolve_pid(args.pid, self.host_port[1]) if args.pid else None
        else:
            self._start_server()
        self.readers = ReaderProcs(args.readers, __file__, READER_FLAG)
        body_probe = json.dumps({"t": time.time_ns(), "p": ""}, separators=(",", ":"))
        self.pad = "x" * max(0, args.message_bytes - len(body_probe))
        self.results: dict[str, Any] = {}
        self.server_problems: list[str] = []

    # -- the server ---------------------------------------------------------------------

    def app_keys(self) -> dict[str, str]:
        from tests.support.api import ADMIN_SECRET, SECRET

        keys = {
            "secret": SECRET,
            "admin_secret": ADMIN_SECRET,
            "gc_conns_after": "600",  # connections without a websocket stay for the memory phase
            "client_heartbeat": "5",  # the shipped default (tests use 0.5)
        }
        if self.args.replay_cache_size:
            keys["replay_cache_size"] = str(self.args.replay_cache_size)
        return keys

    def _start_server(self) -> None:
        from tests.support.server import RunningServer

        self.servers_started += 1
        folder = Path(self.tmp.name) / f"server{self.servers_started}"
        folder.mkdir()
        server = RunningServer(REPO / "development.ini", folder, app=self.app_keys())
        if not self.args.access_log:
            quiet_access_log(server.ini)
        server.start()
        self.server = server
        self.server_log_offset = 0
        self.url = server.url
        self.pid = server.process.pid

    def restart_server(self) -> None:
        self.check_server_log()
        self.server.stop()
        self._start_server()

    def stop(self) -> None:
        self.readers.close()
        if self.server is not None:
            self.check_server_log()
            code = self.server.stop()
            if code != 0:
                self.server_problems.append(f"server exit status {code}")
        self.tmp.cleanup()

    def check_server_log(self) -> list[str]:
        """ERROR/CRITICAL lines and tracebacks the server wrote since the last check."""
        if self.server is None:
            return []
        text = self.server.stderr
        new, self.server_log_offset = text[self.server_log_offset:], len(text)
        bad = [
            line for line in new.splitlines()
            if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")
        ]
        self.server_problems.extend(bad[:10])
        if self.server.returncode is not None:
            self.server_problems.append(f"server exited with {self.server.returncode}")
        return bad

    @property
    def host_port(self) -> tuple[str, int]:
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return parts.hostname, parts.port or 80

    def client(self):
        from channelstream.client import ChannelstreamClient

        return ChannelstreamClient(self.url, self.args.secret, timeout=30,
                                   admin_secret=self.args.admin_secret)

    def hub_counters(self) -> dict[str, int] | None:
        """The server's own counters (``/admin/admin.json``), or None if unavailable."""
        if not self.args.admin_secret:
            return None
        try:
            with self.client() as api:
                stats = api.admin_stats()
            hub = stats["hub"]
            return {"delivered": hub["delivered"], "dropped": hub["dropped"],
                    "slow_disconnects": stats.get("slow_disconnects", 0)}
        except Exception:
            return None

    # -- connections ------------------------------------------------------------------------

    def connect_many(self, count: int, channel: str, prefix: str) -> tuple[list[str], float]:
        """``count`` /connects over ``--connect-concurrency`` keep-alive connections."""
        ids: list[str | None] = [None] * count
        errors: list[str] = []
        workers = min(self.args.connect_concurrency, count) or 1

        deadline = time.monotonic() + self.args.connect_timeout

        def work(first: int) -> None:
            with self.client() as api:
                for i in range(first, count, workers):
                    if time.monotonic() > deadline:
                        errors.append(f"/connect: not done within {self.args.connect_timeout} s")
                        return
                    try:
                        answer = api.connect(
                            f"{prefix}{i}",
                            [channel],
                            info={"include_users": False, "include_history": False},
                        )
                        ids[i] = answer["conn_id"]
                    except Exception as exc:
                        errors.append(f"/connect: {exc!r}")

        started = time.monotonic()
        self._threads(work, range(workers))
        elapsed = time.monotonic() - started
        if errors:
            raise RuntimeError(f"{len(errors)} /connect calls failed, first: {errors[0]}")
        return [i for i in ids if i], elapsed

    def disconnect_many(self, conn_ids: list[str]) -> float:
        workers = min(self.args.connect_concurrency, len(conn_ids)) or 1
        errors: list[str] = []

        deadline = time.monotonic() + self.args.connect_timeout

        def work(first: int) -> None:
            with self.client() as api:
                for conn_id in conn_ids[first::workers]:
                    if time.monotonic() > deadline:
                        errors.append(f"/disconnect: not done within {self.args.connect_timeout} s")
                        return
                    try:
                        api.disconnect(conn_id)
                    except Exception as exc:
                        errors.append(repr(exc))

        started = time.monotonic()
        self._threads(work, range(workers))
        if errors:
            self.server_problems.append(f"{len(errors)} /disconnect failed, first: {errors[0]}")
        return time.monotonic() - started

    @staticmethod
    def _threads(target, items) -> None:
        threads = [threading.Thread(target=target, args=(item,), daemon=True) for item in items]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def open_websockets(self, conn_ids: list[str], sample_every: int) -> dict[str, Any]:
        host, port = self.host_port
        parts: list[list[str]] = [[] for _ in self.readers.procs]
        samplers: list[list[int]] = [[] for _ in self.readers.procs]
        for index, conn_id in enumerate(conn_ids):
            which = index % len(parts)
            if sample_every and index % sample_every == 0:
                samplers[which].append(len(parts[which]))
            parts[which].append(conn_id)
        answers = self.readers.each([
            {"cmd": "open", "host": host, "port": port, "conn_ids": part, "samplers": sample,
             "concurrency": self.args.open_concurrency, "timeout": self.args.connect_timeout}
            for part, sample in zip(parts, samplers, strict=True)
        ])
        opened = sum(a["opened"] for a in answers)
        failed = sum(a["failed"] for a in answers)
        errors = [e for a in answers for e in a["errors"]]
        if failed:
            self.server_problems.append(
                f"{failed} of {len(conn_ids)} websocket handshakes failed, first: {errors[:3]}"
            )
        return {
            "opened": opened,
            "failed": failed,
            "seconds": max(a["seconds"] for a in answers),
            "samplers": sum(len(s) for s in samplers),
        }

    def reader_totals(self, latencies: bool = False) -> dict[str, Any]:
        stats = self.readers.all({"cmd": "stats", "latencies": latencies})
        total: dict[str, Any] = {
            key: sum(s[key] for s in stats)
            for key in ("open", "messages", "frames", "heartbeats", "other_frames", "bytes",
                        "gaps", "dups", "eofs", "errors", "latency_samples")
        }
        total["first_ns"] = min((s["first_ns"] for s in stats if s["first_ns"]), default=0)
        total["last_ns"] = max(s["last_ns"] for s in stats)
        total["min_per_conn"] = min(s["min_per_conn"] for s in stats if s["open"]) if any(
            s["open"] for s in stats) else 0
        total["max_per_conn"] = max(s["max_per_conn"] for s in stats)
        closes: dict[str, int] = {}
        for s in stats:
            for key, value in s["server_closes"].items():
                closes[key] = closes.get(key, 0) + value
        total["server_closes"] = closes
        total["error_samples"] = [e for s in stats for e in s["error_samples"]][:5]
        if latencies:
            total["latencies_us"] = sorted(v for s in stats for v in s["latencies_us"])
        return total

    def wait_delivered(self, expected: int, timeout: float) -> int:
        """Wait until the readers counted ``expected`` messages (or ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.reader_totals()["messages"]
            if got >= expected or time.monotonic() > deadline:
                return got
            time.sleep(0.1)

    # -- posting ------------------------------------------------------------------------------

    def post_run(self, channel: str, batch: int, posters: int, duration: float,
                 msg_rate: float | None) -> dict[str, Any]:
        """Post for ``duration`` s: as fast as answered, or paced at ``msg_rate`` messages/s."""
        from channelstream.client import ChannelstreamError

        lock = threading.Lock()
        totals = {"posts": 0, "messages": 0, "late_posts": 0, "max_late_ms": 0.0,
                  "post_s": 0.0}
        statuses: dict[str, int] = {}
        errors: list[str] = []
        start = time.monotonic() + 0.05
        deadline = start + duration
        interval = posters * batch / msg_rate if msg_rate else 0.0
        pad = self.pad

        def work(index: int) -> None:
            posts = messages = late = 0
            max_late = post_s = 0.0
            with self.client() as api:
                k = 0
                while True:
                    now = time.monotonic()
                    if interval:
                        target = start + (k + index / posters) * interval
                        k += 1
                        if target >= deadline:
                            break
                        if target > now:
                            time.sleep(target - now)
                        elif now - target > 0.001:
                            late += 1
                            max_late = max(max_late, now - target)
                    elif now >= deadline:
                        break
                    elif now < start:
                        time.sleep(start - now)
                    t = time.time_ns()
                    items = [{"channel": channel, "user": "poster",
                              "message": {"t": t, "p": pad}}] * batch
                    t0 = time.perf_counter()
                    try:
                        api.message(items)
                        posts += 1
                        messages += batch
                    except ChannelstreamError as exc:
                        with lock:
                            statuses[str(exc.status)] = statuses.get(str(exc.status), 0) + 1
                            if len(errors) < 5:
                                errors.append(str(exc))
                    except Exception as exc:
                        with lock:
                            statuses["exception"] = statuses.get("exception", 0) + 1
                            if len(errors) < 5:
                                errors.append(repr(exc))
                        time.sleep(0.01)
                    post_s += time.perf_counter() - t0
            with lock:
                totals["posts"] += posts
                totals["messages"] += messages
                totals["late_posts"] += late
                totals["max_late_ms"] = max(totals["max_late_ms"], max_late * 1000)
                totals["post_s"] += post_s

        self._threads(work, range(posters))
        totals["statuses"] = statuses
        totals["errors"] = errors
        totals["start_wall"] = time.time() - (time.monotonic() - start)
        totals["elapsed"] = time.monotonic() - start
        return totals

    def run_load(self, label: str, channel: str, clients: int, batch: int,
                 msg_rate: float | None) -> dict[str, Any]:
        """One timed run on connected, open clients; waits for every delivery."""
        args = self.args
        hub_before = self.hub_counters()
        self.readers.all({"cmd": "reset"})
        cpu = CpuWatch({"server": self.pid, "bench(posters)": os.getpid(),
                        **{f"reader{i}": pid for i, pid in enumerate(self.readers.pids)}})
        rss_before = rss_of(self.pid)
        posted = self.post_run(channel, batch, args.posters, args.duration, msg_rate)
        at_stop = self.reader_totals()
        expected = posted["messages"] * clients
        # Wait for the backlog: until all arrived, or no progress for 5 s (bounded).
        last_progress, last_count = time.monotonic(), at_stop["messages"]
        give_up = time.monotonic() + max(30.0, 4 * args.duration)
        totals = at_stop
        while totals["messages"] < expected and time.monotonic() < give_up:
            time.sleep(0.2)
            totals = self.reader_totals()
            if totals["messages"] != last_count:
                last_progress, last_count = time.monotonic(), totals["messages"]
            elif time.monotonic() - last_progress > 5.0:
                break
        cpu_pct = cpu.percent()
        totals = self.reader_totals(latencies=True)
        rss_after = rss_of(self.pid)
        lat = totals.pop("latencies_us")
        delivered = totals["messages"]
        span = (totals["last_ns"] / 1e9 - posted["start_wall"]) if totals["last_ns"] else 0
        result: dict[str, Any] = {
            "run": label,
            "clients": clients,
            "batch": batch,
            "posters": args.posters,
            "target_msgs_per_s": round(msg_rate) if msg_rate else "max",
            "posts": posted["posts"],
            "posts_per_s": round(posted["posts"] / posted["elapsed"], 1),
            "msgs_posted": posted["messages"],
            "msgs_per_s": round(posted["messages"] / posted["elapsed"], 1),
            "post_mean_ms": round(1000 * posted["post_s"] / max(1, posted["posts"]), 2),
            "deliveries": delivered,
            "expected": expected,
            "deliveries_per_s": round(delivered / span) if span > 0 else 0,
            "deliveries_per_s_while_posting": round(at_stop["messages"] / posted["elapsed"]),
            "backlog_at_stop": expected - at_stop["messages"],
            "drain_s": round(span - posted["elapsed"], 2) if span else None,
            "frames": totals["frames"],
            "msgs_per_frame": round(delivered / totals["frames"], 2) if totals["frames"] else 0,
            "wire_bytes_per_msg": round(totals["bytes"] / delivered, 1) if delivered else 0,
            "per_client_min_max": [totals["min_per_conn"], totals["max_per_conn"]],
            "latency_samples": totals["latency_samples"],
            "latency_p50_ms": round(percentile(lat, 0.50) / 1000, 2) if lat else None,
            "latency_p99_ms": round(percentile(lat, 0.99) / 1000, 2) if lat else None,
            "latency_max_ms": round(lat[-1] / 1000, 2) if lat else None,
            "cpu_pct_of_core": cpu_pct,
            "server_rss_mb_before_after": [mb(rss_before), mb(rss_after)],
        }
        if msg_rate:
            result["late_posts"] = posted["late_posts"]
            result["max_late_ms"] = round(posted["max_late_ms"], 1)
        problems = []
        if posted["statuses"]:
            problems.append(f"POST errors {posted['statuses']}: {posted['errors'][:3]}")
        if delivered != expected:
            problems.append(f"delivered {delivered} of {expected} expected")
        if totals["gaps"] or totals["dups"]:
            problems.append(f"offset gaps {totals['gaps']}, duplicates {totals['dups']}")
        if totals["server_closes"]:
            problems.append(f"server closed websockets: {totals['server_closes']}")
        if totals["eofs"] or totals["errors"]:
            problems.append(f"websocket EOFs {totals['eofs']}, errors {totals['errors']} "
                            f"{totals['error_samples']}")
        if totals["open"] != clients:
            problems.append(f"{totals['open']} of {clients} websockets still open")
        hub_after = self.hub_counters()
        if hub_before and hub_after:
            hub = {key: hub_after[key] - hub_before[key] for key in hub_after}
            result["server_counted"] = hub
            if hub["dropped"] or hub["slow_disconnects"]:
                problems.append(f"server dropped {hub['dropped']} messages, "
                                f"closed {hub['slow_disconnects']} slow connections")
        log_lines = self.check_server_log()
        if log_lines:
            problems.append(f"server log: {len(log_lines)} ERROR/traceback lines: {log_lines[:3]}")
        result["problems"] = problems
        readers_max = max(v for k, v in cpu_pct.items() if k.startswith("reader"))
        result["client_saturated"] = readers_max > 85 or cpu_pct.get("bench(posters)", 0) > 85
        # Other processes on the machine took CPU from this run: figures are low.
        result["machine_contended"] = cpu_pct["others"] > 15
        return result

    # -- phases ---------------------------------------------------------------------------------

    def fanout_phase(self, name: str, clients: int, batch: int) -> list[dict[str, Any]]:
        args = self.args
        channel = f"bench-{name}"
        conn_ids, connect_s = self.connect_many(clients, channel, f"{name}-u")
        opened = self.open_websockets(conn_ids, args.sample_every)
        setup = {"connect_s": round(connect_s, 2), "ws_open_s": opened["seconds"],
                 "samplers": opened["samplers"], "ws_failed": opened["failed"]}
        try:
            # Warm-up: a few POSTs, all delivered, not counted.
            self.readers.all({"cmd": "reset"})
            warm = self.post_run(channel, batch, 1, 0.3, None)
            self.wait_delivered(warm["messages"] * opened["opened"], 10.0)
            peak = self.run_load(f"{name} peak", channel, opened["opened"], batch, None)
            peak["setup"] = setup
            runs = [peak]
            fixed = args.paced_deliveries
            if fixed:  # a rate given in deliveries/s, the same for every setup
                time.sleep(0.5)
                runs.append(self.run_load(f"{name} paced at {fixed:g}/s", channel,
                                          opened["opened"], batch, fixed / clients))
            elif args.paced_fraction > 0 and peak["deliveries_per_s"] > 0:
                rate = args.paced_fraction * peak["deliveries_per_s"] / clients
                time.sleep(0.5)
                runs.append(self.run_load(f"{name} paced {args.paced_fraction:g}x", channel,
                                          opened["opened"], batch, rate))
            return runs
        finally:
            self.readers.all({"cmd": "close"})
            self.disconnect_many(conn_ids)

    def memory_phase(self) -> dict[str, Any]:
        """RSS per idle connection; ``--memory-cycles`` > 1 repeats it (same user names)."""
        args = self.args
        if self.pid is None:
            return {"skipped": "no --pid of the server: RSS unknown"}
        # Warm-up: a handful of connections through the whole cycle, not counted.
        warm, _ = self.connect_many(20, "idle", "warm-u")
        self.open_websockets(warm, 0)
        time.sleep(0.5)
        self.readers.all({"cmd": "close"})
        self.disconnect_many(warm)
        cycles = [self.memory_cycle() for _ in range(max(1, args.memory_cycles))]
        first = cycles[0]
        result = {key: value for key, value in first.items() if not key.startswith("_")}
        if len(cycles) > 1:
            result["later_cycles_rss_mb_peak_and_after_disconnects"] = [
                [c["rss_mb_after_idle"], c["rss_mb_after_disconnects"]] for c in cycles[1:]
            ]
            result["rss_mb_growth_after_cycle1"] = round(
                cycles[-1]["rss_mb_after_disconnects"] - first["rss_mb_after_disconnects"], 1)
        result["problems"] = [p for c in cycles for p in c["_problems"]]
        return result

    def memory_cycle(self) -> dict[str, Any]:
        args = self.args
        count = args.idle_conns
        time.sleep(args.settle)
        rss0 = rss_of(self.pid)
        conn_ids, connect_s = self.connect_many(count, "idle", "idle-u")
        time.sleep(args.settle)
        rss1 = rss_of(self.pid)
        try:
            opened = self.open_websockets(conn_ids, 0)
            time.sleep(args.settle)
            rss2 = rss_of(self.pid)
            self.readers.all({"cmd": "reset"})
            cpu = CpuWatch({"server": self.pid,
                            **{f"reader{i}": pid for i, pid in enumerate(self.readers.pids)}})
            time.sleep(args.idle_seconds)
            idle_cpu = cpu.percent()
            idle = self.reader_totals()
            rss3 = rss_of(self.pid)
        finally:
            closed = sum(a["closed"] for a in self.readers.all({"cmd": "close"}))
        time.sleep(args.settle)
        rss4 = rss_of(self.pid)
        disconnect_s = self.disconnect_many(conn_ids)
        time.sleep(args.settle)
        rss5 = rss_of(self.pid)
        n = len(conn_ids)
        opened_n = max(1, opened["opened"])
        problems = []
        if idle["server_closes"] or idle["eofs"] or idle["errors"]:
            problems.append(f"idle websockets lost: closes {idle['server_closes']}, "
                            f"EOFs {idle['eofs']}, errors {idle['errors']}")
        if idle["open"] != opened["opened"]:
            problems.append(f"{idle['open']} of {opened['opened']} idle websockets still open")
        if opened["failed"]:
            problems.append(f"{opened['failed']} websocket handshakes failed")
        log_lines = self.check_server_log()
        if log_lines:
            problems.append(f"server log: {len(log_lines)} ERROR/traceback lines: {log_lines[:3]}")
        return {
            "idle_conns": count,
            "connects_per_s": round(n / connect_s),
            "ws_opened": opened["opened"],
            "ws_failed": opened["failed"],
            "ws_open_per_s": round(opened["opened"] / opened["seconds"]) if opened["seconds"]
            else None,
            "rss_mb_baseline": mb(rss0),
            "rss_mb_after_connects": mb(rss1),
            "rss_mb_after_websockets": mb(rss2),
            "rss_mb_after_idle": mb(rss3),
            "rss_mb_after_ws_closed": mb(rss4),
            "rss_mb_after_disconnects": mb(rss5),
            "kib_per_connect_state": round((rss1 - rss0) / n / 1024, 2),
            "kib_per_websocket_own": round((rss3 - rss1) / opened_n / 1024, 2),
            "kib_per_idle_ws_conn_total": round((rss3 - rss0) / opened_n / 1024, 2),
            "idle_seconds": args.idle_seconds,
            "idle_heartbeats_per_s": round(idle["heartbeats"] / args.idle_seconds),
            "idle_still_open": idle["open"],
            "idle_cpu_pct_of_core": idle_cpu,
            "disconnects_per_s": round(n / disconnect_s) if disconnect_s else None,
            "ws_closed": closed,
            "_problems": problems,
        }

    def run(self) -> dict[str, Any]:
        args = self.args
        phases = [p.strip() for p in args.phases.split(",") if p.strip()]
        runs: list[dict[str, Any]] = []
        if "fanout" in phases:
            for batch in args.batches:
                runs += self.fanout_phase(f"fan{args.clients}-b{batch}", args.clients, batch)
        if "single" in phases:
            runs += self.fanout_phase(f"one{args.single_listeners}-b1", args.single_listeners, 1)
        self.results["runs"] = runs
        if "memory" in phases:
            if self.server is not None and runs:
                self.restart_server()  # a fresh process: RSS not shaped by the runs above
            self.results["memory"] = self.memory_phase()
        return self.results


def conditions(bench: Bench) -> dict[str, Any]:
    args = bench.args
    if bench.server is not None:
        keys = ", ".join(f"{k}={v}" for k, v in bench.app_keys().items() if "secret" not in k)
        server = (f"pserve on a temp copy of development.ini (local bus), pid {bench.pid}, "
                  f"{bench.url}; app keys {keys}; access log "
                  + ("on (as shipped)" if args.access_log else "off"))
    else:
        server = f"already running at {bench.url}, pid {bench.pid}"
    return {
        **machine_info(),
        "commit": git_state(),
        "server": server,
        "where": (f"all on 127.0.0.1: server 1 process; {args.readers} websocket reader "
                  f"process(es) (epoll, raw sockets; 1 in {args.sample_every} clients decodes "
                  f"and times every message); {args.posters} poster threads in the bench "
                  "process (signed, keep-alive)"),
        "clients": args.clients,
        "batches": args.batches,
        "single_listeners": args.single_listeners,
        "message_bytes": args.message_bytes,
        "duration_s": args.duration,
        "paced_fraction": args.paced_fraction,
        "idle_conns": args.idle_conns,
        "nofile_limit": list(bench.nofile),
    }


def build_parser(description: str, *, clients: str = "websockets", idle_conns: int = 10000,
                 memory_cycles: int = 2) -> argparse.ArgumentParser:
    """The options of this bench; bench/fanout_socketio.py shares them."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--clients", type=int, default=1000, help=f"{clients} in fan-out runs")
    parser.add_argument("--batches", default="10,50",
                        help="messages per POST in fan-out runs, comma separated")
    parser.add_argument("--single-listeners", type=int, default=100,
                        help=f"{clients} in the one-message-per-POST run")
    parser.add_argument("--posters", type=int, default=4, help="concurrent posters")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of posting per run")
    parser.add_argument("--paced-fraction", type=float, default=0.5,
                        help="paced run at this fraction of the peak rate (0 = none)")
    parser.add_argument("--paced-deliveries", type=float, default=0,
                        help="paced run at this many deliveries/s instead (0 = the fraction)")
    parser.add_argument("--message-bytes", type=int, default=100,
                        help="size of each message body as compact JSON")
    parser.add_argument("--idle-conns", type=int, default=idle_conns,
                        help="connections of the memory phase")
    parser.add_argument("--memory-cycles", type=int, default=memory_cycles,
                        help="repeat the memory cycle (same user names): growth shows leaks")
    parser.add_argument("--idle-seconds", type=float, default=6.0,
                        help="idle time with all websockets open (heartbeats pass)")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds to wait before each RSS reading")
    parser.add_argument("--readers", type=int, default=1, help="websocket reader processes")
    parser.add_argument("--sample-every", type=int, default=50,
                        help="1 client in N decodes every frame (latency, offsets)")
    parser.add_argument("--connect-concurrency", type=int, default=8,
                        help="keep-alive connections doing /connect and /disconnect")
    parser.add_argument("--connect-timeout", type=float, default=180.0,
                        help="bound on all /connects, /disconnects or websocket opens of a step")
    parser.add_argument("--open-concurrency", type=int, default=200,
                        help="websocket handshakes in flight per reader process")
    parser.add_argument("--phases", default="fanout,single,memory",
                        help="comma separated: fanout, single, memory")
    parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                        help="keep development.ini's access log (one line per request)")
    parser.add_argument("--replay-cache-size", type=int, default=0,
                        help="set the server's replay_cache_size (default: the server's, "
                        "100000 signatures per signature_window of 60 s, i.e. ~1.7k signed "
                        "calls/s sustained; more POSTs than that get 503)")
    parser.add_argument("--url", help="an already running server (default: start one)")
    parser.add_argument("--pid", type=int, help="pid of the --url server (for RSS and CPU)")
    parser.add_argument("--secret", help="the --url server's secret")
    parser.add_argument("--admin-secret",
                        help="the --url server's admin_secret (to read its drop counters)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse, split ``--batches`` and default the secrets to the test server's."""
    args = parser.parse_args()
    args.batches = [int(b) for b in str(args.batches).split(",") if b.strip()]
    sys.path.insert(0, str(REPO))
    if args.secret is None:
        if args.url:
            parser.error("--url needs --secret")
        from tests.support.api import ADMIN_SECRET, SECRET

        args.secret = SECRET
        args.admin_secret = ADMIN_SECRET
    return args


def main() -> None:
    args = parse_args(build_parser(__doc__.splitlines()[0]))
    title = "websocket fan-out through the server"
    run_and_report(Bench(args), args, title=title, kind="websocket")


def run_and_report(bench: Bench, args: argparse.Namespace, *, title: str, kind: str) -> None:
    """Run ``bench``, stop its server, and print the results (``--json``: one object).

    ``kind`` names the clients in the conditions and the memory lines
    (``websocket``, ``socket.io``).
    """
    try:
        results = bench.run()
        cond = conditions(bench)
    finally:
        bench.stop()
    cond["where"] = cond["where"].replace("websocket reader", f"{kind} reader")
    results["server_problems"] = bench.server_problems
    if args.json:
        print(json.dumps({"conditions": cond, "results": results}))
        return
    print(f"{title}:")
    for key, value in cond.items():
        print(f"  {key:18} {value}")
    for run in results.get("runs", []):
        print(f"\n[{run['run']}]")
        for key, value in run.items():
            if key != "run":
                print(f"  {key:32} {value}")
    if "memory" in results:
        print(f"\n[memory: idle {kind} connections]")
        for key, value in results["memory"].items():
            print(f"  {key:32} {value}")
    print("\nsummary:")
    for run in results.get("runs", []):
        cpu = run["cpu_pct_of_core"]
        readers = sum(v for k, v in cpu.items() if k.startswith("reader"))
        flags = [name for name in ("client_saturated", "machine_contended") if run[name]]
        flags += ["PROBLEMS"] if run["problems"] else []
        print(f"  {run['run']:24} {run['deliveries_per_s']:>9,} deliveries/s "
              f"({run['msgs_per_s']:,.0f} msg/s x {run['clients']}), latency p50 "
              f"{run['latency_p50_ms']} ms p99 {run['latency_p99_ms']} ms; cpu % server "
              f"{cpu.get('server')} readers {readers:.0f} posters {cpu.get('bench(posters)')} "
              f"others {cpu['others']} {' '.join(flags)}")
        for problem in run["problems"]:
            print(f"    PROBLEM: {problem}")
    memory = results.get("memory")
    if memory and "skipped" not in memory:
        print(f"  {'memory':24} {memory['kib_per_idle_ws_conn_total']} KiB per idle {kind} "
              f"connection ({memory['kib_per_connect_state']} KiB /connect state + "
              f"{memory['kib_per_websocket_own']} KiB {kind}), {memory['idle_conns']} conns")
    print(f"server problems: {bench.server_problems or 'none'}")


if __name__ == "__main__":
    if READER_FLAG in sys.argv[1:]:
        reader_main()
    else:
        main()
