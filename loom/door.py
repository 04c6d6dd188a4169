"""The loom door: the store's lifecycle, its folder lock, retention, and the link.

:class:`LoomDoor` opens the store when the runtime starts (marking streams
that were live as aborted), applies retention every
``loom.retention_interval`` and after each stream ends, and aborts the live
streams when the runtime stops. It takes an exclusive lock on
``<storage_dir>/.lock`` (writing its pid and URL in it): one process owns a
folder and writes its streams. Another process on the same folder:

- with a shared engine (``hub.engine = redis``) *follows* it
  (:mod:`loom.mirror`): reads, tails and ``/spy`` work there too, from the
  folder, woken by the owner's events (:mod:`loom.link`); writes answer
  503 naming the owner (:class:`~loom.errors.NotOwner`). A follower takes
  the folder over when its owner is gone (it tries the lock every
  :data:`TAKEOVER_INTERVAL` seconds): the streams the owner left live are
  then aborted, and its tails end;
- on the local bus serves no loom route (503 naming the owner's pid)
  instead of corrupting the streams of the first.

``loom.role = follow`` makes a process never own the folder (a deployment
that sends writes to one process of its own: see README, loom).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from gevent.event import Event

from channelstream.hub import Hub
from channelstream.serving.doors import LoopDoor
from channelstream.serving.locks import try_lock
from channelstream.settings import LoomSettings

from .events import Notifier
from .link import LOCK_FILE, FolderLink, Relay, read_owner
from .mirror import FollowerStore, Mirror
from .store import ABORTED, Store, Stream

log = logging.getLogger(__name__)

#: Name of the door in ``/healthz``.
DOOR_NAME = "loom"
#: Registry key of the door.
REGISTRY_KEY = "loom.door"
#: How often a follower tries to take the folder over (seconds).
TAKEOVER_INTERVAL = 2.0

OWNER, FOLLOWER, STANDBY = "owner", "follower", "standby"


class LoomDoor(LoopDoor):
    """The store's lifecycle and retention (see the module doc).

    :attr:`ready` is True between :meth:`open` and :meth:`close`; views
    answer 503 otherwise.
    """

    def __init__(
        self, settings: LoomSettings, hub: Hub, *, url: Callable[[], str | None] | None = None
    ) -> None:
        super().__init__(DOOR_NAME)
        self.settings = settings
        self.hub = hub
        #: this process's base URL (written in the lock file for the followers)
        self.url = url or (lambda: None)
        self.notifier = Notifier(hub)
        self.store: Store = self._new_store(Store)
        self.ready = False
        #: owner, follower or standby (None before open)
        self.role: str | None = None
        #: why this process does not serve loom (another one holds the folder)
        self.standby: str | None = None
        self.link: FolderLink | None = None
        self.relay: Relay | None = None
        self.mirror: Mirror | None = None
        self._lock_fd: int | None = None
        self._kick = Event()

    def _new_store(self, kind: type[Store]) -> Store:
        settings = self.settings
        return kind(
            settings.storage_dir,
            fsync=settings.fsync,
            compression=settings.compression,
            level=settings.compression_level,
            max_live=settings.max_streams,
            notify=self._notify,
            cache_window=settings.cache_window,
            fd_reserve=settings.fd_reserve,
        )

    def _notify(self, stream: Stream, event: str) -> None:
        self.notifier(stream, event)
        if event == "end":
            self._kick.set()

    def open(self) -> None:
        root = self.store.root
        root.mkdir(parents=True, exist_ok=True)
        self.link = FolderLink(self.hub, root)
        if self.settings.role != "follow" and self._lock():
            self._own()
            return
        if not self.link.shared:
            owner = read_owner(root)
            self.standby = (
                f"loom streams of {root} are served by another process (pid {owner['pid']});"
                " with the local bus loom runs in one process (hub.engine = redis lets"
                " other processes follow it)"
            )
            self.role = STANDBY
            log.warning("loom: %s", self.standby)
            return
        self.store = self._new_store(FollowerStore)
        self.store.open()
        self.mirror = Mirror(self.link, self.store, self.notifier)
        self.mirror.start()
        self.role, self.ready = FOLLOWER, True
        log.info("loom: following the streams of %s (owner: %s)", root, read_owner(root))

    def _own(self) -> None:
        """Open the store as its owner; relay its events when they can reach followers."""
        self.store.open()
        self.role, self.ready = OWNER, True
        assert self.link is not None
        if self.link.shared:
            self.relay = Relay(self.link, self._snapshot)
            self.notifier.relay = self.relay.offer
            self.relay.start()
        self._retain()

    def _snapshot(self) -> dict[str, Any]:
        return {
            "owner": {"pid": str(os.getpid()), "url": self.url()},
            "streams": [stream.info() for stream in self.store.live_streams()],
        }

    def _take_over(self) -> None:
        """The owner is gone and this follower holds the lock now: own the folder.

        The owner's live streams are aborted on disk by :meth:`Store.open`;
        this process's readers of them are told (their tails end).
        """
        assert self.mirror is not None
        self.mirror.stop()
        self.mirror = None
        followed = self.store
        self.store = self._new_store(Store)
        self._own()
        for stream in followed.live_streams():
            now = self.store.find(stream.id)
            stream.state = now.state if now is not None and not now.live else ABORTED
            stream.reason = now.reason if now is not None else "the owner of the stream is gone"
            stream.ended = now.ended if now is not None else None
            self.notifier(stream, "end")
        log.warning("loom: took over the streams of %s (their owner is gone)", self.store.root)

    def _retain(self) -> None:
        """Apply retention (``loom.retention_age``, ``loom.retention_bytes``)."""
        self.store.purge(
            max_age=self.settings.retention_age, max_bytes=self.settings.retention_bytes
        )

    def _lock(self) -> bool:
        """Take ``<storage_dir>/.lock``; False if another process has it."""
        fd = try_lock(self.store.root / LOCK_FILE, f"{os.getpid()} {self.url() or '-'}")
        if fd is None:
            return False
        self._lock_fd = fd
        return True

    def run(self) -> None:
        while not self.stopping:
            wait = TAKEOVER_INTERVAL if self.role == FOLLOWER else self.settings.retention_interval
            self._kick.wait(wait)
            self._kick.clear()
            if self.stopping:
                return
            if self.role == FOLLOWER and self.settings.role != "follow" and self._lock():
                self._take_over()
            if self.role == OWNER:
                self._retain()

    def interrupt(self) -> None:
        self._kick.set()

    def close(self) -> None:
        if self.mirror is not None:
            self.mirror.stop()
            self.mirror = None
        if self.ready:
            self.ready = False
            self.store.close()  # the owner's live streams end: the relay tells the followers
        if self.relay is not None:
            self.relay.stop()
            self.relay = None
            self.notifier.relay = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def extra_status(self) -> dict[str, Any]:
        streams = self.store.streams()
        return {
            "serving": self.ready,
            "role": self.role,
            **({"standby": self.standby} if self.standby else {}),
            **({"relay": self.relay.status()} if self.relay is not None else {}),
            **({"mirror": self.mirror.status()} if self.mirror is not None else {}),
            "streams": len(streams),
            "live": sum(1 for s in streams if s.live),
            "stored_bytes": self.store.stored_bytes,
            "purged": self.store.purged,
            "slow_writes": self.store.slow_writes,
            "slowest_write_ms": round(self.store.slowest_write * 1000, 1),
        }


def get_door(registry: Any) -> LoomDoor:
    """The loom door of an app's registry."""
    return registry[REGISTRY_KEY]
