"""A gunicorn gevent worker that serves like the project's own server runner.

gunicorn's ``GeventPyWSGIWorker`` (gevent, monkey-patched after fork) with
:class:`channelstream.web.httpserver.WSGIServer` and its ``Handler``: the
websocket takeover of the runtime's websocket paths (stray upgrades refused),
request deadlines, header bounds and connection caps from the app's ``http.*``
settings (gunicorn's own ``keepalive``, ``limit_request_*`` and ``timeout``
do not apply to this worker), TCP_NODELAY and the redacted
``channelstream.access`` log. Selected by :mod:`channelstream.serving.gunicorn_conf`.
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers.ggevent import GeventPyWSGIWorker

from ..web.httpserver import Handler, WSGIServer
from .runtime import find_runtime


class RuntimeWSGIServer(WSGIServer):
    """The server gunicorn's worker builds: upgrades done by the views of the
    app's runtime (``Runtime.raw_websocket_paths``), limits from its settings
    (``settings.http``). gunicorn's ``worker_connections`` sizes the pool; the
    connection cap stays below it (see :class:`WSGIServer`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        runtime = find_runtime(self.application)
        if runtime is not None:
            self.raw_websocket_paths = runtime.raw_websocket_paths
            self.limits = runtime.settings.http


class Worker(GeventPyWSGIWorker):
    """gevent worker serving like the server runner; see the module doc."""

    server_class = RuntimeWSGIServer
    wsgi_handler = Handler
