"""The follower's side of a shared storage folder: reads, tails and ``/spy`` without owning it.

A process that finds the folder owned by another (:mod:`loom.door`) while
the hub has a shared engine serves reads from the folder through a
:class:`FollowerStore` (a read-only view of the streams: their metadata
files, and where each live stream stands), kept current by a
:class:`Mirror` that follows the folder's events channel
(:mod:`loom.link`) and turns each event into the local notifications of
:mod:`loom.events`. Tails and spies on this process then work exactly as
on the owner: they read the data files, never past what the owner
announced (``stored``), and wait on their local channels.

Where a live stream stands comes from the owner's events: a ``data`` or
``end`` event carries its size and stored bytes, and a ``sync`` snapshot
(asked for when the mirror starts following, sent by the owner when it
starts and after the engine was unreachable) those of every live stream.
Every :data:`RESCAN` seconds, and whenever the engine cannot be reached,
the mirror also reads the folder (new, ended and removed streams), so a
reader never waits forever on an event that was lost: an end is on disk
before the owner announces it.

Writes are the owner's: :class:`FollowerStore` refuses them with
:class:`~loom.errors.NotOwner` (503, naming the owner's pid and URL).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent

from channelstream.hub import Message
from channelstream.hub.bus import EngineUnavailable

from .errors import NotOwner, StoreError
from .link import RETRY_MAX, FolderLink, read_owner
from .store import ABORTED, LIVE, STATES, Store, Stream

log = logging.getLogger(__name__)

#: Seconds between two reads of the folder (the safety net for lost events).
RESCAN = 5.0
#: Events queued for the mirror before the oldest is dropped (none is droppable)...
MIRROR_QUEUE = 4096
#: ...and past which its outbox closes: the mirror then follows again and asks
#: for a snapshot.
MIRROR_HARD_LIMIT = 65536

Change = tuple[Stream, str]


class FollowerStore(Store):
    """A read-only view of a folder another process writes (see the module doc).

    Queries work as on :class:`~loom.store.Store`; :meth:`create` and
    :meth:`delete` raise :class:`NotOwner`; retention and shutdown do
    nothing (the owner's business). Changed only by :meth:`apply` and
    :meth:`rescan`, which return what changed for the local notifications.
    """

    def open(self) -> None:
        """Load every stream as its metadata file says (live ones stay live)."""
        self.rescan()

    def not_owner(self) -> NotOwner:
        """The refusal of a write, naming the owner as its lock file does."""
        return NotOwner(str(self.root), read_owner(self.root))

    def create(self, stream_id: str | None, metadata: Any, *, force: bool = False) -> Any:
        raise self.not_owner()

    def delete(self, stream_id: str) -> Stream:
        raise self.not_owner()

    def append(self, stream: Stream, data: bytes | memoryview) -> None:
        raise self.not_owner()

    def finish(self, stream: Stream) -> None:
        raise self.not_owner()

    def abort(self, stream: Stream, reason: str) -> None:
        raise self.not_owner()

    def purge(self, **kwargs: Any) -> list[str]:
        return []

    def close(self) -> None:
        return None

    # -- following the owner ---------------------------------------------------------------

    def _read(self, stream_id: str) -> Stream | None:
        try:
            return self.read_stream(self.folder / f"{stream_id}.json")
        except (OSError, ValueError, KeyError, TypeError, StoreError):
            return None  # not there (yet, or any more), or being replaced

    def _register(self, stream: Stream) -> list[Change]:
        """Take ``stream`` as the current one of its id (ending one it replaces)."""
        changes: list[Change] = []
        old = self._streams.get(stream.id)
        if old is not None and old.created != stream.created:
            changes += _end(old, ABORTED, "replaced by a new stream with the same id")
        elif old is not None:
            return changes
        self._streams[stream.id] = stream
        changes.append((stream, "start"))
        return changes

    def apply(self, body: dict[str, Any]) -> list[Change]:
        """Apply one event of the owner (:mod:`loom.events`, :mod:`loom.link`)."""
        event, stream_id = body.get("event"), body.get("id")
        if event == "sync":
            return self._sync(body)
        if not isinstance(stream_id, str):
            return []
        if event == "delete":
            stream = self._streams.pop(stream_id, None)
            if stream is None:
                return []
            return [*_end(stream, ABORTED, body.get("reason") or "deleted"), (stream, "delete")]
        stream = self._streams.get(stream_id)
        changes: list[Change] = []
        if event == "start" or stream is None:
            fresh = self._read(stream_id)
            if fresh is None:
                return []
            changes += self._register(fresh)
            stream = self._streams[stream_id]
        if _advance(stream, body):
            changes.append((stream, "data"))
        if event == "end" and stream.live and body.get("state") in STATES:
            changes += _end(stream, body["state"], body.get("reason"), body.get("ended"))
        return changes

    def _sync(self, body: dict[str, Any]) -> list[Change]:
        changes = self.rescan()
        for entry in body.get("streams") or ():
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                stream = self._streams.get(entry["id"])
                if stream is not None and _advance(stream, entry):
                    changes.append((stream, "data"))
        return changes

    def rescan(self) -> list[Change]:
        """Read the folder: streams that appeared, ended or were removed since."""
        changes: list[Change] = []
        try:
            names = {path.stem for path in self.folder.glob("*.json")}
        except OSError as err:
            log.warning("loom: cannot read %s: %s", self.folder, err)
            return changes
        for stream_id, stream in list(self._streams.items()):
            if stream_id not in names:
                del self._streams[stream_id]
                changes += [*_end(stream, ABORTED, "deleted"), (stream, "delete")]
        for stream_id in sorted(names):
            known = self._streams.get(stream_id)
            if known is not None and not known.live:
                continue  # an ended stream does not change, but for a replacement
            fresh = self._read(stream_id)
            if fresh is None:
                continue
            if known is None or known.created != fresh.created:
                changes += self._register(fresh)
            elif fresh.state != LIVE:
                _advance(known, fresh.info())
                changes += _end(known, fresh.state, fresh.reason, fresh.ended)
        return changes


def _advance(stream: Stream, info: dict[str, Any]) -> bool:
    """Take the larger size and stored bytes ``info`` gives; True if they grew."""
    try:
        size, stored = int(info.get("size") or 0), int(info.get("stored") or 0)
    except (TypeError, ValueError):
        return False
    if stored <= stream.stored and size <= stream.size:
        return False
    stream.stored = max(stream.stored, stored)
    stream.size = max(stream.size, size)
    return True


def _end(
    stream: Stream, state: str, reason: str | None, ended: float | None = None
) -> list[Change]:
    if not stream.live or state == LIVE:
        return []
    stream.state, stream.reason = state, reason
    stream.ended = ended if isinstance(ended, (int, float)) else time.time()
    return [(stream, "end")]


class Mirror:
    """Keeps a :class:`FollowerStore` current from the owner's events (module doc).

    :param notify: the local :class:`~loom.events.Notifier` (without relay).
    """

    def __init__(
        self, link: FolderLink, store: FollowerStore, notify: Callable[[Stream, str], None]
    ) -> None:
        self.link = link
        self.store = store
        self.notify = notify
        self.following = False
        self._greenlet: gevent.Greenlet | None = None
        self._stopping = False
        self._last_scan = time.monotonic()
        #: counters shown in ``/healthz``
        self.events = 0
        self.rescans = 0
        self.follows = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        self._stopping = True
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=2)

    def status(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "link": self.link.events,
            "following": self.following,
            "events": self.events,
            "rescans": self.rescans,
            "follows": self.follows,
        }
        if self.last_error:
            info["last_error"] = self.last_error
        return info

    def _tell(self, changes: list[Change]) -> None:
        for stream, event in changes:
            try:
                self.notify(stream, event)
            except EngineUnavailable:  # local channels only: never; kept for safety
                log.debug("loom: a local notification failed", exc_info=True)

    def _rescan(self) -> None:
        self.rescans += 1
        self._last_scan = time.monotonic()
        self._tell(self.store.rescan())

    def _run(self) -> None:
        hub = self.link.hub
        delay = 0.1
        while not self._stopping:
            outbox = hub.open_outbox(
                max_queue=MIRROR_QUEUE, hard_limit=MIRROR_HARD_LIMIT, name="loom follower"
            )
            try:
                hub.subscribe(outbox, self.link.events)
                hub.publish(Message(self.link.ask, {"event": "sync"}, droppable=False))
                self.following, self.last_error, delay = True, None, 0.1
                self.follows += 1
                while not outbox.closed:
                    left = RESCAN - (time.monotonic() - self._last_scan)
                    if left <= 0 or not outbox.wait(left):
                        self._rescan()
                        continue
                    for message in outbox.drain():
                        self.events += 1
                        self._tell(self.store.apply(message.body))
            except EngineUnavailable as err:
                self.last_error = str(err)
                log.warning("loom: cannot follow the folder's owner: %s", err)
            finally:
                self.following = False
                outbox.close("loom follower stopping")
            if not self._stopping:  # ends on disk are seen meanwhile
                self._rescan()
                gevent.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
