"""gunicorn settings for running the app with gevent workers (production.ini).

Use it from ``[server:main]`` (``use = egg:gunicorn#main`` and ``config =
python:channelstream.serving.gunicorn_conf``) or on the command line
(``gunicorn --paste production.ini -c python:channelstream.serving.gunicorn_conf``).

The app may be built in the master (pserve builds it before gunicorn
forks), so nothing is bound or connected then. Each worker, after fork and
after gevent's monkey-patching, starts the
:class:`~channelstream.serving.runtime.Runtime` found in ``worker.wsgi.registry``
(hub and doors: listeners opened by every worker use SO_REUSEPORT), and
stops it when the worker is told to exit, before gunicorn waits for the
requests in progress, so that long-lived responses end promptly.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent

from channelstream.serving.runtime import find_runtime

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


def post_worker_init(worker: Any) -> None:
    """Start the worker's runtime; watch for the exit signal to stop it early."""
    runtime = find_runtime(worker.wsgi)
    if runtime is None:
        log.warning("the app has no channelstream runtime; no doors are started")
        return
    runtime.start()

    def stop_when_told() -> None:
        while worker.alive:
            gevent.sleep(_EXIT_POLL)
        runtime.stop(worker.cfg.graceful_timeout)

    gevent.spawn(stop_when_told)


def worker_exit(server: Any, worker: Any) -> None:
    """Stop the worker's runtime (idempotent; nothing to do in the master)."""
    runtime = find_runtime(getattr(worker, "wsgi", None))
    if runtime is not None:
        runtime.stop(worker.cfg.graceful_timeout)
