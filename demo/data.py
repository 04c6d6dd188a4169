"""``make demo-data``: sample traffic that makes every panel of /demo move.

Run it beside ``make serve``::

    python -m demo.data                      # reads development.ini
    python -m demo.data --ini other.ini --url http://127.0.0.1:8001

It reads the server's address from the ini's ``[server:main]`` (``--url``
or ``CHANNELSTREAM_URL`` win) and its keys from ``[app:main]`` with the
``CHANNELSTREAM_<KEY>`` environment overrides the server honours
(``CHANNELSTREAM_SECRET``...). Then, until Ctrl-C (or SIGTERM), three
workers, each in its own thread:

- **packets**: every :data:`PACKET_INTERVAL` seconds a few GATD packets
  (weather sensors and a power meter) to ``POST /packets``, with a bearer
  token of ``packets.ingest_tokens`` if there is one, else signed with
  ``secret``;
- **loom**: a build log streamed line by line to ``POST /stream/demo-build-N``
  (``N`` cycles over :data:`BUILD_IDS` with ``?force=true``, so the list stays
  short), one line every :data:`LINE_INTERVAL` seconds, ended cleanly, then
  the next build after :data:`BUILD_PAUSE` seconds; ``loom.tokens``' first token if set;
- **chat**: the bot user :data:`BOT` connects to the demo's default channels
  (with the demo's channel settings), keeps a long-poll ``/listen`` open so it
  stays present, posts a line every :data:`CHAT_INTERVAL` seconds (some with
  live figures from ``/healthz``), now and then edits its last message and
  changes its status.

A worker that loses the server (a restart) says so once and tries again
every :data:`RETRY` seconds. On Ctrl-C every worker stops at its next step:
the build log is ended (its stream ``finished``), the bot disconnects; the
process exits 0. It prints one line per worker every :data:`REPORT_EVERY`
seconds.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from channelstream.client import ChannelstreamClient, ChannelstreamError

from .backend import BOT_USER as BOT
from .backend import CHANNEL_CONFIG, DEFAULT_CHANNELS, STATUS_KEY

PACKET_INTERVAL = 0.5
LINE_INTERVAL = 0.4
CHAT_INTERVAL = 4.0
RETRY = 2.0
REPORT_EVERY = 10.0
BUILD_IDS = tuple(f"demo-build-{n}" for n in range(1, 6))
BUILD_STEPS = 30
BUILD_PAUSE = 1.5

CHAT_LINES = (
    "hello from the bot of make demo-data",
    "every message here went through POST /message, signed server-side",
    "this page gets its frames over /ws and resumes by offset after a restart",
    'try a packet query: profile_id = "demo-weather", start 60 s in the past',
    "loom streams: click one to tail it live",
    "edit or delete your own messages: hover over them",
    "click a name in the presence list for a private message",
)


@dataclass(frozen=True)
class Target:
    """Where the server is and what the workers sign or authorise with."""

    url: str
    secret: str
    ingest_token: str | None
    loom_token: str | None


def read_target(ini: Path, url: str | None, environ: Mapping[str, str] = os.environ) -> Target:
    """The server of ``ini`` (``url`` overrides its address), with its credentials."""
    import plaster

    from channelstream.settings import parse_settings

    uri = str(ini.resolve())
    # PasteDeploy's own keys are not settings of the app
    app = {
        k: v
        for k, v in plaster.get_settings(uri, "app:main").items()
        if k != "use" and not k.startswith("paste.")
    }
    server = plaster.get_settings(uri, "server:main")
    settings = parse_settings(app, environ)
    if not url:
        url = environ.get("CHANNELSTREAM_URL")
    if not url:
        host = server.get("host", "127.0.0.1")
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        url = f"http://{host}:{server.get('port', '8000')}"
    return Target(
        url=url.rstrip("/"),
        secret=settings.secret,
        ingest_token=settings.packets.ingest_tokens[0] if settings.packets.ingest_tokens else None,
        loom_token=settings.loom.tokens[0] if settings.loom.tokens else None,
    )


class Worker(threading.Thread):
    """A loop of ``step()`` until ``stop`` is set; failures retried every RETRY s."""

    name_ = "worker"

    def __init__(self, target: Target, stop: threading.Event, say: Callable[[str], None]) -> None:
        super().__init__(name=self.name_, daemon=True)
        self.target = target
        self.stop = stop
        self.say = say
        self.failing = False
        self.done = 0

    def run(self) -> None:
        last_report = time.monotonic()
        while not self.stop.is_set():
            try:
                self.step()
                if self.failing:
                    self.say(f"{self.name_}: the server answers again")
                self.failing = False
            except (OSError, ChannelstreamError, http.client.HTTPException) as err:
                if not self.failing:
                    self.say(f"{self.name_}: {err}; retrying every {RETRY:g} s")
                self.failing = True
                self.stop.wait(RETRY)
            if time.monotonic() - last_report >= REPORT_EVERY:
                self.say(f"{self.name_}: {self.report()}")
                last_report = time.monotonic()
        self.finish()

    def step(self) -> None:
        raise NotImplementedError

    def report(self) -> str:
        return f"{self.done} done"

    def finish(self) -> None:
        """Called once after the loop ends (clean up on the server)."""


class Packets(Worker):
    name_ = "packets"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.client = ChannelstreamClient(self.target.url, self.target.secret or "-")
        self.temperature = {"s1": 21.0, "s2": 24.0, "s3": 18.0}

    def packets(self) -> list[dict[str, Any]]:
        batch = []
        for sensor, value in self.temperature.items():
            value = round(min(max(value + random.uniform(-0.4, 0.4), 10), 35), 1)
            self.temperature[sensor] = value
            batch.append(
                {
                    "profile_id": "demo-weather",
                    "sensor": sensor,
                    "temperature": value,
                    "humidity": random.randint(35, 60),
                }
            )
        batch.append({"profile_id": "demo-power", "meter": "m1", "watts": random.randint(300, 900)})
        return batch

    def step(self) -> None:
        batch = self.packets()
        headers = {}
        if self.target.ingest_token:
            headers["Authorization"] = f"Bearer {self.target.ingest_token}"
            body = json.dumps(batch).encode()
            parts = urllib.parse.urlsplit(self.target.url)
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            try:
                conn.request(
                    "POST", "/packets", body, {**headers, "Content-Type": "application/json"}
                )
                response = conn.getresponse()
                response.read()
                if response.status >= 400:
                    raise ChannelstreamError(response.status, "POST /packets refused")
            finally:
                conn.close()
        else:
            self.client.call("POST", "/packets", batch)
        self.done += len(batch)
        self.stop.wait(PACKET_INTERVAL)

    def report(self) -> str:
        return f"{self.done} packets sent"


class Loom(Worker):
    name_ = "loom"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.ids = itertools.cycle(BUILD_IDS)
        self.builds = 0

    def step(self) -> None:
        stream_id = next(self.ids)
        parts = urllib.parse.urlsplit(self.target.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        metadata = {"job": "demo build", "build": self.builds + 1, "by": "make demo-data"}
        try:
            conn.putrequest("POST", f"/stream/{stream_id}?force=true")
            conn.putheader("Transfer-Encoding", "chunked")
            conn.putheader("X-Stream-Metadata", json.dumps(metadata))
            if self.target.loom_token:
                conn.putheader("Authorization", f"Bearer {self.target.loom_token}")
            conn.endheaders()
            for step in range(1, BUILD_STEPS + 1):
                if self.stop.is_set():
                    break
                line = (
                    f"[{time.strftime('%H:%M:%S')}] step {step}/{BUILD_STEPS}: "
                    + random.choice(("compiling", "linking", "testing", "packaging"))
                    + f" module_{random.randint(1, 99)} ... ok\n"
                )
                data = line.encode()
                conn.send(b"%x\r\n%s\r\n" % (len(data), data))
                self.done += 1
                self.stop.wait(LINE_INTERVAL)
            done = b"build finished\n" if not self.stop.is_set() else b"build stopped (Ctrl-C)\n"
            conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            response = conn.getresponse()
            response.read()
            if response.status >= 400:
                raise ChannelstreamError(response.status, f"POST /stream/{stream_id} refused")
            self.builds += 1
        finally:
            conn.close()
        self.stop.wait(BUILD_PAUSE)

    def report(self) -> str:
        return f"{self.builds} builds streamed, {self.done} lines"


class Bot(Worker):
    name_ = "chat"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.client = ChannelstreamClient(self.target.url, self.target.secret or "-")
        self.conn_id: str | None = None
        self.lines = itertools.cycle(CHAT_LINES)
        self.last: dict[str, Any] | None = None
        self.listener: threading.Thread | None = None

    def connect(self) -> None:
        answer = self.client.connect(
            BOT,
            list(DEFAULT_CHANNELS),
            channel_configs={name: dict(CHANNEL_CONFIG) for name in DEFAULT_CHANNELS},
            fresh_user_state={STATUS_KEY: "online"},
            state_public_keys=[STATUS_KEY],
        )
        self.conn_id = answer["conn_id"]
        self.listener = threading.Thread(target=self.listen, args=(self.conn_id,), daemon=True)
        self.listener.start()

    def listen(self, conn_id: str) -> None:
        """Keep a long-poll open so the bot stays present (its frames are dropped)."""
        parts = urllib.parse.urlsplit(self.target.url)
        while not self.stop.is_set() and self.conn_id == conn_id:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            try:
                conn.request("GET", f"/listen?conn_id={conn_id}")
                response = conn.getresponse()
                response.read()
                if response.status == 404:
                    self.conn_id = None  # the server forgot it (restart): connect again
            except (OSError, http.client.HTTPException):
                self.stop.wait(RETRY)
            finally:
                conn.close()

    def step(self) -> None:
        if self.conn_id is None:
            self.connect()
        # mostly the first channel (the one a page shows first), the first line always
        channel = (
            DEFAULT_CHANNELS[0]
            if not self.done or random.random() < 0.7
            else (random.choice(DEFAULT_CHANNELS))
        )
        text = next(self.lines)
        if random.random() < 0.3:
            health = self.client.call("GET", "/healthz")[1]
            hub = health.get("hub", {})
            text = (
                f"the hub has published {hub.get('published', '?')} messages and delivered "
                f"{hub.get('delivered', '?')}; status {health.get('status', '?')}"
            )
        if self.last is not None and random.random() < 0.25:
            self.client.edit_messages(
                {
                    "uuid": self.last["uuid"],
                    "channel": self.last["channel"],
                    "message": {"text": self.last["message"]["text"] + " (edited by the bot)"},
                }
            )
            self.last = None
        else:
            echo = self.client.message({"channel": channel, "user": BOT, "message": {"text": text}})
            self.last = echo[0]
            self.done += 1
        if random.random() < 0.15:
            self.client.user_state(BOT, {STATUS_KEY: random.choice(("online", "away", "busy"))})
        self.stop.wait(CHAT_INTERVAL)

    def report(self) -> str:
        return f"{self.done} messages posted as {BOT}"

    def finish(self) -> None:
        conn_id, self.conn_id = self.conn_id, None
        if conn_id is not None:
            try:
                self.client.disconnect(conn_id)
            except (OSError, ChannelstreamError):
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.data", description=__doc__.split("\n")[0])
    parser.add_argument("--ini", default="development.ini", type=Path, help="the server's ini file")
    parser.add_argument("--url", help="the server's base URL (default: from the ini)")
    args = parser.parse_args(argv)
    if not args.ini.exists():
        parser.error(f"{args.ini}: no such file (pass --ini)")
    target = read_target(args.ini, args.url)
    if not target.secret:
        print(
            "demo-data: the server has no secret: the chat bot and signed packets need it",
            file=sys.stderr,
        )
        return 2

    def say(text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    workers = [cls(target, stop, say) for cls in (Packets, Loom, Bot)]
    say(f"demo-data: sending to {target.url} (open {target.url}/demo); Ctrl-C stops")
    for worker in workers:
        worker.start()
    while not stop.wait(0.5):
        pass
    say("demo-data: stopping")
    for worker in workers:
        worker.join(10)
    say("demo-data: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
