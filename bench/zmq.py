"""ZMQ streams: raw pyzmq PUSH->PULL against PSI's mflow and channelstream.mflow.

Two-part ``raw-1.0`` messages (a JSON header of ~50 bytes, then a payload
of ``--sizes`` bytes, 100 and 65536 by default) go from a sender process (raw
pyzmq, ``send_multipart`` of prebuilt parts, as fast as ZMQ takes them) to a
receiver process, over tcp://127.0.0.1, high-water mark 100 (mflow's
default queue_size). Each process is a separate Python; every receiver
times its last ``--count`` messages, after a warm-up of 2 % of them.

Paths measured, each ``--runs`` times, interleaved:

- ``raw``            receiver: ``recv_multipart()`` (copy) - the ceiling at 100 B
- ``raw nocopy``     receiver: ``recv_multipart(copy=False)`` - the ceiling at 64 KiB
- ``psi receive``    receiver: PSI mflow ``connect()`` + ``receive()`` (htype dispatch,
                     JSON header decoded, statistics)
- ``ours receive``   receiver: channelstream.mflow ``connect()`` + ``receive()``, same
- ``ours receive nocopy``  the same with ``connect(copy=False)`` (zero-copy parts)
- ``psi m_split``    sender -> PSI's ``m_split`` (python -m mflow.cli.split) -> raw
                     nocopy receiver
- ``ours m_split``   sender -> our ``m_split`` -> raw nocopy receiver (one output, no
                     modulo: m_split forwards with libzmq's proxy, no Python per message)
- ``ours split loop``  the same through m_split's Python loop (what it runs for several
                     outputs or a modulo), one output

Ratios are to the best raw figure of the same size (the ceiling), median of
the runs; ranges are min-max over the runs. CPU columns: CPU time (user +
system, all threads of the process, ZMQ's I/O thread included) per timed
message, of the receiver and of the splitter: a figure that other load on
the machine disturbs much less than the rates. The machine has 2 cores: the
m_split paths run three Python processes (and their ZMQ I/O threads) on
them, the direct paths two.

Targets printed for comparison: our m_split >= 0.8x raw at both sizes, our
receive() >= 0.7x raw. Reference (ANCHORS.md, an earlier 2-core machine of this
kind): raw 297k msg/s at 100 B, 1,455 MB/s at 64 KiB; PSI's m_split 0.34x and
0.59x, PSI's receive() 0.40x.

The service path (a separate section, :func:`service_bench`): a sender
process pushes the same two-part ``raw-1.0`` messages into a ZMQ source of
the real server (``pserve`` on a temporary copy of development.ini, access
log off, the source bound on 127.0.0.1), which publishes each into a
channel that ``--service-clients`` websocket clients joined; one reader
process reads them all (bench/fanout_ws.py's reader: an epoll loop over raw
sockets that counts ``"type":"message"`` in each frame; one client decodes
every frame and checks its offsets). Each ``--service-sizes`` payload (100 B
and 4 KiB: at 64 KiB each frame holds ~87 KB of base64 and the one Python
reader process, not the server, is the limit) is run ``--runs`` times:
``flood`` (the sender pushes as fast as the source takes them: ZMQ's queue
is the back-pressure) and ``paced`` at half the flood's rate. Printed:
messages/s into the source, deliveries/s to the clients (from the first
delivery to the last), what the hub dropped (a slow client loses the oldest
ZMQ messages of its outbox), offset gaps seen, CPU of each process.

Usage: python bench/zmq.py [--sizes 100,65536] [--count-small 300000]
       [--count-large 30000] [--runs 3] [--paths raw,...] [--json]
       [--service-clients 100] [--service-sizes 100,4096] [--service-count-small 20000]
       [--service-count-large 1000] [--no-service | --service-only]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import time

# This file is named zmq.py: its own folder must not shadow pyzmq.
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != HERE]
sys.path.insert(0, REPO)

import zmq  # noqa: E402

HEADER = {"htype": "raw-1.0", "type": "uint8", "shape": [0], "frame": 0}
HWM = 100
PATHS = ["raw", "raw nocopy", "psi receive", "ours receive", "ours receive nocopy",
         "psi m_split", "ours m_split", "ours split loop"]

#: m_split's Python loop (what it runs for several outputs or a modulo), one output.
SPLIT_LOOP = """
import signal, sys, zmq
from channelstream.mflow.split import PULL, PUSH, Endpoint, Output, Splitter, open_socket
context = zmq.Context()
source = open_socket(context, Endpoint(sys.argv[1], PULL, 100, "connect"))
source.setsockopt(zmq.RCVTIMEO, 200)
output = Output(Endpoint(sys.argv[2], PUSH, 100, "bind"),
                open_socket(context, Endpoint(sys.argv[2], PUSH, 100, "bind")))
stop = []
signal.signal(signal.SIGINT, lambda *_: stop.append(1))
Splitter(source, [output]).run(lambda: bool(stop))
"""


def _support():
    spec = importlib.util.spec_from_file_location("_support", os.path.join(HERE, "_support.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the processes -------------------------------------------------------------------------


def sender(address: str, size: int, count: int) -> None:
    """Bind a PUSH socket and send ``count`` messages as fast as possible."""
    context = zmq.Context()
    socket = context.socket(zmq.PUSH)
    socket.set_hwm(HWM)
    socket.setsockopt(zmq.LINGER, 0)
    socket.bind(address)
    header = dict(HEADER, shape=[size])
    parts = [json.dumps(header).encode(), os.urandom(size)]
    send = socket.send_multipart
    for _ in range(count):
        send(parts)
    # keep the socket open until the receiver is done (it reads stdin's EOF)
    sys.stdin.read()
    socket.close()
    context.term()


def receiver(kind: str, address: str, count: int, warmup: int) -> None:
    """Receive ``warmup`` messages, then time ``count``; print one JSON line."""
    if kind.startswith("raw"):
        context = zmq.Context()
        socket = context.socket(zmq.PULL)
        socket.set_hwm(HWM)
        socket.connect(address)
        copy = kind == "raw"
        recv = socket.recv_multipart
        size = sum(len(p) for p in recv(copy=copy))
        for _ in range(warmup - 1):
            recv(copy=copy)
        print("start", flush=True)
        cpu0, start = _cpu(), time.perf_counter()
        for _ in range(count):
            recv(copy=copy)
        elapsed, cpu = time.perf_counter() - start, _cpu() - cpu0
    else:
        if kind.startswith("psi"):
            import mflow
        else:
            from channelstream import mflow
        stream = mflow.connect(address, queue_size=HWM, copy=not kind.endswith("nocopy"))
        receive = stream.receive
        message = receive()
        assert message.data["header"]["htype"] == "raw-1.0", message.data
        size = sum(len(p or b"") for p in message.data["data"]) + len(json.dumps(
            message.data["header"]))
        for _ in range(warmup - 1):
            receive()
        print("start", flush=True)
        cpu0, start = _cpu(), time.perf_counter()
        for _ in range(count):
            receive()
        elapsed, cpu = time.perf_counter() - start, _cpu() - cpu0
        received = message.statistics.messages_received
        assert received == warmup + count, (received, warmup + count)
    print(json.dumps({"seconds": elapsed, "count": count, "message_bytes": size,
                      "cpu_seconds": cpu}), flush=True)


def _cpu() -> float:
    """CPU seconds of this process, all threads (ZMQ's I/O thread included)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(path: str, size: int, count: int, python: str) -> dict:
    """One run of ``path``: start the processes, wait for the receiver's figure."""
    warmup = max(100, count // 50)
    first = f"tcp://127.0.0.1:{free_port()}"
    script = os.path.abspath(__file__)
    procs = []
    try:
        send = subprocess.Popen([python, script, "--role", "sender", "--address", first,
                                 "--size", str(size), "--count", str(warmup + count)],
                                stdin=subprocess.PIPE, cwd=REPO)
        procs.append(send)
        target = first
        splitter = None
        if "split" in path:
            target = f"tcp://127.0.0.1:{free_port()}"
            if path == "ours split loop":
                command = [python, "-c", SPLIT_LOOP]
            else:
                command = [python, "-m", "mflow.cli.split" if path.startswith("psi") else
                           "channelstream.mflow.cli.split"]
            splitter = subprocess.Popen([*command, first, target], cwd=REPO,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append(splitter)
        kind = {"psi receive": "psi", "ours receive": "ours",
                "ours receive nocopy": "ours-nocopy", "raw": "raw"}.get(path, "raw-nocopy")
        recv = subprocess.Popen([python, script, "--role", "receiver", "--kind", kind,
                                 "--address", target, "--count", str(count),
                                 "--warmup", str(warmup)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=REPO)
        procs.append(recv)
        line = recv.stdout.readline()
        split_cpu = _process_cpu(splitter.pid) if splitter else None
        out, err = recv.communicate(timeout=600)
        if splitter:
            split_cpu = _process_cpu(splitter.pid) - split_cpu
        if recv.returncode != 0 or line.strip() != "start":
            raise RuntimeError(f"{path} receiver failed: {err.strip()[-500:]}")
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        for proc in procs:
            if proc is not procs[0] and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs[1:]:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()  # PSI's m_split does not stop on Ctrl-C (its TypeError)
                proc.wait()
        procs[0].stdin.close()
        try:
            procs[0].wait(10)
        except subprocess.TimeoutExpired:  # the receiver failed and left messages unread
            procs[0].kill()
            procs[0].wait()
    rate = result["count"] / result["seconds"]
    return {"msg_s": rate, "mb_s": rate * result["message_bytes"] / 1e6,
            "message_bytes": result["message_bytes"],
            "recv_cpu_us": 1e6 * result["cpu_seconds"] / result["count"],
            "split_cpu_us": None if split_cpu is None else 1e6 * split_cpu / result["count"]}


def _process_cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def versions() -> dict:
    out = {"pyzmq": zmq.__version__, "libzmq": zmq.zmq_version()}
    for name in ("psi-mflow", "numpy"):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:
            out[name] = "missing"
    return out


# -- the service path: ZMQ source -> hub -> websocket clients ------------------------------
#
# Separate from the library paths above: a real server, a ZMQ source door and
# websocket clients read by bench/fanout_ws.py's reader process.

SERVICE_CHANNEL = "zmq-bench"


def service_sender(address: str, size: int, count: int, rate: float) -> None:
    """Connect a PUSH to the source and send ``count`` messages (paced at ``rate``/s if > 0)."""
    context = zmq.Context()
    socket = context.socket(zmq.PUSH)
    socket.set_hwm(HWM)
    socket.setsockopt(zmq.LINGER, -1)
    socket.connect(address)
    parts = [json.dumps(dict(HEADER, shape=[size])).encode(), os.urandom(size)]
    send = socket.send_multipart
    start = time.perf_counter()
    for n in range(count):
        if rate:
            ahead = start + n / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        send(parts)
    elapsed = time.perf_counter() - start
    socket.close()
    context.term()  # waits until the source took everything (linger -1)
    print(json.dumps({"seconds": elapsed, "count": count, "cpu_seconds": _cpu()}), flush=True)


def _fanout_ws():
    spec = importlib.util.spec_from_file_location("fanout_ws", os.path.join(HERE, "fanout_ws.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ServiceBench:
    """One server with a ZMQ source, ``clients`` websockets on its channel, one reader."""

    def __init__(self, clients: int) -> None:
        import tempfile
        from pathlib import Path

        from tests.support.api import ADMIN_SECRET, SECRET
        from tests.support.server import RunningServer

        self.support = _support()
        self.support.raise_nofile()
        fanout = _fanout_ws()
        self.clients = clients
        self.tmp = tempfile.TemporaryDirectory(prefix="zmq-service-")
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.app = {
            "secret": SECRET, "admin_secret": ADMIN_SECRET,
            "zmq.sources": json.dumps([{"address": self.address, "conn_type": "bind",
                                        "channel": SERVICE_CHANNEL, "name": "bench"}]),
        }
        self.server = RunningServer(os.path.join(REPO, "development.ini"), Path(self.tmp.name),
                                    app=self.app)
        self.support.quiet_access_log(self.server.ini)
        self.readers = None
        self.server.start()
        try:
            from channelstream.client import ChannelstreamClient

            self.api = ChannelstreamClient(self.server.url, SECRET, admin_secret=ADMIN_SECRET)
            conn_ids = [self.api.connect(f"zmq-reader-{n}", [SERVICE_CHANNEL])["conn_id"]
                        for n in range(clients)]
            self.readers = self.support.ReaderProcs(1, os.path.join(HERE, "fanout_ws.py"),
                                                    fanout.READER_FLAG)
            host, port = "127.0.0.1", self.server.port
            (opened,) = self.readers.each([{"cmd": "open", "host": host, "port": port,
                                            "conn_ids": conn_ids, "samplers": [0],
                                            "concurrency": 100, "timeout": 60}])
            if opened["opened"] != clients:
                raise RuntimeError(f"websockets: {opened}")
        except BaseException:
            self.close()
            raise

    def door(self) -> dict:
        health = self.server.get("/healthz").json()
        return {"source": health["doors"]["zmq-source:bench"], "hub": health["hub"]}

    def run(self, label: str, size: int, count: int, rate: float, python: str) -> dict:
        """Send ``count`` messages, wait until every client has them (or no progress
        for 10 s), and say what happened."""
        self.readers.all({"cmd": "reset"})
        before = self.door()
        sender = subprocess.Popen(
            [python, os.path.abspath(__file__), "--role", "service-sender", "--address",
             self.address, "--size", str(size), "--count", str(count), "--rate", str(rate)],
            stdout=subprocess.PIPE, text=True, cwd=REPO)
        try:
            cpu = self.support.CpuWatch({"server": self.server.process.pid, "sender": sender.pid,
                                         "reader": self.readers.pids[0]})
            out, _ = sender.communicate(timeout=600)
        finally:
            if sender.poll() is None:  # this bench failed: no sender is left behind
                sender.kill()
                sender.wait()
        sent = json.loads(out.strip().splitlines()[-1])
        expected = count * self.clients
        last, last_change = -1, time.monotonic()
        while True:
            (stats,) = self.readers.all({"cmd": "stats"})
            if stats["messages"] >= expected:
                break
            if stats["messages"] != last:
                last, last_change = stats["messages"], time.monotonic()
            elif time.monotonic() - last_change > 10.0:
                break
            time.sleep(0.1)
        cpu_pct = cpu.percent({"sender": sent["cpu_seconds"]})
        after = self.door()
        received = after["source"]["received"] - before["source"]["received"]
        dropped = after["hub"]["dropped"] - before["hub"]["dropped"]
        span = (stats["last_ns"] - stats["first_ns"]) / 1e9 if stats["first_ns"] else 0.0
        return {
            "run": label, "size": size, "clients": self.clients, "count": count,
            "sender_msg_s": count / sent["seconds"],
            "source_received": received,
            "deliveries": stats["messages"], "expected": expected,
            "deliveries_per_s": stats["messages"] / span if span else 0.0,
            "msg_s_to_each_client": stats["messages"] / span / self.clients if span else 0.0,
            "dropped": dropped, "gaps_one_client": stats["gaps"],
            "per_client_min_max": [stats["min_per_conn"], stats["max_per_conn"]],
            "wire_bytes_per_delivery": stats["bytes"] / max(1, stats["messages"]),
            "server_closes": stats["server_closes"], "cpu_pct_of_core": cpu_pct,
            "machine_contended": cpu_pct["others"] > 15,
        }

    def close(self) -> None:
        if self.readers is not None:
            self.readers.close()
        if self.server.returncode is None:
            self.server.stop()
        self.tmp.cleanup()


def service_bench(args: argparse.Namespace, sizes: list[int]) -> dict:
    """The service path's runs at each size: flood, then paced at half its rate."""
    bench = ServiceBench(args.service_clients)
    runs = []
    try:
        for size in sizes:
            count = args.service_count_small if size < 10000 else args.service_count_large
            bench.run("warm-up", size, max(100, count // 20), 0, sys.executable)
            for _ in range(args.runs):
                flood = bench.run("flood", size, count, 0, sys.executable)
                runs.append(flood)
                rate = 0.5 * flood["msg_s_to_each_client"]
                runs.append(bench.run("paced 0.5x", size, count, rate, sys.executable))
    finally:
        bench.close()
    return {"runs": runs, "server": f"pserve, development.ini, {bench.app['zmq.sources']}, "
            "access log off", "clients": args.service_clients}


def print_service(report: dict) -> None:
    print(f"service path: ZMQ source -> hub -> {report['clients']} websocket clients "
          f"(one reader process); {report['server']}")
    print(f"    {'run':11} {'size':>6} {'msgs':>7} {'sent msg/s':>11} {'msg/s each':>11} "
          f"{'deliveries/s':>13} {'delivered':>10} {'dropped':>8} {'gaps':>5} "
          f"{'cpu % server/reader/sender/others':>34}")
    for run in report["runs"]:
        cpu = run["cpu_pct_of_core"]
        flags = " contended" if run["machine_contended"] else ""
        flags += f" closes {run['server_closes']}" if run["server_closes"] else ""
        print(f"    {run['run']:11} {run['size']:>6} {run['count']:>7} "
              f"{run['sender_msg_s']:>11,.0f} {run['msg_s_to_each_client']:>11,.0f} "
              f"{run['deliveries_per_s']:>13,.0f} "
              f"{run['deliveries'] / run['expected']:>9.1%} {run['dropped']:>8} "
              f"{run['gaps_one_client']:>5} "
              f"{cpu.get('server', 0):>8.0f}/{cpu.get('reader', 0):.0f}/{cpu.get('sender', 0):.0f}"
              f"/{cpu['others']:.0f}{flags}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["bench", "sender", "receiver", "service-sender"],
                        default="bench")
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--kind")
    parser.add_argument("--address")
    parser.add_argument("--size", type=int)
    parser.add_argument("--count", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--sizes", default="100,65536")
    parser.add_argument("--count-small", type=int, default=300000,
                        help="messages timed per run below 10 KB")
    parser.add_argument("--count-large", type=int, default=30000,
                        help="messages timed per run from 10 KB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--service-clients", type=int, default=100,
                        help="websocket clients of the service path")
    parser.add_argument("--service-sizes", default="100,4096",
                        help="payload sizes of the service path (at 64 KiB the one Python "
                        "reader process, not the server, is the limit: ~87 KB frames each)")
    parser.add_argument("--service-count-small", type=int, default=20000,
                        help="messages per service run below 10 KB")
    parser.add_argument("--service-count-large", type=int, default=1000,
                        help="messages per service run from 10 KB")
    service = parser.add_mutually_exclusive_group()
    service.add_argument("--no-service", action="store_true", help="skip the service path")
    service.add_argument("--service-only", action="store_true", help="only the service path")
    args = parser.parse_args()
    if args.role == "sender":
        return sender(args.address, args.size, args.count)
    if args.role == "receiver":
        return receiver(args.kind, args.address, args.count, args.warmup)
    if args.role == "service-sender":
        return service_sender(args.address, args.size, args.count, args.rate)

    support = _support()
    paths = [p.strip() for p in args.paths.split(",")]
    unknown = set(paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown paths {sorted(unknown)}; known: {PATHS}")
    if any(p.startswith("psi") for p in paths) and importlib.util.find_spec("mflow") is None:
        parser.error("PSI's mflow is missing: pip install psi-mflow==1.0.0 (make bench does)")
    sizes = [int(s) for s in args.sizes.split(",")]
    conditions = {**support.machine_info(), **versions(), "git": support.git_state(),
                  "hwm": HWM, "runs": args.runs,
                  "counts": {s: args.count_small if s < 10000 else args.count_large
                             for s in sizes}}
    if args.service_only:
        paths = []
    results: dict[int, dict[str, list[dict]]] = {s: {p: [] for p in paths} for s in sizes}
    for _ in range(args.runs if paths else 0):
        for size in sizes:
            count = conditions["counts"][size]
            for path in paths:
                results[size][path].append(measure(path, size, count, sys.executable))
    report = {}
    for size in sizes if paths else ():
        rows = {}
        for path in paths:
            runs = results[size][path]
            rows[path] = {
                "msg_s": statistics.median(r["msg_s"] for r in runs),
                "msg_s_range": [min(r["msg_s"] for r in runs), max(r["msg_s"] for r in runs)],
                "mb_s": statistics.median(r["mb_s"] for r in runs),
                "message_bytes": runs[0]["message_bytes"],
                "recv_cpu_us": statistics.median(r["recv_cpu_us"] for r in runs),
                "split_cpu_us": None if runs[0]["split_cpu_us"] is None else
                statistics.median(r["split_cpu_us"] for r in runs),
            }
        ceiling = max(rows[p]["msg_s"] for p in ("raw", "raw nocopy") if p in rows) \
            if {"raw", "raw nocopy"} & set(rows) else None
        for path, row in rows.items():
            row["ratio"] = row["msg_s"] / ceiling if ceiling else None
            runs = results[size][path]
            row["ratio_range"] = [min(r["msg_s"] for r in runs) / ceiling,
                                  max(r["msg_s"] for r in runs) / ceiling] if ceiling else None
        report[size] = rows
    service_sizes = [int(s) for s in args.service_sizes.split(",")]
    service = None if args.no_service else service_bench(args, service_sizes)
    if args.json:
        print(json.dumps({"result": report, "service": service, "conditions": conditions}))
        return None
    print("zmq streams:", ", ".join(f"{k}={v}" for k, v in conditions.items()))
    for size, rows in report.items():
        print(f"  payload {size} B (message {next(iter(rows.values()))['message_bytes']} B, "
              f"{conditions['counts'][size]} messages per run, {args.runs} runs)")
        print(f"    {'path':22} {'msg/s (median)':>15} {'range':>21} {'MB/s':>9} "
              f"{'x ceiling':>10} {'range':>13} {'recv CPU':>9} {'split CPU':>10}")
        for path, row in rows.items():
            low, high = row["msg_s_range"]
            ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}"
            ratio_range = "" if row["ratio_range"] is None else \
                f"{row['ratio_range'][0]:.2f}-{row['ratio_range'][1]:.2f}"
            split_cpu = "" if row["split_cpu_us"] is None else f"{row['split_cpu_us']:.2f} us"
            print(f"    {path:22} {row['msg_s']:>15,.0f} {low:>10,.0f}-{high:<10,.0f} "
                  f"{row['mb_s']:>9,.1f} {ratio:>10} {ratio_range:>13} "
                  f"{row['recv_cpu_us']:>6.2f} us {split_cpu:>10}")
    if paths:
        print("  targets: ours m_split >= 0.80x raw at both sizes, ours receive >= 0.70x raw")
    if service is not None:
        print_service(service)
    return None


if __name__ == "__main__":
    main()
