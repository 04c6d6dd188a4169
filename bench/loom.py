"""loom through the real server: ingest to disk, GET of a finished stream, live fan-out.

Everything runs on 127.0.0.1 of this machine, as separate processes: the
server (``pserve`` on a temporary copy of development.ini, its loom storage
in a temporary folder under ``--dir``, on /work's disk), this process (the
producer and the GET client: raw sockets, no HTTP library) and
``--reader-procs`` tailer processes of this same script (``--tailers``: a
selectors loop over raw sockets that decodes the chunked response itself).

Phases:

- ``ingest``: one ``POST /stream/<id>`` of ``--size-mib`` MiB with
  Content-Length, sent from a 1 MiB buffer (random bytes, or log-like text
  lines with ``--text``) as fast as the server reads; timed from the
  request's first byte until the server's response ends, which it does
  after the data is written and, with ``--fsync finish`` (the default),
  fsynced: on the disk, not only in the page cache. The server's RSS is
  sampled every 20 ms: its peak shows whether the upload is held in memory.
- ``get``: ``--gets`` GETs of that finished stream (Content-Length, served
  with sendfile), each read to the end into one 1 MiB buffer; MiB/s each.
- ``fanout``: for each ``tailers x MiB/s`` of ``--fanout`` (default
  ``10x50,100x5``), a producer uploads chunked 64 KiB chunks, paced at the
  rate for ``--seconds``, whose first 8 bytes are ``time.time_ns()`` at
  sending; the tailers join before the first chunk. Latency of a chunk for
  a tailer = the time its last byte arrived minus the time it was sent
  (same clock). Every tailer must get every byte (checked by count and by
  the chunk stamps' order).

CPU use of the server, the tailers and this process is printed with the
figures; ``machine_busy`` says how busy the whole machine was.

Usage: python bench/loom.py [--size-mib 1024] [--gets 3] [--fanout 10x50,100x5]
       [--seconds 10] [--reader-procs 2] [--compression none|zlib] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests.support.server
from _support import REPO, CpuWatch, machine_info, mb, percentile, quiet_access_log, rss_of

CHUNK = 64 * 1024
STAMP = struct.Struct(">Q")
MIB = 1 << 20


def payload(size: int, text: bool) -> bytes:
    """``size`` bytes of random data, or of build-log-like text lines."""
    if not text:
        return os.urandom(size)
    lines = b"".join(
        b"[%06d] compiling src/module_%d.c -> build/module_%d.o (%s)\n"
        % (n, n % 97, n % 97, os.urandom(6).hex().encode())
        for n in range(size // 40 + 1)
    )
    return lines[:size]


# -- small raw HTTP helpers -------------------------------------------------------------------


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case) and whatever body bytes came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError(f"closed before the headers: {data!r}")
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    while lines[0].startswith("HTTP/1.1 100"):
        head, _, rest = rest.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, rest


def read_body_end(sock: socket.socket, data: bytes) -> None:
    """Read the rest of an empty chunked body (the answer of an upload): the last
    chunk and its trailer, which must say the stream finished."""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("closed before the end of the answer")
        data += more
    if b"X-Stream-State" in data and b"X-Stream-State: finished" not in data:
        raise RuntimeError(f"the upload did not finish: {data!r}")


# -- tailer processes ---------------------------------------------------------------------------


class Tailer:
    """One GET of a live stream, decoding chunked framing and chunk stamps."""

    def __init__(self, port: int, stream_id: str) -> None:
        self.sock = connect(port)
        self.sock.sendall(f"GET /stream/{stream_id} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        status, _, rest = read_head(self.sock)
        if status != 200:
            raise RuntimeError(f"GET answered {status}")
        self.sock.setblocking(False)
        self.buf = bytearray(rest)
        self.remaining = -1  # payload bytes left in the current HTTP chunk; -1 = size line next
        self.position = 0  # stream bytes received
        self.stamp = bytearray()
        self.sent_ns = 0
        self.latencies: list[int] = []
        self.errors: list[str] = []
        self.done = False
        self.last_stamp = -1

    def feed(self, data: bytes, now: int) -> None:
        buf = self.buf
        buf += data
        while buf and not self.done:
            if self.remaining == -1:
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(buf[:end]).split(b";")[0], 16)
                del buf[: end + 2]
                if size == 0:
                    self.done = True
                    return
                self.remaining = size
            elif self.remaining == 0:
                if len(buf) < 2:
                    return
                del buf[:2]
                self.remaining = -1
            else:
                n = min(self.remaining, len(buf))
                self.payload(memoryview(buf)[:n], now)
                del buf[:n]
                self.remaining -= n

    def payload(self, view: memoryview, now: int) -> None:
        start = self.position
        end = start + len(view)
        offset = start
        while offset < end:
            in_chunk = offset % CHUNK
            if in_chunk < STAMP.size:  # stamp bytes of a chunk
                take = min(STAMP.size - in_chunk, end - offset)
                self.stamp += view[offset - start : offset - start + take]
                offset += take
                if len(self.stamp) == STAMP.size:
                    (self.sent_ns,) = STAMP.unpack(self.stamp)
                    self.stamp.clear()
                    if self.sent_ns <= self.last_stamp:
                        self.errors.append(f"stamps out of order at {offset}")
                    self.last_stamp = self.sent_ns
                continue
            chunk_end = offset - in_chunk + CHUNK
            if chunk_end <= end:
                self.latencies.append(now - self.sent_ns)
                offset = chunk_end
            else:
                offset = end
        self.position = end


def tailer_process(port: int, stream_id: str, count: int) -> None:
    """Entry of a tailer process: ``ready`` once all are connected, then results as JSON."""
    tailers = [Tailer(port, stream_id) for _ in range(count)]
    print("ready", flush=True)
    selector = selectors.DefaultSelector()
    for tailer in tailers:
        selector.register(tailer.sock, selectors.EVENT_READ, tailer)
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    open_count = count
    cpu0 = time.process_time()
    while open_count:
        for key, _ in selector.select(timeout=60):
            tailer = key.data
            try:
                n = tailer.sock.recv_into(buffer)
            except BlockingIOError:
                continue
            if n == 0:
                tailer.errors.append("connection closed before the end")
                tailer.done = True
            else:
                tailer.feed(view[:n], time.time_ns())
            if tailer.done:
                selector.unregister(tailer.sock)
                tailer.sock.close()
                open_count -= 1
    print(
        json.dumps(
            {
                "bytes": [t.position for t in tailers],
                "latencies_ns": [lat for t in tailers for lat in t.latencies],
                "errors": [e for t in tailers for e in t.errors],
                "cpu_s": time.process_time() - cpu0,
            }
        ),
        flush=True,
    )


# -- the bench --------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="loom-bench-", dir=args.dir))
        self.server = None
        self.results: dict[str, Any] = {}

    def start_server(self) -> None:
        from tests.support.server import RunningServer

        server = RunningServer(
            REPO / "development.ini",
            self.tmp,
            app={"loom.compression": self.args.compression, "loom.fsync": self.args.fsync},
        )
        quiet_access_log(server.ini)
        self.server = server.start()

    @property
    def pid(self) -> int:
        return self.server.process.pid

    def stop(self) -> None:
        if self.server is not None:
            log = self.server.stderr
            self.server.stop()
            errors = [line for line in log.splitlines() if " ERROR " in line]
            if errors:
                self.results["server_errors"] = errors[:5]
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- ingest + get ------------------------------------------------------------------------

    def ingest(self) -> None:
        size = self.args.size_mib * MIB
        block = payload(MIB, self.args.text)
        rss_before = rss_of(self.pid)
        peak = [rss_before]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak[0] = max(peak[0], rss_of(self.pid, missing_ok=True) or 0)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        watch = CpuWatch({"server": self.pid})
        sock = connect(self.server.port)
        t0 = time.perf_counter()
        sock.sendall(
            f"POST /stream/big HTTP/1.1\r\nHost: bench\r\nContent-Length: {size}\r\n\r\n".encode()
        )
        status, _, rest = read_head(sock)
        first_answer = time.perf_counter() - t0
        view = memoryview(block)
        for _ in range(self.args.size_mib):
            sock.sendall(view)
        t_sent = time.perf_counter()
        read_body_end(sock, rest)
        elapsed = time.perf_counter() - t0
        sampling.set()
        sampler.join()
        sock.close()
        cpu = watch.percent()
        info = self.server.get("/streams/big").json()
        self.results["ingest"] = {
            "status": status,
            "bytes": size,
            "stored_state": info["state"],
            "stored_size": info["size"],
            "seconds": round(elapsed, 3),
            "mib_per_s": round(size / MIB / elapsed, 1),
            "send_seconds": round(t_sent - t0, 3),
            "201_after_ms": round(first_answer * 1000, 2),
            "server_rss_mb_before": mb(rss_before),
            "server_rss_mb_peak": mb(peak[0]),
            "cpu_percent": cpu,
            "machine_busy_percent": watch.machine_busy,
        }

    def gets(self) -> None:
        runs = []
        buffer = bytearray(MIB)
        for _ in range(self.args.gets):
            watch = CpuWatch({"server": self.pid})
            sock = connect(self.server.port)
            t0 = time.perf_counter()
            sock.sendall(b"GET /stream/big HTTP/1.1\r\nHost: bench\r\n\r\n")
            status, headers, rest = read_head(sock)
            length = int(headers["content-length"])
            got = len(rest)
            while got < length:
                n = sock.recv_into(buffer)
                if not n:
                    break
                got += n
            elapsed = time.perf_counter() - t0
            sock.close()
            runs.append(
                {
                    "status": status,
                    "bytes": got,
                    "complete": got == length,
                    "mib_per_s": round(got / MIB / elapsed, 1),
                    "cpu_percent": watch.percent(),
                    "machine_busy_percent": watch.machine_busy,
                }
            )
        self.results["get"] = runs

    # -- fan-out ------------------------------------------------------------------------------

    def fanout(self, tailers: int, rate_mib: float) -> dict[str, Any]:
        stream_id = f"fan-{tailers}x{rate_mib:g}-{time.time_ns()}"
        port = self.server.port
        producer = connect(port)
        producer.sendall(
            f"POST /stream/{stream_id} HTTP/1.1\r\nHost: bench\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        status, _, _ = read_head(producer)
        assert status == 201, status
        procs = []
        per = [tailers // self.args.reader_procs] * self.args.reader_procs
        for i in range(tailers % self.args.reader_procs):
            per[i] += 1
        for count in filter(None, per):
            proc = subprocess.Popen(
                [sys.executable, __file__, "--tailer-process", str(port), stream_id, str(count)],
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        watch = CpuWatch(
            {"server": self.pid, **{f"tailers{i}": p.pid for i, p in enumerate(procs)}}
        )
        interval = CHUNK / (rate_mib * MIB)
        chunks = int(self.args.seconds / interval)
        filler = payload(CHUNK - STAMP.size, self.args.text)
        frame_head = b"%x\r\n" % CHUNK
        start = time.perf_counter()
        late = 0
        for k in range(chunks):
            due = start + k * interval
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            elif now - due > 0.05:
                late += 1
            producer.sendall(frame_head + STAMP.pack(time.time_ns()) + filler + b"\r\n")
        sent_for = time.perf_counter() - start
        producer.sendall(b"0\r\n\r\n")
        read_body_end(producer, b"")  # the server stored everything
        producer.close()
        results = [json.loads(proc.stdout.readline()) for proc in procs]
        for proc in procs:
            proc.wait(30)
        cpu = watch.percent({f"tailers{i}": r["cpu_s"] for i, r in enumerate(results)})
        door = self.server.get("/healthz").json()["doors"]["loom"]
        latencies = sorted(lat for r in results for lat in r["latencies_ns"])
        expected = chunks * CHUNK
        received = [b for r in results for b in r["bytes"]]
        return {
            "tailers": tailers,
            "rate_mib_per_s": rate_mib,
            "chunk_bytes": CHUNK,
            "seconds": round(sent_for, 2),
            "producer_late_chunks": late,
            "bytes_per_tailer": expected,
            "all_bytes_delivered": all(b == expected for b in received),
            "errors": [e for r in results for e in r["errors"]][:5],
            "latency_ms": {
                "p50": round(percentile(latencies, 0.50) / 1e6, 2),
                "p99": round(percentile(latencies, 0.99) / 1e6, 2),
                "max": round(latencies[-1] / 1e6, 2) if latencies else None,
                "samples": len(latencies),
            },
            "cpu_percent": cpu,
            "machine_busy_percent": watch.machine_busy,
            "server_slow_writes_so_far": door.get("slow_writes"),
            "server_slowest_write_ms_so_far": door.get("slowest_write_ms"),
        }

    def run(self) -> dict[str, Any]:
        self.results["conditions"] = {
            **machine_info(),
            "load_average_at_start": os.getloadavg(),
            "storage": str(self.tmp),
            "compression": self.args.compression,
            "data": "text lines" if self.args.text else "random bytes",
            "fsync": self.args.fsync,
        }
        try:
            self.start_server()
            if self.args.size_mib:
                self.ingest()
                self.gets()
            self.results["fanout"] = []
            for spec in filter(None, self.args.fanout.split(",")):
                tailers, rate = spec.split("x")
                self.results["fanout"].append(self.fanout(int(tailers), float(rate)))
        finally:
            self.stop()
        return self.results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--tailer-process":
        tailer_process(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="ingest size (0: skip)")
    parser.add_argument("--gets", type=int, default=3)
    parser.add_argument("--fanout", default="10x50,100x5", help="tailers x MiB/s, ...")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--reader-procs", type=int, default=2)
    parser.add_argument("--compression", default="none", choices=("none", "zlib"))
    parser.add_argument(
        "--fsync",
        default="finish",
        choices=("never", "finish", "always"),
        help="loom.fsync (finish: the ingest ends once the data is on the disk)",
    )
    parser.add_argument("--dir", default=str(REPO / "var"), help="where the temporary storage goes")
    parser.add_argument("--text", action="store_true", help="log-like text instead of random")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    results = Bench(args).run()
    print(json.dumps(results, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
