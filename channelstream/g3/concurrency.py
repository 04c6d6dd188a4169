"""Threads or greenlets: the few primitives the network parts block on.

The library's network code (readers, senders, the streaming server) is
written once, in blocking style, against a :class:`Concurrency`: a socket
module, ``spawn``, ``Event`` and ``Lock``. Two exist:

* :data:`THREADS`: the standard library (OS threads, blocking sockets). The
  default in a process that gevent has not monkey-patched: a pipeline's
  modules may block or compute for as long as they like, and the server's
  accept loop and client writers still run.
* :data:`GREENLETS`: gevent (greenlets, gevent sockets, no locks needed:
  critical sections here never yield). The default in a monkey-patched
  process (channelstream's server), and what a door must ask for
  (``concurrency=GREENLETS``) when it runs in gevent without patching (the
  test suite does).

:func:`pick` chooses: an explicit choice, else greenlets when the ``socket``
module is monkey-patched, else threads. Workers are daemons (threads) or
plain greenlets; every owner stops and joins the workers it spawned.
"""

from __future__ import annotations

import contextlib
import socket as _socket
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol


class Worker(Protocol):
    def join(self, timeout: float | None = None) -> Any: ...


class Event(Protocol):
    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class Concurrency:
    """One way of running the library's blocking parts (see the module doc)."""

    name = "abstract"
    socket: ModuleType

    def spawn(self, target: Callable[..., Any], *args: Any, name: str = "") -> Worker:
        raise NotImplementedError

    def event(self) -> Event:
        raise NotImplementedError

    def lock(self) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def alive(self, worker: Worker) -> bool:
        raise NotImplementedError

    def sleep(self, seconds: float) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<concurrency {self.name}>"


class _Threads(Concurrency):
    name = "threads"
    socket = _socket

    def spawn(self, target: Callable[..., Any], *args: Any, name: str = "") -> Worker:
        thread = threading.Thread(target=target, args=args, name=name or None, daemon=True)
        thread.start()
        return thread

    def event(self) -> Event:
        return threading.Event()

    def lock(self) -> contextlib.AbstractContextManager[Any]:
        return threading.Lock()

    def alive(self, worker: Worker) -> bool:
        return worker.is_alive()  # type: ignore[attr-defined]

    def sleep(self, seconds: float) -> None:
        import time

        time.sleep(seconds)


class _NoLock:
    """Greenlets switch only where code blocks; the sections guarded here never do."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class _Greenlets(Concurrency):
    name = "greenlets"

    @property
    def socket(self) -> ModuleType:  # type: ignore[override]
        from gevent import socket

        return socket

    def spawn(self, target: Callable[..., Any], *args: Any, name: str = "") -> Worker:
        import gevent

        greenlet = gevent.spawn(target, *args)
        if name:
            greenlet.name = name
        return greenlet

    def event(self) -> Event:
        from gevent.event import Event

        return Event()

    def lock(self) -> contextlib.AbstractContextManager[Any]:
        return _NoLock()

    def alive(self, worker: Worker) -> bool:
        return not worker.dead  # type: ignore[attr-defined]

    def sleep(self, seconds: float) -> None:
        import gevent

        gevent.sleep(seconds)


THREADS: Concurrency = _Threads()
GREENLETS: Concurrency = _Greenlets()


def gevent_patched() -> bool:
    """True when gevent has monkey-patched the ``socket`` module of this process."""
    if "gevent" not in sys.modules:
        return False
    from gevent import monkey

    return bool(monkey.is_module_patched("socket"))


def pick(concurrency: Concurrency | str | None = None) -> Concurrency:
    """The :class:`Concurrency` to use: ``concurrency`` itself or its name
    (``"threads"``, ``"greenlets"``), else greenlets in a monkey-patched process."""
    if isinstance(concurrency, Concurrency):
        return concurrency
    if concurrency == "threads":
        return THREADS
    if concurrency == "greenlets":
        return GREENLETS
    if concurrency is not None:
        raise ValueError(f"concurrency must be 'threads' or 'greenlets', not {concurrency!r}")
    return GREENLETS if gevent_patched() else THREADS
