"""The Pyramid application: ``make_app`` for PasteDeploy, ``build_app`` for code.

``[app:main]`` with ``use = egg:channelstream`` (or the seed's
``paste.app_factory = channelstream.wsgi_app:make_app``) lands in
:func:`make_app`, which parses every setting once
(:func:`channelstream.settings.parse_settings`) and builds the app. Building
binds and connects nothing: the :class:`~channelstream.runtime.Runtime` kept
in the registry is started by whoever serves the app (the server runner, or
gunicorn's ``post_worker_init``).

Each feature is a module or package with ``includeme(config)``, listed in
:data:`FEATURES`; a feature finds the runtime with :func:`get_runtime`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pyramid.config import Configurator

from .runtime import Runtime
from .settings import Settings, SettingsError, parse_settings

#: Registry key of the process's :class:`~channelstream.runtime.Runtime`.
RUNTIME_KEY = "channelstream.runtime"

#: Registry key of the WSGI wrappers features add (:func:`add_wsgi_wrapper`).
WSGI_WRAPPERS_KEY = "channelstream.wsgi_wrappers"

#: Features included, in order, into every app.
FEATURES: tuple[str, ...] = (
    "channelstream.errorviews",
    "channelstream.security",
    "channelstream.health",
    "channelstream.chat",
    "channelstream.rest",
    "channelstream.transports",
    "channelstream.packets",
    "channelstream.packets.ingest",
    "channelstream.tcp_streamer",
    "channelstream.amqp",
    "channelstream.sio",
    "channelstream.admin",
    "channelstream.metrics",
    "channelstream.openapi",
    "loom",
)


def get_runtime(registry: Mapping[str, Any]) -> Runtime:
    """Return the runtime stored in a Pyramid registry (``request.registry``)."""
    return registry[RUNTIME_KEY]


def find_runtime(app: Any) -> Runtime | None:
    """Return the runtime behind a WSGI app built by :func:`build_app`, or None."""
    registry = getattr(app, "registry", None)
    if registry is None:
        return None
    return registry.get(RUNTIME_KEY)


def add_wsgi_wrapper(registry: Any, wrap: Callable[[Any], Any]) -> None:
    """Have :func:`build_app` return ``wrap(app)`` (in the order added).

    A wrapper must keep the app's ``registry`` attribute (``find_runtime``).
    The socket.io feature uses it to serve its path beside the Pyramid routes.
    """
    registry.setdefault(WSGI_WRAPPERS_KEY, []).append(wrap)


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
