"""A gunicorn gevent worker that serves like the project's own server runner.

gunicorn's ``GeventPyWSGIWorker`` (gevent, monkey-patched after fork) with
:class:`channelstream.web.httpserver.Handler`: websocket upgrades
(``environ["wsgi.websocket"]``), TCP_NODELAY and the redacted
``channelstream.access`` log. Selected by :mod:`channelstream.serving.gunicorn_conf`.
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers.ggevent import GeventPyWSGIWorker

from ..web.httpserver import Handler, WSGIServer
from .runtime import find_runtime


class RuntimeWSGIServer(WSGIServer):
    """The server gunicorn's worker builds: upgrades done by the views of the
    app's runtime (``Runtime.raw_websocket_paths``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        runtime = find_runtime(self.application)
        if runtime is not None:
            self.raw_websocket_paths = runtime.raw_websocket_paths


class Worker(GeventPyWSGIWorker):
    """gevent worker with websocket support; see the module doc."""

    server_class = RuntimeWSGIServer
    wsgi_handler = Handler
