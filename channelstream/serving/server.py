"""The PasteDeploy server runner: ``[server:main] use = egg:channelstream``.

Importing this module monkey-patches the process for gevent, before any
other import: pserve imports the server runner before it builds the app, so
this is the earliest point the project controls, and startup shows no
MonkeyPatchWarning.

:func:`serve` validates the ``[server:main]`` keys, binds the listener,
starts the app's :class:`~channelstream.serving.runtime.Runtime` (hub and doors),
serves with :class:`channelstream.web.httpserver.WSGIServer` (websocket
takeover; request deadlines and connection caps from the app's ``http.*``
settings, see :class:`~channelstream.settings.HttpSettings`), and on
SIGINT/SIGTERM shuts down in order: stop accepting, stop
the runtime (long-lived responses end, clients are told), give requests in
progress up to ``shutdown_timeout``, kill the rest, return (exit status 0).
A second signal skips the rest of the grace period.

Keys of ``[server:main]``:

- ``host`` (default 127.0.0.1), ``port`` (default 8000),
  ``shutdown_timeout`` (grace period, a duration, default 10 s);
- the seed's gevent-socketio keys, applied to the socket.io settings:
  ``resource`` -> ``socketio.path``, ``transports`` -> ``socketio.transports``
  (``xhr-polling`` and the other polling names mean ``polling``),
  ``heartbeat_interval`` -> ``socketio.ping_interval``,
  ``heartbeat_timeout`` -> ``socketio.ping_timeout``;
- ``policy_server``, ``policy_listener_host``, ``policy_listener_port``:
  accepted and ignored with one warning (the Flash policy server is obsolete).

Any other key, or a bad value, stops startup with one line naming the key.
"""

from gevent import monkey

monkey.patch_all()

import dataclasses
import logging
import signal
import sys
from collections.abc import Mapping
from typing import Any

import gevent
from gevent.event import Event

from ..settings import SettingsError, parse_value
from ..settings.parsers import Parser, as_list, duration, integer, non_empty
from ..web.httpserver import WSGIServer
from .doors import DoorStartError, listen_socket
from .runtime import Runtime, advertised_url, find_runtime

log = logging.getLogger(__name__)

_SERVER_KEYS = frozenset({"host", "port", "shutdown_timeout"})
_SOCKETIO_KEYS = {
    "resource": "path",
    "transports": "transports",
    "heartbeat_interval": "ping_interval",
    "heartbeat_timeout": "ping_timeout",
}
_OBSOLETE_KEYS = frozenset({"policy_server", "policy_listener_host", "policy_listener_port"})
_POLLING_NAMES = frozenset({"polling", "xhr-polling", "jsonp-polling", "htmlfile", "xhr-multipart"})


class StartupError(Exception):
    """Serving cannot start; shown as one ``channelstream: ...`` line, exit status 1.

    Not a SystemExit on purpose: pserve catches SystemExit from a server
    runner and exits with status 0, which would hide a failed start.
    """


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """The validated ``[server:main]`` keys."""

    host: str = "127.0.0.1"
    port: int = 8000
    shutdown_timeout: float = 10.0
    #: Typed socket.io overrides from the seed's keys (field name -> value).
    socketio: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def parse_server_options(kw: Mapping[str, str]) -> ServerOptions:
    """Validate ``[server:main]`` keys; raise :class:`SettingsError` naming the key."""
    for key in kw:
        if key not in _SERVER_KEYS and key not in _SOCKETIO_KEYS and key not in _OBSOLETE_KEYS:
            known = sorted(_SERVER_KEYS | set(_SOCKETIO_KEYS) | _OBSOLETE_KEYS)
            raise SettingsError(key, f"unknown [server:main] setting; known: {', '.join(known)}")
    obsolete = sorted(_OBSOLETE_KEYS.intersection(kw))
    if obsolete:
        log.warning(
            "ignoring %s: the Flash policy server is obsolete and not provided",
            ", ".join(obsolete),
        )
    host = _parse("host", non_empty, kw.get("host", "127.0.0.1"))
    port = _parse("port", integer(0, 65535), kw.get("port", "8000"))
    grace = _parse("shutdown_timeout", duration(), kw.get("shutdown_timeout", "10"))
    socketio: dict[str, Any] = {}
    for key, field in _SOCKETIO_KEYS.items():
        if key not in kw:
            continue
        text = _seed_transports(kw[key]) if key == "transports" else kw[key]
        try:
            socketio[field] = parse_value(f"socketio.{field}", text)
        except SettingsError as err:
            raise SettingsError(key, err.message) from None
    return ServerOptions(host=host, port=port, shutdown_timeout=grace, socketio=socketio)


def _parse(key: str, parser: Parser, text: str) -> Any:
    try:
        return parser(text)
    except ValueError as err:
        raise SettingsError(key, str(err)) from None


def _seed_transports(text: str) -> str:
    """Map gevent-socketio transport names onto engine.io's (``xhr-polling`` -> ``polling``)."""
    names: list[str] = []
    for name in as_list(text):
        if name == "flashsocket":
            log.warning("ignoring transport 'flashsocket': Flash is obsolete")
            continue
        mapped = "polling" if name in _POLLING_NAMES else name
        if mapped not in names:
            names.append(mapped)
    return ", ".join(names)


class Server:
    """One serving process: listener, runtime, signals, graceful shutdown.

    ``start()`` binds and starts the runtime; ``serve_forever()`` returns
    after SIGINT/SIGTERM (or :meth:`request_stop`); ``stop()`` shuts down in
    order. :meth:`run` does all three.
    """

    def __init__(self, app: Any, runtime: Runtime | None, options: ServerOptions) -> None:
        self.app = app
        self.runtime = runtime
        self.options = options
        self.http: WSGIServer | None = None
        self._stop_requested = Event()
        self._force = Event()

    @property
    def url(self) -> str:
        """The base URL served (with the real port when ``port = 0``)."""
        host, port = self.options.host, self.options.port
        if self.http is not None:
            port = self.http.server_port
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        """Bind the listener and start the runtime; raise :class:`StartupError`."""
        try:
            listener = listen_socket(self.options.host, self.options.port, reuse_port=False)
        except OSError as err:
            raise StartupError(err.strerror or str(err)) from None
        if self.runtime is not None:
            paths, limits = self.runtime.raw_websocket_paths, self.runtime.settings.http
        else:
            paths, limits = set(), None
        self.http = WSGIServer(listener, self.app, raw_websocket_paths=paths, limits=limits)
        self.http.start()
        if self.runtime is not None:
            self.runtime.url = advertised_url(self.options.host, self.http.server_port)
            try:
                self.runtime.start()
            except BaseException as err:
                self.http.stop(timeout=0)
                if isinstance(err, DoorStartError):
                    raise StartupError(str(err)) from None
                raise
        log.info("serving on %s", self.url)

    def request_stop(self, signum: int | None = None) -> None:
        """Begin the shutdown; a second request shortens the grace period to nothing."""
        name = signal.Signals(signum).name if signum is not None else "request"
        if self._stop_requested.is_set():
            log.warning("%s again: not waiting for requests in progress", name)
            self._force.set()
            return
        log.info("%s received: shutting down", name)
        self._stop_requested.set()

    def serve_forever(self) -> None:
        """Block until a stop is requested."""
        self._stop_requested.wait()

    def stop(self) -> None:
        """Stop accepting, stop the runtime, drain requests within the grace period."""
        grace = self.options.shutdown_timeout
        if self.http is not None:
            self.http.close()
        if self.runtime is not None:
            self.runtime.stop(grace)
        killed = 0
        if self.http is not None:
            killed = self.http.drain(grace, self._force)
        if killed:
            log.warning("ended %d request(s) still running after %.1fs", killed, grace)
        log.info("stopped")

    def run(self) -> None:
        """Start, serve until SIGINT/SIGTERM, then stop."""
        self.start()
        watchers = [
            gevent.signal_handler(signum, self.request_stop, signum)
            for signum in (signal.SIGINT, signal.SIGTERM)
        ]
        try:
            self.serve_forever()
        finally:
            self.stop()
            for watcher in watchers:
                watcher.cancel()


def serve(wsgi_app: Any, global_conf: Mapping[str, str], **kw: str) -> None:
    """PasteDeploy ``paste.server_runner``: serve ``wsgi_app`` until SIGINT/SIGTERM.

    A bad ``[server:main]`` key or value, a port in use or a door that
    cannot start ends the process with one line naming the cause and exit
    status 1 (see :class:`StartupError`).
    """
    _install_excepthook()
    try:
        options = parse_server_options(kw)
    except SettingsError as err:
        raise StartupError(f"bad server setting {err}") from None
    runtime = find_runtime(wsgi_app)
    if options.socketio:
        if runtime is None:
            log.warning("the app has no channelstream runtime; ignoring the socket.io keys")
        else:
            runtime.override_socketio(**options.socketio)
    Server(wsgi_app, runtime, options).run()


def _install_excepthook() -> None:
    """Show a :class:`StartupError` as one line; leave other exceptions alone."""
    previous = sys.excepthook
    if getattr(previous, "_channelstream", False):
        return

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if issubclass(kind, StartupError):
            print(f"channelstream: {value}", file=sys.stderr)
        else:
            previous(kind, value, tb)

    excepthook._channelstream = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook
