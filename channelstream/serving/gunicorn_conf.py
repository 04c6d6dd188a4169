"""gunicorn settings for running the app with gevent workers (production.ini).

Use it from ``[server:main]`` (``use = egg:channelstream#gunicorn``, gunicorn's
runner after gevent's patch, see :mod:`channelstream.serving.gunicorn_paste`, and
``config = python:channelstream.serving.gunicorn_conf``) or on the command line
(``gunicorn --paste production.ini -c python:channelstream.serving.gunicorn_conf``).

The app may be built in the master (pserve builds it before gunicorn
forks), so nothing is bound or connected then. Each worker, after fork and
after gevent's monkey-patching, starts the
:class:`~channelstream.serving.runtime.Runtime` found in ``worker.wsgi.registry``
and stops it when the worker is told to exit, before gunicorn waits for the
requests in progress, so that long-lived responses end promptly.

Listeners with several workers:

- the HTTP port is gunicorn's: the master binds it (with SO_REUSEPORT,
  ``reuse_port``) and every worker accepts on that one socket;
- doors that every worker may run open their own listener with
  SO_REUSEPORT, and the kernel spreads connections among the workers (the
  GATD TCP streamer: each worker has every packet, from RabbitMQ);
- doors that one process must run (``Service.single``: ZMQ sockets, G3
  sources and ``g3.listen``, whose ports cannot be shared or whose
  channels stay in that process) run in one worker, the one that holds
  the lock file :func:`single_lock_path` (one per master); the others
  hold them back (``standby`` in ``/healthz``) and try the lock every
  :data:`SINGLE_RETRY` seconds, so that when that worker dies (and while
  gunicorn replaces it) another one takes them over;
- loom elects its owner by its own lock (:mod:`loom.door`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import gevent

from channelstream.serving.locks import try_lock
from channelstream.serving.runtime import advertised_url, find_runtime

log = logging.getLogger("channelstream.gunicorn")

#: :class:`channelstream.serving.gunicorn_worker.Worker`: gevent plus websocket upgrades.
worker_class = "channelstream.serving.gunicorn_worker.Worker"
#: The size of each worker's greenlet pool. The bound that matters is the app's
#: ``http.max_connections`` (past it a connection is answered 503); a pool this
#: large never fills first, which would stop accepting instead of answering.
worker_connections = 65536
#: Every worker may open the same listeners (HTTP and doors).
reuse_port = True
#: Seconds a worker gets to finish requests after SIGTERM.
graceful_timeout = 10
#: How often a worker checks whether it was told to exit, in seconds.
_EXIT_POLL = 0.2
#: How often a worker that holds the single doors back tries to take them, in seconds.
SINGLE_RETRY = 1.0


def single_lock_path(master_pid: int) -> str:
    """The lock file whose holder runs the single doors of the workers of ``master_pid``."""
    return os.path.join(tempfile.gettempdir(), f"channelstream-{master_pid}-single.lock")


def take_single_lock(path: str) -> int | None:
    """Take the lock at ``path`` without waiting: its fd (held for the worker's
    life, released when it dies), or None while another worker holds it."""
    return try_lock(path, str(os.getpid()))


def _worker_url(worker: Any) -> str | None:
    """``http://host:port`` of the worker's (first) listener, or None."""
    for sock in getattr(worker, "sockets", ()) or ():
        try:
            address = sock.getsockname()
        except OSError:
            continue
        if isinstance(address, tuple):
            return advertised_url(address[0], address[1])
    return None


def post_worker_init(worker: Any) -> None:
    """Start the worker's runtime; watch for the exit signal to stop it early."""
    runtime = find_runtime(worker.wsgi)
    if runtime is None:
        log.warning("the app has no channelstream runtime; no doors are started")
        return
    runtime.url = _worker_url(worker)
    single = [door for door in runtime.doors if door.single]
    if not single:
        runtime.start()
    else:
        path = single_lock_path(os.getppid())
        if take_single_lock(path) is not None:
            runtime.start()
            log.info("this worker runs the single doors: %s", ", ".join(d.name for d in single))
        else:
            runtime.start(single=False)
            gevent.spawn(_take_single_doors, worker, runtime, path)

    def stop_when_told() -> None:
        while worker.alive:
            gevent.sleep(_EXIT_POLL)
        runtime.stop(worker.cfg.graceful_timeout)

    gevent.spawn(stop_when_told)


def _take_single_doors(worker: Any, runtime: Any, path: str) -> None:
    """Try the lock until this worker takes it (its holder died), then start the doors."""
    while worker.alive:
        gevent.sleep(SINGLE_RETRY)
        if worker.alive and take_single_lock(path) is not None:
            log.warning("the worker that ran the single doors is gone: this one runs them now")
            runtime.start_held()
            return


def on_exit(server: Any) -> None:
    """Remove the master's single-doors lock file."""
    try:
        os.unlink(single_lock_path(os.getpid()))
    except OSError:
        pass


def worker_exit(server: Any, worker: Any) -> None:
    """Stop the worker's runtime (idempotent; nothing to do in the master)."""
    runtime = find_runtime(getattr(worker, "wsgi", None))
    if runtime is not None:
        runtime.stop(worker.cfg.graceful_timeout)
