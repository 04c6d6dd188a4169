"""The runtime: one process's hub, doors and settings, with one lifecycle.

The app factory builds a :class:`Runtime` (nothing is bound or connected
then), features register their doors on it, and whoever serves the app
starts it once the process is ready to serve: the project's server runner
after binding its listener, or gunicorn's ``post_worker_init`` after fork.

Lifecycle: ``new -> running -> stopping -> stopped``. ``start()`` starts the
hub, then the doors in the order they were added. ``stop(timeout)`` first
sets :attr:`Runtime.stopping` (long-lived responses watch it and end), then
stops the doors in reverse order (each stops accepting and ends its own
connections), then stops the hub (which closes every outbox with the reason
"server shutting down"). Both are idempotent.
"""

from __future__ import annotations

import enum
import gc
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from gevent.event import Event

from .. import __version__
from ..hub import ChannelConfig, Hub, HubConfig
from ..settings import Settings, replace_group
from .doors import HEALTHY_STATES, STANDBY, DoorRegistry

log = logging.getLogger(__name__)


class RuntimeState(str, enum.Enum):
    """Where the runtime is in its life (``status()["state"]``)."""

    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


def hub_config(settings: Settings) -> HubConfig:
    """Return the hub's configuration for ``settings`` (``hub.*`` and ``gc_channels_after``)."""
    return HubConfig(
        default_channel=ChannelConfig(
            history_size=settings.hub.history_size,
            history_seconds=settings.hub.history_seconds,
        ),
        outbox_size=settings.hub.outbox_size,
        outbox_hard_limit=settings.hub.outbox_hard_limit,
        channel_idle_after=settings.gc_channels_after,
        gc_interval=settings.hub.gc_interval,
    )


def make_hub(settings: Settings) -> Hub:
    """The hub of ``settings``: on the local bus, or on the engine ``hub.engine`` names."""
    if settings.hub.engine != "redis":
        return Hub(hub_config(settings))
    from ..engines.redis import RedisBus  # only when asked: redis-py is not loaded otherwise

    hub: Hub | None = None

    def config_of(name: str) -> ChannelConfig:
        return hub.channel_config(name)  # type: ignore[union-attr]

    bus = RedisBus(settings.redis.url, config_of, key_prefix=settings.redis.key_prefix)
    hub = Hub(hub_config(settings), bus=bus)
    return hub


class Runtime:
    """Settings, hub and doors of one serving process.

    :param settings: the validated settings; replaced only through
        :meth:`override_socketio`, and only before :meth:`start`.
    :param hub: the hub to use; by default one built from ``settings``.

    Used from the main greenlet; :meth:`status` may be called from any.
    """

    def __init__(self, settings: Settings, *, hub: Hub | None = None) -> None:
        self._settings = settings
        self.hub = hub if hub is not None else make_hub(settings)
        self.doors = DoorRegistry()
        #: URL paths whose websocket upgrades a view performs itself (it finds
        #: a ``channelstream.websocket.takeover`` callable in the environ);
        #: the HTTP server refuses upgrades on any other path.
        self.raw_websocket_paths: set[str] = set()
        #: Set when :meth:`stop` begins; long-lived responses wait on it and end.
        self.stopping = Event()
        self.state = RuntimeState.NEW
        #: The base URL this process serves (``http://host:port``), set by whoever
        #: serves the app before :meth:`start` (None when unknown). Doors that
        #: name this process to others (loom's owner) read it.
        self.url: str | None = None
        #: Wall-clock time of :meth:`start` (None before).
        self.started_at: float | None = None
        self._started_monotonic: float | None = None

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self._settings

    def override_socketio(self, **changes: Any) -> Settings:
        """Replace socket.io settings (typed values) before start; return the new settings.

        The server runner uses this to apply the seed's ``[server:main]``
        keys (``resource``, ``transports``, ``heartbeat_*``). Every door is
        told (:meth:`~channelstream.serving.doors.Door.settings_changed`).
        """
        if self.state is not RuntimeState.NEW:
            raise RuntimeError("socket.io settings can only change before the runtime starts")
        self._settings = replace_group(self._settings, "socketio", **changes)
        for door in self.doors:
            door.settings_changed(self._settings)
        return self._settings

    def start(self, *, single: bool = True) -> None:
        """Start the hub, then every door; on a door failure stop the hub and re-raise.

        :param single: also start the doors that one process of a server runs
            (``Service.single``); without it they wait for :meth:`start_held`.

        Raises :class:`~channelstream.serving.doors.DoorStartError` naming the door.
        Calling it again while running does nothing.
        """
        if self.state is RuntimeState.RUNNING:
            return
        if self.state is not RuntimeState.NEW:
            raise RuntimeError(f"cannot start a runtime that is {self.state.value}")
        self.hub.start()
        try:
            self.doors.start_all(single=single)
        except BaseException:
            self.hub.stop()
            self.state = RuntimeState.STOPPED
            raise
        self.started_at = time.time()
        self._started_monotonic = time.monotonic()
        self.state = RuntimeState.RUNNING
        # What exists now (modules, the app, its registries) lives as long as
        # the process: keep it out of the collector's full passes, which took
        # 30-47 ms with it (a pause every client would see).
        gc.freeze()
        log.info("runtime started (pid %d, %d doors)", os.getpid(), len(self.doors))

    def start_held(self) -> None:
        """Start the single doors held back by ``start(single=False)`` (see
        :meth:`DoorRegistry.start_held`); nothing unless running."""
        if self.state is RuntimeState.RUNNING:
            self.doors.start_held()

    def stop(self, timeout: float = 10.0) -> None:
        """Signal :attr:`stopping`, stop the doors (reverse order), then the hub.

        Each door gets about ``timeout`` seconds. Idempotent; safe before start.
        """
        if self.state in (RuntimeState.STOPPING, RuntimeState.STOPPED):
            return
        was_running = self.state is RuntimeState.RUNNING
        self.state = RuntimeState.STOPPING
        self.stopping.set()
        try:
            self.doors.stop_all(timeout)
        finally:
            self.hub.stop()
            self.state = RuntimeState.STOPPED
        if was_running:
            log.info("runtime stopped (pid %d)", os.getpid())

    def status(self) -> dict[str, Any]:
        """Return the JSON-able health report served at ``/healthz``.

        ``status`` is ``"ok"`` when the runtime runs and every door is in
        one of :data:`~channelstream.serving.doors.HEALTHY_STATES` (``running``, or
        ``connected`` for a door that keeps a connection), else ``"degraded"``.
        """
        doors = self.doors.status()
        hub = self.hub.stats()
        engine_state = hub["bus"].get("state", "connected")  # an engine bus says how it is
        healthy = (
            self.state is RuntimeState.RUNNING
            and engine_state == "connected"
            and all(
                door.get("state") in HEALTHY_STATES
                or (door.get("state") == STANDBY and "error" not in door)
                for door in doors.values()
            )
        )
        uptime = 0.0
        if self._started_monotonic is not None:
            uptime = round(time.monotonic() - self._started_monotonic, 3)
        return {
            "status": "ok" if healthy else "degraded",
            "state": self.state.value,
            "version": __version__,
            "pid": os.getpid(),
            "uptime_seconds": uptime,
            "doors": doors,
            "hub": hub,
        }


def advertised_url(host: str, port: int) -> str:
    """``http://host:port`` as other processes would reach it: a wildcard bind
    (``0.0.0.0``, ``::``) is named by this host's name."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.getfqdn()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# -- where the app keeps its runtime ------------------------------------------------

#: Registry key of the process's :class:`~channelstream.serving.runtime.Runtime`.
RUNTIME_KEY = "channelstream.runtime"

#: Registry key of the WSGI wrappers features add (:func:`add_wsgi_wrapper`).
WSGI_WRAPPERS_KEY = "channelstream.wsgi_wrappers"

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
