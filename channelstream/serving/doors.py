"""Doors: the protocol adapters around the hub, and the registry that runs them.

A door turns one protocol (a TCP listener, an AMQP or ZMQ consumer, a G3
server...) into hub calls. The :class:`~channelstream.serving.runtime.Runtime` keeps
one :class:`DoorRegistry`; features add their doors to it while the app is
built (``includeme``), and the runtime starts them after the process is
ready to serve (after fork, under gunicorn) and stops them on shutdown.

The registry also runs the process's background loops that share a door's
lifecycle but adapt no protocol (the chat collector): both are a
:class:`Service`; a :class:`Door` is a service that adapts a protocol.

Contract of a service (:class:`Service`; every door is one):

- ``name``: unique in the registry; shown in ``/healthz``.
- ``start()``: called once, in the serving process, before the first
  request. Binds and connects; raises to fail startup with a clear message.
  Building a door (in ``includeme``) must not bind or connect anything: the
  app may be built in a process that never serves (gunicorn's master).
- ``stop(timeout)``: called once, after ``start()`` succeeded. Stops
  accepting, ends the door's own connections, releases its resources, and
  returns within about ``timeout`` seconds.
- ``settings_changed(settings)``: optional; the runtime's settings were
  replaced before start (see :meth:`Service.settings_changed`).
- ``status()``: a JSON-able dict with at least ``"state"`` (a
  :class:`DoorState` value); cheap, callable from any greenlet. A door that
  keeps a connection to a peer (an AMQP consumer, a ZMQ or G3 client) may
  report ``connecting``, ``connected`` or ``retrying`` instead of
  ``running`` (a source whose producer is not there: ``waiting``), and a door
  whose work has an end (a file read once) says ``finished`` when it is done;
  :data:`HEALTHY_STATES` are those in which a door does its work (or has
  done it, or waits for work with nothing lost).

Most doors are a loop (accept, consume, read): subclass :class:`LoopDoor`
(a :class:`SupervisedLoop` that is a door), whose ``run()`` is supervised. A
crash is logged with its traceback, shown as ``restarting`` with the error
and restart count, and ``run()`` is called again after a backoff (1 s
doubling to 30 s). A door crash never ends the process.
"""

from __future__ import annotations

import abc
import enum
import logging
import socket as _stdlib_socket
import time
from collections.abc import Iterator
from typing import Any

import gevent
from gevent import socket
from gevent.event import Event

from ..settings import Settings

log = logging.getLogger(__name__)


class DoorState(str, enum.Enum):
    """Where a door is in its life; ``status()["state"]`` is its value."""

    NEW = "new"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    #: The finer states of a running door that keeps a connection to a peer.
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RETRYING = "retrying"
    #: A source that connects to the peer feeding it, and whose peer is not there
    #: (nothing listens at its address, or it went away): normal, nothing is lost
    #: (a detector or DAQ that is off); it takes frames as soon as one comes.
    WAITING = "waiting"
    #: A door whose work has an end and was done (a G3 file source read to its end).
    FINISHED = "finished"


#: The ``status()["state"]`` values of a door that does its work (``/healthz`` "ok").
#: ``connecting`` and ``retrying`` are not: a broker or a receiver out of reach
#: loses data; a source ``waiting`` for its producer loses none.
HEALTHY_STATES = frozenset(
    {
        DoorState.RUNNING.value,
        DoorState.CONNECTED.value,
        DoorState.WAITING.value,
        DoorState.FINISHED.value,
    }
)


class DoorStartError(RuntimeError):
    """A door could not start; ``str()`` names the door and the cause."""

    def __init__(self, name: str, cause: BaseException) -> None:
        super().__init__(f"door {name!r} failed to start: {type(cause).__name__}: {cause}")
        self.name = name
        self.cause = cause


class Service(abc.ABC):
    """Something the runtime starts and stops with the process; see the module doc."""

    name: str
    #: True for a door that one process of a gunicorn server runs, whatever
    #: its number of workers: it binds an address that workers cannot share
    #: (a ZMQ bind, a G3 listener), or reads a source that must be read once,
    #: into a channel kept in that process. The other workers hold it back
    #: (``standby``) and one of them starts it when its runner is gone
    #: (:mod:`channelstream.serving.gunicorn_conf`).
    single: bool = False

    @abc.abstractmethod
    def start(self) -> None:
        """Bind/connect and begin serving; raise to fail startup."""

    @abc.abstractmethod
    def stop(self, timeout: float) -> None:
        """Stop accepting, end connections, release resources within ``timeout``."""

    @abc.abstractmethod
    def status(self) -> dict[str, Any]:
        """Return a JSON-able dict with at least ``"state"``."""

    def settings_changed(self, settings: Settings) -> None:
        """The runtime's settings were replaced before start (the server runner
        applied ``[server:main]`` keys); a door that kept a group of them takes
        the new one. Called only before :meth:`start`; nothing by default."""
        return None


class Backoff:
    """Delays that start at ``initial`` and double up to ``maximum``.

    :meth:`next` gives the delay to wait now; :meth:`reset` starts over
    (after a run or a connection that lasted).
    """

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._delay = initial

    def next(self) -> float:
        delay = self._delay
        self._delay = min(delay * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._delay = self.initial


class LogSampler:
    """Lets a log line through at most once per ``interval`` seconds and
    counts the others, so that a flood of one event logs a line now and then
    saying how many were left out.

    Greenlet-safe as doors use it: no call yields.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: float | None = None
        #: lines not let through since the last one that was
        self.suppressed = 0

    def due(self) -> bool:
        """True if a line may go out now (then it counts as the last one)."""
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval:
            self.suppressed += 1
            return False
        self._last = now
        return True

    def take_suppressed(self) -> int:
        """The lines left out since the last report; starts counting again."""
        count, self.suppressed = self.suppressed, 0
        return count


class Door(Service):
    """A service that adapts one protocol to the hub (a listener, a consumer...)."""


class SupervisedLoop(Service):
    """A service whose work is one long-running, supervised :meth:`run` loop.

    Subclasses implement :meth:`run` and may override the hooks
    :meth:`open` (bind/connect once, in ``start()``), :meth:`interrupt`
    (unblock ``run()`` when stopping, e.g. close a listening socket),
    :meth:`close` (release resources after the loop ended) and
    :meth:`extra_status`.

    ``run()`` should loop until :attr:`stopping`; when it raises, or returns
    while the door is not stopping, it is called again after a backoff that
    starts at :attr:`backoff_initial` and doubles up to :attr:`backoff_max`.
    A run that lasted :attr:`backoff_reset_after` seconds resets the backoff.
    Errors raised while stopping are expected (sockets closed under the loop)
    and are not logged as crashes.
    """

    #: First delay before a crashed ``run()`` is called again, in seconds.
    backoff_initial: float = 1.0
    #: Largest delay between restarts, in seconds.
    backoff_max: float = 30.0
    #: A run at least this long (seconds) resets the delay to ``backoff_initial``.
    backoff_reset_after: float = 60.0

    def __init__(
        self,
        name: str,
        *,
        backoff_initial: float | None = None,
        backoff_max: float | None = None,
    ) -> None:
        self.name = name
        if backoff_initial is not None:
            self.backoff_initial = backoff_initial
        if backoff_max is not None:
            self.backoff_max = backoff_max
        self._state = DoorState.NEW
        self._stop_event = Event()
        self._greenlet: gevent.Greenlet | None = None
        self._restarts = 0
        self._last_error: str | None = None
        self._last_error_at: float | None = None

    # -- hooks for subclasses ------------------------------------------------

    def open(self) -> None:
        """Bind or connect once, before the loop is spawned; may raise."""

    @abc.abstractmethod
    def run(self) -> None:
        """Do the door's work until :attr:`stopping`; runs in its own greenlet."""

    def interrupt(self) -> None:
        """Unblock :meth:`run` after :attr:`stopping` was set (e.g. close a socket)."""

    def close(self) -> None:
        """Release resources after the loop has ended (or was killed)."""

    def extra_status(self) -> dict[str, Any]:
        """Return door-specific figures merged into :meth:`status`."""
        return {}

    # -- lifecycle -----------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called; ``run()`` should then return."""
        return self._stop_event.is_set()

    def pause(self, delay: float) -> bool:
        """Wait ``delay`` seconds before restarting a crashed :meth:`run`, or until
        stopped; return :attr:`stopping`. (A hook: tests record the delays.)"""
        return self._stop_event.wait(delay)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on stop; return :attr:`stopping`."""
        return self._stop_event.wait(seconds)

    def start(self) -> None:
        """Call :meth:`open`, then spawn the supervised loop."""
        if self._state is not DoorState.NEW:
            raise RuntimeError(f"door {self.name!r} was already started")
        self.open()
        self._state = DoorState.RUNNING
        self._greenlet = gevent.spawn(self._supervise)
        self._greenlet.name = f"door:{self.name}"

    def stop(self, timeout: float) -> None:
        """Ask the loop to end, wait up to ``timeout``, kill it if needed, then close."""
        if self._state in (DoorState.NEW, DoorState.STOPPED):
            self._state = DoorState.STOPPED
            return
        self._state = DoorState.STOPPING
        self._stop_event.set()
        try:
            self.interrupt()
        except Exception:
            log.exception("door %r: interrupt() failed", self.name)
        greenlet = self._greenlet
        if greenlet is not None:
            greenlet.join(timeout)
            if not greenlet.dead:
                log.warning("door %r did not stop within %.1fs; killing it", self.name, timeout)
                greenlet.kill(block=True, timeout=1.0)
        try:
            self.close()
        finally:
            self._state = DoorState.STOPPED

    def status(self) -> dict[str, Any]:
        """State, restart count and last error, plus :meth:`extra_status`."""
        info: dict[str, Any] = {"state": self._state.value, "restarts": self._restarts}
        if self._last_error is not None:
            info["last_error"] = self._last_error
            info["last_error_at"] = self._last_error_at
        info.update(self.extra_status())
        return info

    def _supervise(self) -> None:
        backoff = Backoff(self.backoff_initial, self.backoff_max)
        while not self.stopping:
            began = time.monotonic()
            self._state = DoorState.RUNNING
            crash: Exception | None = None
            try:
                self.run()
            except Exception as err:
                crash = err
            if self.stopping:
                break
            if crash is not None:
                error = f"{type(crash).__name__}: {crash}"
            else:
                error = "run() returned while the door was not stopping"
            if time.monotonic() - began >= self.backoff_reset_after:
                backoff.reset()
            delay = backoff.next()
            self._record_error(error)
            self._state = DoorState.RESTARTING
            self._restarts += 1
            if crash is not None:
                log.error(
                    "door %r crashed; restarting in %.1fs", self.name, delay, exc_info=crash
                )
            else:
                log.error("door %r: %s; restarting in %.1fs", self.name, error, delay)
            if self.pause(delay):
                break

    def _record_error(self, text: str) -> None:
        self._last_error = text
        self._last_error_at = time.time()


class LoopDoor(SupervisedLoop, Door):
    """A door whose work is a supervised loop (accept, consume, read)."""


#: ``status()["state"]`` of a single door held back in this worker (another runs it).
STANDBY = "standby"


class DoorRegistry:
    """The doors (and other services) of one process, started in order and
    stopped in reverse.

    Not thread-safe; used from the main greenlet of the serving process.
    """

    def __init__(self) -> None:
        self._doors: dict[str, Service] = {}
        self._started: list[Service] = []
        #: single doors held back by ``start_all(single=False)``, and why one
        #: failed to start later (None: not tried yet)
        self._held: dict[str, str | None] = {}
        self._sealed = False

    def add(self, door: Service) -> Service:
        """Register ``door`` (before :meth:`start_all`); its name must be unique."""
        if self._sealed:
            raise RuntimeError(f"cannot add door {door.name!r}: the doors were already started")
        if not door.name or door.name in self._doors:
            raise ValueError(f"door name {door.name!r} is empty or already registered")
        self._doors[door.name] = door
        return door

    def get(self, name: str) -> Service:
        """Return the door called ``name`` (KeyError if there is none)."""
        return self._doors[name]

    def __iter__(self) -> Iterator[Service]:
        return iter(list(self._doors.values()))

    def __len__(self) -> int:
        return len(self._doors)

    def start_all(self, *, cleanup_timeout: float = 5.0, single: bool = True) -> None:
        """Start every door in the order added (without ``single``: every door
        but the :attr:`Service.single` ones, which wait for :meth:`start_held`).

        If one fails, the doors already started are stopped (in reverse,
        ``cleanup_timeout`` each) and :class:`DoorStartError` is raised.
        """
        if self._sealed:
            raise RuntimeError("the doors were already started")
        self._sealed = True
        for door in self._doors.values():
            if door.single and not single:
                self._held[door.name] = None
                continue
            try:
                door.start()
            except Exception as err:
                log.error("door %r failed to start: %s", door.name, err)
                self.stop_all(cleanup_timeout)
                raise DoorStartError(door.name, err) from err
            self._started.append(door)
            log.info("door %r started", door.name)

    @property
    def held(self) -> list[str]:
        """The names of the single doors held back, in the order added."""
        return list(self._held)

    def start_held(self) -> None:
        """Start the single doors held back, in order (this process runs them now).

        A door that fails is logged and stays held back, its error shown in
        :meth:`status`; the others start.
        """
        for name in list(self._held):
            door = self._doors[name]
            try:
                door.start()
            except Exception as err:
                log.error("door %r failed to start: %s", name, err)
                self._held[name] = f"{type(err).__name__}: {err}"
                continue
            del self._held[name]
            self._started.append(door)
            log.info("door %r started (this worker runs the single doors now)", name)

    def stop_all(self, timeout: float) -> None:
        """Stop the started doors in reverse order, each within about ``timeout``.

        A door whose ``stop()`` raises or overruns is logged and left behind;
        the others are still stopped. Idempotent.
        """
        while self._started:
            door = self._started.pop()
            try:
                # LoopDoor.stop may take timeout + 1 s (join, then kill): allow for it.
                with gevent.Timeout(timeout + 2.0):
                    door.stop(timeout)
            except gevent.Timeout:
                log.error("door %r did not stop within %.1fs", door.name, timeout)
            except Exception:
                log.exception("door %r failed to stop cleanly", door.name)
            else:
                log.info("door %r stopped", door.name)

    def status(self) -> dict[str, dict[str, Any]]:
        """Return ``{name: door.status()}``; a failing ``status()`` is reported, not raised."""
        result: dict[str, dict[str, Any]] = {}
        for name, door in self._doors.items():
            if name in self._held:
                result[name] = {"state": STANDBY, "runs_in": "another worker of this server"}
                if self._held[name]:
                    result[name]["error"] = self._held[name]
                continue
            try:
                result[name] = door.status()
            except Exception as err:
                log.exception("door %r: status() failed", name)
                result[name] = {"state": "unknown", "error": f"{type(err).__name__}: {err}"}
        return result


def listen_socket(
    host: str, port: int, *, reuse_port: bool, backlog: int = 1024
) -> socket.socket:
    """Open a listening TCP socket for a door (a gevent socket).

    ``SO_REUSEADDR`` is always set; ``SO_REUSEPORT`` when ``reuse_port``, so
    that every gunicorn worker can open the same listener and the kernel
    spreads connections among them. IPv6 hosts are accepted (``::1``).
    Raises :class:`OSError` naming the address when it cannot listen.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(
            host or None, port, _stdlib_socket.AF_UNSPEC, _stdlib_socket.SOCK_STREAM, 0,
            _stdlib_socket.AI_PASSIVE,
        )
    except OSError as err:
        raise OSError(err.errno, f"cannot listen on {where}: {err.strerror or err}") from err
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_REUSEADDR, 1)
        if reuse_port:
            if not hasattr(_stdlib_socket, "SO_REUSEPORT"):
                raise OSError(f"cannot listen on {where}: SO_REUSEPORT is not supported here")
            sock.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as err:
        sock.close()
        if err.errno is None:
            raise
        raise OSError(err.errno, f"cannot listen on {where}: {err.strerror or err}") from err
    except BaseException:
        sock.close()
        raise
    return sock
