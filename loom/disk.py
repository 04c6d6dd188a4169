"""The store's file operations that may block: whole writes, write-back, eviction, fsync.

Those that can take long (a throttled write, an fdatasync) run in gevent's
thread pool through :func:`in_pool`, so that only the calling greenlet waits.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import gevent


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until all of ``data`` is written."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def in_pool(function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function(*args)`` in gevent's thread pool; the calling greenlet waits."""
    return gevent.get_hub().threadpool.apply(function, args)


def write_back(fd: int, drop_from: int, drop_to: int) -> None:
    """fdatasync ``fd``, then evict ``[drop_from, drop_to)`` (clean now) from the page cache."""
    os.fdatasync(fd)
    drop_cached(fd, drop_from, drop_to - drop_from)


def drop_cached(fd: int, offset: int, length: int) -> None:
    """Evict the clean page-cache pages of ``length`` bytes of ``fd`` from ``offset``."""
    if length > 0:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def sync_file(fd: int) -> None:
    """fsync in gevent's thread pool (the calling greenlet waits, others run)."""
    try:
        in_pool(os.fsync, fd)
    except OSError as err:
        if err.errno != errno.EINVAL:  # e.g. a filesystem without fsync
            raise
