"""The store's file operations that may block: whole writes, write-back, eviction, fsync;
and the process's file descriptor budget.

Those that can take long (a throttled write, an fdatasync) run in gevent's
thread pool through :func:`in_pool`, so that only the calling greenlet waits.
"""

from __future__ import annotations

import errno
import os
import resource
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
    in_pool(_fsync, fd)


def _fsync(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno != errno.EINVAL:  # e.g. a filesystem without fsync
            raise


def sync_dir(path: os.PathLike[str] | str) -> None:
    """fsync the folder ``path`` in gevent's thread pool: the names created,
    renamed or unlinked in it so far survive a power loss.

    The folder is opened in the pool's thread too: at most one descriptor
    per pool thread, however many greenlets sync at once.
    """
    in_pool(_sync_path, path, os.O_RDONLY | os.O_DIRECTORY)


def write_synced(path: os.PathLike[str] | str, data: bytes) -> None:
    """Create the file ``path`` (it must not exist) with ``data`` and fsync it,
    all in gevent's thread pool (a descriptor per pool thread at most)."""
    in_pool(_write_synced, path, data)


def _sync_path(path: os.PathLike[str] | str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        _fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: os.PathLike[str] | str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        write_all(fd, data)
        _fsync(fd)
    finally:
        os.close(fd)


#: Where the open file descriptors of this process are listed (Linux, then BSD/macOS).
_FD_FOLDERS = ("/proc/self/fd", "/dev/fd")


def fd_limit() -> int:
    """The process's soft ``RLIMIT_NOFILE`` (a huge number when unlimited)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY else 1 << 31


def open_fds() -> int | None:
    """How many file descriptors the process has open, or None if it cannot tell.

    Lists ``/proc/self/fd``: about 1 us per open descriptor (5 ms at 5,000).
    """
    for folder in _FD_FOLDERS:
        try:
            return len(os.listdir(folder)) - 1  # the listing's own descriptor
        except OSError:
            continue
    return None


def out_of_fds(err: OSError) -> bool:
    """Whether ``err`` says the process (EMFILE) or the system (ENFILE) has no fd left."""
    return err.errno in (errno.EMFILE, errno.ENFILE)
