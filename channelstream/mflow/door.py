"""The ZMQ doors of the hub: ``zmq.sources`` feed channels, ``zmq.outputs`` serve them.

Each entry of ``zmq.sources`` and ``zmq.outputs`` (:mod:`channelstream.settings.endpoints`
lists their keys) is a door of its own, ``zmq-source:<name>`` or
``zmq-output:<name>`` in ``/healthz``: a supervised loop with one ZMQ socket of
the process's one ``zmq.green`` context, made when the first ZMQ door starts
(after gunicorn's fork) and terminated when the last stops. Every socket
waits in its own greenlet only: a door never blocks the hub or another door.

**A source** (PULL or SUB) receives whole mflow messages (``Stream.receive``,
so the htype's layout is checked as :mod:`channelstream.mflow` checks it) and
publishes each into the channelstream channel ``channel`` (hub channel
``channel:<channel>``), where every client that joined the channel gets it,
on ``/ws``, ``/listen``, SSE and socket.io alike, as a ``message`` frame::

    {"type": "message", "channel": "<channel>", "uuid": "...",
     "timestamp": "<the hub's receive time, naive UTC ISO 8601>",
     "user": "zmq:<source name>",
     "message": {"htype": "array-1.0",
                 "header": {<part 0, the mflow header, as JSON>},
                 "parts": [{"size": 24, "base64": "AAECAwQ..."},   <- part 1
                           {"size": 4194304}]},                    <- part 2
     "edited": null,
     "catchup": false, "offset": 17, "epoch": "..."}   (added by every transport)

Each part after the header is inlined as base64 when it is at most
``zmq.max_inline_bytes`` long, else only its size is given. A header that is
not standard JSON (``NaN``, ``Infinity``) reaches web clients with those
values as ``null``. The frame is built when a client first needs it and
encoded once for every client. A source's messages are droppable: a client
too slow for them loses the oldest ZMQ messages of its outbox (counted in the
hub's ``dropped``), never its chat messages, and never slows the source.

A message that does not decode (bad JSON header, unknown htype, missing or
extra parts, sizes that do not match) is counted in ``malformed`` (the last
reason in ``last_malformed``) and skipped; the next one is read cleanly. A
part larger than ``zmq.max_message_bytes`` is refused by libzmq itself
(``ZMQ_MAXMSGSIZE``): the message is lost and the sender disconnected (it
reconnects), which ``disconnects`` counts; a message whose parts add up to
more is counted in ``too_large`` and dropped.

**An output** (PUSH or PUB) has one hub outbox of ``queue_size`` messages
subscribed to the channel (with ``modulo`` N: one message in N, the first it
sees, then every Nth; a multipart message is one message, always whole) and
sends, in order:

- a message of a ZMQ source: its parts as received, byte for byte;
- any other frame of the channel (a ``POST /message``, an edit, presence...),
  as an mflow ``raw-1.0`` message of two parts::

      part 0  {"htype": "raw-1.0", "type": "json", "channel": "<channel>",
               "offset": 17, "epoch": "..."}
      part 1  the frame as web clients get it (compact JSON, UTF-8)

  Private messages (``pm_users``) are not sent. A ``POST /message`` reaches the
  channel only while the chat channel exists (``/connect``, ``/subscribe`` or
  ``/channel_config`` made it), as for web clients.

An output never holds up the hub: when ZMQ's queue (``queue_size`` messages,
the high-water mark) is full or a PUSH has no peer (a connecting one too:
``ZMQ_IMMEDIATE``), the output's writer waits with the one message it took,
its outbox fills, and past ``queue_size`` the outbox drops its oldest
ZMQ-source message (counted in ``dropped``); sources and other outputs go on
(a chat message is never dropped: past ``hub.outbox_hard_limit`` of them the
outbox is closed, its messages counted in ``dropped``, and a new one is
subscribed, counted in ``overflows``). A PUB socket never waits: ZMQ drops
for its slow subscribers itself, uncounted.

**States** (``status()["state"]``): ``running`` (a bound socket), ``connected``
(a connecting socket with a peer), without a peer ``waiting`` for a source (its
sender is off: nothing is lost, ``/healthz`` stays "ok") and ``connecting`` for
an output (its messages go nowhere: "degraded"), libzmq retrying by itself,
100 ms doubling to 10 s; ``retrying`` (the bind or connect failed: again
after 1 s doubling to 30 s; ``last_error`` says why). Counters: sources
``received``, ``bytes``, ``malformed``, ``too_large``; outputs ``sent``,
``bytes``, ``dropped``, ``queued``, ``waits`` (the ZMQ queue was full),
``overflows``; both ``peers``, ``disconnects``. ``/metrics`` has them all as
``channelstream_door_<counter>{door="zmq-source:<name>"}``.

**Memory**: a message is held once, however many clients and outputs get
it: by the channel's history (``hub.history_size`` messages, 100 by default,
for clients that resume), by the outboxes that queue it, and, once a client
needed it, with its frame and that frame's encoding. A channel of 4 MiB
images holds ~400 MiB of history at the default; a smaller
``hub.history_size`` bounds it.

**Stopping** kills a source's receiving greenlet, then closes its socket; an
output sends what its outbox holds while its peers take it, for
:data:`FLUSH_TIMEOUT` at most (what is left is counted in ``dropped``), then
closes its socket, which goes on delivering what ZMQ queued for
:data:`LINGER_MS`.
"""

from __future__ import annotations

import base64
import logging
import math
import time
from datetime import datetime, timezone
from typing import Any

import gevent
import zmq
import zmq.green
from zmq.utils.monitor import parse_monitor_message

from .. import strict_json
from ..chat.frames import live_json, message_frame, new_uuid, utcnow_iso
from ..chat.routing import CHANNEL_PREFIX, hub_channel
from ..hub import REASON_OVERFLOW, Decimation, Hub, Message, Outbox
from ..serving.doors import Backoff, DoorState, LogSampler, LoopDoor
from ..serving.runtime import get_runtime
from ..settings.endpoints import ZmqEndpoint
from . import jsonpart
from .errors import ConnectError, MalformedMessage
from .stream import Stream

log = logging.getLogger(__name__)

#: Most messages a source publishes at once (then it yields), and most bytes.
BATCH = 64
BATCH_BYTES = 1 << 20
#: Messages an output sends before it yields to other greenlets.
SEND_BATCH = 64
#: Seconds a blocked send waits before the output looks at whether it is stopping.
SEND_SLICE = 0.5
#: Seconds a stopping output goes on sending what it holds to peers that take it.
FLUSH_TIMEOUT = 1.0
#: ms an output's socket keeps unsent messages when it closes.
LINGER_MS = 1000
#: libzmq's reconnection of a connecting socket: first delay, longest delay (ms).
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 10_000
#: The door's own retries of a failed bind or connect (seconds).
RETRY_INITIAL = 1.0
RETRY_MAX = 30.0
#: Seconds between two log lines about malformed messages of one source.
LOG_EVERY = 10.0
#: Seconds a stopping door waits for the context to terminate.
TERM_TIMEOUT = 5.0

_MONITORED = zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED
_UP = (zmq.EVENT_ACCEPTED, zmq.EVENT_CONNECTED)


# -- the hub message of a ZMQ source, and what clients get of it ------------------------


class Origin:
    """What every message of one source shares: its channel, name and inline bound."""

    __slots__ = ("channel", "user", "max_inline")

    def __init__(self, channel: str, name: str, max_inline: int) -> None:
        self.channel = channel
        self.user = f"zmq:{name}"
        self.max_inline = max_inline


_BODY = Message.body  # the slot of Message's body, under ZmqMessage's lazy property


class ZmqMessage(Message):
    """A message of a ZMQ source: its raw ``parts`` (what outputs send) and, built
    on first use, the chat frame web clients get (the module doc has its form).

    Read-only once published, like every hub message.
    """

    __slots__ = ("parts", "origin")

    def __init__(self, parts: list, header: dict, origin: Origin, size: int) -> None:
        htype = header.get("htype")
        super().__init__(
            hub_channel(origin.channel),
            None,
            fields={"htype": htype},
            type=htype if type(htype) is str else None,
            size=size,
        )
        self.parts = parts
        self.origin = origin

    def _get_body(self) -> dict[str, Any]:
        frame = _BODY.__get__(self)
        if frame is None:
            frame = _web_frame(self)
            _BODY.__set__(self, frame)
        return frame

    def _set_body(self, value: Any) -> None:
        _BODY.__set__(self, value)

    body = property(_get_body, _set_body)  # type: ignore[assignment]


def _web_frame(message: ZmqMessage) -> dict[str, Any]:
    origin = message.origin
    parts = message.parts
    header = web_header(parts[0])
    inline = origin.max_inline
    described = []
    for part in parts[1:]:
        size = len(part)
        if size <= inline:
            described.append({"size": size, "base64": base64.b64encode(part).decode("ascii")})
        else:
            described.append({"size": size})
    return message_frame(
        channel=origin.channel,
        uuid=new_uuid(),
        timestamp=iso_time(message.time_ms) if message.time_ms else utcnow_iso(),
        user=origin.user,
        message={"htype": header.get("htype"), "header": header, "parts": described},
    )


def iso_time(ms: int) -> str:
    """UTC milliseconds as channelstream's naive ISO 8601 timestamp."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).replace(tzinfo=None).isoformat()


def web_header(raw: bytes) -> dict[str, Any]:
    """Part 0 (a JSON object, as the source checked) as standard JSON for browsers.

    mflow writes headers with Python's ``json``, which allows ``NaN`` and
    ``Infinity``; they become ``null`` (as do strings that cannot be UTF-8
    and nesting past :data:`channelstream.strict_json.MAX_DEPTH`).
    """
    try:
        value = strict_json.loads_utf8(raw)
    except ValueError:
        value = _standard(jsonpart.loads(raw), 0)
    return value if isinstance(value, dict) else {}


def _standard(value: Any, depth: int) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict | list):
        if depth >= strict_json.MAX_DEPTH:
            return None
        if isinstance(value, list):
            return [_standard(item, depth + 1) for item in value]
        return {_standard(k, depth + 1): _standard(v, depth + 1) for k, v in value.items()}
    return value


def _raw_header(message: Message) -> bytes:
    """Codec: part 0 of the ``raw-1.0`` message an output sends for a non-ZMQ frame."""
    channel = message.channel
    if channel.startswith(CHANNEL_PREFIX):
        channel = channel[len(CHANNEL_PREFIX):]
    kind = "bytes" if isinstance(message.body, bytes | bytearray) else "json"
    return jsonpart.dumps({"htype": "raw-1.0", "type": kind, "channel": channel,
                           "offset": message.offset, "epoch": message.epoch})


def _raw_payload(message: Message) -> bytes:
    """Codec: part 1 of that message: the frame as web clients get it."""
    body = message.body
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, dict):
        return message.encoded(live_json)  # the very bytes /ws clients get
    return strict_json.dumps(body)


def output_parts(message: Message) -> list:
    """What an output sends for ``message`` (see the module doc)."""
    if isinstance(message, ZmqMessage):
        return message.parts
    return [message.encoded(_raw_header), message.encoded(_raw_payload)]


# -- the context, and one monitored socket ----------------------------------------------


class ZmqContext:
    """The process's ``zmq.green`` context, shared by its ZMQ doors.

    Made by the first :meth:`acquire` (in the serving process, after any
    fork), terminated (in a thread: it waits for lingering sockets) by the
    last :meth:`release`. Used from the main greenlet's doors only.
    """

    def __init__(self) -> None:
        self._context: zmq.green.Context | None = None
        self._users = 0

    def acquire(self) -> zmq.green.Context:
        if self._context is None:
            self._context = zmq.green.Context()
        self._users += 1
        return self._context

    def release(self) -> None:
        self._users -= 1
        if self._users > 0 or self._context is None:
            return
        context, self._context = self._context, None
        done = gevent.get_hub().threadpool.spawn(context.term)
        try:
            done.get(timeout=TERM_TIMEOUT)
        except gevent.Timeout:  # a socket left open: the process ends anyway
            log.warning("the ZMQ context did not terminate within %.0f s", TERM_TIMEOUT)


class _DoorContext(zmq.green.Context):
    """A door's view of the shared context (a shadow: same libzmq context).

    The first socket it makes is the door's: it gets libzmq's reconnection
    backoff and a monitor before the stream binds or connects, so that no
    peer event is missed.
    """

    #: the door's socket and its monitor (a PAIR socket), once made
    watched = None
    monitor = None
    #: more options of the door's socket: (option, value) pairs
    options: tuple[tuple[int, int], ...] = ()

    def socket(self, socket_type: int, **kwargs: Any) -> zmq.Socket:
        sock = super().socket(socket_type, **kwargs)
        if self.watched is None:
            self.watched = sock
            sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
            for option, value in self.options:
                sock.setsockopt(option, value)
            self.monitor = sock.get_monitor_socket(_MONITORED)
        return sock


class _Link:
    """One door's stream and the greenlet that counts its peers from monitor events."""

    def __init__(self, door: _ZmqDoor, stream: Stream, monitor: zmq.Socket | None) -> None:
        self.door = door
        self.stream = stream
        self._monitor = monitor
        self._watcher = gevent.spawn(self._watch) if monitor is not None else None
        self._closed = False

    def _watch(self) -> None:
        door = self.door
        monitor = self._monitor
        while True:
            try:
                event = parse_monitor_message(monitor.recv_multipart())["event"]
            except zmq.ZMQError:
                return
            if event in _UP:
                door.peers += 1
            elif event == zmq.EVENT_DISCONNECTED:
                door.peers = max(0, door.peers - 1)
                door.disconnects += 1

    def close(self) -> None:
        """Stop watching, then close the monitor and the stream's socket; idempotent.

        Called once no other greenlet waits on the stream's socket.
        """
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            self._watcher.kill(block=True, timeout=1.0)
        socket = self.stream.socket
        if self._monitor is not None:
            try:
                socket.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(linger=0)
        self.stream.disconnect()
        self.door.peers = 0


# -- the doors --------------------------------------------------------------------------


class _ZmqDoor(LoopDoor):
    """What sources and outputs share: the endpoint, the socket's lifecycle, states."""

    #: one process of a gunicorn server runs a ZMQ socket (a bind cannot be
    #: shared; a source read by every worker would publish each message N times)
    single = True
    #: ms the socket keeps unsent messages when it closes
    linger = 0
    #: more libzmq options of the socket, set before it binds or connects
    socket_options: tuple[tuple[int, int], ...] = ()
    #: the state of a connecting socket without a peer
    no_peer_state = DoorState.CONNECTING

    def __init__(self, endpoint: ZmqEndpoint, *, hub: Hub, context: ZmqContext) -> None:
        super().__init__(endpoint.door_name)
        self.endpoint = endpoint
        self.hub = hub
        self._context = context
        self._zmq: zmq.green.Context | None = None
        self._link: _Link | None = None
        self._connect_state = DoorState.CONNECTING
        self.peers = 0
        self.disconnects = 0
        self.retries = 0

    # -- LoopDoor hooks ---------------------------------------------------------------

    def open(self) -> None:
        """Take the shared context; bind and connect nothing yet (the loop does)."""
        self._zmq = self._context.acquire()

    def close(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
        if self._zmq is not None:
            self._zmq = None
            self._context.release()

    def status(self) -> dict[str, Any]:
        info = super().status()
        if info["state"] == DoorState.RUNNING.value:
            info["state"] = self._link_state().value
        return info

    def _link_state(self) -> DoorState:
        if self._connect_state is not DoorState.RUNNING:
            return self._connect_state  # connecting to the socket, or retrying
        if self.endpoint.binds:
            return DoorState.RUNNING
        return DoorState.CONNECTED if self.peers else self.no_peer_state

    def _common_status(self) -> dict[str, Any]:
        endpoint = self.endpoint
        return {
            "address": endpoint.address,
            "conn_type": endpoint.conn_type,
            "mode": endpoint.mode,
            "channel": endpoint.channel,
            "queue_size": endpoint.queue_size,
            "peers": self.peers,
            "disconnects": self.disconnects,
            "retries": self.retries,
        }

    # -- the socket ------------------------------------------------------------------------

    def _connect(self, **options: Any) -> _Link | None:
        """Bind or connect (the loop's backoff between failures); None once stopping."""
        endpoint = self.endpoint
        backoff = Backoff(RETRY_INITIAL, RETRY_MAX)
        while not self.stopping:
            self._connect_state = DoorState.CONNECTING
            context = _DoorContext.shadow(self._zmq.underlying)
            context.options = self.socket_options
            stream = Stream()
            try:
                stream.connect(endpoint.address, conn_type=endpoint.conn_type,
                               mode=endpoint.mode, queue_size=endpoint.queue_size,
                               linger=self.linger, context=context, **options)
            except ConnectError as err:
                if context.monitor is not None:
                    context.monitor.close(linger=0)
                delay = backoff.next()
                self._record_error(str(err))
                self._connect_state = DoorState.RETRYING
                self.retries += 1
                log.warning("%s: %s; retrying in %g s", self.name, err, delay)
                if self.wait(delay):
                    return None
                continue
            self._link = _Link(self, stream, context.monitor)
            self._connect_state = DoorState.RUNNING
            log.info("%s: %s %s (%s)", self.name,
                     "bound to" if endpoint.binds else "connecting to", endpoint.address,
                     endpoint.mode)
            return self._link
        return None

    def _disconnect(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None


class ZmqSource(_ZmqDoor):
    """A ``zmq.sources`` entry: mflow messages in, hub messages out (module doc)."""

    no_peer_state = DoorState.WAITING  # its sender is off: nothing is lost

    def __init__(self, endpoint: ZmqEndpoint, *, hub: Hub, context: ZmqContext,
                 max_inline_bytes: int, max_message_bytes: int) -> None:
        super().__init__(endpoint, hub=hub, context=context)
        self.origin = Origin(endpoint.channel, endpoint.name, max_inline_bytes)
        self.max_message_bytes = max_message_bytes
        self.received = 0
        self.bytes = 0
        self.malformed = 0
        self.too_large = 0
        self.last_malformed: str | None = None
        self._runner: gevent.Greenlet | None = None
        self._malformed_log = LogSampler(LOG_EVERY)

    def run(self) -> None:
        self._runner = gevent.getcurrent()
        try:
            link = self._connect(max_message_size=self.max_message_bytes)
            if link is not None:
                self._receive(link.stream)
        finally:
            self._runner = None
            self._disconnect()

    def interrupt(self) -> None:
        """Kill the receiving greenlet where it waits (nothing is half read)."""
        runner = self._runner
        if runner is not None and runner is not gevent.getcurrent():
            runner.kill(block=False)

    def extra_status(self) -> dict[str, Any]:
        return {
            **self._common_status(),
            "received": self.received,
            "bytes": self.bytes,
            "malformed": self.malformed,
            "too_large": self.too_large,
            "last_malformed": self.last_malformed,
        }

    def _receive(self, stream: Stream) -> None:
        """Receive, publish each batch, yield; until killed.

        A batch is what is waiting, up to :data:`BATCH` messages (malformed
        ones included) or :data:`BATCH_BYTES`: a flood of any kind of message
        yields as often.
        """
        receive = stream.receive
        # What is waiting is read whole with one call (the stream's own non-blocking
        # receive reads part by part, and a green socket checks its state after each).
        recv_waiting = stream.socket.recv_multipart
        handle = stream.handle
        statistics = stream.statistics
        publish_many = self.hub.publish_many
        origin = self.origin
        limit = self.max_message_bytes
        while True:
            batch: list[Message] = []
            batch_bytes = 0
            for taken in range(BATCH):
                try:
                    if taken:
                        try:
                            frames = recv_waiting(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        message = handle(frames)
                    else:
                        message = receive()  # waits (this greenlet only)
                except MalformedMessage as err:
                    self._count_malformed(err)
                    continue
                size = statistics.bytes_received
                if size > limit:
                    self._count_too_large(size)
                    continue
                data = message.data
                header = data.get("header") if isinstance(data, dict) else None
                if not isinstance(header, dict):
                    header = jsonpart.loads(message.frames[0])
                batch.append(ZmqMessage(message.frames, header, origin, size))
                batch_bytes += size
                if batch_bytes >= BATCH_BYTES:
                    break
            if batch:
                publish_many(batch)
                self.received += len(batch)
                self.bytes += batch_bytes
            gevent.sleep(0)  # let clients' writers and other doors run

    def _count_malformed(self, err: MalformedMessage) -> None:
        self.malformed += 1
        self.last_malformed = str(err)
        if self._malformed_log.due():
            others = self._malformed_log.take_suppressed()
            log.warning("%s: a malformed message (%s parts) skipped: %s%s", self.name, err.parts,
                        err, f"; {others} more since the last report" if others else "")

    def _count_too_large(self, size: int) -> None:
        self.too_large += 1
        self.last_malformed = (f"a message of {size} bytes, over zmq.max_message_bytes "
                               f"({self.max_message_bytes})")
        if self._malformed_log.due():
            log.warning("%s: %s: dropped", self.name, self.last_malformed)


class ZmqOutput(_ZmqDoor):
    """A ``zmq.outputs`` entry: one outbox on the channel, its messages out (module doc)."""

    linger = LINGER_MS
    #: a connecting socket queues only to a peer it is connected to: without one it is
    #: full (the writer waits, the outbox's bound applies), as a bound one is
    socket_options = ((zmq.IMMEDIATE, 1),)

    def __init__(self, endpoint: ZmqEndpoint, *, hub: Hub, context: ZmqContext) -> None:
        super().__init__(endpoint, hub=hub, context=context)
        self.sent = 0
        self.bytes = 0
        self.waits = 0
        self.overflows = 0
        self._dropped_before = 0  # drops of the outboxes before the current one
        self._outbox: Outbox | None = None
        self._flush_deadline: float | None = None

    def run(self) -> None:
        try:
            link = self._connect(send_timeout=int(SEND_SLICE * 1000))
            if link is None:
                return
            while not self.stopping:
                outbox = self._subscribe()
                try:
                    self._send_all(link.stream, outbox)
                finally:
                    outbox.close("zmq output stopped", discard=True)
                    self._dropped_before += outbox.dropped
                    self._outbox = None
                if outbox.close_reason == REASON_OVERFLOW and not self.stopping:
                    self.overflows += 1
                    log.warning("%s: over hub.outbox_hard_limit undroppable messages: its "
                                "outbox was closed; subscribed again", self.name)
                    continue
                return
        finally:
            self._disconnect()

    def interrupt(self) -> None:
        """Close the outbox: the writer sends what it holds (for :data:`FLUSH_TIMEOUT`
        at most), then ends."""
        self._flush_deadline = time.monotonic() + FLUSH_TIMEOUT
        outbox = self._outbox
        if outbox is not None:
            outbox.close("server shutting down")

    def extra_status(self) -> dict[str, Any]:
        outbox = self._outbox
        return {
            **self._common_status(),
            "modulo": self.endpoint.modulo,
            "sent": self.sent,
            "bytes": self.bytes,
            "dropped": self._dropped_before + (outbox.dropped if outbox is not None else 0),
            "queued": len(outbox) if outbox is not None else 0,
            "waits": self.waits,
            "overflows": self.overflows,
        }

    def _subscribe(self) -> Outbox:
        endpoint = self.endpoint
        outbox = self.hub.open_outbox(max_queue=endpoint.queue_size, name=self.name)
        modulo = endpoint.modulo
        self.hub.subscribe(outbox, hub_channel(endpoint.channel),
                           decimation=Decimation(modulo) if modulo > 1 else None)
        self._outbox = outbox
        return outbox

    def _send_all(self, stream: Stream, outbox: Outbox) -> None:
        """Send what the outbox gets until it closes (then what it still holds).

        One message at a time: the one being sent is the only one outside the
        outbox, so a full ZMQ queue leaves everything else where the outbox's
        bound (``queue_size``) and drops apply.
        """
        since_yield = 0
        while True:
            if not outbox.wait():
                continue
            taken = outbox.drain(1)
            if not taken:
                if outbox.closed:
                    return
                continue
            message = taken[0]
            parts = output_parts(message)
            if not self._send(stream, parts):
                # stopping, and the peers took too long: what is left is lost
                self._dropped_before += 1 + len(outbox.drain())
                return
            self.sent += 1
            self.bytes += message.size or sum(len(p) for p in parts)
            since_yield += 1
            if since_yield >= SEND_BATCH:
                since_yield = 0
                gevent.sleep(0)  # a fast channel must not keep the others waiting

    def _send(self, stream: Stream, parts: list) -> bool:
        """Send one message whole; False only when the flush at stop is over."""
        if stream.send_parts(parts, block=False):
            return True
        self.waits += 1
        while not self._flush_over():
            try:
                return stream.send_parts(parts)  # waits SEND_SLICE at most (green)
            except zmq.Again:
                continue
        return False

    def _flush_over(self) -> bool:
        deadline = self._flush_deadline
        return deadline is not None and time.monotonic() >= deadline


# -- the feature --------------------------------------------------------------------------


def build_doors(
    settings: Any, hub: Hub, context: ZmqContext | None = None
) -> list[_ZmqDoor]:
    """The doors of ``settings.zmq`` (sources first), built without binding anything."""
    context = context or ZmqContext()
    zmq_settings = settings.zmq
    doors: list[_ZmqDoor] = [
        ZmqSource(endpoint, hub=hub, context=context,
                  max_inline_bytes=zmq_settings.max_inline_bytes,
                  max_message_bytes=zmq_settings.max_message_bytes)
        for endpoint in zmq_settings.sources
    ]
    doors.extend(ZmqOutput(endpoint, hub=hub, context=context)
                 for endpoint in zmq_settings.outputs)
    return doors


def includeme(config: Any) -> None:
    """Add a door per ``zmq.sources`` and ``zmq.outputs`` entry to the runtime."""
    runtime = get_runtime(config.registry)
    for door in build_doors(runtime.settings, runtime.hub):
        runtime.doors.add(door)


__all__ = [
    "Origin",
    "ZmqContext",
    "ZmqMessage",
    "ZmqOutput",
    "ZmqSource",
    "build_doors",
    "includeme",
    "iso_time",
    "output_parts",
    "web_header",
]
