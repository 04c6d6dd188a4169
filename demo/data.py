"""``make demo-data``: sample traffic that makes every panel of /demo move.

Run it beside ``make serve``::

    python -m demo.data                      # reads development.ini
    python -m demo.data --ini other.ini --url http://127.0.0.1:8001

It reads the server's address from the ini's ``[server:main]`` (``--url``
or ``CHANNELSTREAM_URL`` win) and its keys from ``[app:main]`` with the
``CHANNELSTREAM_<KEY>`` environment overrides the server honours
(``CHANNELSTREAM_SECRET``...). Then, until Ctrl-C (or SIGTERM), these
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
  changes its status;
- **zmq**: for the first ``zmq.sources`` entry that connects to this machine
  (development.ini: ``tcp://127.0.0.1:9999``, channel ``detector``), an mflow
  PUSH (PUB for a ``sub`` source) bound at its address sends an ``array-1.0``
  16x16 ``uint16`` image every :data:`ZMQ_INTERVAL` seconds, its header
  holding ``frame`` (a counter) and a few scalars; while no server is
  connected, images are not taken (counted, never queued);
- **g3**: for the first ``g3.sources`` entry that connects to this machine
  (development.ini: ``tcp://127.0.0.1:4538``), a G3 streaming server there
  (``core.G3NetworkSender`` with hostname ``"*@127.0.0.1"``): an Observation
  and a Calibration frame (metadata: the server replays them to each source
  that connects), then a Timepoint frame of scalars every
  :data:`G3_INTERVAL` seconds and a Scan frame every :data:`SCAN_EVERY`
  Timepoints.

A worker that loses the server (a restart) says so once and tries again
every :data:`RETRY` seconds (so does one whose port is taken). On Ctrl-C
every worker stops at its next step: the build log is ended (its stream
``finished``), the bot disconnects, the ZMQ socket closes, the G3 server
sends EndProcessing (its clients' connections end cleanly); the process
exits 0. It prints one line per worker every :data:`REPORT_EVERY`
seconds.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
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

import numpy
import zmq

from channelstream import mflow
from channelstream.client import ChannelstreamClient, ChannelstreamError
from channelstream.g3 import core as g3
from channelstream.g3.net import parse_url

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
ZMQ_INTERVAL = 0.25
IMAGE_SHAPE = (16, 16)
G3_INTERVAL = 0.25
SCAN_EVERY = 20
#: Hosts of a source's address that mean "this machine".
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

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
class Feed:
    """A sender demo-data runs for a source of the server that connects to it.

    :param address: where the sender binds (``tcp://127.0.0.1:9999``).
    :param channel: the channelstream channel the source feeds.
    :param door: the source's door in ``/healthz``.
    :param mode: ZMQ: ``push`` (for a ``pull`` source) or ``pub`` (``sub``).
    """

    address: str
    channel: str
    door: str
    mode: str = "push"


@dataclass(frozen=True)
class Target:
    """Where the server is and what the workers sign or authorise with."""

    url: str
    secret: str
    ingest_token: str | None
    loom_token: str | None
    zmq: Feed | None = None
    g3: Feed | None = None


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
        zmq=zmq_feed(settings),
        g3=g3_feed(settings),
    )


def zmq_feed(settings: Any) -> Feed | None:
    """The first ``zmq.sources`` entry that connects to this machine over TCP."""
    for entry in settings.zmq.sources:
        host = urllib.parse.urlsplit(entry.address).hostname
        if not entry.binds and entry.address.startswith("tcp://") and host in LOCAL_HOSTS:
            address = entry.address.replace("//localhost:", "//127.0.0.1:")  # ZMQ binds IPs
            mode = "pub" if entry.mode == "sub" else "push"
            return Feed(address, entry.channel, entry.door_name, mode)
    return None


def g3_feed(settings: Any) -> Feed | None:
    """The first ``g3.sources`` entry that connects to this machine."""
    for index, entry in enumerate(settings.g3.sources, 1):
        if isinstance(entry, str):
            address = parse_url(entry)
            if not address.listen and address.host in LOCAL_HOSTS:
                return Feed(entry, settings.g3.channel, f"g3-source:{index}")
    return None


class Worker(threading.Thread):
    """A loop of ``step()`` until ``stop`` is set; failures retried every RETRY s."""

    name_ = "worker"
    #: what a step may raise that is retried (the server or a port is not there)
    failures: tuple[type[BaseException], ...] = (
        OSError,
        ChannelstreamError,
        http.client.HTTPException,
    )

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
            except self.failures as err:
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


class Detector(Worker):
    """The ``zmq`` worker: array-1.0 images to a ZMQ source (see the module doc)."""

    name_ = "zmq"
    failures = (*Worker.failures, zmq.ZMQError, mflow.ConnectError)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.feed: Feed = self.target.zmq
        self.stream: mflow.Stream | None = None
        self.frame = 0
        self.untaken = 0
        self.rng = numpy.random.default_rng()
        self.y, self.x = numpy.mgrid[0 : IMAGE_SHAPE[0], 0 : IMAGE_SHAPE[1]]

    def image(self) -> numpy.ndarray:
        """A spot circling on a noisy background."""
        angle = self.frame / 10
        cy = IMAGE_SHAPE[0] / 2 + 5 * numpy.sin(angle)
        cx = IMAGE_SHAPE[1] / 2 + 5 * numpy.cos(angle)
        spot = 900 * numpy.exp(-((self.x - cx) ** 2 + (self.y - cy) ** 2) / 6)
        return (100 + spot + self.rng.poisson(5, IMAGE_SHAPE)).astype(numpy.uint16)

    def step(self) -> None:
        if self.stream is None:
            mode = mflow.PUB if self.feed.mode == "pub" else mflow.PUSH
            self.stream = mflow.connect(
                self.feed.address, conn_type=mflow.BIND, mode=mode, queue_size=16, linger=0
            )
        self.frame += 1
        image = self.image()
        header = {  # what changes first: the page shows a header's first values
            "htype": "array-1.0",
            "frame": self.frame,
            "mean": round(float(image.mean()), 1),
            "max": int(image.max()),
            "exposure_ms": 250,
            "type": "uint16",
            "shape": list(IMAGE_SHAPE),
            "source": "make demo-data",
        }
        # never waits: a PUSH with no server connected takes nothing (counted)
        if self.stream.forward({"header": header, "data": [image]}, block=False):
            self.done += 1
        else:
            self.untaken += 1
        self.stop.wait(ZMQ_INTERVAL)

    def report(self) -> str:
        return (
            f"{self.done} images sent to {self.feed.address}"
            + (f" ({self.untaken} not taken: no server connected)" if self.untaken else "")
        )

    def finish(self) -> None:
        if self.stream is not None:
            self.stream.disconnect()


class Telescope(Worker):
    """The ``g3`` worker: a G3 streaming server for a G3 source (see the module doc)."""

    name_ = "g3"
    failures = (*Worker.failures, g3.G3Error)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.feed: Feed = self.target.g3
        self.sender: g3.G3NetworkSender | None = None
        self.sample = 0
        self.scans = 0

    def start_server(self) -> g3.G3NetworkSender:
        address = parse_url(self.feed.address)
        host = "127.0.0.1" if address.host == "localhost" else address.host
        sender = g3.G3NetworkSender(
            hostname=f"*@{host}", port=address.port, max_queue_size=64, drain_timeout=1.0
        )
        observation = g3.G3Frame(g3.G3FrameType.Observation)
        observation["source"] = "demo-sky"
        observation["observation_id"] = int(time.time())
        observation["by"] = "make demo-data"
        calibration = g3.G3Frame(g3.G3FrameType.Calibration)
        calibration["band_ghz"] = 150.0
        calibration["gain"] = 1.25
        calibration["detectors"] = 16
        sender.Process(observation)
        sender.Process(calibration)
        return sender

    def step(self) -> None:
        if self.sender is None:
            self.sender = self.start_server()
        self.sample += 1
        angle = self.sample * G3_INTERVAL / 20
        frame = g3.G3Frame(g3.G3FrameType.Timepoint)
        frame["sample"] = self.sample
        frame["az_deg"] = round(180 + 30 * math.sin(angle), 3)
        frame["el_deg"] = round(45 + 2 * math.cos(angle / 3), 3)
        frame["bolo_mK"] = round(300 + random.gauss(0, 1.5), 2)
        frame["tracking"] = self.sample % SCAN_EVERY != 0
        self.sender.Process(frame)
        self.done += 1
        if self.sample % SCAN_EVERY == 0:
            self.scans += 1
            scan = g3.G3Frame(g3.G3FrameType.Scan)
            scan["scan"] = self.scans
            scan["samples"] = SCAN_EVERY
            scan["direction"] = "left" if self.scans % 2 else "right"
            self.sender.Process(scan)
            self.done += 1
        self.stop.wait(G3_INTERVAL)

    def report(self) -> str:
        clients = len(self.sender.clients) if self.sender is not None else 0
        return f"{self.done} frames served at {self.feed.address} ({clients} client(s) now)"

    def finish(self) -> None:
        if self.sender is not None:  # drains (1 s at most) and closes its clients' sockets
            self.sender.Process(g3.G3Frame(g3.G3FrameType.EndProcessing))


def feeds_said(target: Target) -> list[str]:
    """What demo-data says it feeds, one line per sender."""
    lines = []
    if target.zmq is not None:
        feed = target.zmq
        lines.append(
            f"zmq: array-1.0 images ({IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} uint16, "
            f"{1 / ZMQ_INTERVAL:g}/s) from a {feed.mode.upper()} bound at {feed.address}, "
            f"for {feed.door} (channel {feed.channel})"
        )
    else:
        lines.append("zmq: no zmq.sources entry connects to this machine: no images")
    if target.g3 is not None:
        feed = target.g3
        lines.append(
            f"g3: Observation and Calibration, then Timepoint frames ({1 / G3_INTERVAL:g}/s) "
            f"and a Scan every {SCAN_EVERY}, served at {feed.address}, for {feed.door} "
            f"(channel {feed.channel})"
        )
    else:
        lines.append("g3: no g3.sources entry connects to this machine: no frames")
    return lines


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
    kinds: list[type[Worker]] = [Packets, Loom, Bot]
    kinds += [Detector] if target.zmq is not None else []
    kinds += [Telescope] if target.g3 is not None else []
    workers = [cls(target, stop, say) for cls in kinds]
    say(f"demo-data: sending to {target.url} (open {target.url}/demo); Ctrl-C stops")
    for line in feeds_said(target):
        say(line)
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
