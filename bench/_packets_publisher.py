"""bench/packets.py's publisher process: pika ``SelectConnection``, unconfirmed
publishes, flat out or paced, bounded by the server's backlog (its ``consumed``
counter in /healthz). Run by bench/packets.py as ``packets.py
--publisher-process CONFIG``."""

from __future__ import annotations

import json
import os
import resource
import struct
import sys
import time
from typing import Any

from _support import REPO

PUBLISHER_FLAG = "--publisher-process"

# ----------------------------------------------------------------------------------------
# The publisher process: one pika SelectConnection, unconfirmed publishes.
# ----------------------------------------------------------------------------------------

#: Packets published per ioloop turn (flat out), before the loop writes and polls.
PUBLISH_CHUNK = 200
#: Bytes pika may hold unsent before the publisher waits for the socket.
MAX_WRITE_BUFFER = 4 << 20
#: Seconds between two reads of the door's ``consumed`` counter (backlog bound).
BACKLOG_POLL = 0.1
#: Fewest packets publishers may be ahead of the server (the bound is otherwise
#: ``backlog_seconds`` of its measured ingest rate).
MIN_BACKLOG = 500


_FRAME_HEAD = struct.Struct(">BHI")
_INT32 = 2**31


def _table_value(value: Any) -> bytes:
    """One AMQP field-table value as pika 1.4 encodes it (with our doubles)."""
    if isinstance(value, str):
        data = value.encode()
        return b"S" + struct.pack(">I", len(data)) + data
    if isinstance(value, bool):
        return b"t\x01" if value else b"t\x00"
    if isinstance(value, int):
        return struct.pack(">ci", b"I", value) if -_INT32 <= value < _INT32 else \
            struct.pack(">cq", b"l", value)
    if isinstance(value, float):
        return struct.pack(">cd", b"d", value)
    if value is None:
        return b"V"
    raise TypeError(f"no fast encoding for {type(value).__name__}")


class FastFrames:
    """Basic.Publish frames built by hand, byte for byte what pika's basic_publish
    sends for a packet (checked against pika's own marshalling before use): pika
    takes ~90 us of CPU per packet with its 10 headers, this ~10 us."""

    def __init__(self, channel: int, exchange: str, content_type: str) -> None:
        from pika import frame, spec

        self.channel = channel
        self.method = frame.Method(channel, spec.Basic.Publish(exchange=exchange)).marshal()
        ctype = content_type.encode()
        self.props_head = struct.pack(">H", 0x8000 | 0x2000) + bytes([len(ctype)]) + ctype

    def publish(self, body: bytes, headers: dict[str, Any]) -> bytes:
        table = b"".join([bytes([len(k)]) + k.encode() + _table_value(v)
                          for k, v in headers.items()])
        payload = (struct.pack(">HHQ", 60, 0, len(body)) + self.props_head
                   + struct.pack(">I", len(table)) + table)
        return b"".join((self.method, _FRAME_HEAD.pack(2, self.channel, len(payload)), payload,
                         b"\xce", _FRAME_HEAD.pack(3, self.channel, len(body)), body, b"\xce"))

    def agrees_with_pika(self, body: bytes, headers: dict[str, Any], content_type: str) -> bool:
        from pika import frame, spec

        properties = spec.BasicProperties(content_type=content_type, headers=headers)
        expected = (self.method + frame.Header(self.channel, len(body), properties).marshal()
                    + frame.Body(self.channel, body).marshal())
        return self.publish(body, headers) == expected


def healthz_of(host: str, port: int, timeout: float = 10.0) -> dict[str, Any]:
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"/healthz answered {response.status}: {body[:200]!r}")
        return json.loads(body)
    finally:
        conn.close()


def consumed_of(health: dict[str, Any]) -> int:
    return int(health["doors"]["amqp-ingest"]["consumed"])


class Publisher:
    """Publish packets for ``duration`` s, flat out or paced; see the module doc.

    ``config``: url, exchange, index, publishers, groups, run, duration, rate
    (packets/s of this publisher, 0 = flat out), backlog_seconds and
    max_backlog (all publishers together stay at most that many seconds of
    the server's ingest rate, as measured from its ``consumed`` counter, and
    at most max_backlog packets ahead of it, and at least
    :data:`MIN_BACKLOG`; backlog_seconds 0 = no bound), healthz ([host, port]).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        import pika

        from channelstream.amqp.broker import connection_parameters
        from channelstream.amqp.headers import packet_headers
        from channelstream.amqp.publisher import CONTENT_TYPE, encode_packet

        self.pika = pika
        self.packet_headers = packet_headers
        self.encode_packet = encode_packet
        self.content_type = CONTENT_TYPE
        self.config = config
        self.exchange = config["exchange"]
        self.index = config["index"]
        self.rate = float(config["rate"])
        self.count = int(config.get("count", 0))  # stop after that many (0 = the duration)
        self.duration = float(config["duration"])
        self.max_backlog = int(config["max_backlog"]) or 1 << 62
        self.backlog_seconds = float(config["backlog_seconds"])
        self.ingest_rate = 0.0
        self.last_poll: tuple[float, int] | None = None
        self.max_allowed_backlog = 0
        self.share = 1.0 / max(1, int(config["publishers"]))
        self.health_addr = tuple(config["healthz"])
        self.profiles = [f"{config['run']}-p{g}" for g in range(int(config["groups"]))]
        self.seqs = [0] * len(self.profiles)
        self.params = connection_parameters(
            config["url"], name=f"bench/packets.py publisher {self.index} (pid {os.getpid()})"
        )
        self.sent = 0
        self.per_group = [0] * len(self.profiles)
        self.throttled_s = 0.0
        self.waited_socket_s = 0.0
        self.max_write_buffer = 0
        self.blocked = 0
        self.errors: list[str] = []
        self.consumed0 = 0
        self.allowed = 0
        self.next_poll = 0.0
        self.result: dict[str, Any] | None = None
        self.channel = None
        self.fast: FastFrames | None = None  # None: pika's basic_publish

    # -- ioloop callbacks -------------------------------------------------------------------

    def run(self) -> None:
        pika = self.pika
        self.conn = pika.SelectConnection(
            self.params,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_close,
        )
        self.conn.ioloop.start()
        if self.result is None:
            self.result = {"error": "; ".join(self.errors) or "connection ended early"}
        print(json.dumps(self.result), flush=True)

    def _on_open(self, conn: Any) -> None:
        conn.add_on_connection_blocked_callback(self._on_blocked)
        conn.channel(on_open_callback=self._on_channel)

    def _on_open_error(self, conn: Any, err: BaseException) -> None:
        self.errors.append(f"cannot connect: {err!r}")
        conn.ioloop.stop()

    def _on_close(self, conn: Any, reason: BaseException) -> None:
        if self.result is None:
            self.errors.append(f"connection closed: {reason!r}")
        conn.ioloop.stop()

    def _on_blocked(self, *_args: Any) -> None:
        self.blocked += 1

    def _on_channel(self, channel: Any) -> None:
        self.channel = channel
        fast = FastFrames(channel.channel_number, self.exchange, self.content_type)
        probe = self._packet(0, 0)
        if self.config.get("fast", True) and hasattr(self.conn, "_output_marshaled_frames") \
                and fast.agrees_with_pika(self.encode_packet(probe), self.packet_headers(probe),
                                          self.content_type):
            self.fast = fast
        # The server declared it (durable headers exchange); passive: it must exist.
        channel.exchange_declare(self.exchange, passive=True, callback=self._on_ready)

    def _on_ready(self, _frame: Any) -> None:
        try:
            self.consumed0 = consumed_of(healthz_of(*self.health_addr))
        except Exception as exc:
            self.errors.append(f"/healthz: {exc!r}")
            self.conn.close()
            return
        print(json.dumps({"ready": True}), flush=True)
        # Wait for "go" on stdin (the ioloop keeps the connection alive meanwhile).
        self.conn.ioloop.add_handler(0, self._on_stdin, self.conn.ioloop.READ)

    def _on_stdin(self, _fd: int, _events: int) -> None:
        line = sys.stdin.readline()
        self.conn.ioloop.remove_handler(0)
        if line.strip() != "go":
            self.errors.append(f"expected 'go', got {line!r}")
            self.conn.close()
            return
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu0 = usage.ru_utime + usage.ru_stime
        self.start_wall = time.time()
        self.start = time.perf_counter()
        self.end = self.start + self.duration
        if self.backlog_seconds:
            self.last_poll = (self.start, self.consumed0)
            self.allowed = int(min(MIN_BACKLOG, self.max_backlog) * self.share)
        else:
            self.allowed = 1 << 62
        self.conn.ioloop.call_later(0, self._tick)

    def _poll_backlog(self, now: float) -> None:
        self.next_poll = now + BACKLOG_POLL
        try:
            consumed = consumed_of(healthz_of(*self.health_addr, timeout=5))
        except Exception as exc:
            if len(self.errors) < 5:
                self.errors.append(f"/healthz: {exc!r}")
            return
        t0, c0 = self.last_poll
        if now - t0 >= 0.05:
            rate = (consumed - c0) / (now - t0)
            # Up at once, down slowly: a short stall of the server keeps the bound.
            self.ingest_rate = rate if rate > self.ingest_rate else (
                0.7 * self.ingest_rate + 0.3 * rate)
            self.last_poll = (now, consumed)
        backlog = min(self.max_backlog, max(MIN_BACKLOG, self.ingest_rate * self.backlog_seconds))
        self.max_allowed_backlog = max(self.max_allowed_backlog, int(backlog))
        self.allowed = int((consumed - self.consumed0 + backlog) * self.share)

    def _write_buffer(self) -> int:
        size = getattr(self.conn, "_get_write_buffer_size", None)
        return size() if size is not None else 0

    def _tick(self) -> None:
        now = time.perf_counter()
        if now >= self.end or (self.count and self.sent >= self.count):
            self._finish()
            return
        if self.backlog_seconds and now >= self.next_poll:
            self._poll_backlog(now)
        buffered = self._write_buffer()
        self.max_write_buffer = max(self.max_write_buffer, buffered)
        if buffered > MAX_WRITE_BUFFER:  # the socket does not take them as fast: wait
            self.waited_socket_s += 0.001
            self.conn.ioloop.call_later(0.001, self._tick)
            return
        if self.rate:
            due = int(self.rate * (now - self.start)) + 1 - self.sent
        else:
            due = PUBLISH_CHUNK
        room = self.allowed - self.sent
        count = min(due, room, PUBLISH_CHUNK, (self.count - self.sent) if self.count else due)
        if count > 0:
            self._publish(count)
        if room <= 0 and due > 0:  # the server's queue is --max-backlog deep: wait
            wait = max(0.0, min(0.005, self.next_poll - now))
            self.throttled_s += wait
            self.conn.ioloop.call_later(wait, self._tick)
        elif self.rate and count >= due:  # caught up: sleep until the next packet is due
            next_due = self.start + self.sent / self.rate
            self.conn.ioloop.call_later(max(0.0, next_due - time.perf_counter()), self._tick)
        else:
            self.conn.ioloop.call_later(0, self._tick)

    def _publish(self, count: int) -> None:
        pika = self.pika
        channel = self.channel
        groups = len(self.profiles)
        seqs = self.seqs
        per_group = self.per_group
        exchange = self.exchange
        encode_packet = self.encode_packet
        packet_headers = self.packet_headers
        content_type = self.content_type
        sent = self.sent
        fast = self.fast
        frames = []
        for _ in range(count):
            group = sent % groups
            packet = self._packet(group, seqs[group])
            # As PacketPublisher.publish encodes it: JSON body, scalar fields as headers.
            if fast is not None:
                frames.append(fast.publish(encode_packet(packet), packet_headers(packet)))
            else:
                channel.basic_publish(
                    exchange, "", encode_packet(packet),
                    pika.BasicProperties(content_type=content_type,
                                         headers=packet_headers(packet)),
                )
            seqs[group] += 1
            per_group[group] += 1
            sent += 1
        if frames:
            self.conn._output_marshaled_frames([b"".join(frames)])
        self.sent = sent

    def _packet(self, group: int, seq: int) -> dict[str, Any]:
        return {
            "t": time.time_ns(),
            "pub": self.index,
            "seq": seq,
            "profile_id": self.profiles[group],
            "address": "10.4.1.17",
            "port": 4001 + group,
            "time": int(time.time() * 1000),
            "temperature": 21.5,
            "humidity": 40 + group,
            "light": 300,
        }

    def _finish(self) -> None:
        self.stop_wall = time.time()
        behind = max(0, int(self.rate * self.duration) - self.sent) if self.rate else 0
        # A synchronous method after the last publish: its answer means the broker
        # has routed every packet before it (a channel's methods are handled in order).
        self.channel.exchange_declare(
            self.exchange, passive=True, callback=lambda _f: self._done(behind)
        )

    def _done(self, behind: int) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.result = {
            "index": self.index,
            "sent": self.sent,
            "per_group": self.per_group,
            "start_wall": self.start_wall,
            "stop_wall": self.stop_wall,
            "routed_wall": time.time(),
            "cpu_s": usage.ru_utime + usage.ru_stime - self.cpu0,
            "behind": behind,
            "throttled_s": round(self.throttled_s, 3),
            "waited_socket_s": round(self.waited_socket_s, 3),
            "max_write_buffer": self.max_write_buffer,
            "blocked": self.blocked,
            "frames": "built by hand (checked against pika)" if self.fast else
                      "pika basic_publish",
            "max_allowed_backlog": self.max_allowed_backlog,
            "errors": self.errors,
        }
        self.conn.close()


def publisher_main() -> None:
    sys.path.insert(0, str(REPO))
    import logging

    logging.getLogger("pika").setLevel(logging.CRITICAL)
    config = json.loads(sys.argv[sys.argv.index(PUBLISHER_FLAG) + 1])
    Publisher(config).run()
