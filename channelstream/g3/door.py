"""The G3 doors of the hub: ``g3.sources`` feed a channel, ``g3.listen`` serves it.

Every frame goes into the channelstream channel ``g3.channel`` (default
``g3``; hub channel ``channel:g3``) as one hub message that carries both
forms of it:

* for G3 clients, the frame's bytes exactly as the source sent them;
* for the channel's web clients (``/ws``, ``/listen``, SSE, socket.io), a
  ``message`` frame built when a client first needs it, encoded once::

      {"type": "message", "channel": "g3", "user": "g3:<n>",
       "uuid": "...", "timestamp": "<the hub's receive time, naive UTC ISO 8601>",
       "message": {"frame_type": "Timepoint",
                   "objects": {"n": 5, "t": 1.5, "ok": true, "s": "text"},
                   "opaque": {"ts": "G3Timestream"}},
       "edited": null,
       "catchup": false, "offset": 17, "epoch": "..."}   (added by every transport)

  ``objects`` holds the scalar objects (G3Int, G3Double, G3Bool, G3String)
  as JSON values: a NaN or infinite double is written as ``null`` (the
  project writes standard JSON only), bytes of a string or name that are
  not UTF-8 as U+FFFD; ``opaque`` names the class of every other object
  (vectors, maps, timestreams: G3 clients get them byte for byte).

Timepoint and Scan frames are *data*: droppable, never replayed. Every other
type is *metadata*: a sticky message of its type, so that each new
subscriber, G3 client or web client, first gets the latest frame of each
metadata type, in the order the types were first seen, then live frames
(at most :data:`~channelstream.g3.server.MAX_METADATA_TYPES` types; frames of
further types are sent, not replayed). EndProcessing frames are counted,
not published (spt3g's streaming server never sends them). The channel is
kept in this process (``local``; with ``hub.engine = redis`` too) and never
collected (``persistent``): its metadata stays while the process lives.

**A source** (``g3-source:<n>``, ``n`` from 1 in ini order) is a supervised
loop reading one entry of ``g3.sources``:

* ``tcp://host:port`` connects (``connecting``, then ``connected``); when the
  peer closes, it connects again after 1 s; while nothing listens there (the
  connection is refused: the server is off) it is ``waiting`` (healthy:
  nothing is lost; logged once) and tries again after 1 s doubling to 10 s;
  another failure is retried after 1 s doubling to 30 s (``retrying``,
  ``last_error``);
* ``tcp://*:port`` or ``tcp://*@ADDR:port`` binds when the door starts (a
  port in use stops startup), waits for one sender (``running``), reads it
  (``connected``), then listens again for the next;
* a file is read once, then the door is ``finished`` (healthy) and stays so:
  it is not read again (a restarted process reads it again).

Bytes that are not frames, a frame over ``g3.max_frame_size`` or a stream
that ends inside a frame are counted in ``errors`` (``last_error``), and the
source is opened again (after the backoff); a file ends there. With
``g3.source_timeout``, a TCP source silent that long ends (and is opened
again). Counters: ``frames``, ``bytes``, ``data_frames``, ``metadata_frames``,
``end_processing``, ``errors``, ``connections``, ``retries``, and ``types``
(frames per type; in ``/healthz`` only).

**The server** (``g3-server``, on ``g3.listen``) is the library's
:class:`~channelstream.g3.server.StreamServer` whose clients read hub
outboxes: each G3 client gets one outbox of ``g3.max_queue_size`` frames
(``0``: ``hub.outbox_size``) and ``g3.max_client_bytes`` bytes, subscribed to
the channel's G3 frames only (a ``POST /message`` to the channel is never
queued for it) with ``g3.decimation`` (one frame in N per type, the first
kept; 0 drops the type). A stalled client loses its oldest Timepoint and Scan
frames (``dropped``, per client in ``per_client``), never metadata, and never
slows the sources or the other clients; if metadata alone passes a bound
(``hub.outbox_hard_limit`` frames or ``g3.max_client_bytes``) the client is
disconnected (``overflowed``). Stopping stops accepting, lets every client
receive what is queued for :data:`FLUSH_TIMEOUT` at most, then closes every
socket (``cut`` counts those still writing). Counters: ``clients``,
``accepted``, ``sent``, ``bytes``, ``dropped``, ``overflowed``, ``cut``,
``skipped``, and ``per_client`` (peer, frames, bytes, queued, dropped; the
first :data:`MAX_CLIENTS_SHOWN`).

Memory: a frame is held once however many clients get it, by the channel's
history (``hub.history_size`` frames for web clients that resume), the sticky
metadata and the outboxes that queue it.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import gevent

from ..chat.frames import iso_from_ms, message_frame, new_uuid, utcnow_iso
from ..chat.routing import hub_channel
from ..hub import (
    DATA,
    REASON_OVERFLOW,
    STICKY,
    ChannelConfig,
    Decimation,
    Filter,
    Hub,
    Message,
    Outbox,
    wire,
)
from ..hub.bus import EngineUnavailable
from ..serving.doors import Backoff, Door, DoorState, LogSampler, LoopDoor, Service
from ..serving.runtime import get_runtime
from ..settings import G3Settings, Settings
from .codec import decode_frame
from .concurrency import GREENLETS
from .errors import G3ConnectionError, G3Error, G3FormatError
from .frame import G3Frame, describe
from .frametype import G3FrameType, is_data
from .net import TcpAddress, parse_url
from .server import MAX_METADATA_TYPES, StreamServer
from .server import State as ServerState
from .sources import FileSource, Source, TcpSource

log = logging.getLogger(__name__)

#: The server's name in ``/healthz``; sources are ``g3-source:<n>``.
SERVER_NAME = "g3-server"
SOURCE_PREFIX = "g3-source:"
#: The fields of every G3 message, and the filter of G3 clients' subscriptions.
G3_FIELDS: Mapping[str, str] = MappingProxyType({"format": "g3"})
G3_FILTER = Filter(G3_FIELDS)
#: Frames (or bytes) a source publishes before it yields to other greenlets.
BATCH = 64
BATCH_BYTES = 1 << 20
#: A source's retries: first delay, longest delay (seconds).
RETRY_INITIAL = 1.0
RETRY_MAX = 30.0
#: Longest delay between two connections of a source waiting for its server
#: (nothing listens there: trying again costs a refused connection).
WAIT_MAX = 10.0
#: Longest time a stopping server lets its clients receive what is queued (seconds).
FLUSH_TIMEOUT = 2.0
#: Seconds between two log lines about one source's frames that could not be published.
LOG_EVERY = 10.0
#: Frame types counted by name in a source's ``types`` (others under ``other``).
MAX_TYPES_SHOWN = 32
#: Clients listed in the server's ``per_client``.
MAX_CLIENTS_SHOWN = 100


# -- the hub message of a frame, and what web clients get of it -------------------------


class Origin:
    """What every message of one source shares: its chat channel and user."""

    __slots__ = ("channel", "hub_channel", "user")

    def __init__(self, channel: str, index: int) -> None:
        self.channel = channel
        self.hub_channel = hub_channel(channel)
        self.user = f"g3:{index}"


def type_name(frame_type: G3FrameType) -> str:
    """The hub message type of a frame type: its name (``Timepoint``, an ad-hoc ``AB``)."""
    return frame_type.name or f"code-{int(frame_type)}"


_BODY = Message.body  # the slot of Message's body, under G3Message's lazy property


class G3Message(Message):
    """A frame on the hub: ``frame`` (its bytes are what G3 clients get) and, built
    on first use, the chat frame web clients get (the module doc has its form).

    Read-only once published, like every hub message.
    """

    __slots__ = ("frame", "origin")

    def __init__(
        self,
        frame: G3Frame,
        origin: Origin | None,
        *,
        channel: str,
        kind: str,
        droppable: bool,
        body: Any = None,
    ) -> None:
        self.frame = frame
        self.origin = origin
        super().__init__(
            channel,
            body,
            fields=G3_FIELDS,
            kind=kind,
            type=type_name(frame.type),
            droppable=droppable,
            size=len(frame.encode()),
        )

    @property
    def frame_bytes(self) -> bytes:
        """The frame's bytes, as the source sent them."""
        return self.frame.encode()

    def _get_body(self) -> dict[str, Any]:
        body = _BODY.__get__(self)
        if body is None:
            body = web_frame(self)
            _BODY.__set__(self, body)
        return body

    def _set_body(self, value: Any) -> None:
        _BODY.__set__(self, value)

    body = property(_get_body, _set_body)  # type: ignore[assignment]


def web_frame(message: G3Message) -> dict[str, Any]:
    """The chat frame of a G3 message (see the module doc)."""
    origin = message.origin
    objects: dict[str, Any] = {}
    opaque: dict[str, Any] = {}
    for name, value in describe(message.frame)["objects"].items():
        if isinstance(value, dict):
            opaque[_text(name)] = value["class"]
        else:
            objects[_text(name)] = _json_value(value)
    return message_frame(
        channel=origin.channel if origin is not None else None,
        uuid=new_uuid(),
        timestamp=iso_from_ms(message.time_ms) if message.time_ms else utcnow_iso(),
        user=origin.user if origin is not None else "g3",
        message={"frame_type": message.type, "objects": objects, "opaque": opaque},
    )


def _text(value: str) -> str:
    """``value`` as UTF-8-encodable text (bytes that were not UTF-8 become U+FFFD)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def _json_value(value: Any) -> Any:
    if type(value) is float and not math.isfinite(value):
        return None
    if type(value) is str:
        return _text(value)
    return value


def _wire_extra(message: Message) -> str:
    return base64.b64encode(message.frame.encode()).decode("ascii")  # type: ignore[attr-defined]


def _wire_rebuild(channel: str, body: Any, options: dict[str, Any], extra: Any) -> Message:
    frame = decode_frame(base64.b64decode(extra), verify_crc=False)
    return G3Message(frame, None, channel=channel, kind=options["kind"],
                     droppable=options["droppable"], body=body)


# A G3 message crosses processes (an engine bus) with its frame's bytes.
wire.register(G3Message, "g3", _wire_extra, _wire_rebuild)


class MetadataTypes:
    """The metadata frame types the sources of one channel publish as sticky:
    the first :data:`~channelstream.g3.server.MAX_METADATA_TYPES` seen (ad-hoc
    types could otherwise make the replay grow without bound)."""

    def __init__(self, limit: int = MAX_METADATA_TYPES) -> None:
        self.limit = limit
        self._types: set[int] = set()
        self._warned = False

    def sticky(self, frame_type: G3FrameType) -> bool:
        if frame_type in self._types:
            return True
        if len(self._types) < self.limit:
            self._types.add(frame_type)
            return True
        if not self._warned:
            self._warned = True
            log.warning("G3: more than %d metadata frame types; frames of new types are "
                        "sent but not replayed to new clients", self.limit)
        return False


# -- a source ---------------------------------------------------------------------------------


class G3Source(LoopDoor):
    """One entry of ``g3.sources``: frames in, hub messages out (see the module doc)."""

    #: one process of a gunicorn server reads a source (its channel is kept there)
    single = True

    def __init__(
        self,
        index: int,
        entry: str | Path,
        *,
        hub: Hub,
        settings: G3Settings,
        metadata: MetadataTypes,
    ) -> None:
        super().__init__(f"{SOURCE_PREFIX}{index}",
                         backoff_initial=RETRY_INITIAL, backoff_max=RETRY_MAX)
        self.hub = hub
        self.entry = entry
        self.origin = Origin(settings.channel, index)
        self.metadata = metadata
        self.timeout = settings.source_timeout or None
        self.max_frame_size = settings.max_frame_size
        if isinstance(entry, Path):
            self.mode = "file"
            self._address: TcpAddress | None = None
        else:
            self._address = parse_url(entry)
            self.mode = "listen" if self._address.listen else "connect"
        self._source: Source | None = None
        self._bound: TcpSource | None = None  # a listening source bound ahead of reading
        self._runner: gevent.Greenlet | None = None
        self._link = DoorState.RUNNING if self.mode == "listen" else DoorState.CONNECTING
        self._unpublished_log = LogSampler(LOG_EVERY)
        #: Counters shown in ``/healthz``.
        self.frames = 0
        self.bytes = 0
        self.data_frames = 0
        self.metadata_frames = 0
        self.end_processing = 0
        self.errors = 0
        self.connections = 0
        self.retries = 0
        self.unpublished = 0
        self.types: dict[str, int] = {}

    # -- LoopDoor hooks ----------------------------------------------------------------------

    def open(self) -> None:
        """A listening source binds now: a port in use stops startup."""
        if self.mode == "listen":
            self._bound = self._listener()

    def run(self) -> None:
        self._runner = gevent.getcurrent()
        try:
            self._run()
        finally:
            self._runner = None

    def _run(self) -> None:
        backoff = Backoff(RETRY_INITIAL, RETRY_MAX)
        waiting = Backoff(RETRY_INITIAL, WAIT_MAX)
        while not self.stopping:
            error: str | None = None
            read = 0
            try:
                source = self._bound or self._open()
                self._bound = None
                self._source = source
                read = self._read(source)
            except G3FormatError as err:  # bad bytes, a frame too large, a truncated stream
                self.errors += 1
                error = str(err)
            except G3ConnectionError as err:
                if err.refused and self.mode == "connect":  # its server is off
                    if self._wait_for_server(waiting.next()):
                        return
                    continue
                error = str(err)
            except G3Error as err:  # no listening socket, no file
                error = str(err)
            finally:
                if self._source is not None:
                    self._source.close()
                    self._source = None
            if self.stopping:
                return
            if self.mode == "file":
                self._finish(error)
                return
            waiting.reset()
            if read:
                backoff.reset()
            if error is None and read:
                log.info("%s: %s ended after %d frames", self.name, self.entry, read)
            if error is not None:
                delay = backoff.next()
                self._record_error(error)
                self._link = DoorState.RETRYING
                self.retries += 1
                log.warning("%s: %s; opened again in %g s", self.name, error, delay)
                if self.wait(delay):
                    return
            elif self.mode == "connect":  # the server closed: it may be gone
                self._link = DoorState.WAITING
                if self.wait(backoff.next()):
                    return

    def _wait_for_server(self, delay: float) -> bool:
        """Nothing listens where a connecting source connects: ``waiting`` (said once
        until it connects; nothing is lost), then ``delay`` s; return :attr:`stopping`."""
        if self._link is not DoorState.WAITING:
            log.info("%s: waiting for a G3 server at %s (connection refused); "
                     "trying every %g s at most", self.name, self.entry, WAIT_MAX)
        self._link = DoorState.WAITING
        return self.wait(delay)

    def interrupt(self) -> None:
        """Close the source (a blocked accept or read wakes up and ends), and kill the
        reading greenlet where it waits (a connect to a silent host would not wake):
        it waits only outside of a publish, so no frame is half handled."""
        for source in (self._source, self._bound):
            if source is not None:
                source.close()
        runner = self._runner
        if runner is not None and runner is not gevent.getcurrent():
            runner.kill(block=False)

    def close(self) -> None:
        if self._bound is not None:
            self._bound.close()
            self._bound = None

    def status(self) -> dict[str, Any]:
        info = super().status()
        if info["state"] == DoorState.RUNNING.value:
            info["state"] = self._link_state().value
        return info

    def extra_status(self) -> dict[str, Any]:
        source = self._source or self._bound
        peer = getattr(source, "peer", None)
        return {
            "source": str(self.entry),
            "mode": self.mode,
            "channel": self.origin.channel,
            "address": self._listening_url(),
            "peer": _peer_text(peer),
            "frames": self.frames,
            "bytes": self.bytes,
            "data_frames": self.data_frames,
            "metadata_frames": self.metadata_frames,
            "end_processing": self.end_processing,
            "errors": self.errors,
            "connections": self.connections,
            "retries": self.retries,
            "unpublished": self.unpublished,
            "types": dict(self.types),
        }

    # -- reading --------------------------------------------------------------------------------

    def _link_state(self) -> DoorState:
        if self._link is DoorState.RUNNING and self.mode == "listen":
            source = self._source
            if isinstance(source, TcpSource) and source.peer is not None:
                return DoorState.CONNECTED
        return self._link

    def _listener(self) -> TcpSource:
        """A listening source, bound (to the port of the first one, when the ini says 0)."""
        source = TcpSource(str(self._address), timeout=self.timeout,
                           max_frame_size=self.max_frame_size, concurrency=GREENLETS)
        port = source.bind()[1]
        if self._address is not None and self._address.port == 0:
            self._address = TcpAddress(self._address.host, port, True)
        return source

    def _listening_url(self) -> str | None:
        return str(self._address) if self.mode == "listen" else None

    def _open(self) -> Source:
        if self.mode == "file":
            return FileSource(self.entry, max_frame_size=self.max_frame_size)
        if self.mode == "listen":
            self._link = DoorState.RUNNING
            return self._listener()
        if self._link is not DoorState.WAITING:  # one that waits goes on waiting
            self._link = DoorState.CONNECTING
        source = TcpSource(str(self.entry), timeout=self.timeout,
                           max_frame_size=self.max_frame_size, concurrency=GREENLETS)
        self._source = source
        source.open()  # connects: raises G3ConnectionError
        self._connected()
        return source

    def _connected(self) -> None:
        self.connections += 1
        if self.mode == "connect" and self._link is DoorState.WAITING:
            log.info("%s: connected to %s", self.name, self.entry)
        if self.mode != "file":
            self._link = DoorState.RUNNING if self.mode == "listen" else DoorState.CONNECTED

    def _read(self, source: Source) -> int:
        """Publish every frame of ``source``, yielding now and then; return how many."""
        read = 0
        batch_frames = batch_bytes = 0
        publish = self._publish
        for frame in source.frames():
            if read == 0 and self.mode == "listen":
                self._connected()
            batch_bytes += publish(frame)
            read += 1
            batch_frames += 1
            if batch_frames >= BATCH or batch_bytes >= BATCH_BYTES:
                batch_frames = batch_bytes = 0
                gevent.sleep(0)  # clients' writers and other doors run
        if read == 0 and self.mode == "listen" and getattr(source, "peer", None) is not None:
            self.connections += 1  # a sender that sent nothing
        return read

    def _publish(self, frame: G3Frame) -> int:
        frame_type = frame.type
        size = len(frame.encode())
        self.frames += 1
        self.bytes += size
        self._count_type(type_name(frame_type))
        if frame_type == G3FrameType.EndProcessing:
            self.end_processing += 1
            return size
        data = is_data(frame_type)
        if data:
            self.data_frames += 1
            kind = DATA
        else:
            self.metadata_frames += 1
            kind = STICKY if self.metadata.sticky(frame_type) else DATA
        origin = self.origin
        message = G3Message(frame, origin, channel=origin.hub_channel, kind=kind, droppable=data)
        try:
            self.hub.publish(message)
        except EngineUnavailable as err:  # the channel is local: only if configured otherwise
            self.unpublished += 1
            self._log_unpublished(f"a frame was not published: {err}")
        return size

    def _count_type(self, name: str) -> None:
        types = self.types
        if name not in types and len(types) >= MAX_TYPES_SHOWN:
            name = "other"
        types[name] = types.get(name, 0) + 1

    def _finish(self, error: str | None) -> None:
        """A file was read (or failed): ``finished``, until the door stops."""
        if error is not None:
            self._record_error(error)
        self._link = DoorState.FINISHED
        log.info("%s: %s read%s (%d frames)", self.name, self.entry,
                 f" up to an error: {error}" if error else "", self.frames)
        while not self.wait(3600.0):
            pass

    def _log_unpublished(self, text: str) -> None:
        if self._unpublished_log.due():
            others = self._unpublished_log.take_suppressed()
            log.warning("%s: %s%s", self.name, text,
                        f" ({others} more since the last report)" if others else "")


def _peer_text(peer: Any) -> str | None:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return None if peer is None else str(peer)


# -- the server -------------------------------------------------------------------------------


class _ClientOutbox:
    """A G3 client's hub outbox, as the library's writer consumes a queue
    (:class:`~channelstream.g3.writer.ClientQueue`): drained messages become
    their frames' bytes."""

    __slots__ = ("outbox", "door")

    def __init__(self, outbox: Outbox, door: G3Server) -> None:
        self.outbox = outbox
        self.door = door

    @property
    def closed(self) -> bool:
        return self.outbox.closed

    @property
    def close_reason(self) -> str | None:
        return self.outbox.close_reason

    @property
    def dropped(self) -> int:
        return self.outbox.dropped

    def __len__(self) -> int:
        return len(self.outbox)

    def wait(self, timeout: float | None = None) -> bool:
        return self.outbox.wait(timeout)

    def drain(self) -> list[bytes]:
        frames: list[bytes] = []
        size = 0
        for message in self.outbox.drain():
            if isinstance(message, G3Message):
                data = message.frame.encode()
                frames.append(data)
                size += len(data)
            else:  # a stored frame replaced by an edit: no G3 bytes any more
                self.door.skipped += 1
        self.door.sent += len(frames)
        self.door.bytes += size
        return frames

    def close(self, reason: str = "closed", discard: bool = False) -> None:
        self.outbox.close(reason, discard=discard)


class G3Server(Door):
    """``g3.listen``: the channel's frames to G3 clients (see the module doc)."""

    #: one process of a gunicorn server binds g3.listen (it serves that process's channel)
    single = True

    def __init__(self, settings: G3Settings, *, hub: Hub) -> None:
        if settings.listen is None:
            raise ValueError("g3.listen is empty: the G3 server is off")
        self.name = SERVER_NAME
        self.hub = hub
        self.channel = settings.channel
        self.hub_channel = hub_channel(settings.channel)
        self.max_queue_size = settings.max_queue_size or hub.config.outbox_size
        self.max_client_bytes = settings.max_client_bytes
        self.decimation = dict(settings.decimation)
        self._decimation = Decimation(per_type=self.decimation) if self.decimation else None
        host, port = settings.listen
        self._server = StreamServer(
            None if host == "*" else host,
            port,
            concurrency=GREENLETS,
            queue_factory=self._open_client,
            drain_timeout=FLUSH_TIMEOUT,
        )
        self._state = DoorState.NEW
        #: Counters shown in ``/healthz`` (the library's server keeps the others).
        self.sent = 0
        self.bytes = 0
        self.skipped = 0
        self.refused = 0

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound (host, port), once started."""
        return self._server.address

    def start(self) -> None:
        """Bind and accept. Raises :class:`~channelstream.g3.errors.G3ConnectionError`."""
        self._server.start()
        self._state = DoorState.RUNNING

    def stop(self, timeout: float) -> None:
        """Stop accepting, let clients receive what is queued (``FLUSH_TIMEOUT`` at
        most), close every client."""
        if self._state in (DoorState.NEW, DoorState.STOPPED):
            self._state = DoorState.STOPPED
            return
        self._state = DoorState.STOPPING
        try:
            self._server.stop(min(timeout, FLUSH_TIMEOUT))
        finally:
            self._state = DoorState.STOPPED

    def status(self) -> dict[str, Any]:
        stats = self._server.stats()
        state = self._state
        if state is DoorState.RUNNING and self._server.state is not ServerState.RUNNING:
            state = DoorState.STOPPING
        return {
            "state": state.value,
            "address": stats["address"],
            "channel": self.channel,
            "clients": stats["clients"],
            "accepted": stats["accepted"],
            "sent": self.sent,
            "bytes": self.bytes,
            "dropped": stats["dropped"],
            "overflowed": stats["overflowed"],
            "cut": stats["cut"],
            "skipped": self.skipped,
            "refused": self.refused,
            "max_queue_size": self.max_queue_size,
            "max_client_bytes": self.max_client_bytes,
            "decimation": self.decimation,
            "per_client": stats["per_client"][:MAX_CLIENTS_SHOWN],
        }

    def _open_client(self, peer: str) -> _ClientOutbox:
        """The queue of a new client (called by the server's accept loop; never raises:
        a client that cannot be subscribed gets a closed queue, and is closed)."""
        outbox = self.hub.open_outbox(
            max_queue=self.max_queue_size,
            max_bytes=self.max_client_bytes,
            hard_bytes=self.max_client_bytes,
            name=f"g3:{peer}",
        )
        queue = _ClientOutbox(outbox, self)
        try:
            self.hub.subscribe(outbox, self.hub_channel, filter=G3_FILTER,
                               decimation=self._decimation)
        except Exception as err:  # the hub is stopping, or an engine is down
            self.refused += 1
            log.warning("G3 client %s refused: %s", peer, err)
            outbox.close(f"cannot subscribe: {err}", discard=True)
            return queue
        outbox.on_close(lambda closed: self._closed(queue, closed))
        return queue

    def _closed(self, queue: _ClientOutbox, outbox: Outbox) -> None:
        if outbox.close_reason == REASON_OVERFLOW:
            # Its writer may be blocked in a write to a stalled client: wake it.
            self._server.disconnect(
                queue, f"its undroppable frames passed hub.outbox_hard_limit "
                f"({outbox.hard_limit}) or g3.max_client_bytes ({self.max_client_bytes})")


# -- the feature ----------------------------------------------------------------------------


def configure_channel(hub: Hub, settings: G3Settings) -> str:
    """Keep ``g3.channel`` in this process and never collect it; return its hub name."""
    name = hub_channel(settings.channel)
    default = hub.config.default_channel
    hub.configure_channel(
        name,
        ChannelConfig(
            history_size=default.history_size,
            history_seconds=default.history_seconds,
            persistent=True,
            local=True,
        ),
    )
    return name


def build_doors(settings: Settings, hub: Hub) -> list[Service]:
    """The doors of ``settings.g3`` (the server first, then the sources), built
    without binding anything; none when ``g3.listen`` and ``g3.sources`` are empty."""
    g3 = settings.g3
    if g3.listen is None and not g3.sources:
        return []
    configure_channel(hub, g3)
    doors: list[Service] = []
    if g3.listen is not None:
        doors.append(G3Server(g3, hub=hub))
    metadata = MetadataTypes()
    doors.extend(
        G3Source(index, entry, hub=hub, settings=g3, metadata=metadata)
        for index, entry in enumerate(g3.sources, 1)
    )
    return doors


def includeme(config: Any) -> None:
    """Add the G3 server and a door per ``g3.sources`` entry to the runtime."""
    runtime = get_runtime(config.registry)
    for door in build_doors(runtime.settings, runtime.hub):
        runtime.doors.add(door)


__all__ = [
    "G3Message",
    "G3Server",
    "G3Source",
    "MetadataTypes",
    "Origin",
    "build_doors",
    "configure_channel",
    "includeme",
    "web_frame",
]
