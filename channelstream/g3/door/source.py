"""A ``g3.sources`` entry: frames in (a file, or ``tcp://`` connecting or listening),
hub messages out.

:class:`G3Source` is a supervised loop that reads its source in its own
greenlet and publishes every frame (data droppable, metadata sticky as
:class:`MetadataTypes` allows); :mod:`channelstream.g3.door`'s doc has its
states, retries and counters.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gevent

from ...hub import DATA, STICKY, Hub
from ...hub.bus import EngineUnavailable
from ...serving.doors import Backoff, DoorState, LogSampler, LoopDoor
from ...settings import G3Settings
from ..concurrency import GREENLETS
from ..errors import G3ConnectionError, G3Error, G3FormatError
from ..frame import G3Frame
from ..frametype import G3FrameType, is_data
from ..net import TcpAddress, parse_url
from ..server import MAX_METADATA_TYPES
from ..sources import FileSource, Source, TcpSource
from .message import G3Message, Origin, type_name

log = logging.getLogger(__name__)

#: A source's name in ``/healthz`` is ``g3-source:<n>``.
SOURCE_PREFIX = "g3-source:"
#: Frames (or bytes) a source publishes before it yields to other greenlets.
BATCH = 64
BATCH_BYTES = 1 << 20
#: A source's retries: first delay, longest delay (seconds).
RETRY_INITIAL = 1.0
RETRY_MAX = 30.0
#: Longest delay between two connections of a source waiting for its server
#: (nothing listens there: trying again costs a refused connection).
WAIT_MAX = 10.0
#: Seconds between two log lines about one source's frames that could not be published.
LOG_EVERY = 10.0
#: Frame types counted by name in a source's ``types`` (others under ``other``).
MAX_TYPES_SHOWN = 32


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


class G3Source(LoopDoor):
    """One entry of ``g3.sources``: frames in, hub messages out (see the package doc)."""

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

