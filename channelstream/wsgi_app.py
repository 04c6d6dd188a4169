"""The Pyramid application: ``make_app`` for PasteDeploy, ``build_app`` for code.

``[app:main]`` with ``use = egg:channelstream`` (or the seed's
``paste.app_factory = channelstream.wsgi_app:make_app``) lands in
:func:`make_app`, which parses every setting once
(:func:`channelstream.settings.parse_settings`) and builds the app. Building
binds and connects nothing: the :class:`~channelstream.serving.runtime.Runtime` kept
in the registry is started by whoever serves the app (the server runner, or
gunicorn's ``post_worker_init``).

Each feature is a module or package with ``includeme(config)``, listed in
:data:`FEATURES`; a feature finds the runtime with :func:`get_runtime`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyramid.config import Configurator

from .serving.runtime import RUNTIME_KEY, WSGI_WRAPPERS_KEY, Runtime
from .settings import Settings, SettingsError, parse_settings

#: Features included, in order, into every app.
FEATURES: tuple[str, ...] = (
    "channelstream.web.errorviews",
    "channelstream.security.gate",
    "channelstream.ops.health",
    "channelstream.chat",
    "channelstream.rest",
    "channelstream.transports",
    "channelstream.packets",
    "channelstream.packets.ingest",
    "channelstream.tcp_streamer",
    "channelstream.amqp",
    "channelstream.sio",
    "channelstream.ops.admin",
    "channelstream.ops.metrics",
    "loom",
    "channelstream.mflow.door",
    "channelstream.g3.door",
    "demo",
    # last: it joins the OpenAPI fragments the features above registered
    "channelstream.ops.openapi",
)


def make_app(global_config: Mapping[str, str], **settings: str) -> Any:
    """PasteDeploy app factory: :func:`load_settings`, then :func:`build_app`."""
    return build_app(load_settings(global_config, settings))


def load_settings(global_config: Mapping[str, str], settings: Mapping[str, str]) -> Settings:
    """Parse an ``[app:main]`` section (relative paths against the ini's ``here``).

    A bad setting ends the process with one line naming the key
    (``SystemExit("channelstream: bad setting tcp_streamer.listen: ...")``)
    instead of a traceback.
    """
    raw = dict(settings)
    if "here" in global_config:
        raw.setdefault("here", global_config["here"])
    try:
        return parse_settings(raw)
    except SettingsError as err:
        raise SystemExit(f"channelstream: bad setting {err}") from None


def build_app(
    settings: Settings, *, runtime: Runtime | None = None, includes: Sequence[str] = ()
) -> Any:
    """Build the WSGI app for ``settings`` (and a new runtime unless one is given).

    ``includes`` are extra ``includeme`` specs added after :data:`FEATURES`
    (tests use it for test-only views). The app returned is Pyramid's router,
    wrapped by the wrappers features added (:func:`add_wsgi_wrapper`); it
    has the router's ``registry``.
    """
    if runtime is None:
        runtime = Runtime(settings)
    config = Configurator(settings=dict(settings.pyramid))
    config.registry[RUNTIME_KEY] = runtime
    for feature in (*FEATURES, *includes):
        config.include(feature)
    app = config.make_wsgi_app()
    for wrap in config.registry.get(WSGI_WRAPPERS_KEY, ()):
        app = wrap(app)
    return app
