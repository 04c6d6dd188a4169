"""socket.io fan-out: channelstream's socket.io door beside a plain python-socketio server.

Both servers run in the same bench run, on 127.0.0.1 of this machine, with the
same clients and posters, one after the other for each measurement (the order
alternates from round to round), so that what the rest of the machine does
weighs on both alike:

- ours: ``pserve`` on a temporary copy of development.ini (local bus, access
  log on as shipped; ``socketio.*`` keys as shipped), or ``--url``/``--pid``;
  its clients join namespace ``/stream`` with a connection made by
  ``/connect`` (``auth`` ``{"conn_id": ...}``), and the posters' signed
  ``POST /message`` goes through the hub;
- plain: python-socketio alone, the same versions, as its documentation sets
  it up for gevent: ``socketio.Server(async_mode='gevent')`` in
  ``socketio.WSGIApp`` under gevent's ``pywsgi.WSGIServer`` (default options,
  its access log on, websockets by simple-websocket since gevent-websocket is
  not installed), run by this script (``--plain-server-process PORT``). Its
  ``/stream`` connect handler puts the client in the room named by its
  ``auth`` ``conn_id``; its ``POST /message`` takes the same JSON list and
  makes one ``sio.emit("message", frames, to=room)`` per POST, the frames being
  the objects channelstream sends (type, channel, user, message, uuid,
  timestamp, edited, catchup, an offset per room, an epoch), so both put about
  the same bytes on the wire;
- the clients: ``--readers`` processes of this script (``--reader-process``),
  each a single-threaded epoll loop over raw non-blocking sockets speaking
  engine.io v4 over websocket by hand (the upgrade on
  ``/socket.io/?EIO=4&transport=websocket``, ``40/stream,{"conn_id": ...}``,
  ``3`` for each engine.io ping ``2``); a ``message`` event is counted by its
  ``"type":"message"`` frames (``"type": "message"``: python-socketio's JSON
  has spaces), and one client in ``--sample-every`` decodes every event
  (offsets: gaps and duplicates; latency);
- the posters: ``--posters`` threads of this process, each a keep-alive
  :class:`channelstream.client.ChannelstreamClient` (signed; the plain server
  ignores the signature).

Measurements (``--phases``):

- ``fanout``: for each ``--batches`` size (messages per POST), ``--rounds``
  rounds of: ``--clients`` clients on one channel (room), posters flat out for
  ``--duration`` s, every delivery waited for and checked (each client got
  every message once, in order), on ours then plain (or plain then ours). The
  report gives both servers' deliveries/s per round, their medians and the
  ratio of the medians, with the range of the per-round ratios, and the same
  for deliveries per CPU-second of each server (what the server's work costs,
  less shaped by what else the machine runs). With ``--paced-deliveries`` (or
  ``--paced-fraction`` of each one's peak), each peak run is followed by one
  paced at that rate, for the latency at the same load. Our server's runs
  also show its door's ``direct_writes``, ``queued_writes``,
  ``fanout_passes`` and ``fanout_passes_paced`` (/healthz) during the run;
- ``memory``: server RSS per idle socket.io connection over ``--idle-conns``
  websockets held open ``--idle-seconds`` (engine.io pings pass), on a fresh
  process of each server: ours with the ``/connect`` state of each connection
  counted in (``kib_per_idle_ws_conn_total``).

CPU use of the servers, the readers and the posters is printed for each run;
``client_saturated`` and ``machine_contended`` flag runs whose figures the
load clients or other processes limited.

Usage: python bench/fanout_socketio.py [--clients 1000] [--batches 1,10] [--rounds 3]
       [--duration 6] [--paced-deliveries 37500] [--idle-conns 3000]
       [--phases fanout,memory] [--no-plain] [--json]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fanout_ws
from _support import REPO, ReaderProcs, git_state, machine_info, raise_nofile

READER_FLAG = "--reader-process"
PLAIN_FLAG = "--plain-server-process"
NAMESPACE = b"/stream"
EVENT = b"42" + NAMESPACE + b","
MESSAGE_MARK_SPACED = b'"type": "message"'  # python-socketio's own JSON
CONNECTED = b"40" + NAMESPACE + b","
REFUSED = b"44" + NAMESPACE + b","
PONG = fanout_ws._masked_frame(0x1, b"3")


# ----------------------------------------------------------------------------------------
# The reader process: fanout_ws's epoll reader speaking engine.io/socket.io on top.
# ----------------------------------------------------------------------------------------


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
                count = data.count(fanout_ws.MESSAGE_MARK, start, end) or data.count(
                    MESSAGE_MARK_SPACED, start, end
                )
                messages += count
                if conn.sample and count:
                    event = json.loads(data[start + len(EVENT) : end])
                    if event[0] == "message":
                        self._sample_frames(conn, event[1], now_ns)
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

    def _sample_frames(self, conn: fanout_ws._Conn, frames: list[Any], now_ns: int) -> None:
        """fanout_ws's latency and offset checks (``Reader._sample``), on decoded frames."""
        for frame in frames:
            if frame.get("type") != "message":
                continue
            body = frame.get("message")
            if isinstance(body, dict) and isinstance(body.get("t"), int):
                value = (now_ns - body["t"]) // 1000
                self.lat_seen += 1
                if len(self.latencies) < fanout_ws.LATENCY_CAP:
                    self.latencies.append(value)
                else:
                    j = random.randrange(self.lat_seen)
                    if j < fanout_ws.LATENCY_CAP:
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


def reader_main() -> None:
    raise_nofile()
    # Read what a socket holds in one call: frames of a few hundred messages would
    # otherwise come in pieces, each joined to the last (fanout_ws reads 64 KiB).
    fanout_ws.RECV_SIZE = 1 << 18
    SioReader().run()


# ----------------------------------------------------------------------------------------
# The plain python-socketio server (run as its own process).
# ----------------------------------------------------------------------------------------


def plain_server_main(port: int) -> None:
    """python-socketio alone, as its documentation runs it under gevent (see the module doc)."""
    from gevent import monkey

    monkey.patch_all()
    import uuid
    from datetime import datetime, timezone

    import socketio
    from gevent import pywsgi

    sio = socketio.Server(async_mode="gevent")
    epoch = uuid.uuid4().hex[:12]
    offsets: dict[str, int] = {}

    @sio.on("connect", namespace="/stream")
    def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> Any:
        room = auth.get("conn_id") if isinstance(auth, dict) else None
        if not isinstance(room, str):
            return False
        sio.enter_room(sid, room, namespace="/stream")
        return None

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        if path == "/ready":
            body = b'{"state": "running"}'
        elif path == "/message" and method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            items = json.loads(environ["wsgi.input"].read(length))
            rooms: dict[str, list[dict[str, Any]]] = {}
            for item in items:
                room = item["channel"]
                offsets[room] = offsets.get(room, 0) + 1
                rooms.setdefault(room, []).append({
                    "channel": room,
                    "uuid": str(uuid.uuid4()),
                    "timestamp": datetime.now(timezone.utc).replace(tzinfo=None).isoformat(),
                    "user": item["user"],
                    "message": item.get("message"),
                    "edited": None,
                    "type": "message",
                    "catchup": False,
                    "offset": offsets[room],
                    "epoch": epoch,
                })
            for room, frames in rooms.items():
                sio.emit("message", frames, to=room, namespace="/stream")
            body = json.dumps([f for frames in rooms.values() for f in frames]).encode()
        else:
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    server = pywsgi.WSGIServer(("127.0.0.1", port), socketio.WSGIApp(sio, app))
    server.serve_forever()


class PlainServer:
    """The plain server's process, with the interface fanout_ws.Bench uses of a server."""

    def __init__(self, folder: Path) -> None:
        from tests.support.server import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = folder / "plain.stderr"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> PlainServer:
        with open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), PLAIN_FLAG, str(self.port)],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"plain server exited: {self.stderr[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/ready", timeout=2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("plain server not ready")

    @property
    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        return 0  # gevent's pywsgi has no clean stop on SIGTERM: how it ends says nothing


# ----------------------------------------------------------------------------------------
# The benches: ours (fanout_ws's Bench with socket.io readers) and plain.
# ----------------------------------------------------------------------------------------


class SioBench(fanout_ws.Bench):
    """fanout_ws's bench with socket.io readers, against our server."""

    label = "ours"

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.readers.close()  # fanout_ws's own readers: replaced by socket.io ones
        self.readers = ReaderProcs(args.readers, __file__, READER_FLAG)

    def app_keys(self) -> dict[str, str]:
        keys = super().app_keys()
        for item in self.args.server_key:
            key, _, value = item.partition("=")
            keys[key] = value
        return keys

    def run_load(
        self, label: str, channel: str, clients: int, batch: int, msg_rate: float | None
    ) -> dict[str, Any]:
        """fanout_ws's run, with the door's counters of the run."""
        before = self.door()
        result = super().run_load(label, channel, clients, batch, msg_rate)
        server_cpu = result["cpu_pct_of_core"].get("server") or 0
        # the server's work per delivery, less shaped by what else the machine runs
        result["deliveries_per_server_cpu_s"] = (
            round(result["deliveries_per_s"] * 100 / server_cpu) if server_cpu else None
        )
        after = self.door()
        # batches written straight to the websockets vs through engine.io's queue, and
        # the fan-out passes (how many waited for a pause: see channelstream/sio/pacing.py)
        for key in ("direct_writes", "queued_writes", "fanout_passes", "fanout_passes_paced"):
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

    def describe(self) -> str:
        if self.server is None:
            return f"already running at {self.url}, pid {self.pid}"
        keys = ", ".join(f"{k}={v}" for k, v in self.app_keys().items() if "secret" not in k)
        return (f"pserve on a temp copy of development.ini (local bus); app keys {keys}; "
                "access log " + ("on (as shipped)" if self.args.access_log else "off"))


class PlainBench(SioBench):
    """The same bench against the plain python-socketio server (no /connect: rooms)."""

    label = "plain"

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(argparse.Namespace(**{**vars(args), "url": None}))

    def _start_server(self) -> None:
        self.servers_started += 1
        folder = Path(self.tmp.name) / f"plain{self.servers_started}"
        folder.mkdir()
        self.server = PlainServer(folder).start()
        self.server_log_offset = 0
        self.url = self.server.url
        self.pid = self.server.process.pid

    def connect_many(self, count: int, channel: str, prefix: str) -> tuple[list[str], float]:
        """No /connect here: every client names the room (channel) it joins."""
        return [channel] * count, 1e-9

    def disconnect_many(self, conn_ids: list[str]) -> float:
        return 1e-9

    def hub_counters(self) -> None:
        return None

    def door(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        from importlib.metadata import version

        return (f"python-socketio {version('python-socketio')}, python-engineio "
                f"{version('python-engineio')}, simple-websocket {version('simple-websocket')}: "
                "socketio.Server(async_mode='gevent') in "
                "socketio.WSGIApp under gevent.pywsgi.WSGIServer (access log on), "
                "websockets by simple-websocket; one sio.emit to the room per POST")


# ----------------------------------------------------------------------------------------
# The comparison.
# ----------------------------------------------------------------------------------------


def _range(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}" if values else "-"


class Comparison:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.benches: list[SioBench] = [SioBench(args)]
        if args.plain:
            self.benches.append(PlainBench(args))
        self.runs: list[dict[str, Any]] = []
        self.memory: dict[str, Any] = {}

    def run(self) -> None:
        args = self.args
        phases = [p.strip() for p in args.phases.split(",") if p.strip()]
        if "fanout" in phases:
            for rnd in range(args.rounds):
                for batch in args.batches:
                    order = self.benches if rnd % 2 == 0 else self.benches[::-1]
                    for bench in order:
                        name = f"{bench.label}-fan{args.clients}-b{batch}-r{rnd + 1}"
                        for run in bench.fanout_phase(name, args.clients, batch):
                            run["server"] = bench.label
                            run["round"] = rnd + 1
                            self.runs.append(run)
                            self.progress(run)
        if "memory" in phases:
            for bench in self.benches:
                if bench.server is not None and self.runs:
                    bench.restart_server()  # a fresh process: RSS not shaped by the runs
                self.memory[bench.label] = bench.memory_phase()

    def progress(self, run: dict[str, Any]) -> None:
        if not self.args.json:
            cpu = run["cpu_pct_of_core"]
            print(f"  {run['run']:28} {run['deliveries_per_s']:>10,}/s  cpu server "
                  f"{cpu.get('server')} others {cpu.get('others')}; "
                  f"{run['deliveries_per_server_cpu_s'] or 0:,} per server cpu-s, "
                  f"{run['msgs_per_frame']} msgs/frame"
                  + (f"  PROBLEMS {run['problems']}" if run["problems"] else ""),
                  file=sys.stderr, flush=True)

    def stop(self) -> list[str]:
        problems = []
        for bench in self.benches:
            bench.stop()
            problems += [f"{bench.label}: {p}" for p in bench.server_problems]
        return problems

    def summary(self) -> dict[str, Any]:
        """Per batch size: each server's deliveries/s per round, medians, ratios; the same
        for deliveries per CPU-second of the server."""
        table: dict[str, Any] = {}
        for batch in self.args.batches:
            peak = [r for r in self.runs if r["batch"] == batch and "peak" in r["run"]]
            if not peak:
                continue
            entry: dict[str, Any] = {}
            for key in ("deliveries_per_s", "deliveries_per_server_cpu_s"):
                by: dict[str, list[float]] = {}
                for run in peak:
                    by.setdefault(run["server"], []).append(run[key] or 0)
                medians = {label: statistics.median(values) for label, values in by.items()}
                item: dict[str, Any] = {"values": by, "medians": medians}
                if medians.get("ours") and medians.get("plain"):
                    item["ratio_of_medians"] = round(medians["ours"] / medians["plain"], 2)
                    per_round = []
                    for rnd in sorted({r["round"] for r in peak}):
                        pair = {r["server"]: r[key] for r in peak if r["round"] == rnd}
                        if pair.get("plain") and pair.get("ours"):
                            per_round.append(round(pair["ours"] / pair["plain"], 2))
                    item["ratio_per_round"] = per_round
                entry[key] = item
            paced = [r for r in self.runs if r["batch"] == batch and "paced" in r["run"]]
            if paced:
                latency: dict[str, Any] = {}
                for run in paced:
                    item = latency.setdefault(run["server"], {"deliveries_per_s": [],
                                                              "p50_ms": [], "p99_ms": []})
                    item["deliveries_per_s"].append(run["deliveries_per_s"])
                    item["p50_ms"].append(run["latency_p50_ms"])
                    item["p99_ms"].append(run["latency_p99_ms"])
                entry["paced"] = latency
            entry["runs_with_problems"] = sum(1 for r in peak + paced if r["problems"])
            table[f"{batch} per POST"] = entry
        return table


def conditions(comparison: Comparison) -> dict[str, Any]:
    args = comparison.args
    return {
        **machine_info(),
        "commit": git_state(),
        **{f"server {b.label}": b.describe() for b in comparison.benches},
        "where": (f"all on 127.0.0.1: each server 1 process; {args.readers} socket.io reader "
                  f"process(es) per server (epoll, raw sockets, engine.io v4 over websocket; "
                  f"1 in {args.sample_every} clients decodes and times every message); "
                  f"{args.posters} poster threads in the bench process (keep-alive)"),
        "clients": args.clients,
        "batches": args.batches,
        "rounds": args.rounds,
        "message_bytes": args.message_bytes,
        "duration_s": args.duration,
        "idle_conns": args.idle_conns,
    }


def main() -> None:
    parser = fanout_ws.build_parser(__doc__.splitlines()[0], clients="socket.io clients",
                                    idle_conns=3000, memory_cycles=1)
    parser.set_defaults(batches="1,10", phases="fanout,memory", paced_fraction=0.0,
                        duration=6.0)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each server and batch")
    parser.add_argument("--plain", action=argparse.BooleanOptionalAction, default=True,
                        help="run the plain python-socketio server beside ours")
    parser.add_argument("--server-key", action="append", default=[], metavar="KEY=VALUE",
                        help="an [app:main] key of our server (repeatable)")
    args = fanout_ws.parse_args(parser)
    comparison = Comparison(args)
    try:
        comparison.run()
        summary = comparison.summary()
        cond = conditions(comparison)
    finally:
        problems = comparison.stop()
    if args.json:
        print(json.dumps({"conditions": cond, "runs": comparison.runs,
                          "memory": comparison.memory, "summary": summary,
                          "server_problems": problems}))
        return
    print("socket.io fan-out, ours beside plain python-socketio (namespace /stream, websocket):")
    for key, value in cond.items():
        print(f"  {key:18} {value}")
    for run in comparison.runs:
        print(f"\n[{run['run']}]")
        for key, value in run.items():
            if key != "run":
                print(f"  {key:32} {value}")
    for label, memory in comparison.memory.items():
        print(f"\n[memory {label}: idle socket.io connections]")
        for key, value in memory.items():
            print(f"  {key:32} {value}")
    print("\nsummary (peak deliveries/s, all clients got every message in order unless PROBLEMS):")
    for name, entry in summary.items():
        for key, what in (("deliveries_per_s", "deliveries/s"),
                          ("deliveries_per_server_cpu_s", "deliveries per server CPU-second")):
            item = entry[key]
            line = f"  {args.clients} clients, {name}, {what}: " + "; ".join(
                f"{label} {_range(values)} (median {item['medians'][label]:,.0f})"
                for label, values in item["values"].items())
            per_round = item.get("ratio_per_round")
            if per_round:
                line += (f"; ratio of medians {item['ratio_of_medians']}x (per round "
                         f"{min(per_round)}-{max(per_round)}x)")
            print(line)
        for label, item in entry.get("paced", {}).items():
            print(f"  {args.clients} clients, {name}, paced: {label} "
                  f"{_range(item['deliveries_per_s'])} deliveries/s, latency p50 "
                  f"{min(item['p50_ms'])}-{max(item['p50_ms'])} ms, p99 "
                  f"{min(item['p99_ms'])}-{max(item['p99_ms'])} ms")
        if entry["runs_with_problems"]:
            print(f"    {entry['runs_with_problems']} runs with PROBLEMS")
    for label, memory in comparison.memory.items():
        if "skipped" in memory:
            continue
        print(f"  memory {label}: {memory['kib_per_idle_ws_conn_total']} KiB per idle "
              f"connection ({memory['kib_per_connect_state']} KiB /connect state + "
              f"{memory['kib_per_websocket_own']} KiB socket.io), {memory['ws_opened']} conns"
              + (f"; PROBLEMS {memory['problems']}" if memory.get("problems") else ""))
    print(f"server problems: {problems or 'none'}")


if __name__ == "__main__":
    if READER_FLAG in sys.argv[1:]:
        reader_main()
    elif PLAIN_FLAG in sys.argv[1:]:
        plain_server_main(int(sys.argv[sys.argv.index(PLAIN_FLAG) + 1]))
    else:
        main()
