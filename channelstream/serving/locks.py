"""Lock files that elect one process: the first to take the lock holds it while it lives.

:func:`try_lock` takes an exclusive ``flock`` on a file without waiting and
writes a line into it (who holds it); the lock goes with the process (the
kernel releases it when the holder dies, even by SIGKILL), so a process that
failed can try again later and take over. Used by gunicorn's workers for the
doors one process runs (:mod:`~channelstream.serving.gunicorn_conf`) and by
loom for the owner of a storage folder (:mod:`loom.door`).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def try_lock(path: str | Path, text: str) -> int | None:
    """Take the lock on ``path`` (created if need be) without waiting.

    :returns: the open file descriptor that holds it (close it to release
        the lock), with ``text`` and a newline written as the file's content;
        None while another process holds it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{text}\n".encode(), 0)
    return fd
