"""G3 streaming server: channelstream.g3 against spt3g's own C++ G3NetworkSender, one run.

Both servers run the same pipeline in their own process (ours in plain
threads, or with ``--servers ours-gevent`` in a gevent monkey-patched
process, as in channelstream's server), in spt3g's
streaming mode (``G3NetworkSender(hostname='*', port=...)``): a Python
source makes a new Timepoint frame per call (``n``: G3Int, ``data``: a
G3String sized so that the whole frame is ``--sizes`` bytes) and the
sender serves it to every connected client. Before the measured frames the
source sends a Housekeeping frame every 5 ms (spt3g accepts clients only
when a frame passes) until every client has its first frame; then it sends
``count`` Timepoints as fast as the clients take them, then ends
(EndProcessing: both drain their queues). Neither drops anything
(``max_queue_size=0``). Flow control is the bench's, the same for both: the
clients publish how many frames they have in a shared memory page, and the
source waits while it is more than ``--window`` bytes of frames ahead of the
slowest one (without it a source faster than its clients just fills
memory: spt3g's queues are unbounded, and ours would be sized to the run).

Each client is a separate process that connects to 127.0.0.1 and measures
receipt: frames/s and MB/s of Timepoint frames from the first one's
arrival to the last one's, summed over clients (total = all frames
delivered / from the first arrival at any client to the last at any).
CPU seconds per GB delivered are printed too, for the sender and for all
the clients together: on a shared machine they vary less than rates do. The
default client is a lean reader over a raw socket (``recv_into`` a
buffer, frame boundaries walked, payloads skipped, no CRC), the same for
both servers; ``--readers spt3g`` uses spt3g's own G3Reader instead (its
decoding is then part of the figure), ``--readers lean,spt3g`` both.

spt3g binds every interface in this mode, so the whole bench runs in a
private network namespace (root; otherwise on the host's network, which
is said). CPU, cores, versions and counts are printed with the figures;
run it a few times on a quiet machine: clients and servers share the cores.
The CRC-32C packages are timed too (``crc32c``, the one channelstream
uses, and ``google-crc32c`` if installed).

The service path (``--service``, or ``--service-only``): the same frames
through channelstream's own server, ``pserve`` on a temporary copy of
development.ini with a G3 source listening (``g3.sources =
tcp://*@127.0.0.1:port``) and the G3 server on (``g3.listen``): a sender
process writes the frames into the source over one TCP connection (with the
same flow control), the hub publishes each as a message of the G3 channel,
and the same lean client processes read ``g3.listen``. Printed as the
``service`` rows, with the server process's CPU per GB delivered and what its
``/healthz`` counted (frames the source read, frames the G3 clients dropped).

Usage: python bench/g3.py [--sizes 1024,1048576] [--clients 1,10]
       [--servers spt3g,ours] [--readers lean] [--seconds 3] [--repeat 1] [--json]
       [--service | --service-only]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from _support import REPO, git_state, machine_info

SENDER_FLAG = "--as-sender"
CLIENT_FLAG = "--as-client"
SERVICE_SENDER_FLAG = "--as-service-sender"
BASE_PORT = 4536
#: Rough first guess of frames/s, to size the counts to ``--seconds``.
GUESS = {1024: 60_000, 1 << 20: 1_500}
#: The service path's counts are these times smaller (it is slower at small frames).
SERVICE_SLOWER = 2
HEADER = struct.Struct("<BIII")
U64 = struct.Struct("<Q")
TIMEPOINT = ord("T")


# -- the sender process --------------------------------------------------------------------------


def sender_main(config: dict[str, Any]) -> None:
    """Run one server's pipeline; JSON lines on stdout; "go" on stdin starts the count."""
    if config["server"] == "ours-gevent":  # the process a service runs: monkey-patched
        from gevent import monkey

        monkey.patch_all()
    if config["server"] == "spt3g":
        from spt3g import core

        sender = core.G3NetworkSender(hostname="*", port=config["port"], max_queue_size=0)
    else:
        from channelstream.g3 import core

        sender = core.G3NetworkSender(
            hostname="*", port=config["port"], max_queue_size=0,
            max_client_bytes=config["window"] + (64 << 20), drain_timeout=600.0,
        )
    payload = "x" * (config["size"] - config["overhead"])
    count = config["count"]
    state = {"phase": "warmup", "sent": 0, "t0": 0.0, "cpu0": 0.0}
    progress = Progress(config["progress"], config["clients"])
    ahead = max(1, config["window"] // config["size"])
    every = config["report_every"]

    def source(frame: Any) -> Any:
        if state["phase"] == "warmup":
            if select.select([sys.stdin], [], [], 0.005)[0]:
                sys.stdin.readline()
                state["phase"] = "run"
                state["t0"], state["cpu0"] = time.monotonic(), time.process_time()
            else:
                warm = core.G3Frame(core.G3FrameType.Housekeeping)
                warm["warmup"] = 1
                return [warm]
        sent = state["sent"]
        if sent >= count:
            return []
        if sent % every == 0:
            while sent - progress.slowest() > ahead:
                time.sleep(0.0001)
        frame = core.G3Frame(core.G3FrameType.Timepoint)
        frame["n"] = state["sent"]
        frame["data"] = payload
        state["sent"] += 1
        return [frame]

    pipe = core.G3Pipeline()
    pipe.Add(source)
    pipe.Add(sender)
    _say({"listening": True})
    pipe.Run()
    _say({"sent": state["sent"], "seconds": time.monotonic() - state["t0"],
          "cpu_s": time.process_time() - state["cpu0"]})


class Progress:
    """Frames received per client, in a shared file (one u64 per client)."""

    def __init__(self, path: str, clients: int) -> None:
        import mmap

        self.file = open(path, "r+b")
        self.map = mmap.mmap(self.file.fileno(), 8 * clients)
        self.clients = clients

    def slowest(self) -> int:
        return min(struct.unpack_from(f"<{self.clients}Q", self.map, 0))

    def report(self, index: int, count: int) -> None:
        struct.pack_into("<Q", self.map, 8 * index, count)


def _frame_bytes(n: int, payload: str) -> bytes:
    from channelstream.g3 import G3Frame, G3FrameType

    frame = G3Frame(G3FrameType.Timepoint)
    frame["n"] = n
    frame["data"] = payload
    return frame.encode()


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# -- the client processes --------------------------------------------------------------------------


def client_main(config: dict[str, Any]) -> None:
    if config["reader"] == "spt3g":
        _spt3g_client(config)
    else:
        _lean_client(config)


def _connect(port: int) -> socket.socket:
    deadline = time.monotonic() + 30
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _lean_client(config: dict[str, Any]) -> None:
    """Walk frame boundaries in a raw byte stream; count Timepoint frames and bytes."""
    sock = _connect(config["port"])
    progress = Progress(config["progress"], config["clients"])
    slot, every = config["slot"], config["report_every"]
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    recv_into = sock.recv_into
    start = end = 0
    skip = 0
    stage = 0  # 0 header, 1 name length, 2 blob length, 3 crc, 4 frame done
    left = frame_type = frame_start_total = 0
    total = 0  # bytes received
    count, want = 0, config["count"]
    first = last = cpu0 = 0.0
    data_bytes = 0
    ready = False
    while count < want:
        if start == end:
            start = end = 0
        elif end > len(buf) - 65536:
            tail = end - start
            buf[:tail] = buf[start:end]
            start, end = 0, tail
        got = recv_into(view[end:])
        if not got:
            break
        end += got
        total += got
        while True:
            if skip:
                take = min(skip, end - start)
                start += take
                skip -= take
                if skip:
                    break
            if stage == 0:
                if end - start < 13:
                    break
                _, _, left, frame_type = HEADER.unpack_from(buf, start)
                frame_start_total = total - (end - start)
                start += 13
                stage = 1 if left else 3
            elif stage == 1 or stage == 2:
                if end - start < 8:
                    break
                (skip,) = U64.unpack_from(buf, start)
                start += 8
                if stage == 2:
                    left -= 1
                    stage = 1 if left else 3
                else:
                    stage = 2
            elif stage == 3:
                skip = 4
                stage = 4
            else:
                stage = 0
                if not ready:
                    ready = True
                    _say({"ready": True})
                if frame_type == TIMEPOINT:
                    last = time.monotonic()
                    if not count:
                        first = last
                        cpu0 = time.process_time()
                    count += 1
                    data_bytes += (total - (end - start)) - frame_start_total
                    if count % every == 0:
                        progress.report(slot, count)
                    if count >= want:
                        break
    _say({"frames": count, "bytes": data_bytes, "first": first, "last": last,
          "cpu_s": time.process_time() - cpu0})


def _spt3g_client(config: dict[str, Any]) -> None:
    from spt3g import core

    state = {"count": 0, "bytes": 0, "first": 0.0, "last": 0.0, "ready": False, "cpu0": 0.0}
    want = config["count"]
    progress = Progress(config["progress"], config["clients"])
    slot, every = config["slot"], config["report_every"]

    def count(frame: Any) -> Any:
        if not state["ready"]:
            state["ready"] = True
            _say({"ready": True})
        if frame.type == core.G3FrameType.Timepoint:
            state["last"] = time.monotonic()
            if not state["count"]:
                state["first"] = state["last"]
                state["cpu0"] = time.process_time()
            state["count"] += 1
            if state["count"] % every == 0:
                progress.report(slot, state["count"])
            if state["count"] >= want:
                core.G3Pipeline.halt_processing()
        if frame.type == core.G3FrameType.EndProcessing:
            return None
        return []

    pipe = core.G3Pipeline()
    pipe.Add(core.G3Reader, filename=f"tcp://127.0.0.1:{config['port']}")
    pipe.Add(count)
    pipe.Run(signal_halt=False)
    size = config["size"]
    _say({"frames": state["count"], "bytes": state["count"] * size,
          "first": state["first"], "last": state["last"],
          "cpu_s": time.process_time() - state["cpu0"]})


# -- the service path: a sender into a source of the real server -------------------------------


def service_sender_main(config: dict[str, Any]) -> None:
    """Write frames into a listening G3 source of the server (one TCP connection);
    Housekeeping frames every 5 ms until "go" on stdin, then ``count`` Timepoints
    under the flow control of :func:`sender_main`, writes of ~256 KiB."""
    from channelstream.g3 import G3Frame, G3FrameType

    sock = _connect(config["source_port"])
    payload = "x" * (config["size"] - config["overhead"])
    count = config["count"]
    progress = Progress(config["progress"], config["clients"])
    ahead = max(1, config["window"] // config["size"])
    every = config["report_every"]
    _say({"connected": True})
    while not select.select([sys.stdin], [], [], 0.005)[0]:
        warm = G3Frame(G3FrameType.Housekeeping)
        warm["warmup"] = 1
        sock.sendall(warm.encode())
    sys.stdin.readline()
    t0, cpu0 = time.monotonic(), time.process_time()
    pending: list[bytes] = []
    size = 0
    for n in range(count):
        if n % every == 0:
            if pending:
                sock.sendall(b"".join(pending))
                pending, size = [], 0
            while n - progress.slowest() > ahead:
                time.sleep(0.0001)
        data = _frame_bytes(n, payload)
        pending.append(data)
        size += len(data)
        if size >= 256 * 1024:
            sock.sendall(b"".join(pending))
            pending, size = [], 0
    if pending:
        sock.sendall(b"".join(pending))
    _say({"sent": count, "seconds": time.monotonic() - t0, "cpu_s": time.process_time() - cpu0})
    sys.stdin.readline()  # the connection stays open until the orchestrator is done
    sock.close()


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServiceServer:
    """``pserve`` on a temporary copy of development.ini with a listening G3
    source and the G3 server, both on free loopback ports."""

    def __init__(self, window: int) -> None:
        import tempfile

        from tests.support.server import RunningServer, free_port

        self.folder = tempfile.TemporaryDirectory(prefix="g3-service-bench-")
        self.source_port, self.g3_port = free_port(), free_port()
        app = {
            "g3.sources": f"tcp://*@127.0.0.1:{self.source_port}",
            "g3.listen": f"127.0.0.1:{self.g3_port}",
            # no drops: the bench's own flow control keeps the sender within the window
            "g3.max_queue_size": "1000000",
            "g3.max_client_bytes": str(window + (256 << 20)),
            "g3.max_frame_size": str(64 << 20),
        }
        self.running = RunningServer(REPO / "development.ini", Path(self.folder.name), app=app)
        self.running.start()

    def doors(self) -> dict[str, Any]:
        return self.running.get("/healthz").json()["doors"]

    def cpu(self) -> float:
        return _process_cpu(self.running.process.pid)

    def close(self) -> None:
        try:
            self.running.stop()
        finally:
            self.running.kill()
            self.folder.cleanup()


def run_service_cell(size: int, clients: int, count: int, overhead: int,
                     window: int) -> dict[str, Any]:
    import tempfile

    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    server = ServiceServer(window)
    try:
        with tempfile.NamedTemporaryFile(dir=shm, prefix="g3bench-") as progress:
            progress.write(b"\0" * 8 * clients)
            progress.flush()
            common = {"size": size, "count": count, "port": server.g3_port,
                      "clients": clients, "progress": progress.name,
                      "report_every": 256 if size < 65536 else 1}
            return _run_service_cell(server, clients, common, overhead, window)
    finally:
        server.close()


def _run_service_cell(server: ServiceServer, clients: int, common: dict[str, Any],
                      overhead: int, window: int) -> dict[str, Any]:
    count, size = common["count"], common["size"]
    sender = _spawn(SERVICE_SENDER_FLAG, {**common, "source_port": server.source_port,
                                          "overhead": overhead, "window": window})
    procs = []
    try:
        _line(sender, 60)  # connected to the source
        procs = [_spawn(CLIENT_FLAG, {**common, "reader": "lean", "slot": k})
                 for k in range(clients)]
        for proc in procs:
            _line(proc, 60)  # ready: it has a warm-up frame
        before = server.doors()
        cpu0 = server.cpu()
        sender.stdin.write("go\n")
        sender.stdin.flush()
        results = [_line(proc, 600) for proc in procs]
        cpu = server.cpu() - cpu0
        sent = _line(sender, 600)
        after = server.doors()
        sender.stdin.write("done\n")
        sender.stdin.flush()
    finally:
        for proc in [*procs, sender]:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    frames = sum(r["frames"] for r in results)
    nbytes = sum(r["bytes"] for r in results)
    elapsed = max(r["last"] for r in results) - min(r["first"] for r in results)
    short = [r["frames"] for r in results if r["frames"] != count]
    source = after["g3-source:1"]["frames"] - before["g3-source:1"]["frames"]
    dropped = after["g3-server"]["dropped"] - before["g3-server"]["dropped"]
    problems = f"clients short of {count} frames: {short}" if short else ""
    return {
        "server": "service", "reader": "lean", "size": size, "clients": clients,
        "frames_per_s": round(frames / elapsed) if elapsed > 0 else None,
        "mb_per_s": round(nbytes / elapsed / 1e6, 1) if elapsed > 0 else None,
        "seconds": round(elapsed, 3),
        "delivered": frames,
        "sender_cpu_pct": round(100 * cpu / elapsed) if elapsed > 0 else None,
        # the server process's CPU seconds per GB delivered, and the clients'
        "sender_cpu_s_per_gb": round(cpu / (nbytes / 1e9), 3) if nbytes else None,
        "clients_cpu_s_per_gb": round(sum(r["cpu_s"] for r in results) / (nbytes / 1e9), 3)
        if nbytes else None,
        "source_frames": source,
        "dropped": dropped,
        "feeder_cpu_s": round(sent["cpu_s"], 3),
        "problems": problems,
    }


# -- the orchestrator ------------------------------------------------------------------------------


def _spawn(flag: str, config: dict[str, Any]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), flag, json.dumps(config)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )


def _line(proc: subprocess.Popen, timeout: float) -> dict[str, Any]:
    ready = select.select([proc.stdout], [], [], timeout)[0]
    line = proc.stdout.readline() if ready else ""
    if not line:
        code = proc.poll()
        raise RuntimeError(f"process {proc.pid} ended (exit {code})" if code is not None
                           else f"process {proc.pid} said nothing for {timeout} s")
    return json.loads(line)


def run_cell(server: str, reader: str, size: int, clients: int, count: int, port: int,
             overhead: int, window: int) -> dict[str, Any]:
    import tempfile

    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.NamedTemporaryFile(dir=shm, prefix="g3bench-") as progress:
        progress.write(b"\0" * 8 * clients)
        progress.flush()
        common = {"size": size, "count": count, "port": port, "clients": clients,
                  "progress": progress.name, "report_every": 256 if size < 65536 else 1}
        return _run_cell(server, reader, clients, common, overhead, window)


def _run_cell(server: str, reader: str, clients: int, common: dict[str, Any], overhead: int,
              window: int) -> dict[str, Any]:
    count, size = common["count"], common["size"]
    sender = _spawn(SENDER_FLAG, {**common, "server": server, "overhead": overhead,
                                  "window": window})
    procs = []
    try:
        _line(sender, 60)  # listening
        procs = [_spawn(CLIENT_FLAG, {**common, "reader": reader, "slot": k})
                 for k in range(clients)]
        for proc in procs:
            _line(proc, 60)  # ready: it has a warm-up frame, so it is connected
        sender.stdin.write("go\n")
        sender.stdin.flush()
        results = [_line(proc, 600) for proc in procs]
        sent = _line(sender, 600)
    finally:
        for proc in [*procs, sender]:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    frames = sum(r["frames"] for r in results)
    nbytes = sum(r["bytes"] for r in results)
    elapsed = max(r["last"] for r in results) - min(r["first"] for r in results)
    short = [r["frames"] for r in results if r["frames"] != count]
    return {
        "server": server, "reader": reader, "size": size, "clients": clients,
        "frames_per_s": round(frames / elapsed) if elapsed > 0 else None,
        "mb_per_s": round(nbytes / elapsed / 1e6, 1) if elapsed > 0 else None,
        "seconds": round(elapsed, 3),
        "delivered": frames,
        "sender_cpu_pct": round(100 * sent["cpu_s"] / sent["seconds"]) if sent["seconds"] else None,
        # CPU seconds per GB delivered: the sender's, and all clients' together
        "sender_cpu_s_per_gb": round(sent["cpu_s"] / (nbytes / 1e9), 3) if nbytes else None,
        "clients_cpu_s_per_gb": round(sum(r["cpu_s"] for r in results) / (nbytes / 1e9), 3)
        if nbytes else None,
        "problems": f"clients short of {count} frames: {short}" if short else "",
    }


def crc_figures() -> dict[str, Any]:
    import crc32c

    impls = {"crc32c": lambda data, c: crc32c.crc32c(data, c)}
    try:
        import google_crc32c

        impls["google-crc32c"] = lambda data, c: google_crc32c.extend(c, data)
    except ImportError:
        pass
    out: dict[str, Any] = {}
    for size in (1024, 1 << 20, 16 << 20):
        data = os.urandom(size)
        for name, func in impls.items():
            rounds = max(20, (256 << 20) // size)
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                for _ in range(rounds):
                    func(data, 0xFFFFFFFF)
                best = min(best, time.perf_counter() - t0)
            out[f"{name} {size}"] = f"{rounds * size / best / 1e9:.1f} GB/s"
    return out


def conditions(args: argparse.Namespace, netns: str) -> dict[str, Any]:
    from importlib.metadata import version

    info = machine_info()
    for package in ("spt3g", "numpy", "crc32c", "google-crc32c"):
        try:
            info[package] = version(package)
        except Exception:
            info[package] = "not installed"
    info["channelstream"] = git_state()
    info["network"] = netns
    info["load_before"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["counts"] = "; ".join(f"{size} B: {c} frames to 1 client, {max(1000, c // 3)} to "
                               "each of more" for size, c in args.counts.items())
    info["window"] = f"{args.window} bytes of frames ahead of the slowest client"
    return info


def _enter_netns() -> str:
    if os.geteuid() != 0:
        return "the host's (not root: no private namespace); spt3g binds every interface"
    try:
        from tests.g3.netns import enter_private_netns

        enter_private_netns()
    except OSError as error:
        return f"the host's ({error})"
    return "a private network namespace (lo only)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,1048576", help="frame sizes in bytes")
    parser.add_argument("--clients", default="1,10", help="client counts")
    parser.add_argument("--servers", default="spt3g,ours",
                        help="spt3g, ours (threads), ours-gevent (a monkey-patched process)")
    parser.add_argument("--readers", default="lean", help="lean, spt3g (comma separated)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="about how long each cell's transfer lasts (sizes the counts)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of every cell")
    parser.add_argument("--window", type=int, default=32 << 20,
                        help="bytes of frames the source may be ahead of the slowest client")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--service", action="store_true",
                        help="also the service path: a source of the real server -> hub -> "
                             "clients of g3.listen")
    parser.add_argument("--service-only", action="store_true", help="only the service path")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    clients = [int(c) for c in args.clients.split(",")]
    servers = [s.strip() for s in args.servers.split(",")]
    readers = [r.strip() for r in args.readers.split(",")]
    args.counts = {size: max(1000, int(GUESS.get(size, (1 << 30) // size * 2) * args.seconds))
                   for size in sizes}
    if args.service_only:
        servers, netns = [], "the host's (the service path binds 127.0.0.1 only)"
    else:
        netns = _enter_netns()
    overheads = {size: len(_frame_bytes(0, "")) for size in sizes}
    results = []
    port = BASE_PORT
    for size in sizes:
        for n_clients in clients:
            count = args.counts[size] if n_clients == 1 else max(1000, args.counts[size] // 3)
            for _ in range(args.repeat):
                for reader in readers:
                    for server in servers:
                        port += 1
                        result = run_cell(server, reader, size, n_clients, count, port,
                                          overheads[size], args.window)
                        results.append(result)
                        if not args.json:
                            print(_row(result), flush=True)
                if args.service or args.service_only:
                    result = run_service_cell(size, n_clients, count // SERVICE_SLOWER,
                                              overheads[size], args.window)
                    results.append(result)
                    if not args.json:
                        print(_row(result), flush=True)
    if args.service or args.service_only:
        servers = [*servers, "service"]
    cond = conditions(args, netns)
    crc = crc_figures()
    if args.json:
        print(json.dumps({"conditions": cond, "results": results, "crc": crc}))
        return
    print("\nconditions:")
    for key, value in cond.items():
        print(f"  {key:14} {value}")
    print("CRC-32C (best of 3):")
    for key, value in crc.items():
        print(f"  {key:24} {value}")
    print("\nsummary (frames/s | MB/s), reference spt3g on an earlier machine: 1 KiB 64.8k/s "
          "to 1, 183k/s to 10; 1 MiB 1.7 GB/s to 1, 2.9 GB/s to 10:")
    for size in sizes:
        for n_clients in clients:
            cells = [r for r in results if r["size"] == size and r["clients"] == n_clients]
            line = []
            for server in servers:
                mine = [r for r in cells if r["server"] == server]
                fps = [r["frames_per_s"] or 0 for r in mine]
                mbs = [r["mb_per_s"] or 0 for r in mine]
                line.append(f"{server} {min(fps):,}-{max(fps):,}/s {min(mbs):,}-{max(mbs):,} MB/s")
            print(f"  {size:>8} B to {n_clients:>2}: " + " | ".join(line))


def _row(r: dict[str, Any]) -> str:
    service = r["server"] == "service"
    extra = (f"; the server read {r['source_frames']} frames from its source, its G3 "
             f"clients dropped {r['dropped']}" if service else "")
    return (f"{r['server']:7} {r['reader']:5} {r['size']:>8} B to {r['clients']:>2} clients: "
            f"{r['frames_per_s'] or 0:>9,} frames/s {r['mb_per_s'] or 0:>9,} MB/s "
            f"({r['delivered']} frames in {r['seconds']} s, {'server' if service else 'sender'}"
            f" CPU {r['sender_cpu_pct']}%, CPU s/GB {'server' if service else 'sender'} "
            f"{r['sender_cpu_s_per_gb']} clients {r['clients_cpu_s_per_gb']}{extra}) "
            f"{r['problems']}")


if __name__ == "__main__":
    if sys.argv[1:2] == [SENDER_FLAG]:
        sender_main(json.loads(sys.argv[2]))
    elif sys.argv[1:2] == [SERVICE_SENDER_FLAG]:
        service_sender_main(json.loads(sys.argv[2]))
    elif sys.argv[1:2] == [CLIENT_FLAG]:
        client_main(json.loads(sys.argv[2]))
    else:
        main()
