"""channelstream 0.7.1 (the last release) under the ``single`` load of fanout_ws.py.

It gives the figure of the original on the same machine as ours: deliveries/s
to ``--listeners`` websockets of one channel with one message per POST, and
POST-to-receive latency. The load is that of ``bench/fanout_ws.py --phases
single``:

- the server: ``channelstream -i INI`` of a Python 3.8 venv with
  ``channelstream==0.7.1`` (``--channelstream``), started here on a temporary
  ini (secret, admin_secret, allow_posting_from 127.0.0.1, log_level as
  shipped: INFO), one process;
- the websocket clients: one reader process of fanout_ws.py's epoll reader
  (raw sockets), which counts ``"type": "message"`` in each frame (0.7.1
  encodes with ``indent=4``) and takes the latency of every message in 1
  client in ``--sample-every``;
- the posters: ``--posters`` threads of this process, each on its own
  keep-alive connection with TCP_NODELAY, POSTing ``[{channel, user,
  message}]`` to ``/message`` as fast as answered for ``--duration`` s, with
  0.7.1's ``x-channelstream-secret`` token (itsdangerous TimestampSigner).

Each message body is ``{"t": <time.time_ns() before the POST>, "p": "xx..."}``,
``--message-bytes`` long as compact JSON. deliveries/s is the messages counted
at the clients over the time from the first POST to the last delivery (0.7.1
answers a POST before fanning out, so a backlog drains after the posters
stop; it is reported too).

0.7.1 also opens a policy port (10843) on all interfaces, so run the whole
thing in a private network namespace:

  unshare -n sh -c 'ip link set lo up && .venv/bin/python bench/channelstream_071.py \\
      --channelstream /tmp/cs071venv/bin/channelstream'
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fanout_ws
from _support import CpuWatch, ReaderProcs, machine_info, mb, percentile, rss_of

READER_FLAG = "--reader-process"
#: 0.7.1 sends each message as ``json.dumps([message], indent=4)``.
MESSAGE_MARK_071 = b'"type": "message"'


def legacy_token(secret: str, value: str = "channelstream") -> str:
    """``itsdangerous.TimestampSigner(secret).sign(value)`` as 0.7.1 checks it."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    now = int(time.time())
    signed = f"{value}.{b64(now.to_bytes((now.bit_length() + 7) // 8, 'big'))}"
    key = hashlib.sha1(b"itsdangerous.Signer" + b"signer" + secret.encode()).digest()
    return f"{signed}.{b64(hmac.new(key, signed.encode('ascii'), hashlib.sha1).digest())}"


class Api:
    """One keep-alive HTTP/1.1 connection to 0.7.1, TCP_NODELAY, one request at a time."""

    def __init__(self, host: str, port: int, secret: str, quickack: bool = False) -> None:
        self.host, self.port, self.secret = host, port, secret
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.quickack = quickack
        self.buf = b""

    def post(self, path: str, obj: Any) -> Any:
        body = json.dumps(obj, separators=(",", ":")).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Content-Type: application/json\r\n"
            f"x-channelstream-secret: {legacy_token(self.secret)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.sock.sendall(head + body)
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        header, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        length = int(fields["content-length"])  # pyramid sets it; no chunked answers here
        while len(self.buf) < length:
            self._recv()
        data, self.buf = self.buf[:length], self.buf[length:]
        if status != 200:
            raise RuntimeError(f"{path}: {status} {data[:200]!r}")
        return json.loads(data)

    def _recv(self) -> None:
        if self.quickack:
            # 0.7.1 sends the headers, then the body held back by Nagle until they are
            # ACKed; Linux clears TCP_QUICKACK on its own, so it is set before each read.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def start_server(command: str, folder: Path, port: int, secret: str) -> subprocess.Popen:
    ini = folder / "channelstream.ini"
    ini.write_text(
        "[channelstream]\nhost = 127.0.0.1\n"
        f"port = {port}\nsecret = {secret}\nadmin_secret = {secret}-admin\n"
        "allow_posting_from = 127.0.0.1\n",
        encoding="utf-8",
    )
    with open(folder / "server.log", "wb") as log:  # the child keeps its own copy of the fd
        proc = subprocess.Popen([command, "-i", str(ini)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"channelstream exited ({proc.returncode}): {folder / 'server.log'}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("channelstream did not listen within 30 s")


def post_for(args: argparse.Namespace, channel: str, pad: str, duration: float) -> dict[str, Any]:
    """``--posters`` threads POST one message per request as fast as answered."""
    lock = threading.Lock()
    totals = {"posts": 0, "post_s": 0.0, "errors": []}
    start = time.monotonic() + 0.05
    deadline = start + duration

    def work() -> None:
        api = Api("127.0.0.1", args.port, args.secret, args.quickack)
        posts, post_s, errors = 0, 0.0, []
        time.sleep(max(0.0, start - time.monotonic()))
        while time.monotonic() < deadline:
            item = {
                "channel": channel,
                "user": "poster",
                "message": {"t": time.time_ns(), "p": pad},
            }
            t0 = time.perf_counter()
            try:
                api.post("/message", [item])
                posts += 1
            except Exception as exc:
                errors.append(repr(exc))
                if len(errors) > 20:
                    break
            post_s += time.perf_counter() - t0
        api.close()
        with lock:
            totals["posts"] += posts
            totals["post_s"] += post_s
            totals["errors"] += errors

    threads = [threading.Thread(target=work, daemon=True) for _ in range(args.posters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    totals["start_wall"] = time.time() - (time.monotonic() - start)
    totals["elapsed"] = time.monotonic() - start
    return totals


def stats(readers: ReaderProcs, latencies: bool = False) -> dict[str, Any]:
    return readers.all({"cmd": "stats", "latencies": latencies})[0]


def wait_for(readers: ReaderProcs, expected: int, stall: float = 5.0) -> dict[str, Any]:
    """Reader stats once ``expected`` messages arrived or none came for ``stall`` s."""
    last, last_at = -1, time.monotonic()
    while True:
        now = stats(readers)
        if now["messages"] >= expected:
            return now
        if now["messages"] != last:
            last, last_at = now["messages"], time.monotonic()
        elif time.monotonic() - last_at > stall:
            return now
        time.sleep(0.2)


def measure(args: argparse.Namespace, server: subprocess.Popen, readers: ReaderProcs) -> dict:
    channel = "bench-one"
    api = Api("127.0.0.1", args.port, args.secret)
    conn_ids = [
        api.post("/connect", {"username": f"u{i}", "channels": [channel]})["conn_id"]
        for i in range(args.listeners)
    ]
    api.close()
    samplers = list(range(0, len(conn_ids), args.sample_every)) if args.sample_every else []
    opened = readers.all(
        {
            "cmd": "open",
            "host": "127.0.0.1",
            "port": args.port,
            "conn_ids": conn_ids,
            "samplers": samplers,
            "concurrency": 100,
            "timeout": 60.0,
        }
    )[0]
    if opened["failed"]:
        raise SystemExit(f"websocket opens failed: {opened}")
    probe = json.dumps({"t": time.time_ns(), "p": ""}, separators=(",", ":"))
    pad = "x" * max(0, args.message_bytes - len(probe))

    readers.all({"cmd": "reset"})  # warm-up, not counted
    warm = post_for(args, channel, pad, 0.3)
    wait_for(readers, warm["posts"] * len(conn_ids))

    readers.all({"cmd": "reset"})
    cpu = CpuWatch(
        {"server": server.pid, "bench(posters)": os.getpid(), "reader0": readers.pids[0]}
    )
    rss_before = rss_of(server.pid)
    posted = post_for(args, channel, pad, args.duration)
    at_stop = stats(readers)
    expected = posted["posts"] * len(conn_ids)
    wait_for(readers, expected)
    cpu_pct = cpu.percent()
    done = stats(readers, latencies=True)
    lat = sorted(done.pop("latencies_us"))
    span = done["last_ns"] / 1e9 - posted["start_wall"] if done["last_ns"] else 0.0
    problems = posted["errors"][:3]
    if done["messages"] != expected:
        problems.append(f"delivered {done['messages']} of {expected}")
    if done["server_closes"] or done["eofs"] or done["errors"]:
        problems.append(
            f"websockets lost: {done['server_closes']} eofs {done['eofs']} "
            f"errors {done['errors']} {done['error_samples']}"
        )
    return {
        "listeners": len(conn_ids),
        "posters": args.posters,
        "posts": posted["posts"],
        "posts_per_s": round(posted["posts"] / posted["elapsed"], 1),
        "post_mean_ms": round(1000 * posted["post_s"] / max(1, posted["posts"]), 2),
        "deliveries": done["messages"],
        "expected": expected,
        "deliveries_per_s": round(done["messages"] / span) if span > 0 else 0,
        "deliveries_per_s_while_posting": round(at_stop["messages"] / posted["elapsed"]),
        "backlog_at_stop": expected - at_stop["messages"],
        "drain_s": round(span - posted["elapsed"], 2) if span else None,
        "per_client_min_max": [done["min_per_conn"], done["max_per_conn"]],
        "latency_samples": done["latency_samples"],
        "latency_p50_ms": round(percentile(lat, 0.50) / 1000, 2) if lat else None,
        "latency_p99_ms": round(percentile(lat, 0.99) / 1000, 2) if lat else None,
        "latency_max_ms": round(lat[-1] / 1000, 2) if lat else None,
        "cpu_pct_of_core": cpu_pct,
        "server_rss_mb_before_after": [mb(rss_before), mb(rss_of(server.pid))],
        "problems": problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--channelstream",
        default=os.environ.get("CHANNELSTREAM_071", ""),
        help="the channelstream script of a venv with channelstream==0.7.1"
        " (default: $CHANNELSTREAM_071; without one, nothing is measured)",
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--secret", default="bench-secret")
    parser.add_argument("--listeners", type=int, default=100, help="websockets on the channel")
    parser.add_argument("--posters", type=int, default=4, help="concurrent posters")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of posting")
    parser.add_argument("--message-bytes", type=int, default=100)
    parser.add_argument(
        "--sample-every", type=int, default=50, help="1 client in N times every message"
    )
    parser.add_argument(
        "--quickack",
        action="store_true",
        help="posters set TCP_QUICKACK before each read (no 40 ms delayed "
        "ACK between 0.7.1's header and body segments)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if not args.channelstream or not os.access(args.channelstream, os.X_OK):
        # `make bench` runs every script: this one needs a set-up it cannot make
        print("channelstream_071: skipped: no channelstream 0.7.1 to run (--channelstream or"
              " $CHANNELSTREAM_071; see the module doc for the venv and the network namespace)")
        return

    with tempfile.TemporaryDirectory(prefix="cs071-") as tmp:
        server = start_server(args.channelstream, Path(tmp), args.port, args.secret)
        readers = ReaderProcs(1, __file__, READER_FLAG)
        try:
            result = measure(args, server, readers)
        finally:
            readers.close()
            server.terminate()
            server.wait(10)
        log = (Path(tmp) / "server.log").read_text("utf-8", "replace").splitlines()
        bad = [x for x in log if x.startswith(("ERROR", "CRITICAL", "Traceback"))]
        if bad:
            result["problems"].append(f"server log: {len(bad)} error lines: {bad[:3]}")
        result["server_log_lines"] = len(log)
    version = subprocess.run(
        [args.channelstream, "--version"], capture_output=True, text=True
    ).stdout.strip()
    result["conditions"] = {
        **machine_info(),
        "server": f"channelstream {version} ({args.channelstream})",
        "message_bytes": args.message_bytes,
        "duration_s": args.duration,
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:32} {value}")


if __name__ == "__main__":
    if READER_FLAG in sys.argv[1:]:
        fanout_ws.MESSAGE_MARK = MESSAGE_MARK_071  # the reader counts with this global
        fanout_ws.reader_main()
    else:
        main()
