"""A gunicorn gevent worker that serves like the project's own server runner.

gunicorn's ``GeventPyWSGIWorker`` (gevent, monkey-patched after fork) with
:class:`channelstream.web.httpserver.Handler`: websocket upgrades
(``environ["wsgi.websocket"]``), TCP_NODELAY and the redacted
``channelstream.access`` log. Selected by :mod:`channelstream.serving.gunicorn_conf`.
"""

from __future__ import annotations

from gunicorn.workers.ggevent import GeventPyWSGIWorker

from ..web.httpserver import Handler, WSGIServer


class Worker(GeventPyWSGIWorker):
    """gevent worker with websocket support; see the module doc."""

    server_class = WSGIServer
    wsgi_handler = Handler
