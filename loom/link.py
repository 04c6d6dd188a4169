"""The link between the process that owns a storage folder and those that follow it.

One process owns a folder (it holds ``<storage_dir>/.lock``, see
:mod:`loom.door`) and writes its streams; other processes on the same host
(gunicorn workers, pserve processes) that share the folder and the hub's
shared engine (``hub.engine = redis``) follow it: they serve reads, tails
and ``/spy`` from the folder, and learn of appends and ends through two hub
channels named after the folder (:class:`FolderLink`):

- ``loom.folder:<folder id>`` (events): every event of every stream, as
  :mod:`loom.events` describes them (``start``, ``data``, ``end``,
  ``delete``), in the owner's order, plus ``sync``: the owner's snapshot
  ``{"event": "sync", "owner": {"pid", "url"}, "streams": [{"id", "size",
  "stored", "state", ...}]}`` of its live streams, sent when it starts, when
  a follower asks, and after the engine was unreachable;
- ``loom.folder:<folder id>:ask`` (requests): ``{"event": "sync"}`` from a
  follower that starts (or lost track); the owner answers on the events
  channel.

The folder id is a random name kept in ``<storage_dir>/.folder-id``
(created by whichever process comes first), so every process that opens
the same folder, through whatever path, uses the same channels, and
processes of other folders (other hosts) never hear them.

:class:`Relay` is the owner's side: it takes each event without blocking
the producer (a ``data`` event replaces a ``data`` event of the same stream
still waiting), publishes them in order from one greenlet (one pipeline per
batch), keeps them while the engine is down (at most :data:`MAX_PENDING`;
then the oldest go, counted in ``lost``, and a snapshot follows once the
engine is back), and answers the followers' requests. The follower's side
is :class:`loom.mirror.Mirror`.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event

from channelstream.hub import ChannelConfig, Hub, Message
from channelstream.hub.bus import EngineUnavailable

log = logging.getLogger(__name__)

#: The file holding the folder's id, beside the lock file.
FOLDER_ID_FILE = ".folder-id"
#: The owner's lock file: ``<pid> <url>`` (``-`` when it does not know its URL).
LOCK_FILE = ".lock"
#: Events kept while the engine is down before the oldest are dropped.
MAX_PENDING = 10000
#: History the engine keeps of the events channel: a follower whose pub/sub
#: connection broke for a moment catches up from it (the engine fills gaps).
EVENTS_HISTORY = 1000
#: Longest wait between attempts while the engine is down (seconds).
RETRY_MAX = 5.0


def folder_id(root: Path) -> str:
    """The id of the storage folder ``root``, created on first use (any process)."""
    path = Path(root) / FOLDER_ID_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        for _ in range(50):  # another process is writing it: a few bytes, at once
            text = path.read_text(encoding="ascii", errors="replace").strip()
            if text:
                return text
            gevent.sleep(0.01)
        raise OSError(f"{path} stays empty: delete it and restart") from None
    text = secrets.token_hex(8)
    try:
        os.write(fd, f"{text}\n".encode())
    finally:
        os.close(fd)
    return text


def read_owner(root: Path) -> dict[str, Any]:
    """What the owner wrote in its lock file: ``{"pid": str, "url": str | None}``."""
    try:
        words = (Path(root) / LOCK_FILE).read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        words = []
    url = words[1] if len(words) > 1 and words[1] != "-" else None
    return {"pid": words[0] if words else "?", "url": url}


class FolderLink:
    """The names of one folder's two channels (see the module doc), configured on ``hub``.

    The events channel keeps :data:`EVENTS_HISTORY` events in the engine and
    is never collected; both go through the hub's engine.
    """

    def __init__(self, hub: Hub, root: Path) -> None:
        self.hub = hub
        self.id = folder_id(root)
        self.events = f"loom.folder:{self.id}"
        self.ask = f"{self.events}:ask"
        events = ChannelConfig(history_size=EVENTS_HISTORY, persistent=True)
        hub.configure_channel(self.events, events)
        hub.configure_channel(self.ask, ChannelConfig(history_size=0, persistent=True))

    @property
    def shared(self) -> bool:
        """Whether the channels reach other processes (the hub has a shared engine)."""
        return self.hub.shared(self.events)


class Relay:
    """The owner's side of the link: see the module doc.

    :param snapshot: returns the ``sync`` body (the owner and its live streams).
    """

    def __init__(self, link: FolderLink, snapshot: Any) -> None:
        self.link = link
        self.snapshot = snapshot
        self._pending: list[dict[str, Any]] = []
        #: stream id -> index in ``_pending`` of its data event still waiting
        self._data_at: dict[str, int] = {}
        self._wake = Event()
        self._greenlets: list[gevent.Greenlet] = []
        self._stopping = False
        self._up = True
        #: counters shown in ``/healthz``
        self.relayed = 0
        self.coalesced = 0
        self.lost = 0
        self.syncs = 0

    # -- taking events (the producer's greenlet: never blocks) ------------------------------

    def offer(self, body: dict[str, Any]) -> None:
        """Queue ``body`` for the followers (a data event may replace an older one)."""
        stream_id = body.get("id")
        if body.get("event") == "data" and stream_id is not None:
            at = self._data_at.get(stream_id)
            if at is not None:
                self._pending[at] = body
                self.coalesced += 1
                return
            self._data_at[stream_id] = len(self._pending)
        elif stream_id is not None:
            self._data_at.pop(stream_id, None)  # what follows must stay after this
        self._pending.append(body)
        if len(self._pending) > MAX_PENDING:
            drop = len(self._pending) - MAX_PENDING
            del self._pending[:drop]
            self.lost += drop
            self._reindex()
        self._wake.set()

    def sync(self) -> None:
        """Queue a snapshot (``sync``) for the followers."""
        self.syncs += 1
        self.offer({"event": "sync", **self.snapshot()})

    def _reindex(self) -> None:
        self._data_at = {
            body["id"]: i for i, body in enumerate(self._pending) if body.get("event") == "data"
        }

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Announce the owner (a snapshot) and start relaying and answering."""
        self.sync()
        self._greenlets = [gevent.spawn(self._publish_loop), gevent.spawn(self._answer_loop)]

    def stop(self, timeout: float = 2.0) -> None:
        """Publish what waits (the ends of a stopping owner) once, then stop."""
        self._stopping = True
        for greenlet in self._greenlets:
            greenlet.kill(block=False)
        gevent.joinall(self._greenlets, timeout=timeout)
        if self._pending:
            with gevent.Timeout(timeout, False):
                self._flush()

    def status(self) -> dict[str, Any]:
        return {
            "link": self.link.events,
            "relayed": self.relayed,
            "coalesced": self.coalesced,
            "pending": len(self._pending),
            "lost": self.lost,
            "syncs": self.syncs,
            "engine": "up" if self._up else "down",
        }

    # -- greenlets --------------------------------------------------------------------------

    def _flush(self) -> bool:
        """Publish everything pending as one batch; False (kept) if the engine is down."""
        batch, self._pending, self._data_at = self._pending, [], {}
        if not batch:
            return True
        messages = [Message(self.link.events, body, droppable=False) for body in batch]
        try:
            self.link.hub.publish_many(messages)
        except EngineUnavailable as err:
            if self._up:
                log.warning("loom: followers cannot be told of stream events now: %s", err)
            self._up = False
            self._pending = batch + self._pending  # in order, before what came meanwhile
            if len(self._pending) > MAX_PENDING:
                drop = len(self._pending) - MAX_PENDING
                del self._pending[:drop]
                self.lost += drop
            self._reindex()
            return False
        self.relayed += len(batch)
        if not self._up:
            self._up = True
            log.info("loom: stream events reach the followers again")
            self.sync()  # they may have missed what was dropped, or ended tails on a timer
        return True

    def _publish_loop(self) -> None:
        delay = 0.1
        while not self._stopping:
            self._wake.wait()
            self._wake.clear()
            if self._flush():
                delay = 0.1
            else:
                gevent.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                self._wake.set()

    def _answer_loop(self) -> None:
        """Answer each follower's request with a snapshot; follow the ask channel again
        whenever that fails (engine down) or its outbox closes."""
        hub = self.link.hub
        delay = 0.1
        while not self._stopping:
            outbox = hub.open_outbox(max_queue=64, hard_limit=1024, name="loom owner")
            try:
                hub.subscribe(outbox, self.link.ask)
                delay = 0.1
                while not outbox.closed:
                    outbox.wait()
                    if outbox.drain():  # many requests at once: one answer
                        self.sync()
            except EngineUnavailable:
                gevent.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
            finally:
                outbox.close("loom owner stopping")
