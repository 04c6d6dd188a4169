"""GATD packets end to end: pika publisher -> RabbitMQ -> amqp-ingest -> hub -> TCP clients.

Everything runs on this machine, as separate processes:

- RabbitMQ (already running, ``--amqp-url``): the packets go through a
  headers exchange of a unique name per run (``bench.packets.<random>``),
  deleted at the end;
- the server: ``pserve`` on a temporary copy of development.ini (local bus)
  with ``amqp.url`` and ``amqp.exchange`` set, so its ``amqp-ingest`` door
  binds its exclusive queue to that exchange and puts every packet on the
  hub's packet channel, and its ``tcp-streamer`` door serves the clients;
- the publishers: ``--publishers`` processes of this same script
  (``--publisher-process``), each one pika ``SelectConnection`` publishing
  packets exactly as :class:`channelstream.amqp.publisher.PacketPublisher`
  encodes them (compact JSON body, every scalar field as an AMQP header),
  but unconfirmed and without a round trip per packet, so that a publisher
  is not held to one packet per broker round trip; the frames are built by
  hand (:class:`FastFrames`, checked byte for byte against pika's own at
  start, else pika's ``basic_publish``), ~35 us of CPU per packet instead of
  pika's ~95 us, which the two cores need for the broker and the server. Flat out (as fast as
  the connection takes them) or paced at a rate;
- the TCP streamer clients: ``--readers`` processes of this same script
  (``--reader-process``), each a single-threaded epoll loop over raw
  non-blocking sockets: a client sends its JSON query, then its lines are
  counted with ``bytes.count(b"\\n")``. One client in ``--sample-every``
  also reads the ``t`` and ``seq`` of every line (a regex over the bytes, no
  JSON decoding) for the latency and the order of its packets.

Each packet is ``{"t": <time.time_ns() when published>, "pub": <publisher>,
"seq": <per publisher and profile_id>, "profile_id": ..., "address", "port",
"time", "temperature", "humidity", "light"}``: 10 fields, all of them AMQP
headers. Publishers send the ``--groups`` profile_ids in turn. The latency
is the reader's ``time.time_ns()`` when the bytes arrived minus ``t`` (same
machine, same clock): publisher -> broker -> server -> client.

Variants (``--variants``):

- ``filtered``: ``--clients`` clients in ``--groups`` equal groups, each
  group querying ``{"profile_id": <its id>}``: each packet matches
  clients/groups clients (10 of 100 by default);
- ``all``: every client queries ``{}`` and gets every packet.

Runs of each variant, each ``--duration`` seconds of publishing:

- ``peak``: publishers flat out. The server's queue in the broker is kept
  at most ``--max-backlog`` packets deep (publishers read the door's
  ``consumed`` counter in /healthz 10 times a second and wait when they are
  that far ahead), so the server always has work and the run ends in
  bounded time; its latency is mostly time spent in that backlog;
- ``paced``: for each of ``--paced`` (``0.5x`` = that fraction of the peak's
  ingest rate of the same variant, a plain number = packets/s), publishers
  paced at that rate (still bounded by ``--max-backlog``).

- ``drain`` (``--drain N``): N packets published while the server is stopped
  (SIGSTOP), so that they wait in its queue in the broker, then the server
  is continued (SIGCONT) and timed until every one was ingested and
  delivered: the server's own capacity, with full reads and many packets
  per client write, and no publishing competing for the two cores. Also
  /healthz latency during the drain.

Figures of a run (rates are over the publishing window): packets/s
published; packets/s ingested (the ``amqp-ingest`` door's ``consumed``);
the ``tcp-streamer`` door's ``packets_sent``/s (one per packet per client);
deliveries/s counted by the readers (lines) and, divided by the fan-out,
distinct packets/s delivered; CPU us per packet of each process; latency
p50/p99/max; what was dropped (the door's ``dropped``, ``malformed``,
``failed``; deliveries missing against ingested x fan-out; published packets
never ingested); CPU of the server,
RabbitMQ, the publishers, the readers, this process and the rest of the
machine, in % of one core. After publishing stops, the run waits (bounded)
until everything published was ingested and delivered.

Target printed for comparison: >= 20,000 packets/s ingested from RabbitMQ
and delivered to 100 filtered TCP clients.

Usage: python bench/packets.py [--clients 100] [--groups 10] [--duration 8]
       [--publishers 1] [--readers 1] [--paced 0.5x] [--variants filtered,all]
       [--max-backlog 20000] [--prefetch N] [--drain N] [--amqp-url URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _packets_publisher import MIN_BACKLOG, PUBLISHER_FLAG, healthz_of, publisher_main
from _packets_reader import reader_main
from _support import (
    REPO,
    CpuWatch,
    ReaderProcs,
    git_state,
    machine_info,
    mb,
    percentile,
    raise_nofile,
    rss_of,
)

READER_FLAG = "--reader-process"
DEFAULT_AMQP_URL = os.environ.get(
    "CHANNELSTREAM_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"
)
TARGET_PACKETS_PER_S = 20_000
TARGET = (f">= {TARGET_PACKETS_PER_S:,} packets/s ingested from RabbitMQ and delivered "
          "to 100 filtered TCP clients")

# ----------------------------------------------------------------------------------------
# The bench process: broker, server, readers, publishers, runs.
# ----------------------------------------------------------------------------------------


def broker_pid(url: str) -> int | None:
    """The process listening on the broker's port on this machine (RabbitMQ), if any."""
    from urllib.parse import urlsplit

    import psutil

    parts = urlsplit(url)
    port = parts.port or 5672
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
                return conn.pid
    except (psutil.Error, OSError):
        pass
    return None


class BrokerProblem(RuntimeError):
    pass


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.nofile = raise_nofile()
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-packets-")
        self.run_id = uuid.uuid4().hex[:12]
        self.exchange = f"bench.packets.{self.run_id}"
        self.server = None
        self.readers: ReaderProcs | None = None
        self.publishers: list[subprocess.Popen] = []
        self.server_log_offset = 0
        self.server_problems: list[str] = []
        self.cleanup: list[str] = []
        self.results: dict[str, Any] = {"runs": []}
        self.probe_broker()
        self.broker_pid = broker_pid(args.amqp_url)

    def setup(self) -> None:
        """Start the server (and wait for its amqp-ingest door) and the readers."""
        self._start_server()
        self.readers = ReaderProcs(self.args.readers, __file__, READER_FLAG)

    # -- broker and server ------------------------------------------------------------------

    def probe_broker(self) -> None:
        import pika
        import pika.exceptions

        try:
            connection = pika.BlockingConnection(pika.URLParameters(self.args.amqp_url))
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise BrokerProblem(
                f"RabbitMQ is not reachable at {self.args.amqp_url.split('@')[-1]}: {exc!r}"
            ) from None
        self.broker_version = connection._impl.server_properties.get(
            "version", b"?") if hasattr(connection, "_impl") else "?"
        if isinstance(self.broker_version, bytes):
            self.broker_version = self.broker_version.decode()
        connection.close()

    def delete_exchange(self) -> None:
        import pika
        import pika.exceptions

        try:
            connection = pika.BlockingConnection(pika.URLParameters(self.args.amqp_url))
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.cleanup.append(f"exchange {self.exchange} NOT deleted: {exc!r}")
            return
        try:
            connection.channel().exchange_delete(self.exchange)
            self.cleanup.append(f"exchange {self.exchange} deleted")
        except pika.exceptions.AMQPError as exc:
            self.cleanup.append(f"exchange {self.exchange} NOT deleted: {exc!r}")
        finally:
            if connection.is_open:
                connection.close()

    def app_keys(self) -> dict[str, str]:
        keys = {"amqp.url": self.args.amqp_url, "amqp.exchange": self.exchange}
        if self.args.prefetch:
            keys["amqp.prefetch"] = str(self.args.prefetch)
        if self.args.outbox_size:
            keys["tcp_streamer.outbox_size"] = str(self.args.outbox_size)
        return keys

    def _start_server(self) -> None:
        from tests.support.server import RunningServer

        folder = Path(self.tmp.name) / "server"
        folder.mkdir()
        server = RunningServer(REPO / "development.ini", folder, app=self.app_keys())
        self.server = server
        server.start()
        self.pid = server.process.pid
        self.stream_port = server.tcp_streamer_port
        # The door connects in the background: wait until its queue is bound.
        deadline = time.monotonic() + 30
        while True:
            door = self.healthz()["doors"].get("amqp-ingest", {})
            if door.get("state") == "connected":
                self.door_info = {k: door.get(k) for k in ("queue", "prefetch", "broker")}
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"amqp-ingest not connected within 30 s: {door}\n"
                                   f"{server.stderr[-2000:]}")
            time.sleep(0.1)

    def healthz(self) -> dict[str, Any]:
        return healthz_of("127.0.0.1", self.server.port)

    def counters(self) -> dict[str, Any]:
        started = time.perf_counter()
        health = self.healthz()
        took = time.perf_counter() - started
        ingest = health["doors"]["amqp-ingest"]
        streamer = health["doors"]["tcp-streamer"]
        return {
            "at": time.monotonic(),
            "healthz_ms": took * 1000,
            "ingest_state": ingest.get("state"),
            "consumed": ingest["consumed"],
            "malformed": ingest.get("malformed", 0),
            "failed": ingest.get("failed", 0),
            "reconnects": ingest.get("reconnects", 0),
            "sent": streamer["packets_sent"],
            "dropped": streamer["dropped"],
            "streaming": streamer["streaming"],
            "slow_disconnects": streamer.get("slow_disconnects", 0),
            "bad_queries": streamer.get("bad_queries", 0),
        }

    def check_server_log(self) -> list[str]:
        """ERROR/WARNING/CRITICAL lines and tracebacks the server wrote since the last check."""
        if self.server is None:
            return []
        text = self.server.stderr
        new, self.server_log_offset = text[self.server_log_offset:], len(text)
        bad = [
            line for line in new.splitlines()
            if any(f" {level} " in line for level in ("ERROR", "WARNI", "CRITI"))
            or line.startswith("Traceback")
        ]
        self.server_problems.extend(bad[:10])
        if self.server.returncode is not None:
            self.server_problems.append(f"server exited with {self.server.returncode}")
        return bad

    def log_problems(self) -> list[str]:
        """The server's new WARNING/ERROR lines, as one problem (or none)."""
        lines = self.check_server_log()
        return [f"server log: {len(lines)} WARNING/ERROR lines: {lines[:3]}"] if lines else []

    def stop(self) -> None:
        for proc in self.publishers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        if self.readers is not None:
            self.readers.close()
        if self.server is not None:
            self.check_server_log()
            try:
                code = self.server.stop()
                self.cleanup.append(f"server stopped (exit status {code})")
                if code != 0:
                    self.server_problems.append(f"server exit status {code}")
            except Exception as exc:
                self.server.kill()
                self.server_problems.append(f"server did not stop: {exc}")
                self.cleanup.append("server killed")
        self.delete_exchange()
        self.tmp.cleanup()

    # -- clients ----------------------------------------------------------------------------

    def open_clients(self, variant: str) -> dict[str, Any]:
        """Open the clients of ``variant``; return the expected fan-out per group."""
        args = self.args
        specs: list[list[dict[str, Any]]] = [[] for _ in self.readers.procs]
        group_of: list[int] = []
        samplers = 0
        for index in range(args.clients):
            group = index % args.groups
            group_of.append(group)
            query = {"profile_id": f"{self.run_id}-p{group}"} if variant == "filtered" else {}
            sample = args.sample_every > 0 and (index // args.groups) % args.sample_every == 0 \
                if variant == "filtered" else args.sample_every > 0 and \
                index % args.sample_every == 0
            samplers += bool(sample)
            specs[index % len(specs)].append({"index": index, "query": query, "sample": sample})
        before = self.counters()["streaming"]
        answers = self.readers.each([
            {"cmd": "open", "host": "127.0.0.1", "port": self.stream_port, "clients": part}
            for part in specs
        ])
        opened = sum(a["opened"] for a in answers)
        failed = sum(a["failed"] for a in answers)
        if failed:
            raise RuntimeError(f"{failed} of {args.clients} clients could not connect: "
                               f"{[e for a in answers for e in a['errors']][:3]}")
        # Wait (bounded) until the server has every query subscribed.
        deadline = time.monotonic() + 15
        while True:
            streaming = self.counters()["streaming"]
            if streaming >= before + opened:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {streaming - before} of {opened} clients streaming "
                                   "after 15 s")
            time.sleep(0.05)
        fanout = args.clients // args.groups if variant == "filtered" else args.clients
        return {"opened": opened, "group_of": group_of, "fanout": fanout, "samplers": samplers,
                "open_s": max(a["seconds"] for a in answers)}

    def close_clients(self) -> None:
        self.readers.all({"cmd": "close"})
        deadline = time.monotonic() + 10
        while self.counters()["streaming"] and time.monotonic() < deadline:
            time.sleep(0.05)

    def reader_totals(self, latencies: bool = False) -> dict[str, Any]:
        stats = self.readers.all({"cmd": "stats", "latencies": latencies})
        total: dict[str, Any] = {
            key: sum(s[key] for s in stats)
            for key in ("open", "lines", "bytes", "reads", "gaps", "dups", "eofs", "errors",
                        "latency_samples")
        }
        total["first_ns"] = min((s["first_ns"] for s in stats if s["first_ns"]), default=0)
        total["last_ns"] = max(s["last_ns"] for s in stats)
        total["per_client"] = {int(k): v for s in stats for k, v in s["per_client"].items()}
        total["error_samples"] = [e for s in stats for e in s["error_samples"]][:5]
        if latencies:
            total["latencies_us"] = sorted(v for s in stats for v in s["latencies_us"])
        return total

    # -- publishers -------------------------------------------------------------------------

    def start_publishers(self, rate: float, duration: float, count: int = 0,
                         bounded: bool = True) -> list[subprocess.Popen]:
        args = self.args
        procs = []
        for index in range(args.publishers):
            config = {
                "url": args.amqp_url,
                "exchange": self.exchange,
                "index": index,
                "publishers": args.publishers,
                "groups": args.groups,
                "run": self.run_id,
                "duration": duration,
                "rate": rate / args.publishers,
                "max_backlog": args.max_backlog,
                "backlog_seconds": args.backlog_seconds if bounded else 0,
                "count": count // args.publishers + (index < count % args.publishers),
                "healthz": ["127.0.0.1", self.server.port],
            }
            procs.append(subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), PUBLISHER_FLAG, json.dumps(config)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, text=True,
            ))
        self.publishers = procs
        for proc in procs:
            line = self._read_line(proc, 30)
            if json.loads(line).get("ready") is not True:
                raise RuntimeError(f"publisher {proc.pid} not ready: {line.strip()}")
        return procs

    @staticmethod
    def _read_line(proc: subprocess.Popen, timeout: float) -> str:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            proc.kill()
            raise RuntimeError(f"publisher {proc.pid}: no answer within {timeout} s")
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"publisher {proc.pid} exited ({proc.wait(5)}) without answer")
        return line

    def publish(self, rate: float, duration: float,
                watch: dict[str, int | None] | None = None) -> dict[str, Any]:
        """Run the publishers; return their summed result and (if ``watch``) CPU use."""
        procs = self.start_publishers(rate, duration)
        cpu = CpuWatch(watch) if watch else None
        before = self.counters()
        go = time.monotonic()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            line = self._read_line(proc, duration + 60)
            results.append(json.loads(line))
            proc.wait(10)
        at_stop = self.counters()
        self.publishers = []
        cpu_pct = cpu.percent({f"publisher{r.get('index', i)}": r.get("cpu_s", 0.0)
                               for i, r in enumerate(results)}) if cpu else None
        errors = [r["error"] for r in results if "error" in r]
        errors += [e for r in results for e in r.get("errors", [])]
        ok = [r for r in results if "sent" in r]
        return {
            "before": before,
            "at_stop": at_stop,
            "window_s": at_stop["at"] - go,
            "sent": sum(r["sent"] for r in ok),
            "per_group": [sum(col) for col in zip(*(r["per_group"] for r in ok), strict=True)]
            if ok else [],
            "publish_s": max((r["stop_wall"] - r["start_wall"] for r in ok), default=0.0),
            "routed_s": max((r["routed_wall"] - r["start_wall"] for r in ok), default=0.0),
            "behind": sum(r["behind"] for r in ok),
            "throttled_s": max((r["throttled_s"] for r in ok), default=0.0),
            "max_allowed_backlog": sum(r["max_allowed_backlog"] for r in ok),
            "waited_socket_s": max((r["waited_socket_s"] for r in ok), default=0.0),
            "blocked": sum(r["blocked"] for r in ok),
            "frames": sorted({r.get("frames", "?") for r in ok}),
            "errors": errors,
            "cpu_pct": cpu_pct,
            "machine_busy": cpu.machine_busy if cpu else None,
        }

    # -- runs -------------------------------------------------------------------------------

    def wait_drained(self, before: dict[str, Any], sent: int, fanout: int,
                     limit: float) -> tuple[dict[str, Any], dict[str, Any], float]:
        """Wait until every packet sent was ingested and delivered; no progress for 5 s or
        ``limit`` s ends the wait. Returns (server counters, reader totals, seconds)."""
        started = time.monotonic()
        last_progress, last_key = started, None
        while True:
            counters = self.counters()
            totals = self.reader_totals()
            consumed = counters["consumed"] - before["consumed"]
            done = consumed >= sent and totals["lines"] >= consumed * fanout
            key = (counters["consumed"], totals["lines"])
            now = time.monotonic()
            if key != last_key:
                last_progress, last_key = now, key
            if done or now - last_progress > 5.0 or now - started > limit:
                return counters, totals, now - started
            time.sleep(0.1)

    def warm_up(self, clients: dict[str, Any]) -> list[str]:
        """A short paced run, not counted: the whole path works, code paths are warm."""
        self.readers.all({"cmd": "reset"})
        published = self.publish(1000.0, 0.5)
        counters, totals, _ = self.wait_drained(published["before"], published["sent"],
                                                clients["fanout"], 15.0)
        problems = list(published["errors"])
        expected = published["sent"] * clients["fanout"]
        if totals["lines"] != expected:
            problems.append(f"warm-up: {totals['lines']} of {expected} deliveries arrived "
                            f"({counters['consumed'] - published['before']['consumed']} of "
                            f"{published['sent']} packets ingested)")
        return problems

    def run_load(self, label: str, variant: str, clients: dict[str, Any],
                 rate: float) -> dict[str, Any]:
        args = self.args
        fanout = clients["fanout"]
        self.readers.all({"cmd": "reset"})
        rss_before = rss_of(self.pid, missing_ok=True)
        watch = {"server": self.pid, "rabbitmq": self.broker_pid, "bench": os.getpid(),
                 **{f"reader{i}": pid for i, pid in enumerate(self.readers.pids)}}
        published = self.publish(rate, args.duration, watch)
        before, at_stop = published["before"], published["at_stop"]
        readers_at_stop = self.reader_totals()
        window = published["window_s"]
        sent = published["sent"]
        counters, _, drain_s = self.wait_drained(before, sent, fanout, args.drain_timeout)
        totals = self.reader_totals(latencies=True)
        rss_after = rss_of(self.pid, missing_ok=True)
        lat = totals.pop("latencies_us")
        consumed = counters["consumed"] - before["consumed"]
        consumed_at_stop = at_stop["consumed"] - before["consumed"]
        sent_at_stop = at_stop["sent"] - before["sent"]
        delivered = totals["lines"]
        expected = consumed * fanout
        cpu_pct = published["cpu_pct"]
        # Per-client deliveries against what its group was published (when all ingested).
        per_group_expected = (published["per_group"] if variant == "filtered"
                              else [sent] * args.groups)
        short_clients = [
            i for i, group in enumerate(clients["group_of"])
            if totals["per_client"].get(i, 0) != per_group_expected[group]
        ] if consumed == sent else []
        result: dict[str, Any] = {
            "run": label,
            "variant": variant,
            "clients": clients["opened"],
            "fanout": fanout,
            "publishers": args.publishers,
            "target_packets_per_s": round(rate) if rate else "max",
            "window_s": round(window, 2),
            "published": sent,
            "published_per_s": round(sent / published["publish_s"]) if published["publish_s"]
            else 0,
            "ingested_per_s": round(consumed_at_stop / window),
            "packets_sent_per_s": round(sent_at_stop / window),
            "deliveries_per_s": round(readers_at_stop["lines"] / window),
            "delivered_packets_per_s": round(readers_at_stop["lines"] / window / fanout),
            "ingested": consumed,
            "deliveries": delivered,
            "expected_deliveries": expected,
            "backlog_at_stop": sent - consumed_at_stop,
            "drain_s": round(drain_s, 2),
            "latency_samples": totals["latency_samples"],
            "samplers": clients["samplers"],
            "latency_p50_ms": round(percentile(lat, 0.50) / 1000, 2) if lat else None,
            "latency_p99_ms": round(percentile(lat, 0.99) / 1000, 2) if lat else None,
            "latency_max_ms": round(lat[-1] / 1000, 2) if lat else None,
            "dropped_by_server": counters["dropped"] - before["dropped"],
            "malformed": counters["malformed"] - before["malformed"],
            "failed": counters["failed"] - before["failed"],
            "not_ingested": sent - consumed,
            "missing_deliveries": expected - delivered,
            "order_gaps_dups": [totals["gaps"], totals["dups"]],
            "wire_bytes_per_line": round(totals["bytes"] / delivered, 1) if delivered else 0,
            # About the packets per server write to a client (a read gets what one or more
            # writes sent): few means one write per delivery or so.
            "lines_per_read": round(delivered / totals["reads"], 2) if totals["reads"] else 0,
            "publisher_throttled_s": published["throttled_s"],
            "largest_backlog_allowed": published["max_allowed_backlog"],
            "publisher_behind": published["behind"],
            "publisher_frames": published["frames"],
            "healthz_ms_at_stop": round(at_stop["healthz_ms"], 1),
            "cpu_pct_of_core": cpu_pct,
            # CPU time per packet ingested while publishing: what each process costs per
            # packet whatever the machine's load (the server's must stay under 1e6 / rate).
            "cpu_us_per_packet": {
                name: round(pct / 100 * window * 1e6 / consumed_at_stop, 1)
                for name, pct in cpu_pct.items() if name != "others" and pct == pct
            } if consumed_at_stop else {},
            "machine_busy_pct_of_all_cores": published["machine_busy"],
            "server_rss_mb_before_after": [mb(rss_before), mb(rss_after)],
        }
        problems = []
        if published["errors"]:
            problems.append(f"publisher errors: {published['errors'][:3]}")
        if published["blocked"]:
            problems.append(f"the broker blocked the publishers {published['blocked']} times "
                            "(resource alarm)")
        if consumed != sent:
            problems.append(f"ingested {consumed} of {sent} packets published "
                            f"(after {drain_s:.1f} s of drain)")
        if delivered != expected:
            problems.append(f"delivered {delivered} of {expected} expected")
        if short_clients:
            problems.append(f"{len(short_clients)} clients got another count than their group "
                            f"was published, first: {short_clients[:5]}")
        if totals["gaps"] or totals["dups"]:
            problems.append(f"samplers saw seq gaps {totals['gaps']}, dups {totals['dups']}")
        if result["dropped_by_server"] or result["malformed"] or result["failed"]:
            problems.append(f"server dropped {result['dropped_by_server']}, malformed "
                            f"{result['malformed']}, failed {result['failed']}")
        if counters["slow_disconnects"] - before["slow_disconnects"]:
            problems.append("server closed slow clients")
        if counters["reconnects"] != before["reconnects"]:
            problems.append("amqp-ingest reconnected during the run")
        if totals["eofs"] or totals["errors"]:
            problems.append(f"client EOFs {totals['eofs']}, errors {totals['errors']} "
                            f"{totals['error_samples']}")
        if totals["open"] != clients["opened"]:
            problems.append(f"{totals['open']} of {clients['opened']} clients still open")
        if rate and published["behind"] > rate * 0.02:
            problems.append(f"publishers {published['behind']} packets behind the pace")
        problems += self.log_problems()
        result["problems"] = problems
        readers_max = max((v for k, v in cpu_pct.items() if k.startswith("reader")), default=0)
        pubs_max = max((v for k, v in cpu_pct.items() if k.startswith("publisher")), default=0)
        result["readers_saturated"] = readers_max > 85
        # Flat out, the publishers, not the server, set the pace when not throttled.
        result["publisher_limited"] = pubs_max > 85 and (
            (not rate and published["throttled_s"] < 0.1 * args.duration)
            or (bool(rate) and published["behind"] > rate * 0.02))
        result["machine_contended"] = cpu_pct.get("others", 0) > 15
        # Every core busy: the processes of the bench (server, broker, publishers,
        # readers) took CPU from each other, the server's figures are lower for it.
        result["machine_saturated"] = (published["machine_busy"] or 0) > 90
        return result

    def run_drain(self, variant: str, clients: dict[str, Any], count: int) -> dict[str, Any]:
        """``count`` packets queued in the broker while the server is stopped (SIGSTOP),
        then drained (SIGCONT): the server's own capacity, its reads full and each write
        to a client carrying many packets, without publishing competing for the CPU."""
        args = self.args
        fanout = clients["fanout"]
        self.readers.all({"cmd": "reset"})
        procs = self.start_publishers(0.0, 600.0, count=count, bounded=False)
        before = self.counters()
        results: list[dict[str, Any]] = []
        os.kill(self.pid, signal.SIGSTOP)
        try:
            for proc in procs:
                proc.stdin.write("go\n")
                proc.stdin.flush()
            results = [json.loads(self._read_line(proc, 600)) for proc in procs]
            for proc in procs:
                proc.wait(10)
            self.publishers = []
        finally:
            cpu = CpuWatch({"server": self.pid, "rabbitmq": self.broker_pid,
                            **{f"reader{i}": pid for i, pid in enumerate(self.readers.pids)}})
            resumed = time.monotonic()
            os.kill(self.pid, signal.SIGCONT)
        sent = sum(r.get("sent", 0) for r in results)
        healthz_ms: list[float] = []
        ingest_s = None
        while time.monotonic() - resumed < args.drain_timeout:
            counters = self.counters()
            healthz_ms.append(counters["healthz_ms"])
            if counters["consumed"] - before["consumed"] >= sent:
                ingest_s = counters["at"] - resumed
                break
            time.sleep(0.05)
        counters, totals, _ = self.wait_drained(before, sent, fanout, args.drain_timeout)
        cpu_pct = cpu.percent()
        elapsed = time.monotonic() - cpu.t0
        consumed = counters["consumed"] - before["consumed"]
        delivered = totals["lines"]
        span_s = (totals["last_ns"] - totals["first_ns"]) / 1e9 if totals["first_ns"] else 0
        healthz_ms.sort()
        result: dict[str, Any] = {
            "run": f"{variant} drain",
            "variant": variant,
            "clients": clients["opened"],
            "fanout": fanout,
            "queued": sent,
            # Into the broker's queue, nothing consuming it: what the publishers can do.
            "published_per_s": round(sent / max(r["stop_wall"] - r["start_wall"] for r in results))
            if results and all("stop_wall" in r for r in results) else None,
            "ingested": consumed,
            "ingested_per_s": round(consumed / ingest_s) if ingest_s else None,
            "deliveries": delivered,
            "deliveries_per_s": round(delivered / span_s) if span_s else None,
            "delivered_packets_per_s": round(delivered / span_s / fanout) if span_s else None,
            "delivery_span_s": round(span_s, 2),
            "healthz_ms_p50_max_during_drain": [
                round(percentile(healthz_ms, 0.5), 1), round(healthz_ms[-1], 1)
            ] if healthz_ms else None,
            "lines_per_read": round(delivered / totals["reads"], 2) if totals["reads"] else 0,
            "cpu_pct_of_core": cpu_pct,
            "cpu_us_per_packet": {
                name: round(pct / 100 * elapsed * 1e6 / consumed, 1)
                for name, pct in cpu_pct.items() if name != "others" and pct == pct
            } if consumed else {},
            "dropped_by_server": counters["dropped"] - before["dropped"],
        }
        problems = [e for r in results for e in ([r["error"]] if "error" in r else [])
                    + r.get("errors", [])]
        if consumed != sent:
            problems.append(f"ingested {consumed} of {sent} packets queued")
        if delivered != consumed * fanout:
            problems.append(f"delivered {delivered} of {consumed * fanout} expected")
        if totals["gaps"] or totals["dups"] or result["dropped_by_server"]:
            problems.append(f"samplers saw seq gaps {totals['gaps']}, dups {totals['dups']}; "
                            f"server dropped {result['dropped_by_server']}")
        problems += self.log_problems()
        result["problems"] = problems
        return result

    def variant(self, variant: str) -> list[dict[str, Any]]:
        clients = self.open_clients(variant)
        runs: list[dict[str, Any]] = []
        try:
            problems = self.warm_up(clients)
            if problems:
                return [{"run": f"{variant} warm-up", "variant": variant, "problems": problems}]
            peak = self.run_load(f"{variant} peak", variant, clients, 0.0)
            runs.append(peak)
            for spec in self.args.paced:
                if spec.endswith("x"):
                    rate = float(spec[:-1]) * peak["ingested_per_s"]
                    label = f"{variant} paced {spec}"
                else:
                    rate = float(spec)
                    label = f"{variant} paced {rate:.0f}/s"
                if rate <= 0:
                    continue
                time.sleep(0.3)
                runs.append(self.run_load(label, variant, clients, rate))
            if self.args.drain:
                runs.append(self.run_drain(variant, clients, self.args.drain))
            return runs
        finally:
            self.close_clients()

    def run(self) -> dict[str, Any]:
        for variant in self.args.variants:
            self.results["runs"] += self.variant(variant)
        return self.results


def conditions(bench: Bench) -> dict[str, Any]:
    import pika

    args = bench.args
    keys = ", ".join(f"{k}={v}" for k, v in bench.app_keys().items())
    probe = {"t": time.time_ns(), "pub": 0, "seq": 0, "profile_id": f"{bench.run_id}-p0",
             "address": "10.4.1.17", "port": 4001, "time": int(time.time() * 1000),
             "temperature": 21.5, "humidity": 40, "light": 300}
    return {
        **machine_info(),
        "pika": pika.__version__,
        "rabbitmq": f"{bench.broker_version} at {args.amqp_url.split('@')[-1]}, pid "
                    f"{bench.broker_pid or 'unknown (its CPU is in others)'}",
        "commit": git_state(),
        "server": (f"pserve on a temp copy of development.ini (local bus), pid {bench.pid}; "
                   f"app keys {keys}; amqp-ingest queue {bench.door_info['queue']}, prefetch "
                   f"{bench.door_info['prefetch']}"),
        "exchange": f"{bench.exchange} (headers, durable, deleted at the end)",
        "where": (f"all on this machine: server 1 process; {args.publishers} publisher "
                  f"process(es) (pika SelectConnection, Basic.Publish frames built by hand "
                  f"byte for byte as pika's, unconfirmed, headers as PacketPublisher); "
                  f"{args.readers} reader process(es) (epoll, raw sockets, "
                  f"lines counted)"),
        "packet": f"{len(probe)} fields, all AMQP headers, "
                  f"~{len(json.dumps(probe, separators=(',', ':')))} bytes of JSON",
        "clients": args.clients,
        "groups": f"{args.groups} (filtered: {args.clients // args.groups} clients per "
                  "profile_id; all: every client queries {})",
        "latency_from": (f"1 client in {args.sample_every} of each group (filtered) or of all "
                         "(all), every packet it gets"),
        "duration_s": args.duration,
        "backlog_bound": (f"publishers stay at most {args.backlog_seconds:g} s of the server's "
                          f"measured ingest rate ahead of it (at least {MIN_BACKLOG}, at most "
                          f"{args.max_backlog} packets; /healthz read 10x/s by each publisher)"
                          if args.backlog_seconds else "none"),
        "paced": args.paced,
        "target": TARGET,
        "nofile_limit": list(bench.nofile),
    }


def summary_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for run in results["runs"]:
        if "cpu_pct_of_core" not in run:
            lines.append(f"  {run['run']:22} FAILED: {run['problems']}")
            continue
        cpu = run["cpu_pct_of_core"]
        if run["run"].endswith(" drain"):
            lines.append(
                f"  {run['run']:22} {run['queued']:,} queued while the server was stopped "
                f"(published at {run['published_per_s'] or 0:,}/s): "
                f"ingested {run['ingested_per_s'] or 0:>6,}/s, delivered "
                f"{run['delivered_packets_per_s'] or 0:>6,} packets/s = "
                f"{run['deliveries_per_s'] or 0:>7,} deliveries/s (x{run['fanout']}); server "
                f"{run['cpu_us_per_packet'].get('server')} us cpu/packet; cpu % server "
                f"{cpu.get('server')} rabbitmq {cpu.get('rabbitmq', '?')} readers "
                f"{sum(v for k, v in cpu.items() if k.startswith('reader')):.0f} others "
                f"{cpu['others']}; /healthz p50/max {run['healthz_ms_p50_max_during_drain']} ms"
                f"{' PROBLEMS' if run['problems'] else ''}")
            for problem in run["problems"]:
                lines.append(f"    PROBLEM: {problem}")
            continue
        readers = sum(v for k, v in cpu.items() if k.startswith("reader"))
        pubs = sum(v for k, v in cpu.items() if k.startswith("publisher"))
        flags = [name for name in ("publisher_limited", "readers_saturated", "machine_contended",
                                   "machine_saturated") if run[name]]
        flags += ["PROBLEMS"] if run["problems"] else []
        lines.append(
            f"  {run['run']:22} ingested {run['ingested_per_s']:>6,}/s, delivered "
            f"{run['delivered_packets_per_s']:>6,} packets/s = {run['deliveries_per_s']:>7,} "
            f"deliveries/s to {run['clients']} clients (x{run['fanout']}); latency p50 "
            f"{run['latency_p50_ms']} ms p99 {run['latency_p99_ms']} ms; dropped "
            f"{run['dropped_by_server']}, missing {run['missing_deliveries']}; server "
            f"{run['cpu_us_per_packet'].get('server')} us cpu/packet; cpu % server "
            f"{cpu.get('server')} rabbitmq {cpu.get('rabbitmq', '?')} publishers {pubs:.0f} "
            f"readers {readers:.0f} others {cpu['others']}, machine "
            f"{run['machine_busy_pct_of_all_cores']}% busy {' '.join(flags)}")
        for problem in run["problems"]:
            lines.append(f"    PROBLEM: {problem}")
    return lines


def target_verdict(results: dict[str, Any]) -> str:
    peaks = [r for r in results["runs"] if r.get("run") == "filtered peak"]
    if not peaks or "ingested_per_s" not in peaks[0]:
        return "not measured (no filtered peak run)"
    peak = peaks[0]
    got = min(peak["ingested_per_s"], peak["delivered_packets_per_s"])
    met = got >= TARGET_PACKETS_PER_S and not peak["problems"] and peak["clients"] >= 100
    return (f"{'MET' if met else 'NOT MET'}: filtered peak ingested {peak['ingested_per_s']:,}/s"
            f", delivered {peak['delivered_packets_per_s']:,} packets/s to "
            f"{peak['clients']} clients ({got / TARGET_PACKETS_PER_S:.0%} of the target)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100, help="TCP streamer clients")
    parser.add_argument("--groups", type=int, default=10,
                        help="profile_ids: filtered clients are split into this many groups")
    parser.add_argument("--variants", default="filtered,all",
                        help="comma separated: filtered, all")
    parser.add_argument("--duration", type=float, default=8.0,
                        help="seconds of publishing per run")
    parser.add_argument("--paced", default="0.5x",
                        help="paced runs after each peak, comma separated: 0.5x (fraction of "
                        "the peak ingest rate) or packets/s; empty = none")
    parser.add_argument("--publishers", type=int, default=1, help="publisher processes")
    parser.add_argument("--drain", type=int, default=0,
                        help="after the peak and paced runs of each variant, queue this many "
                        "packets while the server is stopped, then time how fast it drains "
                        "them (0 = no drain run)")
    parser.add_argument("--readers", type=int, default=1, help="reader processes")
    parser.add_argument("--sample-every", type=int, default=10,
                        help="1 client in N (of each group) times every packet it gets")
    parser.add_argument("--backlog-seconds", type=float, default=0.3,
                        help="publishers stay at most this many seconds of the server's "
                        "measured ingest rate ahead of it (0 = no bound: the broker queue "
                        "grows while the server is slower)")
    parser.add_argument("--max-backlog", type=int, default=20000,
                        help="and at most this many packets ahead")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="longest wait after publishing for the backlog to arrive")
    parser.add_argument("--prefetch", type=int, default=0,
                        help="the server's amqp.prefetch (default: the server's, 1000)")
    parser.add_argument("--outbox-size", type=int, default=0,
                        help="the server's tcp_streamer.outbox_size (default: the server's)")
    parser.add_argument("--amqp-url", default=DEFAULT_AMQP_URL,
                        help="RabbitMQ (default $CHANNELSTREAM_TEST_AMQP_URL or guest@127.0.0.1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    args.paced = [p.strip() for p in args.paced.split(",") if p.strip()]
    for variant in args.variants:
        if variant not in ("filtered", "all"):
            parser.error(f"--variants: unknown variant {variant!r}")
    if args.groups < 1 or args.clients % args.groups:
        parser.error("--clients must be a multiple of --groups")
    sys.path.insert(0, str(REPO))
    import logging

    logging.getLogger("pika").setLevel(logging.CRITICAL)

    started = time.monotonic()
    try:
        bench = Bench(args)
    except BrokerProblem as exc:
        raise SystemExit(f"bench/packets.py: {exc}") from None
    cond: dict[str, Any] = {}
    try:
        bench.setup()
        results = bench.run()
        cond = conditions(bench)
    finally:
        bench.stop()
    results["server_problems"] = bench.server_problems
    results["cleanup"] = bench.cleanup
    results["target"] = TARGET
    results["verdict"] = target_verdict(results)
    results["total_s"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps({"conditions": cond, "results": results}))
        return
    print("GATD packets: pika publisher -> RabbitMQ -> amqp-ingest -> hub -> TCP streamer:")
    for key, value in cond.items():
        print(f"  {key:14} {value}")
    for run in results["runs"]:
        print(f"\n[{run['run']}]")
        for key, value in run.items():
            if key != "run":
                print(f"  {key:30} {value}")
    print("\nsummary:")
    for line in summary_lines(results):
        print(line)
    print(f"target: {TARGET}")
    print(f"  {results['verdict']}")
    print(f"server problems: {bench.server_problems or 'none'}")
    print(f"cleanup: {'; '.join(bench.cleanup)}; total {results['total_s']} s")


if __name__ == "__main__":
    if READER_FLAG in sys.argv[1:]:
        reader_main()
    elif PUBLISHER_FLAG in sys.argv[1:]:
        publisher_main()
    else:
        main()
