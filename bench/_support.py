"""Helpers shared by the benchmark scripts in bench/ (not a benchmark itself).

The scripts import it as ``_support`` after putting their own folder on ``sys.path``:
machine and condition info, CPU/RSS sampling of processes, percentiles, the
RLIMIT_NOFILE raise, the reader-process pool with its JSON-line protocol and the
stdin/command scaffolding of the epoll readers.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def raise_nofile() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def percentile(sorted_values: list[int], q: float) -> int:
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index]


class CommandReader:
    """The stdin side of a reader process: JSON-line commands in, JSON lines out.

    Subclasses set ``running`` and ``stdin_buf`` and provide ``reset``, ``stats``,
    ``close_all`` and ``_open`` (the ``open`` command).
    """

    running: bool
    stdin_buf: bytes

    def _error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text)

    def _reply(self, obj: dict[str, Any]) -> None:
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        while view:
            try:
                written = os.write(1, view)
            except BlockingIOError:
                select.select([], [1], [])
                continue
            view = view[written:]

    def _open(self, cmd: dict[str, Any]) -> None:
        raise NotImplementedError

    def _command(self, line: bytes) -> None:
        cmd = json.loads(line)
        name = cmd["cmd"]
        if name == "open":
            self._open(cmd)
        elif name == "reset":
            self.reset()
            self._reply({"ok": True})
        elif name == "stats":
            self._reply(self.stats(bool(cmd.get("latencies"))))
        elif name == "close":
            self._reply({"closed": self.close_all()})
        elif name == "exit":
            self.running = False
            self._reply({"ok": True})
        else:
            self._reply({"error": f"unknown command {name!r}"})

    def _on_stdin(self) -> None:
        try:
            data = os.read(0, 1 << 20)
        except BlockingIOError:
            return
        if not data:
            self.running = False
            return
        self.stdin_buf += data
        while b"\n" in self.stdin_buf:
            line, self.stdin_buf = self.stdin_buf.split(b"\n", 1)
            if line.strip():
                self._command(line)


class ReaderProcs:
    """The reader processes (``script`` run with ``flag``) and their JSON-line protocol."""

    def __init__(self, count: int, script: str, flag: str) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, os.path.abspath(script), flag],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=REPO,
            )
            for _ in range(count)
        ]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def _send(self, proc: subprocess.Popen, cmd: dict[str, Any]) -> None:
        proc.stdin.write((json.dumps(cmd, separators=(",", ":")) + "\n").encode())
        proc.stdin.flush()

    def _recv(self, proc: subprocess.Popen) -> dict[str, Any]:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"reader process {proc.pid} exited ({proc.poll()})")
        return json.loads(line)

    def all(self, cmd: dict[str, Any]) -> list[dict[str, Any]]:
        for proc in self.procs:
            self._send(proc, cmd)
        return [self._recv(proc) for proc in self.procs]

    def each(self, cmds: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for proc, cmd in zip(self.procs, cmds, strict=True):
            self._send(proc, cmd)
        return [self._recv(proc) for proc in self.procs]

    def close(self) -> None:
        for proc in self.procs:
            try:
                self._send(proc, {"cmd": "exit"})
                proc.stdin.close()
            except OSError:
                pass
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class CpuWatch:
    """CPU seconds of some processes over an interval, as % of one core."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items() if pid}
        self.start()

    def _cpu(self) -> dict[str, float]:
        result = {}
        for name, proc in self.procs.items():
            try:
                times = proc.cpu_times()
                result[name] = times.user + times.system
            except Exception:  # the process is gone
                result[name] = float("nan")
        return result

    @staticmethod
    def _machine() -> tuple[float, float]:
        """(busy, steal) CPU seconds of the whole machine, all cores summed."""
        import psutil

        times = psutil.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0)
        steal = getattr(times, "steal", 0.0)
        guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
        return sum(times) - idle - steal - guest, steal

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.c0 = self._cpu()
        self.m0 = self._machine()

    def percent(self, extra_cpu_s: dict[str, float] | None = None) -> dict[str, float]:
        """% of one core per process (and ``extra_cpu_s``: CPU seconds reported by
        processes themselves), plus ``others``: what the rest of the machine used."""
        elapsed = time.monotonic() - self.t0
        c1 = self._cpu()
        m1 = self._machine()
        result = {name: round(100 * (c1[name] - self.c0[name]) / elapsed, 1) for name in c1}
        for name, seconds in (extra_cpu_s or {}).items():
            result[name] = round(100 * seconds / elapsed, 1)
        busy = 100 * (m1[0] - self.m0[0]) / elapsed
        #: How busy the whole machine was, in % of all its cores.
        self.machine_busy = round(busy / (os.cpu_count() or 1), 1)
        result["others"] = round(max(0.0, busy - sum(result.values())), 1)
        steal = 100 * (m1[1] - self.m0[1]) / elapsed
        if steal >= 1:
            result["steal"] = round(steal, 1)
        return result


def quiet_access_log(ini: Path) -> None:
    """Raise the ini's ``channelstream.access`` logger to WARNING (no line per request)."""
    import configparser

    parser = configparser.RawConfigParser()
    parser.optionxform = str  # keep the keys' case
    parser.read(ini, encoding="utf-8")
    parser.set("logger_access", "level", "WARNING")
    with open(ini, "w", encoding="utf-8") as f:
        parser.write(f)


def rss_of(pid: int | None, missing_ok: bool = False) -> int | None:
    """Resident memory of ``pid``; with ``missing_ok``, None when it cannot be read."""
    if not pid:
        return None
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        if missing_ok:
            return None
        raise


def mb(value: int | None) -> float | None:
    return None if value is None else round(value / 1e6, 1)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "channelstream"],
                               cwd=REPO, capture_output=True, text=True, timeout=10).stdout
        return head + (" + uncommitted changes under channelstream/" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info() -> dict[str, Any]:
    """The first entries of a bench's conditions: cpu, cores, kernel, python, gevent."""
    import gevent

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "gevent": gevent.__version__,
    }
