"""m_split's core: one source, many outputs, whole messages, no output stalling another.

Each message is received whole (``recv_multipart(copy=False)``, no decoding:
m_split forwards any bytes) and sent whole to each output that wants it.
An output with ``modulo`` N wants messages N, 2N, 3N, ... (counting from 1,
as mflow); mflow forwarded only part 0 of the other messages' parts.

Sends never block one output on another: each send is non-blocking. An
output whose ZMQ queue is full (``queue_size`` messages, the high-water mark:
its peer is slow, gone, or not connected yet) keeps the message in its own
pending queue, also at most ``queue_size`` messages, and sends it as soon as
it has room, in order. When that pending queue is full too, the output drops
its oldest pending message (counted in its ``dropped``), so a stuck output
loses messages instead of stalling the others. Only when *every* output is
full does the splitter stop reading the source until one of them has room
(back-pressure to the source, as mflow's blocking splitter had): a single
output is lossless. Messages still pending when m_split stops are counted as
dropped. A PUB output never reports being full (ZMQ drops for slow
subscribers silently), so those drops are not counted. Memory: at most
``queue_size`` pending messages per output, shared between outputs (the
received frames are forwarded without copying).

With a single output and no modulo, :class:`ProxySplitter` forwards with
libzmq's own proxy instead (the same policy, no Python per message; it
counts parts rather than messages).

Configuration (mflow's ``-c`` JSON)::

    {"source": {"address": "tcp://localhost:7777", "mode": "PULL", "queue_size": 100},
     "streams": [{"address": "tcp://*:8888", "mode": "PUSH", "queue_size": 100,
                  "modulo": 1000}, ...]}

``tcp://*:port`` binds, any other address connects. Defaults: PULL in, PUSH
out, queue_size 100, no modulo. Modes are case-insensitive.
"""

from __future__ import annotations

import re
from collections import deque
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
    """An output socket, its pending messages (at most ``capacity``) and its counters."""

    __slots__ = ("endpoint", "socket", "modulo", "capacity", "pending", "sent", "dropped")

    def __init__(self, endpoint: Endpoint, socket: zmq.Socket) -> None:
        self.endpoint = endpoint
        self.socket = socket
        self.modulo = endpoint.modulo
        self.capacity = endpoint.queue_size
        self.pending: deque[list] = deque()
        self.sent = 0
        self.dropped = 0

    def flush(self) -> bool:
        """Send pending messages while the socket takes them; True when none is left."""
        pending = self.pending
        while pending:
            try:
                self.socket.send_multipart(pending[0], zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return False
            pending.popleft()
            self.sent += 1
        return True

    def hold(self, frames: list) -> None:
        """Keep ``frames`` for later, dropping the oldest pending message when full."""
        if len(self.pending) >= self.capacity:
            self.pending.popleft()
            self.dropped += 1
        self.pending.append(frames)


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
        #: outputs that have pending messages
        self._backlog: set[Output] = set()

    def run(self, should_stop: Callable[[], bool], limit: int | None = None) -> None:
        """Split until ``should_stop()`` (checked at least every 200 ms) or ``limit`` messages.

        Messages still pending at the end are tried once more, then counted as dropped.
        """
        recv = self.source.recv
        outputs = self.outputs
        backlog = self._backlog
        nonblock = zmq.NOBLOCK
        more = zmq.SNDMORE | zmq.NOBLOCK
        again = zmq.Again
        count = self.received
        size = 0
        try:
            while not should_stop() and (limit is None or count < limit):
                # one whole message, its parts as zmq.Frame (no copy, no decoding)
                try:
                    if backlog:
                        if not self._drain():
                            continue
                        frame = recv(nonblock, copy=False)
                    else:
                        frame = recv(copy=False)
                except again:
                    continue
                frames = [frame]
                size += len(frame)
                while frame.more:
                    frame = recv(copy=False)
                    frames.append(frame)
                    size += len(frame)
                count += 1
                self.received = count
                last = len(frames) - 1
                for output in outputs:
                    if output.modulo != 1 and count % output.modulo:
                        continue
                    if output.pending:
                        output.hold(frames)  # behind older ones, to keep the order
                        continue
                    send = output.socket.send
                    try:
                        # a multipart message is accepted whole or not at all: only its
                        # first part can meet a full queue
                        for index in range(last):
                            send(frames[index], more, copy=False)
                        send(frames[last], nonblock, copy=False)
                    except again:
                        output.pending.append(frames)
                        backlog.add(output)
                        continue
                    output.sent += 1
        finally:
            self.bytes_received += size
            for output in list(backlog):
                output.flush()
                output.dropped += len(output.pending)
                output.pending.clear()
            backlog.clear()

    def _drain(self) -> bool:
        """With outputs behind: wait (up to 200 ms) for room in them or a new message, and
        send what they can take. True when a message can be received now.

        The source is not read while every output is full, so one output is lossless
        and several block the source only when all of them are full.
        """
        backlog = self._backlog
        full = all(len(o.pending) >= o.capacity for o in self.outputs)
        poller = zmq.Poller()
        for output in backlog:
            poller.register(output.socket, zmq.POLLOUT)
        if not full:
            poller.register(self.source, zmq.POLLIN)
        ready = dict(poller.poll(_POLL_MS))
        for output in list(backlog):
            if output.socket in ready and output.flush():
                backlog.discard(output)
        return not full and self.source in ready

    def counters(self) -> dict[str, Any]:
        return {
            "unit": "messages",
            "received": self.received,
            "bytes_received": self.bytes_received,
            "outputs": [{"address": o.endpoint.address, "sent": o.sent, "dropped": o.dropped}
                        for o in self.outputs],
        }


class ProxySplitter:
    """One output without modulo: libzmq's own proxy forwards, no Python per message.

    Same policy as :class:`Splitter` with one output (lossless, the source paused
    while the output is full), at a fraction of the CPU. It runs in a thread
    (``zmq.proxy_steerable``, which releases the GIL) steered through an inproc
    control socket: :meth:`counters` asks it for its statistics and :meth:`stop`
    ends it. libzmq counts parts, not messages: ``received`` and ``sent`` here
    are parts.
    """

    def __init__(self, context: zmq.Context, source: zmq.Socket, output: Output) -> None:
        import threading

        self.output = output
        address = f"inproc://mflow-split-control-{id(self)}"
        control = context.socket(zmq.REP)
        control.bind(address)
        self._client = context.socket(zmq.REQ)
        self._client.connect(address)
        self._thread = threading.Thread(
            target=self._run, args=(source, output.socket, control), name="mflow-proxy",
            daemon=True)
        self._last = (0, 0, 0)
        self._thread.start()

    @staticmethod
    def _run(source: zmq.Socket, output: zmq.Socket, control: zmq.Socket) -> None:
        try:
            zmq.proxy_steerable(source, output, None, control)
        finally:
            control.close(linger=0)

    def _statistics(self) -> tuple[int, int, int]:
        """(parts in, bytes in, parts out), or the last known after the proxy ended."""
        if not self._thread.is_alive():
            return self._last
        self._client.send(b"STATISTICS")
        if not self._client.poll(5000):
            return self._last
        values = [int.from_bytes(bytes(part), "little") for part in self._client.recv_multipart()]
        if len(values) >= 8:
            self._last = (values[0], values[1], values[6])
        return self._last

    def counters(self) -> dict[str, Any]:
        parts_in, bytes_in, parts_out = self._statistics()
        return {"received": parts_in, "bytes_received": bytes_in, "unit": "parts",
                "outputs": [{"address": self.output.endpoint.address, "sent": parts_out,
                             "dropped": 0}]}

    def stop(self) -> None:
        """Read the final statistics and end the proxy thread; idempotent."""
        if not self._thread.is_alive():
            return
        self._statistics()
        self._client.send(b"TERMINATE")
        self._client.poll(5000)
        self._thread.join(10)
        self._client.close(linger=0)
