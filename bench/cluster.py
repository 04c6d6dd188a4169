"""Scale-out bench: one websocket fan-out on hub.engine = local and redis, 1 and 2 processes.

Everything runs on 127.0.0.1 of this machine, as separate processes: three
``pserve`` servers on temporary copies of development.ini (``L``: local bus;
``A`` and ``B``: the Redis engine with one ``redis.key_prefix`` unique to this
run, on ``--redis-url``), the Redis server that is already running there,
websocket reader processes and poster threads borrowed from
``bench/fanout_ws.py`` (its :class:`Bench`: one epoll reader process per
server that has clients, 1 client in ``--sample-every`` decoding and timing
every message; keep-alive signed posters in this process). The setups
(``--setups``), in this order, each bounded in time and count:

- ``local1``: posters and ``--clients`` websockets on L;
- ``redis1``: the same on A (the process follows the channel in Redis:
  every publish goes to Redis and comes back through its pub/sub);
- ``redis2``: posters on A, every websocket on B;
- ``redis2half``: posters on A, half the websockets on A, half on B: one
  run gives the latency on the same process and across processes;
- ``engine``: posters on A, ``--engine-clients`` websockets (one on A, one
  on B by default), every one timing every message: the latency the engine
  adds, at half the peak of a fan-out too light to hide it;
- ``publish``: posters on L, then on A, flat out to a channel nobody
  follows: the server's and Redis's cost of a publish alone;
- ``probe``: one websocket per following process, posts paced at
  ``--probe-posts-per-s``: L alone; A with 0, 1 (B), 2 (A, B) following
  processes: Redis's cost per publish and per following process at one
  rate, a follower's cost per message, the latency of one hop.

Before the servers start, two floors of this machine: one small send to
each of ``--clients`` loopback sockets in plain Python (:func:`send_floor`:
the least a fan-out pass costs) and a process woken 200 times a second by a
one-byte message (:func:`wake_floor`: what each awaited event costs, plain
and under gevent); the report sets every paced run beside the CPU its sends
alone would need to reach each client within 10 ms (:func:`floor_bound`).

Each fan-out setup runs every ``--batches`` size flat out for ``--duration``
seconds, then paced at ``--paced-fraction`` of that peak, or at
``--paced-deliveries`` per second (where the latency is read). For every
run: deliveries/s; CPU seconds of each server (psutil), per delivery (its
own clients' deliveries) and per published message;
Redis's own CPU (``INFO cpu``: used_cpu_sys + used_cpu_user, less what it
used while idle before the run) per publish, its commands per publish, the
µs its ``evalsha`` calls took inside Redis and the ``SCRIPT EXISTS`` per
POST (``INFO commandstats``); POST-to-receive latency p50/p99 per reader
(same process as the posters, or across); the CPU the rest of the machine
took (``others``). Then what those costs project for N nodes, with the
arithmetic. Every run checks that each client got every message in offset
order (fanout_ws's checks), and lists problems.

Redis is shared with anything else that uses it: a run whose ``evalsha``
count differs from its publishes is flagged ``redis_shared`` (its Redis CPU
then includes other clients' work). The keys of this run's prefix are
deleted at the end. Without Redis (or psutil), prints "skipped" and exits 0.

Usage: python bench/cluster.py [--clients 1000] [--batches 1,10] [--duration 5]
       [--publish-seconds 3] [--probe-posts-per-s 200]
       [--redis-url redis://127.0.0.1:6379/0]
       [--engine-clients 2] [--paced-fraction 0.5 | --paced-deliveries N]
       [--setups local1,redis1,redis2,redis2half,engine,publish,probe]
       [--json] [--save FILE] [--report FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import REPO, CpuWatch, git_state, machine_info, percentile, quiet_access_log
from fanout_ws import Bench

SETUPS = ("local1", "redis1", "redis2", "redis2half", "engine", "publish", "probe")
NODES = (1, 2, 4, 8, 16)


# ----------------------------------------------------------------------------------------
# Servers, Redis, CPU snapshots
# ----------------------------------------------------------------------------------------


class Server:
    """One pserve process (tests.support.server.RunningServer) and where its log was read."""

    def __init__(self, name: str, engine: str, folder: Path, app: dict[str, str],
                 access_log: bool) -> None:
        from tests.support.server import RunningServer

        folder.mkdir()
        self.name = name
        self.engine = engine
        self.running = RunningServer(REPO / "development.ini", folder, app=app)
        if not access_log:
            quiet_access_log(self.running.ini)
        self.log_offset = 0

    def start(self) -> None:
        self.running.start()

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def pid(self) -> int:
        return self.running.process.pid

    def new_log_problems(self) -> list[str]:
        text = self.running.stderr
        new, self.log_offset = text[self.log_offset:], len(text)
        bad = [
            f"{self.name}: {line}" for line in new.splitlines()
            if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")
            or ("WARNING" in line and "channelstream.engines" in line)
        ]
        if self.running.returncode is not None:
            bad.append(f"{self.name}: exited with {self.running.returncode}")
        return bad

    def bus_status(self) -> dict[str, Any] | None:
        """The engine's counters from /healthz (None if not shown)."""
        import requests

        try:
            doc = requests.get(self.url + "/healthz", timeout=5).json()
        except Exception:
            return None
        found = _find_key(doc, "bus")
        return found if isinstance(found, dict) else None


def _find_key(doc: Any, key: str) -> Any:
    """The engine's status in /healthz: a dict naming its ``bus`` with counters, depth first."""
    if isinstance(doc, dict):
        if key in doc and isinstance(doc[key], str) and "published" in doc:
            return doc
        if key in doc and isinstance(doc[key], dict):
            return doc[key]
        for value in doc.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    elif isinstance(doc, list):
        for value in doc:
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


class RedisWatch:
    """Redis's own figures: CPU (INFO cpu), commands (INFO stats/commandstats), its pid."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
        info = self.client.info("server")
        self.version = info.get("redis_version")
        self.pid = info.get("process_id")
        self.idle_cpu_per_s = 0.0
        self.idle_commands_per_s = 0.0
        self.proc = None
        try:
            import psutil

            proc = psutil.Process(int(self.pid))
            if "redis" in " ".join([*proc.cmdline(), proc.name()]):
                self.proc = proc  # Redis runs on this machine: psutil sees it too
        except Exception:
            self.proc = None

    def measure_idle(self, seconds: float = 2.0) -> None:
        """Redis's CPU while this bench does nothing (its own and other clients' work)."""
        first = self.snap()
        time.sleep(seconds)
        last = self.snap()
        self.idle_cpu_per_s = max(0.0, (last["cpu_s"] - first["cpu_s"]) / seconds)
        self.idle_commands_per_s = (last["commands"] - first["commands"]) / seconds

    def snap(self) -> dict[str, float]:
        cpu = self.client.info("cpu")
        stats = self.client.info("commandstats")
        total = self.client.info("stats")["total_commands_processed"]

        def calls(name: str) -> tuple[int, int]:
            entry = stats.get(f"cmdstat_{name}") or {}
            return entry.get("calls", 0), entry.get("usec", 0)

        evalsha, evalsha_us = calls("evalsha")
        script_exists, _ = calls("script|exists")
        result = {
            "cpu_s": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
            "commands": total,
            "evalsha": evalsha,
            "evalsha_us": evalsha_us,
            "script_exists": script_exists,
        }
        if self.proc is not None:
            try:
                times = self.proc.cpu_times()
                result["psutil_cpu_s"] = times.user + times.system
            except Exception:
                pass
        return result

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        batch: list[bytes] = []
        for key in self.client.scan_iter(match=prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += self.client.delete(*batch)
                batch = []
        if batch:
            deleted += self.client.delete(*batch)
        return deleted


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    import psutil

    result = {}
    for name, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
            result[name] = times.user + times.system
        except psutil.Error:
            result[name] = float("nan")
    return result


def us(seconds: float, count: int) -> float | None:
    """Microseconds per item."""
    return round(1e6 * seconds / count, 2) if count else None


# ----------------------------------------------------------------------------------------
# The kernel's floor of a fan-out pass
# ----------------------------------------------------------------------------------------

#: A process that reads every byte of its loopback sockets with epoll, then prints
#: its CPU seconds (the receiving side of :func:`send_floor`).
_DRAIN = """
import select, socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
poller, by_fd = select.epoll(), {}
for s in socks:
    s.setblocking(False)
    poller.register(s.fileno(), select.EPOLLIN)
    by_fd[s.fileno()] = s
cpu0, left = None, count
while left:
    for fd, _ in poller.poll():
        if cpu0 is None:
            cpu0 = time.process_time()
        try:
            data = by_fd[fd].recv(1 << 16)
        except BlockingIOError:
            continue
        if not data:
            poller.unregister(fd)
            left -= 1
print(time.process_time() - (cpu0 or 0.0), flush=True)
"""


def send_floor(clients: int, frame_bytes: int = 150, passes: int = 200) -> dict[str, Any]:
    """What one fan-out pass costs the kernel here: a ``frame_bytes`` send to each
    of ``clients`` loopback TCP sockets (TCP_NODELAY), in plain Python with
    blocking sockets and nothing else, read by a process draining them with
    epoll; ``passes`` passes back to back. The least a server pays per write, and
    its reader per read, on this machine."""
    import socket
    import subprocess

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(clients)
    port = listener.getsockname()[1]
    drain = subprocess.Popen([sys.executable, "-c", _DRAIN, str(port), str(clients)],
                             stdout=subprocess.PIPE, text=True)
    socks = []
    try:
        listener.settimeout(30)
        for _ in range(clients):
            sock = listener.accept()[0]
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(sock)
        frame = b"x" * frame_bytes
        for sock in socks:  # warm-up
            sock.sendall(frame)
        wall, cpu = time.perf_counter(), time.thread_time()
        for _ in range(passes):
            for sock in socks:
                sock.sendall(frame)
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    finally:
        for sock in socks:
            sock.close()
        listener.close()
        out, _ = drain.communicate(timeout=60)
    sends = passes * clients
    try:
        reader_us = round(float(out.strip()) * 1e6 / sends, 2)
    except ValueError:
        reader_us = None
    return {"clients": clients, "frame_bytes": frame_bytes, "passes": passes,
            "us_per_send": round(cpu * 1e6 / sends, 2),
            "ms_per_pass_wall": round(wall * 1e3 / passes, 2),
            "reader_us_per_send": reader_us}


#: A process woken by each small message on a loopback socket (``plain``: a blocking
#: ``recv``; ``gevent``: the same under gevent's patched socket, as the servers
#: read); prints its CPU seconds per message (see :func:`wake_floor`).
_WOKEN = """
import sys
if sys.argv[1] == "gevent":
    from gevent import monkey
    monkey.patch_all()
import socket, time
count = int(sys.argv[2])
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
print(listener.getsockname()[1], flush=True)
conn = listener.accept()[0]
conn.recv(1)
cpu, got = time.process_time(), 0
while got < count:
    data = conn.recv(65536)
    if not data:
        break
    got += len(data)
print((time.process_time() - cpu) / max(1, got), flush=True)
"""


def wake_floor(rate: float = 200.0, count: int = 600) -> dict[str, Any]:
    """What a wake-up costs here: a process reading one small message at a time
    from a loopback socket, ``rate`` messages/s, its CPU per message (``plain``
    Python and under gevent). On a VM each wake from idle costs the guest far
    more than the read itself; a server pays it per event it waits for."""
    import socket
    import subprocess

    result: dict[str, Any] = {"rate": rate, "messages": count}
    for mode in ("plain", "gevent"):
        woken = subprocess.Popen([sys.executable, "-c", _WOKEN, mode, str(count)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            port = int(woken.stdout.readline())
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(b"s")
                time.sleep(0.2)
                start = time.monotonic()
                for i in range(count):
                    sock.sendall(b"m")
                    delay = start + (i + 1) / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                out = woken.stdout.readline()
            result[f"{mode}_us_per_wake"] = round(float(out) * 1e6, 1)
        except (ValueError, OSError) as err:
            result[f"{mode}_us_per_wake"] = None
            result.setdefault("errors", []).append(f"{mode}: {err!r}")
        finally:
            woken.wait(timeout=30)
    return result


def floor_bound(floor: dict[str, Any], clients: int, msgs_per_s: float, batch: int,
                within_ms: float = 10.0) -> dict[str, Any]:
    """The least CPU a process with ``clients`` websockets spends on its sends to
    keep every client within ``within_ms`` of each POST, at the floor's cost per
    send: a pass takes ``clients`` x that; each client needs a write per POST, or
    at least one every ``within_ms`` less a pass when POSTs come faster."""
    pass_ms = clients * floor["us_per_send"] / 1000
    posts_per_s = msgs_per_s / batch
    if pass_ms >= within_ms:
        return {"pass_ms": round(pass_ms, 2), "writes_per_client_s": None, "pct_of_core": None}
    writes = min(posts_per_s, 1000 / (within_ms - pass_ms))
    return {"pass_ms": round(pass_ms, 2), "writes_per_client_s": round(writes, 1),
            "pct_of_core": round(clients * writes * floor["us_per_send"] / 1e4, 1)}


# ----------------------------------------------------------------------------------------
# fanout_ws's Bench over several servers: connect/listen on some, post on one
# ----------------------------------------------------------------------------------------


class ClusterBench(Bench):
    """fanout_ws's Bench whose clients connect to ``listen`` and whose posters post to ``post``.

    One reader process per listening server; a client's ``/connect`` and its
    ``/ws`` go to the same server (connections are not shared across
    processes). Each timed run is wrapped with CPU and Redis snapshots.
    """

    def __init__(self, args: argparse.Namespace, *, label: str, post: Server,
                 listen: list[Server], servers: list[Server], redis: RedisWatch | None) -> None:
        ns = argparse.Namespace(**vars(args))
        ns.url = (listen or [post])[0].url
        ns.pid = None
        ns.readers = max(1, len(listen))
        super().__init__(ns)
        self.label = label
        self.post = post
        self.listen = listen
        self.servers = servers  # every server whose log and CPU we watch
        self.redis = redis
        self.home = self.url
        self.pid = (listen or [post])[0].pid
        self.where: dict[str, int] = {}  # conn_id -> index in listen
        self.made: set[str] = set()  # channels created on the posters' process

    # -- where things go ----------------------------------------------------------------------

    def connect_many(self, count: int, channel: str, prefix: str) -> tuple[list[str], float]:
        """``count`` /connects spread over ``listen``; a refused one is a problem, not the end.

        (fanout_ws's raises on the first refusal and forgets the connections it made.)
        """
        shares = [count // len(self.listen) + (1 if k < count % len(self.listen) else 0)
                  for k in range(len(self.listen))]
        jobs = [(k, i) for k, share in enumerate(shares) for i in range(share)]
        workers = min(self.args.connect_concurrency, len(jobs)) or 1
        deadline = time.monotonic() + self.args.connect_timeout
        ids: list[str] = []
        errors: list[str] = []

        def work(first: int) -> None:
            from channelstream.client import ChannelstreamClient

            apis = [ChannelstreamClient(s.url, self.args.secret, timeout=30) for s in self.listen]
            try:
                for k, i in jobs[first::workers]:
                    if time.monotonic() > deadline:
                        errors.append(f"/connect: not done within {self.args.connect_timeout} s")
                        return
                    try:
                        answer = apis[k].connect(
                            f"{prefix}{self.listen[k].name}-{i}", [channel],
                            info={"include_users": False, "include_history": False})
                    except Exception as exc:
                        errors.append(f"/connect on {self.listen[k].name}: {exc!r}")
                        continue
                    self.where[answer["conn_id"]] = k  # one dict store: thread-safe
                    ids.append(answer["conn_id"])
            finally:
                for api in apis:
                    api.close()

        started = time.monotonic()
        self._threads(work, range(workers))
        if errors:
            self.server_problems.append(
                f"{len(errors)} of {count} /connect calls failed, first: {errors[0]}")
        return ids, time.monotonic() - started

    def disconnect_many(self, conn_ids: list[str]) -> float:
        elapsed = 0.0
        for k, server in enumerate(self.listen):
            mine = [c for c in conn_ids if self.where.get(c) == k]
            if not mine:
                continue
            self.url = server.url
            try:
                elapsed += super().disconnect_many(mine)
            finally:
                self.url = self.home
        for conn_id in conn_ids:
            self.where.pop(conn_id, None)
        return elapsed

    def open_websockets(self, conn_ids: list[str], sample_every: int) -> dict[str, Any]:
        from urllib.parse import urlsplit

        parts: list[list[str]] = [[] for _ in self.listen]
        samplers: list[list[int]] = [[] for _ in self.listen]
        for conn_id in conn_ids:
            k = self.where[conn_id]
            if sample_every and len(parts[k]) % sample_every == 0:
                samplers[k].append(len(parts[k]))
            parts[k].append(conn_id)
        cmds = []
        for server, part, sample in zip(self.listen, parts, samplers, strict=True):
            address = urlsplit(server.url)
            cmds.append({"cmd": "open", "host": address.hostname, "port": address.port,
                         "conn_ids": part, "samplers": sample,
                         "concurrency": self.args.open_concurrency,
                         "timeout": self.args.connect_timeout})
        answers = self.readers.each(cmds)
        failed = sum(a["failed"] for a in answers)
        if failed:
            errors = [e for a in answers for e in a["errors"]]
            self.server_problems.append(
                f"{failed} of {len(conn_ids)} websocket handshakes failed, first: {errors[:3]}")
        return {"opened": sum(a["opened"] for a in answers), "failed": failed,
                "seconds": max(a["seconds"] for a in answers),
                "samplers": sum(len(s) for s in samplers)}

    def post_run(self, channel: str, batch: int, posters: int, duration: float,
                 msg_rate: float | None) -> dict[str, Any]:
        self.url = self.post.url
        if not self.listen and channel not in self.made:
            # Nobody follows the channel: it must exist, or a POST to it is echoed
            # and delivered nowhere (as in channelstream 0.7.1).
            with self.client() as api:
                api.channel_config({channel: {}})
            self.made.add(channel)
        try:
            return super().post_run(channel, batch, posters, duration, msg_rate)
        finally:
            self.url = self.home

    def hub_counters(self) -> dict[str, int] | None:
        total: dict[str, int] | None = None
        for server in self.listen:
            self.url = server.url
            try:
                counters = super().hub_counters()
            finally:
                self.url = self.home
            if counters is None:
                return None
            total = counters if total is None else {k: total[k] + counters[k] for k in total}
        return total

    def check_server_log(self) -> list[str]:
        bad = [line for server in self.servers for line in server.new_log_problems()]
        self.server_problems.extend(bad[:10])
        return bad

    # -- snapshots --------------------------------------------------------------------------------

    def snap(self) -> dict[str, Any]:
        mine = {f"reader{i}": pid for i, pid in enumerate(self.readers.pids)}
        mine["bench"] = os.getpid()
        return {
            "t": time.monotonic(),
            "machine_busy_s": CpuWatch._machine()[0],
            "mine": cpu_seconds(mine),
            "cpu": cpu_seconds({s.name: s.pid for s in self.servers}),
            "redis": self.redis.snap() if self.redis else None,
            "bus": {s.name: s.bus_status() for s in self.servers if s.engine == "redis"},
        }

    def costs(self, before: dict[str, Any], after: dict[str, Any], msgs: int, posts: int,
              deliveries_by_server: dict[str, int]) -> dict[str, Any]:
        """CPU per delivery and per publish of each server; Redis's per publish."""
        seconds = after["t"] - before["t"]
        result: dict[str, Any] = {"window_s": round(seconds, 2)}
        servers = {}
        involved = {self.post.name, *(s.name for s in self.listen)}
        total_cpu = 0.0
        for name in after["cpu"]:
            cpu = after["cpu"][name] - before["cpu"][name]
            if name not in involved:
                if cpu > 0.05 * seconds:
                    result.setdefault("idle_servers_cpu_s", {})[name] = round(cpu, 3)
                continue
            total_cpu += cpu
            delivered = deliveries_by_server.get(name, 0)
            servers[name] = {
                "cpu_s": round(cpu, 3),
                "cpu_pct_of_core": round(100 * cpu / seconds, 1),
                "us_per_publish": us(cpu, msgs),
                "us_per_delivery": us(cpu, delivered),
                "deliveries": delivered,
            }
        result["servers"] = servers
        # What the rest of the machine took (not the servers, readers, posters, Redis).
        ours = sum(after["cpu"][n] - before["cpu"][n] for n in after["cpu"])
        ours += sum(after["mine"][n] - before["mine"][n] for n in after["mine"])
        if before["redis"] and after["redis"]:
            ours += after["redis"]["cpu_s"] - before["redis"]["cpu_s"]
        busy = after["machine_busy_s"] - before["machine_busy_s"]
        result["others_pct_of_core"] = round(max(0.0, 100 * (busy - ours) / seconds), 1)
        result["bench_pct_of_core"] = {
            n: round(100 * (after["mine"][n] - before["mine"][n]) / seconds, 1)
            for n in after["mine"]}
        delivered = sum(deliveries_by_server.values())
        result["all_servers"] = {"cpu_s": round(total_cpu, 3),
                                 "us_per_publish": us(total_cpu, msgs),
                                 "us_per_delivery": us(total_cpu, delivered)}
        rb, ra = before["redis"], after["redis"]
        if rb and ra:
            cpu = ra["cpu_s"] - rb["cpu_s"]
            evalsha = ra["evalsha"] - rb["evalsha"]
            idle = self.redis.idle_cpu_per_s * seconds if self.redis else 0.0
            redis = {
                "cpu_s": round(cpu, 3),
                "cpu_pct_of_core": round(100 * cpu / seconds, 1),
                # Less what Redis used while idle before the run (measured at the start).
                "us_per_publish": us(max(0.0, cpu - idle), msgs),
                "us_per_publish_gross": us(cpu, msgs),
                "commands_per_publish": round((ra["commands"] - rb["commands"]) / msgs, 2)
                if msgs else None,
                "evalsha_calls": evalsha,
                "evalsha_us_inside_redis": us((ra["evalsha_us"] - rb["evalsha_us"]) / 1e6,
                                              evalsha),
                "script_exists_per_post": round((ra["script_exists"] - rb["script_exists"])
                                                / posts, 2) if posts else None,
            }
            if "psutil_cpu_s" in ra and "psutil_cpu_s" in rb:
                redis["psutil_cpu_s"] = round(ra["psutil_cpu_s"] - rb["psutil_cpu_s"], 3)
            # Someone else's scripts ran too (or ours were not all counted); the
            # presence refreshes of the servers' directories run a few scripts too.
            redis["redis_shared"] = (self.post.engine == "redis"
                                     and abs(evalsha - msgs) > max(50, msgs // 100))
            result["redis"] = redis
        bus = {}
        for name, status in after["bus"].items():
            old = before["bus"].get(name) or {}
            if status:
                bus[name] = {k: status[k] - old.get(k, 0) for k in
                             ("published", "received", "duplicates", "gaps_filled", "gaps_lost",
                              "epoch_changes", "reconnects")
                             if isinstance(status.get(k), int)}
        if bus:
            result["bus"] = bus
        return result

    # -- a timed run ------------------------------------------------------------------------

    def run_load(self, label: str, channel: str, clients: int, batch: int,
                 msg_rate: float | None) -> dict[str, Any]:
        before = self.snap()
        load0 = os.getloadavg()[0]
        result = super().run_load(f"{self.label}: {label}", channel, clients, batch, msg_rate)
        after = self.snap()
        result["loadavg_1m_before_after"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
        # The readers keep their counts and latency samples until the next reset.
        stats = self.readers.all({"cmd": "stats", "latencies": True})
        by_server = {}
        latency = {}
        for server, st in zip(self.listen, stats, strict=True):
            by_server[server.name] = st["messages"]
            lat = sorted(st["latencies_us"])
            where = "same" if server is self.post else "across"
            if lat:
                latency[f"{where} ({server.name})"] = {
                    "p50_ms": round(percentile(lat, 0.50) / 1000, 2),
                    "p99_ms": round(percentile(lat, 0.99) / 1000, 2),
                    "samples": len(lat),
                }
        result["latency_by_reader"] = latency
        result["costs"] = self.costs(before, after, result["msgs_posted"], result["posts"],
                                     by_server)
        result["post"] = self.post.name
        result["processes"] = len(self.listen)
        # fanout_ws counts the other server and Redis as "others": ours does not.
        result["machine_contended"] = result["costs"]["others_pct_of_core"] > 15
        result["config"] = self.label
        return result

    def probe(self, batch: int, msg_rate: float) -> dict[str, Any]:
        """One client on each ``listen`` server (maybe none), posts paced at ``msg_rate``.

        At a rate every setup sustains: the cost of a publish on the posters'
        process, of a following process (receive + one delivery), Redis's per
        publish for 0, 1, 2 followers, and the latency of one hop.
        """
        channel = f"probe-{uuid.uuid4().hex[:8]}"
        label = f"probe b{batch} at {msg_rate:g} msg/s"
        if self.listen:
            conn_ids, _ = self.connect_many(len(self.listen), channel, f"probe{batch}-")
            try:
                opened = self.open_websockets(conn_ids, 1)  # every client times every message
                self.readers.all({"cmd": "reset"})
                warm = self.post_run(channel, batch, 1, 0.3, None)
                self.wait_delivered(warm["messages"] * opened["opened"], 10.0)
                result = self.run_load(label, channel, opened["opened"], batch, msg_rate)
            finally:
                self.readers.all({"cmd": "close"})
                self.disconnect_many(conn_ids)
            result["followers"] = [s.name for s in self.listen]
            return result
        self.post_run(channel, batch, 1, 0.3, None)  # creates the channel; warm-up
        before = self.snap()
        posted = self.post_run(channel, batch, self.args.posters, self.args.duration, msg_rate)
        after = self.snap()
        problems = [f"POST errors {posted['statuses']}: {posted['errors'][:3]}"] \
            if posted["statuses"] else []
        problems += self.check_server_log()
        result = {
            "run": f"{self.label}: {label}",
            "config": self.label,
            "post": self.post.name,
            "batch": batch,
            "followers": [],
            "target_msgs_per_s": round(msg_rate),
            "posts": posted["posts"],
            "msgs_posted": posted["messages"],
            "msgs_per_s": round(posted["messages"] / posted["elapsed"], 1),
            "late_posts": posted["late_posts"],
            "latency_by_reader": {},
            "costs": self.costs(before, after, posted["messages"], posted["posts"], {}),
            "problems": problems,
        }
        result["machine_contended"] = result["costs"]["others_pct_of_core"] > 15
        return result

    def publish_only(self, batch: int, seconds: float) -> dict[str, Any]:
        """Posts to a channel nobody follows: the cost of a publish alone."""
        channel = f"bench-nobody-{self.post.name}-b{batch}-{uuid.uuid4().hex[:6]}"
        self.listen = []  # nobody: post_run creates the channel on the posters' process
        self.post_run(channel, batch, 1, 0.2, None)  # warm-up, not counted
        before = self.snap()
        load0 = os.getloadavg()[0]
        posted = self.post_run(channel, batch, self.args.posters, seconds, None)
        after = self.snap()
        problems = []
        if posted["statuses"]:
            problems.append(f"POST errors {posted['statuses']}: {posted['errors'][:3]}")
        problems += self.check_server_log()
        result = {
            "run": f"{self.label}: publish only b{batch}",
            "config": self.label,
            "batch": batch,
            "posts": posted["posts"],
            "msgs_posted": posted["messages"],
            "msgs_per_s": round(posted["messages"] / posted["elapsed"], 1),
            "post_mean_ms": round(1000 * posted["post_s"] / max(1, posted["posts"]), 2),
            "costs": self.costs(before, after, posted["messages"], posted["posts"], {}),
            "loadavg_1m_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "problems": problems,
        }
        result["machine_contended"] = result["costs"]["others_pct_of_core"] > 15
        return result


# ----------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------


def prerequisites(args: argparse.Namespace) -> str | None:
    """Why the bench cannot run here, or None."""
    try:
        import psutil  # noqa: F401
        import redis
    except ImportError as err:
        return f"{err.name} is not installed (pip install -e '.[bench]')"
    try:
        redis.Redis.from_url(args.redis_url, socket_connect_timeout=2).ping()
    except redis.exceptions.RedisError as err:
        return f"Redis is not reachable at {args.redis_url}: {err}"
    return None


def app_keys(args: argparse.Namespace, engine: str, prefix: str) -> dict[str, str]:
    from tests.support.api import ADMIN_SECRET, SECRET

    keys = {
        "secret": SECRET,
        "admin_secret": ADMIN_SECRET,
        "gc_conns_after": "600",
        "client_heartbeat": "5",  # the shipped default
        # The posts of a whole run stay under the replay cache (default 100,000 per 60 s).
        "replay_cache_size": str(args.replay_cache_size),
    }
    if engine == "redis":
        keys.update({"hub.engine": "redis", "redis.url": args.redis_url,
                     "redis.key_prefix": prefix})
    return keys


def run(args: argparse.Namespace) -> dict[str, Any]:
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    unknown = set(setups) - set(SETUPS)
    if unknown:
        raise SystemExit(f"unknown setups {sorted(unknown)}; known: {', '.join(SETUPS)}")
    prefix = f"cs-bench-{uuid.uuid4().hex[:10]}:"
    redis = RedisWatch(args.redis_url)
    tmp = tempfile.TemporaryDirectory(prefix="cluster-")
    folder = Path(tmp.name)
    servers = {
        "L": Server("L", "local", folder / "L", app_keys(args, "local", prefix), args.access_log),
        "A": Server("A", "redis", folder / "A", app_keys(args, "redis", prefix), args.access_log),
        "B": Server("B", "redis", folder / "B", app_keys(args, "redis", prefix), args.access_log),
    }
    everyone = list(servers.values())
    L, A, B = servers["L"], servers["A"], servers["B"]
    results: dict[str, Any] = {"runs": [], "publish_only": [], "probes": [], "problems": []}
    load_start = os.getloadavg()
    started = time.monotonic()
    redis.measure_idle()
    # Before any server starts: nothing else on the machine is ours.
    results["floor"] = send_floor(args.clients)
    results["wake_floor"] = wake_floor()
    try:
        for server in everyone:
            server.start()
        plans = {
            "local1": ("local 1p", L, [L]),
            "redis1": ("redis 1p", A, [A]),
            "redis2": ("redis 2p A->B", A, [B]),
            "redis2half": ("redis 2p A->A+B", A, [A, B]),
            "engine": ("redis 2p engine", A, [A, B]),
        }
        for key in setups:
            if key == "probe":
                probes, problems = run_probes(args, L, A, B, everyone, redis)
                results["probes"] += probes
                results["problems"] += problems
                continue
            if key == "publish":
                for name, post in (("local publish only", L), ("redis publish only", A)):
                    bench = ClusterBench(args, label=name, post=post, listen=[post],
                                         servers=everyone, redis=redis)
                    try:
                        for batch in args.batches:
                            results["publish_only"].append(
                                bench.publish_only(batch, args.publish_seconds))
                    finally:
                        bench.stop()
                        results["problems"] += bench.server_problems
                continue
            label, post, listen = plans[key]
            run_args, clients = args, args.clients
            if key == "engine":  # every client times every message
                run_args = argparse.Namespace(**{**vars(args), "sample_every": 1})
                clients = args.engine_clients
            bench = ClusterBench(run_args, label=label, post=post, listen=listen,
                                 servers=everyone, redis=redis)
            try:
                for batch in args.batches:
                    name = f"{key}-c{clients}-b{batch}-{uuid.uuid4().hex[:4]}"
                    results["runs"] += bench.fanout_phase(name, clients, batch)
            finally:
                bench.stop()
                results["problems"] += bench.server_problems
    finally:
        for server in everyone:
            try:
                if server.running.process is not None:
                    results["problems"] += server.new_log_problems()
                    code = server.running.stop()
                    if code != 0:
                        results["problems"].append(f"{server.name}: exit status {code}")
            except Exception as exc:  # stop() kills it after its timeout
                results["problems"].append(f"{server.name}: stop: {exc!r}")
                server.running.kill()
        results["redis_keys_deleted"] = redis.delete_prefix(prefix)
        results["redis_keys_left"] = sum(1 for _ in redis.client.scan_iter(match=prefix + "*"))
        tmp.cleanup()
    results["seconds"] = round(time.monotonic() - started, 1)
    results["loadavg_start"] = [round(x, 2) for x in load_start]
    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["conditions"] = conditions(args, redis, prefix)
    results["projection"] = projection(results, args)
    return results


def run_probes(args: argparse.Namespace, L: Server, A: Server, B: Server,
               everyone: list[Server], redis: RedisWatch) -> tuple[list[dict], list[str]]:
    """Per batch, at ``--probe-posts-per-s`` x batch msg/s: L with one client; A
    with no follower, with one client on B, with one client on A and one on B."""
    plans = [("probe local 1p", L, [L]), ("probe redis 0 followers", A, []),
             ("probe redis 1 follower (B)", A, [B]), ("probe redis 2 followers (A, B)", A, [A, B])]
    probes = []
    problems = []
    for label, post, listen in plans:
        bench = ClusterBench(args, label=label, post=post, listen=listen, servers=everyone,
                             redis=redis)
        try:
            for batch in args.batches:
                probes.append(bench.probe(batch, args.probe_posts_per_s * batch))
        finally:
            bench.stop()
            problems += bench.server_problems
    return probes, problems


def conditions(args: argparse.Namespace, redis: RedisWatch, prefix: str) -> dict[str, Any]:
    import redis as redis_py

    try:
        import hiredis  # noqa: F401

        parser = "hiredis"
    except ImportError:
        parser = "pure Python (no hiredis)"
    return {
        **machine_info(),
        "commit": git_state(),
        "redis": f"{redis.version} at {args.redis_url} (pid {redis.pid}"
                 f"{', psutil sees it' if redis.proc else ', not visible to psutil'}; idle before "
                 f"the run {100 * redis.idle_cpu_per_s:.2f}% of a core, "
                 f"{redis.idle_commands_per_s:.1f} commands/s, subtracted from its CPU per "
                 "publish); "
                 f"redis-py {redis_py.__version__}, reply parser {parser}; key prefix {prefix}",
        "servers": "3 pserve processes on temp copies of development.ini: L hub.engine=local, "
                   "A and B hub.engine=redis (same prefix); app keys gc_conns_after=600, "
                   f"client_heartbeat=5, replay_cache_size={args.replay_cache_size}; access log "
                   + ("on (as shipped)" if args.access_log else "off"),
        "where": "all on 127.0.0.1; one epoll websocket reader process per server with clients "
                 f"(fanout_ws's; 1 client in {args.sample_every} decodes and times every "
                 f"message); {args.posters} poster threads in this process (signed, keep-alive)",
        "clients": args.clients,
        "batches": args.batches,
        "message_bytes": args.message_bytes,
        "duration_s": args.duration,
        "paced_fraction": args.paced_fraction,
        "publish_seconds": args.publish_seconds,
        "probe_posts_per_s": args.probe_posts_per_s,
        "engine_clients": args.engine_clients,
    }


# ----------------------------------------------------------------------------------------
# Summaries and the projection
# ----------------------------------------------------------------------------------------


def _find(runs: list[dict[str, Any]], setup: str, batch: int, paced: bool) -> dict | None:
    for r in runs:
        if r["config"] == setup and r["batch"] == batch:
            if (r["target_msgs_per_s"] != "max") == paced:
                return r
    return None


def _probe(results: dict[str, Any], label: str, batch: int) -> dict[str, Any] | None:
    for probe in results["probes"]:
        if probe["config"] == label and probe["batch"] == batch:
            return probe
    return None


def projection(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """What the measured costs project for N nodes, per batch size.

    p: the posters' process's CPU per publish, posting flat out to a channel
    nobody follows (``redis publish only``; the probe's, at a low rate, is higher);
    q: a following process's CPU per message with one client (probe: pub/sub
    receive + one delivery); x: B's CPU per message with C clients at the
    A->B peak, i.e. C x d with d its CPU per delivery (receive included);
    Redis's CPU per publish with 0, 1, 2 following processes (probes), fitted
    as r0 + n x s.
    """
    out: dict[str, Any] = {}
    clients = args.clients
    for batch in args.batches:
        zero = _probe(results, "probe redis 0 followers", batch)
        one = _probe(results, "probe redis 1 follower (B)", batch)
        two = _probe(results, "probe redis 2 followers (A, B)", batch)
        across = _find(results["runs"], "redis 2p A->B", batch, False)
        only = next((x for x in results["publish_only"]
                     if x["config"] == "redis publish only" and x["batch"] == batch), None)
        if not (zero and one and two and across and only):
            continue
        try:
            p = only["costs"]["servers"]["A"]["us_per_publish"]
            q = one["costs"]["servers"]["B"]["us_per_publish"]
            r = [x["costs"]["redis"]["us_per_publish"] for x in (zero, one, two)]
            b = across["costs"]["servers"]["B"]
            x = b["cpu_s"] * 1e6 / across["msgs_posted"]
        except (KeyError, TypeError, ZeroDivisionError):
            continue
        if None in (p, q, *r):
            continue
        slope = (r[2] - r[0]) / 2  # least squares through n = 0, 1, 2
        base = sum(r) / 3 - slope
        entry: dict[str, Any] = {
            "probe_msgs_per_s": zero["target_msgs_per_s"],
            "p_us_per_publish": p,
            "p_msgs_per_s": only["msgs_per_s"],
            "p_us_per_publish_probe": zero["costs"]["servers"]["A"]["us_per_publish"],
            "q_us_per_message_per_follower": q,
            "x_us_per_message_on_B": round(x, 1),
            "d_us_per_delivery_on_B": b["us_per_delivery"],
            "peak_msgs_per_s": across["msgs_per_s"],
            "redis_us_per_publish_0_1_2": r,
            "redis_fit_us": [round(base, 2), round(slope, 2)],
            "rows": [],
        }
        for n in NODES:
            # n nodes, each: `clients` websockets on the channel, 1/n of the publishes.
            node = p / n + x
            red = base + n * max(0.0, slope)
            node_max, redis_max = 1e6 / node, 1e6 / red
            rate = min(node_max, redis_max)
            entry["rows"].append({
                "nodes": n,
                "node_us_per_msg": round(node, 1),
                "redis_us_per_msg": round(red, 2),
                "max_msgs_per_s": round(rate),
                "limit": "nodes" if node_max <= redis_max else "redis",
                "cluster_deliveries_per_s": round(rate * n * clients),
                "redis_pct_of_core": round(rate * red / 1e4, 1),
            })
        out[f"b{batch}"] = entry
    return out


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    cond = results["conditions"]
    print("cluster: the websocket fan-out on hub.engine = local and redis, one and two processes")
    for key, value in cond.items():
        print(f"  {key:16} {value}")
    print(f"  {'load average':16} start {results['loadavg_start']}, end {results['loadavg_end']}"
          f" (1/5/15 min); run took {results['seconds']} s")
    for run in results["runs"]:
        print(f"\n[{run['run']}]")
        for key, value in run.items():
            if key not in ("run", "costs", "config"):
                print(f"  {key:32} {value}")
        print(f"  {'costs':32} {json.dumps(run['costs'])}")
    for run in results["publish_only"]:
        print(f"\n[{run['run']}]")
        for key, value in run.items():
            if key not in ("run", "config"):
                print(f"  {key:32} {value}")

    print("\n== one process: local bus vs Redis engine (server CPU in µs of one core; "
          "latency POST-to-receive)")
    head = (f"  {'setup':18} {'batch':>5} {'run':>6} {'deliveries/s':>13} {'srv µs/deliv':>12} "
            f"{'srv µs/publ':>11} {'redis µs/publ':>13} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'others %':>8} {'load':>5}")
    print(head)
    for run in results["runs"]:
        if run["config"] not in ("local 1p", "redis 1p"):
            continue
        c = run["costs"]
        srv = c["all_servers"]
        redis_us = c.get("redis", {}).get("us_per_publish")
        print(f"  {run['config']:18} {run['batch']:>5} "
              f"{'paced' if run['target_msgs_per_s'] != 'max' else 'peak':>6} "
              f"{run['deliveries_per_s']:>13,} {_fmt(srv['us_per_delivery'], 3):>12} "
              f"{_fmt(srv['us_per_publish']):>11} "
              f"{_fmt(redis_us if run['config'] != 'local 1p' else None):>13} "
              f"{_fmt(run['latency_p50_ms'], 2):>7} {_fmt(run['latency_p99_ms'], 2):>7} "
              f"{c['others_pct_of_core']:>8} {run['loadavg_1m_before_after'][1]:>5}")
    for batch in args.batches:
        for paced in (False, True):
            loc = _find(results["runs"], "local 1p", batch, paced)
            red = _find(results["runs"], "redis 1p", batch, paced)
            if loc and red:
                a = loc["costs"]["all_servers"]["us_per_delivery"]
                b = red["costs"]["all_servers"]["us_per_delivery"]
                if a and b:
                    print(f"  redis/local server CPU per delivery, b{batch} "
                          f"{'paced' if paced else 'peak'}: {b:.3f} / {a:.3f} = {b / a:.2f}x "
                          "(target <= 1.3x)")

    print("\n== two processes on Redis: posters on A")
    print(f"  {'setup':18} {'batch':>5} {'run':>6} {'deliveries/s':>13} {'A µs/publ':>10} "
          f"{'B µs/deliv':>10} {'all µs/deliv':>12} {'redis µs/publ':>13} "
          f"{'latency p50/p99 ms (same | across)':>36} {'others %':>8} {'load':>5}")
    for run in results["runs"]:
        if not run["config"].startswith("redis 2p"):
            continue
        c = run["costs"]
        lat = run["latency_by_reader"]
        same = next((v for k, v in lat.items() if k.startswith("same")), None)
        across = next((v for k, v in lat.items() if k.startswith("across")), None)
        text = " | ".join(f"{v['p50_ms']}/{v['p99_ms']}" if v else "-" for v in (same, across))
        print(f"  {run['config']:18} {run['batch']:>5} "
              f"{'paced' if run['target_msgs_per_s'] != 'max' else 'peak':>6} "
              f"{run['deliveries_per_s']:>13,} {_fmt(c['servers']['A']['us_per_publish']):>10} "
              f"{_fmt(c['servers']['B']['us_per_delivery'], 3):>10} "
              f"{_fmt(c['all_servers']['us_per_delivery'], 3):>12} "
              f"{_fmt(c.get('redis', {}).get('us_per_publish')):>13} {text:>36} "
              f"{c['others_pct_of_core']:>8} {run['loadavg_1m_before_after'][1]:>5}")
    for batch in args.batches:
        for paced in (False, True):
            loc = _find(results["runs"], "local 1p", batch, paced)
            two = _find(results["runs"], "redis 2p A->B", batch, paced)
            if loc and two:
                a = loc["costs"]["all_servers"]["us_per_delivery"]
                b = two["costs"]["servers"]["B"]["us_per_delivery"]
                ab = two["costs"]["all_servers"]["us_per_delivery"]
                if a and b and ab:
                    kind = "paced" if paced else "peak"
                    print(f"  redis 2p A->B vs local 1p, server CPU per delivery, b{batch} "
                          f"{kind}: B alone {b / a:.2f}x, A+B {ab / a:.2f}x")
    for run in results["runs"]:
        if run["config"].startswith("redis 2p") and run["target_msgs_per_s"] != "max":
            across = next((v for k, v in run["latency_by_reader"].items()
                           if k.startswith("across")), None)
            if across:
                print(f"  across processes at {run['target_msgs_per_s']:,} msg/s "
                      f"({run['config']}, b{run['batch']}): p99 {across['p99_ms']} ms "
                      "(target < 10 ms)")

    floor = results.get("floor")
    if floor:
        print("\n== latency at half the peak, beside the kernel's floor")
        print(f"  floor: one {floor['frame_bytes']}-byte send to each of {floor['clients']:,} "
              f"loopback sockets, plain Python, before the servers started: "
              f"{floor['us_per_send']} µs of a core per send, a pass {floor['ms_per_pass_wall']}"
              f" ms; the reader {floor['reader_us_per_send']} µs per read")
        print(f"  {'setup':18} {'batch':>5} {'msgs/s':>8} {'clients/proc':>12} "
              f"{'p99 same':>9} {'p99 across':>10} {'floor pass ms':>13} "
              f"{'floor writes/client/s':>21} {'floor % of core':>15}")
        for run in results["runs"]:
            if run["target_msgs_per_s"] == "max":
                continue
            per_process = max(1, run["clients"] // max(1, run.get("processes", 1)))
            bound = floor_bound(floor, per_process, run["msgs_per_s"], run["batch"])
            lat = run["latency_by_reader"]
            same = next((v["p99_ms"] for k, v in lat.items() if k.startswith("same")), None)
            across = next((v["p99_ms"] for k, v in lat.items() if k.startswith("across")), None)
            print(f"  {run['config']:18} {run['batch']:>5} {run['msgs_per_s']:>8,.0f} "
                  f"{per_process:>12,} {_fmt(same, 2):>9} {_fmt(across, 2):>10} "
                  f"{_fmt(bound['pass_ms'], 2):>13} {_fmt(bound['writes_per_client_s']):>21} "
                  f"{_fmt(bound['pct_of_core']):>15}")
        wake = results.get("wake_floor") or {}
        if wake.get("plain_us_per_wake") is not None:
            print(f"  a wake-up: a process woken by each of {wake['messages']} one-byte messages "
                  f"on a loopback socket, {wake['rate']:g}/s, spends "
                  f"{wake['plain_us_per_wake']} µs of CPU per message in plain Python, "
                  f"{wake['gevent_us_per_wake']} µs under gevent (what a server pays for each "
                  "event it waits for when it is not saturated)")
        print("  floor % of core: the least CPU a process would spend on its sends alone to "
              "write every client within 10 ms of each POST (a pass of clients/proc sends at "
              "the floor's cost; a write per POST, or one every 10 ms less a pass); its readers "
              "pay about as much again, on the same two cores")

    if results["publish_only"]:
        print("\n== publish only (a channel nobody follows; server = the posters' server)")
        print(f"  {'setup':20} {'batch':>5} {'msgs/s':>9} {'srv µs/publ':>11} "
              f"{'redis µs/publ':>13} {'evalsha µs in redis':>19} {'cmds/publ':>9} "
              f"{'SCRIPT EXISTS/POST':>18}")
        for run in results["publish_only"]:
            c = run["costs"]
            r = c.get("redis", {}) if run["config"].startswith("redis") else {}
            print(f"  {run['config']:20} {run['batch']:>5} {run['msgs_per_s']:>9,.0f} "
                  f"{_fmt(c['all_servers']['us_per_publish']):>11} "
                  f"{_fmt(r.get('us_per_publish')):>13} "
                  f"{_fmt(r.get('evalsha_us_inside_redis')):>19} "
                  f"{_fmt(r.get('commands_per_publish'), 2):>9} "
                  f"{_fmt(r.get('script_exists_per_post'), 2):>18}")

    if results["probes"]:
        print(f"\n== probes: one client per follower, paced at {args.probe_posts_per_s:g} POSTs/s "
              "(CPU in µs per published message; latency POST-to-receive per client)")
        print(f"  {'setup':32} {'batch':>5} {'msgs/s':>7} {'posters srv':>11} "
              f"{'follower srv':>16} {'redis':>7} {'evalsha in redis':>16} "
              f"{'latency p50/p99 ms':>40} {'others %':>8}")
        for probe in results["probes"]:
            c = probe["costs"]
            post = probe["post"]
            follow = " ".join(f"{n} {_fmt(c['servers'][n]['us_per_publish'])}"
                              for n in probe["followers"] if n != post) or "-"
            r = c.get("redis", {}) if "redis" in probe["config"] else {}
            lat = " ".join(f"{k} {v['p50_ms']}/{v['p99_ms']}"
                           for k, v in probe["latency_by_reader"].items()) or "-"
            print(f"  {probe['config']:32} {probe['batch']:>5} {probe['msgs_per_s']:>7,.0f} "
                  f"{_fmt(c['servers'][post]['us_per_publish']):>11} {follow:>16} "
                  f"{_fmt(r.get('us_per_publish')):>7} "
                  f"{_fmt(r.get('evalsha_us_inside_redis')):>16} {lat:>40} "
                  f"{c['others_pct_of_core']:>8}")

    print(f"\n== projection for N nodes (each node one process on one core with {args.clients:,} "
          "clients on the channel; publishes spread over the nodes)")
    for key, p in results["projection"].items():
        r0, r1, r2 = p["redis_us_per_publish_0_1_2"]
        base, slope = p["redis_fit_us"]
        print(f"  {key}: p = posters' process CPU per publish, flat out to a channel nobody "
              f"follows ({p['p_msgs_per_s']:,} msg/s) = {p['p_us_per_publish']} µs "
              f"({p['p_us_per_publish_probe']} µs at {p['probe_msgs_per_s']:,} msg/s)")
        print(f"      x = B's CPU per message with C = {args.clients:,} clients (A->B peak, "
              f"{p['peak_msgs_per_s']:,} msg/s) = {p['x_us_per_message_on_B']} µs, i.e. d = "
              f"{p['d_us_per_delivery_on_B']} µs per delivery (pub/sub receive included)")
        print(f"      q = a following process's CPU per message with one client (probe) = "
              f"{p['q_us_per_message_per_follower']} µs: the floor of a node that follows the "
              "channel")
        print(f"      Redis per publish with 0/1/2 following processes = {r0} / {r1} / {r2} µs "
              f"(at {p['probe_msgs_per_s']:,} msg/s): r(N) = {base} + N x {slope} µs")
        print("      node CPU per message = p/N + x; Redis = r(N); max msg/s = "
              "min(1e6 / node, 1e6 / Redis); cluster deliveries/s = msg/s x N x C")
        for row in p["rows"]:
            print(f"      N={row['nodes']:>2}: node {row['node_us_per_msg']:>9,} µs/msg, Redis "
                  f"{row['redis_us_per_msg']:>7} µs/msg -> {row['max_msgs_per_s']:>7,} msg/s "
                  f"(limit: {row['limit']}), {row['cluster_deliveries_per_s']:>12,} "
                  f"deliveries/s, Redis at {row['redis_pct_of_core']}% of a core")

    problems = list(results["problems"])
    for run in results["runs"] + results["publish_only"] + results["probes"]:
        problems += [f"{run['run']}: {p}" for p in run["problems"]]
        if run.get("costs", {}).get("redis", {}).get("redis_shared"):
            problems.append(f"{run['run']}: redis_shared (evalsha calls != publishes: another "
                            "client used Redis; its CPU is in the Redis figures)")
        if run.get("machine_contended"):
            problems.append(f"{run['run']}: machine_contended (others took "
                            f"{run['costs']['others_pct_of_core']}% of a core)")
    print(f"\nredis keys of this run deleted: {results['redis_keys_deleted']}, left: "
          f"{results['redis_keys_left']}")
    print("problems: " + ("none" if not problems else ""))
    for problem in problems:
        print(f"  {problem}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000, help="websockets per fan-out run")
    parser.add_argument("--batches", default="1,10", help="messages per POST, comma separated")
    parser.add_argument("--posters", type=int, default=4, help="concurrent posters")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="seconds of posting per fan-out run (peak, then paced)")
    parser.add_argument("--paced-fraction", type=float, default=0.5,
                        help="paced run at this fraction of the peak rate (0 = none)")
    parser.add_argument("--paced-deliveries", type=float, default=0,
                        help="paced runs at this many deliveries/s instead (0 = the fraction)")
    parser.add_argument("--publish-seconds", type=float, default=3.0,
                        help="seconds of posting per publish-only run")
    parser.add_argument("--probe-posts-per-s", type=float, default=200.0,
                        help="POSTs/s of the probe runs (one client per follower)")
    parser.add_argument("--message-bytes", type=int, default=100,
                        help="size of each message body as compact JSON")
    parser.add_argument("--sample-every", type=int, default=50,
                        help="1 client in N decodes every frame (latency, offsets)")
    parser.add_argument("--connect-concurrency", type=int, default=8,
                        help="keep-alive connections doing /connect and /disconnect")
    parser.add_argument("--connect-timeout", type=float, default=120.0,
                        help="bound on all /connects, /disconnects or websocket opens of a step")
    parser.add_argument("--open-concurrency", type=int, default=200,
                        help="websocket handshakes in flight per reader process")
    parser.add_argument("--replay-cache-size", type=int, default=1_000_000,
                        help="the servers' replay_cache_size (signed calls kept per 60 s)")
    parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                        help="keep development.ini's access log (one line per request)")
    parser.add_argument("--engine-clients", type=int, default=2,
                        help="websockets of the engine setup, spread over A and B")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--setups", default=",".join(SETUPS),
                        help=f"comma separated, in this order: {', '.join(SETUPS)}")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--save", help="also write the JSON object to this file")
    parser.add_argument("--report", metavar="JSON",
                        help="print the report of a --save file again (nothing is run)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    args.batches = [int(b) for b in str(args.batches).split(",") if b.strip()]
    sys.path.insert(0, str(REPO))
    from tests.support.api import ADMIN_SECRET, SECRET

    # What fanout_ws's Bench reads from its arguments.
    args.secret, args.admin_secret = SECRET, ADMIN_SECRET
    args.url = args.pid = None
    if args.report:
        with open(args.report, encoding="utf-8") as f:
            results = json.load(f)
        saved = results["conditions"]
        for key in ("clients", "batches", "probe_posts_per_s"):
            setattr(args, key.replace("-", "_"), saved.get(key, getattr(args, key)))
        results["projection"] = projection(results, args)
        report(results, args)
        return
    why = prerequisites(args)
    if why:
        if args.json:
            print(json.dumps({"skipped": why}))
        else:
            print(f"cluster: skipped: {why}")
        return
    results = run(args)
    if args.save:
        with open(args.save, "w", encoding="utf-8") as f:
            json.dump(results, f)
    if args.json:
        print(json.dumps(results))
    else:
        report(results, args)


if __name__ == "__main__":
    main()
