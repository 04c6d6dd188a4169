"""The loom door: the store's lifecycle, its folder lock, and retention.

:class:`LoomDoor` opens the store when the runtime starts (marking streams
that were live as aborted), applies retention every
``loom.retention_interval`` and after each stream ends, and aborts the live
streams when the runtime stops. It takes an exclusive lock on
``<storage_dir>/.lock``: a second process on the same folder serves no loom
route (503 naming the owner's pid) instead of corrupting the streams of the
first.
"""

from __future__ import annotations

import fcntl
import logging
import os
from typing import Any

from gevent.event import Event

from channelstream.hub import Hub
from channelstream.serving.doors import LoopDoor
from channelstream.settings import LoomSettings

from .events import Notifier
from .store import Store, Stream

log = logging.getLogger(__name__)

#: Name of the door in ``/healthz``.
DOOR_NAME = "loom"
#: Registry key of the door.
REGISTRY_KEY = "loom.door"


class LoomDoor(LoopDoor):
    """The store's lifecycle and retention (see the module doc).

    :attr:`ready` is True between :meth:`open` and :meth:`close`; views
    answer 503 otherwise.
    """

    def __init__(self, settings: LoomSettings, hub: Hub) -> None:
        super().__init__(DOOR_NAME)
        self.settings = settings
        self.hub = hub
        self.notifier = Notifier(hub)
        self.store = Store(
            settings.storage_dir,
            fsync=settings.fsync,
            compression=settings.compression,
            level=settings.compression_level,
            max_live=settings.max_streams,
            notify=self._notify,
            cache_window=settings.cache_window,
            fd_reserve=settings.fd_reserve,
        )
        self.ready = False
        #: why this process does not serve loom (another one holds the folder)
        self.standby: str | None = None
        self._lock_fd: int | None = None
        self._kick = Event()

    def _notify(self, stream: Stream, event: str) -> None:
        self.notifier(stream, event)
        if event == "end":
            self._kick.set()

    def open(self) -> None:
        if not self._lock():
            return
        self.store.open()
        self.ready = True
        self._retain()

    def _retain(self) -> None:
        """Apply retention (``loom.retention_age``, ``loom.retention_bytes``)."""
        self.store.purge(
            max_age=self.settings.retention_age, max_bytes=self.settings.retention_bytes
        )

    def _lock(self) -> bool:
        """Take ``<storage_dir>/.lock``; False (:attr:`standby` set) if another process has it."""
        root = self.store.root
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            self.standby = (
                f"loom streams of {root} are served by another process (pid {owner}); "
                "loom runs in one process"
            )
            log.warning("loom: %s", self.standby)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        return True

    def run(self) -> None:
        while not self.stopping:
            self._kick.wait(self.settings.retention_interval)
            self._kick.clear()
            if self.stopping:
                return
            if self.ready:
                self._retain()

    def interrupt(self) -> None:
        self._kick.set()

    def close(self) -> None:
        if self.ready:
            self.ready = False
            self.store.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def extra_status(self) -> dict[str, Any]:
        streams = self.store.streams()
        return {
            "serving": self.ready,
            **({"standby": self.standby} if self.standby else {}),
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
