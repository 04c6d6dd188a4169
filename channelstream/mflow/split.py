"""m_split's core: one source, many outputs, whole messages, no output stalling another.

Each message is received whole (``recv_multipart(copy=False)``, no decoding:
m_split forwards any bytes) and sent whole to each output that wants it.
An output with ``modulo`` N wants messages N, 2N, 3N, ... (counting from 1,
as mflow); mflow forwarded only part 0 of the other messages' parts.

Sends never block one output on another: each send is non-blocking. When an
output is full (its ZMQ queue of ``queue_size`` messages, the high-water
mark, is full because its peer is slow, gone or not there yet) and another
output took the message, the full output loses that message, counted in its
``dropped``. When *every* output that wants the message is full, the
splitter waits until one of them has room (back-pressure to the source, as
mflow's blocking splitter had) and then the message goes to those with
room. So a single output is lossless, and with several, the slowest one
loses messages instead of stalling the rest. A PUB output never reports
being full (ZMQ drops for slow subscribers silently), so its drops are not
counted here.

Configuration (mflow's ``-c`` JSON)::

    {"source": {"address": "tcp://localhost:7777", "mode": "PULL", "queue_size": 100},
     "streams": [{"address": "tcp://*:8888", "mode": "PUSH", "queue_size": 100,
                  "modulo": 1000}, ...]}

``tcp://*:port`` binds, any other address connects. Defaults: PULL in, PUSH
out, queue_size 100, no modulo. Modes are case-insensitive.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from .stream import BIND, CONNECT, PUB, PULL, PUSH, SUB, mode_of

_BIND = re.compile(r"^[a-z]+://\*")
_POLL_MS = 200


class ConfigError(ValueError):
    """A bad split configuration; ``str()`` names the key."""


def conn_type_for(address: str) -> str:
    """BIND for ``tcp://*:port`` (any ``scheme://*``), CONNECT otherwise (mflow's rule)."""
    return BIND if _BIND.match(address) else CONNECT


@dataclass
class Endpoint:
    """One side of the splitter, as configured."""

    address: str
    mode: int
    queue_size: int = 100
    conn_type: str = CONNECT
    modulo: int = 1


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if type(value) is not int or value < minimum:
        raise ConfigError(f"{where} must be an integer >= {minimum}, not {value!r}")
    return value


def _endpoint(spec: Any, where: str, modes: tuple[int, ...], default_mode: int,
              keys: tuple[str, ...]) -> Endpoint:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be an object")
    unknown = sorted(set(spec) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    address = spec.get("address")
    if not isinstance(address, str) or "://" not in address:
        raise ConfigError(f"{where}.address must be an address like tcp://host:port")
    mode = default_mode
    if "mode" in spec:
        try:
            mode = mode_of(str(spec["mode"]))
        except ValueError:
            mode = -1
        if mode not in modes:
            names = " or ".join({PULL: "PULL", SUB: "SUB", PUSH: "PUSH", PUB: "PUB"}[m]
                                for m in modes)
            raise ConfigError(f"{where}.mode must be {names}, not {spec['mode']!r}")
    return Endpoint(address, mode, _int(spec.get("queue_size", 100), f"{where}.queue_size", 1),
                    conn_type_for(address),
                    _int(spec.get("modulo", 1), f"{where}.modulo", 1))


def parse_config(config: Any) -> tuple[Endpoint, list[Endpoint]]:
    """(source, outputs) of an m_split configuration; raises :class:`ConfigError`."""
    if not isinstance(config, dict):
        raise ConfigError("the configuration must be a JSON object")
    if "source" not in config:
        raise ConfigError("the configuration lacks source")
    source = _endpoint(config["source"], "source", (PULL, SUB), PULL,
                       ("address", "mode", "queue_size"))
    streams = config.get("streams")
    if not isinstance(streams, list) or not streams:
        raise ConfigError("streams must be a non-empty list")
    outputs = [_endpoint(spec, f"streams[{n}]", (PUSH, PUB), PUSH,
                         ("address", "mode", "queue_size", "modulo"))
               for n, spec in enumerate(streams)]
    return source, outputs


class Output:
    """An output socket and its counters."""

    __slots__ = ("endpoint", "socket", "modulo", "sent", "dropped")

    def __init__(self, endpoint: Endpoint, socket: zmq.Socket) -> None:
        self.endpoint = endpoint
        self.socket = socket
        self.modulo = endpoint.modulo
        self.sent = 0
        self.dropped = 0


def open_socket(context: zmq.Context, endpoint: Endpoint, linger: int = 1000) -> zmq.Socket:
    """A socket for ``endpoint``, bound or connected; raises zmq.ZMQError."""
    socket = context.socket(endpoint.mode)
    try:
        if endpoint.mode == SUB:
            socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.setsockopt(zmq.LINGER, linger)
        socket.set_hwm(endpoint.queue_size)
        if endpoint.conn_type == BIND:
            socket.bind(endpoint.address)
        else:
            socket.connect(endpoint.address)
    except BaseException:
        socket.close(linger=0)
        raise
    return socket


class Splitter:
    """The loop of m_split over open sockets; see the module docstring.

    ``source`` should have a receive timeout (RCVTIMEO) so that :meth:`run`
    sees ``should_stop`` in time; m_split sets 200 ms.
    """

    def __init__(self, source: zmq.Socket, outputs: list[Output]) -> None:
        self.source = source
        self.outputs = outputs
        self.received = 0
        self.bytes_received = 0

    def run(self, should_stop: Callable[[], bool], limit: int | None = None) -> None:
        """Split until ``should_stop()`` (checked at least every 200 ms) or ``limit`` messages."""
        recv = self.source.recv_multipart
        outputs = self.outputs
        nonblock = zmq.NOBLOCK
        again = zmq.Again
        count = self.received
        size = 0
        try:
            while not should_stop() and (limit is None or count < limit):
                try:
                    frames = recv(copy=False)
                except again:
                    continue
                count += 1
                self.received = count
                for frame in frames:
                    size += len(frame)
                blocked = None
                taken = False
                for output in outputs:
                    if output.modulo != 1 and count % output.modulo:
                        continue
                    try:
                        output.socket.send_multipart(frames, nonblock, copy=False)
                    except again:
                        if blocked is None:
                            blocked = [output]
                        else:
                            blocked.append(output)
                        continue
                    output.sent += 1
                    taken = True
                if blocked is not None:
                    self._blocked(frames, blocked, taken, should_stop)
        finally:
            self.received = count
            self.bytes_received += size

    def _blocked(self, frames: list, blocked: list[Output], taken: bool,
                 should_stop: Callable[[], bool]) -> None:
        """Drop for full outputs if another took the message, else wait for room first."""
        if not taken:
            poller = zmq.Poller()
            for output in blocked:
                poller.register(output.socket, zmq.POLLOUT)
            while not poller.poll(_POLL_MS):
                if should_stop():
                    break
        for output in blocked:
            try:
                output.socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
                output.sent += 1
            except zmq.Again:
                output.dropped += 1

    def counters(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "bytes_received": self.bytes_received,
            "outputs": [{"address": o.endpoint.address, "sent": o.sent, "dropped": o.dropped}
                        for o in self.outputs],
        }
