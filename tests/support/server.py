"""Run the real server as a subprocess for tests: :class:`RunningServer`.

A test copies an ini file (``development.ini``, ``production.ini``...) into
a temporary folder with its own port and any overridden keys, starts
``pserve`` (or another command) on it, waits until ``/healthz`` answers, talks
to it over loopback, and stops it with SIGTERM::

    with RunningServer(REPO / "development.ini", tmp_path) as server:
        requests.get(server.url + "/healthz")
    assert server.returncode == 0

If the server does not come up, :meth:`RunningServer.start` raises
:class:`ServerFailed` whose message holds the server's stderr. Door tests of
later changes reuse this helper: pass ``app={...}`` to set door keys.
"""

from __future__ import annotations

import atexit
import configparser
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import redis  # imported now: the atexit cleanup cannot import it at shutdown
import requests

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

#: Hides pyramid's pkg_resources deprecation notice so stderr shows only ours.
QUIET_WARNINGS = "ignore:pkg_resources is deprecated:UserWarning"

#: [app:main] keys that swap in the test-only probe app (tests/support/testapp.py).
PROBE_APP = {"use": None, "paste.app_factory": "tests.support.testapp:make_app"}

#: Keys whose loopback addresses a copy moves to free ports: development.ini's
#: demo feeds, sources that connect to the senders of ``make demo-data``.
DEMO_FEEDS = ("zmq.sources", "g3.sources")
_LOOPBACK_PORT = re.compile(r"(tcp://127\.0\.0\.1:)(\d+)")


#: (redis.url or None for the ini's, prefix) of the servers given their own prefix;
#: their keys are deleted when the test run ends (a server may restart in a test
#: and must find its keys again).
_OWN_PREFIXES: list[tuple[str | None, str]] = []


@atexit.register
def _delete_own_redis_keys() -> None:
    if not _OWN_PREFIXES:
        return
    for url, prefix in _OWN_PREFIXES:
        try:
            client = redis.Redis.from_url(url or "redis://127.0.0.1:6379/0", socket_timeout=2)
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
            client.close()
        except redis.RedisError:
            pass  # Redis is not there: nothing to delete


def _uses_redis(source: Path, app: Mapping[str, str | None]) -> bool:
    """True if the copy will run ``hub.engine = redis`` (production.ini does)."""
    if "hub.engine" in app:
        return app["hub.engine"] == "redis"
    parser = configparser.RawConfigParser()
    parser.read(source, encoding="utf-8")
    return parser.get("app:main", "hub.engine", fallback="local").strip() == "redis"


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServerFailed(AssertionError):
    """The server did not come up (or did not stop); the message holds its stderr."""


def moved_demo_feeds(source: Path) -> dict[str, str]:
    """``source``'s :data:`DEMO_FEEDS` with every ``tcp://127.0.0.1:<port>`` on a port
    free now: a copy's sources connect where nobody sends (``waiting``), never to a
    ``make demo-data`` running beside the tests (nor does it lose frames to them)."""
    parser = configparser.RawConfigParser()
    parser.read(source, encoding="utf-8")
    if not parser.has_section("app:main"):
        return {}
    return {
        key: _LOOPBACK_PORT.sub(lambda m: f"{m.group(1)}{free_port()}", parser["app:main"][key])
        for key in DEMO_FEEDS
        if parser.has_option("app:main", key)
    }


def write_ini(
    source: Path,
    target: Path,
    *,
    app: Mapping[str, str | None] | None = None,
    server: Mapping[str, str | None] | None = None,
) -> Path:
    """Copy ``source`` to ``target`` with keys of [app:main]/[server:main] replaced.

    A value of ``None`` removes the key. Values are written raw (``%(here)s``
    is left for PasteDeploy, and then means the target's folder).
    """
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # keep keys as written
    parser.read(source, encoding="utf-8")
    for section, changes in (("app:main", app or {}), ("server:main", server or {})):
        for key, value in changes.items():
            if value is None:
                parser.remove_option(section, key)
            else:
                parser.set(section, key, value)
    with open(target, "w", encoding="utf-8") as f:
        parser.write(f)
    return target


class RunningServer:
    """One server subprocess on a free loopback port.

    :param ini: the ini file to copy; its [server:main] host/port and its
        ``tcp_streamer.listen`` are replaced by free loopback ports, and so are
        the loopback ports its demo feeds connect to (:func:`moved_demo_feeds`).
    :param tmp_dir: where the copy, stdout and stderr files go.
    :param app: [app:main] keys to set (``None`` removes a key).
    :param server: [server:main] keys to set.
    :param env: environment variables for the server (``None`` removes one).
    :param command: argv before the ini path; default ``pserve``. Use
        ``"{ini}"``/``"{port}"`` placeholders to place them yourself.
    :param ready_path: the path polled until it answers 200.
    """

    def __init__(
        self,
        ini: Path | str,
        tmp_dir: Path,
        *,
        app: Mapping[str, str | None] | None = None,
        server: Mapping[str, str | None] | None = None,
        env: Mapping[str, str | None] | None = None,
        command: Sequence[str] | None = None,
        ready_path: str = "/healthz",
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        #: The GATD TCP streamer's port: a free one too, so servers never collide.
        self.tcp_streamer_port = free_port()
        self.tmp_dir = Path(tmp_dir)
        source = Path(ini)
        server_keys = {"host": "127.0.0.1", "port": str(self.port), **(server or {})}
        app_keys = {
            "tcp_streamer.listen": f"127.0.0.1:{self.tcp_streamer_port}",
            **moved_demo_feeds(source),
            **(app or {}),
        }
        #: A key prefix of this server's own when its copy runs on Redis and the
        #: test names none (tests that share Redis between servers name theirs):
        #: no test sees another's channels, presence or loom events; deleted on exit.
        self.own_redis_prefix: str | None = None
        if (_uses_redis(source, app_keys) and "redis.key_prefix" not in app_keys
                and "CHANNELSTREAM_REDIS_KEY_PREFIX" not in (env or {})):
            self.own_redis_prefix = f"test-{uuid.uuid4().hex[:12]}:"
            app_keys["redis.key_prefix"] = self.own_redis_prefix
            _OWN_PREFIXES.append((app_keys.get("redis.url"), self.own_redis_prefix))
        self.ini = write_ini(source, self.tmp_dir / source.name, app=app_keys, server=server_keys)
        self.command = list(command) if command is not None else [str(BIN / "pserve"), "{ini}"]
        self.env = dict(env or {})
        self.ready_path = ready_path
        self.process: subprocess.Popen[bytes] | None = None
        self.stdout_path = self.tmp_dir / f"{source.stem}.stdout"
        self.stderr_path = self.tmp_dir / f"{source.stem}.stderr"

    # -- lifecycle ----------------------------------------------------------

    def spawn(self) -> RunningServer:
        """Start the subprocess without waiting for it to be ready."""
        env = {**os.environ, "PYTHONWARNINGS": QUIET_WARNINGS, **self.env}
        env = {key: value for key, value in env.items() if value is not None}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        argv = [arg.format(ini=self.ini, port=self.port) for arg in self.command]
        if not any("{ini}" in arg for arg in self.command):
            argv.append(str(self.ini))
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                argv, cwd=self.tmp_dir, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL
            )
        return self

    def start(self, timeout: float = 30.0) -> RunningServer:
        """Spawn and wait until ``ready_path`` answers 200; raise :class:`ServerFailed`.

        ``/healthz`` answers 200 as soon as the listener is up, while the
        runtime may still be starting its doors: its ``state`` must also say
        ``running`` (a request could otherwise reach a door not yet open).
        """
        self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(f"server exited with {self.process.returncode}\n{self.stderr}")
            try:
                response = requests.get(self.url + self.ready_path, timeout=2)
                if response.status_code == 200 and _runtime_started(response):
                    return self
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or slow to answer on a loaded machine
            time.sleep(0.05)
        self.kill()
        raise ServerFailed(f"server not ready within {timeout}s\n{self.stderr}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` and wait for the exit; return the exit status."""
        if self.process is None:
            raise ServerFailed("server was never started")
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for the process to exit; kill it and raise :class:`ServerFailed` on timeout."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServerFailed(f"server did not exit within {timeout}s\n{self.stderr}") from None

    def kill(self) -> None:
        """Kill the process (cleanup path only)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """SIGTERM and wait; kill it if it does not stop."""
        try:
            if self.process is not None and self.process.poll() is None:
                self.stop()
        finally:
            self.kill()

    # -- what it said ---------------------------------------------------------

    @property
    def returncode(self) -> int | None:
        """The exit status, or None while it runs."""
        return None if self.process is None else self.process.poll()

    @property
    def stderr(self) -> str:
        """Everything the server wrote to stderr so far."""
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def stdout(self) -> str:
        """Everything the server wrote to stdout so far."""
        try:
            return self.stdout_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def get(self, path: str, **kwargs: object) -> requests.Response:
        """GET ``path`` on the server (a fresh connection each time)."""
        kwargs.setdefault("timeout", 10)
        return requests.get(self.url + path, **kwargs)


def run_to_exit(
    ini: Path,
    tmp_dir: Path,
    *,
    timeout: float = 30.0,
    **options: object,
) -> RunningServer:
    """Run a server that is expected to exit by itself (e.g. on a bad setting)."""
    server = RunningServer(ini, tmp_dir, **options).spawn()
    server.wait(timeout)
    return server


def _runtime_started(response: requests.Response) -> bool:
    """False while a ``/healthz`` body says the runtime is not running yet."""
    try:
        body = response.json()
    except ValueError:
        return True  # not a /healthz of ours: the 200 is all there is to go by
    return not isinstance(body, dict) or body.get("state", "running") == "running"
